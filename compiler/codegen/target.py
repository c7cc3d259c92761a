"""The machine ember generates code for: its LLVM CPU name and features,
vector width and cache sizes, read from the host."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import llvmlite.binding as llvm

from ...ir import DType


@functools.cache
def initialize_llvm() -> None:
    """Set up LLVM's native target once per process (`llvm.initialize()` is
    gone in llvmlite 0.50; only these two are needed)."""
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()


@dataclass(frozen=True)
class Target:
    """A CPU to generate code for."""

    triple: str
    cpu: str
    features: str
    vector_bits: int
    l1d_bytes: int
    l2_bytes: int
    l3_bytes: int
    cores: int

    def lanes(self, dtype: DType) -> int:
        """Elements of `dtype` in one vector register."""
        return max(1, self.vector_bits // (8 * dtype.itemsize))

    def create_target_machine(self) -> llvm.TargetMachine:
        """A fresh LLVM target machine (an execution engine owns the one it is
        given, so each engine needs its own)."""
        initialize_llvm()
        return llvm.Target.from_triple(self.triple).create_target_machine(
            cpu=self.cpu, features=self.features, opt=3, reloc="default", codemodel="jitdefault"
        )


_SYSFS_CACHE = "/sys/devices/system/cpu/cpu0/cache"
_UNITS = {"K": 1024, "M": 1024 * 1024, "G": 1024 * 1024 * 1024}


def _cache_sizes() -> dict[int, int]:
    """Data/unified cache size in bytes per level, from sysfs (Linux)."""
    sizes = {}
    try:
        entries = sorted(os.listdir(_SYSFS_CACHE))
    except OSError:
        return sizes
    for entry in entries:
        if not entry.startswith("index"):
            continue
        try:
            with open(f"{_SYSFS_CACHE}/{entry}/level") as f:
                level = int(f.read())
            with open(f"{_SYSFS_CACHE}/{entry}/type") as f:
                kind = f.read().strip()
            with open(f"{_SYSFS_CACHE}/{entry}/size") as f:
                text = f.read().strip()
        except (OSError, ValueError):
            continue
        if kind in ("Data", "Unified") and text:
            sizes[level] = int(text.rstrip("KMG")) * _UNITS.get(text[-1], 1)
    return sizes


@functools.cache
def host_target() -> Target:
    """The machine this process runs on."""
    initialize_llvm()
    features = llvm.get_host_cpu_features()
    flags = {name for name, enabled in features.items() if enabled}
    vector_bits = 512 if "avx512f" in flags else 256 if "avx2" in flags and "fma" in flags else 128
    caches = _cache_sizes()
    return Target(
        triple=llvm.get_process_triple(),
        cpu=llvm.get_host_cpu_name(),
        features=features.flatten(),
        vector_bits=vector_bits,
        l1d_bytes=caches.get(1, 32 * 1024),
        l2_bytes=caches.get(2, 512 * 1024),
        l3_bytes=caches.get(3, 8 * 1024 * 1024),
        cores=_cores(),
    )


def _cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
