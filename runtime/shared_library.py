"""Machine code as a shared library: linked once, loaded without LLVM.

Loading object code needs LLVM's JIT linker (runtime/jit.py), and with it
llvmlite.binding, ~30 ms to import: more than a warm compile's whole budget.
So when the compile cache stores new machine code, the runtime also links
the object (position-independent: compiler/backend.py) into a shared
library with the system's C compiler, and the cache keeps both. A later
process loads the library with the dynamic loader in well under a
millisecond: the cache entry's checked bytes are written to a new private
temporary file, under a name this process never used before (the loader
takes a name it has loaded already for that library), loaded, and
unlinked. Without a C compiler, or off Linux, the JIT loads the object
code as before.

The process's thread pool's library is loaded first and with global
symbols, so the kernels' calls to `ember_parallel_for` and
`ember_allreduce_sum` resolve to it; kernel libraries (every program has a
`train_step`) and other pools' libraries are loaded with local symbols,
and kernel libraries are unloaded when no program uses them."""

from __future__ import annotations

import _ctypes
import ctypes
import itertools
import os
import tempfile
import weakref
from pathlib import Path

from ..compiler.toolchain import linker, run_linker

_LOADED: weakref.WeakValueDictionary[bytes, SharedLibrary] = weakref.WeakValueDictionary()
_NAMES = itertools.count()
LINK_SECONDS = 60
"""A link that takes longer is given up (the JIT loads the object instead)."""


def link(object_code: bytes) -> bytes:
    """`object_code` linked into a shared library; b"" if it cannot be (no
    linker, or the link failed or hung: the JIT loads the object code then)."""
    compiler = linker()
    if compiler is None:
        return b""
    # No C runtime: the symbols the code calls (memcpy, the pool's) are
    # the process's. -Bsymbolic: the library's own references bind to its
    # own definitions (a second pool's library must not reach the first's state).
    flags = ["-shared", "-nostdlib", "-Wl,-Bsymbolic"]
    return run_linker(compiler, flags, [object_code], LINK_SECONDS) or b""


def loaded() -> list[SharedLibrary]:
    """The kernel libraries in use now."""
    return list(_LOADED.values())


def load(library: bytes, global_symbols: bool = False) -> SharedLibrary:
    """`library` loaded (an OSError if the dynamic loader refuses it): a
    kernel library once and shared while in use, one with `global_symbols`
    (the process's thread pool's) for the process's lifetime."""
    if global_symbols:
        return SharedLibrary(library, global_symbols=True)
    loaded = _LOADED.get(library)
    if loaded is None:
        loaded = _LOADED[library] = SharedLibrary(library)
    return loaded


class SharedLibrary:
    """A shared library loaded from bytes, unloaded with this object (unless
    its symbols are global: others may be bound to them)."""

    def __init__(self, library: bytes, global_symbols: bool = False) -> None:
        # mkstemp: a new file only this user reads and writes; the process and
        # a counter in its name: never a name the loader has seen in this process
        fd, name = tempfile.mkstemp(prefix=f"ember-code-{os.getpid()}-{next(_NAMES)}-", suffix=".so")
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(library)
            mode = ctypes.RTLD_GLOBAL if global_symbols else ctypes.RTLD_LOCAL
            self._library = ctypes.CDLL(str(path), mode=mode)
        finally:
            path.unlink()  # the loader keeps its own mapping
        self.nbytes = len(library)
        if not global_symbols:
            weakref.finalize(self, _ctypes.dlclose, self._library._handle)

    def address(self, name: str) -> int:
        """The address of function or variable `name`."""
        try:
            return ctypes.cast(self._library[name], ctypes.c_void_p).value
        except AttributeError:
            raise KeyError(f"no symbol {name!r} in the compiled library") from None
