"""Models: modules, layers, activations and losses."""

from . import init
from .layers import GELU, Dropout, Identity, LeakyReLU, Linear, ReLU, Sigmoid, Softmax, Tanh
from .losses import LOSSES, BCEWithLogitsLoss, CrossEntropyLoss, Loss, MSELoss
from .module import Module, Parameter, Sequential

__all__ = [
    "GELU",
    "LOSSES",
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "Dropout",
    "Identity",
    "LeakyReLU",
    "Linear",
    "Loss",
    "MSELoss",
    "Module",
    "Parameter",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "init",
]
