"""Collective ops: values combined across the processes of a distributed
job (see ir/collectives.py for which processes, and for the job of one)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..collectives import allreduce_sum
from ..errors import DTypeError
from ..opdef import OpDef
from ..types import TensorType


def _float_infer(types: Sequence[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    (x,) = types
    if not x.dtype.is_float:
        raise DTypeError(f"op 'allreduce_sum' sums floats, got {x}")
    return x


OPS = [
    OpDef(
        "allreduce_sum",
        1,
        _float_infer,
        allreduce_sum,
        # y = sum over ranks r of x_r: every rank's cotangent reaches every
        # x_r, so the gradient is the all-reduced sum of the cotangents
        lambda b, node, g, wanted: [b.allreduce_sum(g)],
        "collective",
        domains=("real",),
        doc="the input summed over the processes of a distributed step (the input itself otherwise)",
        emit=lambda m, x: x,  # native code copies the input, then sums the copy in place
    ),
]
