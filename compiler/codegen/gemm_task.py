"""The task routines of the matmul library: the loops of one task of a
matmul kernel (a block of rows x columns of C), compiled once per machine
like the rest of the library (compiler/shared_code.py).

    for pc in K, step KC:
      for ic in the task's rows, step MC:
        pack A[ic:ic+MC, pc:pc+KC] panel by panel (unless read in place)
        for each NR-column panel from j0:
          pack B's panel (first row block only, unless read in place)
          for each MR-row tile from i0:
            prefetch the next tile's lines of C and of the epilogue's stores
            micro(args, A panel, B panel, tile, i0, j0, finish, passed)
    each row left over after whole tiles (at most LEFTOVER_ROWS), and
    each row of a task of few rows (FEW_ROWS): the one-row routine over
    the whole depth, then the epilogue

Everything that depends on the program reaches the routine at run time in
a frame (FRAME): the operands' addresses and strides, the task's block of
C, the thread's packing buffers, KC and MC, the epilogue's stores to
prefetch, and the kernel's microkernel (which ends in its epilogue,
gemm.py) with what it takes from its caller. The routine's code then
depends only on its name: the register tile, how A and B are packed, the
routine of a one-row block, and whether partial sums pass through C
between K blocks (TaskShape). A program generates only a short task that
fills the frame (gemm.py); measured on 784-512-512-10 with Adam, the
tasks were 40% of the LLVM time of a program whose library was compiled."""

from __future__ import annotations

from dataclasses import dataclass, replace

import llvmlite.ir as ir

from .gemm_library import Blocking, GemmLibrary, float_type, packed_depth
from .irutil import I8, I32, I64, PTR, VOID, constant, declare, for_range, i64, smax, smin
from .matmul_schedule import DIRECT_B_DEPTH, SMALL_M, MatmulSchedule

MICRO_ARGS = (PTR, PTR, I64, I64, I64, PTR, I64, I64, I64, PTR, I64, I64, I64, I64, PTR)
"""A kernel's microkernel: (args, a, a_rows, a_cols, rows, b, b_rows, cols,
depth, tile, accumulate, i0, j0, finish, passed); see gemm.py."""
MICRO_POINTER = ir.PointerType(ir.FunctionType(VOID, MICRO_ARGS))  # printed `ptr`; llvmlite calls through it

FRAME = (
    "micro",  # the kernel's microkernel
    "args",  # the program's arguments, for the microkernel
    "passed",  # what the microkernel takes from its caller
    "n",  # columns of C (its row stride)
    "k",  # depth
    "a",  # A's first element, its row and column strides
    "a_rows",
    "a_cols",
    "b",
    "b_rows",
    "b_cols",
    "a_block",  # this thread's packed A block, packed B block and tile
    "b_block",
    "tile",
    "c",  # where partial sums live between K blocks
    "kc",
    "mc",
    "i_begin",  # the task's block of C
    "i_end",
    "j_begin",
    "j_end",
)
"""The slots, 8 bytes each, of the frame a task routine takes, in order;
then the addresses of up to PREFETCH_BASES tensors the epilogue stores
(rows of C apart), whose next tile's lines are prefetched."""

PREFETCH_BASES = 8
"""The most stored tensors whose lines are prefetched (Adam's update stores
three; further ones are only not prefetched)."""

FRAME_SLOTS = len(FRAME) + PREFETCH_BASES

LEFTOVER_ROWS = 2
"""At most this many rows of a task after its whole tiles of MR rows run
as one-row products (each reads B once) instead of a tile of MR rows.
Measured on a Zen 4 core against tiles, alternating processes: the
predict of 784-512-512-10 on 2 rows 0.39x the time, 9 rows 0.77x, 10
0.88x, 258 0.97x; 784-128-10's step at batch 2 0.64x, 9 0.88x, 10
0.92x. Three rows left were as fast as a tile after whole tiles (B
packed already) and 1.11x the time at 8 + 4 rows; alone (a batch of
3 or 4) they were 0.56-0.81x (FEW_ROWS)."""

FEW_ROWS = 5 / 8
"""A task of at most this share of MR rows (5 of 8) runs as one-row
products: before its first tile has packed B, a tile of MR rows costs
about as much as five passes over B. Measured on a Zen 4 core against a
tile, alternating processes: the predict of 784-512-512-10 on 3, 4 and 5
rows 0.56x, 0.74x and 0.91x the time, on 6 and 7 rows 1.06x and 1.23x;
784-128-10's step at batch 3, 4, 5 0.73x, 0.82x, 0.90x, at 7 1.07x."""

_POINTERS = {"micro", "args", "passed", "a", "b", "a_block", "b_block", "tile", "c"}


@dataclass(frozen=True)
class TaskShape:
    """What a task routine's code depends on, besides the register tile:
    the routine's name says all of it."""

    path: str
    """"blocked", "dots" (a narrow x @ W.T) or "row" (C one row at compile time)."""
    one_row: str | None
    """The matrix-vector routine of a one-row block ("columns" or "rows"), or
    None: the blocked path takes it."""
    pack_a: str
    pack_b: str
    partial: bool
    """Partial sums pass through C (or scratch) between K blocks."""
    prefetches: int = 0
    """How many tensors' lines the routine prefetches (their addresses end
    the frame): in a loop over the next tile's rows, the tensors unrolled
    in it. Measured: with the rows unrolled too, four tensors took LLVM
    48 ms instead of 32 (steps within noise); a loop over the tensors
    instead cost R, S and M's steps ~0.5%."""

    @classmethod
    def of(cls, schedule: MatmulSchedule, prefetches: int = 0) -> TaskShape:
        """The shape of a task of a kernel with `schedule` that prefetches
        the lines of `prefetches` tensors."""
        path = "dots" if schedule.dots else "row" if schedule.row_vector else "blocked"
        if path != "blocked":
            return cls(path, schedule.one_row if path == "row" else None, "", "", False)
        partial = schedule.partial_sums is not None
        return cls(path, schedule.one_row, schedule.pack_a, schedule.pack_b, partial, prefetches)

    def name(self, plan: Blocking) -> str:
        """The name of the routine of this shape on register tile `plan`."""
        if self.path == "dots":
            shape = "dots"
        elif self.path == "row":
            shape = f"row_{self.one_row}"
        else:
            one_row = f".one_row_{self.one_row}" if self.one_row else ""
            partial = ".partial" if self.partial else ""
            shape = f"a_{self.pack_a}.b_{self.pack_b}{one_row}{partial}.prefetch{self.prefetches}"
        return f"ember.gemm.task.{shape}.{plan.key}"


def task_routine(library: GemmLibrary, plan: Blocking, shape: TaskShape) -> ir.Function:
    """task(frame): one task of a matmul kernel whose schedule has `shape`,
    on register tile `plan` (its cache blocking comes in the frame)."""
    tile_only = replace(plan, kc=0, mc=0, nc=0)  # the code may not depend on them
    # asked for even when the routine is only declared (compiled before):
    # its object calls them, so the program's link needs theirs too
    callees = _callees(library, tile_only, shape)
    return library.function(
        shape.name(plan), [PTR], lambda b, frame: _TaskRoutine(tile_only, shape, callees, b, frame).emit()
    )


def _callees(library: GemmLibrary, plan: Blocking, shape: TaskShape) -> dict[str, ir.Function]:
    """The library functions a routine of `shape` calls, by their role in it."""
    if shape.path == "dots":
        return {"dots": library.dots(plan)}
    one_row = {"gemv": getattr(library, f"gemv_{shape.one_row}")(plan)} if shape.one_row else {}
    if shape.path == "row":
        return one_row
    blocked = {
        "pack_a": getattr(library, f"pack_a_{shape.pack_a}")(plan),
        "pack_b": getattr(library, f"pack_b_{shape.pack_b}")(plan),
    }
    if shape.pack_b == "rows":  # B read in place: edge tiles must not read past it
        blocked["masked"] = library.micro_masked(plan)
    if shape.partial:
        blocked |= {"load": library.tile_move(plan, load=True), "store": library.tile_move(plan, load=False)}
    return one_row | blocked


@dataclass
class _Step:
    """One KC block of a task, and how it reads A and B."""

    pc: ir.Value
    depth: ir.Value
    packed_depth: ir.Value  # the row length of packed panels
    first: ir.Value
    last: ir.Value
    direct_a: ir.Value  # A read in place (not packed)
    direct_b: ir.Value


class _TaskRoutine:
    """Emits the body of one task routine from its frame."""

    def __init__(
        self, plan: Blocking, shape: TaskShape, callees: dict[str, ir.Function], b: ir.IRBuilder, frame
    ) -> None:
        self.plan, self.shape, self.callees, self.b, self.frame = plan, shape, callees, b, frame
        self.element = float_type(plan.dtype)
        self.f = {
            name: b.load(
                b.gep(frame, [i64(8 * i)], source_etype=I8),
                typ=MICRO_POINTER if name == "micro" else PTR if name in _POINTERS else I64,
                name=name,
            )
            for i, name in enumerate(FRAME)
        }

    def emit(self) -> None:
        b, f = self.b, self.f
        if self.shape.path == "dots":
            self._dot_products()
        elif self.shape.path == "row":
            self._gemv(f["i_begin"])
        elif self.shape.one_row is None:
            self._blocked(f["i_end"])
        else:
            # rows left over after whole tiles of MR (a batch of 2, 9, 10,
            # 17, ...), and a task of a few rows, take the one-row routine:
            # the blocked path computes a whole tile of MR rows for them.
            # Measured on the wide tile; a narrow one (one vector of columns)
            # keeps its tiles but for a task of one row, its products small
            # either way
            rows = b.sub(f["i_end"], f["i_begin"])
            if self.plan.vectors > 1:
                left = rows if self.plan.mr == 1 else b.srem(rows, i64(self.plan.mr))
                alone = b.or_(
                    b.icmp_signed("<=", left, i64(LEFTOVER_ROWS)),
                    b.icmp_signed("<=", rows, i64(int(self.plan.mr * FEW_ROWS))),
                )
            else:
                left, alone = rows, b.icmp_signed("==", rows, i64(1))
            tiled_end = b.select(alone, b.sub(f["i_end"], left), f["i_end"])
            with b.if_then(b.icmp_signed(">", tiled_end, f["i_begin"])):
                self._blocked(tiled_end)
            with for_range(b, tiled_end, f["i_end"], name="left") as row:
                self._gemv(row)

    def _at(self, start: ir.Value, offset: ir.Value) -> ir.Value:
        return self.b.gep(start, [offset], source_etype=self.element)

    def _micro(self, operands: list[ir.Value], i0, j0, finish: ir.Value) -> None:
        f = self.f
        self.b.call(f["micro"], [f["args"], *operands, i0, j0, finish, f["passed"]])

    def _finish_buffered(self, tile, i0, j0, rows, cols) -> None:
        """The epilogue on a tile summed elsewhere (in the tile buffer, rows
        NR elements apart): the kernel's microkernel with depth 0."""
        zero = i64(0)
        self._micro([tile, zero, zero, rows, tile, zero, cols, zero, tile, i64(1)], i0, j0, i64(1))

    # -- the blocked path ------------------------------------------------------
    def _blocked(self, i_end: ir.Value) -> None:
        """Rows from the task's first to `i_end`: KC blocks, packing where it pays, the microkernel."""
        b, f = self.b, self.f
        k, kc, mc = f["k"], f["kc"], f["mc"]
        rows = b.sub(i_end, f["i_begin"])
        # small: at most SMALL_M rows whose A block fits the packed A block's
        # share of L2 (MC x KC); read in place, a larger A would come from L3
        # again for every panel of B (on a 512 KiB L2, 256x512x512 ran 1.2x
        # faster packed, while 64x512x512 ran 1.05x faster in place)
        fits = b.icmp_signed("<=", b.mul(rows, smin(b, k, kc)), b.mul(mc, kc))
        small = b.and_(b.icmp_signed("<=", rows, i64(SMALL_M)), fits)
        # B in place: small blocks, rows contiguous, not too deep. A in place: small blocks
        shallow = b.icmp_signed("<=", k, i64(DIRECT_B_DEPTH))
        # at least one block: with K = 0 the tiles are zeros, still finished and stored
        with for_range(b, i64(0), smax(b, k, i64(1)), kc, name="pc") as pc:
            depth = smin(b, kc, b.sub(k, pc))
            step = _Step(
                pc,
                depth,
                packed_depth(b, depth, self.plan.lanes),
                first=b.icmp_signed("==", pc, i64(0)),
                last=b.icmp_signed(">=", b.add(pc, depth), k),
                direct_a=small,
                # B's rows contiguous: the only layout packed by rows
                direct_b=b.and_(small, shallow) if self.shape.pack_b == "rows" else ir.Constant(ir.IntType(1), 0),
            )
            with for_range(b, f["i_begin"], i_end, mc, name="ic") as ic:
                ic_end = smin(b, i_end, b.add(ic, mc))
                with b.if_then(b.not_(step.direct_a)):
                    self._pack_a(step, ic, ic_end)
                self._tiles(step, ic, ic_end)

    def _tiles(self, step: _Step, i_begin, i_end) -> None:
        """Every MR x NR tile of rows [i_begin, i_end) of the task for one KC
        block: partial sums in, microkernel, partial sums or epilogue out.
        The first row block packs each panel of B just before its tiles use
        it, so they read it from L1 rather than after the whole B block was
        packed (and partly evicted); later row blocks reuse the packed panels."""
        b, f = self.b, self.f
        first_rows = b.icmp_signed("==", i_begin, f["i_begin"])
        with for_range(b, f["j_begin"], f["j_end"], self.plan.nr, name="jr") as j0:
            with b.if_then(b.and_(first_rows, b.not_(step.direct_b))):
                self._pack_b_panel(step, j0)
            self._row_tiles(step, i_begin, i_end, j0)

    def _row_tiles(self, step: _Step, i_begin, i_end, j0) -> None:
        """The tiles of rows [i_begin, i_end) in the NR columns from j0."""
        b, f, plan = self.b, self.f, self.plan
        n, tile = f["n"], f["tile"]
        with for_range(b, i_begin, i_end, plan.mr, name="ir") as i0:
            rows = smin(b, i64(plan.mr), b.sub(i_end, i0))
            cols = smin(b, i64(plan.nr), b.sub(f["j_end"], j0))
            c_tile = self._at(f["c"], b.add(b.mul(i0, n), j0))
            if self.shape.partial:
                with b.if_then(b.not_(step.first)):
                    b.call(self.callees["load"], [tile, c_tile, n, rows, cols])
                accumulate = b.zext(b.not_(step.first), I64)
                finish = step.last
            else:
                accumulate, finish = i64(0), ir.Constant(ir.IntType(1), 1)
            self._prefetch_next_tile(i0, j0)
            args = [*self._a_source(step, i0, i_begin), rows, *self._b_source(step, j0), cols, step.depth, tile]
            args.append(accumulate)
            if "masked" not in self.callees:  # B is never read in place
                self._micro(args, i0, j0, b.zext(finish, I64))
            else:  # read in place, only a tile at the edge of C must not read past it
                edge = b.and_(step.direct_b, b.icmp_signed("<", cols, i64(plan.nr)))
                with b.if_else(edge) as (masked, unmasked):
                    with masked:
                        b.call(self.callees["masked"], args)
                        with b.if_then(finish):
                            self._finish_buffered(tile, i0, j0, rows, cols)
                    with unmasked:
                        self._micro(args, i0, j0, b.zext(finish, I64))
            if self.shape.partial:
                with b.if_then(b.not_(finish)):
                    b.call(self.callees["store"], [tile, c_tile, n, rows, cols])

    def _prefetch_next_tile(self, i0, j0) -> None:
        """Ask for the lines of C the next row tile reads and writes (partial
        sums, the epilogue's stores) while this tile's microkernel runs: for
        small depths the kernel is otherwise bound by cache misses on C."""
        b, f, plan = self.b, self.f, self.plan
        prefetch = declare(b.module, "llvm.prefetch.p0", VOID, [PTR, I32, I32, I32])
        bases = [
            b.load(b.gep(self.frame, [i64(8 * (i + len(FRAME)))], source_etype=I8), typ=PTR)
            for i in range(self.shape.prefetches)
        ]
        if not bases:
            return
        row = b.add(i0, i64(plan.mr))
        with for_range(b, row, b.add(row, i64(plan.mr)), name="pf") as r:
            start = b.add(b.mul(r, f["n"]), j0)
            for base in bases:
                for offset in (0, plan.nr - 1):
                    address = self._at(base, b.add(start, i64(offset)))
                    b.call(prefetch, [address, constant(I32, 1), constant(I32, 3), constant(I32, 1)])

    def _a_source(self, step: _Step, i0, i_begin):
        """(start, row stride, column stride) of the MR x depth panel of A at (i0, pc)."""
        b, f = self.b, self.f
        in_place = self._at(f["a"], b.add(b.mul(i0, f["a_rows"]), b.mul(step.pc, f["a_cols"])))
        packed = self._a_panel(step, i0, i_begin)
        direct = step.direct_a
        return (
            b.select(direct, in_place, packed),
            b.select(direct, f["a_rows"], i64(1)),
            b.select(direct, f["a_cols"], i64(self.plan.mr)),
        )

    def _b_source(self, step: _Step, j0):
        """(start, row stride) of the depth x NR panel of B at (pc, j0)."""
        b, f = self.b, self.f
        in_place = self._at(f["b"], b.add(b.mul(step.pc, f["b_rows"]), j0))
        packed = self._b_panel(step, j0)
        return b.select(step.direct_b, in_place, packed), b.select(step.direct_b, f["b_rows"], i64(self.plan.nr))

    def _a_panel(self, step: _Step, i0, i_begin) -> ir.Value:
        """The packed MR x depth panel of A holding rows from i0 (of the block
        from i_begin), stored [depth][MR]."""
        b = self.b
        panel = b.sdiv(b.sub(i0, i_begin), i64(self.plan.mr))
        return self._at(self.f["a_block"], b.mul(panel, b.mul(i64(self.plan.mr), step.packed_depth)))

    def _b_panel(self, step: _Step, j0) -> ir.Value:
        """The packed depth x NR panel of B holding columns from j0."""
        b = self.b
        panel = b.sdiv(b.sub(j0, self.f["j_begin"]), i64(self.plan.nr))
        return self._at(self.f["b_block"], b.mul(panel, b.mul(step.packed_depth, i64(self.plan.nr))))

    def _pack_b_panel(self, step: _Step, j0) -> None:
        """Pack B[pc:pc+depth, j0:j0+NR] (a panel)."""
        b, f, plan = self.b, self.f, self.plan
        target = self._b_panel(step, j0)
        source = self._at(f["b"], b.add(b.mul(step.pc, f["b_rows"]), b.mul(j0, f["b_cols"])))
        cols = smin(b, i64(plan.nr), b.sub(f["j_end"], j0))
        if self.shape.pack_b == "rows":
            b.call(self.callees["pack_b"], [source, f["b_rows"], step.depth, cols, target])
        elif self.shape.pack_b == "columns":
            b.call(self.callees["pack_b"], [source, f["b_cols"], step.depth, cols, target])
        else:
            b.call(self.callees["pack_b"], [source, f["b_rows"], f["b_cols"], step.depth, cols, target])

    def _pack_a(self, step: _Step, i_begin, i_end) -> None:
        """Pack A[i_begin:i_end, pc:pc+depth] panel by panel."""
        b, f, plan = self.b, self.f, self.plan
        with for_range(b, i_begin, i_end, plan.mr, name="pi") as i0:
            target = self._a_panel(step, i0, i_begin)
            source = self._at(f["a"], b.add(b.mul(i0, f["a_rows"]), b.mul(step.pc, f["a_cols"])))
            rows = smin(b, i64(plan.mr), b.sub(i_end, i0))
            if self.shape.pack_a == "rows":
                b.call(self.callees["pack_a"], [source, f["a_rows"], rows, step.depth, target])
            elif self.shape.pack_a == "columns":
                b.call(self.callees["pack_a"], [source, f["a_cols"], rows, step.depth, target])
            else:
                b.call(self.callees["pack_a"], [source, f["a_rows"], f["a_cols"], rows, step.depth, target])

    # -- one row, and narrow products ------------------------------------------
    def _gemv(self, i0: ir.Value) -> None:
        """Row `i0` of C over the whole depth at once: dot products NR columns
        at a time, or (B's rows contiguous) B streamed row by row into a row
        buffer; then the epilogue, NR columns at a time."""
        b, f, plan = self.b, self.f, self.plan
        tile, out_row = f["tile"], f["b_block"]
        j_begin, j_end, k = f["j_begin"], f["j_end"], f["k"]
        row = self._at(f["a"], b.mul(i0, f["a_rows"]))
        if self.shape.one_row == "rows":
            start = self._at(f["b"], j_begin)
            out_row = _away_from(b, out_row, start)
            b.call(self.callees["gemv"], [row, f["a_cols"], start, f["b_rows"], b.sub(j_end, j_begin), k, out_row])
        with for_range(b, j_begin, j_end, plan.nr, name="gj") as j0:
            cols = smin(b, i64(plan.nr), b.sub(j_end, j0))
            if self.shape.one_row == "columns":
                start = self._at(f["b"], b.mul(j0, f["b_cols"]))
                b.call(self.callees["gemv"], [row, start, f["b_cols"], cols, k, tile])
                source = tile
            else:
                source = self._at(out_row, b.sub(j0, j_begin))
            self._finish_buffered(source, i0, j0, i64(1), cols)

    def _dot_products(self) -> None:
        """A narrow x @ W.T: each tile of C as dot products along k (rows of x
        and W are contiguous), then the epilogue."""
        b, f, plan = self.b, self.f, self.plan
        with (
            for_range(b, f["i_begin"], f["i_end"], plan.mr, name="di") as i0,
            for_range(b, f["j_begin"], f["j_end"], plan.nr, name="dj") as j0,
        ):
            rows = smin(b, i64(plan.mr), b.sub(f["i_end"], i0))
            cols = smin(b, i64(plan.nr), b.sub(f["j_end"], j0))
            a_start = self._at(f["a"], b.mul(i0, f["a_rows"]))
            b_start = self._at(f["b"], b.mul(j0, f["b_cols"]))
            b.call(self.callees["dots"], [a_start, f["a_rows"], rows, b_start, f["b_cols"], cols, f["k"], f["tile"]])
            self._finish_buffered(f["tile"], i0, j0, rows, cols)


PAGE = 4096
"""Addresses this far apart fall into the same set of the L1 cache (its
size over its ways on current x86 cores)."""


def _away_from(b: ir.IRBuilder, buffer: ir.Value, stream: ir.Value) -> ir.Value:
    """A point in `buffer` (at most a page in) half a page from `stream`
    modulo a page. The one-row product keeps its output row in L1 while
    streaming rows of B past it: with B's rows a multiple of a page apart
    (1024 floats), each vector of the row shares its L1 set with the eight
    lines of B streamed at once, and one more line than the set holds
    evicted the row on every pass (measured: 0.86x NumPy on 1x2048 @ 2048x1024)."""
    distance = b.and_(b.sub(b.ptrtoint(stream, I64), b.ptrtoint(buffer, I64)), i64(PAGE - 1))
    shift = b.and_(b.add(distance, i64(PAGE // 2)), i64(PAGE - 1))  # B's vector boundaries too
    return b.gep(buffer, [shift], source_etype=I8)
