"""Machine code kept on disk between processes.

A program compiled once is loaded from here by every later process that
compiles the same program for the same machine with the same ember,
llvmlite and LLVM (the key, NativeBuild.cache_key, is a hash of all of
them). An entry is one file, `<key>.emc`:

    magic (8 bytes) | SHA-256 of the rest (32) | key (64, hex) | MachineCode bytes

Writes go to a temporary file in the same directory, then `os.replace`:
a reader sees a whole entry or none, and processes compiling the same
program at once leave one entry. A file that is truncated, corrupt or
filed under another key fails its checks, is removed, and the program is
compiled again; it is never loaded. The directory is kept under a size
limit, least recently used entries removed first (a hit refreshes the
file's modification time).

    EMBER_CACHE=0              no disk cache
    EMBER_CACHE_DIR=PATH       where (default: the platform's user cache
                               directory, e.g. ~/.cache/ember on Linux)
    EMBER_CACHE_MAX_BYTES=N    the size limit (default 512 MiB)

The cache never makes a compile fail: a directory that cannot be written
is reported once, with a warning, and compiling goes on without it."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from ..compiler.codegen.target import Target
from ..compiler.native import MachineCode, NativeBuild, module_key
from ..compiler.symbolic import Poly
from ..ir import ConfigError
from .shared_library import link

MAGIC = b"EMBERMC1"
SUFFIX = ".emc"
HOST_PREFIX = "host-"
"""Files `host-<fingerprint>.json` beside the entries describe CPUs (runtime/host.py)."""
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
_HEADER = len(MAGIC) + 32 + 64


@dataclass(frozen=True)
class DiskCacheInfo:
    """What `ember cache info` reports."""

    directory: Path
    entries: int
    bytes: int
    limit_bytes: int


class ObjectCache:
    """Machine code by key, one file per entry in `directory`."""

    def __init__(self, directory: Path, limit_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.directory = Path(directory)
        self.limit_bytes = limit_bytes
        self._warned = False

    def get(self, key: str) -> MachineCode | None:
        """The entry of `key` if there is a whole, intact one; else None
        (a damaged entry is removed)."""
        path = self._path(key)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        code = _decode(data, key)
        if code is None:
            _remove(path)
            return None
        with contextlib.suppress(OSError):  # another process removed it meanwhile
            os.utime(path)  # recently used: evicted last
        return code

    def put(self, key: str, code: MachineCode) -> None:
        """Store `code` under `key` atomically, then keep the directory under its limit."""
        payload = key.encode() + code.to_bytes()
        data = MAGIC + hashlib.sha256(payload).digest() + payload
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=SUFFIX)
            try:
                with os.fdopen(handle, "wb") as f:
                    f.write(data)
                os.replace(temporary, self._path(key))
            except BaseException:
                _remove(Path(temporary))
                raise
            self._evict()
        except OSError as e:
            if not self._warned:
                self._warned = True
                warnings.warn(f"ember: the compile cache in {self.directory} is not used: {e}", stacklevel=2)

    def get_object(self, key: str) -> bytes | None:
        """The object code stored under `key` by `put_object`, if intact."""
        code = self.get(key)
        return None if code is None else code.object_code

    def put_object(self, key: str, object_code: bytes) -> None:
        """Store the object code of a function compiled once per machine
        (compiler/shared_code.py): it is linked into programs, not loaded."""
        self.put(key, MachineCode(object_code, Poly(), 0))

    def info(self) -> DiskCacheInfo:
        """Where the cache is, what it holds now, and its limit."""
        entries = self._entries()
        return DiskCacheInfo(self.directory, len(entries), sum(size for _, size, _ in entries), self.limit_bytes)

    def clear(self) -> int:
        """Remove every entry (and stray temporary files, and the CPU
        descriptions); the number of entries removed."""
        entries = self._entries(temporary=True)
        for path, _, _ in entries:
            _remove(path)
        for path in self.directory.glob(f"{HOST_PREFIX}*.json"):
            _remove(path)
        return len(entries)

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}{SUFFIX}"

    def _entries(self, temporary: bool = False) -> list[tuple[Path, int, float]]:
        """(path, size, last use) of each entry."""
        found = []
        try:
            scan = list(os.scandir(self.directory))
        except OSError:
            return []
        for item in scan:
            if not item.name.endswith(SUFFIX) or (item.name.startswith(".tmp-") and not temporary):
                continue
            try:
                stat = item.stat()
            except OSError:  # removed meanwhile by another process
                continue
            found.append((Path(item.path), stat.st_size, stat.st_mtime))
        return found

    def _evict(self) -> None:
        """Remove the least recently used entries while over the limit."""
        entries = self._entries()
        total = sum(size for _, size, _ in entries)
        for path, size, _ in sorted(entries, key=lambda e: e[2]):
            if total <= self.limit_bytes:
                break
            _remove(path)
            total -= size


def _decode(data: bytes, key: str) -> MachineCode | None:
    """The machine code in `data` if it is a whole entry for `key`."""
    if len(data) < _HEADER or not data.startswith(MAGIC):
        return None
    checksum, payload = data[len(MAGIC) : len(MAGIC) + 32], data[len(MAGIC) + 32 :]
    if hashlib.sha256(payload).digest() != checksum or payload[:64] != key.encode():
        return None
    try:
        return MachineCode.from_bytes(payload[64:])
    except ValueError:
        return None


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):  # gone already, or not ours to remove
        path.unlink()


def default_cache() -> ObjectCache | None:
    """The cache the environment asks for (see the module docstring), or None when off."""
    if os.environ.get("EMBER_CACHE", "1").strip() == "0":
        return None
    directory = os.environ.get("EMBER_CACHE_DIR") or platformdirs.user_cache_dir("ember", appauthor=False)
    text = os.environ.get("EMBER_CACHE_MAX_BYTES", "")
    try:
        limit = int(text) if text else DEFAULT_MAX_BYTES
    except ValueError:
        limit = -1
    if limit < 0:
        raise ConfigError(f"EMBER_CACHE_MAX_BYTES must be a number of bytes >= 0, got {text!r}")
    cache = _CACHES.get((directory, limit))
    if cache is None:
        cache = _CACHES[(directory, limit)] = ObjectCache(Path(directory), limit)
    return cache


_CACHES: dict[tuple[str, int], ObjectCache] = {}


def machine_code(build: NativeBuild, graph: str) -> MachineCode:
    """The machine code of `graph`: compiled in this process already, else
    from the disk cache, else compiled now (and stored there, with the
    shared library it links to where a C compiler can link one)."""
    kept = build.kept(graph)
    if kept is not None:
        return kept.machine_code
    cache = default_cache()
    build.shared_store = cache  # the matmul library's objects are kept here too
    if cache is None:
        return build.compiled(graph).machine_code
    start = time.perf_counter()
    key = build.cache_key(graph)
    code = cache.get(key)
    build.log.count("cache-lookup", time.perf_counter() - start)
    if code is None:
        compiled = build.compiled(graph)
        start = time.perf_counter()
        compiled.library = link(compiled.optimized.object_code)
        build.log.count("link", time.perf_counter() - start)
        code = compiled.machine_code
        cache.put(key, code)
    return code


def support_code(description: str, target: Target, compile_module: Callable[[], bytes]) -> MachineCode:
    """The machine code of a module that is not a program's (the thread
    pool's): from the disk cache, else `compile_module()` (object code),
    linked too when stored. `description` names the module; with ember's
    compiler source (in every key) it must determine the module's code."""
    cache = default_cache()
    if cache is None:
        return MachineCode(compile_module(), Poly(), 0)
    key = module_key(description, target)
    code = cache.get(key)
    if code is None:
        object_code = compile_module()
        code = MachineCode(object_code, Poly(), 0, link(object_code))
        cache.put(key, code)
    return code
