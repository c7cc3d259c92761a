"""Functional ops for use inside a traced `forward`: `ember.relu(x)`,
`ember.sum(x, axis=1)`, `ember.where(c, x, y)`... Each appends IR nodes.
Arguments may be Tensors, Parameters or Python numbers."""

from __future__ import annotations

import functools
import itertools
import math
import operator
from collections.abc import Sequence

from .ir import ConfigError, DType, DTypeError, ShapeError
from .tensor import Tensor, TensorOps, emit, user_location

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


def cat(tensors: Sequence[TensorOps], dim: int = 0, *, axis: int | None = None):
    """Join tensors along an existing axis `dim` (PyTorch's `torch.cat`; `axis=`
    is NumPy's name for it). Shapes must agree except along `dim`. Each tensor
    is padded with zeros to the result's shape at its place and the pads are
    added, so the gradient of each is a slice of the result's."""
    tensors = _joined("cat", tensors)
    rank = tensors[0].ndim
    dim = _dim("cat", _pick_dim(dim, axis), rank, tensors[0])
    _check_joinable(tensors, dim)
    if len(tensors) == 1:
        return Tensor(tensors[0]._value())
    offsets = [0, *itertools.accumulate(t.shape[dim] for t in tensors)]
    shape = [*tensors[0].shape[:dim], offsets[-1], *tensors[0].shape[dim + 1 :]]
    parts = [
        emit("pad", t, starts=[start if k == dim else 0 for k in range(rank)], shape=shape)
        for t, start in zip(tensors, offsets, strict=False)
    ]
    return functools.reduce(operator.add, parts)


def _check_joinable(tensors: list[TensorOps], dim: int) -> None:
    """Same rank, dtype and sizes except along `dim`, which is not the batch axis."""
    first = tensors[0]
    shapes = ", ".join(f"{t.dtype}{list(t.shape)}" for t in tensors)
    if any(t.ndim > dim and isinstance(t.shape[dim], str) for t in tensors):
        raise ShapeError(
            f"cat along axis {dim}, the batch axis (its size is known only at run time), "
            f"is not supported: {shapes} (at {user_location()})"
        )
    for t in tensors:
        if t.dtype is not first.dtype:
            raise DTypeError(f"cat needs tensors of one dtype, got {shapes} (at {user_location()})")
        if t.ndim != first.ndim or _without(t.shape, dim) != _without(first.shape, dim):
            raise ShapeError(
                f"cat along axis {dim} needs equal sizes on the other axes, got {shapes} (at {user_location()})"
            )


def _without(shape: Sequence, dim: int) -> list:
    return [d for k, d in enumerate(shape) if k != dim]


def stack(tensors: Sequence[TensorOps], dim: int = 0, *, axis: int | None = None):
    """Join tensors of one shape along a new axis `dim` (PyTorch's `torch.stack`)."""
    tensors = _joined("stack", tensors)
    rank = tensors[0].ndim + 1
    dim = _dim("stack", _pick_dim(dim, axis), rank, tensors[0])
    for t in tensors:
        if t.shape != tensors[0].shape:
            shapes = ", ".join(str(list(u.shape)) for u in tensors)
            raise ShapeError(f"stack needs tensors of one shape, got {shapes} (at {user_location()})")
    shape = [*tensors[0].shape[:dim], 1, *tensors[0].shape[dim:]]
    return cat([emit("reshape", t, shape=shape) for t in tensors], dim)


def _joined(name: str, tensors) -> list[TensorOps]:
    if isinstance(tensors, TensorOps) or not isinstance(tensors, Sequence) or not tensors:
        raise ConfigError(f"{name} takes a non-empty list or tuple of tensors (at {user_location()})")
    for t in tensors:
        if not isinstance(t, TensorOps):
            raise ConfigError(f"{name} takes tensors, got a {type(t).__name__} (at {user_location()})")
    return list(tensors)


def _pick_dim(dim: int, axis: int | None) -> int:
    if axis is None:
        return dim
    if dim not in (0, axis):
        raise ConfigError(f"pass dim= or axis=, not both (got dim={dim}, axis={axis}) (at {user_location()})")
    return axis


def _dim(name: str, dim: int, rank: int, like: TensorOps) -> int:
    if isinstance(dim, bool) or not isinstance(dim, int) or not -rank <= dim < rank:
        raise ShapeError(
            f"{name}: dim {dim!r} is out of range for tensors of shape {list(like.shape)} (at {user_location()})"
        )
    return dim % rank


def embedding(
    input: TensorOps,
    weight: TensorOps,
    padding_idx: int | None = None,
    max_norm: float | None = None,
    norm_type: float = 2.0,
    scale_grad_by_freq: bool = False,
    sparse: bool = False,
):
    """Rows of `weight` [num_embeddings, embedding_dim] at the integer indices
    `input` (any shape) -> [*input.shape, embedding_dim], as PyTorch's
    `F.embedding`. The `padding_idx` row gets no gradient. Indices in a
    program's inputs are checked to lie in [0, num_embeddings)."""
    check_embedding_options(max_norm, scale_grad_by_freq, sparse)
    if weight.ndim != 2:
        raise ShapeError(f"embedding needs a weight [num_embeddings, embedding_dim], got {list(weight.shape)} "
                         f"(at {user_location()})")  # fmt: skip
    return emit("gather", weight, input, padding_idx=padding_row(padding_idx, weight.shape[0]))


def check_embedding_options(max_norm, scale_grad_by_freq: bool, sparse: bool) -> None:
    """PyTorch options of embeddings that ember does not implement."""
    for name, value, default in (("max_norm", max_norm, None), ("scale_grad_by_freq", scale_grad_by_freq, False),
                                 ("sparse", sparse, False)):  # fmt: skip
        if value is not default and value != default:
            raise ConfigError(f"embedding: {name}={value!r} is not supported (at {user_location()})")


def padding_row(padding_idx: int | None, rows: int) -> int:
    """`padding_idx` as a row number (negative counts from the end), or -1 for none."""
    if padding_idx is None:
        return -1
    if isinstance(padding_idx, bool) or not isinstance(padding_idx, int) or not -rows <= padding_idx < rows:
        raise ConfigError(f"padding_idx must be an integer in [{-rows}, {rows}), got {padding_idx!r} "
                          f"(at {user_location()})")  # fmt: skip
    return padding_idx % rows


def one_hot(labels: TensorOps, num_classes: int, dtype: DType | str = DType.float32):
    return emit("one_hot", labels, num_classes=num_classes, dtype=dtype)


__all__ = [
    "abs",
    "add",
    "broadcast_to",
    "cast",
    "cat",
    "div",
    "embedding",
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
    "stack",
    "sub",
    "sum",
    "tanh",
    "transpose",
    "where",
]
