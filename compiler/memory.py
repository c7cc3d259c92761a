"""Memory layout: arenas of named tensors and the workspace of a program.

Every tensor starts on a 64-byte boundary: a cache line, so the first row
of a tensor never shares a line with another tensor, and the widest vector
load. The generated code itself needs only element alignment (its loads
and stores say so, and the matmul aligns its streams at run time), so
tensors are packed at their real sizes and only their starts are rounded:
at most 63 bytes of padding per tensor. The workspace is laid out this way
for the actual sizes of each run (`packed_offsets`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from .symbolic import product

ALIGNMENT = 64


def aligned(size: int) -> int:
    """`size` bytes rounded up to a multiple of `ALIGNMENT`."""
    return -(-size // ALIGNMENT) * ALIGNMENT


def packed_offsets(sizes: Iterable[int]) -> tuple[list[int], int]:
    """Byte offsets of buffers of `sizes` bytes placed in order, each on an
    `ALIGNMENT` boundary, and the total size."""
    offsets = []
    total = 0
    for size in sizes:
        offsets.append(total)
        total += aligned(size)
    return offsets, total


def arena_layout(shapes: Mapping[str, Sequence[int]], itemsize: int) -> tuple[dict[str, int], int]:
    """Byte offsets of static-shaped tensors packed in order, and the total size."""
    offsets, total = packed_offsets(product(shape).constant * itemsize for shape in shapes.values())
    return dict(zip(shapes, offsets, strict=True)), total
