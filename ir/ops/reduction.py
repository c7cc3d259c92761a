"""Reductions over axes (sum, mean, max) and the row-wise softmax family."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ShapeError
from ..opdef import Attr, OpDef
from ..types import TensorType, normalize_axes
from . import examples
from .rules import float_unary, require_float, require_numeric

REDUCE_ATTRS = (Attr("axes", "ints", examples=examples.axis_subsets), Attr("keepdims", "bool", False))


def reduced_shape(shape: Sequence, axes: Sequence[int], keepdims: bool) -> tuple:
    axes = normalize_axes(axes, len(shape))
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _reduce_infer(op: str, float_only: bool, needs_elements: bool):
    """The type rule of a reduction. With `needs_elements` (max), an axis of
    length 0 is an error: its result has no value, as in NumPy and PyTorch."""

    def infer(types: Sequence[TensorType], attrs: Mapping[str, Any]) -> TensorType:
        (x,) = types
        (require_float if float_only else require_numeric)(op, x)
        if needs_elements:
            require_elements(op, x, attrs["axes"])
        return x.with_shape(reduced_shape(x.shape, attrs["axes"], attrs["keepdims"]))

    return infer


def require_elements(op: str, x: TensorType, axes: Sequence[int]) -> None:
    """Reject reducing `x` over an axis of static length 0."""
    for a in normalize_axes(axes, x.rank):
        if x.shape[a] == 0:
            raise ShapeError(f"op '{op}' needs elements along axis {a} of {x}, which has length 0")


def _expand(b, g, node):
    """The cotangent of a reduction, broadcast back to the input's shape."""
    x = node.inputs[0]
    if not node.attrs["keepdims"]:
        g = b.reshape(g, shape=reduced_shape(x.type.shape, node.attrs["axes"], True))
    return b.broadcast_to(g, shape=x.type.shape)


def _mean_vjp(b, node, g, wanted):
    x = node.inputs[0]
    count = b.size(x, axes=normalize_axes(node.attrs["axes"], x.type.rank), dtype=x.type.dtype)
    return [b.div(_expand(b, g, node), count)]


def _max_vjp(b, node, g, wanted):
    # As PyTorch's amax: ties share the gradient equally.
    x = node.inputs[0]
    axes = node.attrs["axes"]
    peak = (
        node.output if node.attrs["keepdims"] else b.reshape(node.output, shape=reduced_shape(x.type.shape, axes, True))
    )
    mask = b.eq(x, peak)
    count = b.sum(b.cast(mask, dtype=x.type.dtype), axes=axes, keepdims=True)
    g_keep = g if node.attrs["keepdims"] else b.reshape(g, shape=peak.type.shape)
    return [b.select(mask, b.div(g_keep, count), 0.0)]


def _mean(x: np.ndarray, axis, keepdims: bool) -> np.ndarray:
    # np.mean's own sum and division, without its warning for a mean of no elements (0 / 0).
    return np.sum(x, axis=axis, keepdims=keepdims) / math.prod(x.shape[a] for a in axis)


def _max(x: np.ndarray, axis, keepdims: bool) -> np.ndarray:
    # Over no elements, the identity native code starts from: -inf, or the integer minimum.
    lowest = np.iinfo(x.dtype).min if x.dtype.kind in "iu" else -np.inf
    return np.max(x, axis=axis, keepdims=keepdims, initial=lowest)


def _log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    shifted = x - _max(x, axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - _max(x, axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def _softmax_infer(op: str):
    rule = float_unary(op)

    def infer(types: Sequence[TensorType], attrs: Mapping[str, Any]) -> TensorType:
        require_elements(op, types[0], [attrs["axis"]])  # it subtracts the max along the axis
        return rule(types, attrs)

    return infer


def _softmax_vjp(b, node, g, wanted):
    y = node.output
    dot = b.sum(b.mul(g, y), axes=[node.attrs["axis"]], keepdims=True)
    return [b.mul(y, b.sub(g, dot))]


def _log_softmax_vjp(b, node, g, wanted):
    total = b.sum(g, axes=[node.attrs["axis"]], keepdims=True)
    return [b.sub(g, b.mul(b.exp(node.output), total))]


def _lower_mean(b, node):
    """sum times the reciprocal of the element count."""
    x = node.inputs[0]
    count = b.size(x, axes=node.attrs["axes"], dtype=x.type.dtype)
    return b.mul(b.sum(x, axes=node.attrs["axes"], keepdims=node.attrs["keepdims"]), b.div(1.0, count))


def _shifted(b, node):
    """x minus its max along the axis (the stable form), and that axis."""
    x = node.inputs[0]
    axes = [node.attrs["axis"] % x.type.rank]
    return b.sub(x, b.max(x, axes=axes, keepdims=True)), axes


def _lower_softmax(b, node):
    shifted, axes = _shifted(b, node)
    e = b.exp(shifted)
    return b.div(e, b.sum(e, axes=axes, keepdims=True))


def _lower_log_softmax(b, node):
    shifted, axes = _shifted(b, node)
    return b.sub(shifted, b.log(b.sum(b.exp(shifted), axes=axes, keepdims=True)))


def reduction(name, evaluate, vjp, doc, combine, identity, float_only=False, needs_elements=False, lower=None) -> OpDef:
    return OpDef(
        name,
        1,
        _reduce_infer(name, float_only, needs_elements),
        lambda x, axes, keepdims: np.asarray(evaluate(x, axis=axes, keepdims=keepdims)),
        vjp,
        "reduction",
        attrs=REDUCE_ATTRS,
        domains=("real",),
        doc=doc,
        emit=combine,
        identity=identity,
        accumulate=lambda v, domain, axes, keepdims: v.unreduce(domain, axes),
        lower=lower,
    )


OPS = [
    reduction("sum", np.sum, lambda b, n, g, w: [_expand(b, g, n)], "sum over axes", lambda m, a, x: m.add(a, x), 0.0),
    reduction(
        "mean",
        _mean,
        _mean_vjp,
        "mean over axes (NaN over no elements)",
        None,
        None,
        float_only=True,
        lower=_lower_mean,
    ),
    reduction(
        "max",
        _max,
        _max_vjp,
        "max over axes (a static axis of length 0 is an error; B = 0 gives the lowest value)",
        lambda m, a, x: m.maximum(a, x),
        -math.inf,
        needs_elements=True,
    ),
    OpDef(
        "softmax",
        1,
        _softmax_infer("softmax"),
        _softmax,
        _softmax_vjp,
        "softmax",
        attrs=(Attr("axis", "int", -1, examples=examples.axes),),
        domains=("real",),
        doc="exp(x) / sum(exp(x)) along axis, computed stably",
        lower=_lower_softmax,
    ),
    OpDef(
        "log_softmax",
        1,
        _softmax_infer("log_softmax"),
        _log_softmax,
        _log_softmax_vjp,
        "softmax",
        attrs=(Attr("axis", "int", -1, examples=examples.axes),),
        domains=("real",),
        doc="x - log(sum(exp(x))) along axis, computed stably",
        lower=_lower_log_softmax,
    ),
]
