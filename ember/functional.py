"""Functional ops for use inside a traced `forward`: `ember.relu(x)`,
`ember.sum(x, axis=1)`, `ember.where(c, x, y)`... Each appends IR nodes.
Arguments may be Tensors, Parameters or Python numbers.

Reductions take NumPy's `axis=`/`keepdims=` and PyTorch's `dim=`/`keepdim=`
alike. This module defines `abs`, `max`, `min`, `pow` and `sum` as ops: its
own code reaches Python's built-ins through `builtins`."""

from __future__ import annotations

import builtins
import functools
import itertools
import math
import numbers
import operator
from collections import Counter
from collections.abc import Sequence

import numpy as np

from .ir import ConfigError, DType, DTypeError, ShapeError
from .tensor import Tensor, TensorOps, active_trace, emit, random_uniform, user_location

Like = TensorOps | float | int
Axis = int | Sequence[int] | None


def _axes(x: TensorOps, axis: Axis) -> list[int]:
    rank = x.ndim
    axes = list(range(rank)) if axis is None else [axis] if isinstance(axis, int) else list(axis)
    for a in axes:
        if not -rank <= a < rank:
            raise ShapeError(f"axis {a} is out of range for a tensor of shape {list(x.shape)} (at {user_location()})")
    normalized = [a % rank for a in axes]
    if len(set(normalized)) != len(normalized):
        raise ShapeError(
            f"axes {list(axes)} name an axis of a tensor of shape {list(x.shape)} twice (at {user_location()})"
        )
    return sorted(normalized)


def _either(numpy_name: str, numpy_value, torch_name: str, torch_value, default):
    """The value given under NumPy's or PyTorch's name for one argument (not both)."""
    if numpy_value is not None and torch_value is not None:
        raise ConfigError(f"give {numpy_name}= or {torch_name}=, not both (at {user_location()})")
    if numpy_value is not None:
        return numpy_value
    return torch_value if torch_value is not None else default


def _reduce(op: str, x: TensorOps, axis: Axis, keepdims: bool | None, dim: Axis, keepdim: bool | None):
    axes = _axes(x, _either("axis", axis, "dim", dim, None))
    return emit(op, x, axes=axes, keepdims=_either("keepdims", keepdims, "keepdim", keepdim, False))


# -- elementwise -------------------------------------------------------------
def add(x: Like, y: Like):
    """x + y, broadcasting as NumPy and PyTorch do."""
    return emit("add", x, y)


def sub(x: Like, y: Like):
    """x - y, broadcasting."""
    return emit("sub", x, y)


def mul(x: Like, y: Like):
    """x * y, broadcasting."""
    return emit("mul", x, y)


def div(x: Like, y: Like):
    """x / y, broadcasting."""
    return emit("div", x, y)


def pow(x: Like, y: Like):
    """x ** y, broadcasting (torch.pow's gradients at 0)."""
    return emit("pow", x, y)


def maximum(x: Like, y: Like):
    """The larger of x and y, elementwise (ties share the gradient)."""
    return emit("maximum", x, y)


def minimum(x: Like, y: Like):
    """The smaller of x and y, elementwise (ties share the gradient)."""
    return emit("minimum", x, y)


def neg(x: Like):
    """-x, elementwise."""
    return emit("neg", x)


def abs(x: Like):
    """|x|, elementwise."""
    return emit("abs", x)


def exp(x: Like):
    """e**x, elementwise."""
    return emit("exp", x)


def expm1(x: Like):
    """e**x - 1, accurate for small x."""
    return emit("expm1", x)


def log(x: Like):
    """Natural logarithm, elementwise."""
    return emit("log", x)


def log1p(x: Like):
    """log(1 + x), accurate for small x."""
    return emit("log1p", x)


def sqrt(x: Like):
    """Square root, elementwise."""
    return emit("sqrt", x)


def rsqrt(x: Like):
    """1 / sqrt(x), elementwise."""
    return emit("rsqrt", x)


def tanh(x: Like):
    """Hyperbolic tangent, elementwise."""
    return emit("tanh", x)


def erf(x: Like):
    """The error function."""
    return emit("erf", x)


def cos(x: Like):
    """Cosine (radians), elementwise."""
    return emit("cos", x)


def sin(x: Like):
    """Sine (radians), elementwise."""
    return emit("sin", x)


def clamp(x: Like, min: Like | None = None, max: Like | None = None):
    """`x` limited to [min, max], as torch.clamp: either bound may be None
    (not both); where min > max the result is max; NaN stays NaN. The
    gradient reaches x where min <= x <= max, and each bound where it wins."""
    if min is None and max is None:
        raise ConfigError(f"clamp needs min or max (at {user_location()})")
    if min is not None:
        x = where(x < min, min, x)
    if max is not None:
        x = where(x > max, max, x)
    return x


clip = clamp


# -- activations ---------------------------------------------------------------
def sigmoid(x: Like):
    """1 / (1 + e**-x), elementwise."""
    return emit("sigmoid", x)


def relu(x: Like, inplace: bool = False):
    """max(x, 0). `inplace`, here and in the other activations that PyTorch
    gives it, is accepted and ignored: traced tensors have no storage."""
    return emit("relu", x)


def relu6(x: Like, inplace: bool = False):
    """min(max(x, 0), 6), as torch.nn.functional.relu6 (gradient 0 at 0 and 6)."""
    return hardtanh(x, 0.0, 6.0)


def hardtanh(x: Like, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False):
    """`x` limited to [min_val, max_val]; as PyTorch, the gradient is 1
    strictly inside the interval and 0 at and beyond its ends."""
    if min_val > max_val:
        raise ConfigError(f"hardtanh: min_val {min_val} is above max_val {max_val} (at {user_location()})")
    x = where(x <= min_val, min_val, x)
    return where(x >= max_val, max_val, x)


def leaky_relu(x: Like, negative_slope: float = 0.01, inplace: bool = False):
    """x where x > 0, else negative_slope * x (torch.nn.functional.leaky_relu)."""
    return emit("leaky_relu", x, alpha=negative_slope)


def prelu(x: TensorOps, weight: TensorOps):
    """`x` where x > 0, else weight * x, with one weight per channel (axis 1)
    or a single weight, as torch.nn.functional.prelu."""
    count = weight.shape[0] if weight.ndim == 1 else -1
    if weight.ndim != 1 or (count != 1 and (x.ndim < 2 or x.shape[1] != count)):
        raise ShapeError(
            f"prelu: weight of shape {list(weight.shape)} does not fit input of shape {list(x.shape)}: it needs "
            f"one weight, or one per channel (axis 1) (at {user_location()})"
        )
    if count != 1 and x.ndim > 2:
        weight = reshape(weight, (count, *[1] * (x.ndim - 2)))
    return where(x > 0, x, weight * x)


def elu(x: Like, alpha: float = 1.0, inplace: bool = False):
    """x where x > 0, else alpha * (e**x - 1)."""
    return emit("elu", x, alpha=alpha)


def gelu(x: Like, approximate: str = "none"):
    """GELU as torch.nn.functional.gelu: exact (0.5x(1 + erf(x / sqrt(2))))
    by default, or its tanh approximation with approximate="tanh"."""
    if approximate == "none":
        return emit("gelu", x)
    if approximate == "tanh":
        return emit("gelu_tanh", x)
    raise ConfigError(f'gelu: approximate must be "none" or "tanh", got {approximate!r} (at {user_location()})')


def silu(x: Like, inplace: bool = False):
    """x * sigmoid(x)."""
    return emit("silu", x)


def mish(x: Like, inplace: bool = False):
    """x * tanh(softplus(x))."""
    return emit("mish", x)


def softplus(x: Like, beta: float = 1.0, threshold: float = 20.0):
    """log(1 + e**(beta x)) / beta, and x itself where beta x > threshold (as PyTorch)."""
    return emit("softplus", x, beta=beta, threshold=threshold)


def softsign(x: Like):
    """x / (1 + |x|)."""
    return x / (abs(x) + 1.0)


def hardswish(x: Like, inplace: bool = False):
    """x * relu6(x + 3) / 6."""
    return emit("hardswish", x)


def hardsigmoid(x: Like, inplace: bool = False):
    """relu6(x + 3) / 6."""
    return emit("hardsigmoid", x)


# -- comparisons and selection ---------------------------------------------------
def equal(x: Like, y: Like):
    """x == y, elementwise (bool)."""
    return emit("eq", x, y)


def not_equal(x: Like, y: Like):
    """x != y, elementwise (bool)."""
    return emit("ne", x, y)


def where(condition: TensorOps, x: Like, y: Like):
    """`x` where `condition` is true, else `y` (broadcasting all three).
    Where both branches are Python numbers, they become constants of the
    model's float dtype (booleans stay booleans)."""
    numbers = not isinstance(x, TensorOps) and not isinstance(y, TensorOps)
    if numbers and not (isinstance(x, bool) and isinstance(y, bool)):
        dtype = _float_dtype()
        x, y = (constant(v, dtype) for v in (x, y))
    return emit("select", condition, x, y)


def _float_dtype() -> DType:
    """The float dtype of the model being traced: that of its first float argument."""
    for argument in active_trace().graph.arguments:
        if argument.type.dtype.is_float:
            return argument.type.dtype
    return DType.float32


def constant(value: float | int | bool, dtype: DType | str):
    """A scalar constant of `dtype`."""
    return emit("constant", value=value, dtype=dtype)


def cast(x: TensorOps, dtype: DType | str):
    """`x` converted to `dtype` (float to int truncates toward zero)."""
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
def sum(
    x: TensorOps, axis: Axis = None, keepdims: bool | None = None, *, dim: Axis = None, keepdim: bool | None = None
):
    """The sum over `dim` (all axes by default), keeping reduced axes as size 1 with `keepdim`."""
    return _reduce("sum", x, axis, keepdims, dim, keepdim)


def mean(
    x: TensorOps, axis: Axis = None, keepdims: bool | None = None, *, dim: Axis = None, keepdim: bool | None = None
):
    """The mean over `dim` (all axes by default), keeping reduced axes as size 1 with `keepdim`."""
    return _reduce("mean", x, axis, keepdims, dim, keepdim)


def max(
    x: TensorOps, axis: Axis = None, keepdims: bool | None = None, *, dim: Axis = None, keepdim: bool | None = None
):
    """The largest element over axes (torch.amax: values only; ties share the gradient)."""
    return _reduce("max", x, axis, keepdims, dim, keepdim)


def min(
    x: TensorOps, axis: Axis = None, keepdims: bool | None = None, *, dim: Axis = None, keepdim: bool | None = None
):
    """The smallest element over axes (torch.amin: values only; ties share the gradient)."""
    return neg(max(neg(x), axis, keepdims, dim=dim, keepdim=keepdim))


def layer_norm(
    x: TensorOps,
    normalized_shape: int | Sequence[int],
    weight: TensorOps | None = None,
    bias: TensorOps | None = None,
    eps: float = 1e-5,
):
    """PyTorch's layer normalization: `(x - mean) / sqrt(var + eps) * weight + bias`
    over the last `len(normalized_shape)` axes, with the biased variance."""
    shape = _normalized_shape(normalized_shape)
    tail = tuple(x.shape[x.ndim - len(shape) :]) if len(shape) <= x.ndim else None
    if tail != shape:
        raise ShapeError(
            f"layer_norm: normalized_shape {list(shape)} does not match the last axes of an input of shape "
            f"{list(x.shape)} (at {user_location()})"
        )
    axes = list(range(x.ndim - len(shape), x.ndim))
    centered = x - mean(x, axes, keepdims=True)
    y = centered * rsqrt(mean(centered * centered, axes, keepdims=True) + eps)
    if weight is not None:
        y = y * weight
    return y + bias if bias is not None else y


def _normalized_shape(normalized_shape: int | Sequence[int]) -> tuple[int, ...]:
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if not shape or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise ShapeError(f"normalized_shape must be positive integers, got {normalized_shape!r} (at {user_location()})")
    return shape


amax = max
amin = min


def var(
    x: TensorOps,
    axis: Axis = None,
    unbiased: bool | None = None,
    keepdims: bool | None = None,
    *,
    dim: Axis = None,
    keepdim: bool | None = None,
    correction: float | None = None,
):
    """The variance over axes, as torch.var: the sum of squared deviations
    divided by N - correction (default 1, Bessel's correction; unbiased=False
    means correction=0). No more than N - correction elements give inf or NaN."""
    if unbiased is not None and correction is not None:
        raise ConfigError(f"var: give unbiased= or correction=, not both (at {user_location()})")
    if correction is None:
        correction = 0 if unbiased is False else 1
    axes = _axes(x, _either("axis", axis, "dim", dim, None))
    keep = _either("keepdims", keepdims, "keepdim", keepdim, False)
    deviation = x - mean(x, axes, keepdims=True)
    count = emit("size", x, axes=axes, dtype=x.dtype)
    return sum(deviation * deviation, axes, keepdims=keep) / maximum(count - correction, 0.0)


def std(
    x: TensorOps,
    axis: Axis = None,
    unbiased: bool | None = None,
    keepdims: bool | None = None,
    *,
    dim: Axis = None,
    keepdim: bool | None = None,
    correction: float | None = None,
):
    """The standard deviation over axes, as torch.std: sqrt of `var`."""
    return sqrt(var(x, axis, unbiased, keepdims, dim=dim, keepdim=keepdim, correction=correction))


def softmax(x: TensorOps, axis: int | None = None, *, dim: int | None = None):
    """exp(x) / sum(exp(x)) along `dim` (default the last axis), computed stably."""
    return emit("softmax", x, axis=_axes(x, _either("axis", axis, "dim", dim, -1))[0])


def log_softmax(x: TensorOps, axis: int | None = None, *, dim: int | None = None):
    """log(softmax(x)) along `dim` (default the last axis), computed stably."""
    return emit("log_softmax", x, axis=_axes(x, _either("axis", axis, "dim", dim, -1))[0])


# -- linear algebra and layout ----------------------------------------------
def matmul(a: TensorOps, b: TensorOps, transpose_a: bool = False, transpose_b: bool = False):
    """The matrix product a @ b, either operand optionally transposed."""
    return emit("matmul", a, b, transpose_a=transpose_a, transpose_b=transpose_b)


def linear(x: TensorOps, weight: TensorOps, bias: TensorOps | None = None):
    """`x @ weight.T + bias`, with `weight` stored `[out_features, in_features]` as in PyTorch."""
    y = matmul(x, weight, transpose_b=True)
    return y + bias if bias is not None else y


def transpose(x: TensorOps, axes: Sequence[int] | None = None):
    """`x` with its axes permuted by `axes` (reversed by default): a view, no copy."""
    perm = list(reversed(range(x.ndim))) if axes is None else [a % x.ndim for a in axes]
    return emit("transpose", x, perm=perm)


def reshape(x: TensorOps, shape: Sequence[int | str]):
    """Reshape; one dimension may be -1, inferred from the others: a size, or
    a symbolic size such as the batch B that the other dimensions leave out
    (`x.view(-1, 784)` of an x of shape [B, 28, 28])."""
    shape = list(shape)
    if shape.count(-1) == 1:
        shape[shape.index(-1)] = _inferred_dimension(x.shape, [d for d in shape if d != -1])
    return emit("reshape", x, shape=shape)


def _inferred_dimension(source: Sequence[int | str], known: Sequence[int | str]) -> int | str:
    missing = Counter(_symbols(source)) - Counter(_symbols(known))
    extra = Counter(_symbols(known)) - Counter(_symbols(source))
    sizes = (_static_size(source), _static_size(known))
    if not missing and not extra and sizes[1] and sizes[0] % sizes[1] == 0:
        return sizes[0] // sizes[1]
    if builtins.sum(missing.values()) == 1 and not extra and sizes[0] == sizes[1]:
        return next(iter(missing))
    raise ShapeError(
        f"cannot infer -1 in reshape of {list(source)} to a shape with {list(known)} (at {user_location()})"
    )


def flatten(x: TensorOps, start_dim: int = 0, end_dim: int = -1):
    """Axes start_dim..end_dim merged into one, as torch.flatten. The batch
    axis B merges only with axes of size 1 (its size is known when the program runs)."""
    if x.ndim == 0:
        return reshape(x, (1,))
    start, end = _axes(x, start_dim)[0], _axes(x, end_dim)[0]
    if start > end:
        raise ShapeError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} (at {user_location()})")
    merged = x.shape[start : end + 1]
    symbols = _symbols(merged)
    if symbols and (len(symbols) > 1 or _static_size(merged) != 1):
        raise ShapeError(
            f"flatten cannot merge axes {start}..{end} of shape {list(x.shape)}: symbolic size "
            f"{symbols[0]} merges only with axes of size 1 (at {user_location()})"
        )
    size = symbols[0] if symbols else _static_size(merged)
    return reshape(x, (*x.shape[:start], size, *x.shape[end + 1 :]))


def unsqueeze(x: TensorOps, dim: int):
    """`x` with a new axis of size 1 at `dim` (from -rank-1 to rank), as torch.unsqueeze."""
    rank = x.ndim
    if not -rank - 1 <= dim <= rank:
        raise ShapeError(f"unsqueeze: dim {dim} is out of range for shape {list(x.shape)} (at {user_location()})")
    position = dim % (rank + 1)
    return reshape(x, (*x.shape[:position], 1, *x.shape[position:]))


def squeeze(x: TensorOps, dim: Axis = None):
    """`x` without its axes of size 1 (only those in `dim`, if given), as
    torch.squeeze. A symbolic axis such as the batch B is never removed."""
    axes = _axes(x, dim)
    return reshape(x, [d for i, d in enumerate(x.shape) if not (i in axes and d == 1)])


def _symbols(shape: Sequence[int | str]) -> list[str]:
    return sorted(d for d in shape if isinstance(d, str))


def _static_size(shape: Sequence[int | str]) -> int:
    return math.prod(d for d in shape if isinstance(d, int))


def broadcast_to(x: TensorOps, shape: Sequence[int | str]):
    """`x` repeated along new leading and size-1 axes to `shape` (a view, no copy)."""
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
    """1.0 at each label's class index along a new last axis of `num_classes`, else 0."""
    return emit("one_hot", labels, num_classes=num_classes, dtype=dtype)


__all__ = [
    "abs",
    "add",
    "amax",
    "amin",
    "broadcast_to",
    "cast",
    "cat",
    "clamp",
    "clip",
    "constant",
    "cos",
    "div",
    "dropout",
    "elu",
    "embedding",
    "equal",
    "erf",
    "exp",
    "expm1",
    "flatten",
    "gelu",
    "hardsigmoid",
    "hardswish",
    "hardtanh",
    "layer_norm",
    "leaky_relu",
    "linear",
    "log",
    "log1p",
    "log_softmax",
    "matmul",
    "max",
    "maximum",
    "mean",
    "min",
    "minimum",
    "mish",
    "mul",
    "neg",
    "not_equal",
    "one_hot",
    "pow",
    "prelu",
    "relu",
    "relu6",
    "reshape",
    "rsqrt",
    "sigmoid",
    "silu",
    "sin",
    "softmax",
    "softplus",
    "softsign",
    "sqrt",
    "squeeze",
    "stack",
    "std",
    "sub",
    "sum",
    "tanh",
    "transpose",
    "unsqueeze",
    "var",
    "where",
]
