"""From LLVM IR text to optimized machine code for a target, without
running anything: optimization for the host CPU, assembly and object code.
The JIT (runtime/jit.py) and ahead-of-time export both start here."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import llvmlite.binding as llvm

from ..ir import EmberError
from . import llvm_job
from .codegen.target import Target


@dataclass
class OptimizedModule:
    """An optimized LLVM module as text, and the target it was optimized
    for. Only the text is kept (a parsed module takes several times its
    size); assembly and object code are emitted from fresh parses of it,
    since emitting code runs more passes over a module in place."""

    llvm_ir: str
    target: Target
    parts: tuple[str, ...] = ()
    """The optimized parts of a module compiled in parts (compiler/parallel.py);
    `llvm_ir` then shows them one after the other."""

    part_objects: tuple[bytes, ...] = ()
    """Their objects, which `object_code` joins (the JIT loads these)."""

    @staticmethod
    def from_parts(parts: list[str], objects: list[bytes], object_code: bytes, target: Target) -> OptimizedModule:
        """A module compiled in `parts` to `objects`, joined into `object_code`."""
        shown = "\n".join(f"; part {i + 1} of {len(parts)}\n{text}" for i, text in enumerate(parts))
        module = OptimizedModule(shown, target, tuple(parts), tuple(objects))
        module.__dict__["object_code"] = object_code  # emitted already, part by part
        return module

    @cached_property
    def assembly(self) -> str:
        machine = self.target.create_target_machine()
        if not self.parts:
            return machine.emit_assembly(llvm.parse_assembly(self.llvm_ir))
        texts = (machine.emit_assembly(llvm.parse_assembly(part)) for part in self.parts)
        return "\n".join(f"# part {i + 1} of {len(self.parts)}\n{text}" for i, text in enumerate(texts))

    @cached_property
    def object_code(self) -> bytes:
        """Relocatable, position-independent machine code for the target:
        the JIT loads it, and the runtime links it into a shared library."""
        target = self.target
        return llvm_job.object_code(self.llvm_ir, target.triple, target.cpu, target.features)

    @property
    def nbytes(self) -> int:
        """The bytes of text and code this object holds now."""
        held = (self.__dict__.get(name, "") for name in ("assembly", "object_code"))
        parts = sum(len(p) for p in self.parts) + sum(len(o) for o in self.part_objects)
        return len(self.llvm_ir) + sum(len(x) for x in held) + parts


def optimize(llvm_ir: str, target: Target, auto_vectorize: bool = True) -> OptimizedModule:
    """Parse, verify and optimize for `target`: LLVM's O1 pipeline, then
    code generation at its highest level (llvm_job.py). ember's kernels are
    vectorized and unrolled by hand, so O3's extra passes found nothing to
    gain (measured, one pinned core: the R, S, M and L training steps and a
    LayerNorm/GELU/BatchNorm MLP within 2% of O3) and cost 20-25% more
    optimization time (784-512-512-10 with Adam: 0.80 -> 0.63 s; InstCombine
    is half of what remains). LLVM's loop unroller is off: it only copied
    ember's hand-unrolled loops again (llvm_job.py). LLVM's loop and SLP
    vectorizers stay on for whatever scalar code remains (they leave
    hand-vectorized kernels unchanged)."""
    try:
        optimized = llvm_job.optimize(llvm_ir, target.triple, target.cpu, target.features, auto_vectorize)
    except RuntimeError as e:
        raise EmberError(f"generated LLVM IR is invalid (a code generator bug): {e}") from None
    return OptimizedModule(optimized, target)
