"""One LLVM module for a whole program: a function per kernel and, per
kernel program, an entry function that calls its kernels in order, and
its profiled twin that also times each kernel.

    void train_step(i64 *args)   // args: symbol sizes, then region addresses
    void train_step.profile(i64 *args, i64 *ticks)
        // ticks[k] += the cycle counter's ticks over kernel k; ticks[kernels] += the whole call's
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import llvmlite.ir as ir

from ..fusion import Kernel
from ..plan import KernelProgram
from ..symbolic import Poly, maximum
from .collective import emit_collective_kernel
from .gemm import emit_matmul_kernel, shared_scratch
from .gemm_library import GemmLibrary
from .irutil import I64, PTR, VOID, declare, i64
from .kernel import KernelEmitter
from .loops import emit_loop_kernel
from .matmul_schedule import MatmulSchedule, schedule_matmul
from .rows import emit_row_kernel
from .target import Target


@dataclass
class ModuleCode:
    """The LLVM IR text of a module and, per entry, the scratch it needs:
    shared bytes (a polynomial in the shape symbols) and bytes per thread."""

    llvm_ir: str
    scratch_bytes: dict[str, Poly]
    thread_bytes: dict[str, int]
    declared: tuple[str, ...] = ()
    """The shared functions it only declares (compiled before)."""


class _Module(ir.Module):
    """An LLVM module that prints the functions whose text it is given from
    that text: llvmlite's printing is a third of code generation, and the
    library prints every microkernel to find those alike (SharedFunctions.shared)."""

    def __init__(self, name: str, printed: dict[str, str]) -> None:
        super().__init__(name=name)
        self.printed = printed

    def _get_body_lines(self) -> list[str]:  # llvmlite's, taking the texts given
        lines = [t.get_declaration() for t in self.get_identified_types().values()]
        return lines + [self.printed.get(v.name) or str(v) for v in self.globals.values()]


def emit_program(
    program: KernelProgram, module: ir.Module, target: Target, library: GemmLibrary, profiled: bool = True
) -> tuple[Poly, int]:
    """Add `program`'s kernels and entry function (and with `profiled` its
    profiled twin) to `module`; return the shared scratch bytes and the
    scratch bytes per thread it needs."""
    schedules = matmul_schedules(program, target)
    thread_bytes = max((s.blocking.thread_bytes for s in schedules.values()), default=0)
    scratch = Poly()
    functions = []
    for kernel in program.kernels:
        emitter = KernelEmitter(program, kernel, module, target, library=library)
        if kernel in schedules:
            scratch = maximum(scratch, shared_scratch(kernel, schedules[kernel]))
            functions.append(emit_matmul_kernel(emitter, schedules[kernel], thread_bytes, library))
        elif kernel.rows is not None:
            functions.append(emit_row_kernel(emitter))
        elif kernel.kind == "collective":
            copy = KernelEmitter(program, kernel, module, target, part=".copy", library=library)
            functions.append(emit_collective_kernel(emitter, copy))
        else:
            functions.append(emit_loop_kernel(emitter))
    entry = ir.Function(module, ir.FunctionType(VOID, [PTR]), name=program.name)
    entry.args[0].add_attribute("noalias")
    b = ir.IRBuilder(entry.append_basic_block("entry"))
    for fn in functions:
        b.call(fn, [entry.args[0]])
    b.ret_void()
    if profiled:
        _emit_profiled_entry(program, module, functions)
    return scratch, thread_bytes


def _emit_profiled_entry(program: KernelProgram, module: ir.Module, functions: list[ir.Function]) -> None:
    """`P.profile(args, ticks)`: the entry, reading the CPU's cycle counter
    (rdtsc: constant rate, a few ns) around every kernel call; the normal
    entry stays free of it."""
    fn = ir.Function(module, ir.FunctionType(VOID, [PTR, PTR]), name=program.profiled_name)
    args, ticks = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    clock = declare(module, "llvm.readcyclecounter", I64, [])

    def add(index: int, elapsed: ir.Value) -> None:
        slot = b.gep(ticks, [i64(index)], source_etype=I64)
        b.store(b.add(b.load(slot, typ=I64), elapsed), slot)

    start = previous = b.call(clock, [])
    for k, kernel_fn in enumerate(functions):
        b.call(kernel_fn, [args])
        now = b.call(clock, [])
        add(k, b.sub(now, previous))
        previous = now
    add(len(functions), b.sub(previous, start))
    b.ret_void()


def matmul_schedules(program: KernelProgram, target: Target) -> dict[Kernel, MatmulSchedule]:
    """The schedule of each matmul kernel of `program` on `target`."""
    return {k: schedule_matmul(program, k, target) for k in program.kernels if k.matmul is not None}


def emit_module(
    programs: Iterable[KernelProgram],
    target: Target,
    name: str = "ember",
    compiled: Callable[[str], bool] | None = None,
) -> ModuleCode:
    """The LLVM module holding every program's entry function; the shared
    functions whose names `compiled` picks are only declared."""
    printed: dict[str, str] = {}
    module = _Module(name, printed)
    module.triple = target.triple
    library = GemmLibrary(module, compiled, printed)
    with _collector_paused():
        needs = {p.name: emit_program(p, module, target, library) for p in programs}
        text = str(module)
    scratch = {name: n[0] for name, n in needs.items()}
    return ModuleCode(text, scratch, {name: n[1] for name, n in needs.items()}, tuple(library.declared))


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while the body runs. Code
    generation makes some 10^5 llvmlite objects, few of them garbage, whose
    allocations set off collections that walk the whole heap again and
    again (measured: a new process generated 784-512-512-10's training
    step in 190-196 ms with it, 104-107 ms without)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
