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
from .rules import require_numeric


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


def resolve_part(
    op: str, whole: Sequence | None, part: Sequence | None, starts: Sequence[int], steps: Sequence[int]
) -> tuple[tuple, tuple, tuple[int, ...], tuple[int, ...]]:
    """(whole shape, part shape, starts, steps) with defaults filled in and
    checked: `part[k]` elements from `starts[k]` by `steps[k]` lie in
    `whole[k]` along every axis. Starts default to 0, steps to 1; the part of
    a slice (`part` None) defaults to the rest of each axis, the whole of a
    pad (`whole` None) to the least that holds the part. A symbolic axis
    (the batch) is only taken whole."""
    rank = len(whole) if whole is not None else len(part)  # type: ignore[arg-type]
    starts = tuple(starts) or (0,) * rank
    steps = tuple(steps) or (1,) * rank
    if part is None:
        part = tuple(_rest(n, start, step) for n, start, step in zip(whole, starts, steps, strict=False))
    if whole is None:
        whole = tuple(_hull(size, start, step) for size, start, step in zip(part, starts, steps, strict=False))
    if not len(whole) == len(part) == len(starts) == len(steps):
        raise ShapeError(
            f"op '{op}' needs one start, step and size per axis of {list(whole)}, "
            f"got starts {list(starts)}, steps {list(steps)}, sizes {list(part)}"
        )
    for axis, (n, size, start, step) in enumerate(zip(whole, part, starts, steps, strict=True)):
        if isinstance(n, str) or isinstance(size, str):
            if (size, start, step) != (n, 0, 1):
                raise ShapeError(
                    f"op '{op}': axis {axis} of size {n} can only be taken whole (start 0, step 1, size {n}), "
                    f"got start {start}, step {step}, size {size}"
                )
            continue
        last = start + (size - 1) * step
        if step == 0 or (size > 0 and not (0 <= start < n and 0 <= last < n)) or not 0 <= start <= n:
            raise ShapeError(
                f"op '{op}': {size} elements from {start} by step {step} do not fit axis {axis} of size {n}"
            )
    return tuple(whole), tuple(part), starts, steps


def _rest(n, start: int, step: int):
    """How many elements from `start` by `step` stay inside an axis of `n`."""
    if isinstance(n, str) or step == 0:
        return n
    if step > 0:
        return max(0, -(-(n - start) // step))
    return start // -step + 1 if 0 <= start < n else 0


def _hull(size, start: int, step: int):
    """The least axis that holds `size` elements from `start` by `step`."""
    if isinstance(size, str) or size == 0:
        return size if isinstance(size, str) else start
    return start + 1 if step < 0 else start + (size - 1) * step + 1


def _slice_infer(types: Sequence[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    (x,) = types
    _, part, _, _ = resolve_part("slice", x.shape, attrs["shape"] or None, attrs["starts"], attrs["steps"])
    return x.with_shape(part)


def _pad_infer(types: Sequence[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    (x,) = types
    require_numeric("pad", x)
    whole, _, _, _ = resolve_part("pad", attrs["shape"] or None, x.shape, attrs["starts"], attrs["steps"])
    return x.with_shape(whole)


def part_index(shape: Sequence[int], starts: Sequence[int], steps: Sequence[int]) -> tuple[slice, ...]:
    """The NumPy index of `shape[k]` elements from `starts[k]` by `steps[k]`."""
    index = []
    for size, start, step in zip(shape, starts, steps, strict=True):
        stop = start + size * step
        index.append(slice(start, stop if stop >= 0 else None, step))
    return tuple(index)


def _slice(x: np.ndarray, starts, steps, shape) -> np.ndarray:
    _, part, starts, steps = resolve_part("slice", x.shape, shape or None, starts, steps)
    return x[part_index(part, starts, steps)]


def _pad(x: np.ndarray, starts, steps, shape) -> np.ndarray:
    whole, _, starts, steps = resolve_part("pad", shape or None, x.shape, starts, steps)
    out = np.zeros(whole, x.dtype)
    out[part_index(x.shape, starts, steps)] = x
    return out


def _slice_view(v, starts, steps, shape):
    _, part, starts, steps = resolve_part("slice", v.shape, shape or None, starts, steps)
    return v.slice(starts, steps, part)


def _pad_accumulate(v, domain, starts, steps, shape):
    _, _, starts, steps = resolve_part("pad", v.shape, domain, starts, steps)
    return v.slice(starts, steps, domain)


def _slice_vjp(b, node, g, wanted):
    a = node.attrs
    return [b.pad(g, starts=a["starts"], steps=a["steps"], shape=node.inputs[0].type.shape)]


def _pad_vjp(b, node, g, wanted):
    a = node.attrs
    return [b.slice(g, starts=a["starts"], steps=a["steps"], shape=node.inputs[0].type.shape)]


STARTS = Attr("starts", "ints", (), examples=examples.slice_starts)


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
    OpDef(
        "slice",
        1,
        _slice_infer,
        _slice,
        _slice_vjp,
        "layout",
        attrs=(
            STARTS,
            Attr("steps", "ints", (), examples=examples.slice_steps),
            Attr("shape", "shape", (), examples=examples.slice_shapes),
        ),
        domains=("any",),
        doc="shape[k] elements from starts[k] (default 0) by steps[k] (default 1, may be negative) "
        "along each axis; shape defaults to the rest of each axis",
        view=_slice_view,
    ),
    OpDef(
        "pad",
        1,
        _pad_infer,
        _pad,
        _pad_vjp,
        "scatter",
        attrs=(
            STARTS,
            Attr("steps", "ints", (), examples=examples.pad_steps),
            Attr("shape", "shape", (), examples=examples.pad_shapes),
        ),
        domains=("real",),
        doc="zeros of shape with the input at the elements a slice of the same starts and steps takes "
        "(shape defaults to the least that holds them)",
        emit=lambda m, acc, x: m.add(acc, x),
        identity=0.0,
        accumulate=_pad_accumulate,
    ),
]
