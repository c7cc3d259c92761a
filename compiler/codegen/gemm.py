"""Matmul kernels: C = op(A) @ op(B), finished by a fused epilogue.

For each panel of NR columns, the panel of B is packed once into a
contiguous buffer ([K][NR]), which absorbs any transpose of B; then every
MR x NR tile of C is computed in MR * NR/W vector accumulators (broadcast an
element of A, FMA with a row of the packed panel), and the epilogue (bias,
activation, optimizer update...) runs on the tile while it is still in
registers before anything is stored. Edge tiles use masked stores."""

from __future__ import annotations

import llvmlite.ir as ir

from ...ir import DType
from ..symbolic import Poly, row_major_strides
from ..views import View, read_view
from .irutil import PTR, call_intrinsic, constant, for_range, i64, lane_mask, vector_of
from .kernel import Access, KernelEmitter, Point
from .vecmath import Math, Val

MR = 6
"""Rows of the register tile."""

VECTORS_PER_ROW = 2
"""Vector registers per row of the register tile (NR = VECTORS_PER_ROW * W)."""


def panel_elements(k: Poly, lanes: int) -> Poly:
    """Elements of the packed B panel of a matmul with inner dimension `k`."""
    return k * (VECTORS_PER_ROW * lanes)


def _matrix(view: View, transposed: bool) -> Access:
    """The logical (rows, cols) access of a matmul operand."""
    strides = list(view.strides[::-1] if transposed else view.strides)
    return Access(view.base, strides, view.offset)


def emit_matmul_kernel(e: KernelEmitter, scratch_offset: Poly) -> ir.Function:
    """The function of a kernel whose members are a matmul and its epilogue."""
    b = e.b
    mm = e.kernel.matmul
    assert mm is not None
    lanes = e.lanes
    nr = VECTORS_PER_ROW * lanes
    dtype = mm.output.type.dtype
    a = _matrix(read_view(mm.inputs[0], mm.inputs[0].type.shape, e.program.is_stored), mm.attrs["transpose_a"])
    bm = _matrix(read_view(mm.inputs[1], mm.inputs[1].type.shape, e.program.is_stored), mm.attrs["transpose_b"])
    rows_dim, cols_dim = mm.output.type.shape
    inner_dim = mm.inputs[0].type.shape[0 if mm.attrs["transpose_a"] else 1]
    m_count, n_count, k_count = (e.poly(Poly.of(d)) for d in (rows_dim, cols_dim, inner_dim))
    vtype = vector_of(_float_type(dtype), lanes)
    panel = b.gep(e.region("scratch"), [e.poly(scratch_offset)], source_etype=ir.IntType(8))
    element = _float_type(dtype)
    m = Math(b, lanes)

    with for_range(b, i64(0), n_count, nr, name="j0") as j0:
        _pack_panel(e, bm, panel, j0, n_count, k_count, lanes)
        with for_range(b, i64(0), m_count, MR, name="i0") as i0:
            accumulators = [[_zeroed(e, vtype) for _ in range(VECTORS_PER_ROW)] for _ in range(MR)]
            last_row = b.sub(m_count, i64(1))
            rows = []
            for r in range(MR):
                row = b.add(i0, i64(r))
                rows.append(b.select(b.icmp_signed("<", row, m_count), row, last_row))
            with for_range(b, i64(0), k_count, 1, name="k") as k:
                row_of_b = [
                    b.load(
                        b.gep(panel, [b.add(b.mul(k, i64(nr)), i64(c * lanes))], source_etype=element),
                        typ=vtype,
                        align=64 if c == 0 else dtype.itemsize,
                    )
                    for c in range(VECTORS_PER_ROW)
                ]
                for r in range(MR):
                    a_value = b.load(e.address(a, Point([rows[r], k])), typ=element)
                    a_vector = m.widen(Val(a_value, dtype)).ir
                    for c in range(VECTORS_PER_ROW):
                        slot = accumulators[r][c]
                        total = call_intrinsic(b, "fmuladd", vtype, [a_vector, row_of_b[c], b.load(slot, typ=vtype)])
                        b.store(total, slot)
            _epilogue(e, mm, i0, j0, m_count, n_count, accumulators, vtype, lanes)
    return e.finish()


def _float_type(dtype: DType) -> ir.Type:
    return ir.FloatType() if dtype is DType.float32 else ir.DoubleType()


def _zeroed(e: KernelEmitter, vtype: ir.Type) -> ir.Value:
    """An accumulator slot, set to zero where it is used."""
    slot = e.stack_slot(vtype)
    e.b.store(constant(vtype, 0.0), slot)
    return slot


def _pack_panel(e: KernelEmitter, bm: Access, panel, j0, n_count, k_count, lanes: int) -> None:
    """Copy columns [j0, j0 + NR) of B, row by row, into the panel (zeros past N)."""
    b = e.b
    nr = VECTORS_PER_ROW * lanes
    dtype = bm.base.type.dtype
    element = _float_type(dtype)
    with for_range(b, i64(0), k_count, 1, name="pk") as k:
        for c in range(VECTORS_PER_ROW):
            column = b.add(j0, i64(c * lanes))
            mask = lane_mask(b, b.sub(n_count, column), lanes)
            values = e.load(bm, Point([k, column], mask), lanes)
            target = b.gep(panel, [b.add(b.mul(k, i64(nr)), i64(c * lanes))], source_etype=element)
            b.store(values.ir, target, align=dtype.itemsize)


def _epilogue(e: KernelEmitter, mm, i0, j0, m_count, n_count, accumulators, vtype, lanes: int) -> None:
    """Finish the tile: spill the accumulators to a tile buffer on the stack,
    then, row by row and vector by vector, evaluate the epilogue members and
    store what the kernel stores (masked past the last column). The epilogue
    is emitted twice: for whole tiles, and for tiles at the matrix edges."""
    b = e.b
    kernel = e.kernel
    nr = VECTORS_PER_ROW * lanes
    tile = e.stack_slot(ir.ArrayType(vtype, MR * VECTORS_PER_ROW))
    for r in range(MR):
        for c in range(VECTORS_PER_ROW):
            slot = b.gep(tile, [i64(r * VECTORS_PER_ROW + c)], source_etype=vtype)
            slot.type = PTR  # an element address (llvmlite keeps the alloca's typed pointer)
            b.store(b.load(accumulators[r][c], typ=vtype), slot)
    stores = {v: Access(v, list(row_major_strides(kernel.domain))) for v in kernel.stores}
    whole = b.and_(b.icmp_signed("<=", b.add(i0, i64(MR)), m_count), b.icmp_signed("<=", b.add(j0, i64(nr)), n_count))
    rows = b.select(whole, i64(MR), _min(b, i64(MR), b.sub(m_count, i0)))
    with b.if_else(whole) as (then, otherwise):
        for masked in (False, True):
            with (
                then if not masked else otherwise,
                for_range(b, i64(0), rows, 1, name="er") as r,
                for_range(b, i64(0), i64(VECTORS_PER_ROW), 1, name="ec") as c,
            ):
                column = b.add(j0, b.mul(c, i64(lanes)))
                mask = lane_mask(b, b.sub(n_count, column), lanes) if masked else None
                point = Point([b.add(i0, r), column], mask)
                slot = b.gep(tile, [b.add(b.mul(r, i64(VECTORS_PER_ROW)), c)], source_etype=vtype)
                value = Val(b.load(slot, typ=vtype), mm.output.type.dtype)
                values = e.evaluate(point, lanes, e.operand_access, given={mm.output: value})
                for target, access in stores.items():
                    e.store(access, point, values[target], lanes)


def _min(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    return b.select(b.icmp_signed("<", x, y), x, y)
