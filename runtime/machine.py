"""What this machine can do, measured once per process: the fused
multiply-add peak of one core (a generated kernel of independent FMA
chains, compiler/codegen/peak.py), the rate of the CPU's cycle counter,
and the copy bandwidth of one core (a generated copy loop) with working
sets the size of each cache level and beyond.
These are the roofs a profile compares each kernel with."""

from __future__ import annotations

import ctypes
import functools
import time
from dataclasses import dataclass

import numpy as np

from ..ir import DType
from .arena import aligned_empty, data_address
from .host import host
from .jit import JitModule

_PEAK = ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.c_void_p)
_COUNTER = ctypes.CFUNCTYPE(ctypes.c_int64)
_COPY = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)


@dataclass(frozen=True)
class Bandwidth:
    """Bytes per second one core copies (read + write) with data of each size."""

    level: str
    fits: int
    """The largest working set (bytes) this level serves."""
    bytes_per_second: float


@functools.cache
def _module(dtype: DType) -> JitModule:
    """The probes' module (LLVM and the code generator load with it, not with ember)."""
    from ..compiler.backend import compile_module
    from ..compiler.codegen import peak

    target = host()
    return JitModule(compile_module(peak.emit_peak_module(target, dtype), target).object_code, target)


@functools.cache
def fma_peak(dtype: DType = DType.float32) -> float:
    """Floating-point operations per second of one core doing nothing but
    vector FMAs (2 per lane), the best of a few runs of ~5 ms."""
    from ..compiler.codegen import peak

    target = host()
    run = _PEAK(_module(dtype).address(peak.PEAK_FUNCTION))
    out = np.zeros(target.lanes(dtype), dtype.numpy)
    iterations = 1 << 20
    run(1000, data_address(out))
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        run(iterations, data_address(out))
        best = min(best, time.perf_counter() - start)
    return iterations * peak.chains(target) * target.lanes(dtype) * 2 / best


def cycle_counter() -> int:
    """The CPU's cycle counter now (rdtsc on x86: a constant rate)."""
    from ..compiler.codegen import peak

    return _COUNTER(_module(DType.float32).address(peak.COUNTER_FUNCTION))()


@functools.cache
def counter_rate() -> float:
    """Ticks of `cycle_counter` per second, against time.perf_counter over 20 ms."""
    from ..compiler.codegen import peak

    read = _COUNTER(_module(DType.float32).address(peak.COUNTER_FUNCTION))
    start, ticks = time.perf_counter(), read()
    while time.perf_counter() - start < 0.02:
        pass
    return (read() - ticks) / (time.perf_counter() - start)


@functools.cache
def copy_bandwidths() -> tuple[Bandwidth, ...]:
    """Copy bandwidth with working sets that fit in L1, L2, L3, and in none
    (4x L3, at least 64 MiB): the roofs of kernels that move that much."""
    from ..compiler.codegen import peak

    target = host()
    levels = [
        ("L1", target.l1d_bytes, target.l1d_bytes // 2),
        ("L2", target.l2_bytes, target.l2_bytes // 2),
        ("L3", target.l3_bytes, target.l3_bytes // 2),
        ("DRAM", 2**62, max(4 * target.l3_bytes, 64 << 20)),
    ]
    copy = _COPY(_module(DType.float32).address(peak.COPY_FUNCTION))
    vector_bytes = target.vector_bits // 8
    results = []
    for level, fits, working_set in levels:
        vectors = max(working_set // 2 // vector_bytes, 1)
        source = aligned_empty(vectors * vector_bytes, np.uint8)
        source[:] = 1
        destination = aligned_empty(source.size, np.uint8)
        repeats = max(1, (64 << 20) // working_set)
        copy(data_address(destination), data_address(source), vectors, 1)  # touch the pages
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            copy(data_address(destination), data_address(source), vectors, repeats)
            best = min(best, (time.perf_counter() - start) / repeats)
        results.append(Bandwidth(level, fits, 2 * source.nbytes / best))
    return tuple(results)


def bandwidth_for(nbytes: int) -> Bandwidth:
    """The copy bandwidth of the smallest level that holds `nbytes`."""
    return next(b for b in copy_bandwidths() if nbytes <= b.fits)
