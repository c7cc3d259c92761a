"""Ops that move or repeat elements without arithmetic."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ShapeError
from ..opdef import Attr, OpDef
from ..types import TensorType, broadcast_shapes
from . import examples


def _split(shape: Sequence) -> tuple[int, Counter]:
    """The product of the integer dims and the multiset of symbolic ones."""
    return math.prod(d for d in shape if isinstance(d, int)), Counter(d for d in shape if isinstance(d, str))


def _reshape_infer(types: Sequence[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    (x,) = types
    shape = attrs["shape"]
    if _split(x.shape) != _split(shape):
        raise ShapeError(f"op 'reshape' cannot reshape {x} to {list(shape)}: element counts differ")
    return x.with_shape(shape)


def _transpose_infer(types: Sequence[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    (x,) = types
    perm = attrs["perm"]
    if sorted(perm) != list(range(x.rank)):
        raise ShapeError(f"op 'transpose': perm {list(perm)} is not a permutation of the {x.rank} axes of {x}")
    return x.with_shape(x.shape[p] for p in perm)


def _broadcast_to_infer(types: Sequence[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    (x,) = types
    shape = tuple(attrs["shape"])
    try:
        ok = len(shape) >= x.rank and broadcast_shapes(x.shape, shape) == shape
    except ShapeError:
        ok = False
    if not ok:
        raise ShapeError(f"op 'broadcast_to' cannot broadcast {x} to {list(shape)}")
    return x.with_shape(shape)


def _transpose_vjp(b, node, g, wanted):
    inverse = np.argsort(node.attrs["perm"]).tolist()
    return [b.transpose(g, perm=inverse)]


OPS = [
    OpDef(
        "reshape",
        1,
        _reshape_infer,
        lambda x, shape: x.reshape(shape),
        lambda b, n, g, w: [b.reshape(g, shape=n.inputs[0].type.shape)],
        "layout",
        attrs=(Attr("shape", "shape", examples=examples.reshapes),),
        domains=("any",),
        doc="same elements, new shape (row-major order)",
        view=lambda v, shape: v.reshape(shape),
    ),
    OpDef(
        "transpose",
        1,
        _transpose_infer,
        lambda x, perm: np.transpose(x, perm),
        _transpose_vjp,
        "layout",
        attrs=(Attr("perm", "ints", examples=examples.permutations),),
        domains=("any",),
        doc="permute axes: result axis i is input axis perm[i]",
        view=lambda v, perm: v.transpose(perm),
    ),
    OpDef(
        "broadcast_to",
        1,
        _broadcast_to_infer,
        lambda x, shape: np.broadcast_to(x, shape),
        lambda b, n, g, w: [g],
        "layout",
        attrs=(Attr("shape", "shape", examples=examples.broadcasts),),
        domains=("any",),
        doc="repeat along size-1 and new leading axes (NumPy rules)",
        view=lambda v, shape: v.broadcast(shape),
    ),
]
