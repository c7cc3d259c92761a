"""One LLVM module for a whole program: a function per kernel and, per
kernel program, an entry function that calls its kernels in order.

    void train_step(i64 *args)   // args: symbol sizes, then region addresses
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import llvmlite.ir as ir

from ..fusion import Kernel
from ..plan import KernelProgram
from ..symbolic import Poly, maximum
from .gemm import emit_matmul_kernel, shared_scratch
from .gemm_library import Blocking, GemmLibrary, blocking
from .irutil import PTR, VOID
from .kernel import KernelEmitter
from .loops import emit_loop_kernel
from .rows import emit_row_kernel
from .target import Target


@dataclass
class ModuleCode:
    """The LLVM IR text of a module and, per entry, the scratch it needs:
    shared bytes (a polynomial in the shape symbols) and bytes per thread."""

    llvm_ir: str
    scratch_bytes: dict[str, Poly]
    thread_bytes: dict[str, int]


def emit_program(program: KernelProgram, module: ir.Module, target: Target, library: GemmLibrary) -> tuple[Poly, int]:
    """Add `program`'s kernels and entry function to `module`; return the
    shared scratch bytes and the scratch bytes per thread it needs."""
    plans = {k: kernel_blocking(k, target) for k in program.kernels if k.matmul is not None}
    thread_bytes = max((p.thread_bytes for p in plans.values()), default=0)
    scratch = Poly()
    functions = []
    for kernel in program.kernels:
        emitter = KernelEmitter(program, kernel, module, target)
        if kernel in plans:
            scratch = maximum(scratch, shared_scratch(program, kernel, plans[kernel]))
            functions.append(emit_matmul_kernel(emitter, plans[kernel], thread_bytes, library))
        elif kernel.rows is not None:
            functions.append(emit_row_kernel(emitter))
        else:
            functions.append(emit_loop_kernel(emitter))
    entry = ir.Function(module, ir.FunctionType(VOID, [PTR]), name=program.name)
    entry.args[0].add_attribute("noalias")
    b = ir.IRBuilder(entry.append_basic_block("entry"))
    for fn in functions:
        b.call(fn, [entry.args[0]])
    b.ret_void()
    return scratch, thread_bytes


def kernel_blocking(kernel: Kernel, target: Target) -> Blocking:
    """The blocking of a matmul kernel, fitted to its sizes known when compiling."""
    rows, columns = (d if isinstance(d, int) else None for d in kernel.matmul.output.type.shape)
    return blocking(target, kernel.matmul.output.type.dtype, columns, rows)


def emit_module(programs: Iterable[KernelProgram], target: Target, name: str = "ember") -> ModuleCode:
    """The LLVM module holding every program's entry function."""
    module = ir.Module(name=name)
    module.triple = target.triple
    library = GemmLibrary(module)
    needs = {p.name: emit_program(p, module, target, library) for p in programs}
    return ModuleCode(str(module), {name: n[0] for name, n in needs.items()}, {name: n[1] for name, n in needs.items()})
