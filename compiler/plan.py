"""Scheduling and memory planning: from a fused graph to a kernel program.

The plan fixes the order of kernels and where every tensor lives:
arguments in their own buffers (params and optimizer state in their
arenas), outputs in buffers the caller provides, and every other stored
value in a slot of the workspace, reused once its value is dead. Slots
have symbolic sizes (polynomials in the batch size); the runtime lays them
out for the actual sizes of each run (`KernelProgram.workspace_layout`),
so the workspace is as large as the data, not padded per row.
Updates of params and state are written in place by the kernel that
computes them, after every kernel that reads the old value; where that is
impossible the new value goes to the workspace and a copy kernel at the
end writes it back. One run of the program allocates nothing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..ir import DType, Graph, Node, Value
from ..ir.types import Shape
from .fusion import FusedGraph, Kernel, node_class
from .memory import packed_offsets
from .ordering import ordered
from .symbolic import Poly, estimate, maximum, product, row_major_strides
from .views import View, layout_view, read_view


@dataclass(frozen=True)
class Buffer:
    """Where a tensor lives: `offset` bytes into `region`, `size` bytes long.
    Regions: `in:NAME`, `out:NAME`, `params`, `state`, `workspace:N`
    (slot N of the workspace), `scratch` (temporaries shared by a kernel's
    threads) and `threads` (one slice per thread, such as packed matmul
    panels)."""

    region: str
    offset: Poly
    size: Poly


PROFILE_SUFFIX = ".profile"
"""The profiled entry of program P is the function `P.profile`."""

ALLREDUCE_SUM = "ember_allreduce_sum"
"""The function a collective kernel calls to sum its result over the
process group (codegen/collective.py; the runtime defines it)."""

ALLREDUCE_DTYPES = (DType.float32, DType.float64)
"""The element types `ALLREDUCE_SUM` takes, by the code passed with the data."""

ACTIVE_GROUPS = "ember_active_groups"
"""An i64 the runtime keeps: how many threads run inside a process group now.
While it is 0, collective kernels skip the call (a job of one)."""

ALLREDUCE_HOOK = "ember_allreduce_hook"
"""Where the runtime puts the function `ALLREDUCE_SUM` calls (a callback into Python)."""


@dataclass
class KernelProgram:
    """Kernels in execution order plus the buffer of every stored tensor."""

    name: str
    graph: Graph
    kernels: list[Kernel]
    inline: set[Node]
    buffers: dict[Value, Buffer]
    symbols: tuple[str, ...]
    regions: tuple[str, ...]
    workspace: tuple[Poly, ...]
    """The size in bytes of each workspace slot (region `workspace:N`)."""
    recomputed: set[Node] = field(default_factory=set)
    """Nodes computed at each index by the kernels that read them (see `fusion.recomputed_nodes`)."""

    @property
    def profiled_name(self) -> str:
        """The entry's twin that also times each kernel (codegen/module.py)."""
        return self.name + PROFILE_SUFFIX

    def is_stored(self, value: Value) -> bool:
        return value in self.buffers

    def workspace_layout(self, sizes: Mapping[str, int]) -> tuple[list[int], int]:
        """The byte offset of every workspace slot at these symbol sizes
        (each on a 64-byte boundary), and the size of the workspace."""
        return packed_offsets(slot.evaluate(sizes) for slot in self.workspace)


def operand_view(node: Node, index: int, domain: Shape, is_stored) -> View:
    """How member `node` of a kernel over `domain` reads input `index` from
    memory. A layout member (a stored copy of a view) reads its whole view."""
    if node_class(node) == "layout":
        view = layout_view(node.output, lambda v: v is not node.output and is_stored(v))
        assert view is not None, "fusion stores the input of a reshape that needs a copy"
        return view
    value = node.inputs[index]
    if index in node.op.leading_inputs:  # labels[i] for every class j of out[i, j]
        view = read_view(value, value.type.shape, is_stored)
        return View(view.base, tuple(domain), (*view.strides, Poly()), view.offset)
    if node_class(node) == "matmul" or is_table(node, index):  # read as a whole by index
        return read_view(value, value.type.shape, is_stored)
    shape = node.inputs[0].type.shape if node_class(node) == "reduce" else node.output.type.shape
    return read_view(value, shape, is_stored)


def is_table(node: Node, index: int) -> bool:
    """Is input `index` of `node` a table that it reads by rows (gather)?"""
    return node.op.rows == "gather" and index == 0


def kernel_reads(
    kernel: Kernel, inline: set[Node], is_stored, recomputed: frozenset[Node] | set[Node] = frozenset()
) -> dict[Value, bool]:
    """The stored tensors `kernel` reads, each with True when every read is at
    the index the kernel writes (so writing the new value in place is safe).
    Inline and recomputed nodes count by what they read themselves."""
    reads: dict[Value, bool] = {}
    members = set(kernel.nodes)
    identity = row_major_strides(kernel.domain)

    def note(value: Value, at_identity: bool) -> None:
        reads[value] = reads.get(value, True) and at_identity

    def visit_inline(node: Node) -> None:
        for v in node.inputs:
            if v.node in inline or v.node in recomputed:
                visit_inline(v.node)
            elif v.node is None and node.op.counts is None:  # a size reads no data
                note(v, kernel.domain == ())

    if kernel.copy:
        note(kernel.copy[0], True)
    for node in kernel.nodes:
        if node in inline:
            visit_inline(node)
            continue
        for i, v in enumerate(node.inputs):
            if v.node in members:
                continue
            if v.node in inline or v.node in recomputed:
                visit_inline(v.node)
                continue
            view = operand_view(node, i, kernel.domain, is_stored)
            same_index = (
                node_class(node) != "matmul"
                and not is_table(node, i)
                and view.strides == identity
                and view.offset == Poly()
                and product(view.base.type.shape) == product(kernel.domain)
            )
            note(view.base, same_index)
    return reads


def _topological(kernels: list[Kernel], deps: Mapping[Kernel, set[Kernel]]) -> list[Kernel] | None:
    """Kernels ordered after their dependencies (ties: original order); None on a cycle."""
    rank = {k: i for i, k in enumerate(kernels)}
    return ordered(kernels, deps, rank.__getitem__)


def _nbytes(value: Value) -> Poly:
    return product(value.type.shape) * value.type.dtype.itemsize


def plan(
    fused: FusedGraph, name: str, param_offsets: Mapping[str, int], state_offsets: Mapping[str, int]
) -> KernelProgram:
    """Schedule `fused` and place every tensor. `param_offsets` gives each
    param's and buffer's byte offset in the model arena (buffers are model
    tensors too, read by every graph), `state_offsets` each optimizer state
    tensor's in the state arena."""
    graph = fused.graph
    buffers: dict[Value, Buffer] = {}
    for a in graph.inputs:
        buffers[a] = Buffer(f"in:{a.name}", Poly(), _nbytes(a))
    for a in [*graph.params, *graph.buffers]:
        buffers[a] = Buffer("params", Poly.of(param_offsets[a.name]), _nbytes(a))
    for a in graph.state:
        buffers[a] = Buffer("state", Poly.of(state_offsets[a.name]), _nbytes(a))
    for out_name, v in graph.outputs.items():
        buffers[v] = Buffer(f"out:{out_name}", Poly(), _nbytes(v))
    stored = fused.stored | set(graph.arguments)
    is_stored = stored.__contains__
    reads = {k: kernel_reads(k, fused.inline, is_stored, fused.recomputed) for k in fused.kernels}
    writer = {v: k for k in fused.kernels for v in k.stores}

    deps = {k: set(d) for k, d in fused.depends.items()}
    copies: list[Kernel] = []
    for target_name, value in graph.updates.items():
        target = graph.argument(target_name)
        k_new = writer[value]
        readers = [k for k in fused.kernels if target in reads[k] and k is not k_new]
        trial = {k: set(d) for k, d in deps.items()}
        trial[k_new].update(readers)
        if reads[k_new].get(target, True) and _topological(fused.kernels, trial) is not None:
            deps = trial
            buffers[value] = buffers[target]
        else:
            copies.append(Kernel(f"copy_{target_name}", target.type.shape, [], copy=(value, target)))
    order = _topological(fused.kernels, deps)
    assert order is not None  # each accepted update kept the graph acyclic
    for i, k in enumerate(order):
        k.name = f"k{i}"
    order += copies
    for c in copies:
        reads[c] = {c.copy[0]: True}  # type: ignore[index]

    workspace = _place_workspace(order, reads, buffers)
    symbols = tuple(sorted({d for a in graph.arguments for d in a.type.shape if isinstance(d, str)}))
    regions = tuple(
        [f"in:{a.name}" for a in graph.inputs]
        + (["params"] if graph.params or graph.buffers else [])
        + (["state"] if graph.state else [])
        + [f"out:{n}" for n in graph.outputs]
        + [f"workspace:{i}" for i in range(len(workspace))]
        + ["scratch", "threads"]
    )
    return KernelProgram(name, graph, order, fused.inline, buffers, symbols, regions, workspace, fused.recomputed)


def _place_workspace(order: list[Kernel], reads: dict[Kernel, dict[Value, bool]], buffers: dict) -> tuple[Poly, ...]:
    """Give every stored value without a buffer a workspace slot, reusing the
    slots of values no later kernel reads: a value takes the free slot it
    would grow least (among those already large enough, the smallest), or a
    new slot when none is free. Returns the size in bytes of each slot."""
    last_read: dict[Value, int] = {}
    for i, k in enumerate(order):
        for v in reads[k]:
            last_read[v] = i
    slots: list[Poly] = []
    free: list[int] = []  # slots whose values are dead
    live: dict[Value, int] = {}
    for i, k in enumerate(order):
        for v in [v for v in live if last_read.get(v, -1) < i]:
            free.append(live.pop(v))
        for v in k.stores:
            if v in buffers:
                continue
            need = _nbytes(v)
            if free:
                slot = min(free, key=lambda s: _fit(slots[s], need))
                free.remove(slot)
                slots[slot] = maximum(slots[slot], need)
            else:
                slot = len(slots)
                slots.append(need)
            live[v] = slot
            buffers[v] = Buffer(f"workspace:{slot}", Poly(), need)
    return tuple(slots)


def _fit(slot: Poly, need: Poly) -> tuple[int, int]:
    """How well a free slot suits a value of `need` bytes, best first: by
    how much it grows the slot, then by the slot's size (at large sizes)."""
    return estimate(maximum(slot, need)) - estimate(slot), estimate(slot)
