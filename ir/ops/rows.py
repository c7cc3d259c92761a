"""Ops that read or write rows of a table by integer indices (embeddings).

Indices outside [0, rows) are clamped to the nearest row, in the reference
semantics as in native code, so that no index reaches outside the table;
`ember.nn.Embedding` rejects such indices in a program's inputs before
they get here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import DTypeError, ShapeError
from ..opdef import Attr, OpDef
from ..types import TensorType
from .rules import require_float


def _require_indices(op: str, indices: TensorType) -> None:
    if not indices.dtype.is_int:
        raise DTypeError(f"op '{op}' needs integer indices, got {indices}")


def _gather_infer(types: Sequence[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    table, indices = types
    require_float("gather", table)
    _require_indices("gather", indices)
    if table.rank != 2 or not isinstance(table.shape[0], int) or table.shape[0] < 1:
        raise ShapeError(f"op 'gather' needs a table [rows, columns] with at least one row, got {table}")
    return TensorType(table.dtype, (*indices.shape, table.shape[1]))


def _scatter_add_infer(types: Sequence[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    values, indices = types
    require_float("scatter_add", values)
    _require_indices("scatter_add", indices)
    if values.rank != indices.rank + 1 or values.shape[:-1] != indices.shape:
        raise ShapeError(f"op 'scatter_add' needs values [*indices, columns] for indices {indices}, got {values}")
    if attrs["rows"] < 1:
        raise ShapeError(f"op 'scatter_add' needs rows >= 1, got {attrs['rows']}")
    return TensorType(values.dtype, (attrs["rows"], values.shape[-1]))


def _rows(indices: np.ndarray, rows: int) -> np.ndarray:
    return np.clip(indices, 0, rows - 1)


def _gather(table: np.ndarray, indices: np.ndarray, padding_idx: int) -> np.ndarray:
    return table[_rows(indices, table.shape[0])]


def _scatter_add(values: np.ndarray, indices: np.ndarray, rows: int, skip: int) -> np.ndarray:
    out = np.zeros((rows, values.shape[-1]), values.dtype)
    kept = indices != skip if skip >= 0 else np.ones(indices.shape, bool)
    np.add.at(out, _rows(indices[kept], rows), values[kept])
    return out


def _gather_vjp(b, node, g, wanted):
    table, indices = node.inputs
    rows = table.type.shape[0]
    return [b.scatter_add(g, indices, rows=rows, skip=node.attrs["padding_idx"]), None]


def _scatter_add_vjp(b, node, g, wanted):
    indices = node.inputs[1]
    gathered = b.gather(g, indices)
    skip = node.attrs["skip"]
    if skip < 0:
        return [gathered, None]
    kept = b.reshape(b.ne(indices, b.const(skip, indices.type.dtype)), shape=(*indices.type.shape, 1))
    return [b.select(kept, gathered, 0.0), None]


def _kept(m, x, indices, skip: int):
    """`x`, or 0 where the index is the skipped row."""
    if skip < 0:
        return x
    return m.select(m.compare("ne", indices, m.const(skip, indices.dtype)), x, m.const(0, x.dtype))


OPS = [
    OpDef(
        "gather",
        2,
        _gather_infer,
        _gather,
        _gather_vjp,
        "gather",
        attrs=(Attr("padding_idx", "int", -1),),
        domains=("real", "label"),
        doc="rows of a table [rows, columns] at integer indices of any shape -> [*indices, columns] "
        "(indices clamped into the table; the padding_idx row, if >= 0, gets no gradient)",
        emit=lambda m, row, indices, padding_idx: row(indices),
        uses_index=True,
        leading_inputs=(1,),
        rows="gather",
    ),
    OpDef(
        "scatter_add",
        2,
        _scatter_add_infer,
        _scatter_add,
        _scatter_add_vjp,
        "scatter",
        attrs=(Attr("rows", "int"), Attr("skip", "int", -1)),
        domains=("real", "label"),
        doc="zeros [rows, columns] plus each row of values [*indices, columns] added at its index "
        "(clamped into the table), in order; indices equal to skip (if >= 0) add nothing",
        emit=lambda m, acc, x, indices, rows, skip: m.add(acc, _kept(m, x, indices, skip)),
        identity=0.0,
        uses_index=True,
        leading_inputs=(1,),
        rows="scatter",
    ),
]
