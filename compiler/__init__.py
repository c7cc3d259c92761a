"""ember's compiler: graph-to-graph passes (autodiff, optimizer lowering,
simplification) and the pipelines that chain them."""

from .autodiff import autodiff, grad_name, unbroadcast
from .optimizers import OPTIMIZERS, SGD, Adagrad, Adam, Adamax, AdamW, NAdam, Optimizer, RAdam, RMSprop, lower_optimizer
from .pipeline import PASS_NAMES, Pass, PassLog, TrainingGraphs, build_inference, build_training, run_passes
from .rewrite import dce, rewrite
from .simplify import algebraic, cse, fold_constants, simplify

__all__ = [
    "OPTIMIZERS",
    "PASS_NAMES",
    "SGD",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "NAdam",
    "Optimizer",
    "Pass",
    "PassLog",
    "RAdam",
    "RMSprop",
    "TrainingGraphs",
    "algebraic",
    "autodiff",
    "build_inference",
    "build_training",
    "cse",
    "dce",
    "fold_constants",
    "grad_name",
    "lower_optimizer",
    "rewrite",
    "run_passes",
    "simplify",
    "unbroadcast",
]
