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
    """A module's machine code for a target, and the LLVM IR it came from.
    Compiling makes only the object code: the optimized text and the
    assembly, which only dumps ask for, are made again from the source when
    asked (LLVM is deterministic), so a compile neither prints the optimized
    module nor parses it a second time."""

    source: str
    target: Target
    object_code: bytes
    """Relocatable, position-independent machine code: the JIT loads it, and
    the runtime links it into a shared library."""

    parts: tuple[str, ...] = ()
    """The sources of the program's pieces, where the module was cut
    (compiler/parallel.py; one piece when only `functions` were cut out)."""

    functions: tuple[str, ...] = ()
    """The sources of the functions cut out to be compiled once per machine
    (compiler/shared_code.py)."""

    part_objects: tuple[bytes, ...] = ()
    """The objects of `parts`, then of `functions`, which `object_code` joins (the JIT loads these)."""

    def _pieces(self) -> list[tuple[str, str]]:
        """(heading, source) of each piece compiled on its own; just the source when uncut."""
        if not self.parts:
            return [("", self.source)]
        count = len(self.parts)
        pieces = [(f"part {i + 1} of {count}", text) for i, text in enumerate(self.parts)]
        return pieces + [(f"shared function {i + 1} of {len(self.functions)}", t) for i, t in enumerate(self.functions)]

    @cached_property
    def llvm_ir(self) -> str:
        """The optimized text (of each piece in turn, for a module cut in pieces)."""
        machine = object_machine(self.target)
        texts = [(heading, str(optimized(text, machine))) for heading, text in self._pieces()]
        return "\n".join(f"; {heading}\n{text}" if heading else text for heading, text in texts)

    @cached_property
    def assembly(self) -> str:
        machine = object_machine(self.target)
        texts = [(heading, machine.emit_assembly(optimized(text, machine))) for heading, text in self._pieces()]
        return "\n".join(f"# {heading}\n{text}" if heading else text for heading, text in texts)

    @property
    def nbytes(self) -> int:
        """The bytes of text and code this object holds now."""
        held = sum(len(self.__dict__.get(name, "")) for name in ("llvm_ir", "assembly"))
        parts = sum(len(p) for p in (*self.parts, *self.functions)) + sum(len(o) for o in self.part_objects)
        return len(self.source) + len(self.object_code) + held + parts


def object_machine(target: Target) -> llvm.TargetMachine:
    """A target machine for relocatable, position-independent objects of `target`."""
    return llvm_job.object_machine(target.triple, target.cpu, target.features)


def optimized(llvm_ir: str, machine: llvm.TargetMachine) -> llvm.ModuleRef:
    """Parse, verify and optimize for `machine`'s target: LLVM's O1
    pipeline (llvm_job.py), whose module `machine` then compiles at its
    highest level. ember's kernels are vectorized and unrolled by hand, so
    O3's extra passes found nothing to gain (measured, one pinned core: the
    R, S, M and L training steps and a LayerNorm/GELU/BatchNorm MLP within
    2% of O3) and cost 20-25% more optimization time (784-512-512-10 with
    Adam: 0.80 -> 0.63 s; InstCombine is half of what remains). LLVM's loop
    unroller is off: it only copied ember's hand-unrolled loops again."""
    try:
        return llvm_job.optimized_module(llvm_ir, machine)
    except RuntimeError as e:
        raise EmberError(f"generated LLVM IR is invalid (a code generator bug): {e}") from None


def compile_module(llvm_ir: str, target: Target) -> OptimizedModule:
    """`llvm_ir` optimized and compiled to an object for `target`."""
    machine = object_machine(target)
    return OptimizedModule(llvm_ir, target, machine.emit_object(optimized(llvm_ir, machine)))
