"""Ops that make values: constants, sizes, one-hot encodings and casts."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import DTypeError, IRError, ShapeError
from ..opdef import Attr, OpDef
from ..types import TensorType, normalize_axes
from . import examples


def _constant_infer(types: Sequence[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    value, dtype = attrs["value"], attrs["dtype"]
    if isinstance(value, int) and abs(value) >= 2**1024:  # beyond every float, and too long to print
        raise IRError(f"op 'constant': an integer of {value.bit_length()} bits is not a value of {dtype}")
    if dtype.is_int:
        # Both backends truncate toward zero; what they cannot do is store a
        # number outside the type (NumPy raises, native code would wrap).
        info = np.iinfo(dtype.numpy)
        finite = not isinstance(value, float) or math.isfinite(value)
        if not finite or not info.min <= math.trunc(value) <= info.max:
            raise IRError(f"op 'constant': {value!r} is not a value of {dtype} (range [{info.min}, {info.max}])")
    return TensorType(dtype, ())


def _size_infer(types: Sequence[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    normalize_axes(attrs["axes"], types[0].rank)
    return TensorType(attrs["dtype"], ())


def _one_hot_infer(types: Sequence[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    (labels,) = types
    if not labels.dtype.is_int:
        raise DTypeError(f"op 'one_hot' needs integer labels, got {labels}")
    if attrs["num_classes"] < 1:
        raise ShapeError(f"op 'one_hot' needs num_classes >= 1, got {attrs['num_classes']}")
    # Class indices are compared in the labels' type, so they must fit it.
    if attrs["num_classes"] - 1 > np.iinfo(labels.dtype.numpy).max:
        raise ShapeError(f"op 'one_hot': {attrs['num_classes']} classes cannot be indexed by {labels.dtype} labels")
    return TensorType(attrs["dtype"], (*labels.shape, attrs["num_classes"]))


def _cast_vjp(b, node, g, wanted):
    source = node.inputs[0].type.dtype
    return [b.cast(g, dtype=source) if source.is_float and g.type.dtype.is_float else None]


OPS = [
    OpDef(
        "constant",
        0,
        _constant_infer,
        lambda value, dtype: np.asarray(value, dtype.numpy),
        None,
        "source",
        attrs=(Attr("value", "scalar"), Attr("dtype", "dtype")),
        doc="a scalar constant (broadcasting makes it any shape)",
        emit=lambda m, value, dtype: m.const(value, dtype),
    ),
    OpDef(
        "size",
        1,
        _size_infer,
        lambda x, axes, dtype: np.asarray(math.prod(x.shape[a] for a in axes), dtype.numpy),
        None,
        "source",
        attrs=(Attr("axes", "ints", examples=examples.axis_subsets), Attr("dtype", "dtype")),
        domains=("any",),
        doc="the number of elements along axes of the input (known at run time for B)",
        counts=lambda shape, axes, dtype: [shape[a] for a in axes],
    ),
    OpDef(
        "one_hot",
        1,
        _one_hot_infer,
        lambda y, num_classes, dtype: (y[..., None] == np.arange(num_classes)).astype(dtype.numpy),
        None,
        "source",
        attrs=(Attr("num_classes", "int"), Attr("dtype", "dtype")),
        domains=("label",),
        doc="1 at each label's class index, else 0 (out-of-range labels give all zeros)",
        emit=lambda m, y, num_classes, dtype: m.cast(m.compare("eq", y, m.index(-1, y.dtype)), dtype),
        uses_index=True,
        leading_inputs=(0,),
    ),
    OpDef(
        "cast",
        1,
        lambda types, attrs: types[0].with_dtype(attrs["dtype"]),
        lambda x, dtype: x.astype(dtype.numpy),
        _cast_vjp,
        "elementwise",
        attrs=(Attr("dtype", "dtype"),),
        domains=("any",),
        doc="convert elements to dtype (float to int truncates toward zero)",
        emit=lambda m, x, dtype: m.cast(x, dtype),
    ),
]
