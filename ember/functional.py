"""Functional ops for use inside a traced `forward`: `ember.relu(x)`,
`ember.sum(x, axis=1)`, `ember.where(c, x, y)`... Each appends IR nodes.
Arguments may be Tensors, Parameters or Python numbers."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np

from .ir import ConfigError, DType, ShapeError
from .tensor import TensorOps, emit, random_uniform, user_location

Like = TensorOps | float | int


def _axes(x: TensorOps, axis: int | Sequence[int] | None) -> list[int]:
    rank = x.ndim
    axes = list(range(rank)) if axis is None else [axis] if isinstance(axis, int) else list(axis)
    for a in axes:
        if not -rank <= a < rank:
            raise ShapeError(f"axis {a} is out of range for a tensor of shape {list(x.shape)} (at {user_location()})")
    return sorted({a % rank for a in axes})


# -- elementwise -------------------------------------------------------------
def add(x: Like, y: Like):
    return emit("add", x, y)


def sub(x: Like, y: Like):
    return emit("sub", x, y)


def mul(x: Like, y: Like):
    return emit("mul", x, y)


def div(x: Like, y: Like):
    return emit("div", x, y)


def pow(x: Like, y: Like):
    return emit("pow", x, y)


def maximum(x: Like, y: Like):
    return emit("maximum", x, y)


def minimum(x: Like, y: Like):
    return emit("minimum", x, y)


def neg(x: Like):
    return emit("neg", x)


def abs(x: Like):
    return emit("abs", x)


def exp(x: Like):
    return emit("exp", x)


def log(x: Like):
    return emit("log", x)


def sqrt(x: Like):
    return emit("sqrt", x)


def rsqrt(x: Like):
    return emit("rsqrt", x)


def tanh(x: Like):
    return emit("tanh", x)


def sigmoid(x: Like):
    return emit("sigmoid", x)


def relu(x: Like):
    return emit("relu", x)


def leaky_relu(x: Like, negative_slope: float = 0.01):
    return emit("leaky_relu", x, alpha=negative_slope)


def gelu(x: Like, approximate: str = "tanh"):
    """GELU with the tanh approximation, as torch.nn.GELU(approximate="tanh")."""
    if approximate != "tanh":
        raise ConfigError(f'ember implements GELU with approximate="tanh" only, got approximate={approximate!r}')
    return emit("gelu", x)


def equal(x: Like, y: Like):
    return emit("eq", x, y)


def not_equal(x: Like, y: Like):
    return emit("ne", x, y)


def where(condition: TensorOps, x: Like, y: Like):
    """`x` where `condition` is true, else `y` (broadcasting all three)."""
    return emit("select", condition, x, y)


def cast(x: TensorOps, dtype: DType | str):
    return emit("cast", x, dtype=dtype)


def dropout(x: TensorOps, p: float = 0.5, training: bool = True):
    """PyTorch's dropout: in training, zero each element with probability `p`
    and scale the others by 1/(1-p); the identity otherwise. The mask comes
    from random numbers keyed by the program's seed, its step counter (a new
    mask every training step) and the element's index, computed inside the
    kernels that use it, so it is never stored, forward or backward."""
    p = dropout_probability(p)
    if not training or p == 0:
        return x
    if p == 1:
        return x * 0.0  # as PyTorch: zeros, and NaN where x is inf or NaN
    uniform = random_uniform(x.shape or (1,), x.dtype)  # random_uniform makes tensors of rank >= 1
    keep = (uniform if x.shape else reshape(uniform, ())) >= p
    return x * (cast(keep, x.dtype) * (1 / (1 - p)))  # x * mask as PyTorch: inf or NaN dropped is NaN


def dropout_probability(p: object) -> float:
    """`p` as a dropout probability: a real number in [0, 1], else a ConfigError."""
    if not isinstance(p, numbers.Real) or isinstance(p, bool | np.bool_) or not 0 <= p <= 1:
        raise ConfigError(f"dropout probability has to be between 0 and 1, but got {p!r} (at {user_location()})")
    return float(p)


# -- reductions and normalization -------------------------------------------
def sum(x: TensorOps, axis: int | Sequence[int] | None = None, keepdims: bool = False):
    return emit("sum", x, axes=_axes(x, axis), keepdims=keepdims)


def mean(x: TensorOps, axis: int | Sequence[int] | None = None, keepdims: bool = False):
    return emit("mean", x, axes=_axes(x, axis), keepdims=keepdims)


def max(x: TensorOps, axis: int | Sequence[int] | None = None, keepdims: bool = False):
    return emit("max", x, axes=_axes(x, axis), keepdims=keepdims)


def softmax(x: TensorOps, axis: int = -1):
    return emit("softmax", x, axis=_axes(x, axis)[0])


def log_softmax(x: TensorOps, axis: int = -1):
    return emit("log_softmax", x, axis=_axes(x, axis)[0])


# -- linear algebra and layout ----------------------------------------------
def matmul(a: TensorOps, b: TensorOps, transpose_a: bool = False, transpose_b: bool = False):
    return emit("matmul", a, b, transpose_a=transpose_a, transpose_b=transpose_b)


def linear(x: TensorOps, weight: TensorOps, bias: TensorOps | None = None):
    """`x @ weight.T + bias`, with `weight` stored `[out_features, in_features]` as in PyTorch."""
    y = matmul(x, weight, transpose_b=True)
    return y + bias if bias is not None else y


def transpose(x: TensorOps, axes: Sequence[int] | None = None):
    perm = list(reversed(range(x.ndim))) if axes is None else [a % x.ndim for a in axes]
    return emit("transpose", x, perm=perm)


def reshape(x: TensorOps, shape: Sequence[int | str]):
    """Reshape; one dimension may be -1, inferred from the others."""
    shape = list(shape)
    if shape.count(-1) == 1:
        known = [d for d in shape if d != -1]
        if _symbols(known) != _symbols(x.shape):
            raise ShapeError(f"cannot infer -1 in reshape of {list(x.shape)} to {shape} (at {user_location()})")
        shape[shape.index(-1)] = _static_size(x.shape) // max(_static_size(known), 1)
    return emit("reshape", x, shape=shape)


def _symbols(shape: Sequence[int | str]) -> list[str]:
    return sorted(d for d in shape if isinstance(d, str))


def _static_size(shape: Sequence[int | str]) -> int:
    return math.prod(d for d in shape if isinstance(d, int))


def broadcast_to(x: TensorOps, shape: Sequence[int | str]):
    return emit("broadcast_to", x, shape=list(shape))


def one_hot(labels: TensorOps, num_classes: int, dtype: DType | str = DType.float32):
    return emit("one_hot", labels, num_classes=num_classes, dtype=dtype)


__all__ = [
    "abs",
    "add",
    "broadcast_to",
    "cast",
    "div",
    "dropout",
    "equal",
    "exp",
    "gelu",
    "leaky_relu",
    "linear",
    "log",
    "log_softmax",
    "matmul",
    "max",
    "maximum",
    "mean",
    "minimum",
    "mul",
    "neg",
    "not_equal",
    "one_hot",
    "pow",
    "relu",
    "reshape",
    "rsqrt",
    "sigmoid",
    "softmax",
    "sqrt",
    "sub",
    "sum",
    "tanh",
    "transpose",
    "where",
]
