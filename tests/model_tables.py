"""Activations and losses that whole-model tests run through (every
activation x every loss), shared by the reference and native test suites."""

from ember import nn

ACTIVATIONS = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "leaky_relu": lambda: nn.LeakyReLU(0.1),
    "gelu": nn.GELU,
    "softmax": nn.Softmax,
    "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
    "silu": nn.SiLU,
    "mish": nn.Mish,
    "elu": lambda: nn.ELU(0.5),
    "softplus": lambda: nn.Softplus(beta=2.0),
    "hardswish": nn.Hardswish,
    "relu6": nn.ReLU6,
    "softsign": nn.Softsign,
    "prelu": nn.PReLU,
}
LOSSES = {
    "mse": nn.MSELoss,
    "cross_entropy": nn.CrossEntropyLoss,
    "bce": nn.BCEWithLogitsLoss,
    "cross_entropy_smoothed": lambda: nn.CrossEntropyLoss(label_smoothing=0.1),
    "mse_sum": lambda: nn.MSELoss(reduction="sum"),
    "cross_entropy_sum": lambda: nn.CrossEntropyLoss(reduction="sum"),
    "bce_sum": lambda: nn.BCEWithLogitsLoss(reduction="sum"),
}
