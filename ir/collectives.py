"""The process group that collective ops (`allreduce_sum`) reduce over.

A graph that holds a collective op means "sum this value over every
process of the job". Which job that is, is not part of the graph: it is
the *active group* of the thread while the graph runs, set around a
distributed step with `reducing_over` (through runtime/collectives.py,
which also lets native code know). With no group active (an ordinary
step, inference, a job of one) a collective returns its input, so a model
with SyncBatchNorm trains alone as one with BatchNorm1d.

Both backends read the active group here: the reference interpreter calls
`allreduce_sum`, native code calls back into it (runtime/collectives.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

AllreduceSum = Callable[[np.ndarray], None]
"""Replaces a contiguous array by its sum over the group's processes, in place."""

_ACTIVE = threading.local()


def active_group() -> AllreduceSum | None:
    """The all-reduce of the group this thread's collectives reduce over now."""
    return getattr(_ACTIVE, "allreduce_sum", None)


@contextmanager
def reducing_over(allreduce_sum: AllreduceSum) -> Iterator[None]:
    """Collectives run by this thread inside the block sum over the group
    of `allreduce_sum`."""
    previous = active_group()
    _ACTIVE.allreduce_sum = allreduce_sum
    try:
        yield
    finally:
        _ACTIVE.allreduce_sum = previous


def allreduce_sum(x: np.ndarray) -> np.ndarray:
    """`x` summed over the active group: a new array (`x` itself is left alone)."""
    result = np.array(x, copy=True, order="C")
    group = active_group()
    if group is not None:
        group(result)
    return result
