"""The process group of native collective kernels (compiler/codegen/collective.py).

`ember_allreduce_sum`, which those kernels call, is a callback into Python
that sums the data over the group active on the calling thread
(ir/collectives.py). The kernels call it only while `ember_active_groups`
is not 0: `reducing_over` (here) counts the groups active in the process,
so a step outside any group costs no callback.

A callback cannot raise through native code: an error is kept and raised
when the block of `reducing_over` ends."""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from ..compiler.plan import ACTIVE_GROUPS, ALLREDUCE_DTYPES, ALLREDUCE_SUM
from ..ir import collectives
from ..ir.collectives import AllreduceSum, active_group

_ELEMENTS = tuple(np.ctypeslib.as_ctypes_type(dtype.numpy) for dtype in ALLREDUCE_DTYPES)
_PENDING = threading.local()


@ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32)
def _allreduce_sum(data: int, count: int, dtype_code: int) -> None:
    group = active_group()
    if group is None or count == 0:
        return
    try:
        group(np.ctypeslib.as_array((_ELEMENTS[dtype_code] * count).from_address(data)))
    except BaseException as error:
        _PENDING.error = error


_PUBLISHED = False
_LOCK = threading.Lock()
_ACTIVE_GROUPS = ctypes.c_int64(0)


@contextmanager
def reducing_over(allreduce_sum: AllreduceSum) -> Iterator[None]:
    """Collectives run by this thread inside the block, natively or by the
    reference interpreter, sum over the group of `allreduce_sum`. An error
    the group raised inside native code is raised at the end of the block."""
    with collectives.reducing_over(allreduce_sum):
        with _LOCK:
            _ACTIVE_GROUPS.value += 1
        try:
            yield
        finally:
            with _LOCK:
                _ACTIVE_GROUPS.value -= 1
    _raise_pending()


def publish() -> None:
    """Let native code loaded from now on call `ember_allreduce_sum` (once per process)."""
    global _PUBLISHED
    with _LOCK:
        if not _PUBLISHED:
            import llvmlite.binding as llvm

            llvm.add_symbol(ALLREDUCE_SUM, ctypes.cast(_allreduce_sum, ctypes.c_void_p).value)
            llvm.add_symbol(ACTIVE_GROUPS, ctypes.addressof(_ACTIVE_GROUPS))
            _PUBLISHED = True


def _raise_pending() -> None:
    """Raise the error a collective of this thread met in native code, if any."""
    error = getattr(_PENDING, "error", None)
    if error is not None:
        _PENDING.error = None
        raise error
