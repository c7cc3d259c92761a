"""The shared parts of generated matmuls: the microkernel, the packing
routines and tile moves, emitted once per module for each element type and
register tile, and called by every matmul kernel's tasks (gemm.py).

All take element strides at run time, so one microkernel serves every
operand layout: A may be read in place (any strides) or packed
interleaved ([KC][MR]: the MR values of each k side by side); B is read in
place when its rows are contiguous, otherwise from a packed panel
([KC][NR]). KC here is the depth of the block being packed, in whole
vectors (packed_depth).

    microkernel(a, a_rows, a_cols, rows, b, b_rows, cols, depth, tile)
        tile[MR][NR] += A[0:rows, 0:depth] @ B[0:depth, 0:cols]
        A(r, k) at a + r*a_rows + k*a_cols (rows past `rows` repeat the last);
        B(k, j) at b + k*b_rows + j, columns past `cols` read as 0.

The accumulators live in MR * NR/W vector registers for the whole depth:
per k, NR/W vector loads of B, MR broadcasts of A and MR*NR/W FMAs. The
loop (accumulate_tile) is emitted here for edge tiles (micro_masked) and
into each matmul kernel's own microkernel, which applies the kernel's
epilogue to the accumulators while they are still in registers (gemm.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import llvmlite.ir as ir

from ...ir import DType
from ..memory import aligned
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
    smin,
    splat,
    vector_of,
)
from .shared_functions import SharedFunctions
from .target import Target

TILE = (8, 2)
"""The register tile with 32 vector registers (AVX-512): MR rows of VECTORS
vector registers (NR = VECTORS * W columns), 16 accumulators. Measured on a
Zen 4 core against 6x2, both timed round by round in one process: tied on
squares, 6-9% faster on batches of 32 rows (which 8 divides; 6 rows left a
part-empty last tile), 4-5% slower on weight gradients with 2048 outputs;
12x2 and 14x2 were slower."""

TILE_16_REGISTERS = (6, 2)
"""The register tile with 16 vector registers (AVX2): 12 accumulators, two
B loads and a broadcast per k fit."""

NARROW_TILE = (12, 1)
"""The tile for matmuls at most one vector wide (a 10-class output layer)."""

DOT_BLOCK = (4, 4)
"""Rows x columns of the dot-product block with 32 vector registers
(AVX-512): 16 accumulators and 8 loads per step."""

DOT_BLOCK_16_REGISTERS = (2, 4)
"""The dot-product block with 16 registers (AVX2): 8 accumulators, 6 loads."""

GEMV_ROWS = 8
"""Rows of B a one-row product streams at once, a power of two (measured:
8 rows ran 1.1x NumPy on 1x2048x2048, 4 rows 1.0x, 2 rows 0.6x; 16 rows
0.64x on 1x1024x2048)."""

GEMV_COLUMNS = 4
"""Columns of C (rows of W) a one-row x @ W.T sums at once. Measured against
8, interleaved in one process: X@W.T 1x1024->2048 1.05 -> 1.13 of NumPy,
1x1024->512 1.04 -> 1.14, 1x512->256 1.30 -> 1.36, 1x784->512 equal, and
with 8 KiB rows 1x2048->2048 1.15 -> 1.12, 1x2048->256 1.09 -> 1.07."""


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
        """Names the shared functions made for this register tile (their code
        depends on the tile alone, not on the cache blocking)."""
        return f"{self.dtype}.{self.mr}x{self.vectors}x{self.lanes}"


KC_MAX = 1024
"""The deepest KC block."""

DEEP_MC = 128
"""The fewest rows a deeper KC block leaves the A block (MC): the smallest
measured (Zen 4, KC 1024). On a 512 KiB L2 (Zen 3) this keeps KC at 512:
deeper blocks there would leave 60-78 rows, not measured."""


def _round_down(value: int, multiple: int) -> int:
    return max(multiple, value // multiple * multiple)


def register_tile(target: Target) -> tuple[int, int]:
    """(MR, vectors) of the wide register tile: AVX-512 has 32 vector registers, AVX2 16."""
    return TILE if target.vector_bits >= 512 else TILE_16_REGISTERS


def tile_rows(rows: int | None, mr: int, vectors: int) -> int:
    """MR for a matmul of `rows` rows (None: unknown until run time): the
    height up to `mr` with the least estimated time, the number of tiles
    times the loads and FMA rows of one step (height + vectors). A known
    small M, such as the 10 outputs of a classifier whose weight gradient
    dY.T @ X is computed, would otherwise waste rows of its last tile
    (measured on dY.T @ X 256x256->10: 5-row tiles 1.2x faster than 6)."""
    if rows is None:
        return mr
    return min(range(mr, 0, -1), key=lambda height: -(-rows // height) * (height + vectors))


def blocking(
    target: Target, dtype: DType, columns: int | None, rows: int | None = None, depth: int | None = None
) -> Blocking:
    """Cache blocking from the host's caches: a packed B micro-panel (KC x NR)
    takes a sixteenth of L2 and the packed A block (MC x KC) half of it; the
    packed B block (KC x NC) an eighth of L3, as in BLIS, so A is packed
    again for fewer column blocks. Measured on a Zen 4 core (1 MiB L2,
    32 MiB L3): KC = 512, MC = 252 (6-row tiles; 256 with 8) were within
    noise of the best of a grid of 24; NC = 2048 ran 5-10% faster than 256
    at n = 1024 and 2048. With `columns` known, NC also leaves every core a
    share; with `rows` known, the wide tile may have fewer rows (tile_rows);
    with a `depth` (K) known and deeper than KC, K is cut into fewer, deeper
    blocks (deep_block)."""
    lanes = target.lanes(dtype)
    mr, vectors = register_tile(target)
    mr = tile_rows(rows, mr, vectors)
    if columns is not None and columns <= lanes:
        mr, vectors = NARROW_TILE  # dot products in blocks of 4 rows (DOT_BLOCK) use it too: a fixed 12
    nr = vectors * lanes
    item = dtype.itemsize
    kc = max(128, min(KC_MAX, _round_down(target.l2_bytes // (16 * nr * item), 16)))
    if depth is not None and depth > kc:
        deepest = min(target.l2_bytes // (8 * nr * item), target.l2_bytes // (2 * DEEP_MC * item))
        kc = deep_block(depth, kc, deepest)
    mc = _round_down(min(4096, target.l2_bytes // (2 * kc * item)), mr)  # whole tiles, also at the cap
    nc = _round_down(min(4096, target.l3_bytes // (8 * kc * item)), nr)
    if columns is not None:
        share = -(-columns // max(target.cores, 1))
        nc = max(nr, min(nc, -(-share // nr) * nr))
    return Blocking(dtype, lanes, mr, vectors, kc, mc, nc)


def deep_block(depth: int, kc: int, deepest: int) -> int:
    """KC for a known depth K > kc: K in the fewest blocks of at most
    `deepest` (a B micro-panel of an eighth of L2, an A block of DEEP_MC
    rows in half of it) and KC_MAX, cut evenly (no shallow last block), and
    never less than kc. Fewer blocks mean fewer passes of partial sums
    through C. Measured on a Zen 4 core (1 MiB L2), KC 1024 against 512,
    each compiled and timed round by round in one process: squares of 1024
    and 2048 +3-4% (to 90% of the FMA peak), X @ W.T 512x2048->2048 +2-4%,
    dY @ W +1%; a shallower K (the batch of a weight gradient) was 2-3%
    slower with the smaller MC that comes with KC 1024, so only matmuls
    deeper than KC get it."""
    most = max(kc, min(KC_MAX, _round_down(deepest, 16)))
    blocks = -(-depth // most)
    return max(kc, min(most, -(-depth // (16 * blocks)) * 16))


def packed_depth(b: ir.IRBuilder, depth: ir.Value, lanes: int) -> ir.Value:
    """The depth of packed panels: `depth` rounded up to whole vectors (not
    KC: a shallow block's panels then sit next to each other instead of KC
    apart, where they would all fall into the same few L1 sets)."""
    return b.and_(b.add(depth, i64(lanes - 1)), i64(-lanes))


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


class GemmLibrary(SharedFunctions):
    """The matmul library's functions of one module (see SharedFunctions)."""

    # -- the microkernel -------------------------------------------------
    def micro_masked(self, plan: Blocking) -> ir.Function:
        """micro_masked(a, a_rows, a_cols, rows, b, b_rows, cols, depth, tile,
        accumulate): the microkernel for a tile at the edge of C with B read
        in place, so columns past `cols` are not read; without `accumulate`
        the tile's old contents are ignored (the sums start at zero). Whole
        tiles run in each kernel's own microkernel, which finishes them with
        the kernel's epilogue (gemm.py)."""
        name = f"ember.gemm.micro.masked.{plan.key}"
        args = [PTR, I64, I64, I64, PTR, I64, I64, I64, PTR, I64]
        return self.function(name, args, lambda b, *a: self._micro_masked(b, plan, *a))

    def _micro_masked(self, b, plan: Blocking, *operands) -> None:
        tile = operands[8]
        store_tile(b, plan, accumulate_tile(b, b.alloca, plan, True, *operands), tile)

    # -- one row of A: matrix-vector products ---------------------------------
    def gemv_rows(self, plan: Blocking) -> ir.Function:
        """gemv_rows(a, a_cols, b, b_rows, cols, depth, out): out[0:cols] =
        A(0, :) @ B[:, 0:cols] for B with contiguous rows, reading B once in
        memory order (GEMV_ROWS rows at a time into the output row, kept in L1).
        `out` holds `cols` rounded up to whole vectors."""
        name = f"ember.gemm.gemv_rows.{plan.key}"
        args = [PTR, I64, PTR, I64, I64, I64, PTR]
        return self.function(name, args, lambda b, *a: self._gemv_rows(b, plan, *a))

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

            def load(address, mask) -> ir.Value:
                if mask is None:
                    return b.load(address, typ=vtype, align=plan.itemsize)
                return _masked_load(b, address, vtype, mask, plan.itemsize)

            def update(j, mask) -> None:
                # masked lanes of `out` are neither read nor written: they may
                # be real columns (a head), where x * 0 would put NaN for x = inf
                slot = b.gep(out, [j], source_etype=element)
                chains = [load(slot, mask)]
                if count > 1:  # two independent FMA chains: half the latency
                    chains.append(constant(vtype, 0.0))
                for u in range(count):
                    row = load(b.gep(starts[u], [j], source_etype=element), mask)
                    chains[u % len(chains)] = call_intrinsic(b, "fmuladd", vtype, [xs[u], row, chains[u % len(chains)]])
                total = chains[0] if len(chains) == 1 else b.fadd(chains[0], chains[1])
                if mask is None:
                    b.store(total, slot, align=plan.itemsize)
                else:
                    _masked_store(b, total, slot, mask, plan.itemsize)

            _aligned_vectors(b, plan, bp, b_rows, cols, update)

        whole = b.and_(depth, i64(-GEMV_ROWS))
        with for_range(b, i64(0), whole, GEMV_ROWS, name="k") as k:
            rows_step(k, GEMV_ROWS)
        with for_range(b, whole, depth, 1, name="kt") as k:
            rows_step(k, 1)

    def gemv_columns(self, plan: Blocking) -> ir.Function:
        """gemv_columns(a, b, b_cols, cols, depth, tile): tile[0][j] =
        A(0, :) . B[:, j] for j < cols, with A's row and B's columns contiguous
        (x @ W.T for one x): dot products along k, GEMV_COLUMNS columns at a time."""
        name = f"ember.gemm.gemv_columns.{plan.key}"
        args = [PTR, PTR, I64, I64, I64, PTR]
        return self.function(name, args, lambda b, *a: self._gemv_columns(b, plan, *a))

    def _gemv_columns(self, b, plan: Blocking, a, bp, b_cols, cols, depth, tile) -> None:
        with for_range(b, i64(0), cols, GEMV_COLUMNS, name="g") as g0:
            shape = (1, GEMV_COLUMNS)
            self._dot_block(b, plan, shape, a, i64(0), bp, b_cols, g0, cols, depth, tile, aligned=True)

    def dots(self, plan: Blocking) -> ir.Function:
        """dots(a, a_rows, rows, b, b_cols, cols, depth, tile): tile[r][j] =
        A(r, :) . B[:, j] for r < rows <= MR and j < cols <= NR, with A's rows
        and B's columns contiguous (x @ W.T): dot products along k, for
        outputs too narrow to fill the register tile's vectors (a 10-class
        layer would waste 6 of 16 lanes there)."""
        name = f"ember.gemm.dots.{plan.key}"
        args = [PTR, I64, I64, PTR, I64, I64, I64, PTR]
        return self.function(name, args, lambda b, *a: self._dots(b, plan, *a))

    def _dots(self, b, plan: Blocking, a, a_rows, rows, bp, b_cols, cols, depth, tile) -> None:
        block = DOT_BLOCK if plan.lanes * plan.itemsize >= 64 else DOT_BLOCK_16_REGISTERS
        element = float_type(plan.dtype)
        whole = b.and_(rows, i64(-block[0]))
        for shape, begin, end in ((block, i64(0), whole), ((1, block[1]), whole, rows)):
            with for_range(b, begin, end, shape[0], name=f"dr{shape[0]}") as r0:
                start = b.gep(a, [b.mul(r0, a_rows)], source_etype=element)
                target = b.gep(tile, [b.mul(r0, i64(plan.nr))], source_etype=element)
                with for_range(b, i64(0), cols, shape[1], name=f"dg{shape[0]}") as g0:
                    self._dot_block(b, plan, shape, start, a_rows, bp, b_cols, g0, cols, depth, target, aligned=False)

    def _dot_block(self, b, plan: Blocking, shape, a, a_rows, bp, b_cols, g0, cols, depth, tile, aligned: bool) -> None:
        """tile[r][g0 + q] = A(r, :) . B[:, g0 + q] for an R x Q block (its
        columns past `cols` read column 0 and are not used): R*Q vector
        accumulators along k, whole vectors then a masked tail, each summed
        across its lanes at the end. `aligned`: whole vectors start on a
        vector boundary of B (a masked head first), for one row streaming a
        large weight; several rows reuse B from cache, where the head's extra
        step costs more than unaligned loads."""
        rows, group = shape
        element = float_type(plan.dtype)
        vtype = vector_of(element, plan.lanes)
        sums = [[b.alloca(vtype) for _ in range(group)] for _ in range(rows)]
        for slot in (slot for row in sums for slot in row):
            b.store(constant(vtype, 0.0), slot)
        a_starts = [b.gep(a, [b.mul(i64(r), a_rows)], source_etype=element) for r in range(rows)]
        b_starts = []
        for q in range(group):
            column = b.add(g0, i64(q))
            column = b.select(b.icmp_signed("<", column, cols), column, i64(0))
            b_starts.append(b.gep(bp, [b.mul(column, b_cols)], source_etype=element))

        def step(k0, mask) -> None:
            def load(start):
                address = b.gep(start, [k0], source_etype=element)
                if mask is None:
                    return b.load(address, typ=vtype, align=plan.itemsize)
                return _masked_load(b, address, vtype, mask, plan.itemsize)

            xs, ws = [load(start) for start in a_starts], [load(start) for start in b_starts]
            for r in range(rows):
                for q in range(group):
                    total = call_intrinsic(b, "fmuladd", vtype, [xs[r], ws[q], b.load(sums[r][q], typ=vtype)])
                    b.store(total, sums[r][q])

        _aligned_vectors(b, plan, b_starts[0] if aligned else None, b_cols, depth, step)
        totals = sum_each(b, [b.load(slot, typ=vtype) for row in sums for slot in row])
        per = (rows * group) // len(totals)  # sums in each vector of totals (at least 4)
        count = min(group, per)  # sums stored at once
        for r in range(rows):
            row = b.gep(tile, [b.add(i64(r * plan.nr), g0)], source_etype=element)
            for q in range(0, group, count):
                index = r * group + q
                vector, lane = totals[index // per], index % per
                part = _pick(b, vector, vector, list(range(lane, lane + count)))
                b.store(part, b.gep(row, [i64(q)], source_etype=element), align=plan.itemsize)

    # -- packing B ---------------------------------------------------------
    def pack_b_rows(self, plan: Blocking) -> ir.Function:
        """pack_b_rows(src, src_rows, depth, cols, dst): a panel of B whose rows
        are contiguous (B(k, j) at src + k*src_rows + j) into dst[KC][NR]."""
        name = f"ember.gemm.pack_b_rows.{plan.key}"
        return self.function(name, [PTR, I64, I64, I64, PTR], lambda b, *a: self._pack_b_rows(b, plan, *a))

    def _pack_b_rows(self, b, plan: Blocking, src, src_rows, depth, cols, dst) -> None:
        element = float_type(plan.dtype)
        vtype = vector_of(element, plan.lanes)
        masks = column_masks(b, plan, cols)
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
        return self.function(name, [PTR, I64, I64, I64, PTR], lambda b, *a: self._pack_b_columns(b, plan, *a))

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
        return self.function(name, args, lambda b, *a: self._pack_b_elements(b, plan, *a))

    def _pack_b_elements(self, b, plan: Blocking, src, src_rows, src_cols, depth, cols, dst) -> None:
        _pack_elements(b, plan, src, src_rows, src_cols, cols, depth, plan.nr, dst)

    # -- packing A ---------------------------------------------------------
    def pack_a_rows(self, plan: Blocking) -> ir.Function:
        """pack_a_rows(src, src_rows, rows, depth, dst): MR rows of A, each
        contiguous (A(r, k) at src + r*src_rows + k), into dst[D][MR], D the
        depth in whole vectors (packed_depth), rows past `rows` zero: W
        values of each row loaded at once and transposed in registers, W rows
        at a time (a group of fewer rows is padded with zero vectors, which
        LLVM folds away)."""
        name = f"ember.gemm.pack_a_rows.{plan.key}"
        return self.function(name, [PTR, I64, I64, I64, PTR], lambda b, *a: self._pack_a_rows(b, plan, *a))

    def _pack_a_rows(self, b, plan: Blocking, src, src_rows, rows, depth, dst) -> None:
        element = float_type(plan.dtype)
        lanes = plan.lanes
        vtype = vector_of(element, lanes)
        zero = constant(vtype, 0.0)
        with for_range(b, i64(0), depth, lanes, name="k0") as k0:
            mask = lane_mask(b, b.sub(depth, k0), lanes)
            for first in range(0, plan.mr, lanes):
                group = range(first, min(first + lanes, plan.mr))
                loaded = []
                for r in group:
                    inside = b.icmp_signed("<", i64(r), rows)
                    row = b.mul(b.select(inside, i64(r), i64(0)), src_rows)
                    start = b.gep(src, [b.add(row, k0)], source_etype=element)
                    loaded.append(_masked_load(b, start, vtype, b.and_(mask, splat(b, inside, lanes)), 4))
                columns = transpose(b, loaded + [zero] * (lanes - len(loaded)))
                part = ir.Constant(ir.VectorType(I32, len(group)), list(range(len(group))))
                for kk, column in enumerate(columns):
                    values = b.shuffle_vector(column, column, part)
                    index = b.add(b.mul(b.add(k0, i64(kk)), i64(plan.mr)), i64(first))
                    b.store(values, b.gep(dst, [index], source_etype=element), align=4)

    def pack_a_columns(self, plan: Blocking) -> ir.Function:
        """pack_a_columns(src, src_cols, rows, depth, dst): MR rows of an A
        stored transposed (A(r, k) at src + r + k*src_cols: the MR values of
        each k adjacent, as dY.T in a weight gradient) into dst[KC][MR], rows
        past `rows` zero: one masked vector load and store per k. Read in
        place instead, a k step 2^n bytes from the last maps to the same few
        L1 sets (measured on dY.T @ X 2048x1024, K = 256: 1.3x faster packed)."""
        name = f"ember.gemm.pack_a_columns.{plan.key}"
        return self.function(name, [PTR, I64, I64, I64, PTR], lambda b, *a: self._pack_a_columns(b, plan, *a))

    def _pack_a_columns(self, b, plan: Blocking, src, src_cols, rows, depth, dst) -> None:
        element = float_type(plan.dtype)
        vtype = vector_of(element, plan.lanes)
        groups = []
        for first in range(0, plan.mr, plan.lanes):
            width = min(plan.lanes, plan.mr - first)
            mask = lane_mask(b, smin(b, b.sub(rows, i64(first)), i64(width)), plan.lanes)
            groups.append((first, width, mask))
        with for_range(b, i64(0), depth, 1, name="k") as k:
            for first, width, mask in groups:
                start = b.gep(src, [b.add(b.mul(k, src_cols), i64(first))], source_etype=element)
                values = _masked_load(b, start, vtype, mask, plan.itemsize)
                part = b.shuffle_vector(values, values, ir.Constant(ir.VectorType(I32, width), list(range(width))))
                index = b.add(b.mul(k, i64(plan.mr)), i64(first))
                b.store(part, b.gep(dst, [index], source_etype=element), align=plan.itemsize)

    def pack_a_elements(self, plan: Blocking) -> ir.Function:
        """pack_a_elements(src, src_rows, src_cols, rows, depth, dst): MR rows
        of A in any layout, element by element, into dst[KC][MR]."""
        name = f"ember.gemm.pack_a_elements.{plan.key}"
        args = [PTR, I64, I64, I64, I64, PTR]
        return self.function(name, args, lambda b, *a: self._pack_a_elements(b, plan, *a))

    def _pack_a_elements(self, b, plan: Blocking, src, src_rows, src_cols, rows, depth, dst) -> None:
        _pack_elements(b, plan, src, src_cols, src_rows, rows, depth, plan.mr, dst)

    # -- moving tiles ------------------------------------------------------
    def tile_move(self, plan: Blocking, load: bool) -> ir.Function:
        """tile_load(tile, c, c_rows, rows, cols): tile = C[0:rows, 0:cols] (0 elsewhere);
        tile_store(tile, c, c_rows, rows, cols): C[0:rows, 0:cols] = tile."""
        name = f"ember.gemm.tile_{'load' if load else 'store'}.{plan.key}"
        args = [PTR, PTR, I64, I64, I64]
        return self.function(name, args, lambda b, *a: self._tile_move(b, plan, load, *a))

    def _tile_move(self, b, plan: Blocking, load: bool, tile, c, c_rows, rows, cols) -> None:
        """A whole tile moves whole vectors; only an edge tile masks them (an
        AVX2 masked store is microcoded on AMD cores)."""
        whole = b.and_(b.icmp_signed("==", rows, i64(plan.mr)), b.icmp_signed("==", cols, i64(plan.nr)))
        with b.if_else(whole) as (full, edge):
            with full:
                self._move_rows(b, plan, load, tile, c, c_rows, None)
            with edge:
                masks = column_masks(b, plan, cols)
                rows_masks = [
                    [b.and_(mask, splat(b, b.icmp_signed("<", i64(r), rows), plan.lanes)) for mask in masks]
                    for r in range(plan.mr)
                ]
                self._move_rows(b, plan, load, tile, c, c_rows, rows_masks)

    def _move_rows(self, b, plan: Blocking, load: bool, tile, c, c_rows, masks) -> None:
        """Each vector of the tile to or from C, through `masks[r][v]` (None: unmasked)."""
        element = float_type(plan.dtype)
        vtype = vector_of(element, plan.lanes)
        for r in range(plan.mr):
            row = b.gep(c, [b.mul(i64(r), c_rows)], source_etype=element)
            for v in range(plan.vectors):
                slot = b.gep(tile, [i64((r * plan.vectors + v) * plan.lanes)], source_etype=element)
                address = b.gep(row, [i64(v * plan.lanes)], source_etype=element)
                if masks is None and load:
                    b.store(b.load(address, typ=vtype, align=plan.itemsize), slot, align=4)
                elif masks is None:
                    b.store(b.load(slot, typ=vtype, align=4), address, align=plan.itemsize)
                elif load:
                    b.store(_masked_load(b, address, vtype, masks[r][v], plan.itemsize), slot, align=4)
                else:
                    _masked_store(b, b.load(slot, typ=vtype, align=4), address, masks[r][v], plan.itemsize)


def accumulate_tile(
    b: ir.IRBuilder,
    alloca: Callable[[ir.Type], ir.Value],
    plan: Blocking,
    masked: bool,
    a,
    a_rows,
    a_cols,
    rows,
    bp,
    b_rows,
    cols,
    depth,
    tile,
    accumulate,
) -> list[list[ir.Value]]:
    """The microkernel's loop (see the module docstring): the MR x NR/W
    accumulator vectors after `depth` steps, starting from `tile` (its first
    `rows` rows) when `accumulate` is nonzero, else from zero. `alloca(type)`
    makes a stack slot in the function's entry block, which LLVM promotes
    to a register."""
    element = float_type(plan.dtype)
    vtype = vector_of(element, plan.lanes)
    slots = [[alloca(vtype) for _ in range(plan.vectors)] for _ in range(plan.mr)]
    carry = b.icmp_signed("!=", accumulate, i64(0))
    last_row = b.sub(rows, i64(1))
    inside = [b.select(b.icmp_signed("<", i64(r), rows), i64(r), last_row) for r in range(plan.mr)]
    for slot in (slot for row in slots for slot in row):
        b.store(constant(vtype, 0.0), slot)
    # one branch around all the loads (a select per vector became a branch
    # per row: dY@W 64x256->10, ten steps a tile, 3-4% faster)
    with b.if_then(carry):
        for r in range(plan.mr):
            for c in range(plan.vectors):
                index = b.add(b.mul(inside[r], i64(plan.nr)), i64(c * plan.lanes))  # rows past `rows` not read
                b.store(b.load(b.gep(tile, [index], source_etype=element), typ=vtype, align=4), slots[r][c])
    masks = column_masks(b, plan, cols) if masked else []

    def k_loop(a_element: Callable[[ir.Value, int], ir.Value]) -> None:
        """The depth loop, A(r, k) at a_element(k * a_cols, r)."""
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
                broadcast = splat(b, b.load(a_element(a_offset, r), typ=element), plan.lanes)
                for c in range(plan.vectors):
                    old = b.load(slots[r][c], typ=vtype)
                    b.store(call_intrinsic(b, "fmuladd", vtype, [broadcast, vectors[c], old]), slots[r][c])

    # A's MR values of each k side by side (packed A; A stored transposed):
    # one pointer with constant offsets, no per-row registers (measured:
    # weight gradients dY.T @ X with a batch of 32 2-8% faster, squares 1-3%)
    adjacent = b.and_(b.icmp_signed("==", a_rows, i64(1)), b.icmp_signed("==", rows, i64(plan.mr)))
    with b.if_else(adjacent) as (side_by_side, apart):
        with side_by_side:
            k_loop(lambda offset, r: b.gep(a, [b.add(offset, i64(r))], source_etype=element))
        with apart:
            row_starts = [b.gep(a, [b.mul(row, a_rows)], source_etype=element) for row in inside]
            k_loop(lambda offset, r: b.gep(row_starts[r], [offset], source_etype=element))
    return [[b.load(slot, typ=vtype) for slot in row] for row in slots]


def column_masks(b: ir.IRBuilder, plan: Blocking, cols) -> list[ir.Value]:
    """The lane masks of a tile row's NR/W vectors: columns below `cols` on."""
    return [lane_mask(b, b.sub(cols, i64(c * plan.lanes)), plan.lanes) for c in range(plan.vectors)]


def store_tile(b: ir.IRBuilder, plan: Blocking, sums: list[list[ir.Value]], tile) -> None:
    """Write the accumulator vectors to the MR x NR tile buffer."""
    element = float_type(plan.dtype)
    for r, row in enumerate(sums):
        for c, value in enumerate(row):
            index = i64((r * plan.vectors + c) * plan.lanes)
            b.store(value, b.gep(tile, [index], source_etype=element), align=4)


def _pack_elements(b: ir.IRBuilder, plan: Blocking, src, k_stride, i_stride, count, depth, width: int, dst) -> None:
    """dst[k][i] = src[k*k_stride + i*i_stride] for k < depth and i < width,
    zero for i >= count: a [depth][width] panel packed element by element
    (the layouts no vector routine reads)."""
    element = float_type(plan.dtype)
    zero = constant(element, 0.0)
    with for_range(b, i64(0), depth, 1, name="k") as k, for_range(b, i64(0), i64(width), 1, name="i") as i:
        inside = b.icmp_signed("<", i, count)
        offset = b.add(b.mul(k, k_stride), b.mul(b.select(inside, i, i64(0)), i_stride))
        value = b.load(b.gep(src, [offset], source_etype=element), typ=element)
        target = b.gep(dst, [b.add(b.mul(k, i64(width)), i)], source_etype=element)
        b.store(b.select(inside, value, zero), target)


def _aligned_vectors(b: ir.IRBuilder, plan: Blocking, stream, stride, count, body) -> None:
    """body(i, mask) over [0, count) a vector at a time (mask None for whole
    vectors): a masked head, whole vectors, a masked tail. The head makes
    whole vectors of `stream`, and of every stream a multiple of `stride`
    elements from it, start on a vector boundary (none without a stream).
    Large NumPy arrays start 16 bytes past a 64-byte line, where every
    vector load would straddle two lines (measured: one-row products over
    such a weight ran up to 20% slower)."""
    lanes, item = plan.lanes, plan.itemsize
    head = i64(0)
    if stream is not None:
        address = b.ptrtoint(stream, I64)
        skew = b.sdiv(b.and_(b.sub(i64(0), address), i64(lanes * item - 1)), i64(item))
        shared = b.icmp_signed("==", b.and_(stride, i64(lanes - 1)), i64(0))
        head = b.select(shared, skew, i64(0))
        head = smin(b, head, count)
        with b.if_then(b.icmp_signed(">", head, i64(0))):
            body(i64(0), lane_mask(b, head, lanes))
    end = b.add(head, b.and_(b.sub(count, head), i64(-lanes)))
    with for_range(b, head, end, lanes, name="v") as i:
        body(i, None)
    with b.if_then(b.icmp_signed("<", end, count)):
        body(end, lane_mask(b, b.sub(count, end), lanes))


def _masked_load(b: ir.IRBuilder, address, vtype: ir.VectorType, mask, align: int) -> ir.Value:
    fn = declare(b.module, f"llvm.masked.load.{intrinsic_suffix(vtype)}.p0", vtype, [PTR, I32, mask.type, vtype])
    return b.call(fn, [address, constant(I32, align), mask, constant(vtype, 0.0)])


def _masked_store(b: ir.IRBuilder, value, address, mask, align: int) -> None:
    fn = declare(
        b.module, f"llvm.masked.store.{intrinsic_suffix(value.type)}.p0", VOID, [value.type, PTR, I32, mask.type]
    )
    b.call(fn, [value, address, constant(I32, align), mask])


def sum_each(b: ir.IRBuilder, vectors: list[ir.Value]) -> list[ir.Value]:
    """The lane sums of `vectors` (a power of two of them, of W lanes each),
    packed: vectors whose lanes are the sums in order, min(count, W) per
    vector. Pairs of vectors trade halves and add (a transposing reduction),
    so n sums take about n shuffle pairs and adds instead of n * log2(W)."""
    width = vectors[0].type.count  # lanes of each vector that still belong to one sum
    while width > 1:
        if len(vectors) > 1:  # x's halves then y's, for each sum: as many lanes as x
            pairs = [(x, y, x.type.count) for x, y in zip(vectors[::2], vectors[1::2], strict=True)]
        else:  # one vector left: halve it
            pairs = [(vectors[0], vectors[0], 0)]
        vectors = []
        for x, y, offset in pairs:
            low, high = _halves(x.type.count, width)
            if offset:
                low, high = low + [i + offset for i in low], high + [i + offset for i in high]
            vectors.append(b.fadd(_pick(b, x, y, low), _pick(b, x, y, high)))
        width //= 2
    return vectors


def _halves(lanes: int, width: int) -> tuple[list[int], list[int]]:
    """Lanes of the first and of the second half of each run of `width` lanes."""
    half = width // 2
    runs = range(0, lanes, width)
    return [r + t for r in runs for t in range(half)], [r + half + t for r in runs for t in range(half)]


def _pick(b: ir.IRBuilder, x: ir.Value, y: ir.Value, lanes: list[int]) -> ir.Value:
    """The given lanes of x (0..W-1) and y (W..2W-1), as one vector."""
    return b.shuffle_vector(x, y, ir.Constant(ir.VectorType(I32, len(lanes)), lanes))
