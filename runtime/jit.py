"""Loading machine code into memory as callable functions.

A program's machine code loads as a shared library when the compile cache
linked one and the thread pool's code is a library too (its symbols are
what the kernels call; runtime/shared_library.py), and otherwise through
LLVM's JIT linker (MCJIT), from the object code.

A loaded module is shared while it is in use: every program whose graph
compiled to the same code calls one copy, and the copy is freed when the
last of them is gone. Nothing is kept here for later reuse: the compile
caches keep machine code (in this process: compiler/native.py; on disk:
object_cache.py), and loading it again takes milliseconds."""

from __future__ import annotations

import contextlib
import weakref
from typing import Protocol

from ..compiler.codegen.target import Target
from ..compiler.native import MachineCode
from . import shared_library

_LOADED: weakref.WeakValueDictionary[bytes, JitModule] = weakref.WeakValueDictionary()


class LoadedCode(Protocol):
    nbytes: int

    def address(self, name: str) -> int: ...


def load(code: MachineCode, target: Target) -> LoadedCode:
    """`code` loaded once and shared while in use (the code is immutable;
    each caller keeps its own argument blocks)."""
    from .threads import pool

    kernels_call = pool()
    if code.library and kernels_call.is_library:
        with contextlib.suppress(OSError):  # the loader refused it: the JIT loads the object
            return shared_library.load(code.library)
    module = _LOADED.get(code.object_code)
    if module is None:
        kernels_call.publish()
        module = _LOADED[code.object_code] = JitModule(code.object_code, target, code.parts)
    return module


def loaded() -> list[LoadedCode]:
    """The modules in use now."""
    return [*_LOADED.values(), *shared_library.loaded()]


class JitModule:
    """Object code of one optimized module, resident for the object's
    lifetime: its execution engine is disposed with it (llvmlite disposes
    an engine when the Python object goes; measured: RSS stays flat over
    60 modules loaded and dropped)."""

    def __init__(self, object_code: bytes, target: Target, parts: tuple[bytes, ...] = ()) -> None:
        # The engine gets no IR, only the object code: MCJIT would compile IR
        # again (seconds), while loading object code takes milliseconds, and
        # the engine then holds the code alone (measured on the digits
        # training step: 0.14 MB instead of 2.7 MB). It owns its module and
        # its own target machine.
        import llvmlite.binding as llvm

        self._engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), target.create_target_machine())
        # a module compiled in parts loads as its parts' objects: MCJIT misreads
        # the constant pools of objects joined by `cc -r` (the linker does not)
        for code in parts or (object_code,):
            self._engine.add_object_file(llvm.ObjectFileRef.from_data(code))
        self._engine.finalize_object()
        self.nbytes = len(object_code)

    def address(self, name: str) -> int:
        """The address of function or variable `name`."""
        address = self._engine.get_function_address(name) or self._engine.get_global_value_address(name)
        if not address:
            raise KeyError(f"no symbol {name!r} in the compiled module")
        return address
