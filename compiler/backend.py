"""From LLVM IR text to optimized machine code for a target, without
running anything: optimization for the host CPU, assembly and object code.
The JIT (runtime/jit.py) and ahead-of-time export both start here."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import llvmlite.binding as llvm

from ..ir import EmberError
from .codegen.target import Target, initialize_llvm


@dataclass
class OptimizedModule:
    """An optimized LLVM module as text, and the target it was optimized
    for. Only the text is kept (a parsed module takes several times its
    size); assembly and object code are emitted from fresh parses of it,
    since emitting code runs more passes over a module in place."""

    llvm_ir: str
    target: Target

    @cached_property
    def assembly(self) -> str:
        return self.target.create_target_machine().emit_assembly(llvm.parse_assembly(self.llvm_ir))

    @cached_property
    def object_code(self) -> bytes:
        """Relocatable machine code for the target, as the JIT loads it."""
        return self.target.create_target_machine().emit_object(llvm.parse_assembly(self.llvm_ir))

    @property
    def nbytes(self) -> int:
        """The bytes of text and code this object holds now."""
        held = (self.__dict__.get(name, "") for name in ("assembly", "object_code"))
        return len(self.llvm_ir) + sum(len(x) for x in held)


def optimize(llvm_ir: str, target: Target, auto_vectorize: bool = True) -> OptimizedModule:
    """Parse, verify and optimize (O3 for `target`). ember's kernels are
    vectorized by hand; LLVM's loop and SLP vectorizers stay on for whatever
    scalar code remains (measured: they cost no compile time on hand-vectorized
    kernels, which they leave unchanged)."""
    initialize_llvm()
    try:
        module = llvm.parse_assembly(llvm_ir)
        module.verify()
    except RuntimeError as e:
        raise EmberError(f"generated LLVM IR is invalid (a code generator bug): {e}") from None
    module.triple = target.triple
    machine = target.create_target_machine()
    module.data_layout = str(machine.target_data)
    tuning = llvm.create_pipeline_tuning_options(speed_level=3)
    tuning.loop_vectorization = auto_vectorize  # set before the pass builder exists, or it is ignored
    tuning.slp_vectorization = auto_vectorize
    passes = llvm.create_pass_builder(machine, tuning)
    passes.getModulePassManager().run(module, passes)
    return OptimizedModule(str(module), target)
