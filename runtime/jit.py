"""Loading optimized modules into memory as callable machine code (MCJIT)."""

from __future__ import annotations

import llvmlite.binding as llvm

from ..compiler.backend import OptimizedModule
from ..compiler.codegen.target import Target

_LOADED: dict[tuple[str, str, str], JitModule] = {}


def load(optimized: OptimizedModule, target: Target) -> JitModule:
    """The machine code of `optimized`, loaded once per process and then shared
    (the code is immutable; each caller keeps its own argument blocks)."""
    key = (optimized.llvm_ir, target.cpu, target.features)
    if key not in _LOADED:
        _LOADED[key] = JitModule(optimized, target)
    return _LOADED[key]


class JitModule:
    """Machine code of one optimized module, resident for the object's lifetime."""

    def __init__(self, optimized: OptimizedModule, target: Target, resolve_pool: bool = True) -> None:
        if resolve_pool:  # kernels call ember_parallel_for: the pool defines it
            from .threads import pool

            pool()
        # MCJIT takes ownership of the module and of its own target machine.
        module = llvm.parse_assembly(optimized.llvm_ir)
        self._engine = llvm.create_mcjit_compiler(module, target.create_target_machine())
        self._engine.finalize_object()

    def address(self, name: str) -> int:
        """The address of function `name`."""
        address = self._engine.get_function_address(name)
        if not address:
            raise KeyError(f"no function {name!r} in the compiled module")
        return address
