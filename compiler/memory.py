"""Memory layout: arenas of named tensors and the workspace of a program.

Every tensor starts on a 64-byte boundary (a cache line, and the widest
vector load). Sizes that depend on the batch size are polynomials in `B`;
rounding each coefficient up to 64 bytes keeps every offset aligned for
any `B`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .symbolic import Poly, product

ALIGNMENT = 64


def aligned_bytes(size: Poly) -> Poly:
    """`size` bytes rounded up, coefficient by coefficient, to `ALIGNMENT`."""
    return Poly._make({m: -(-c // ALIGNMENT) * ALIGNMENT for m, c in size.terms})


def arena_layout(shapes: Mapping[str, Sequence[int]], itemsize: int) -> tuple[dict[str, int], int]:
    """Byte offsets of static-shaped tensors packed in order, and the total size."""
    offsets = {}
    total = 0
    for name, shape in shapes.items():
        offsets[name] = total
        total += aligned_bytes(product(shape) * itemsize).constant
    return offsets, total
