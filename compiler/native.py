"""The native pipeline: from runnable graphs to optimized LLVM modules.

    graph --lower--> --fuse--> fused --plan--> kernels --codegen--> llvm
          --optimize for the host--> llvm-opt, asm

Lowering, fusion and planning run for every graph when a Program is built
(they take milliseconds). Code generation and LLVM run per graph when the
graph is first needed, each graph in a module of its own, so a program that
only ever trains never pays for compiling `gradients`. Every pass is timed."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..ir import Graph, print_graph, verify
from .backend import OptimizedModule, optimize
from .codegen.module import emit_module
from .codegen.target import Target
from .fusion import FusedGraph, fuse
from .kernel_dump import format_fused, format_kernels
from .lower import lower_for_codegen
from .pipeline import PassLog
from .plan import KernelProgram, plan
from .symbolic import Poly

ENTRY_NAMES = {"train": "train_step", "predict": "predict", "gradients": "gradients", "evaluate": "evaluate"}
"""The native function of each runnable graph of a Program (others keep their name)."""

_COMPILED: dict[tuple[str, str, Target], CompiledGraph] = {}
"""Compiled graphs by (lowered graph text, entry name, target). Lowering,
fusion and planning are deterministic functions of the graph, so an
identical program compiled again in one process (tests, repeated
`ember.compile`) skips code generation and LLVM."""


def entry_name(graph: str) -> str:
    return ENTRY_NAMES.get(graph, graph)


@dataclass
class CompiledGraph:
    """One graph's LLVM module before and after optimization."""

    llvm_ir: str
    scratch_bytes: Poly
    thread_bytes: int
    optimized: OptimizedModule

    @property
    def assembly(self) -> str:
        return self.optimized.assembly


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
            if key not in _COMPILED:
                code = _timed(self.log, "codegen", emit_module, [program], self.target)
                optimized = _timed(self.log, "llvm-optimize", optimize, code.llvm_ir, self.target)
                name = program.name
                _COMPILED[key] = CompiledGraph(
                    code.llvm_ir, code.scratch_bytes[name], code.thread_bytes[name], optimized
                )
            self._compiled[graph] = _COMPILED[key]
        return self._compiled[graph]

    def dump(self, stage: str) -> str:
        """A native stage of the main graph (`train`, else `predict`)."""
        if stage == "fused":
            return format_fused(self.fused[self.main], entry_name(self.main))
        if stage == "kernels":
            return format_kernels(self.programs[self.main])
        compiled = self.compiled(self.main)
        return {"llvm": compiled.llvm_ir, "llvm-opt": compiled.optimized.llvm_ir, "asm": compiled.assembly}[stage]


def _timed(log: PassLog, name: str, run, *args):
    start = time.perf_counter()
    result = run(*args)
    log.seconds[name] = log.seconds.get(name, 0.0) + time.perf_counter() - start
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
