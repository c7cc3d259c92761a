"""The native pipeline: from runnable graphs to optimized LLVM modules.

    graph --lower--> --fuse--> fused --plan--> kernels --codegen--> llvm
          --optimize for the host--> llvm-opt, asm

Lowering, fusion and planning run for every graph when a Program is built
(they take milliseconds). Code generation and LLVM run per graph when the
graph is first needed, each graph in a module of its own, so a program that
only ever trains never pays for compiling `gradients`. Every pass is timed."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field

from ..ir import Graph, print_graph, verify
from .backend import OptimizedModule, optimize
from .codegen.module import emit_module, matmul_schedules
from .codegen.target import Target
from .fusion import FusedGraph, fuse
from .kernel_dump import format_fused, format_kernels
from .lower import lower_for_codegen
from .pipeline import PassLog
from .plan import KernelProgram, plan
from .symbolic import Poly

ENTRY_NAMES = {"train": "train_step", "predict": "predict", "gradients": "gradients", "evaluate": "evaluate"}
"""The native function of each runnable graph of a Program (others keep their name)."""


def entry_name(graph: str) -> str:
    return ENTRY_NAMES.get(graph, graph)


@dataclass
class CompiledGraph:
    """One graph's LLVM module before and after optimization, its object code
    and the scratch it needs to run."""

    llvm_ir: str
    scratch_bytes: Poly
    thread_bytes: int
    optimized: OptimizedModule

    @property
    def assembly(self) -> str:
        return self.optimized.assembly

    @property
    def nbytes(self) -> int:
        """The bytes of text and code this object holds now."""
        return len(self.llvm_ir) + self.optimized.nbytes


class CompileCache:
    """Compiled graphs kept for reuse, by key, dropping the least recently
    used once the bytes they hold exceed `limit_bytes`. A graph in use stays
    alive with its Program whether or not it is still here."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self._graphs: OrderedDict[Hashable, CompiledGraph] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> CompiledGraph | None:
        with self._lock:
            compiled = self._graphs.get(key)
            if compiled is not None:
                self._graphs.move_to_end(key)
            return compiled

    def put(self, key: Hashable, compiled: CompiledGraph) -> None:
        with self._lock:
            self._graphs[key] = compiled
            self._graphs.move_to_end(key)
            total = sum(c.nbytes for c in self._graphs.values())  # sizes grow when an assembly is dumped
            while total > self.limit_bytes:
                _, dropped = self._graphs.popitem(last=False)
                total -= dropped.nbytes

    def clear(self) -> None:
        with self._lock:
            self._graphs.clear()

    def __len__(self) -> int:
        return len(self._graphs)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(c.nbytes for c in self._graphs.values())


COMPILE_CACHE_BYTES = 16 * 1024 * 1024
"""The most the compile cache holds: about 100 small programs (a 4-8-3
classifier's predict is ~170 KB of LLVM IR text and object code), a dozen
of the size of the digits training step (1.4 MB). Sized so that compiling
and dropping program after program keeps the process's memory flat."""

COMPILE_CACHE = CompileCache(COMPILE_CACHE_BYTES)
"""Compiled graphs by (lowered graph text, entry name, target). Lowering,
fusion and planning are deterministic functions of the graph, so an
identical program compiled again in one process (tests, repeated
`ember.compile`) skips code generation and LLVM, and loads the kept
object code. `ember.cache_info()` shows it, `ember.clear_cache()` empties it."""


@dataclass
class NativeBuild:
    """The native pipeline's products for one Program, compiled on demand."""

    target: Target
    fused: dict[str, FusedGraph]
    programs: dict[str, KernelProgram]
    log: PassLog
    main: str
    _compiled: dict[str, CompiledGraph] = field(default_factory=dict)

    def compiled(self, graph: str) -> CompiledGraph:
        """Generate and optimize the module of `graph` (once)."""
        if graph not in self._compiled:
            program = self.programs[graph]
            key = (print_graph(program.graph), program.name, self.target)
            compiled = COMPILE_CACHE.get(key)
            if compiled is None:
                code = _timed(self.log, "codegen", emit_module, [program], self.target)
                optimized = _timed(self.log, "llvm-optimize", optimize, code.llvm_ir, self.target)
                _timed(self.log, "machine-code", lambda: optimized.object_code)  # emitted once, kept
                name = program.name
                compiled = CompiledGraph(code.llvm_ir, code.scratch_bytes[name], code.thread_bytes[name], optimized)
                COMPILE_CACHE.put(key, compiled)
            self._compiled[graph] = compiled
        return self._compiled[graph]

    def dump(self, stage: str) -> str:
        """A native stage of the main graph (`train`, else `predict`)."""
        if stage == "fused":
            return format_fused(self.fused[self.main], entry_name(self.main))
        if stage == "kernels":
            program = self.programs[self.main]
            schedules = matmul_schedules(program, self.target)
            return format_kernels(program, {k.name: s.describe() for k, s in schedules.items()})
        compiled = self.compiled(self.main)
        return {"llvm": compiled.llvm_ir, "llvm-opt": compiled.optimized.llvm_ir, "asm": compiled.assembly}[stage]


def _timed(log: PassLog, name: str, run, *args):
    start = time.perf_counter()
    result = run(*args)
    log.count(name, time.perf_counter() - start)
    return result


def build_native(
    graphs: Mapping[str, Graph],
    param_offsets: Mapping[str, int],
    state_offsets: Mapping[str, int],
    target: Target,
    log: PassLog,
) -> NativeBuild:
    """Lower, fuse and plan every graph in `graphs` (by runnable name)."""
    fused: dict[str, FusedGraph] = {}
    programs: dict[str, KernelProgram] = {}
    for name, graph in graphs.items():
        lowered = _timed(log, "lower", lower_for_codegen, graph)
        if log.check:
            verify(lowered)
        fused[name] = _timed(log, "fuse", fuse, lowered)
        programs[name] = _timed(log, "plan", plan, fused[name], entry_name(name), param_offsets, state_offsets)
    main = "train" if "train" in graphs else next(iter(graphs))
    return NativeBuild(target, fused, programs, log, main)
