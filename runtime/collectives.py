"""The process group of native collective kernels (compiler/codegen/collective.py).

The thread pool's module holds the native side (`ember_active_groups`,
`ember_allreduce_hook`, `ember_allreduce_sum`); `attach` points its hook at
a callback into Python that sums the data over the group active on the
calling thread (ir/collectives.py). The kernels call it only while
`ember_active_groups` is not 0: `reducing_over` (here) counts the groups
active in the process, so a step outside any group costs no callback.

A callback cannot raise through native code: an error is kept and raised
when the block of `reducing_over` ends."""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

from ..compiler.plan import ACTIVE_GROUPS, ALLREDUCE_DTYPES, ALLREDUCE_HOOK
from ..ir import collectives
from ..ir.collectives import AllreduceSum, active_group

_ELEMENTS = tuple(np.ctypeslib.as_ctypes_type(dtype.numpy) for dtype in ALLREDUCE_DTYPES)
_PENDING = threading.local()
_LOCK = threading.Lock()
_active_groups = ctypes.c_int64(0)  # the pool's counter once attached


@ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32)
def _allreduce_sum(data: int, count: int, dtype_code: int) -> None:
    group = active_group()
    if group is None or count == 0:
        return
    try:
        group(np.ctypeslib.as_array((_ELEMENTS[dtype_code] * count).from_address(data)))
    except BaseException as error:
        _PENDING.error = error


def attach(address: Callable[[str], int]) -> None:
    """Connect the native side, in the loaded module whose symbols
    `address(name)` finds (the thread pool's), to this one: its hook calls
    the Python callback, its counter counts the groups active now."""
    global _active_groups
    with _LOCK:
        ctypes.c_void_p.from_address(address(ALLREDUCE_HOOK)).value = ctypes.cast(_allreduce_sum, ctypes.c_void_p).value
        native = ctypes.c_int64.from_address(address(ACTIVE_GROUPS))
        native.value = _active_groups.value
        _active_groups = native


@contextmanager
def reducing_over(allreduce_sum: AllreduceSum) -> Iterator[None]:
    """Collectives run by this thread inside the block, natively or by the
    reference interpreter, sum over the group of `allreduce_sum`. An error
    the group raised inside native code is raised at the end of the block."""
    with collectives.reducing_over(allreduce_sum):
        with _LOCK:
            _active_groups.value += 1
        try:
            yield
        finally:
            with _LOCK:
                _active_groups.value -= 1
    error = getattr(_PENDING, "error", None)
    if error is not None:
        _PENDING.error = None
        raise error
