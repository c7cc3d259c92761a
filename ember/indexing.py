"""Basic indexing of traced tensors: `x[:, 0]`, `x[..., ::2]`, `x[None]`.

An index becomes at most one `slice` op (a strided view in compiled code,
never a copy) and one `reshape` that drops the axes taken by integers and
adds the axes asked for by `None`. As in NumPy and PyTorch: integers may be
negative, slices clip to the axis, one `...` stands for the axes not named.
The batch axis (size B, unknown until run time) is only taken whole (`:`)."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

from .ir import ShapeError
from .tensor import Tensor, TensorOps, emit, user_location


@dataclass
class _Axis:
    """What the index does to one input axis: keep `size` elements from
    `start` by `step`, and drop the axis afterwards when an integer took it."""

    start: int
    step: int
    size: int | str
    drop: bool = False


def getitem(x: TensorOps, key: Any) -> Tensor:
    """`x[key]` for integers, slices, `...` and `None` (and tuples of them)."""
    items = _expand(key if isinstance(key, tuple) else (key,), x.ndim)
    axes: list[_Axis] = []
    shape: list[int | str] = []
    dims = iter(enumerate(x.shape))
    for item in items:
        if item is None:
            shape.append(1)
            continue
        axis, n = next(dims)
        taken = _axis(item, axis, n)
        axes.append(taken)
        if not taken.drop:
            shape.append(taken.size)
    result = x
    if any((a.start, a.step, a.size) != (0, 1, n) for a, n in zip(axes, x.shape, strict=True)):
        result = emit(
            "slice",
            x,
            starts=[a.start for a in axes],
            steps=[a.step for a in axes],
            shape=[a.size for a in axes],
        )
    if tuple(shape) != tuple(result.shape):
        result = emit("reshape", result, shape=shape)
    return result if isinstance(result, Tensor) else Tensor(result._value())


def _expand(items: tuple, rank: int) -> list:
    """The index with `...` replaced by full slices and missing trailing axes added."""
    ellipses = sum(item is Ellipsis for item in items)
    if ellipses > 1:
        raise ShapeError(f"an index can only have a single ellipsis ('...') (at {user_location()})")
    named = sum(item is not None and item is not Ellipsis for item in items)
    if named > rank:
        raise ShapeError(f"too many indices for a tensor of rank {rank}: {named} given (at {user_location()})")
    fill = [slice(None)] * (rank - named)
    if not ellipses:
        return [*items, *fill]
    at = items.index(Ellipsis)
    return [*items[:at], *fill, *items[at + 1 :]]


def _axis(item: Any, axis: int, n: int | str) -> _Axis:
    if isinstance(item, slice):
        return _slice_axis(item, axis, n)
    if isinstance(item, bool) or not hasattr(item, "__index__"):
        raise ShapeError(
            f"cannot index a traced tensor with {type(item).__name__} {item!r}: use integers, slices, "
            f"'...' or None (at {user_location()})"
        )
    if isinstance(n, str):
        _batch_error(axis, n, item)
    index = operator.index(item)
    if not -n <= index < n:
        raise ShapeError(f"index {index} is out of range for axis {axis} of size {n} (at {user_location()})")
    return _Axis(index % n, 1, 1, drop=True)


def _slice_axis(item: slice, axis: int, n: int | str) -> _Axis:
    for part in (item.start, item.stop, item.step):
        if part is not None and (isinstance(part, bool) or not hasattr(part, "__index__")):
            raise ShapeError(f"slice bounds must be integers or None, got {item!r} (at {user_location()})")
    if isinstance(n, str):
        if item.start is None and item.stop is None and item.step in (None, 1):
            return _Axis(0, 1, n)
        _batch_error(axis, n, item)
    if item.step == 0:
        raise ShapeError(f"slice step cannot be zero (at {user_location()})")
    start, stop, step = item.indices(n)
    size = len(range(start, stop, step))
    return _Axis(start if size else min(max(start, 0), n), step, size)


def _batch_error(axis: int, n: str, item: Any) -> None:
    shown = _show(item)
    raise ShapeError(
        f"cannot index axis {axis} of size {n} (the batch, known only at run time) with {shown}: "
        f"only ':' takes it (at {user_location()})"
    )


def _show(item: Any) -> str:
    if not isinstance(item, slice):
        return repr(item)
    parts = ["" if p is None else str(p) for p in (item.start, item.stop, item.step)]
    return ":".join(parts[:2]) + (f":{parts[2]}" if item.step is not None else "")
