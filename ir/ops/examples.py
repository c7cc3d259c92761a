"""Valid attribute values for given input types, declared on an op's `Attr`
(`Attr.examples`) so that generators of random programs (the differential
fuzzer) can build any op without knowing it: each function returns a few
values that the op's type rule accepts for inputs of those types."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from ..types import BATCH, Dim, Shape, TensorType

MAX_RANK = 4
"""Shapes proposed here stay at or below this rank."""


def axis_subsets(types: Sequence[TensorType]) -> list[tuple[int, ...]]:
    """Every subset of the first input's axes, and each non-empty one also
    written with negative indices."""
    rank = types[0].rank
    subsets = [c for k in range(rank + 1) for c in itertools.combinations(range(rank), k)]
    return subsets + [tuple(a - rank for a in s) for s in subsets if s]


def axes(types: Sequence[TensorType]) -> list[int]:
    """Each axis of the first input, by positive and by negative index."""
    rank = types[0].rank
    return list(range(-rank, rank))


def permutations(types: Sequence[TensorType]) -> list[tuple[int, ...]]:
    """Every order of the first input's axes."""
    return list(itertools.permutations(range(types[0].rank)))


def reshapes(types: Sequence[TensorType]) -> list[Shape]:
    """Shapes with the first input's elements: with size-1 axes dropped or
    added, two adjacent fixed axes merged, a fixed axis split in two, every
    fixed axis merged into one beside the symbolic ones, fixed axes reversed."""
    shape = types[0].shape
    fixed = [d for d in shape if isinstance(d, int)]
    symbols = [d for d in shape if isinstance(d, str)]
    found: list[Shape] = [tuple(d for d in shape if d != 1)]
    found += [(*shape[:i], 1, *shape[i:]) for i in range(len(shape) + 1)]
    for i in range(len(shape) - 1):
        a, b = shape[i], shape[i + 1]
        if isinstance(a, int) and isinstance(b, int):
            found.append((*shape[:i], a * b, *shape[i + 2 :]))
    for i, d in enumerate(shape):
        if isinstance(d, int):
            found += [(*shape[:i], f, d // f, *shape[i + 1 :]) for f in range(2, d) if d % f == 0]
    product = math.prod(fixed)
    found += [(*symbols, product), (product, *symbols)]
    reversed_fixed = iter(reversed(fixed))
    found.append(tuple(next(reversed_fixed) if isinstance(d, int) else d for d in shape))
    return _unique(s for s in found if len(s) <= MAX_RANK)


def broadcasts(types: Sequence[TensorType]) -> list[Shape]:
    """Shapes the first input broadcasts to: a new leading axis (of size 1,
    3 or the batch symbol B where the input has it: a symbol no argument
    binds is a size nobody knows), and each size-1 axis stretched to 3 or B."""
    shape = types[0].shape
    sizes: tuple[Dim, ...] = (1, 3, BATCH) if BATCH in shape else (1, 3)
    found: list[Shape] = [shape] + [(d, *shape) for d in sizes]
    for i, d in enumerate(shape):
        if d == 1:
            found += [(*shape[:i], n, *shape[i + 1 :]) for n in sizes[1:]]
    return _unique(s for s in found if len(s) <= MAX_RANK)


def slice_starts(types: Sequence[TensorType]) -> list[tuple[int, ...]]:
    """Starts of a slice or pad of the first input: all 0, 1 where an axis
    has room, and each fixed axis's last index."""
    shape = types[0].shape
    fixed = [isinstance(d, int) for d in shape]
    return _unique(
        [
            tuple(0 for _ in shape),
            tuple(1 if f and d > 1 else 0 for f, d in zip(fixed, shape, strict=True)),
            tuple(d - 1 if f and d > 0 else 0 for f, d in zip(fixed, shape, strict=True)),
        ]
    )


def slice_steps(types: Sequence[TensorType]) -> list[tuple[int, ...]]:
    """Steps of a slice: all 1, 2 along fixed axes, -1 along fixed axes."""
    shape = types[0].shape
    return _unique([tuple(1 for _ in shape)] + [tuple(s if isinstance(d, int) else 1 for d in shape) for s in (2, -1)])


def pad_steps(types: Sequence[TensorType]) -> list[tuple[int, ...]]:
    """Steps of a pad: all 1, and 2 along fixed axes (a negative step needs a
    start other than the default 0)."""
    return slice_steps(types)[:2]


def slice_shapes(types: Sequence[TensorType]) -> list[Shape]:
    """Result shapes of a slice: whole, about half of each fixed axis, one element of each."""
    shape = types[0].shape
    return _unique(
        [shape]
        + [
            tuple(f(d) if isinstance(d, int) else d for d in shape)
            for f in (lambda d: (d + 1) // 2, lambda d: min(d, 1))
        ]
    )


def pad_shapes(types: Sequence[TensorType]) -> list[Shape]:
    """Result shapes of a pad: the input's, one more along fixed axes, twice as long."""
    shape = types[0].shape
    longer = tuple(d + 1 if isinstance(d, int) else d for d in shape)
    doubled = tuple(2 * d if isinstance(d, int) else d for d in shape)
    return _unique([shape, longer, doubled])


def _unique(shapes) -> list[Shape]:
    return list(dict.fromkeys(shapes))
