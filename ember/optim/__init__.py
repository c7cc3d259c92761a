"""Optimizers with PyTorch's names, arguments, defaults, state names and
update formulas: `SGD`, `Adam`, `AdamW`, `RMSprop`, `Adagrad`, `Adamax`,
`NAdam`, `RAdam`. The first argument is optional (default: every trainable
parameter): `model.parameters()`, names, glob patterns such as `"*.bias"`,
or a list of param-group dicts with their own hyperparameters. Each is
lowered into the training program as IR; every numeric hyperparameter is a
runtime input (`Program.param_groups`), so changing one never recompiles."""

from ..compiler.optimizers import SGD, Adagrad, Adam, Adamax, AdamW, NAdam, Optimizer, RAdam, RMSprop
from . import lr_scheduler

__all__ = ["SGD", "Adagrad", "Adam", "AdamW", "Adamax", "NAdam", "Optimizer", "RAdam", "RMSprop", "lr_scheduler"]
