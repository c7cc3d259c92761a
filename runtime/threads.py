"""The process-wide thread pool that native kernels run their tasks on.

One pool per process, started the first time native code is loaded: a
worker thread per extra core, each running compiled code on the pool's
state (see compiler/codegen/threads.py): it spins for about a millisecond
after each round, so the rounds of a step start at once, then sleeps in the
kernel until the next round, so an idle process costs no CPU.
`ember.set_num_threads(n)` (or the EMBER_NUM_THREADS environment variable,
read when the pool starts) sets how many threads a kernel may use, the
calling thread included; the default is every core this process may run
on. Workers beyond the setting sleep until it changes. On exit the workers
are woken, stopped and joined; a forked child has no workers and runs its
kernels on its one thread."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import threading

import numpy as np

from ..compiler.codegen.pool_state import FUTEXES, POOL_SLOTS, WORKERS
from ..compiler.codegen.target import Target, available_cores
from ..compiler.native import MachineCode
from ..compiler.plan import ACTIVE_GROUPS, ALLREDUCE_SUM
from ..ir import ConfigError
from . import collectives
from .arena import aligned_empty
from .host import host
from .jit import JitModule
from .object_cache import support_code
from .shared_library import SharedLibrary
from .shared_library import load as load_library

ENVIRONMENT_VARIABLE = "EMBER_NUM_THREADS"

PUBLISHED = ("ember_parallel_for", "ember_pool_threads", ALLREDUCE_SUM, ACTIVE_GROUPS)
"""The pool's symbols that kernels use."""


class ThreadPool:
    """Workers in native code plus the `ember_parallel_for` they serve.
    Idle workers sleep on futexes, or with `futex=False` (the default off
    Linux) nap a millisecond at a time."""

    def __init__(self, workers: int, futex: bool | None = None, process: bool = False) -> None:
        """`workers` threads; `process`: this is the process's pool (`pool()`),
        the one loaded kernels call."""
        futex = FUTEXES if futex is None else futex
        target = host()

        def compile_pool() -> bytes:
            # the pool's code generator and LLVM load when its code is not cached
            import llvmlite.ir as ir

            from ..compiler.backend import compile_module
            from ..compiler.codegen.collective import emit_group_support
            from ..compiler.codegen.threads import emit_pool_module

            module = ir.Module(name="ember_pool")
            emit_pool_module(module, futex)
            emit_group_support(module)
            return compile_module(str(module), target).object_code

        # the module is a function of ember's compiler (in the key) and the
        # flag: a cache hit skips generating it (~5 ms of a new process)
        code = support_code(f"ember_pool futex={futex}", target, compile_pool)
        # a library's symbols are global: kernel libraries bind to them when loaded
        self.code = (
            load_library(code.library, global_symbols=True) if code.library else JitModule(code.object_code, target)
        )
        self.state = aligned_empty(POOL_SLOTS, np.int64)
        self._workers_slot = WORKERS
        self.state[:] = 0
        init = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(self.code.address("ember_pool_init"))
        init(self.state.ctypes.data)
        self._set_workers = ctypes.CFUNCTYPE(None, ctypes.c_int64)(self.code.address("ember_pool_set_workers"))
        self._stop = ctypes.CFUNCTYPE(None)(self.code.address("ember_pool_stop"))
        serve = ctypes.CFUNCTYPE(None, ctypes.c_int64)(self.code.address("ember_worker"))
        self._threads = [
            threading.Thread(target=serve, args=(i,), name=f"ember-worker-{i}", daemon=True) for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()
        self.workers = workers
        self._published = False

    @property
    def is_library(self) -> bool:
        """Whether the pool's code is a shared library (whose symbols kernel libraries bind to)."""
        return isinstance(self.code, SharedLibrary)

    def publish(self) -> None:
        """Let object code the JIT loads from now on call this pool's
        functions and read its variables (once; loads LLVM)."""
        if not self._published:
            import llvmlite.binding as llvm

            for name in PUBLISHED:
                llvm.add_symbol(name, self.code.address(name))
            self._published = True

    @property
    def capacity(self) -> int:
        """The most threads a kernel can ever use: the workers and the caller."""
        return self.workers + 1

    @property
    def threads(self) -> int:
        """Threads a kernel may use now, the caller included."""
        return int(self.state[self._workers_slot]) + 1

    def set_threads(self, count: int) -> None:
        self._set_workers(min(count, self.workers + 1) - 1)

    def stop(self) -> None:
        """Wake every worker, let it return, and wait for them."""
        self._stop()
        for thread in self._threads:
            thread.join()
        self._threads = []
        self._set_workers(0)

    def forget_workers(self) -> None:
        """After fork: the child has none of the parent's threads."""
        self._threads = []
        self.workers = 0
        self._set_workers(0)


def _load(code: MachineCode, target: Target, global_symbols: bool) -> SharedLibrary | JitModule:
    """A pool's code as a library (the process pool's with global symbols:
    kernel libraries bind to them when loaded), else through the JIT."""
    if code.library:
        with contextlib.suppress(OSError):  # the loader refused it
            return load_library(code.library, global_symbols)
    return JitModule(code.object_code, target)


_POOL: ThreadPool | None = None
_LOCK = threading.Lock()
_REQUESTED: int | None = None


def pool() -> ThreadPool:
    """The process's pool, started on first use."""
    global _POOL
    with _LOCK:
        if _POOL is None:
            count = _REQUESTED if _REQUESTED is not None else _threads_from_environment()  # may raise: no pool yet
            _POOL = ThreadPool(available_cores() - 1, process=True)
            collectives.attach(_POOL.code.address)
            _POOL.set_threads(count)
            atexit.register(_POOL.stop)
            os.register_at_fork(after_in_child=_POOL.forget_workers)
        return _POOL


def _threads_from_environment() -> int:
    text = os.environ.get(ENVIRONMENT_VARIABLE, "")
    if not text:
        return available_cores()
    try:
        count = int(text)
    except ValueError:
        raise ConfigError(f"{ENVIRONMENT_VARIABLE} must be a positive integer, got {text!r}") from None
    if count < 1:
        raise ConfigError(f"{ENVIRONMENT_VARIABLE} must be a positive integer, got {text!r}")
    return count


def set_num_threads(count: int) -> None:
    """Use up to `count` threads (the calling thread included) in native
    kernels; more than the available cores means all of them."""
    global _REQUESTED
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ConfigError(f"set_num_threads needs a positive integer, got {count!r}")
    _REQUESTED = count
    if _POOL is not None:
        _POOL.set_threads(count)


def get_num_threads() -> int:
    """The threads native kernels may use now, the calling thread included."""
    if _POOL is not None:
        return _POOL.threads
    requested = _REQUESTED if _REQUESTED is not None else _threads_from_environment()
    return min(requested, available_cores())
