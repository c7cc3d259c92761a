"""Loop kernels: elementwise maps, reductions and copies.

The domain becomes a loop nest whose innermost loop runs over SIMD
vectors, then one masked vector for the remainder. Before that, size-1
dimensions are dropped and adjacent dimensions merged wherever every
access walks them as one contiguous range, so a [B, 64] update is a single
loop over 64*B elements.

A reduction starts by filling its output with the identity (0 for sum,
-inf for max). Where it reduces the innermost dimension it accumulates in
a vector register and folds the lanes together at the end of each row;
where it keeps that dimension it updates a vector of outputs in place
(a column sum adds each row to an output row held in L1)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import llvmlite.ir as ir
import numpy as np

from ...ir import DType, Node
from ..fusion import node_class
from ..plan import is_table
from ..symbolic import Poly, product, row_major_strides
from ..views import accumulate_view
from .irutil import I64, for_range, i64, lane_mask, vector_of
from .kernel import Access, KernelEmitter, Point
from .vecmath import Math, Val, fold_lanes


@dataclass
class LoopNest:
    """The merged loop dimensions and, per original domain axis, the loop
    dimension it became (None for a dropped size-1 axis)."""

    sizes: list[Poly]
    axis_to_loop: list[int | None]


def _output_access(node: Node, domain) -> Access:
    """Where a reduction accumulates, over its input's domain, by its op's
    accumulate rule (stride 0 along reduced axes; a pad's strided part)."""
    view = accumulate_view(node, domain)
    return Access(node.output, list(view.strides), view.offset)


def merge_loops(
    domain, accesses: list[Access], outputs: list[Access], pinned: set[int], split: int | None = None
) -> LoopNest:
    """Drop size-1 axes (but `pinned` ones); merge neighbours that every access walks
    contiguously, that every reduction's output treats alike (both reduced
    or both kept), that are not `pinned` (their index is used directly) and
    that lie on the same side of axis `split` (a row kernel's rows from its
    row axes). Rewrites the accesses' strides."""
    axes = [i for i, d in enumerate(domain) if d != 1 or i in pinned]
    groups: list[list[int]] = []
    for axis in axes:
        same_side = split is None or (groups and (groups[-1][-1] < split) == (axis < split))
        if groups and same_side and _mergeable(groups[-1][-1], axis, domain, accesses, outputs, pinned):
            groups[-1].append(axis)
        else:
            groups.append([axis])
    axis_to_loop: list[int | None] = [None] * len(domain)
    for position, group in enumerate(groups):
        for axis in group:
            axis_to_loop[axis] = position
    for access in accesses:
        access.strides = [access.strides[group[-1]] for group in groups]
    return LoopNest([product(domain[a] for a in group) for group in groups], axis_to_loop)


def _mergeable(outer: int, inner: int, domain, accesses: list[Access], outputs: list[Access], pinned) -> bool:
    if outer in pinned or inner in pinned:
        return False
    if any((a.strides[outer] == Poly()) != (a.strides[inner] == Poly()) for a in outputs):
        return False
    size = Poly.of(domain[inner])
    return all(a.strides[outer] == a.strides[inner] * size for a in accesses)


def _identity(node: Node, m: Math) -> Val:
    dtype = node.output.type.dtype
    value = node.op.identity
    if dtype.is_int and value == -np.inf:
        value = int(np.iinfo(dtype.numpy).min)
    return m.const(value, dtype)


def emit_loop_kernel(e: KernelEmitter) -> ir.Function:
    """The function of an elementwise, reduction or copy kernel."""
    kernel = e.kernel
    domain = kernel.domain
    reductions = kernel.reductions
    identity_strides = row_major_strides(domain)
    reads: dict[tuple[Node | None, int], Access] = {}
    if kernel.copy:
        source, target = kernel.copy
        reads[(None, 0)] = Access(source, list(identity_strides))
        stores = {target: Access(target, list(identity_strides))}
    else:
        for node in kernel.nodes:
            if node in e.program.inline:
                continue
            if node_class(node) == "layout":
                reads[(node, -1)] = e.copy_access(node)
                continue
            for i, v in enumerate(node.inputs):
                computed_here = v.node in kernel.nodes or v.node in e.program.inline or v.node in e.program.recomputed
                if not computed_here and node_class(node) != "matmul":
                    reads[(node, i)] = e.operand_access(node, i)
        stores = {v: Access(v, list(identity_strides)) for v in kernel.stores if node_class(v.node) != "reduce"}
    outputs = {r: _output_access(r, domain) for r in reductions if r.op.rows is None}
    pinned = {len(domain) - 1} if any(n.op.uses_index for n in kernel.nodes) else set()
    output_accesses = list(outputs.values())
    walked = [a for (node, i), a in reads.items() if node is None or not is_table(node, i)]  # tables: by rows
    nest = merge_loops(domain, [*walked, *stores.values(), *output_accesses], output_accesses, pinned)
    lanes = e.lanes if nest.sizes else 1

    for r in reductions:
        _fill(e, r, lanes)

    inner_reduced = [r for r in outputs if nest.sizes and outputs[r].strides[-1] == Poly()]

    def body(point: Point, width: int, accumulators: dict[Node, ir.Value]) -> None:
        if kernel.copy:
            e.store(stores[kernel.copy[1]], point, e.load(reads[(None, 0)], point, width), width)
            return
        index = _index(e, nest, point, width)
        flat_index = functools.partial(e.flat_index, point, row_major_strides(nest.sizes), width)
        m = Math(e.b, width, index, flat_index)
        values = e.evaluate(point, width, lambda node, i: reads[(node, i)], index=index, flat_index=flat_index)
        for value, access in stores.items():
            e.store(access, point, values[value], width)
        for r in reductions:
            x = e.operand(r.inputs[0], r, 0, point, width, values, lambda node, i: reads[(node, i)], m)
            if point.mask is not None:
                x = m.select(Val(point.mask, DType.bool), x, _identity(r, m))
            if r.op.rows == "scatter":
                indices = e.operand(r.inputs[1], r, 1, point, width, values, lambda node, i: reads[(node, i)], m)
                table = Access(r.output, list(row_major_strides(r.output.type.shape)))
                at = e.row_point(indices, r.attrs["rows"], point, index)
                e.store(table, at, r.op.emit(m, e.load(table, at, width), x, indices, **r.attrs), width)
            elif r in accumulators:
                acc = Val(e.b.load(accumulators[r], typ=x.ir.type), x.dtype)
                e.b.store(r.op.emit(m, acc, x).ir, accumulators[r])
            else:
                total = r.op.emit(m, e.load(outputs[r], point, width), x)
                e.store(outputs[r], point, total, width)

    if not nest.sizes:
        body(Point([]), 1, {})
        return e.finish()
    _loop_nest(e, nest, lanes, body, inner_reduced, outputs)
    return e.finish()


def _fill(e: KernelEmitter, r: Node, lanes: int) -> None:
    """Set every element of reduction `r`'s output to its identity."""
    size = e.poly(product(r.output.type.shape))
    access = Access(r.output, [Poly.of(1)])
    m = Math(e.b, lanes)
    start = e.b.and_(size, i64(-lanes))
    with for_range(e.b, i64(0), start, lanes, name="fill") as i:
        e.store(access, Point([i]), _identity(r, m), lanes)
    with e.b.if_then(e.b.icmp_signed("<", start, size)):
        e.store(access, Point([start], lane_mask(e.b, e.b.sub(size, start), lanes)), _identity(r, m), lanes)


def _loop_nest(e: KernelEmitter, nest: LoopNest, lanes: int, body, inner_reduced: list[Node], outputs) -> None:
    b = e.b

    def level(depth: int, indices: list[ir.Value]) -> None:
        if depth < len(nest.sizes) - 1:
            with for_range(b, i64(0), e.poly(nest.sizes[depth]), 1, name=f"i{depth}") as i:
                level(depth + 1, [*indices, i])
            return
        accumulators = {}
        m = Math(b, lanes)
        for r in inner_reduced:
            slot = e.stack_slot(m.type(r.output.type.dtype))
            b.store(_identity(r, m).ir, slot)
            accumulators[r] = slot
        count = e.poly(nest.sizes[-1])
        start = b.and_(count, i64(-lanes))
        with for_range(b, i64(0), start, lanes, name=f"i{depth}") as j:
            body(Point([*indices, j]), lanes, accumulators)
        with b.if_then(b.icmp_signed("<", start, count)):
            body(Point([*indices, start], lane_mask(b, b.sub(count, start), lanes)), lanes, accumulators)
        for r, slot in accumulators.items():
            vector = Val(b.load(slot, typ=m.type(r.output.type.dtype)), r.output.type.dtype)
            folded = fold_lanes(b, vector, lanes, r.op.emit)
            point = Point([*indices, i64(0)])
            scalar_math = Math(b, 1)
            total = r.op.emit(scalar_math, e.load(outputs[r], point, 1), folded)
            e.store(outputs[r], point, total, 1)

    level(0, [])


def _index(e: KernelEmitter, nest: LoopNest, point: Point, lanes: int):
    """The index along a domain axis at `point`, as a vector of `dtype`."""

    def index(axis: int, dtype: DType) -> Val:
        axis %= len(nest.axis_to_loop)
        loop = nest.axis_to_loop[axis]
        m = Math(e.b, lanes)
        if loop is None:
            return m.const(0, dtype)
        value = point.indices[loop]
        if loop == len(nest.sizes) - 1 and lanes > 1:
            iota = ir.Constant(vector_of(I64, lanes), list(range(lanes)))
            indices = Val(e.b.add(m.widen(Val(value, DType.int64)).ir, iota), DType.int64)
        else:
            indices = m.widen(Val(value, DType.int64))
        return m.cast(indices, dtype)

    return index
