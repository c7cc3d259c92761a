"""Arenas: several named arrays carved out of one contiguous buffer.

Parameters, gradients and optimizer state each live in one arena, so one
pointer reaches all of them (for native code) and one collective reduces
all gradients (for data-parallel training). Every view starts on a
64-byte boundary, so vector loads of each row start aligned."""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from ..compiler.memory import ALIGNMENT, arena_layout


class Arena:
    """A buffer and its views, one per name, in the order given."""

    def __init__(self, shapes: Mapping[str, Sequence[int]], dtype: np.dtype) -> None:
        self.dtype = np.dtype(dtype)
        # The same layout the compiler assumes when native code addresses a view.
        self.byte_offsets, nbytes = arena_layout(shapes, self.dtype.itemsize)
        self.offsets = {name: offset // self.dtype.itemsize for name, offset in self.byte_offsets.items()}
        size = nbytes // self.dtype.itemsize
        self.size = size
        self.buffer = aligned_empty(size, self.dtype)
        self.buffer[:] = 0
        self.views: dict[str, np.ndarray] = {
            name: self.buffer[self.offsets[name] : self.offsets[name] + int(np.prod(shape, dtype=np.int64))].reshape(
                shape
            )
            for name, shape in shapes.items()
        }

    def __getitem__(self, name: str) -> np.ndarray:
        return self.views[name]

    def __contains__(self, name: str) -> bool:
        return name in self.views

    def names(self) -> list[str]:
        return list(self.views)

    def copies(self) -> dict[str, np.ndarray]:
        """A dict of independent copies of every view."""
        return {k: v.copy() for k, v in self.views.items()}


def aligned_empty(size: int, dtype: np.dtype, alignment: int = ALIGNMENT) -> np.ndarray:
    """An uninitialized 1-D array of `size` elements whose data starts on an
    `alignment`-byte boundary."""
    return aligned_array((size,), dtype, alignment)[0]


def aligned_array(shape: Sequence[int], dtype: np.dtype, alignment: int = ALIGNMENT) -> tuple[np.ndarray, int]:
    """An uninitialized C-contiguous array of `shape` whose data starts on an
    `alignment`-byte boundary, and that address."""
    dtype = np.dtype(dtype)
    raw = np.empty(math.prod(shape) * dtype.itemsize + alignment, dtype=np.uint8)
    address = data_address(raw)
    start = -address % alignment
    return np.ndarray(shape, dtype, raw, start), address + start


def data_address(array: np.ndarray) -> int:
    """The address of `array`'s first element, read from the array object
    (0.2 us; `.ctypes.data` and `__array_interface__` take 1.5 us each, and
    a small training step reads five addresses)."""
    if _DATA_POINTER is None or type(array) is not np.ndarray:
        return array.__array_interface__["data"][0]
    return _DATA_POINTER(id(array) + object.__basicsize__).value or 0


def _data_pointer() -> Callable[[int], ctypes.c_void_p] | None:
    """How to read the data pointer NumPy keeps right after the object
    header of an array (`PyArrayObject.data`): `c_void_p.from_address` when
    reading it there gives the address NumPy reports for a few probe
    arrays, else None (another layout; `data_address` then asks NumPy)."""
    base = np.arange(24, dtype=np.float64)
    probes = [base, base[3:], base.reshape(4, 6)[1:, 2:], np.ones((), np.float32), np.empty(0)]
    for probe in probes:
        read = ctypes.c_void_p.from_address(id(probe) + object.__basicsize__).value or 0
        if read != probe.__array_interface__["data"][0]:
            return None
    return ctypes.c_void_p.from_address


_DATA_POINTER = _data_pointer()
