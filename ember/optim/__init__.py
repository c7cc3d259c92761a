"""Optimizers: `SGD`, `Adam`, `AdamW`, with PyTorch's names, defaults and
update formulas. They are lowered into the training program as IR; the
learning rate is a runtime input, so changing it never recompiles."""

from ..compiler.optimizers import SGD, Adam, AdamW, Optimizer
from . import lr_scheduler

__all__ = ["SGD", "Adam", "AdamW", "Optimizer", "lr_scheduler"]
