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
        """Relocatable, position-independent machine code for the target:
        the JIT loads it, and the runtime links it into a shared library."""
        machine = self.target.create_target_machine(reloc="pic", codemodel="small")
        return machine.emit_object(llvm.parse_assembly(self.llvm_ir))

    @property
    def nbytes(self) -> int:
        """The bytes of text and code this object holds now."""
        held = (self.__dict__.get(name, "") for name in ("assembly", "object_code"))
        return len(self.llvm_ir) + sum(len(x) for x in held)


def optimize(llvm_ir: str, target: Target, auto_vectorize: bool = True) -> OptimizedModule:
    """Parse, verify and optimize for `target`: LLVM's O1 pipeline, then
    code generation at its highest level. ember's kernels are vectorized and
    unrolled by hand, so O3's extra passes found nothing to gain (measured,
    one pinned core: the R, S, M and L training steps and a LayerNorm/GELU/
    BatchNorm MLP within 2% of O3) and cost 20-25% more optimization time
    (784-512-512-10 with Adam: 0.80 -> 0.63 s; InstCombine is half of what
    remains). LLVM's loop and SLP vectorizers stay on for whatever scalar
    code remains (they leave hand-vectorized kernels unchanged)."""
    initialize_llvm()
    try:
        module = llvm.parse_assembly(llvm_ir)
        module.verify()
    except RuntimeError as e:
        raise EmberError(f"generated LLVM IR is invalid (a code generator bug): {e}") from None
    module.triple = target.triple
    machine = target.create_target_machine()
    module.data_layout = str(machine.target_data)
    tuning = llvm.create_pipeline_tuning_options(speed_level=1)  # O1: see above
    tuning.loop_vectorization = auto_vectorize  # set before the pass builder exists, or it is ignored
    tuning.slp_vectorization = auto_vectorize
    passes = llvm.create_pass_builder(machine, tuning)
    passes.getModulePassManager().run(module, passes)
    return OptimizedModule(str(module), target)
