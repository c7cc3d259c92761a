"""Type rules shared by several ops."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..dtypes import DType
from ..errors import DTypeError
from ..types import TensorType, broadcast_shapes


def require_float(op: str, t: TensorType) -> None:
    if not t.dtype.is_float:
        raise DTypeError(f"op '{op}' needs a floating-point input, got {t}")


def require_numeric(op: str, t: TensorType) -> None:
    if t.dtype is DType.bool:
        raise DTypeError(f"op '{op}' needs a numeric input, got {t}")


def require_same_dtype(op: str, types: Sequence[TensorType]) -> DType:
    dtypes = {t.dtype for t in types}
    if len(dtypes) != 1:
        raise DTypeError(f"op '{op}' needs inputs of one element type, got {', '.join(map(str, types))}")
    return dtypes.pop()


def float_unary(op: str):
    def infer(types: Sequence[TensorType], attrs: Mapping[str, Any]) -> TensorType:
        require_float(op, types[0])
        return types[0]

    return infer


def numeric_unary(op: str):
    def infer(types: Sequence[TensorType], attrs: Mapping[str, Any]) -> TensorType:
        require_numeric(op, types[0])
        return types[0]

    return infer


def broadcast_binary(op: str, float_only: bool = False):
    def infer(types: Sequence[TensorType], attrs: Mapping[str, Any]) -> TensorType:
        dtype = require_same_dtype(op, types)
        (require_float if float_only else require_numeric)(op, types[0])
        return TensorType(dtype, broadcast_shapes(*(t.shape for t in types)))

    return infer


def comparison(op: str):
    def infer(types: Sequence[TensorType], attrs: Mapping[str, Any]) -> TensorType:
        require_same_dtype(op, types)
        return TensorType(DType.bool, broadcast_shapes(*(t.shape for t in types)))

    return infer
