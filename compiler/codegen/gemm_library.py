"""The shared parts of generated matmuls: the microkernel, the packing
routines and tile moves, emitted once per module for each element type and
register tile, and called by every matmul kernel's tasks (gemm.py).

All take element strides at run time, so one microkernel serves every
operand layout: A may be read in place (any strides), packed row by row
([MR][KC]) or packed interleaved ([KC][MR]); B is read in place when its
rows are contiguous, otherwise from a packed panel ([KC][NR]).

    micro(a, a_rows, a_cols, rows, b, b_rows, cols, depth, tile)
        tile[MR][NR] += A[0:rows, 0:depth] @ B[0:depth, 0:cols]
        A(r, k) at a + r*a_rows + k*a_cols (rows past `rows` repeat the last);
        B(k, j) at b + k*b_rows + j, columns past `cols` read as 0.

The accumulators live in MR * NR/W vector registers for the whole depth:
per k, NR/W vector loads of B, MR broadcasts of A and MR*NR/W FMAs."""

from __future__ import annotations

from dataclasses import dataclass

import llvmlite.ir as ir

from ...ir import DType
from .irutil import (
    I32,
    I64,
    PTR,
    VOID,
    call_intrinsic,
    constant,
    declare,
    for_range,
    i64,
    intrinsic_suffix,
    lane_mask,
    splat,
    vector_of,
)
from .target import Target
from .vecmath import Val, fold_lanes

TILE = (6, 2)
"""The register tile: MR rows of VECTORS vector registers (NR = VECTORS * W
columns): 12 accumulators, two B loads and a broadcast per k fit the 16
registers of AVX2 (measured on AVX-512 too: 6x2 and 8x2 tied, 12x2 and 14x2
were slower)."""

NARROW_TILE = (12, 1)
"""The tile for matmuls at most one vector wide (a 10-class output layer)."""

GEMV_ROWS = 8
"""Rows of B a one-row product streams at once (measured: 8 rows ran 1.1x
NumPy on 1x2048x2048, 4 rows 1.0x, 2 rows 0.6x)."""


@dataclass(frozen=True)
class Blocking:
    """Register and cache blocking of one matmul on one target."""

    dtype: DType
    lanes: int
    mr: int
    vectors: int
    kc: int
    mc: int
    nc: int

    @property
    def nr(self) -> int:
        return self.vectors * self.lanes

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize

    @property
    def kc_padded(self) -> int:
        """KC rounded up to whole vectors (packing writes whole W x W blocks)."""
        return -(-self.kc // self.lanes) * self.lanes

    @property
    def a_block_bytes(self) -> int:
        return aligned(self.mc * self.kc_padded * self.itemsize)

    @property
    def b_block_bytes(self) -> int:
        return aligned(self.kc_padded * self.nc * self.itemsize)

    @property
    def thread_bytes(self) -> int:
        """Scratch each thread needs: packed A block, packed B block, one tile."""
        return self.a_block_bytes + self.b_block_bytes + aligned(self.mr * self.nr * self.itemsize)

    @property
    def key(self) -> str:
        return f"{self.dtype}.{self.mr}x{self.vectors}x{self.lanes}.kc{self.kc_padded}"


def aligned(size: int) -> int:
    return -(-size // 64) * 64


def _round_down(value: int, multiple: int) -> int:
    return max(multiple, value // multiple * multiple)


def blocking(target: Target, dtype: DType, columns: int | None) -> Blocking:
    """Cache blocking from the host's L2 size: a packed B micro-panel (KC x NR)
    takes a sixteenth of L2, the packed A block (MC x KC) and B block
    (KC x NC) half of it each (they stream through while the micro-panel
    stays). Measured on a Zen 4 core (1 MiB L2): KC = 512, MC = 252, NC = 256
    were within noise of the best of a grid of 24 (85-100 GFLOP/s at n = 1024
    and 2048). With `columns` known, NC also leaves every core a share."""
    lanes = target.lanes(dtype)
    mr, vectors = NARROW_TILE if columns is not None and columns <= lanes else TILE
    nr = vectors * lanes
    item = dtype.itemsize
    kc = max(128, min(1024, _round_down(target.l2_bytes // (16 * nr * item), 16)))
    mc = _round_down(min(4096, target.l2_bytes // (2 * kc * item)), mr)  # whole tiles, also at the cap
    nc = _round_down(min(4096, target.l2_bytes // (2 * kc * item)), nr)
    if columns is not None:
        share = -(-columns // max(target.cores, 1))
        nc = max(nr, min(nc, -(-share // nr) * nr))
    return Blocking(dtype, lanes, mr, vectors, kc, mc, nc)


def float_type(dtype: DType) -> ir.Type:
    return ir.FloatType() if dtype is DType.float32 else ir.DoubleType()


def transpose(b: ir.IRBuilder, rows: list[ir.Value]) -> list[ir.Value]:
    """Transpose a W x W block held as W vectors of W lanes (W a power of two):
    one stage per bit of the index, each swapping that bit between row and column."""
    width = len(rows)
    rows = list(rows)
    bit = 1
    while bit < width:
        result = list(rows)
        for i in range(width):
            if i & bit:
                continue
            j = i | bit
            low = [(c & ~bit) + (width if c & bit else 0) for c in range(width)]
            high = [(c | bit) + (width if c & bit else 0) for c in range(width)]
            result[i] = b.shuffle_vector(rows[i], rows[j], ir.Constant(ir.VectorType(I32, width), low))
            result[j] = b.shuffle_vector(rows[i], rows[j], ir.Constant(ir.VectorType(I32, width), high))
        rows = result
        bit <<= 1
    return rows


class GemmLibrary:
    """The shared matmul functions of one module, emitted on first use."""

    def __init__(self, module: ir.Module) -> None:
        self.module = module
        self._functions: dict[str, ir.Function] = {}

    def _function(self, name: str, args: list[ir.Type], build) -> ir.Function:
        if name not in self._functions:
            fn = ir.Function(self.module, ir.FunctionType(VOID, args), name=name)
            fn.linkage = "internal"
            fn.attributes.add("noinline")  # shared by every matmul of the module: compiled once
            for arg in fn.args:
                if isinstance(arg.type, ir.PointerType):
                    arg.add_attribute("noalias")
            b = ir.IRBuilder(fn.append_basic_block("entry"))
            build(b, *fn.args)
            b.ret_void()
            self._functions[name] = fn
        return self._functions[name]

    # -- the microkernel -------------------------------------------------
    def micro(self, plan: Blocking, masked: bool) -> ir.Function:
        """micro(a, a_rows, a_cols, rows, b, b_rows, cols, depth, tile, accumulate);
        with `masked`, columns past `cols` are not read; without `accumulate`
        the tile's old contents are ignored (the sums start at zero)."""
        name = f"ember.gemm.micro{'.masked' if masked else ''}.{plan.key}"
        args = [PTR, I64, I64, I64, PTR, I64, I64, I64, PTR, I64]
        return self._function(name, args, lambda b, *a: self._micro(b, plan, masked, *a))

    def _micro(
        self, b, plan: Blocking, masked: bool, a, a_rows, a_cols, rows, bp, b_rows, cols, depth, tile, accumulate
    ) -> None:
        element = float_type(plan.dtype)
        vtype = vector_of(element, plan.lanes)
        slots = [[b.alloca(vtype) for _ in range(plan.vectors)] for _ in range(plan.mr)]
        carry = b.icmp_signed("!=", accumulate, i64(0))
        for r in range(plan.mr):
            for c in range(plan.vectors):
                index = i64((r * plan.vectors + c) * plan.lanes)
                old = b.load(b.gep(tile, [index], source_etype=element), typ=vtype, align=4)
                b.store(b.select(carry, old, constant(vtype, 0.0)), slots[r][c])
        last_row = b.sub(rows, i64(1))
        row_starts = []
        for r in range(plan.mr):
            row = b.select(b.icmp_signed("<", i64(r), rows), i64(r), last_row)
            row_starts.append(b.gep(a, [b.mul(row, a_rows)], source_etype=element))
        masks = [lane_mask(b, b.sub(cols, i64(c * plan.lanes)), plan.lanes) for c in range(plan.vectors)]
        with for_range(b, i64(0), depth, 1, name="k") as k:
            row_of_b = b.gep(bp, [b.mul(k, b_rows)], source_etype=element)
            vectors = []
            for c in range(plan.vectors):
                address = b.gep(row_of_b, [i64(c * plan.lanes)], source_etype=element)
                if masked:
                    vectors.append(_masked_load(b, address, vtype, masks[c], plan.itemsize))
                else:
                    vectors.append(b.load(address, typ=vtype, align=plan.itemsize))
            a_offset = b.mul(k, a_cols)
            for r in range(plan.mr):
                value = b.load(b.gep(row_starts[r], [a_offset], source_etype=element), typ=element)
                broadcast = splat(b, value, plan.lanes)
                for c in range(plan.vectors):
                    total = call_intrinsic(b, "fmuladd", vtype, [broadcast, vectors[c], b.load(slots[r][c], typ=vtype)])
                    b.store(total, slots[r][c])
        for r in range(plan.mr):
            for c in range(plan.vectors):
                index = i64((r * plan.vectors + c) * plan.lanes)
                b.store(b.load(slots[r][c], typ=vtype), b.gep(tile, [index], source_etype=element), align=4)

    # -- one row of A: matrix-vector products ---------------------------------
    def gemv_rows(self, plan: Blocking) -> ir.Function:
        """gemv_rows(a, a_cols, b, b_rows, cols, depth, out): out[0:cols] =
        A(0, :) @ B[:, 0:cols] for B with contiguous rows, reading B once in
        memory order (GEMV_ROWS rows at a time into the output row, kept in L1).
        `out` holds `cols` rounded up to whole vectors."""
        name = f"ember.gemm.gemv_rows.{plan.key}"
        args = [PTR, I64, PTR, I64, I64, I64, PTR]
        return self._function(name, args, lambda b, *a: self._gemv_rows(b, plan, *a))

    def _gemv_rows(self, b, plan: Blocking, a, a_cols, bp, b_rows, cols, depth, out) -> None:
        element = float_type(plan.dtype)
        vtype = vector_of(element, plan.lanes)
        lanes = plan.lanes
        with for_range(b, i64(0), cols, lanes, name="z") as j:
            b.store(constant(vtype, 0.0), b.gep(out, [j], source_etype=element), align=4)

        def rows_step(k, count: int) -> None:
            xs = [
                splat(b, b.load(b.gep(a, [b.mul(b.add(k, i64(u)), a_cols)], source_etype=element), typ=element), lanes)
                for u in range(count)
            ]
            starts = [b.gep(bp, [b.mul(b.add(k, i64(u)), b_rows)], source_etype=element) for u in range(count)]
            with for_range(b, i64(0), cols, lanes, name="j") as j:
                mask = lane_mask(b, b.sub(cols, j), lanes)
                slot = b.gep(out, [j], source_etype=element)
                total = b.load(slot, typ=vtype, align=4)
                for u in range(count):
                    row = _masked_load(b, b.gep(starts[u], [j], source_etype=element), vtype, mask, 4)
                    total = call_intrinsic(b, "fmuladd", vtype, [xs[u], row, total])
                b.store(total, slot, align=4)

        whole = b.and_(depth, i64(-GEMV_ROWS))
        with for_range(b, i64(0), whole, GEMV_ROWS, name="k") as k:
            rows_step(k, GEMV_ROWS)
        with for_range(b, whole, depth, 1, name="kt") as k:
            rows_step(k, 1)

    def gemv_columns(self, plan: Blocking) -> ir.Function:
        """gemv_columns(a, b, b_cols, cols, depth, tile): tile[0][j] =
        A(0, :) . B[:, j] for j < cols, with A's row and B's columns contiguous
        (x @ W.T for one x): dot products along k, eight columns at a time."""
        name = f"ember.gemm.gemv_columns.{plan.key}"
        args = [PTR, PTR, I64, I64, I64, PTR]
        return self._function(name, args, lambda b, *a: self._gemv_columns(b, plan, *a))

    def _gemv_columns(self, b, plan: Blocking, a, bp, b_cols, cols, depth, tile) -> None:
        element = float_type(plan.dtype)
        vtype = vector_of(element, plan.lanes)
        group = 8
        for g in range(0, plan.nr, group):
            slots = [b.alloca(vtype) for _ in range(group)]
            for slot in slots:
                b.store(constant(vtype, 0.0), slot)
            inside = [b.icmp_signed("<", i64(g + q), cols) for q in range(group)]
            starts = [
                b.gep(bp, [b.mul(b.select(inside[q], i64(g + q), i64(0)), b_cols)], source_etype=element)
                for q in range(group)
            ]
            with for_range(b, i64(0), depth, plan.lanes, name=f"k{g}") as k0:
                mask = lane_mask(b, b.sub(depth, k0), plan.lanes)
                x = _masked_load(b, b.gep(a, [k0], source_etype=element), vtype, mask, 4)
                for q in range(group):
                    column_mask = b.and_(mask, splat(b, inside[q], plan.lanes))
                    w = _masked_load(b, b.gep(starts[q], [k0], source_etype=element), vtype, column_mask, 4)
                    b.store(call_intrinsic(b, "fmuladd", vtype, [x, w, b.load(slots[q], typ=vtype)]), slots[q])
            for q in range(group):
                vector = Val(b.load(slots[q], typ=vtype), plan.dtype)
                total = fold_lanes(b, vector, plan.lanes, lambda m, x, y: m.add(x, y)).ir
                b.store(total, b.gep(tile, [i64(g + q)], source_etype=element))

    # -- packing B ---------------------------------------------------------
    def pack_b_rows(self, plan: Blocking) -> ir.Function:
        """pack_b_rows(src, src_rows, depth, cols, dst): a panel of B whose rows
        are contiguous (B(k, j) at src + k*src_rows + j) into dst[KC][NR]."""
        name = f"ember.gemm.pack_b_rows.{plan.key}"
        return self._function(name, [PTR, I64, I64, I64, PTR], lambda b, *a: self._pack_b_rows(b, plan, *a))

    def _pack_b_rows(self, b, plan: Blocking, src, src_rows, depth, cols, dst) -> None:
        element = float_type(plan.dtype)
        vtype = vector_of(element, plan.lanes)
        masks = [lane_mask(b, b.sub(cols, i64(c * plan.lanes)), plan.lanes) for c in range(plan.vectors)]
        with for_range(b, i64(0), depth, 1, name="k") as k:
            row = b.gep(src, [b.mul(k, src_rows)], source_etype=element)
            for c in range(plan.vectors):
                values = _masked_load(b, b.gep(row, [i64(c * plan.lanes)], source_etype=element), vtype, masks[c], 4)
                target = b.gep(dst, [b.add(b.mul(k, i64(plan.nr)), i64(c * plan.lanes))], source_etype=element)
                b.store(values, target, align=4)

    def pack_b_columns(self, plan: Blocking) -> ir.Function:
        """pack_b_columns(src, src_cols, depth, cols, dst): a panel of B whose
        columns are contiguous (B(k, j) at src + j*src_cols + k: a transposed
        weight) into dst[KC][NR], transposing W x W blocks in registers."""
        name = f"ember.gemm.pack_b_columns.{plan.key}"
        return self._function(name, [PTR, I64, I64, I64, PTR], lambda b, *a: self._pack_b_columns(b, plan, *a))

    def _pack_b_columns(self, b, plan: Blocking, src, src_cols, depth, cols, dst) -> None:
        element = float_type(plan.dtype)
        vtype = vector_of(element, plan.lanes)
        with for_range(b, i64(0), depth, plan.lanes, name="k0") as k0:
            mask = lane_mask(b, b.sub(depth, k0), plan.lanes)
            for c in range(plan.vectors):
                columns = []
                for q in range(plan.lanes):
                    j = i64(c * plan.lanes + q)
                    inside = b.icmp_signed("<", j, cols)
                    start = b.gep(src, [b.add(b.mul(b.select(inside, j, i64(0)), src_cols), k0)], source_etype=element)
                    column = _masked_load(b, start, vtype, b.and_(mask, splat(b, inside, plan.lanes)), 4)
                    columns.append(column)
                for kk, row in enumerate(transpose(b, columns)):
                    index = b.add(b.mul(b.add(k0, i64(kk)), i64(plan.nr)), i64(c * plan.lanes))
                    b.store(row, b.gep(dst, [index], source_etype=element), align=4)

    def pack_b_elements(self, plan: Blocking) -> ir.Function:
        """pack_b_elements(src, src_rows, src_cols, depth, cols, dst): any other
        layout, element by element, into dst[KC][NR] (zeros past `cols`)."""
        name = f"ember.gemm.pack_b_elements.{plan.key}"
        args = [PTR, I64, I64, I64, I64, PTR]
        return self._function(name, args, lambda b, *a: self._pack_b_elements(b, plan, *a))

    def _pack_b_elements(self, b, plan: Blocking, src, src_rows, src_cols, depth, cols, dst) -> None:
        element = float_type(plan.dtype)
        zero = constant(element, 0.0)
        with for_range(b, i64(0), depth, 1, name="k") as k, for_range(b, i64(0), i64(plan.nr), 1, name="j") as j:
            inside = b.icmp_signed("<", j, cols)
            offset = b.add(b.mul(k, src_rows), b.mul(b.select(inside, j, i64(0)), src_cols))
            value = b.load(b.gep(src, [offset], source_etype=element), typ=element)
            target = b.gep(dst, [b.add(b.mul(k, i64(plan.nr)), j)], source_etype=element)
            b.store(b.select(inside, value, zero), target)

    # -- packing A ---------------------------------------------------------
    def pack_a_rows(self, plan: Blocking) -> ir.Function:
        """pack_a_rows(src, src_rows, rows, depth, dst): MR rows of A, each
        contiguous (A(r, k) at src + r*src_rows + k), into dst[MR][KC]."""
        name = f"ember.gemm.pack_a_rows.{plan.key}"
        return self._function(name, [PTR, I64, I64, I64, PTR], lambda b, *a: self._pack_a_rows(b, plan, *a))

    def _pack_a_rows(self, b, plan: Blocking, src, src_rows, rows, depth, dst) -> None:
        element = float_type(plan.dtype)
        vtype = vector_of(element, plan.lanes)
        for r in range(plan.mr):
            inside = b.icmp_signed("<", i64(r), rows)
            count = b.select(inside, depth, i64(0))  # rows past the edge become zeros
            start = b.gep(src, [b.mul(b.select(inside, i64(r), i64(0)), src_rows)], source_etype=element)
            with for_range(b, i64(0), depth, plan.lanes, name=f"k{r}") as k0:
                mask = lane_mask(b, b.sub(count, k0), plan.lanes)
                values = _masked_load(b, b.gep(start, [k0], source_etype=element), vtype, mask, 4)
                target = b.gep(dst, [b.add(i64(r * plan.kc_padded), k0)], source_etype=element)
                b.store(values, target, align=4)

    def pack_a_elements(self, plan: Blocking) -> ir.Function:
        """pack_a_elements(src, src_rows, src_cols, rows, depth, dst): MR rows
        of A in any layout, element by element, into dst[KC][MR]."""
        name = f"ember.gemm.pack_a_elements.{plan.key}"
        args = [PTR, I64, I64, I64, I64, PTR]
        return self._function(name, args, lambda b, *a: self._pack_a_elements(b, plan, *a))

    def _pack_a_elements(self, b, plan: Blocking, src, src_rows, src_cols, rows, depth, dst) -> None:
        element = float_type(plan.dtype)
        zero = constant(element, 0.0)
        with for_range(b, i64(0), depth, 1, name="k") as k:
            for r in range(plan.mr):
                inside = b.icmp_signed("<", i64(r), rows)
                offset = b.add(b.mul(b.select(inside, i64(r), i64(0)), src_rows), b.mul(k, src_cols))
                value = b.load(b.gep(src, [offset], source_etype=element), typ=element)
                target = b.gep(dst, [b.add(b.mul(k, i64(plan.mr)), i64(r))], source_etype=element)
                b.store(b.select(inside, value, zero), target)

    # -- moving tiles ------------------------------------------------------
    def tile_move(self, plan: Blocking, load: bool) -> ir.Function:
        """tile_load(tile, c, c_rows, rows, cols): tile = C[0:rows, 0:cols] (0 elsewhere);
        tile_store(tile, c, c_rows, rows, cols): C[0:rows, 0:cols] = tile."""
        name = f"ember.gemm.tile_{'load' if load else 'store'}.{plan.key}"
        args = [PTR, PTR, I64, I64, I64]
        return self._function(name, args, lambda b, *a: self._tile_move(b, plan, load, *a))

    def _tile_move(self, b, plan: Blocking, load: bool, tile, c, c_rows, rows, cols) -> None:
        element = float_type(plan.dtype)
        vtype = vector_of(element, plan.lanes)
        masks = [lane_mask(b, b.sub(cols, i64(v * plan.lanes)), plan.lanes) for v in range(plan.vectors)]
        for r in range(plan.mr):
            inside = b.icmp_signed("<", i64(r), rows)
            row = b.gep(c, [b.mul(i64(r), c_rows)], source_etype=element)
            for v in range(plan.vectors):
                slot = b.gep(tile, [i64((r * plan.vectors + v) * plan.lanes)], source_etype=element)
                address = b.gep(row, [i64(v * plan.lanes)], source_etype=element)
                mask = b.and_(masks[v], splat(b, inside, plan.lanes))
                if load:
                    b.store(_masked_load(b, address, vtype, mask, plan.itemsize), slot, align=4)
                else:
                    _masked_store(b, b.load(slot, typ=vtype, align=4), address, mask, plan.itemsize)


def _masked_load(b: ir.IRBuilder, address, vtype: ir.VectorType, mask, align: int) -> ir.Value:
    fn = declare(b.module, f"llvm.masked.load.{intrinsic_suffix(vtype)}.p0", vtype, [PTR, I32, mask.type, vtype])
    return b.call(fn, [address, ir.Constant(I32, align), mask, constant(vtype, 0.0)])


def _masked_store(b: ir.IRBuilder, value, address, mask, align: int) -> None:
    fn = declare(
        b.module, f"llvm.masked.store.{intrinsic_suffix(value.type)}.p0", VOID, [value.type, PTR, I32, mask.type]
    )
    b.call(fn, [value, address, ir.Constant(I32, align), mask])
