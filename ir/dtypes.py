"""Element types of tensors."""

from __future__ import annotations

import enum

import numpy as np


class DType(enum.Enum):
    """An element type. The value is the short name used in IR text."""

    float32 = "f32"
    float64 = "f64"
    int32 = "i32"
    int64 = "i64"
    bool = "bool"

    @property
    def numpy(self) -> np.dtype:
        """The NumPy dtype with the same layout."""
        return _NUMPY_DTYPES[self]

    @property
    def is_float(self) -> bool:
        return self in (DType.float32, DType.float64)

    @property
    def is_int(self) -> bool:
        return self in (DType.int32, DType.int64)

    @property
    def itemsize(self) -> int:
        return self.numpy.itemsize

    @staticmethod
    def parse(name: str | DType | np.dtype | type) -> DType:
        """Accept a DType, its IR short name (`f32`), its long name (`float32`)
        or a NumPy dtype; raise `KeyError` for anything else."""
        if isinstance(name, DType):
            return name
        if isinstance(name, str):
            if name in _BY_SHORT:
                return _BY_SHORT[name]
            if name in DType.__members__:
                return DType[name]
            raise KeyError(name)
        if not isinstance(name, np.dtype | type):  # np.dtype(None) is float64, np.dtype(("i4", "f4")) is int32
            raise KeyError(name)
        return _BY_NUMPY[np.dtype(name)]

    def __str__(self) -> str:
        return self.value


_NUMPY_NAMES = {
    DType.float32: "float32",
    DType.float64: "float64",
    DType.int32: "int32",
    DType.int64: "int64",
    DType.bool: "bool",
}
_NUMPY_DTYPES = {d: np.dtype(n) for d, n in _NUMPY_NAMES.items()}
_BY_SHORT = {d.value: d for d in DType}
_BY_NUMPY = {np.dtype(n): d for d, n in _NUMPY_NAMES.items()}

f32, f64, i32, i64 = DType.float32, DType.float64, DType.int32, DType.int64
