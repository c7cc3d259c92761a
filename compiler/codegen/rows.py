"""Row kernels: reductions over the innermost axes and their consumers in
one pass over each row's data (see fusion.RowSchedule).

For every row (an index of the outer axes, in an ordinary loop nest) the
kernel runs its schedule's sweeps in turn. A sweep is a loop over the row
axes whose innermost loop runs over SIMD vectors, then one masked vector
for the remainder; it computes the row members due in that sweep, stores
the ones other kernels read, and accumulates the row reductions in vector
registers, folded to one value per row at its end. Between sweeps the
scalar members run once per row (lanes == 1) on those folded values, and
later sweeps see them splatted across the vector: no memory round trip.

A later sweep that needs a row member of an earlier one reads it back:
from the tensor the kernel stores, or from a row buffer on the stack that
the first sweep to compute it fills (both still in L1); rows too large for
row buffers compute it again."""

from __future__ import annotations

import functools

import llvmlite.ir as ir

from ...ir import DType, Node, Value
from ..fusion import RowSchedule, node_class, row_reduction_outer
from ..plan import operand_view
from ..symbolic import Poly, product, row_major_strides
from ..views import View
from .irutil import I64, for_range, i64, lane_mask, smax, smin
from .kernel import Access, KernelEmitter, Point
from .loops import LoopNest, _fill, _identity, _index, _output_access, merge_loops
from .threads import run_tasks
from .vecmath import Math, Val, fold_lanes

PARTIALS = 4
"""Partial accumulators per row reduction: the vector adds of one
accumulator form a chain of dependent instructions (3-4 cycles each), so
four of them, combined at the end of the row, keep the adders busy."""


PARALLEL_ELEMENTS = 1 << 16
"""Row kernels over fewer elements run on the calling thread alone (a round
of the thread pool costs a few microseconds; a sweep over 64K floats about 10)."""


def emit_row_kernel(e: KernelEmitter) -> ir.Function:
    """The function of a row kernel. Its rows split into one task per core
    when there are enough of them, they form one loop, and no reduction adds
    across rows (threads would race on its sums)."""
    kernel = RowKernel(e)
    if kernel.outer_loops != 1 or kernel.column_reductions:
        kernel.emit()
        return e.finish()
    b = e.b
    task_emitter = KernelEmitter(e.program, e.kernel, e.fn.module, e.target, ".task", (I64, I64), e.library)
    task = RowKernel(task_emitter)
    rows, row_size = e.poly(kernel.nest.sizes[0]), e.poly(product(kernel.nest.sizes[1:]))
    tasks, _ = _split_rows(b, rows, e.target.cores)
    task.emit_task(_split_rows(task_emitter.b, task.rows(), e.target.cores)[1])
    function = task_emitter.finish()
    parallel = b.and_(
        b.icmp_signed(">=", b.mul(rows, row_size), i64(PARALLEL_ELEMENTS)), b.icmp_signed(">", tasks, i64(1))
    )
    run_tasks(b, function, e.fn.args[0], tasks, parallel)
    return e.finish()


def _split_rows(b: ir.IRBuilder, rows: ir.Value, cores: int) -> tuple[ir.Value, ir.Value]:
    """(tasks, rows per task): one task per core, fewer when rows are few (at least one)."""
    tasks = smax(b, smin(b, rows, i64(cores)), i64(1))
    chunk = b.sdiv(b.add(rows, b.sub(tasks, i64(1))), tasks)
    return tasks, chunk


class RowKernel:
    """The accesses and loop nest of one row kernel, and its emission."""

    def __init__(self, e: KernelEmitter) -> None:
        self.e = e
        kernel = e.kernel
        self.schedule: RowSchedule = kernel.rows  # type: ignore[assignment]
        self.domain = kernel.domain
        self.members = set(kernel.nodes)
        self.scalars = self.schedule.scalars
        outer = self.schedule.outer
        self.registers: dict[tuple[Node, int], Value] = {}  # reads of members' values
        self.reads: dict[tuple[Node, int], Access] = {}  # reads from memory
        for node in kernel.nodes:
            if node in e.program.inline:
                continue  # an inline scalar that is also a result: computed once, in the prologue
            for i, v in enumerate(node.inputs):
                base = self._member_base(v)
                if base is not None:
                    self.registers[(node, i)] = base
                elif v.node not in e.program.inline and v.node not in e.program.recomputed:
                    self.reads[(node, i)] = self._read_access(node, i)
        self.row_reductions = [n for n in kernel.nodes if node_class(n) == "reduce" and row_reduction_outer(n) == outer]
        self.column_reductions = {
            n: _output_access(n, self.domain)
            for n in kernel.nodes
            if node_class(n) == "reduce" and n not in self.row_reductions
        }
        self.row_stores = {
            v: Access(v, list(row_major_strides(self.domain)))
            for v in kernel.stores
            if v.node not in self.scalars and node_class(v.node) != "reduce"
        }
        # lists, not the schedule's sets: the emitted IR must not depend on hash order
        self.scalar_stores = {
            v: self._per_row(View.of(v))
            for v in kernel.stores
            if v.node in self.scalars or v.node in self.row_reductions
        }
        row_size = product(self.domain[outer:])
        self.row_buffers = {}
        for node in (n for n in kernel.nodes if n in self.schedule.keep):
            e.local_array(node.output, row_size.constant)
            strides = [*[Poly()] * outer, *row_major_strides(self.domain[outer:])]
            self.row_buffers[node.output] = Access(node.output, strides)
        accesses = [*self.reads.values(), *self.row_stores.values(), *self.scalar_stores.values()]
        accesses += self.row_buffers.values()
        accesses += self.column_reductions.values()
        pinned = {len(self.domain) - 1} if any(n.op.uses_index for n in kernel.nodes) else set()
        outputs = [_output_access(n, self.domain) for n in kernel.nodes if node_class(n) == "reduce"]
        self.nest: LoopNest = merge_loops(self.domain, accesses, outputs, pinned, split=outer)
        self.outer_loops = len({loop for loop in self.nest.axis_to_loop[:outer] if loop is not None})
        self.row_loops = len(self.nest.sizes) - self.outer_loops
        self.width = e.lanes if self.row_loops else 1

    # -- accesses ---------------------------------------------------------------
    def _member_base(self, value: Value) -> Value | None:
        """The member whose value `value` is (through layout views), if any."""
        while value.node is not None and value.node not in self.members:
            if node_class(value.node) != "layout":
                return None
            value = value.node.inputs[0]
        return value if value.node is not None else None

    def _read_access(self, node: Node, i: int) -> Access:
        if node not in self.scalars:
            return self.e.operand_access(node, i)
        view = operand_view(node, i, node.output.type.shape, self.e.program.is_stored)
        return self._per_row(view)

    def _per_row(self, view: View) -> Access:
        """A per-row view (its shape is the outer shape, size-1 axes aside)
        as an access over the domain that stays put along the row."""
        outer = self.schedule.outer
        flat = view.reshape(self.domain[:outer])
        assert flat is not None, "row fusion keeps per-row values to the outer shape"
        strides = [*flat.strides, *[Poly()] * (len(self.domain) - outer)]
        return Access(view.base, strides, view.offset)

    # -- emission -----------------------------------------------------------------
    def emit(self) -> None:
        """Every row, on this thread."""
        for r in self.column_reductions:
            _fill(self.e, r, self.e.lanes)
        self._rows(0, [])

    def rows(self) -> ir.Value:
        """The number of rows (of a kernel whose rows form one loop)."""
        return self.e.poly(self.nest.sizes[0])

    def emit_task(self, chunk: ir.Value) -> None:
        """The body of task `t` (the function's second argument): rows
        [t * chunk, min((t + 1) * chunk, rows))."""
        b = self.e.b
        start = b.mul(self.e.fn.args[1], chunk)
        stop = b.add(start, chunk)
        stop = smin(b, stop, self.rows())
        with for_range(b, start, stop, 1, name="row0") as i:
            self._rows(1, [i])

    def _rows(self, depth: int, indices: list[ir.Value]) -> None:
        if depth < self.outer_loops:
            with for_range(self.e.b, i64(0), self.e.poly(self.nest.sizes[depth]), 1, name=f"row{depth}") as i:
                self._rows(depth + 1, [*indices, i])
            return
        scalars: dict[Value, Val] = {}
        self._scalars_after(-1, indices, scalars)
        for sweep in range(self.schedule.sweeps):
            self._sweep(sweep, indices, scalars)
            self._scalars_after(sweep, indices, scalars)

    def _scalars_after(self, sweep: int, indices: list[ir.Value], scalars: dict[Value, Val]) -> None:
        """Compute (and store) the scalar members due after `sweep`."""
        point = Point([*indices, *[i64(0)] * self.row_loops])
        m = Math(self.e.b, 1)
        for node in self.e.kernel.nodes:
            if node in self.scalars and self.schedule.phase[node] == sweep:
                scalars[node.output] = self._compute(node, point, m, {}, scalars)
                if node.output in self.scalar_stores:
                    self.e.store(self.scalar_stores[node.output], point, scalars[node.output], 1)

    def _kept(self, node: Node) -> Access:
        """Where an earlier sweep left `node`'s row: its stored tensor or its row buffer."""
        return self.row_stores.get(node.output) or self.row_buffers[node.output]

    def _compute(self, node: Node, point: Point, m: Math, values, scalars) -> Val:
        """Member `node`'s value at `point`, `m.lanes` wide."""
        if node in self.e.program.inline:
            return m.widen(self.e.inline_value(node))
        operands = [self._operand(node, i, point, m.lanes, values, scalars) for i in range(len(node.inputs))]
        return node.op.emit(m, *operands, **node.attrs)

    def _operand(self, node: Node, i: int, point: Point, width: int, values, scalars) -> Val:
        m = Math(self.e.b, width)
        base = self.registers.get((node, i))
        if base is not None:
            return values[base] if base in values else m.widen(scalars[base])
        value = node.inputs[i]
        if value.node in self.e.program.inline:
            return m.widen(self.e.inline_value(value.node))
        if value.node in self.e.program.recomputed:  # a random number of this element: a row member's
            flat_index = functools.partial(self.e.flat_index, point, row_major_strides(self.nest.sizes), width)
            return self.e.recompute(value, Math(self.e.b, width, None, flat_index), values)
        return self.e.load(self.reads[(node, i)], point, width)

    def _sweep(self, sweep: int, indices: list[ir.Value], scalars: dict[Value, Val]) -> None:
        """One pass over the row: the members due in `sweep`, then each row
        reduction of the sweep folded into `scalars` (and stored if read elsewhere)."""
        b = self.e.b
        nodes, reloaded = self.schedule.evaluate[sweep], self.schedule.reload[sweep]
        m = Math(b, self.width)
        accumulators: dict[Node, list[ir.Value]] = {}
        for r in self.e.kernel.reductions:
            if self.schedule.phase[r] == sweep and self._along_row(r):
                accumulators[r] = [self.e.stack_slot(m.type(r.output.type.dtype)) for _ in range(PARTIALS)]
                for slot in accumulators[r]:
                    b.store(_identity(r, m).ir, slot)

        def body(point: Point, width: int, part: int) -> None:
            self._body(sweep, nodes, reloaded, point, width, scalars, {r: a[part] for r, a in accumulators.items()})

        self._row_loops(self.outer_loops, indices, body, PARTIALS if accumulators else 1)
        point = Point([*indices, *[i64(0)] * self.row_loops])
        for r, slots in accumulators.items():
            dtype = r.output.type.dtype
            partials = [Val(b.load(slot, typ=m.type(dtype)), dtype) for slot in slots]
            vector = functools.reduce(lambda x, y: r.op.emit(m, x, y), partials)
            total = fold_lanes(b, vector, self.width, r.op.emit)
            if r in self.column_reductions:  # this row's share of a sum over rows too
                output = self.column_reductions[r]
                total = r.op.emit(Math(b, 1), self.e.load(output, point, 1), total)
                self.e.store(output, point, total, 1)
                continue
            scalars[r.output] = total
            if r.output in self.scalar_stores:
                self.e.store(self.scalar_stores[r.output], point, total, 1)

    def _row_loops(self, depth: int, indices: list[ir.Value], body, parts: int) -> None:
        """Loops over the row axes. Along the innermost: `parts` vectors at a
        time, each adding into its own partial accumulators (`body(point,
        width, part)`), then single vectors, then a masked remainder."""
        b = self.e.b
        if depth == len(self.nest.sizes):
            body(Point(indices), 1, 0)  # a row of one element
            return
        size = self.e.poly(self.nest.sizes[depth])
        if depth < len(self.nest.sizes) - 1:
            with for_range(b, i64(0), size, 1, name=f"j{depth}") as j:
                self._row_loops(depth + 1, [*indices, j], body, parts)
            return
        lanes = self.width
        blocks = b.and_(size, i64(-lanes * parts))
        with for_range(b, i64(0), blocks, lanes * parts, name=f"j{depth}") as j:
            for part in range(parts):
                body(Point([*indices, b.add(j, i64(part * lanes))]), lanes, part)
        start = b.and_(size, i64(-lanes))
        with for_range(b, blocks, start, lanes, name=f"j{depth}") as j:
            body(Point([*indices, j]), lanes, 0)
        with b.if_then(b.icmp_signed("<", start, size)):
            body(Point([*indices, start], lane_mask(b, b.sub(size, start), lanes)), lanes, 0)

    def _body(self, sweep, nodes, reloaded, point: Point, width: int, scalars, accumulators) -> None:
        e = self.e
        flat_index = functools.partial(e.flat_index, point, row_major_strides(self.nest.sizes), width)
        m = Math(e.b, width, _index(e, self.nest, point, width), flat_index)
        values: dict[Value, Val] = {}
        for node in nodes:
            if node in reloaded:
                values[node.output] = e.load(self._kept(node), point, width)
                continue
            if node_class(node) == "reduce":
                x = self._operand(node, 0, point, width, values, scalars)
                self._accumulate(node, x, point, m, accumulators)
                continue
            values[node.output] = self._compute(node, point, m, values, scalars)
            if node.output in self.row_buffers:
                e.store(self.row_buffers[node.output], point, values[node.output], width)
            if self.schedule.phase[node] == sweep and node.output in self.row_stores:
                e.store(self.row_stores[node.output], point, values[node.output], width)

    def _accumulate(self, r: Node, x: Val, point: Point, m: Math, accumulators) -> None:
        """Add `x` into reduction `r`: its vector register, or (a column
        reduction) its outputs in memory."""
        e = self.e
        if point.mask is not None:
            x = m.select(Val(point.mask, DType.bool), x, _identity(r, m))
        if r in accumulators:
            acc = Val(e.b.load(accumulators[r], typ=x.ir.type), x.dtype)
            e.b.store(r.op.emit(m, acc, x).ir, accumulators[r])
            return
        output = self.column_reductions[r]
        e.store(output, point, r.op.emit(m, e.load(output, point, m.lanes), x), m.lanes)

    def _along_row(self, r: Node) -> bool:
        """Does reduction `r` reduce the innermost row loop (so it adds up
        each row in a register), rather than keep it (adding vectors in memory)?"""
        if r in self.row_reductions:
            return True
        return self.row_loops > 0 and self.column_reductions[r].strides[-1] == Poly()
