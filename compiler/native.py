"""The native pipeline: from runnable graphs to optimized LLVM modules.

    graph --lower--> --fuse--> fused --plan--> kernels --codegen--> llvm
          --optimize for the host--> llvm-opt, asm

Lowering, fusion and planning run for every graph when a Program is built
(they take milliseconds). Code generation and LLVM run per graph when the
graph is first needed, each graph in a module of its own, so a program that
only ever trains never pays for compiling `gradients`. Every pass is timed."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from ..ir import EmberError, Graph, print_graph, verify
from . import parallel
from .codegen.target import Target
from .fusion import FusedGraph, fuse
from .kernel_dump import format_fused, format_kernels
from .lower import lower_for_codegen
from .parallel import MIN_PART_LINES, Helper, compile_in_parts, compile_jobs, join_objects, start_helpers
from .pipeline import PassLog
from .plan import KernelProgram, plan
from .shared_code import SHARED_OBJECTS, SHARED_PREFIX, ObjectStore
from .split import split_module, split_shared
from .symbolic import Poly

if TYPE_CHECKING:
    from .backend import OptimizedModule

# LLVM (llvmlite, the code generator) is imported where a graph is compiled:
# building a Program's kernel programs, and `import ember`, do without it.

V = TypeVar("V")

ENTRY_NAMES = {"train": "train_step", "predict": "predict", "gradients": "gradients", "evaluate": "evaluate"}
"""The native function of each runnable graph of a Program (others keep their name)."""


def entry_name(graph: str) -> str:
    return ENTRY_NAMES.get(graph, graph)


@dataclass(frozen=True)
class MachineCode:
    """What running one graph needs: its object code (position-independent),
    the scratch memory its calls ask for and, where the runtime linked one,
    the same code as a shared library. This is what the on-disk cache keeps."""

    object_code: bytes
    scratch_bytes: Poly
    thread_bytes: int
    library: bytes = b""
    parts: tuple[bytes, ...] = ()
    """The objects `object_code` joins, for a module compiled in parts (the JIT loads them)."""

    def to_bytes(self) -> bytes:
        """A JSON header (its length first, 4 bytes), the object code, the parts' objects, the library."""
        scratch = [[list(monomial), coefficient] for monomial, coefficient in self.scratch_bytes.terms]
        header = {
            "scratch_bytes": scratch,
            "thread_bytes": self.thread_bytes,
            "object_bytes": len(self.object_code),
            "part_bytes": [len(part) for part in self.parts],
        }
        text = json.dumps(header).encode()
        return struct.pack("<I", len(text)) + text + self.object_code + b"".join(self.parts) + self.library

    @staticmethod
    def from_bytes(data: bytes) -> MachineCode:
        """The inverse of `to_bytes` (raises ValueError on anything else)."""
        try:
            (length,) = struct.unpack_from("<I", data)
            header = json.loads(data[4 : 4 + length])
            terms = tuple((tuple(str(s) for s in m), int(c)) for m, c in header["scratch_bytes"])
            thread_bytes = int(header["thread_bytes"])
            object_end = 4 + length + int(header["object_bytes"])
            part_sizes = [int(size) for size in header["part_bytes"]]
        except (struct.error, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"not ember machine code: {e}") from None
        ends = list(itertools.accumulate(part_sizes, initial=object_end))
        if ends[-1] > len(data) or any(size < 0 for size in part_sizes):
            raise ValueError("not ember machine code: shorter than its header says")
        parts = tuple(bytes(data[start:end]) for start, end in itertools.pairwise(ends))
        code = bytes(data[4 + length : object_end])
        return MachineCode(code, Poly(terms), thread_bytes, bytes(data[ends[-1] :]), parts)


@dataclass
class CompiledGraph:
    """One graph's LLVM module before and after optimization, its object code
    and the scratch it needs to run, and the shared library the runtime
    linked from the object code, if it did."""

    llvm_ir: str
    scratch_bytes: Poly
    thread_bytes: int
    optimized: OptimizedModule
    library: bytes = b""

    @property
    def assembly(self) -> str:
        return self.optimized.assembly

    @property
    def machine_code(self) -> MachineCode:
        optimized = self.optimized
        return MachineCode(
            optimized.object_code, self.scratch_bytes, self.thread_bytes, self.library, optimized.part_objects
        )

    @property
    def nbytes(self) -> int:
        """The bytes of text and code this object holds now."""
        return len(self.llvm_ir) + self.optimized.nbytes + len(self.library)


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


class OnDemand(Mapping[str, V]):
    """A mapping whose values are made on first access, once (under a lock:
    a Program's graphs may first be needed by two threads at once)."""

    def __init__(self, keys: Collection[str], make: Callable[[str], V]) -> None:
        self._keys = keys  # held, not copied: a key added to it later can be made too
        self._make = make
        self._made: dict[str, V] = {}
        self._lock = threading.Lock()

    def __getitem__(self, key: str) -> V:
        if key not in self._made:
            if key not in self._keys:
                raise KeyError(key)
            with self._lock:
                if key not in self._made:
                    self._made[key] = self._make(key)
        return self._made[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


@dataclass
class NativeBuild:
    """The native pipeline's products for one Program, made on demand."""

    target: Target
    fused: Mapping[str, FusedGraph]
    programs: Mapping[str, KernelProgram]
    log: PassLog
    main: str
    shared_store: ObjectStore | None = None
    """Where the matmul library's objects outlive the process (the runtime's
    disk cache); without one, modules are compiled whole (shared_code.py)."""
    _compiled: dict[str, CompiledGraph] = field(default_factory=dict)
    _texts: dict[str, str] = field(default_factory=dict)

    def kept(self, graph: str) -> CompiledGraph | None:
        """The module of `graph` if this process compiled it already."""
        if graph not in self._compiled and (compiled := COMPILE_CACHE.get(self._memory_key(graph))) is not None:
            self._compiled[graph] = compiled
        return self._compiled.get(graph)

    def cache_key(self, graph: str) -> str:
        """The key of `graph`'s machine code across processes: a hash of
        everything the code is a function of: the program (its lowered
        graph and entry name), the target (CPU name, features, caches,
        cores), ember's code generator (its source files), llvmlite's and
        LLVM's versions. Code generation is deterministic, so this key
        names one object file without generating the LLVM IR first."""
        return module_key(f"{self.programs[graph].name}\n{self._text(graph)}", self.target)

    def _memory_key(self, graph: str) -> Hashable:
        return (self._text(graph), self.programs[graph].name, self.target)

    def _text(self, graph: str) -> str:
        """The printed lowered graph of `graph` (printed once: both keys use it)."""
        if graph not in self._texts:
            self._texts[graph] = print_graph(self.programs[graph].graph)
        return self._texts[graph]

    def compiled(self, graph: str) -> CompiledGraph:
        """Generate and optimize the module of `graph` (once)."""
        compiled = self.kept(graph)
        if compiled is None:
            from .codegen.module import emit_module

            program = self.programs[graph]
            # started first: their start-up overlaps the code generation below
            helpers = start_helpers(min(compile_jobs(), _parts_worth_cutting(program)))
            try:
                has_object = self._has_object if self._cuts_shared() else None
                code = _timed(self.log, "codegen", emit_module, [program], self.target, "ember", has_object)
                optimized = self._optimize(code.llvm_ir, helpers, bool(code.declared))
                if optimized is None:  # it declares functions it cannot be linked with: all of it whole
                    code = _timed(self.log, "codegen", emit_module, [program], self.target)
                    optimized = self._optimize(code.llvm_ir, helpers, False)
                    assert optimized is not None
            finally:
                for helper in helpers:
                    helper.close()
            name = program.name
            compiled = CompiledGraph(code.llvm_ir, code.scratch_bytes[name], code.thread_bytes[name], optimized)
            COMPILE_CACHE.put(self._memory_key(graph), compiled)
            self._compiled[graph] = compiled
        return compiled

    def _optimize(self, llvm_ir: str, helpers: list[Helper], declares_shared: bool) -> OptimizedModule | None:
        """`llvm_ir` optimized and compiled: the shared functions each on
        its own, once per machine, where there is a shared store and
        a linker (shared_code.py); the rest in parts when it is large enough
        to pay, else in one piece; the parts and the shared functions not
        compiled before dealt to this process and the helpers (parallel.py).
        None where it `declares_shared` functions and cannot be cut or joined."""
        from .backend import OptimizedModule

        store = self.shared_store
        cut = split_shared(llvm_ir, SHARED_PREFIX) if self._cuts_shared() else None
        if cut is None and declares_shared:
            return None
        program, functions, compiled_before = cut if cut is not None else (llvm_ir, {}, [])
        keys = [shared_key(name, self.target) for name in functions]
        shared = [SHARED_OBJECTS.find(key, store) for key in keys]
        missing = [text for text, code in zip(functions.values(), shared, strict=True) if code is None]
        parts = [program]
        lines = program.count("\n") + sum(text.count("\n") for text in missing)
        if helpers and lines >= MIN_PART_LINES * (len(helpers) + 1):
            parts = split_module(program, len(helpers) + 1)
        if len(parts) == 1 and cut is None:
            return OptimizedModule(llvm_ir, self.target, self._object_here(llvm_ir))
        start = time.perf_counter()
        # the program's parts and the shared functions compiled nowhere yet,
        # dealt to this process and the helpers
        compiled = compile_in_parts([*parts, *missing], helpers, self._object_here, self.target)
        if helpers and len(parts) + len(missing) > 1:
            self.log.count("parallel-llvm", time.perf_counter() - start)
        objects, new = compiled[: len(parts)], iter(compiled[len(parts) :])
        for key, code in zip(keys, shared, strict=True):
            if code is None:
                code = next(new)
                SHARED_OBJECTS.add(key, code, store)
            objects.append(code)
        for name in compiled_before:  # found when the module was generated, and kept since
            code = SHARED_OBJECTS.find(shared_key(name, self.target), store)
            if code is None:
                raise EmberError(f"the object of {name} went missing between code generation and linking")
            objects.append(code)
        joined = _timed(self.log, "join", join_objects, objects)
        if joined is None:  # compiled whole (if it defines every function it calls)
            return None if declares_shared else OptimizedModule(llvm_ir, self.target, self._object_here(llvm_ir))
        return OptimizedModule(llvm_ir, self.target, joined, tuple(parts), tuple(functions.values()), tuple(objects))

    def _cuts_shared(self) -> bool:
        """Whether the shared functions are compiled on their own
        (shared_code.py): where their objects can be kept and linked."""
        return self.shared_store is not None and parallel.linker() is not None

    def _has_object(self, name: str) -> bool:
        """Whether this machine has the object of shared function `name` (then kept in this process)."""
        return SHARED_OBJECTS.find(shared_key(name, self.target), self.shared_store) is not None

    def _object_here(self, llvm_ir: str) -> bytes:
        """The object code of `llvm_ir`, compiled in this process (timed)."""
        from .backend import object_machine, optimized

        machine = object_machine(self.target)
        module = _timed(self.log, "llvm-optimize", optimized, llvm_ir, machine)
        return _timed(self.log, "machine-code", machine.emit_object, module)

    def dump(self, stage: str) -> str:
        """A native stage of the main graph (`train`, else `predict`)."""
        if stage == "fused":
            return format_fused(self.fused[self.main], entry_name(self.main))
        if stage == "kernels":
            from .codegen.module import matmul_schedules

            program = self.programs[self.main]
            schedules = matmul_schedules(program, self.target)
            return format_kernels(program, {k.name: s.describe() for k, s in schedules.items()})
        compiled = self.compiled(self.main)
        if stage == "llvm":
            return self._llvm_to_read(compiled.llvm_ir)
        return {"llvm-opt": compiled.optimized.llvm_ir, "asm": compiled.assembly}[stage]

    def _llvm_to_read(self, llvm_ir: str) -> str:
        """`llvm_ir`, the module compiled; where it only declares shared
        functions the machine had compiled before (a microkernel with the
        model's own epilogue may be one), the module generated again with
        every function defined, to be read whole."""
        if not _DECLARES_SHARED.search(llvm_ir):
            return llvm_ir
        from .codegen.module import emit_module

        return emit_module([self.programs[self.main]], self.target).llvm_ir


_DECLARES_SHARED = re.compile(rf'^declare [^@\n]*@"{re.escape(SHARED_PREFIX)}', re.M)

KEY_FORMAT = "ember machine code 3"
"""Changes whenever MachineCode's bytes or the key's parts change meaning."""


def module_key(text: str, target: Target) -> str:
    """The disk cache's key of the code that `text` (a printed program, or
    a description that determines a module) compiles to on `target`, with
    this ember, llvmlite and LLVM."""
    import llvmlite

    parts = [KEY_FORMAT, compiler_digest(), llvmlite.__version__, repr(target), text]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def shared_key(name: str, target: Target) -> str:
    """The disk cache's key of the object of shared function `name`: its code
    is a function of its name (the element type and register tile in it,
    or a hash of its text), ember's compiler and the target
    (codegen/shared_functions.py), all in the key, so a module that has it
    compiled only declares it."""
    return module_key(f"shared function {name}", target)


@cache
def compiler_digest() -> str:
    """A hash of the source files of the compiler and the IR (op table,
    codegen rules): an edited checkout compiles to new keys, not to stale
    code. Each file counts by its path, size and modification time, as
    Python's bytecode cache judges its sources (reading and hashing the
    ~100 files took 10 ms of a 55 ms warm compile; their metadata, 1 ms).
    LLVM's version is that of llvmlite, which is in the key (each llvmlite
    release is built with one LLVM), so it is read without loading LLVM."""
    from .. import ir

    digest = hashlib.sha256()
    for package in (Path(__file__).parent, Path(ir.__file__).parent):
        for path in sorted(package.rglob("*.py")):
            stat = path.stat()
            digest.update(f"{path.relative_to(package.parent).as_posix()} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _parts_worth_cutting(program: KernelProgram) -> int:
    """How many parts of MIN_PART_LINES `program`'s module likely makes (at
    least 1), told before it is generated: a matmul kernel is ~1 000 lines
    of LLVM IR (its task, microkernel and share of the matmul library),
    another kernel ~150."""
    matmuls = sum(kernel.matmul is not None for kernel in program.kernels)
    lines = 1000 * matmuls + 150 * (len(program.kernels) - matmuls)
    return max(1, lines // MIN_PART_LINES)


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
    """The native pipeline of every graph in `graphs` (by runnable name):
    each is lowered, fused and planned when first needed (a program that
    only trains never plans `gradients`), or at once with `log.check`.
    `graphs` is held: a graph the owner adds to it later is built too."""

    def lowered_and_fused(name: str) -> FusedGraph:
        lowered = _timed(log, "lower", lower_for_codegen, graphs[name])
        if log.check:
            verify(lowered)
        return _timed(log, "fuse", fuse, lowered)

    fused = OnDemand(graphs, lowered_and_fused)
    programs = OnDemand(
        graphs, lambda name: _timed(log, "plan", plan, fused[name], entry_name(name), param_offsets, state_offsets)
    )
    if log.check:
        for name in graphs:
            programs[name]
    main = "train" if "train" in graphs else next(iter(graphs))
    return NativeBuild(target, fused, programs, log, main)
