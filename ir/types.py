"""Tensor types: an element type and a shape whose dimensions are integers or
a symbol such as `B` (the batch size, bound when the program runs)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .dtypes import DType
from .errors import ShapeError

Dim = int | str
"""A dimension: a non-negative integer, or a symbol bound at run time."""

Shape = tuple[Dim, ...]

BATCH = "B"
"""The symbol ember uses for the batch dimension."""

MAX_ELEMENTS = 2**48
"""The most elements a static shape may describe: no larger tensor fits a
48-bit address space, and byte offsets within static shapes then stay below
2**51, far inside native code's 64-bit integers."""


@dataclass(frozen=True, slots=True)
class TensorType:
    """The type of a tensor value: `f32[B,64]`, `i64[B]`, `f32[]`."""

    dtype: DType
    shape: Shape

    def __post_init__(self) -> None:
        for d in self.shape:
            valid = (isinstance(d, int) and not isinstance(d, bool) and d >= 0) or is_symbol(d)
            if not valid:
                raise ShapeError(f"invalid dimension {d!r} in shape {self.shape!r}")
        # Zeros count as ones: the strides of the other axes must fit all the same.
        if math.prod(max(d, 1) for d in self.shape if isinstance(d, int)) > MAX_ELEMENTS:
            limit = f"2**{MAX_ELEMENTS.bit_length() - 1}"
            raise ShapeError(f"shape {list(self.shape)} is too large: its dimensions multiply to more than {limit}")

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def symbols(self) -> tuple[str, ...]:
        """The symbolic dimensions, such as B."""
        return tuple(d for d in self.shape if isinstance(d, str))

    @property
    def is_static(self) -> bool:
        """True when every dimension is a known integer."""
        return all(isinstance(d, int) for d in self.shape)

    def with_shape(self, shape: Iterable[Dim]) -> TensorType:
        return TensorType(self.dtype, tuple(shape))

    def with_dtype(self, dtype: DType) -> TensorType:
        return TensorType(dtype, self.shape)

    def concrete_shape(self, bindings: Mapping[str, int]) -> tuple[int, ...]:
        """The shape with every symbol replaced by its bound size."""
        return concrete_shape(self.shape, bindings)

    def __str__(self) -> str:
        return f"{self.dtype}[{','.join(str(d) for d in self.shape)}]"


def is_symbol(d: object) -> bool:
    """Whether `d` can name a dimension: an ASCII identifier such as `B`
    (what IR text can spell)."""
    return isinstance(d, str) and d.isidentifier() and d.isascii()


def concrete_shape(shape: Sequence[Dim], bindings: Mapping[str, int]) -> tuple[int, ...]:
    """Replace each symbolic dimension of `shape` by its size in `bindings`."""
    try:
        return tuple(d if isinstance(d, int) else bindings[d] for d in shape)
    except KeyError as missing:
        raise ShapeError(f"dimension {missing.args[0]} of shape {list(shape)} is not bound") from None


def broadcast_shapes(*shapes: Shape) -> Shape:
    """NumPy broadcasting over shapes that may contain symbols.

    A symbol broadcasts with 1 and with itself; a symbol against a different
    integer (or another symbol) is an error, since the sizes could differ."""
    rank = max((len(s) for s in shapes), default=0)
    result: list[Dim] = []
    for axis in range(-rank, 0):
        dims = {s[axis] for s in shapes if len(s) >= -axis} - {1}
        if len(dims) > 1:
            shown = " and ".join(str(list(s)) for s in shapes)
            raise ShapeError(f"shapes {shown} cannot be broadcast together")
        result.append(dims.pop() if dims else 1)
    return tuple(result)


def normalize_axes(axes: Iterable[int], rank: int) -> tuple[int, ...]:
    """Sorted, non-negative axes; raise on an axis out of range or given twice
    (as 1 and -1 are for a matrix)."""
    axes = list(axes)
    out = set()
    for a in axes:
        if not -rank <= a < rank:
            raise ShapeError(f"axis {a} is out of range for a tensor of rank {rank}")
        if a % rank in out:
            raise ShapeError(f"axes {axes} name axis {a % rank} twice")
        out.add(a % rank)
    return tuple(sorted(out))


def num_elements(shape: Shape) -> int | None:
    """The element count of a static shape, or None when it has symbols."""
    if all(isinstance(d, int) for d in shape):
        return math.prod(shape)  # type: ignore[arg-type]
    return None
