"""Loading machine code into memory as callable functions (MCJIT).

A loaded module is shared while it is in use: every program whose graph
compiled to the same object code calls one copy, and the copy (with its
execution engine) is freed when the last of them is gone. Nothing is kept
here for later reuse: the compile caches keep object code (in this
process: compiler/native.py; on disk: object_cache.py), and loading it
again takes milliseconds."""

from __future__ import annotations

import weakref

from ..compiler.codegen.target import Target

_LOADED: weakref.WeakValueDictionary[bytes, JitModule] = weakref.WeakValueDictionary()


def load(object_code: bytes, target: Target) -> JitModule:
    """`object_code` loaded once and shared while in use (the code is
    immutable; each caller keeps its own argument blocks)."""
    module = _LOADED.get(object_code)
    if module is None:
        module = _LOADED[object_code] = JitModule(object_code, target)
    return module


def loaded() -> list[JitModule]:
    """The modules in use now."""
    return list(_LOADED.values())


class JitModule:
    """Object code of one optimized module, resident for the object's
    lifetime: its execution engine is disposed with it (llvmlite disposes
    an engine when the Python object goes; measured: RSS stays flat over
    60 modules loaded and dropped)."""

    def __init__(self, object_code: bytes, target: Target, resolve_pool: bool = True) -> None:
        if resolve_pool:  # kernels call ember_parallel_for (the pool's) and ember_allreduce_sum
            from .collectives import publish
            from .threads import pool

            pool()
            publish()
        # The engine gets no IR, only the object code: MCJIT would compile IR
        # again (seconds), while loading object code takes milliseconds, and
        # the engine then holds the code alone (measured on the digits
        # training step: 0.14 MB instead of 2.7 MB). It owns its module and
        # its own target machine.
        import llvmlite.binding as llvm

        self._engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), target.create_target_machine())
        self._engine.add_object_file(llvm.ObjectFileRef.from_data(object_code))
        self._engine.finalize_object()
        self.nbytes = len(object_code)

    def address(self, name: str) -> int:
        """The address of function `name`."""
        address = self._engine.get_function_address(name)
        if not address:
            raise KeyError(f"no function {name!r} in the compiled module")
        return address
