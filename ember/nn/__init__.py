"""Models: modules, layers, activations and losses."""

from . import init
from .batchnorm import BatchNorm1d
from .layers import GELU, Identity, LeakyReLU, Linear, ReLU, Sigmoid, Softmax, Tanh
from .losses import LOSSES, BCEWithLogitsLoss, CrossEntropyLoss, Loss, MSELoss
from .module import Buffer, Module, ModuleDict, ModuleList, Parameter, Sequential

__all__ = [
    "GELU",
    "LOSSES",
    "BCEWithLogitsLoss",
    "BatchNorm1d",
    "Buffer",
    "CrossEntropyLoss",
    "Identity",
    "LeakyReLU",
    "Linear",
    "Loss",
    "MSELoss",
    "Module",
    "ModuleDict",
    "ModuleList",
    "Parameter",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "init",
]
