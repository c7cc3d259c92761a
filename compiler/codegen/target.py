"""The machine ember generates code for: its LLVM CPU name and features,
vector width and cache sizes, read from the host."""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...ir import ConfigError, DType

if TYPE_CHECKING:
    import llvmlite.binding as llvm

# llvmlite is imported where LLVM is used, not with this module: `import
# ember` then stays free of it (~40 ms), and a program's first compile loads it.


@functools.cache
def initialize_llvm() -> None:
    """Set up LLVM's native target once per process (`llvm.initialize()` is
    gone in llvmlite 0.50; only these two are needed)."""
    import llvmlite.binding as llvm

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

    def create_target_machine(self, reloc: str = "default", codemodel: str = "jitdefault") -> llvm.TargetMachine:
        """A fresh LLVM target machine (an execution engine owns the one it is
        given, so each engine needs its own); the defaults are the JIT's, an
        object file for linking wants `reloc="pic", codemodel="small"`."""
        from ..llvm_job import target_machine

        return target_machine(self.triple, self.cpu, self.features, reloc, codemodel)


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


@dataclass(frozen=True)
class HostCPU:
    """What LLVM says of the CPU this process runs on: the target triple,
    the CPU's name and its features (`+avx2,+fma,-avx512f,...`)."""

    triple: str
    cpu: str
    features: str


def probe_host_cpu() -> HostCPU:
    """Ask LLVM (loading llvmlite.binding, ~30 ms the first time)."""
    import llvmlite.binding as llvm

    initialize_llvm()
    return HostCPU(llvm.get_process_triple(), llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten())


@functools.cache
def host_target(cpu: HostCPU | None = None) -> Target:
    """The machine this process runs on, its CPU as `cpu` describes it
    (probed with LLVM when None; runtime/host.py remembers it), its caches
    and cores as the system reports them."""
    cpu = cpu or probe_host_cpu()
    flags = {feature[1:] for feature in cpu.features.split(",") if feature.startswith("+")}
    vector_bits = 512 if "avx512f" in flags else 256 if "avx2" in flags and "fma" in flags else 128
    caches = _cache_sizes()
    return Target(
        triple=cpu.triple,
        cpu=cpu.cpu,
        features=cpu.features,
        vector_bits=vector_bits,
        l1d_bytes=caches.get(1, 32 * 1024),
        l2_bytes=caches.get(2, 512 * 1024),
        l3_bytes=caches.get(3, 8 * 1024 * 1024),
        cores=available_cores(),
    )


_PROBE = """
define void @probe(ptr %p) {
  %a = load <16 x i32>, ptr %p
  %b = add <16 x i32> %a, %a
  store <16 x i32> %b, ptr %p
  %c = load <8 x i32>, ptr %p
  %d = add <8 x i32> %c, %c
  store <8 x i32> %d, ptr %p
  %x = load <8 x float>, ptr %p
  %y = call <8 x float> @llvm.fma.v8f32(<8 x float> %x, <8 x float> %x, <8 x float> %x)
  store <8 x float> %y, ptr %p
  ret void
}
declare <8 x float> @llvm.fma.v8f32(<8 x float>, <8 x float>, <8 x float>)
"""
"""Vector code whose assembly shows a CPU's widths: zmm registers for
AVX-512, ymm integer adds for AVX2, an FMA instruction for FMA."""


_PROBE_SCRIPT = """
import sys
import llvmlite.binding as llvm
llvm.initialize_native_target()
llvm.initialize_native_asmprinter()
machine = llvm.Target.from_triple(sys.argv[1]).create_target_machine(cpu=sys.argv[2], opt=0)
print(machine.emit_assembly(llvm.parse_assembly(sys.argv[3])))
"""
"""Run in a child process: LLVM ends the process on some unknown CPU names."""


@functools.cache
def named_target(cpu: str) -> Target:
    """Code for another x86-64 CPU (an LLVM CPU name: `x86-64-v3`, `znver4`,
    `skylake-avx512`, ...) with its default features; the triple and the
    cache sizes are the host's. The vector width is read from the assembly
    LLVM generates for that CPU, so it is the one the kernels will get."""
    import subprocess

    host = host_target()
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE_SCRIPT, host.triple, cpu, _PROBE], capture_output=True, text=True
    )
    if probe.returncode != 0 or "not a recognized processor" in probe.stderr:
        raise ConfigError(f"LLVM does not know the CPU {cpu!r} (try x86-64-v2, x86-64-v3, x86-64-v4 or znver3)")
    assembly = probe.stdout
    if "zmm" in assembly:
        vector_bits = 512
    elif "vpaddd\t%ymm" in assembly and "vfmadd" in assembly:
        vector_bits = 256
    else:
        vector_bits = 128
    return Target(
        triple=host.triple,
        cpu=cpu,
        features="",
        vector_bits=vector_bits,
        l1d_bytes=host.l1d_bytes,
        l2_bytes=host.l2_bytes,
        l3_bytes=host.l3_bytes,
        cores=1,
    )


def available_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1
