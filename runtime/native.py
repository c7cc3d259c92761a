"""The native backend: runs a Program's compiled kernel programs.

Each entry function (train_step, predict, ...) takes one pointer: an
argument block of int64 slots (sizes of the shape symbols, then the
address of every memory region). The block, the workspace and the scratch
memory are prepared when the sizes change and reused while they stay; a
call writes only what changes (the addresses of this call's inputs and
outputs) and makes one ctypes call with one pointer argument. Inputs the
owner keeps in fixed arrays (hyperparameters, the random numbers' seed and
step), and the inputs and outputs it binds to an entry (a distributed
step's gradient buffers), are checked and bound once, when the entry is
made.

Memory between calls follows the data: each entry's workspace and scratch
are sized for its latest call, growing when a call needs more and given
back when a call needs less than a quarter of what they hold (buffers up
to 1 MiB are kept), so one huge batch does not pin its memory once smaller
ones follow. `release_memory` frees everything at once."""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..compiler.codegen.target import Target
from ..compiler.native import NativeBuild, build_native
from ..compiler.pipeline import PassLog
from ..compiler.plan import KernelProgram
from ..ir import DTypeError, Graph, IRError, RunResult, ShapeError, TensorType
from ..ir.interpreter import bind_symbols
from . import jit, threads
from .arena import Arena, aligned_array, aligned_empty, data_address
from .host import host
from .locks import ForkSafeLock
from .object_cache import machine_code

_ENTRY = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_PROFILED_ENTRY = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)


SHRINK_BELOW = 4
"""A buffer is replaced by a smaller one when a call needs less than this
fraction (1/4) of it: batch sizes that vary within 4x never reallocate."""

KEEP_BYTES = 1 << 20
"""Buffers up to this size are never shrunk: giving them back saves little."""

SMALL_OUTPUT_BYTES = 4096
"""Outputs up to this size come from np.empty, not a cache-line aligned
buffer: alignment pays only for the stores of larger matmuls, and the
aligned allocation costs more than the call it is for at batch 1."""


class _Memory:
    """A 64-byte aligned byte buffer, fitted to what the calls need."""

    def __init__(self) -> None:
        self.release()

    def refit(self, size: int, shrink: bool = True) -> np.ndarray | None:
        """A new buffer of `size` bytes when this one is smaller or (with
        `shrink`) much larger than needed, else None. Only allocates: the
        caller swaps it in (`array = ...`) once nothing else can fail."""
        held = self.array.size
        wasteful = shrink and held > KEEP_BYTES and size * SHRINK_BELOW < held
        return aligned_empty(size, np.uint8) if size > held or wasteful else None

    def release(self) -> None:
        self.array = aligned_empty(0, np.uint8)

    @property
    def address(self) -> int:
        return data_address(self.array)


class _Entry:
    """One compiled entry function, its argument block and the workspace and
    scratch memory its calls use (its own: resizing it touches no other
    entry). Its block is trusted only while `sizes` is set: anything that
    moves memory the block points to first sets `sizes` to None, and the
    next call rewrites the whole block."""

    def __init__(
        self,
        program: KernelProgram,
        build: NativeBuild,
        graph: str,
        fixed: Mapping[str, np.ndarray],
        bound: Mapping[str, np.ndarray],
    ) -> None:
        """`fixed`: inputs read where they are; `bound`: outputs written where they are."""
        code = machine_code(build, graph)
        self.jit = jit.load(code, build.target)  # keeps the machine code alive
        self.program = program
        self.function = _ENTRY(self.jit.address(program.name))
        self.profiled = _PROFILED_ENTRY(self.jit.address(program.profiled_name))
        self.scratch_bytes = code.scratch_bytes
        self.thread_bytes = code.thread_bytes
        self.block = np.zeros(len(program.symbols) + len(program.regions), dtype=np.int64)
        self.block_address = data_address(self.block)
        self.slot = {region: len(program.symbols) + i for i, region in enumerate(program.regions)}
        self.inputs = [
            (a.name, a.type, a.type.dtype.numpy, self.slot[f"in:{a.name}"])
            for a in program.graph.inputs
            if a.name not in fixed
        ]
        for a in program.graph.inputs:
            if a.name in fixed:
                address = _fixed_address(program.name, f"fixed input {a.name}", a.type, fixed[a.name])
                self.block[self.slot[f"in:{a.name}"]] = address
        self.outputs = [
            (name, v.type, v.type.dtype.numpy, self.slot[f"out:{name}"])
            for name, v in program.graph.outputs.items()
            if name not in bound
        ]
        for name, value in program.graph.outputs.items():
            if name in bound:
                address = _fixed_address(program.name, f"output {name}", value.type, bound[name], writeable=True)
                self.block[self.slot[f"out:{name}"]] = address
        self.kept = (fixed, bound)  # the arrays the block points to live as long as it
        self.workspace_slots = [self.slot[f"workspace:{i}"] for i in range(len(program.workspace))]
        self.workspace = _Memory()
        self.scratch = _Memory()
        self.sizes: dict[str, int] | None = None  # the symbol sizes the block holds; None: rewrite it
        # at those sizes: (name, slot, dtype, shape) of each input, and of
        # each output with whether it is small (SMALL_OUTPUT_BYTES)
        self.prepared: tuple[tuple[tuple[Any, ...], ...], ...] | None = None


class NativeExecutable:
    """Runs native entry functions against the parameter and state arenas."""

    name = "native"

    def __init__(
        self,
        build: NativeBuild,
        params: Arena,
        state: Arena,
        lock: ForkSafeLock | None = None,
        fixed: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        """`lock`: the owner's lock, when it guards the arenas as well (a
        Program's). `fixed`: inputs the owner keeps in arrays of fixed shape
        that it writes in place between calls and never replaces; every
        entry reads them where they are, and calls do not pass them."""
        self.build = build
        self.params = params
        self.state = state
        self.fixed = dict(fixed or {})
        self._bound: dict[str, tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = {}
        self._threads = _Memory()  # one slice per thread, shared by the entries (calls never overlap)
        self._entries: dict[str, _Entry] = {}
        self.lock = lock or ForkSafeLock()  # one call at a time: calls share the argument blocks and buffers
        self.entry(build.main)

    def entry(self, graph: str) -> _Entry:
        """The compiled entry of `graph`, compiling it on first use."""
        if graph not in self._entries:
            inputs, outputs = self._bound.get(graph, ({}, {}))
            program = self.build.programs[graph]
            self._entries[graph] = _Entry(program, self.build, graph, self.fixed | inputs, outputs)
        return self._entries[graph]

    def use_state(self, state: Arena) -> None:
        """Run against optimizer state `state` from now on (laid out as the
        compiled code expects, or never run an entry that reads it): every
        entry's block is rewritten at its next call."""
        with self.lock:
            self.state = state
            for entry in self._entries.values():
                entry.sizes = None

    def bind(
        self,
        graph: str,
        inputs: Mapping[str, np.ndarray] | None = None,
        outputs: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        """From now on entry `graph` reads `inputs` and writes `outputs`
        (by name) where these arrays are, and calls neither pass those
        inputs nor return those outputs. The owner writes the arrays in
        place and never replaces them. Each is checked once, when the entry
        is next made: exactly its value's static type, C-contiguous and
        aligned, and an output writeable."""
        with self.lock:
            self._bound[graph] = (dict(inputs or {}), dict(outputs or {}))
            self._entries.pop(graph, None)

    def release_memory(self) -> None:
        """Free the workspace, scratch and per-thread memory kept between
        calls; the next call of each entry allocates what it needs again."""
        with self.lock:
            for entry in self._entries.values():
                entry.sizes = None  # before the buffers its block points to go
                entry.workspace.release()
                entry.scratch.release()
            self._threads.release()

    @property
    def memory_bytes(self) -> int:
        """The bytes of workspace, scratch and per-thread memory held now."""
        held = [self._threads] + [m for e in self._entries.values() for m in (e.workspace, e.scratch)]
        return sum(m.array.size for m in held)

    def run(self, graph: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run entry `graph` on validated `inputs`; params and state are updated
        in place; returns the outputs (freshly allocated) but those bound."""
        with self.lock:
            return self._run(graph, inputs)

    def rerun(
        self, graph: str, inputs: Mapping[str, Any], validate: Callable[[], None] | None = None
    ) -> dict[str, np.ndarray] | None:
        """Run entry `graph` on `inputs` (by name, unchecked) when each is
        exactly what the entry's block is prepared for (an ndarray of the
        last call's shape and dtype, C-contiguous and aligned): then every
        check a call makes holds already, and only addresses change (the
        checks are most of a small step's or a batch-1 predict's time
        outside native code). `validate` (checks of the inputs' values,
        such as class labels; it may raise) runs after those checks, before
        the call. Else None, nothing done, and the caller takes the checked
        path (`run`)."""
        entry = self._entries.get(graph)
        if entry is None:
            return None
        with self.lock.current:
            prepared = entry.prepared  # read under the lock: another call may have resized the entry
            if entry.sizes is None or prepared is None:  # being rewritten, memory released, or never called
                return None
            wanted, made = prepared
            block = entry.block
            for name, slot, dtype, shape in wanted:
                array = inputs.get(name)
                if type(array) is not np.ndarray or array.dtype is not dtype or array.shape != shape:
                    return None
                flags = array.flags
                if not (flags.c_contiguous and flags.aligned):
                    return None
                # harmless if a later input fails: every call writes every input's address first
                block[slot] = data_address(array)
            if validate is not None:
                validate()
            outputs = {}
            for name, slot, dtype, shape, small in made:
                outputs[name], block[slot] = _output_array(shape, dtype, small)
            entry.function(entry.block_address)
        return outputs

    def sizes(self, graph: str, inputs: Mapping[str, np.ndarray]) -> dict[str, int]:
        """The symbol sizes (the batch) `inputs` give entry `graph`, checked as a call checks them."""
        return self._bind(self.entry(graph), inputs)

    def run_profiled(self, graph: str, inputs: Mapping[str, np.ndarray], ticks: np.ndarray) -> dict[str, np.ndarray]:
        """`run`, through the entry that adds each kernel's cycle-counter
        ticks to `ticks[k]` and the whole call's to `ticks[-1]` (int64, one
        more than the entry has kernels)."""
        kernels = len(self.build.programs[graph].kernels)
        if ticks.dtype != np.int64 or ticks.shape != (kernels + 1,) or not ticks.flags.c_contiguous:
            raise ShapeError(f"native {graph}: ticks must be a contiguous int64 array of {kernels + 1}")
        with self.lock:
            return self._run(graph, inputs, ticks)

    def _run(
        self, graph: str, inputs: Mapping[str, np.ndarray], ticks: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        entry = self.entry(graph)
        sizes = self._bind(entry, inputs)
        block = entry.block
        if sizes != entry.sizes:
            self._resize(entry, sizes)
        outputs = {}
        for name, slot, dtype, shape, small in entry.prepared[1]:
            outputs[name], block[slot] = _output_array(shape, dtype, small)
        for name, _, _, slot in entry.inputs:
            block[slot] = data_address(inputs[name])
        if ticks is None:
            entry.function(entry.block_address)
        else:
            entry.profiled(entry.block_address, data_address(ticks))
        return outputs

    def _resize(self, entry: _Entry, sizes: dict[str, int]) -> None:
        """New symbol sizes: fit the entry's workspace and scratch to them, lay
        the workspace slots out for them, and rewrite the entry's block.
        Transactional: every new buffer is allocated before any is swapped
        in, and the block stays untrusted (`sizes` None) until it is whole,
        so a failure at any point (MemoryError, KeyboardInterrupt) leaves
        nothing that points to freed memory."""
        entry.sizes = None
        program = entry.program
        offsets, workspace_bytes = program.workspace_layout(sizes)
        workspace = entry.workspace.refit(workspace_bytes)
        scratch = entry.scratch.refit(entry.scratch_bytes.evaluate(sizes))
        # shared by the entries: grown, never shrunk (release_memory frees it)
        per_thread = self._threads.refit(entry.thread_bytes * threads.pool().capacity, shrink=False)
        if workspace is not None:
            entry.workspace.array = workspace
        if scratch is not None:
            entry.scratch.array = scratch
        if per_thread is not None:
            for other in self._entries.values():  # they point to the old buffer
                other.sizes = None
            self._threads.array = per_thread
        shapes = [type.concrete_shape(sizes) for _, type, _, _ in entry.outputs]
        entry.prepared = (
            tuple((name, slot, dtype, type.concrete_shape(sizes)) for name, type, dtype, slot in entry.inputs),
            tuple(
                (name, slot, dtype, shape, math.prod(shape) * dtype.itemsize <= SMALL_OUTPUT_BYTES)
                for (name, _, dtype, slot), shape in zip(entry.outputs, shapes, strict=True)
            ),
        )
        block = entry.block
        for i, symbol in enumerate(program.symbols):
            block[i] = sizes[symbol]
        for slot, offset in zip(entry.workspace_slots, offsets, strict=True):
            block[slot] = entry.workspace.address + offset
        block[entry.slot["scratch"]] = entry.scratch.address
        block[entry.slot["threads"]] = self._threads.address
        if "params" in entry.slot:
            block[entry.slot["params"]] = data_address(self.params.buffer)
        if "state" in entry.slot:
            block[entry.slot["state"]] = data_address(self.state.buffer)
        entry.sizes = sizes

    @staticmethod
    def _bind(entry: _Entry, inputs: Mapping[str, np.ndarray]) -> dict[str, int]:
        """Symbol sizes from the inputs, after checking every input is exactly
        what the code expects (the last guard before native code)."""
        sizes: dict[str, int] = {}
        for name, type, dtype, _ in entry.inputs:
            array = inputs[name]
            if array.dtype != dtype:
                raise DTypeError(f"native {entry.program.name}: input {name} is {array.dtype}, expected {type}")
            if not (array.flags.c_contiguous and array.flags.aligned) or array.ndim != type.rank:
                raise ShapeError(f"native {entry.program.name}: input {name} must be a C-contiguous {type}")
            for dim, size in zip(type.shape, array.shape, strict=True):
                expected = sizes.setdefault(dim, size) if isinstance(dim, str) else dim
                if size != expected:
                    raise ShapeError(
                        f"native {entry.program.name}: input {name} has shape {array.shape}, expected {type}"
                    )
        return sizes


def _output_array(shape: tuple[int, ...], dtype: np.dtype, small: bool) -> tuple[np.ndarray, int]:
    """A fresh output array and its address; `small`: of at most SMALL_OUTPUT_BYTES."""
    if small:
        array = np.empty(shape, dtype)  # NumPy's own alignment (~1 us less)
        return array, data_address(array)
    # whole rows of vectors start on a cache line: a matmul's stores then
    # touch one line each, not two (up to 25% faster on large C)
    return aligned_array(shape, dtype)


def _fixed_address(entry: str, what: str, type: TensorType, array: np.ndarray, writeable: bool = False) -> int:
    """The address of a fixed input or bound output (`what`), once checked
    to be exactly `type` (of static shape: its memory never changes size)."""
    if not isinstance(array, np.ndarray) or array.dtype != type.dtype.numpy:
        got = array.dtype if isinstance(array, np.ndarray) else array.__class__.__name__
        raise DTypeError(f"native {entry}: {what} is {got}, expected {type}")
    if not type.is_static or array.shape != type.shape:
        raise ShapeError(f"native {entry}: {what} has shape {array.shape}, expected {type}")
    if not (array.flags.c_contiguous and array.flags.aligned) or (writeable and not array.flags.writeable):
        kind = "C-contiguous, writeable" if writeable else "C-contiguous"
        raise ShapeError(f"native {entry}: {what} must be a {kind} {type}")
    return data_address(array)


class GraphFunction:
    """Any graph compiled to native code, called like `ir.interpret`: the
    differential-testing twin of the reference interpreter."""

    def __init__(self, graph: Graph, target: Target | None = None) -> None:
        self.graph = graph
        model = [*graph.params, *graph.buffers]
        self.params = Arena({p.name: p.type.shape for p in model}, _arena_dtype(model, "params and buffers"))
        self.state = Arena({s.name: s.type.shape for s in graph.state}, _arena_dtype(graph.state, "state"))
        self.log = PassLog()
        build = build_native(
            {graph.name: graph}, self.params.byte_offsets, self.state.byte_offsets, target or host(), self.log
        )
        self.build = build
        self._executable = NativeExecutable(build, self.params, self.state)

    def __call__(self, arguments: Mapping[str, np.ndarray]) -> RunResult:
        """Run on arrays named like the graph's arguments; params and state
        are copied in, and their updated values returned (not written back)."""
        bind_symbols(self.graph, arguments)
        inputs = {a.name: np.asarray(arguments[a.name], order="C") for a in self.graph.inputs}  # keeps 0-d arrays 0-d
        with self._executable.lock:  # params and state are copied in and out around the run
            for arena in (self.params, self.state):
                for name in arena.names():
                    np.copyto(arena[name], arguments[name])
            outputs = self._executable.run(self.graph.name, inputs)
            updates = {
                name: (self.params[name] if name in self.params else self.state[name]).copy()
                for name in self.graph.updates
            }
        return RunResult(outputs=outputs, updates=updates)


def _arena_dtype(values, role: str) -> np.dtype:
    dtypes = {v.type.dtype.numpy for v in values}
    if len(dtypes) > 1:
        raise IRError(f"native code keeps all {role} in one arena of one dtype, got {sorted(map(str, dtypes))}")
    return dtypes.pop() if dtypes else np.dtype(np.float32)
