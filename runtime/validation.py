"""Checking user arrays before any backend sees them.

Every array a Program receives passes through `check_array`: it is
converted (when the conversion is safe) to the program's dtype, made
C-contiguous and aligned, and checked against the expected shape. Anything
else raises an ember error naming the argument, the expected type and what
was given."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..ir import BATCH, DType, DTypeError, Graph, InputError, ShapeError, TensorType

_ACCEPTED_KINDS = {
    "float": "fiu",  # floats, and integers converted to the program's float type
    "int": "iu",
    "bool": "b",
}


def _kind(dtype: DType) -> str:
    return "float" if dtype.is_float else "int" if dtype.is_int else "bool"


def check_array(name: str, value: Any, expected: TensorType, rows: int | None = None) -> np.ndarray:
    """`value` as a C-contiguous, aligned array of `expected`'s dtype and shape,
    with the batch dimension `B` of size `rows` (any size when None)."""
    if _already_valid(value, expected, rows):
        return value
    try:
        array = np.asarray(value)
    except Exception as e:  # arbitrary objects: ragged lists, broken __array__...
        raise DTypeError(f"{name} must be an array of numbers, got {type(value).__name__}: {e}") from None
    kind = _kind(expected.dtype)
    if array.dtype.kind not in _ACCEPTED_KINDS[kind]:
        hint = " (class labels must be integers)" if kind == "int" and array.dtype.kind == "f" else ""
        raise DTypeError(f"{name} must hold {kind} values ({expected.dtype.numpy}), got dtype {array.dtype}{hint}")
    shape = _expected_shape(name, array, expected, rows)
    if len(shape) == 2 and shape[1] == 1 and array.shape == shape[:1]:
        array = array.reshape(shape)  # a column (one output per row) given as a vector
    if array.shape != shape:
        want = [rows if d == BATCH and rows is not None else ("N" if d == BATCH else d) for d in expected.shape]
        raise ShapeError(f"{name} must have shape {want}, got {list(array.shape)}")
    if kind == "int" and array.dtype != expected.dtype.numpy:
        _check_int_range(name, array, expected.dtype.numpy)
    if kind == "float" and array.dtype.kind == "f" and array.dtype.itemsize > expected.dtype.itemsize:
        with np.errstate(over="ignore"):
            converted = array.astype(expected.dtype.numpy)
    else:
        converted = array.astype(expected.dtype.numpy, copy=False)
    return np.require(converted, requirements=["C", "A"])


def _check_int_range(name: str, array: np.ndarray, dtype: np.dtype) -> None:
    """Integers converted to a narrower type (int64 indices to an int32
    input, uint64 to int64) must keep their values."""
    if array.size == 0:
        return
    info = np.iinfo(dtype)
    low, high = array.min(), array.max()
    if low < info.min or high > info.max:
        bad = int(np.flatnonzero((array < info.min) | (array > info.max))[0])
        raise InputError(f"{name}[{bad}] = {array.flat[bad]} does not fit the input's dtype {dtype}")


def _already_valid(value: Any, expected: TensorType, rows: int | None) -> bool:
    """The common case, checked cheaply: exactly the right array already."""
    if type(value) is not np.ndarray or value.dtype != expected.dtype.numpy or value.ndim != expected.rank:
        return False
    if not (value.flags.c_contiguous and value.flags.aligned):
        return False
    for dim, size in zip(expected.shape, value.shape, strict=True):
        if dim == BATCH:
            if rows is not None and size != rows:
                return False
        elif size != dim:
            return False
    return True


def _expected_shape(name: str, array: np.ndarray, expected: TensorType, rows: int | None) -> tuple[int, ...]:
    if rows is None:
        if array.ndim == 0:
            raise ShapeError(f"{name} must have shape {expected}, got a scalar")
        rows = array.shape[0] if expected.shape and expected.shape[0] == BATCH else None
    return tuple(rows if d == BATCH else d for d in expected.shape)  # type: ignore[misc]


def check_labels(name: str, labels: np.ndarray, num_classes: int, ignore_index: int | None = None) -> None:
    """Class labels must lie in [0, num_classes), or equal `ignore_index`."""
    if labels.size == 0:
        return
    # one pass: read as unsigned, a negative label is larger than any class
    unsigned = labels.view(f"u{labels.itemsize}") if labels.dtype.kind == "i" else labels
    if unsigned.max() < num_classes and (unsigned is not labels or labels.min() >= 0):
        return
    bad = np.flatnonzero(((labels < 0) | (labels >= num_classes)) & (labels != ignore_index))
    if bad.size:
        i = int(bad[0])
        raise InputError(
            f"{name}[{i}] = {labels.flat[i]} is not a class index in [0, {num_classes}) "
            f"({bad.size} labels out of range)"
        )


def index_inputs(graph: Graph) -> dict[str, int]:
    """The inputs of `graph` whose values index the rows of a table (an
    embedding's indices), each with the fewest rows it indexes. Values reach
    the index operand of a gather or scatter_add through layout ops and casts."""
    bounds: dict[str, int] = {}
    for node in graph.nodes:
        if node.op.rows is None:
            continue
        rows = node.inputs[0].type.shape[0] if node.op.rows == "gather" else node.attrs["rows"]
        source = node.inputs[1]
        while source.node is not None and (source.node.op.view is not None or source.node.op.name == "cast"):
            source = source.node.inputs[0]
        if source.node is None and source.role == "input":
            bounds[source.name] = min(rows, bounds.get(source.name, rows))
    return bounds


def check_indices(name: str, indices: np.ndarray, rows: int) -> None:
    """Row indices must lie in [0, rows) (floats are cast toward zero first)."""
    values = np.trunc(indices) if indices.dtype.kind == "f" else indices
    with np.errstate(invalid="ignore"):
        bad = ~((values >= 0) & (values < rows))
    if not bad.any():
        return
    where = tuple(int(i) for i in np.unravel_index(int(np.flatnonzero(bad)[0]), indices.shape))
    shown = ",".join(map(str, where))
    raise InputError(
        f"{name}[{shown}] = {indices[where]} is not a row index in [0, {rows}) of an embedding table "
        f"({int(bad.sum())} indices out of range)"
    )


def check_rows(name: str, array: np.ndarray, minimum: int = 1) -> int:
    """The number of rows of a batch; at least `minimum`."""
    if array.shape[0] < minimum:
        raise InputError(f"{name} has {array.shape[0]} rows; at least {minimum} needed")
    return array.shape[0]
