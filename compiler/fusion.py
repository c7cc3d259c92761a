"""Fusion: partition a graph's nodes into kernels.

Each kernel loops once over one iteration domain. Its members are
elementwise ops evaluated at each index of the domain, reductions over
some axes of the domain, and at most one matmul whose output tile the
elementwise members then finish in registers (the epilogue). A value
crosses kernels only through memory; within a kernel it stays in
registers. Some nodes never form kernels:

- *inline* nodes: scalar computations over constants, sizes and scalar
  arguments (a learning rate, a bias correction), evaluated once at the
  start of every kernel that uses them;
- *layout* nodes (reshape, broadcast_to, transpose): they become strided
  views of a stored value (see `views.py`);
- *recomputed* nodes: values that are functions of the element index and
  scalars alone (random numbers, and elementwise ops over them and inline
  scalars), computed again at each index by every kernel that reads them,
  so a dropout mask never touches memory (see `recomputed_nodes`).

The partition is greedy, consumer first: matmul epilogues merge first,
then elementwise producers into their elementwise or reduction consumers,
as long as the kernels still form a DAG and every edge inside a kernel
reads a value at the index where it was computed."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ir import Graph, IRError, Node, Value
from ..ir.types import Shape
from .ordering import ordered
from .views import LAYOUT_OPS, layout_view

REDUCTION_OPS = frozenset({"sum", "max"})


def node_class(node: Node) -> str:
    """`matmul`, `reduce`, `layout` or `elementwise` (what fusion sees of an op)."""
    op = node.op
    if op.kind == "matmul":
        return "matmul"
    if op.name in REDUCTION_OPS:
        return "reduce"
    if op.name in LAYOUT_OPS:
        return "layout"
    if op.kind in ("elementwise", "source"):
        return "elementwise"
    raise IRError(f"op '{op.name}' must be lowered before fusion (see compiler/lower.py)")


def iteration_domain(node: Node) -> Shape:
    """The index space a node is computed over: a reduction's input shape,
    every other node's output shape."""
    return node.inputs[0].type.shape if node_class(node) == "reduce" else node.output.type.shape


@dataclass(eq=False)
class Kernel:
    """One loop nest: `nodes` computed over `domain`, `stores` written to
    memory. A copy kernel has no nodes: it copies `copy[0]` into the
    argument `copy[1]` (an update that could not be written in place)."""

    name: str
    domain: Shape
    nodes: list[Node]
    stores: list[Value] = field(default_factory=list)
    copy: tuple[Value, Value] | None = None

    @property
    def matmul(self) -> Node | None:
        return next((n for n in self.nodes if node_class(n) == "matmul"), None)

    @property
    def reductions(self) -> list[Node]:
        return [n for n in self.nodes if node_class(n) == "reduce"]

    @property
    def kind(self) -> str:
        if self.copy:
            return "copy"
        return "matmul" if self.matmul else "reduce" if self.reductions else "elementwise"

    def __repr__(self) -> str:
        return f"<Kernel {self.name} {self.kind} over {list(self.domain)}: {len(self.nodes)} nodes>"


@dataclass
class FusedGraph:
    """A graph partitioned into kernels (listed in a valid execution order)."""

    graph: Graph
    kernels: list[Kernel]
    inline: set[Node]
    kernel_of: dict[Node, Kernel]
    depends: dict[Kernel, set[Kernel]]
    recomputed: set[Node] = field(default_factory=set)

    @property
    def stored(self) -> set[Value]:
        return {v for k in self.kernels for v in k.stores}


def inline_nodes(graph: Graph) -> set[Node]:
    """Scalar nodes computable from constants, sizes and scalar arguments alone."""
    inline: set[Node] = set()
    for node in graph.nodes:
        if node.op.name in ("constant", "size") or (
            node_class(node) == "elementwise"
            and node.output.type.rank == 0
            and all((v.node is None and v.type.rank == 0) or v.node in inline for v in node.inputs)
        ):
            inline.add(node)
    return inline


def recomputed_nodes(graph: Graph, inline: set[Node]) -> set[Node]:
    """Nodes every kernel that reads them computes again at its own index
    instead of loading: `element_index` ops (random_uniform) over inline
    scalars and scalar arguments, and elementwise ops of the same shape over
    such nodes and scalars, as long as every reader is an elementwise op or
    reduction that reads them at its own index. A node read otherwise
    (through a view, by a matmul, broadcast to another shape, as a result)
    is stored, and so are the nodes computed from it."""
    escaping = {v.node for v in (*graph.outputs.values(), *graph.updates.values())}
    recomputed: set[Node] = set()
    for node in graph.nodes:
        if node in inline or node in escaping or node_class(node) != "elementwise":
            continue
        if not all(_from_scalars_or(v, inline, recomputed) for v in node.inputs):
            continue
        if node.op.element_index or any(
            v.node in recomputed and v.type.shape == node.output.type.shape for v in node.inputs
        ):
            recomputed.add(node)
    changed = True
    while changed:
        changed = False
        for node in graph.nodes:
            for v in node.inputs:
                if v.node in recomputed and not _reads_at_own_index(node, v, recomputed):
                    recomputed.discard(v.node)
                    changed = True
            if node in recomputed and not all(_from_scalars_or(v, inline, recomputed) for v in node.inputs):
                recomputed.discard(node)
                changed = True
    return recomputed


def _from_scalars_or(value: Value, inline: set[Node], recomputed: set[Node]) -> bool:
    """Is `value` an inline scalar, a scalar argument or a recomputed node?"""
    return value.node in inline or value.node in recomputed or (value.node is None and value.type.rank == 0)


def _reads_at_own_index(reader: Node, value: Value, recomputed: set[Node]) -> bool:
    """Does `reader` read `value` at the index it computes (so it can recompute it)?"""
    if reader in recomputed:
        return value.type.shape == reader.output.type.shape
    return node_class(reader) in ("elementwise", "reduce") and value.type.shape == iteration_domain(reader)


class _Group:
    """A kernel under construction (a union-find set of nodes)."""

    def __init__(self, node: Node) -> None:
        self.nodes = [node]
        self.parent: _Group = self
        self.succ: dict[_Group, bool] = {}  # successor group -> every edge to it is fusible
        self.pred: set[_Group] = set()

    def find(self) -> _Group:
        root = self
        while root.parent is not root:
            root = root.parent
        self.parent = root
        return root

    @property
    def has_matmul(self) -> bool:
        return any(node_class(n) == "matmul" for n in self.nodes)

    @property
    def has_reduction(self) -> bool:
        return any(node_class(n) == "reduce" for n in self.nodes)

    @property
    def has_one_hot(self) -> bool:
        return any(n.op.name == "one_hot" for n in self.nodes)

    @property
    def domain(self) -> Shape:
        return iteration_domain(self.nodes[0])


def _sources(value: Value, members: set[Node], fusible: bool = True) -> list[tuple[Node, bool]]:
    """The member nodes a read of `value` depends on, and whether the read
    is at the producer's own index (fusible) or through a view."""
    node = value.node
    if node is None:
        return []
    if node in members:
        return [(node, fusible)]
    if node_class(node) == "layout":
        return _sources(node.inputs[0], members, fusible=False)
    return []  # inline or recomputed: computed by the reader from scalars (and the index) alone


def _edges(graph: Graph, members: set[Node]) -> list[tuple[Node, Node, bool]]:
    edges = []
    for u in graph.nodes:
        if u not in members:
            continue
        for v in u.inputs:
            for p, direct in _sources(v, members):
                fusible = (
                    direct
                    and node_class(u) in ("elementwise", "reduce")
                    and u.op.name != "one_hot"
                    and node_class(p) in ("elementwise", "matmul", "layout")
                    and v.type.shape == iteration_domain(u)
                    and not (node_class(p) == "matmul" and node_class(u) == "reduce")
                )
                edges.append((p, u, fusible))
    return edges


def _reaches(start: _Group, target: _Group, skip: _Group) -> bool:
    """Is `target` reachable from `start`'s successors, other than `skip`?"""
    stack = [g for g in start.succ if g is not skip]
    seen = set(stack)
    while stack:
        g = stack.pop()
        if g is target:
            return True
        for nxt in g.succ:
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return False


def _can_merge(a: _Group, b: _Group) -> bool:
    """May producer group `a` merge with consumer group `b`?"""
    if not a.succ.get(b, False) or a in b.succ:
        return False  # some edge between them reads through a view, or they depend both ways
    if a.has_matmul and b.has_matmul:
        return False
    if (a.has_matmul or b.has_matmul) and (a.has_reduction or b.has_reduction):
        return False
    if (a.has_matmul or b.has_matmul) and (a.has_one_hot or b.has_one_hot):
        return False  # one_hot computes from the loop index, which a matmul's epilogue does not have
    if a.domain != b.domain:
        return False
    return not _reaches(a, b, skip=b)


def _merge(a: _Group, b: _Group) -> None:
    """Merge consumer `b` into producer `a`, joining their edges."""
    a.nodes += b.nodes
    b.parent = a
    del a.succ[b]
    for g, fusible in b.succ.items():
        a.succ[g] = a.succ.get(g, True) and fusible
        g.pred.discard(b)
        g.pred.add(a)
    for g in b.pred - {a}:
        fusible = g.succ.pop(b)
        g.succ[a] = g.succ.get(a, True) and fusible
        a.pred.add(g)


def _copies_for_reshapes(graph: Graph, members: set[Node]) -> set[Node]:
    """Layout nodes to store because a reshape of them cannot be a view (a
    reshape of a transposed or broadcast tensor that is not contiguous)."""
    stored = set(members)
    for node in graph.nodes:
        # The reshape itself may be stored (an output): its view must start below it.
        is_base = lambda v, out=node.output: v is not out and v.node in stored
        if node.op.name == "reshape" and layout_view(node.output, is_base) is None:
            stored.add(node.inputs[0].node)
    return stored - members


def _copies_for_matmuls(graph: Graph, members: set[Node], inline: set[Node]) -> set[Node]:
    """Layout nodes a matmul reads that are views of an inline scalar (a
    reshape or broadcast of a constant): a matmul reads its operands from
    memory, and an inline scalar has none, so the view is stored."""
    stored = set()
    for node in graph.nodes:
        if node_class(node) != "matmul":
            continue
        for operand in node.inputs:
            base = operand
            while base.node is not None and node_class(base.node) == "layout" and base.node not in members:
                base = base.node.inputs[0]
            if base.node in inline and base is not operand:
                stored.add(operand.node)
    return stored


def fuse(graph: Graph) -> FusedGraph:
    """Partition `graph` (lowered: see `lower_for_codegen`) into kernels."""
    order = {node: i for i, node in enumerate(graph.nodes)}
    inline = inline_nodes(graph)
    recomputed = recomputed_nodes(graph, inline)
    escaping = set(graph.outputs.values()) | set(graph.updates.values())
    computed_by_readers = inline | recomputed
    members = {
        n for n in graph.nodes if (n not in computed_by_readers and node_class(n) != "layout") or n.output in escaping
    }
    members |= _copies_for_reshapes(graph, members)
    members |= _copies_for_matmuls(graph, members, inline)
    groups = {n: _Group(n) for n in graph.nodes if n in members}
    edges = _edges(graph, members)
    for p, u, fusible in edges:
        gp, gu = groups[p], groups[u]
        if gp is not gu:
            gp.succ[gu] = gp.succ.get(gu, True) and fusible
            gu.pred.add(gp)

    def try_merge(p: Node, u: Node) -> None:
        a, b = groups[p].find(), groups[u].find()
        if a is not b and _can_merge(a, b):
            _merge(a, b)

    candidates = sorted((e for e in edges if e[2]), key=lambda e: (-order[e[1]], order[e[0]]))
    for p, u, _ in candidates:  # epilogues first: a matmul's consumers finish its tiles
        if node_class(p) == "matmul":
            try_merge(p, u)
    for p, u, _ in candidates:
        try_merge(p, u)
    return _build(graph, groups, members, inline, recomputed, escaping, order)


def _build(graph, groups, members, inline, recomputed, escaping, order) -> FusedGraph:
    roots: dict[_Group, list[Node]] = {}
    for n in graph.nodes:
        if n in members:
            roots.setdefault(groups[n].find(), []).append(n)
    group_deps: dict[_Group, set[_Group]] = {g: set() for g in roots}
    for g, nodes in roots.items():
        for u in nodes:
            for v in u.inputs:
                for p, _ in _sources(v, members):
                    gp = groups[p].find()
                    if gp is not g:
                        group_deps[g].add(gp)
    placed = ordered(roots, group_deps, lambda g: order[roots[g][0]])
    if placed is None:
        raise IRError("fusion produced a cycle between kernels")  # a bug in the merge rules
    kernels = {g: Kernel(f"k{i}", iteration_domain(roots[g][0]), roots[g]) for i, g in enumerate(placed)}
    kernel_of = {n: kernels[g] for g, nodes in roots.items() for n in nodes}
    readers: dict[Value, set[Kernel]] = {}
    for n in members:
        for v in n.inputs:
            for p, direct in _sources(v, members):
                if kernel_of[p] is not kernel_of[n] or not direct:
                    readers.setdefault(p.output, set()).add(kernel_of[n])
    for kernel in kernels.values():
        kernel.stores = [n.output for n in kernel.nodes if n.output in escaping or n.output in readers]
    depends = {kernels[g]: {kernels[d] for d in deps} for g, deps in group_deps.items()}
    return FusedGraph(graph, [kernels[g] for g in placed], inline, kernel_of, depends, recomputed)
