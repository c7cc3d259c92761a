"""One LLVM module for a whole program: a function per kernel and, per
kernel program, an entry function that calls its kernels in order.

    void train_step(i64 *args)   // args: symbol sizes, then region addresses
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import llvmlite.ir as ir

from ..plan import KernelProgram
from ..symbolic import Poly
from .gemm import emit_matmul_kernel, panel_elements
from .irutil import PTR, VOID
from .kernel import KernelEmitter
from .loops import emit_loop_kernel
from .target import Target


@dataclass
class ModuleCode:
    """The LLVM IR text of a module and, per entry, its scratch size in bytes."""

    llvm_ir: str
    scratch_bytes: dict[str, Poly]


def _max(a: Poly, b: Poly) -> Poly:
    """A polynomial at least as large as both (coefficient-wise maximum)."""
    terms = dict(a.terms)
    for m, c in b.terms:
        terms[m] = max(terms.get(m, 0), c)
    return Poly._make(terms)


def emit_program(program: KernelProgram, module: ir.Module, target: Target) -> Poly:
    """Add `program`'s kernels and entry function to `module`; return its scratch size."""
    scratch = Poly()
    functions = []
    for kernel in program.kernels:
        emitter = KernelEmitter(program, kernel, module, target)
        if kernel.matmul is not None:
            k = kernel.matmul.inputs[0].type.shape[0 if kernel.matmul.attrs["transpose_a"] else 1]
            size = panel_elements(Poly.of(k), emitter.lanes) * kernel.matmul.output.type.dtype.itemsize
            scratch = _max(scratch, size)
            functions.append(emit_matmul_kernel(emitter, Poly()))
        else:
            functions.append(emit_loop_kernel(emitter))
    entry = ir.Function(module, ir.FunctionType(VOID, [PTR]), name=program.name)
    entry.args[0].add_attribute("noalias")
    b = ir.IRBuilder(entry.append_basic_block("entry"))
    for fn in functions:
        b.call(fn, [entry.args[0]])
    b.ret_void()
    return scratch


def emit_module(programs: Iterable[KernelProgram], target: Target, name: str = "ember") -> ModuleCode:
    """The LLVM module holding every program's entry function."""
    module = ir.Module(name=name)
    module.triple = target.triple
    scratch = {p.name: emit_program(p, module, target) for p in programs}
    return ModuleCode(str(module), scratch)
