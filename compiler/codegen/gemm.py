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

The task's loops are the matmul library's (gemm_task.py), compiled once
per machine; a kernel emits its microkernel with the epilogue (named by
its text: kernels and programs with the same epilogue share one), a task
function that gives the library's routine the task's block of C, the
operands and the microkernel, and the kernel function that runs its tasks.
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
from .gemm_library import GemmLibrary, accumulate_tile, column_masks, store_tile
from .gemm_task import FRAME, FRAME_SLOTS, MICRO_ARGS, PAGE, PREFETCH_BASES, TaskShape, task_routine
from .irutil import I8, I64, PTR, declare, for_range, i64, smax, smin
from .kernel import Access, KernelEmitter, Point
from .matmul_schedule import MatmulSchedule, inner_size, operand_accesses
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


def task_shape(kernel: Kernel, schedule: MatmulSchedule) -> TaskShape:
    """The shape of the library's task routine that runs `kernel`'s tasks:
    its schedule's, prefetching the tensors it stores and the scratch of
    its partial sums."""
    stored = len(kernel.stores) + (schedule.partial_sums == "scratch")
    return TaskShape.of(schedule, min(stored, PREFETCH_BASES))


@dataclass
class _Operand:
    """A matmul operand in memory: its first element and element strides."""

    start: ir.Value
    rows: ir.Value  # stride between rows
    cols: ir.Value  # stride between columns


class MatmulEmitter:
    """Emits a matmul kernel: the kernel function (which runs its tasks,
    serially or on the pool), the task function (which hands its block of C
    to the library's task routine) and the kernel's own microkernel, which
    ends in the kernel's epilogue."""

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
        program, kernel = kernel_emitter.program, kernel_emitter.kernel
        self.gemv = schedule.one_row
        module, target = kernel_emitter.fn.module, kernel_emitter.target
        self.task_emitter = KernelEmitter(program, kernel, module, target, ".task", (I64, I64), library)
        micro = KernelEmitter(program, kernel, module, target, f".micro.{plan.key}", MICRO_ARGS[1:], library)
        micro.take_from_caller()  # scalars computed once per task, not once per tile
        self.micro_emitter = micro

    def emit(self) -> ir.Function:
        e = self.kernel_emitter
        b = e.b
        m, n, k = self._dims(e)
        tasks_n = self._column_tasks(b, m, n)[0]
        tasks = b.mul(self._row_tasks(b, m, tasks_n)[0], tasks_n)
        self._emit_micro()  # first: the task passes it what its epilogue asked for
        self.micro = self.library.shared(self.micro_emitter.fn, f"micro.{self.plan.key}")
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
        """task(args, task index, thread): the task's block of C, the operands
        and this thread's buffers in a frame for the library's task routine
        (gemm_task.py), which runs the loops and calls the microkernel."""
        e, plan, schedule = self.task_emitter, self.plan, self.schedule
        b = e.b
        _, task_index, thread = e.fn.args
        m, n, k = self._dims(e)
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
        partial = schedule.partial_sums
        if partial == "output":
            c_start = e.pointer(self.mm.output)
        elif partial == "scratch":
            c_start = e.region("scratch")
        else:  # K in one block: no partial sums
            c_start = ir.Constant(PTR, None)
        shape = task_shape(e.kernel, schedule)
        prefetched = [e.pointer(v) for v in e.kernel.stores] + ([c_start] if partial == "scratch" else [])
        prefetched = prefetched[: shape.prefetches]
        fields = {
            "micro": self.micro,
            "args": e.fn.args[0],
            "passed": e.store_passed(self.micro_emitter.passed),
            "n": n,
            "k": k,
            "a": a.start,
            "a_rows": a.rows,
            "a_cols": a.cols,
            "b": bm.start,
            "b_rows": bm.rows,
            "b_cols": bm.cols,
            "a_block": area,
            "b_block": b_block,
            "tile": b.gep(b_block, [i64(plan.b_block_bytes)], source_etype=I8),
            "c": c_start,
            "kc": i64(plan.kc),
            "mc": i64(plan.mc),
            "i_begin": i_begin,
            "i_end": smin(b, m, b.add(i_begin, rows)),
            "j_begin": j_begin,
            "j_end": smin(b, n, b.add(j_begin, columns)),
        }
        frame = e.stack_slot(ir.ArrayType(I64, FRAME_SLOTS))
        frame.type = PTR  # llvmlite types an alloca by its contents; LLVM's pointers are opaque
        values = [fields[name] for name in FRAME] + prefetched
        for i, value in enumerate(values):
            b.store(value, b.gep(frame, [i64(8 * i)], source_etype=I8))
        b.call(task_routine(self.library, plan, shape), [frame])
        return e.finish()

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


def emit_matmul_kernel(
    e: KernelEmitter, schedule: MatmulSchedule, thread_stride: int, library: GemmLibrary
) -> ir.Function:
    """The function of a kernel whose members are a matmul and its epilogue, as `schedule` says."""
    return MatmulEmitter(e, schedule, thread_stride, library).emit()
