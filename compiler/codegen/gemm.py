"""Matmul kernels: C = op(A) @ op(B), finished by a fused epilogue, emitted
as the kernel's schedule (matmul_schedule.py) says.

The structure is the classic one of high-performance BLAS (Goto, BLIS):

    for each task (a block of up to MC rows x NC columns of C, on any thread):
      for pc in K, step KC:
        pack B[pc:pc+KC, columns] into panels of NR columns   ([KC][NR] each)
        pack A[rows, pc:pc+KC] into panels of MR rows
        for each NR-column panel, for each MR-row panel:
          the microkernel accumulates the MR x NR tile in registers
          (gemm_library.py); partial sums of earlier KC blocks come from C;
          after the last block the kernel's epilogue (bias, activation,
          derivative mask, optimizer update...) runs on the accumulators,
          still in registers, and stores to C

Packing absorbs every transpose: a B stored transposed (the weight of
`x @ W.T`) is packed by transposing W x W blocks in registers. Blocks of
at most SMALL_M rows (the batch-size regime of MLPs) whose A block fits in
MC x KC elements read A in place, and B too when its rows are contiguous.
Edges (any M, N, K >= 1) are
zero-padded in packed panels and masked when read or written, so the bulk
stays on the fast path. Kernels with enough work split their tasks over the
thread pool (threads.py)."""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import llvmlite.ir as ir

from ..fusion import Kernel
from ..symbolic import Poly, product, row_major_strides
from .gemm_library import GemmLibrary, accumulate_tile, column_masks, float_type, packed_depth, store_tile
from .irutil import I8, I32, I64, PTR, VOID, constant, declare, for_range, i64, smax, smin
from .kernel import Access, KernelEmitter, Point
from .matmul_schedule import DIRECT_B_DEPTH, SMALL_M, MatmulSchedule, inner_size, operand_accesses
from .threads import run_tasks
from .vecmath import Val

MIN_TASK_TILES = 4
"""A task of rows spans at least this many row tiles (fewer: not worth a thread)."""

PARALLEL_FLOPS = 1 << 20
"""Matmuls with fewer flops run on the calling thread alone (handing work to
another thread costs a few microseconds)."""

WHOLE_ROW = -1
"""The task index of a one-row product's single task over all columns (_whole_row)."""


def shared_scratch(kernel: Kernel, schedule: MatmulSchedule) -> Poly:
    """Bytes of scratch shared by a matmul kernel's threads."""
    if schedule.partial_sums != "scratch":
        return Poly()
    return product(kernel.matmul.output.type.shape) * schedule.blocking.itemsize


@dataclass
class _Operand:
    """A matmul operand in memory: its first element and element strides."""

    start: ir.Value
    rows: ir.Value  # stride between rows
    cols: ir.Value  # stride between columns


@dataclass
class _Task:
    """What one task works on: the operands, its thread's buffers, its block of C."""

    a: _Operand
    b: _Operand
    a_block: ir.Value  # packed A (per thread)
    b_block: ir.Value  # packed B, or the output row of a one-row product
    tile: ir.Value  # the MR x NR tile
    i_begin: ir.Value
    i_end: ir.Value
    j_begin: ir.Value
    j_end: ir.Value


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
    c_start: ir.Value  # where C's partial sums live
    partial: str | None


class MatmulEmitter:
    """Emits a matmul kernel: the kernel function (which runs its tasks,
    serially or on the pool), the task function and the kernel's own
    microkernel, which ends in the kernel's epilogue."""

    def __init__(
        self, kernel_emitter: KernelEmitter, schedule: MatmulSchedule, thread_stride: int, library: GemmLibrary
    ) -> None:
        self.kernel_emitter = kernel_emitter
        self.schedule = schedule
        self.plan = plan = schedule.blocking
        self.thread_stride = thread_stride
        self.library = library
        self.mm = kernel_emitter.kernel.matmul
        self.dtype = self.mm.output.type.dtype
        self.element = float_type(self.dtype)
        program, kernel = kernel_emitter.program, kernel_emitter.kernel
        self.gemv = schedule.one_row
        module, target = kernel_emitter.fn.module, kernel_emitter.target
        self.task_emitter = KernelEmitter(program, kernel, module, target, ".task", (I64, I64))
        micro_args = (PTR, I64, I64, I64, PTR, I64, I64, I64, PTR, I64, I64, I64, I64, PTR)
        self.micro_emitter = KernelEmitter(program, kernel, module, target, f".micro.{plan.key}", micro_args)
        self.micro_emitter.take_from_caller()  # scalars computed once per task, not once per tile
        self._passed_arrays: dict[KernelEmitter, ir.Value] = {}  # each caller's array of them

    def emit(self) -> ir.Function:
        e = self.kernel_emitter
        b = e.b
        m, n, k = self._dims(e)
        tasks_n = self._column_tasks(b, m, n)[0]
        tasks = b.mul(self._row_tasks(b, m, tasks_n)[0], tasks_n)
        self._emit_micro()  # first: the task passes it what its epilogue asked for
        self.micro = self.library.shared(self.micro_emitter.fn)
        task_fn = self._emit_task()
        parallel = b.icmp_signed(">=", b.mul(b.mul(m, n), k), i64(PARALLEL_FLOPS // 2))
        with b.if_else(self._whole_row(b, m, n, parallel)) as (whole, split):
            with whole:
                b.call(task_fn, [e.fn.args[0], i64(WHOLE_ROW), i64(0)])
            with split:
                run_tasks(b, task_fn, e.fn.args[0], tasks, parallel)
        return e.finish()

    def _whole_row(self, b: ir.IRBuilder, m: ir.Value, n: ir.Value, parallel: ir.Value) -> ir.Value:
        """Whether a one-row product runs as a single task over all of C's
        columns: on one thread, the split into one share per core only cuts
        B's rows into shorter streams (measured: dY@W 1x1024->2048 1.05 ->
        1.18 of NumPy, X@W.T 1x1024->2048 0.97 -> 1.01). Its output row must
        fit where the task buffers it (the packed B block, past a page)."""
        if self.gemv is None:
            return ir.Constant(ir.IntType(1), 0)
        threads = b.call(declare(b.module, "ember_pool_threads", I64, []), [])
        alone = b.or_(b.not_(parallel), b.icmp_signed("==", threads, i64(1)))
        plan = self.plan
        fits = b.icmp_signed("<=", n, i64((plan.b_block_bytes - PAGE) // plan.itemsize - plan.lanes))
        return b.and_(b.and_(b.icmp_signed("==", m, i64(1)), alone), fits)

    def _column_tasks(self, b: ir.IRBuilder, m: ir.Value, n: ir.Value) -> tuple[ir.Value, ir.Value]:
        """Column blocks: at most NC wide (a packed B block), or for a one-row
        product (nothing is packed) one even share per core, so each core
        streams its part of B in long rows (on one thread: a single task,
        _whole_row). (count, columns per block)."""
        plan = self.plan
        count, columns = _split(b, n, plan.nc, plan.nr)
        if self.gemv is None:
            return count, columns
        cores = i64(self.kernel_emitter.target.cores)
        share = b.sdiv(b.add(n, b.sub(cores, i64(1))), cores)
        even = b.mul(b.sdiv(b.add(share, i64(plan.nr - 1)), i64(plan.nr)), i64(plan.nr))
        even = smax(b, even, i64(plan.nr))
        even_count = smax(b, b.sdiv(b.add(n, b.sub(even, i64(1))), even), i64(1))  # one (empty) task when N = 0
        one_row = b.icmp_signed("==", m, i64(1))
        return b.select(one_row, even_count, count), b.select(one_row, even, columns)

    def _row_tasks(self, b: ir.IRBuilder, m: ir.Value, tasks_n: ir.Value) -> tuple[ir.Value, ir.Value]:
        """Row blocks per task: all of M in one (B is packed once per column
        block, as in BLIS), unless there are fewer column blocks than cores;
        then M is split, in blocks of at least MIN_TASK_TILES row tiles, so
        more cores get a task. (count, rows per block)."""
        mr = self.plan.mr
        cores = i64(self.kernel_emitter.target.cores)
        wanted = b.sdiv(b.add(cores, b.sub(tasks_n, i64(1))), tasks_n)
        most = b.sdiv(m, i64(MIN_TASK_TILES * mr))
        count = smin(b, wanted, smax(b, most, i64(1)))
        share = b.sdiv(b.add(m, b.sub(count, i64(1))), count)
        rows = b.mul(b.sdiv(b.add(share, i64(mr - 1)), i64(mr)), i64(mr))
        return count, rows

    def _dims(self, e: KernelEmitter) -> tuple[ir.Value, ir.Value, ir.Value]:
        rows, cols = self.mm.output.type.shape
        return tuple(e.poly(Poly.of(d)) for d in (rows, cols, inner_size(self.mm)))  # type: ignore[return-value]

    def _operand(self, e: KernelEmitter, index: int) -> _Operand:
        access = operand_accesses(self.kernel_emitter.program, self.mm)[index]
        start = e.address(access, Point([i64(0), i64(0)]))
        return _Operand(start, e.poly(access.strides[0]), e.poly(access.strides[1]))

    # -- one task: a block of rows x columns of C ------------------------------
    def _emit_task(self) -> ir.Function:
        e, plan = self.task_emitter, self.plan
        b = e.b
        _, task_index, thread = e.fn.args
        m, n, _ = self._dims(e)
        a, bm = self._operand(e, 0), self._operand(e, 1)
        tasks_n, columns = self._column_tasks(b, m, n)
        _, rows = self._row_tasks(b, m, tasks_n)
        whole = b.icmp_signed("==", task_index, i64(WHOLE_ROW))
        tasks_n = b.select(whole, i64(1), tasks_n)
        columns = b.select(whole, n, columns)
        task_index = b.select(whole, i64(0), task_index)
        i_begin = b.mul(b.sdiv(task_index, tasks_n), rows)
        j_begin = b.mul(b.srem(task_index, tasks_n), columns)
        area = b.gep(e.region("threads"), [b.mul(thread, i64(self.thread_stride))], source_etype=I8)
        b_block = b.gep(area, [i64(plan.a_block_bytes)], source_etype=I8)
        task = _Task(
            a,
            bm,
            a_block=area,
            b_block=b_block,
            tile=b.gep(b_block, [i64(plan.b_block_bytes)], source_etype=I8),
            i_begin=i_begin,
            i_end=smin(b, m, b.add(i_begin, rows)),
            j_begin=j_begin,
            j_end=smin(b, n, b.add(j_begin, columns)),
        )
        if self.schedule.dots:
            self._dot_products(e, task)
        elif self.schedule.row_vector:
            self._gemv(e, self.gemv, task)
        elif self.gemv is None:
            self._blocked(e, task)
        else:
            with b.if_else(b.icmp_signed("==", b.sub(task.i_end, task.i_begin), i64(1))) as (one_row, otherwise):
                with one_row:
                    self._gemv(e, self.gemv, task)
                with otherwise:
                    self._blocked(e, task)
        return e.finish()

    def _blocked(self, e: KernelEmitter, task: _Task) -> None:
        """The general path: KC blocks, packing where it pays, the microkernel."""
        b, plan = e.b, self.plan
        k = self._dims(e)[2]
        rows = b.sub(task.i_end, task.i_begin)
        # small: at most SMALL_M rows whose A block fits the packed A block's
        # share of L2 (MC x KC); read in place, a larger A would come from L3
        # again for every panel of B (on a 512 KiB L2, 256x512x512 ran 1.2x
        # faster packed, while 64x512x512 ran 1.05x faster in place)
        fits = b.icmp_signed("<=", b.mul(rows, smin(b, k, i64(plan.kc))), i64(plan.mc * plan.kc))
        small = b.and_(b.icmp_signed("<=", rows, i64(SMALL_M)), fits)
        # B in place: small blocks, rows contiguous, not too deep. A in place: small blocks
        shallow = b.icmp_signed("<=", k, i64(DIRECT_B_DEPTH))
        b_rows = ir.Constant(ir.IntType(1), int(self.schedule.b_in_place))
        partial = self.schedule.partial_sums
        c_start = e.pointer(self.mm.output) if partial == "output" else e.region("scratch")
        # at least one block: with K = 0 the tiles are zeros, still finished and stored
        with for_range(b, i64(0), smax(b, k, i64(1)), plan.kc, name="pc") as pc:
            depth = smin(b, i64(plan.kc), b.sub(k, pc))
            step = _Step(
                pc,
                depth,
                packed_depth(b, depth, plan.lanes),
                first=b.icmp_signed("==", pc, i64(0)),
                last=b.icmp_signed(">=", b.add(pc, depth), k),
                direct_a=small,
                direct_b=b.and_(b.and_(small, shallow), b_rows),
                c_start=c_start,
                partial=partial,
            )
            with for_range(b, task.i_begin, task.i_end, plan.mc, name="ic") as ic:
                ic_end = smin(b, task.i_end, b.add(ic, i64(plan.mc)))
                with b.if_then(b.not_(step.direct_a)):
                    self._pack_a(e, task, step, ic, ic_end)
                self._tiles(e, task, step, ic, ic_end)

    def _tiles(self, e: KernelEmitter, task: _Task, step: _Step, i_begin, i_end) -> None:
        """Every MR x NR tile of rows [i_begin, i_end) of the task for one KC
        block: partial sums in, microkernel, partial sums or epilogue out.
        The first row block packs each panel of B just before its tiles use
        it, so they read it from L1 rather than after the whole B block was
        packed (and partly evicted); later row blocks reuse the packed panels."""
        b, plan = e.b, self.plan
        first_rows = b.icmp_signed("==", i_begin, task.i_begin)
        with for_range(b, task.j_begin, task.j_end, plan.nr, name="jr") as j0:
            with b.if_then(b.and_(first_rows, b.not_(step.direct_b))):
                self._pack_b_panel(e, task, step, j0)
            self._row_tiles(e, task, step, i_begin, i_end, j0)

    def _row_tiles(self, e: KernelEmitter, task: _Task, step: _Step, i_begin, i_end, j0) -> None:
        """The tiles of rows [i_begin, i_end) in the NR columns from j0."""
        b, plan, lib = e.b, self.plan, self.library
        n = self._dims(e)[1]
        tile = task.tile
        with for_range(b, i_begin, i_end, plan.mr, name="ir") as i0:
            rows = smin(b, i64(plan.mr), b.sub(i_end, i0))
            cols = smin(b, i64(plan.nr), b.sub(task.j_end, j0))
            c_tile = b.gep(step.c_start, [b.add(b.mul(i0, n), j0)], source_etype=self.element)
            if step.partial is None:
                accumulate = i64(0)
            else:
                with b.if_then(b.not_(step.first)):
                    b.call(lib.tile_move(plan, load=True), [tile, c_tile, n, rows, cols])
                accumulate = b.zext(b.not_(step.first), I64)
            self._prefetch_next_tile(e, step, i0, j0, n)
            a_args = self._a_source(b, task, step, i0, i_begin)
            b_args = self._b_source(b, task, step, j0)
            args = [*a_args, rows, *b_args, cols, step.depth, tile, accumulate]
            finish = step.last if step.partial is not None else ir.Constant(ir.IntType(1), 1)
            # B read in place: only a tile at the edge of C must not read past it
            edge = b.and_(step.direct_b, b.icmp_signed("<", cols, i64(plan.nr)))
            with b.if_else(edge) as (masked, unmasked):
                with masked:
                    b.call(lib.micro_masked(plan), args)
                    with b.if_then(finish):
                        self._finish_buffered(e, tile, i0, j0, rows, cols)
                with unmasked:
                    micro_args = [e.fn.args[0], *args, i0, j0, b.zext(finish, I64), self._passed(e)]
                    b.call(self.micro, micro_args)
            if step.partial is not None:
                with b.if_then(b.not_(finish)):
                    b.call(lib.tile_move(plan, load=False), [tile, c_tile, n, rows, cols])

    def _finish_buffered(self, e: KernelEmitter, tile, i0, j0, rows, cols) -> None:
        """The epilogue on a tile summed elsewhere (in the tile buffer, rows
        NR elements apart): the kernel's microkernel with depth 0."""
        b = e.b
        zero = i64(0)
        operands = [tile, zero, zero, rows, tile, zero, cols, zero, tile, i64(1)]
        b.call(self.micro, [e.fn.args[0], *operands, i0, j0, i64(1), self._passed(e)])

    def _passed(self, e: KernelEmitter) -> ir.Value:
        """The inline scalars and addresses the microkernel takes from its caller `e`."""
        if e not in self._passed_arrays:
            self._passed_arrays[e] = e.store_passed(self.micro_emitter.passed)
        return self._passed_arrays[e]

    def _prefetch_next_tile(self, e: KernelEmitter, step: _Step, i0, j0, n) -> None:
        """Ask for the lines of C the next row tile reads and writes (partial
        sums, the epilogue's stores) while this tile's microkernel runs: for
        small depths the kernel is otherwise bound by cache misses on C."""
        b, plan = e.b, self.plan
        bases = [e.pointer(v) for v in e.kernel.stores]
        if step.partial == "scratch":
            bases.append(step.c_start)
        prefetch = declare(b.module, "llvm.prefetch.p0", VOID, [PTR, I32, I32, I32])
        row = b.add(i0, i64(plan.mr))
        for base in bases:
            for r in range(plan.mr):
                start = b.add(b.mul(b.add(row, i64(r)), n), j0)
                for offset in (0, plan.nr - 1):
                    address = b.gep(base, [b.add(start, i64(offset))], source_etype=self.element)
                    b.call(prefetch, [address, constant(I32, 1), constant(I32, 3), constant(I32, 1)])

    def _gemv(self, e: KernelEmitter, kind: str, task: _Task) -> None:
        """One row of C over the whole depth at once: dot products NR columns at
        a time, or (B's rows contiguous) B streamed row by row into a row buffer;
        then the epilogue, NR columns at a time."""
        b, plan, lib = e.b, self.plan, self.library
        a, bm, tile, out_row = task.a, task.b, task.tile, task.b_block
        i0, j_begin, j_end, k = task.i_begin, task.j_begin, task.j_end, self._dims(e)[2]
        row = b.gep(a.start, [b.mul(i0, a.rows)], source_etype=self.element)
        if kind == "rows":
            start = b.gep(bm.start, [j_begin], source_etype=self.element)
            out_row = _away_from(b, out_row, start)
            b.call(lib.gemv_rows(plan), [row, a.cols, start, bm.rows, b.sub(j_end, j_begin), k, out_row])
        with for_range(b, j_begin, j_end, plan.nr, name="gj") as j0:
            cols = smin(b, i64(plan.nr), b.sub(j_end, j0))
            if kind == "columns":
                start = b.gep(bm.start, [b.mul(j0, bm.cols)], source_etype=self.element)
                b.call(lib.gemv_columns(plan), [row, start, bm.cols, cols, k, tile])
                source = tile
            else:
                source = b.gep(out_row, [b.sub(j0, j_begin)], source_etype=self.element)
            self._finish_buffered(e, source, i0, j0, i64(1), cols)

    def _dot_products(self, e: KernelEmitter, task: _Task) -> None:
        """A narrow x @ W.T: each tile of C as dot products along k (rows of x
        and W are contiguous), then the epilogue."""
        b, plan, a, bm = e.b, self.plan, task.a, task.b
        k = self._dims(e)[2]
        with (
            for_range(b, task.i_begin, task.i_end, plan.mr, name="di") as i0,
            for_range(b, task.j_begin, task.j_end, plan.nr, name="dj") as j0,
        ):
            rows = smin(b, i64(plan.mr), b.sub(task.i_end, i0))
            cols = smin(b, i64(plan.nr), b.sub(task.j_end, j0))
            a_start = b.gep(a.start, [b.mul(i0, a.rows)], source_etype=self.element)
            b_start = b.gep(bm.start, [b.mul(j0, bm.cols)], source_etype=self.element)
            b.call(self.library.dots(plan), [a_start, a.rows, rows, b_start, bm.cols, cols, k, task.tile])
            self._finish_buffered(e, task.tile, i0, j0, rows, cols)

    def _a_source(self, b, task: _Task, step: _Step, i0, i_begin):
        """(start, row stride, column stride) of the MR x depth panel of A at (i0, pc)."""
        plan, a = self.plan, task.a
        in_place = b.gep(a.start, [b.add(b.mul(i0, a.rows), b.mul(step.pc, a.cols))], source_etype=self.element)
        packed = self._a_panel(b, task, step, i0, i_begin)
        direct = step.direct_a
        return (
            b.select(direct, in_place, packed),
            b.select(direct, a.rows, i64(1)),
            b.select(direct, a.cols, i64(plan.mr)),
        )

    def _b_source(self, b, task: _Task, step: _Step, j0):
        """(start, row stride) of the depth x NR panel of B at (pc, j0)."""
        plan, bm = self.plan, task.b
        in_place = b.gep(bm.start, [b.add(b.mul(step.pc, bm.rows), j0)], source_etype=self.element)
        packed = self._b_panel(b, task, step, j0)
        return b.select(step.direct_b, in_place, packed), b.select(step.direct_b, bm.rows, i64(plan.nr))

    def _a_panel(self, b, task: _Task, step: _Step, i0, i_begin) -> ir.Value:
        """The packed MR x depth panel of A holding rows from i0 (of the block
        from i_begin), stored [depth][MR]."""
        panel = b.sdiv(b.sub(i0, i_begin), i64(self.plan.mr))
        size = b.mul(i64(self.plan.mr), step.packed_depth)
        return b.gep(task.a_block, [b.mul(panel, size)], source_etype=self.element)

    def _b_panel(self, b, task: _Task, step: _Step, j0) -> ir.Value:
        """The packed depth x NR panel of B holding columns from j0."""
        panel = b.sdiv(b.sub(j0, task.j_begin), i64(self.plan.nr))
        size = b.mul(step.packed_depth, i64(self.plan.nr))
        return b.gep(task.b_block, [b.mul(panel, size)], source_etype=self.element)

    def _pack_b_panel(self, e: KernelEmitter, task: _Task, step: _Step, j0) -> None:
        """Pack B[pc:pc+depth, j0:j0+NR] (a panel)."""
        b, plan, lib, bm = e.b, self.plan, self.library, task.b
        target = self._b_panel(b, task, step, j0)
        source = b.gep(bm.start, [b.add(b.mul(step.pc, bm.rows), b.mul(j0, bm.cols))], source_etype=self.element)
        cols = smin(b, i64(plan.nr), b.sub(task.j_end, j0))
        if self.schedule.pack_b == "rows":
            b.call(lib.pack_b_rows(plan), [source, bm.rows, step.depth, cols, target])
        elif self.schedule.pack_b == "columns":
            b.call(lib.pack_b_columns(plan), [source, bm.cols, step.depth, cols, target])
        else:
            b.call(lib.pack_b_elements(plan), [source, bm.rows, bm.cols, step.depth, cols, target])

    def _pack_a(self, e: KernelEmitter, task: _Task, step: _Step, i_begin, i_end) -> None:
        """Pack A[i_begin:i_end, pc:pc+depth] panel by panel."""
        b, plan, lib, a = e.b, self.plan, self.library, task.a
        with for_range(b, i_begin, i_end, plan.mr, name="pi") as i0:
            target = self._a_panel(b, task, step, i0, i_begin)
            source = b.gep(a.start, [b.add(b.mul(i0, a.rows), b.mul(step.pc, a.cols))], source_etype=self.element)
            rows = smin(b, i64(plan.mr), b.sub(i_end, i0))
            if self.schedule.pack_a == "rows":
                b.call(lib.pack_a_rows(plan), [source, a.rows, rows, step.depth, target])
            elif self.schedule.pack_a == "columns":
                b.call(lib.pack_a_columns(plan), [source, a.cols, rows, step.depth, target])
            else:
                b.call(lib.pack_a_elements(plan), [source, a.rows, a.cols, rows, step.depth, target])

    # -- the epilogue ----------------------------------------------------------
    def _finish(self, e: KernelEmitter, point: Point, value: ir.Value) -> None:
        """The kernel's elementwise members on one row vector of C at `point`
        (the matmul's value there), and its stores."""
        given = {self.mm.output: Val(value, self.dtype)}
        flat_index = functools.partial(e.flat_index, point, row_major_strides(e.kernel.domain), self.plan.lanes)
        values = e.evaluate(point, self.plan.lanes, e.operand_access, given=given, flat_index=flat_index)
        for target in e.kernel.stores:
            access = Access(target, list(row_major_strides(e.kernel.domain)))
            e.store(access, point, values[target], self.plan.lanes)

    def _emit_micro(self) -> None:
        """micro(args, <the shared microkernel's arguments>, i0, j0, finish):
        the microkernel for the tile of C at (i0, j0); then with `finish`
        (after the tile's last KC block) the epilogue on the accumulators
        while they are in registers, stored straight to C (rows past `rows`
        and columns past `cols` untouched); otherwise the sums go to the
        tile buffer."""
        e, plan = self.micro_emitter, self.plan
        b = e.b
        *operands, i0, j0, finish, _ = e.fn.args[1:]
        rows, cols, tile = operands[3], operands[6], operands[8]
        sums = accumulate_tile(b, e.stack_slot, plan, False, *operands)
        with b.if_else(b.icmp_signed("!=", finish, i64(0))) as (in_registers, to_buffer):
            with in_registers:
                self._finish_rows(e, sums, i0, j0, rows, cols)
            with to_buffer:
                store_tile(b, plan, sums, tile)
        e.finish()

    def _finish_rows(self, e: KernelEmitter, sums: list[list[ir.Value]], i0, j0, rows, cols) -> None:
        """The epilogue on the first `rows` rows of accumulators, one row per
        trip of a loop that then moves every row up by one: the rows stay in
        registers (their slots have constant indices, so LLVM promotes them)
        and the epilogue is emitted once per kind of tile, not once per row.
        A tile of all NR columns loads and stores whole vectors; only an edge
        tile masks them (an AVX2 masked store is microcoded on AMD cores:
        masking every tile cost a 6x16x64 tile as much as its FMAs)."""
        b, plan = e.b, self.plan
        slots = [[e.stack_slot(value.type) for value in row] for row in sums]
        for row, row_slots in zip(sums, slots, strict=True):
            for value, slot in zip(row, row_slots, strict=True):
                b.store(value, slot)
        with b.if_else(b.icmp_signed("==", cols, i64(plan.nr))) as (whole, edge):
            with whole:
                self._finish_each_row(e, slots, i0, j0, rows, [None] * plan.vectors)
            with edge:
                self._finish_each_row(e, slots, i0, j0, rows, column_masks(b, plan, cols))

    def _finish_each_row(self, e: KernelEmitter, slots, i0, j0, rows, masks: list[ir.Value | None]) -> None:
        b, plan = e.b, self.plan
        with for_range(b, i64(0), rows, 1, name="fr") as r:
            for c, slot in enumerate(slots[0]):
                point = Point([b.add(i0, r), b.add(j0, i64(c * plan.lanes))], masks[c])
                self._finish(e, point, b.load(slot))
            for upper, lower in itertools.pairwise(slots):
                for target, source in zip(upper, lower, strict=True):
                    b.store(b.load(source), target)


def _split(b: ir.IRBuilder, size: ir.Value, most: int, multiple: int) -> tuple[ir.Value, ir.Value]:
    """Cut `size` into the fewest blocks of at most `most`, as even as
    multiples of `multiple` allow: (number of blocks, block size)."""
    blocks = b.sdiv(b.add(size, i64(most - 1)), i64(most))
    blocks = smax(b, blocks, i64(1))
    share = b.sdiv(b.add(size, b.sub(blocks, i64(1))), blocks)
    return blocks, b.mul(b.sdiv(b.add(share, i64(multiple - 1)), i64(multiple)), i64(multiple))


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


def emit_matmul_kernel(
    e: KernelEmitter, schedule: MatmulSchedule, thread_stride: int, library: GemmLibrary
) -> ir.Function:
    """The function of a kernel whose members are a matmul and its epilogue, as `schedule` says."""
    return MatmulEmitter(e, schedule, thread_stride, library).emit()
