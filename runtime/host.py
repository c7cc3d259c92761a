"""The machine this process runs on, known without LLVM after the first time.

Code generation and the compile cache's keys need LLVM's name and feature
list for the host CPU. Asking LLVM means loading llvmlite.binding (~30 ms
of a warm compile's ~80), so the answer is kept in the compile cache's
directory under a fingerprint of the CPU read from /proc/cpuinfo (vendor,
family, model, stepping, flags) and of llvmlite's version: a process on the
same kind of machine reads it back, one on another machine (or with
another LLVM) asks LLVM again. Where there is no /proc/cpuinfo, or the
cache is off, LLVM is always asked."""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

from ..compiler.codegen.target import HostCPU, Target, host_target, probe_host_cpu
from .atomic_file import write_atomically
from .object_cache import HOST_PREFIX, default_cache

FORMAT = "ember host cpu 1"
_CPUINFO_FIELDS = ("vendor_id", "cpu family", "model", "model name", "stepping", "flags")


@functools.cache
def host() -> Target:
    """The machine this process runs on (compiler/codegen/target.py's
    `host_target`), its CPU read from the cache when it was seen before."""
    cache = default_cache()
    fingerprint = cpu_fingerprint()
    if cache is None or fingerprint is None:
        return host_target()
    path = cache.directory / f"{HOST_PREFIX}{fingerprint}.json"
    cpu = _read(path, fingerprint)
    if cpu is None:
        cpu = probe_host_cpu()
        record = {"fingerprint": fingerprint, "triple": cpu.triple, "cpu": cpu.cpu, "features": cpu.features}
        try:
            cache.directory.mkdir(parents=True, exist_ok=True)
            write_atomically(path, lambda f: f.write(json.dumps(record).encode()))
        except OSError:
            pass  # asked again next time; the object cache reports an unusable directory
    return host_target(cpu)


def cpu_fingerprint() -> str | None:
    """A hash of what identifies this CPU and the LLVM that describes it;
    None where /proc/cpuinfo cannot tell."""
    try:
        with open("/proc/cpuinfo") as f:
            first_cpu = f.read().split("\n\n", 1)[0]
    except OSError:
        return None
    fields = {}
    for line in first_cpu.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in _CPUINFO_FIELDS:
            fields[key.strip()] = value.strip()
    if "flags" not in fields:
        return None
    import llvmlite  # its version only: LLVM is not loaded

    parts = [FORMAT, llvmlite.__version__, os.uname().machine, json.dumps(fields, sort_keys=True)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _read(path: Path, fingerprint: str) -> HostCPU | None:
    """The CPU recorded at `path` if it is a whole record of `fingerprint`."""
    try:
        record = json.loads(path.read_bytes())
        if record["fingerprint"] == fingerprint:
            return HostCPU(str(record["triple"]), str(record["cpu"]), str(record["features"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None
