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
- *layout* nodes (ops with a `view` rule: reshape, broadcast_to,
  transpose): they become strided views of a stored value (see `views.py`);
- *recomputed* nodes: values that are functions of the element index and
  scalars alone (random numbers, and elementwise ops over them and inline
  scalars), computed again at each index by every kernel that reads them,
  so a dropout mask never touches memory (see `recomputed_nodes`).

The partition is greedy, consumer first: matmul epilogues merge first,
then elementwise producers into their elementwise or reduction consumers,
as long as the kernels still form a DAG and every edge inside a kernel
reads a value at the index where it was computed. Last, row fusion joins
kernels into *row kernels* (see `RowSchedule`): a reduction over the
innermost axes, the per-row scalars computed from it and the consumers
that read them broadcast along the row, so LayerNorm or softmax is one
pass over each row's data instead of a kernel per step."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ir import Graph, IRError, Node, Value
from ..ir.types import Shape
from .ordering import ordered
from .symbolic import Poly, product, row_major_strides
from .views import View, layout_view, read_view

_CLASSES = {
    "matmul": "matmul",
    "reduction": "reduce",
    "scatter": "reduce",  # pad and scatter_add accumulate into their results as a sum does, at other places
    "gather": "elementwise",
    "elementwise": "elementwise",
    "source": "elementwise",
    "collective": "collective",  # a kernel of its own: a copy, then the all-reduce of the copy
}


def node_class(node: Node) -> str:
    """`matmul`, `reduce`, `layout`, `collective` or `elementwise` (what
    fusion sees of an op, by its entry); ops with a `lower` rule never get here."""
    op = node.op
    if op.lower is None and op.kind in _CLASSES:
        return _CLASSES[op.kind]
    if op.lower is None and op.view is not None:
        return "layout"
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
    rows: RowSchedule | None = None

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
        if self.rows:
            return "rows"
        if any(node_class(n) == "collective" for n in self.nodes):
            return "collective"
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
        if (
            node.op.arity == 0
            or node.op.counts is not None
            or (
                node_class(node) == "elementwise"
                and node.output.type.rank == 0
                and all((v.node is None and v.type.rank == 0) or v.node in inline for v in node.inputs)
            )
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
    positions = [i for i, v in enumerate(reader.inputs) if v is value]
    return (
        node_class(reader) in ("elementwise", "reduce")
        and value.type.shape == iteration_domain(reader)
        and all(reads_at_own_index(reader, i) for i in positions)
    )


class _Group:
    """A kernel under construction (a union-find set of nodes)."""

    def __init__(self, node: Node) -> None:
        self.nodes = [node]
        self.parent: _Group = self
        self.succ: dict[_Group, bool] = {}  # successor group -> every edge to it is fusible
        self.pred: set[_Group] = set()
        self.rows: tuple[Shape, int] | None = None  # a row kernel's (domain, outer rank)
        self.scalars: set[Node] = set()  # a row kernel's members computed once per row

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
    def uses_index(self) -> bool:
        return any(n.op.uses_index for n in self.nodes)

    @property
    def domain(self) -> Shape:
        return iteration_domain(self.nodes[0])


def reads_at_own_index(node: Node, index: int) -> bool:
    """Does `node` read input `index` at the index it computes (not at the
    leading indices only, nor by rows of a table)?"""
    return index not in node.op.leading_inputs and not (node.op.rows == "gather" and index == 0)


def _read(node: Node) -> list[Value]:
    """The inputs whose values `node` reads: none for a `size`, which reads
    only their shapes (so it neither waits for nor fuses with their producers)."""
    return [] if node.op.counts is not None else node.inputs


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
        for i, v in enumerate(_read(u)):
            for p, direct in _sources(v, members):
                fusible = (
                    direct
                    and node_class(u) in ("elementwise", "reduce")
                    and reads_at_own_index(u, i)
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
    if (a.has_matmul or b.has_matmul) and (a.uses_index or b.uses_index):
        return False  # the loop index (one_hot) is not there in a matmul's epilogue
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
    """Layout nodes to store because a layout op of them cannot be a view (a
    reshape of a transposed or broadcast tensor that is not contiguous)."""
    stored = set(members)
    for node in graph.nodes:
        # The reshape itself may be stored (an output): its view must start below it.
        is_base = lambda v, out=node.output: v is not out and v.node in stored
        if node_class(node) == "layout" and layout_view(node.output, is_base) is None:
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
    reduced = _feeds_reductions_only(graph, escaping)
    for p, u, _ in candidates:  # epilogues first: a matmul's consumers finish its tiles
        if node_class(p) == "matmul" and u not in reduced:
            try_merge(p, u)
    for p, u, _ in candidates:
        try_merge(p, u)
    _merge_rows(graph, groups, edges, order, recomputed)
    return _build(graph, groups, members, inline, recomputed, escaping, order)


def _feeds_reductions_only(graph: Graph, escaping: set[Value]) -> set[Node]:
    """Elementwise nodes read only by reductions. In a matmul's epilogue
    such a node would be stored for the reductions (which never join a
    matmul's kernel); computed in the reductions' kernel instead, it costs
    no memory (a sum of squares of a gradient for its norm)."""
    readers: dict[Node, list[Node]] = {}
    for node in graph.nodes:
        for v in _read(node):
            if v.node is not None:
                readers.setdefault(v.node, []).append(node)
    return {
        node
        for node, users in readers.items()
        if node_class(node) == "elementwise"
        and node.output not in escaping
        and all(node_class(u) == "reduce" for u in users)
    }


def _group_domain(g: _Group, nodes: list[Node]) -> Shape:
    return g.rows[0] if g.rows is not None else iteration_domain(nodes[0])


def _build(graph, groups, members, inline, recomputed, escaping, order) -> FusedGraph:
    roots: dict[_Group, list[Node]] = {}
    for n in graph.nodes:
        if n in members:
            roots.setdefault(groups[n].find(), []).append(n)
    group_deps: dict[_Group, set[_Group]] = {g: set() for g in roots}
    for g, nodes in roots.items():
        for u in nodes:
            for v in _read(u):
                for p, _ in _sources(v, members):
                    gp = groups[p].find()
                    if gp is not g:
                        group_deps[g].add(gp)
    placed = ordered(roots, group_deps, lambda g: order[roots[g][0]])
    if placed is None:
        raise IRError("fusion produced a cycle between kernels")  # a bug in the merge rules
    kernels = {g: Kernel(f"k{i}", _group_domain(g, roots[g]), roots[g]) for i, g in enumerate(placed)}
    kernel_of = {n: kernels[g] for g, nodes in roots.items() for n in nodes}
    readers: dict[Value, set[Kernel]] = {}
    for n in members:
        for v in _read(n):
            for p, direct in _sources(v, members):
                # A row kernel reads its own members through views in registers (row fusion checked each read).
                if kernel_of[p] is not kernel_of[n] or not (direct or groups[n].find().rows):
                    readers.setdefault(p.output, set()).add(kernel_of[n])
    for kernel in kernels.values():
        kernel.stores = [n.output for n in kernel.nodes if n.output in escaping or n.output in readers]
    for g, kernel in kernels.items():
        if g.rows is not None:
            kernel.rows = _row_schedule(kernel, g.rows[1], g.scalars)
    depends = {kernels[g]: {kernels[d] for d in deps} for g, deps in group_deps.items()}
    return FusedGraph(graph, [kernels[g] for g in placed], inline, kernel_of, depends, recomputed)


# -- row fusion ----------------------------------------------------------------
#
# A row kernel over `domain` splits its axes at `outer`: each index of the
# outer axes is a row, the remaining (innermost) axes span it. Its members
# have one of two levels:
#   - row members (elementwise ops over `domain`, and reductions) run at each
#     element of the row, in the sweep their inputs allow;
#   - scalar members (elementwise ops over the outer shape, size-1 axes aside)
#     run once per row, between sweeps, on the results of row reductions
#     (reductions of whole rows) and of other scalars.
# Inside the kernel a row member reads a row member at its own index and a
# scalar broadcast along the row; a scalar reads scalars and row reductions
# at its own row. Any other read crosses kernels through memory.


ROW_BUFFER_BYTES = 16 * 1024
"""The most a row kernel keeps in row buffers (on the stack, in L1): each
holds one row of a member that later sweeps read again. Beyond it, or
for rows of symbolic size, later sweeps compute such members again."""


@dataclass
class RowSchedule:
    """How a row kernel runs, row by row: sweeps over the row axes
    `domain[outer:]`. A row member is due in sweep `phase[node]`; sweep k
    evaluates `evaluate[k]`: its due members that are stored or reduced and
    what they need. Of those an earlier sweep computed, the ones in
    `reload[k]` are read back, from memory if the kernel stores them, else
    from their row buffers (`keep`); the others are computed again. A
    member of `scalars` runs once per row after sweep `phase[node]` (-1:
    before the first)."""

    outer: int
    scalars: set[Node]
    phase: dict[Node, int]
    evaluate: list[list[Node]]
    reload: list[set[Node]]
    keep: set[Node]

    @property
    def sweeps(self) -> int:
        return len(self.evaluate)


def _outer_rank(domain: Shape, row_axes: set[int]) -> int:
    """The outer rank that puts `row_axes` in the row: one past the last other axis of size != 1."""
    return max((j + 1 for j, d in enumerate(domain) if d != 1 and j not in row_axes), default=0)


def row_reduction_outer(node: Node) -> int | None:
    """The outer rank at which reduction `node` reduces whole rows, or None
    when it reduces an outer axis (a column sum accumulates in memory)."""
    domain = node.inputs[0].type.shape
    reduced = {a % len(domain) for a in node.attrs["axes"]}
    outer = _outer_rank(domain, reduced)
    return outer if all(a >= outer or domain[a] == 1 for a in reduced) else None


def _reduction_fits_rows(node: Node, domain: Shape, outer: int) -> bool:
    """Can a row kernel at `outer` compute reduction `node`? It sums whole
    rows in registers, or keeps the row's last axis and adds vectors in
    memory; a reduction over the last axis that keeps another row axis
    would need a register per kept index."""
    reduced = {a % len(domain) for a in node.attrs["axes"]}
    row_axes = {j for j in range(outer, len(domain)) if domain[j] != 1}
    return row_axes <= reduced or max(row_axes, default=-1) not in reduced


def _non_unit(shape) -> tuple:
    return tuple(d for d in shape if d != 1)


def _is_identity(view: View, shape: Shape) -> bool:
    """Does `view`, read over `shape`, visit its base in row-major order?"""
    strides = row_major_strides(shape)
    return (
        view.offset == Poly()
        and product(view.base.type.shape) == product(shape)
        and all(d == 1 or s == want for d, s, want in zip(shape, view.strides, strides, strict=True))
    )


def _is_row_broadcast(view: View, domain: Shape, outer: int) -> bool:
    """Does `view`, read over `domain`, give every element of row `o` the
    element `o` of its base (one value per row)?"""
    strides = row_major_strides(domain[:outer])
    return (
        view.offset == Poly()
        and product(view.base.type.shape) == product(domain[:outer])
        and all(d == 1 or s == want for d, s, want in zip(domain[:outer], view.strides, strides, strict=False))
        and all(d == 1 or s == Poly() for d, s in zip(domain[outer:], view.strides[outer:], strict=True))
    )


def _read_shape(node: Node) -> Shape:
    return node.inputs[0].type.shape if node_class(node) == "reduce" else node.output.type.shape


def _edge_views(a: _Group, b: _Group) -> list[tuple[Node, Node, View | None]]:
    """Every read by a member of `b` of a member of `a`: (producer, consumer, view over the consumer's domain)."""
    members = set(a.nodes)
    views = []
    for u in b.nodes:
        for v in _read(u):
            for p, _ in _sources(v, members):
                try:
                    view = read_view(v, _read_shape(u), lambda x, out=p.output: x is out)
                except AssertionError:
                    view = None  # a reshape on the way needs a copy
                views.append((p, u, None if u.op.leading_inputs else view))
    return views


def _row_candidates(g: _Group) -> list[tuple[Shape, tuple[int, ...], bool]] | None:
    """The ways group `g` can sit in a row kernel: (domain, the outer ranks
    it suggests, as scalars). A row kernel's outer rank is fixed; the outer
    ranks of a group's reductions are only preferences (a reduction that
    is not of whole rows accumulates in memory). None when `g` cannot be in
    a row kernel at all."""
    if any(
        node_class(n) in ("matmul", "layout", "collective") or n.op.rows or n.op.kind == "scatter" or n.op.element_index
        for n in g.nodes
    ):  # matmuls, ops that address rows or places of their own (gather, pad, scatter_add), stored random numbers
        return None
    if g.rows is not None:
        return [(g.rows[0], (g.rows[1],), False)]
    reductions = [n for n in g.nodes if node_class(n) == "reduce"]
    outers = {row_reduction_outer(r) for r in reductions} - {None}
    options = [(g.domain, tuple(sorted(outers, reverse=True)), False)]
    if not reductions and not g.uses_index:
        options.append((g.domain, (), True))
    return options


def _row_merge(a: _Group, b: _Group) -> tuple[Shape, int, set[Node]] | None:
    """The row kernel producer `a` and consumer `b` can form: (domain, outer
    rank, scalar members), or None."""
    options_a, options_b = _row_candidates(a), _row_candidates(b)
    if options_a is None or options_b is None:
        return None
    views = _edge_views(a, b)
    for domain_a, outers_a, scalar_a in options_a:
        for domain_b, outers_b, scalar_b in options_b:
            if scalar_a and scalar_b:
                continue
            domain = domain_b if scalar_a else domain_a
            if not scalar_a and not scalar_b and domain_a != domain_b:
                continue
            scalars = a.scalars | b.scalars
            scalars |= set(a.nodes) if scalar_a else set(b.nodes) if scalar_b else set()
            for outer in _outer_choices(a, b, outers_a, outers_b, domain, views):
                if _rows_valid(domain, outer, scalars, a, b, views):
                    return domain, outer, scalars
    return None


def _outer_choices(a: _Group, b: _Group, outers_a, outers_b, domain: Shape, views) -> list[int]:
    """The outer ranks worth trying: a row kernel's own, else the groups'
    reductions' (largest first), else what the first read broadcasts along."""
    fixed = {g.rows[1] for g in (a, b) if g.rows is not None}
    if fixed:
        return list(fixed) if len(fixed) == 1 else []
    choices = sorted({*outers_a, *outers_b}, reverse=True)
    if views and views[0][2] is not None:
        broadcast = {j for j, s in enumerate(views[0][2].strides) if s == Poly()}
        choices.append(_outer_rank(domain, broadcast))
    return choices


def _rows_valid(domain: Shape, outer: int, scalars: set[Node], a: _Group, b: _Group, views) -> bool:
    """Do the members of `a` and `b` fit a row kernel with these levels, and
    does every read from `a` by `b` stay in registers?"""
    row_shape = _non_unit(domain[:outer])
    for n in (*a.nodes, *b.nodes):
        if node_class(n) == "reduce" and not _reduction_fits_rows(n, domain, outer):
            return False
        if n in scalars and _non_unit(n.output.type.shape) != row_shape:
            return False
        if n not in scalars and _read_shape(n) != domain:
            return False
    for p, u, view in views:
        if view is None:
            return False
        per_row = p in scalars or (node_class(p) == "reduce")
        if node_class(p) == "reduce" and row_reduction_outer(p) != outer:
            return False  # a column reduction is complete only at the end of the kernel
        if u in scalars:
            ok = per_row and _is_identity(view, u.output.type.shape)
        elif per_row:
            ok = _is_row_broadcast(view, domain, outer)
        else:
            ok = _is_identity(view, domain)
        if not ok:
            return False
    return True


def _merge_rows(graph: Graph, groups: dict[Node, _Group], edges, order: dict[Node, int], recomputed: set[Node]) -> None:
    """Join groups into row kernels along the edges that row fusion keeps in
    registers, consumer first. Groups that write an update stay out: a
    later sweep could read a param after its row was written in place. A
    member computed once per row may not read a recomputed value (a random
    number is drawn at an element of the row, which such a member lacks)."""
    updates = set(graph.updates.values())
    for p, u, _ in sorted(edges, key=lambda e: (-order[e[1]], order[e[0]])):
        a, b = groups[p].find(), groups[u].find()
        if a is b or a in b.succ or _reaches(a, b, skip=b):
            continue
        if any(n.output in updates for n in (*a.nodes, *b.nodes)):
            continue
        merged = _row_merge(a, b)
        if merged is not None and any(v.node in recomputed for n in merged[2] for v in n.inputs):
            merged = None
        if merged is not None:
            domain, outer, scalars = merged
            _merge(a, b)
            a.rows, a.scalars = (domain, outer), scalars


def _row_schedule(kernel: Kernel, outer: int, scalars: set[Node]) -> RowSchedule:
    """Each member's sweep: a row member runs once its inputs are there (a
    row reduction's result or a scalar from sweep k, in sweep k + 1); a
    scalar right after the sweep that finishes its last input. Then what
    each sweep evaluates."""
    members = set(kernel.nodes)
    sources = {n: [p for v in _read(n) for p, _ in _sources(v, members)] for n in kernel.nodes}
    phase: dict[Node, int] = {}
    for n in kernel.nodes:  # in graph order: producers first
        if n in scalars:
            phase[n] = max((phase[p] for p in sources[n]), default=-1)
        else:
            per_row = [phase[p] + 1 for p in sources[n] if p in scalars or node_class(p) == "reduce"]
            at_index = [phase[p] for p in sources[n] if p not in scalars and node_class(p) != "reduce"]
            phase[n] = max([0, *per_row, *at_index])
    row = [n for n in kernel.nodes if n not in scalars]
    stored = {v.node for v in kernel.stores}
    sweeps = 1 + max((phase[n] for n in row), default=0)
    roots = [[n for n in row if phase[n] == k and (node_class(n) == "reduce" or n in stored)] for k in range(sweeps)]
    recomputed, _ = _sweep_members(roots, phase, sources, scalars, stored)
    keep = _row_buffers(kernel, outer, recomputed, stored)
    evaluate, reload = _sweep_members(roots, phase, sources, scalars, stored | keep)
    return RowSchedule(outer, set(scalars), phase, evaluate, reload, keep)


def _sweep_members(roots, phase, sources, scalars, kept) -> tuple[list[list[Node]], list[set[Node]]]:
    """Per sweep, the row members it evaluates to compute its `roots` (in
    graph order), and those it reads back: members of `kept` that an
    earlier sweep computed."""
    order = {n: i for i, n in enumerate(phase)}
    done: set[Node] = set()
    evaluate, reload = [], []
    for sweep_roots in roots:
        needed: set[Node] = set()
        reloaded: set[Node] = set()
        stack = list(sweep_roots)
        while stack:
            n = stack.pop()
            if n in needed:
                continue
            needed.add(n)
            if n in kept and n in done:
                reloaded.add(n)
                continue
            stack += [p for p in sources[n] if p not in scalars and node_class(p) != "reduce"]
        done |= needed
        evaluate.append(sorted(needed, key=order.__getitem__))
        reload.append(reloaded)
    return evaluate, reload


def _row_buffers(kernel: Kernel, outer: int, evaluate: list[list[Node]], stored: set[Node]) -> set[Node]:
    """The members to keep in row buffers: those more than one sweep would
    compute, while their rows fit ROW_BUFFER_BYTES (a row is a few KB at
    MLP widths: a store and a load in L1 cost less than computing an exp
    or a tanh again, and about what a subtraction costs)."""
    row = product(kernel.domain[outer:])
    if not row.is_constant:
        return set()
    counts: dict[Node, int] = {}
    for nodes in evaluate:
        for n in nodes:
            counts[n] = counts.get(n, 0) + 1
    keep, total = set(), 0
    for n, count in counts.items():
        size = row.constant * n.output.type.dtype.itemsize
        if count > 1 and n not in stored and node_class(n) != "reduce" and total + size <= ROW_BUFFER_BYTES:
            keep.add(n)
            total += size
    return keep
