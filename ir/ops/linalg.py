"""Matrix multiplication."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ShapeError
from ..opdef import Attr, OpDef
from ..types import TensorType
from .rules import require_float, require_same_dtype


def _matmul_infer(types: Sequence[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    a, b = types
    dtype = require_same_dtype("matmul", types)
    require_float("matmul", a)
    if a.rank != 2 or b.rank != 2:
        raise ShapeError(f"op 'matmul' needs two matrices (rank 2), got {a} and {b}")
    m, ka = reversed(a.shape) if attrs["transpose_a"] else a.shape
    kb, n = reversed(b.shape) if attrs["transpose_b"] else b.shape
    if ka != kb:
        raise ShapeError(
            f"op 'matmul': inner dimensions differ ({ka} vs {kb}) for {a} and {b} "
            f"with transpose_a={attrs['transpose_a']}, transpose_b={attrs['transpose_b']}"
        )
    return TensorType(dtype, (m, n))


def _matmul(a, b, transpose_a, transpose_b):
    return (a.T if transpose_a else a) @ (b.T if transpose_b else b)


def _matmul_vjp(b, node, g, wanted):
    """C = op(A) op(B): each gradient is one matmul with the transposes that
    keep every operand in its stored layout."""
    x, y = node.inputs
    ta, tb = node.attrs["transpose_a"], node.attrs["transpose_b"]
    dx = dy = None
    if wanted[0]:
        dx = b.matmul(y, g, transpose_a=ta and tb, transpose_b=True) if ta else b.matmul(g, y, transpose_b=not tb)
    if wanted[1]:
        dy = b.matmul(g, x, transpose_a=True, transpose_b=ta) if tb else b.matmul(x, g, transpose_a=not ta)
    return [dx, dy]


OPS = [
    OpDef(
        "matmul",
        2,
        _matmul_infer,
        _matmul,
        _matmul_vjp,
        "matmul",
        attrs=(Attr("transpose_a", "bool", False), Attr("transpose_b", "bool", False)),
        domains=("real", "real"),
        doc="op(A) @ op(B), where op transposes when its flag is set",
    ),
]
