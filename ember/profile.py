"""`Program.profile`: where a step's time goes, kernel by kernel.

The native module holds, next to each entry, a profiled twin that reads
the CPU's cycle counter around every kernel call (compiler/codegen/
module.py); a profile runs it for a number of steps and prints what
`torch.profiler`'s key averages print, plus what a compiler can say about
each kernel: the operations and bytes it moves (compiler/cost.py), hence
its GFLOP/s and GB/s, and the roofline bound it is closest to, from the
machine's measured FMA peak and copy bandwidth (runtime/machine.py).

    kernel  computes                      time us  % step  GFLOP/s   GB/s  bound   % roof
    k12     matmul 512x784x128 +sub,...     812.4    31.0     50.4   11.3  compute   47.0

`% roof` is the time the roofline allows (operations at the peak of the
threads used, or bytes at the copy bandwidth of the smallest cache level
that holds them, whichever is longer) over the measured time. A kernel
that mostly reads can pass 100% of a memory roof: copies (one read, one
write per byte) set it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .compiler.cost import describe, kernel_bytes, kernel_flops
from .compiler.plan import KernelProgram
from .ir import DType
from .runtime import machine, threads

WARMUP_STEPS = 3
"""Steps run before the profiled ones: buffers sized, caches and pool warm."""


@dataclass(frozen=True)
class KernelTime:
    """One kernel's share of a step."""

    name: str
    computes: str
    seconds: float
    """Mean time per step."""
    flops: int
    bytes: int
    bound: str
    """`compute`, or `memory (L2|L3|DRAM)`: what the roofline says limits
    it; `collective` for an all-reduce across processes (its roof: the copy)."""
    roof_seconds: float
    """The least time the roofline allows."""

    @property
    def gflops(self) -> float:
        return self.flops / self.seconds / 1e9 if self.seconds else 0.0

    @property
    def gbytes(self) -> float:
        return self.bytes / self.seconds / 1e9 if self.seconds else 0.0

    @property
    def roof_fraction(self) -> float:
        """How close to the roofline: 1.0 is at the roof."""
        return self.roof_seconds / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class Profile:
    """The kernels of one entry, timed over `steps` calls."""

    entry: str
    sizes: dict[str, int]
    steps: int
    threads: int
    kernels: list[KernelTime]
    native_seconds: float
    """Mean time per step inside the native entry (all kernels and what lies between them)."""
    step_seconds: float
    """Mean time per step from Python: checks, the call and the native entry."""
    peak_flops: float
    """The FMA peak of the threads used (operations per second)."""

    @property
    def kernel_seconds(self) -> float:
        return sum(k.seconds for k in self.kernels)

    def share(self, kind: str) -> float:
        """The fraction of the step's native time spent in kernels of `kind` (`matmul`, `rows`, ...)."""
        spent = sum(k.seconds for k in self.kernels if k.computes.startswith(kind))
        return spent / self.native_seconds if self.native_seconds else 0.0

    def table(self, sort_by: str = "time", limit: int | None = None) -> str:
        """The profile as text: one row per kernel (`sort_by="time"`, most
        first, or `"order"`, as they run), then the totals."""
        if sort_by not in ("time", "order"):
            raise ValueError(f"sort_by must be 'time' or 'order', got {sort_by!r}")
        rows = sorted(self.kernels, key=lambda k: -k.seconds) if sort_by == "time" else list(self.kernels)
        rows = rows[:limit] if limit is not None else rows
        width = max([len(k.computes) for k in rows] + [8])
        header = (
            f"{'kernel':<7} {'computes':<{width}} {'time us':>9} {'% step':>7} "
            f"{'GFLOP/s':>8} {'GB/s':>7}  {'bound':<13} {'% roof':>6}"
        )
        lines = [header, "-" * len(header)]
        step = self.native_seconds or 1.0
        for k in rows:
            lines.append(
                f"{k.name:<7} {k.computes:<{width}} {k.seconds * 1e6:>9.1f} {100 * k.seconds / step:>7.1f} "
                f"{k.gflops:>8.1f} {k.gbytes:>7.1f}  {k.bound:<13} {100 * k.roof_fraction:>6.1f}"
            )
        sizes = ", ".join(f"{name}={size}" for name, size in self.sizes.items())
        overhead = self.step_seconds - self.native_seconds
        lines += [
            "-" * len(header),
            f"{self.entry}({sizes}), {self.threads} thread(s), mean of {self.steps} steps: "
            f"native {self.native_seconds * 1e6:.1f} us (kernels {self.kernel_seconds * 1e6:.1f}), "
            f"from Python {self.step_seconds * 1e6:.1f} us ({overhead * 1e6:.1f} outside native code)",
            f"roofs: {self.peak_flops / 1e9:.0f} GFLOP/s FMA peak; copy bandwidth "
            + ", ".join(f"{b.level} {b.bytes_per_second / 1e9:.0f}" for b in machine.copy_bandwidths())
            + " GB/s",
        ]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def profile_entry(
    program: KernelProgram, sizes: dict[str, int], step: Callable[[np.ndarray], object], steps: int
) -> Profile:
    """Profile `program` (an entry's kernels, at symbol `sizes`) over `steps`
    calls of `step(ticks)`, which runs one step the way the public method
    does (checks included) through the profiled entry, adding to `ticks`.
    The caller restores any state the steps change."""
    ticks = np.zeros(len(program.kernels) + 1, np.int64)
    for _ in range(WARMUP_STEPS):
        step(ticks)
    ticks[:] = 0
    start = time.perf_counter()
    for _ in range(steps):
        step(ticks)
    step_seconds = (time.perf_counter() - start) / steps
    seconds = ticks / machine.counter_rate() / steps
    count = threads.get_num_threads()
    peak = machine.fma_peak(_float_dtype(program)) * count
    kernels = []
    for kernel, spent in zip(program.kernels, seconds[:-1], strict=True):
        flops, nbytes = kernel_flops(kernel, sizes), kernel_bytes(program, kernel, sizes)
        memory = machine.bandwidth_for(nbytes)
        compute_time, memory_time = flops / peak, nbytes / memory.bytes_per_second
        bound = "compute" if compute_time >= memory_time else f"memory ({memory.level})"
        if kernel.kind == "collective":
            bound = "collective"
        roof = max(compute_time, memory_time)
        kernels.append(KernelTime(kernel.name, describe(kernel, sizes), float(spent), flops, nbytes, bound, roof))
    return Profile(program.name, sizes, steps, count, kernels, float(seconds[-1]), step_seconds, peak)


def _float_dtype(program: KernelProgram) -> DType:
    """The float type the program computes in (its first float input's, or float32)."""
    return next((v.type.dtype for v in program.graph.arguments if v.type.dtype.is_float), DType.float32)
