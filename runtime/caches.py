"""The compiled code a process keeps, seen and cleared in one place.

Three kinds: compiled graphs kept for reuse in this process (LLVM IR text
and object code, least recently used dropped first beyond a byte limit),
machine code loaded for the programs alive now (freed with the last of
them), and machine code kept on disk for later processes (object_cache.py). The
thread pool's own small module, and the two symbols it adds to LLVM's
process-wide symbol table, are loaded once and stay for the process."""

from __future__ import annotations

from dataclasses import dataclass

from ..compiler.native import COMPILE_CACHE
from ..compiler.shared_code import SHARED_OBJECTS
from . import jit
from .object_cache import DiskCacheInfo, default_cache


@dataclass(frozen=True)
class CacheInfo:
    """What `ember.cache_info()` reports."""

    compiled: int
    """Compiled graphs kept for reuse."""
    compiled_bytes: int
    """The LLVM IR text and object code they hold."""
    limit_bytes: int
    """The most kept for reuse; the least recently used go first."""
    loaded: int
    """Modules of machine code in memory, used by live programs."""
    loaded_bytes: int
    """Their machine code."""
    disk: DiskCacheInfo | None
    """The on-disk cache: directory, entries, bytes, limit (None when off)."""


def cache_info() -> CacheInfo:
    """The sizes of the compile cache and of the machine code in use."""
    modules = jit.loaded()
    return CacheInfo(
        compiled=len(COMPILE_CACHE),
        compiled_bytes=COMPILE_CACHE.nbytes,
        limit_bytes=COMPILE_CACHE.limit_bytes,
        loaded=len(modules),
        loaded_bytes=sum(m.nbytes for m in modules),
        disk=disk.info() if (disk := default_cache()) is not None else None,
    )


def clear_cache(disk: bool = False) -> None:
    """Drop every compiled graph (and matmul library object) this process
    keeps for reuse, and with `disk` every entry of the on-disk cache too:
    the next compile of any program then runs code generation and LLVM
    again. Machine code that live programs use stays until they are gone."""
    COMPILE_CACHE.clear()
    SHARED_OBJECTS.clear()
    if disk and (cache := default_cache()) is not None:
        cache.clear()
