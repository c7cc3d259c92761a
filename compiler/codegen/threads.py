"""The thread pool's native code: workers and `ember_parallel_for`.

Native kernels split their work into tasks and call

    void ember_parallel_for(void (*task)(i8 *args, i64 task, i64 thread), i8 *args, i64 tasks)

which runs the tasks on the calling thread and on the pool's workers and
returns when all are done. Tasks are handed out one at a time from a shared
counter, so a worker that joins late (it was asleep) still takes its share,
and uneven tasks balance themselves. `i64 ember_pool_threads()` says how
many threads a round may use now (ember.set_num_threads), for kernels whose
best split depends on it.

The pool state is an array of int64 slots, one cache line per hot field:

    WORKERS  workers allowed to help (ember.set_num_threads - 1)
    STOP     workers return when set
    LOCK     held by the caller of the current round (one caller at a time;
             a second Python thread finds it taken and runs alone)
    SEQ      round number: odd while the caller writes the round's fields,
             even once they are published
    TASK, ARGS, COUNT   the round: function, argument block, number of tasks
    NEXT     the next task to hand out      DONE   tasks finished
    ACTIVE   workers inside the round

A worker joins a round by raising ACTIVE and checking that SEQ did not
move; the caller only rewrites the fields after making SEQ odd and seeing
ACTIVE fall to zero, so a worker never reads half a round. Workers spin
(with `pause`) for tens of milliseconds after their last task, then nap in
short sleeps, looking for work between naps.
"""

from __future__ import annotations

import llvmlite.ir as ir

from .irutil import I32, I64, PTR, VOID, declare, i64

LINE = 8
"""int64 slots per cache line."""

WORKERS, STOP, LOCK = 0, 1, 2
SEQ = 1 * LINE
TASK, ARGS, COUNT = 2 * LINE, 2 * LINE + 1, 2 * LINE + 2
NEXT = 3 * LINE
DONE = 4 * LINE
ACTIVE = 5 * LINE
POOL_SLOTS = 6 * LINE

SPIN_ROUNDS = 1 << 20
"""Pauses a worker spins through after its last task before napping (tens of ms)."""

NAP_NANOSECONDS = 50_000
"""How long a napping worker sleeps between looks for work."""

TASK_TYPE = ir.FunctionType(VOID, [PTR, I64, I64])
TASK_POINTER = ir.PointerType(TASK_TYPE)  # printed as `ptr`; llvmlite needs the signature to call through it


class _Pool:
    """Typed access to the pool's slots from one function."""

    def __init__(self, b: ir.IRBuilder, state: ir.Value) -> None:
        self.b = b
        self.state = state

    def slot(self, index: int) -> ir.Value:
        return self.b.gep(self.state, [i64(index)], source_etype=I64)

    def load(self, index: int, type: ir.Type = I64) -> ir.Value:
        return self.b.load_atomic(self.slot(index), "seq_cst", 8, typ=type)

    def store(self, index: int, value: ir.Value) -> None:
        self.b.atomic_rmw("xchg", self.slot(index), value, "seq_cst")  # llvmlite has no atomic store to `ptr`

    def add(self, index: int, amount: int) -> ir.Value:
        """Atomically add `amount`; return the previous value."""
        return self.b.atomic_rmw("add", self.slot(index), i64(amount), "seq_cst")

    def pause(self) -> None:
        self.b.call(declare(self.b.module, "llvm.x86.sse2.pause", VOID, []), [])

    def run_tasks(self, thread: ir.Value) -> None:
        """Take tasks from NEXT until there are none left; count each in DONE."""
        b = self.b
        task = self.load(TASK, TASK_POINTER)
        args = self.load(ARGS, PTR)
        count = self.load(COUNT)
        fn = b.function
        take = fn.append_basic_block("take")
        work = fn.append_basic_block("work")
        finished = fn.append_basic_block("finished")
        b.branch(take)
        b.position_at_end(take)
        t = self.add(NEXT, 1)
        b.cbranch(b.icmp_signed("<", t, count), work, finished)
        b.position_at_end(work)
        b.call(task, [args, t, thread])
        self.add(DONE, 1)
        b.branch(take)
        b.position_at_end(finished)


def emit_pool_module(module: ir.Module) -> None:
    """Define `ember_pool_init`, `ember_worker`, `ember_parallel_for` and
    `ember_pool_threads` in `module`."""
    state = ir.GlobalVariable(module, PTR, name="ember_pool_state")
    state.initializer = ir.Constant(PTR, None)
    init = ir.Function(module, ir.FunctionType(VOID, [PTR]), name="ember_pool_init")
    b = ir.IRBuilder(init.append_basic_block())
    b.store(init.args[0], state)
    b.ret_void()
    _emit_worker(module, state)
    _emit_parallel_for(module, state)
    _emit_pool_threads(module, state)


def _emit_pool_threads(module: ir.Module, state_var: ir.GlobalVariable) -> None:
    """i64 ember_pool_threads(): the threads a round may use now, the caller
    included (1 without a pool)."""
    fn = ir.Function(module, ir.FunctionType(I64, []), name="ember_pool_threads")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    alone = fn.append_basic_block("alone")
    pooled = fn.append_basic_block("pooled")
    state = b.load(state_var, typ=PTR)
    b.cbranch(b.icmp_unsigned("==", state, ir.Constant(PTR, None)), alone, pooled)
    b.position_at_end(alone)
    b.ret(i64(1))
    b.position_at_end(pooled)
    b.ret(b.add(_Pool(b, state).load(WORKERS), i64(1)))


def _emit_worker(module: ir.Module, state_var: ir.GlobalVariable) -> None:
    """void ember_worker(i64 index): help with rounds until STOP."""
    fn = ir.Function(module, ir.FunctionType(VOID, [I64]), name="ember_worker")
    index = fn.args[0]
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    pool = _Pool(b, b.load(state_var, typ=PTR))
    seen = b.alloca(I64)
    idle = b.alloca(I64)
    timespec = ir.LiteralStructType([I64, I64])
    request = b.alloca(timespec)
    b.store(ir.Constant(timespec, [0, NAP_NANOSECONDS]), request)
    b.store(pool.load(SEQ), seen)
    b.store(i64(0), idle)
    look = fn.append_basic_block("look")
    wait = fn.append_basic_block("wait")
    join = fn.append_basic_block("join")
    joined = fn.append_basic_block("joined")
    leave = fn.append_basic_block("leave")
    stop = fn.append_basic_block("stop")
    b.branch(look)

    b.position_at_end(look)
    check = fn.append_basic_block("check")
    b.cbranch(b.icmp_signed("!=", pool.load(STOP), i64(0)), stop, check)
    b.position_at_end(check)
    seq = pool.load(SEQ)
    allowed = b.icmp_signed("<", index, pool.load(WORKERS))
    fresh = b.icmp_signed("!=", seq, b.load(seen, typ=I64))
    published = b.icmp_signed("==", b.and_(seq, i64(1)), i64(0))
    b.cbranch(b.and_(allowed, b.and_(fresh, published)), join, wait)

    b.position_at_end(wait)
    count = b.add(b.load(idle, typ=I64), i64(1))
    b.store(count, idle)
    with b.if_else(b.icmp_signed(">", count, i64(SPIN_ROUNDS))) as (nap, spin):
        with nap:
            b.call(declare(module, "nanosleep", I32, [PTR, PTR]), [request, ir.Constant(PTR, None)])
        with spin:
            pool.pause()
    b.branch(look)

    b.position_at_end(join)
    pool.add(ACTIVE, 1)
    b.cbranch(b.icmp_signed("==", pool.load(SEQ), seq), joined, leave)
    b.position_at_end(joined)
    pool.run_tasks(b.add(index, i64(1)))
    b.store(seq, seen)
    b.store(i64(0), idle)
    b.branch(leave)
    b.position_at_end(leave)
    pool.add(ACTIVE, -1)
    b.branch(look)

    b.position_at_end(stop)
    b.ret_void()


def _emit_parallel_for(module: ir.Module, state_var: ir.GlobalVariable) -> None:
    fn = ir.Function(module, ir.FunctionType(VOID, [TASK_POINTER, PTR, I64]), name="ember_parallel_for")
    task, args, count = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    alone = fn.append_basic_block("alone")
    try_lock = fn.append_basic_block("try_lock")
    lock = fn.append_basic_block("lock")
    shared = fn.append_basic_block("shared")
    # Run everything on this thread when there is no pool, no worker to use,
    # a single task, or another thread holds the pool.
    state = b.load(state_var, typ=PTR)
    b.cbranch(b.icmp_unsigned("==", state, ir.Constant(PTR, None)), alone, try_lock)
    b.position_at_end(try_lock)
    pool = _Pool(b, state)
    worth_it = b.and_(b.icmp_signed(">", pool.load(WORKERS), i64(0)), b.icmp_signed(">", count, i64(1)))
    b.cbranch(worth_it, lock, alone)
    b.position_at_end(lock)
    locked = b.cmpxchg(pool.slot(LOCK), i64(0), i64(1), "seq_cst", "seq_cst")
    b.cbranch(b.extract_value(locked, 1), shared, alone)

    b.position_at_end(alone)
    b.call(_serial(module), [task, args, count])
    b.ret_void()

    b.position_at_end(shared)
    pool.add(SEQ, 1)  # odd: the round's fields are being written
    _spin_until(b, pool, lambda: b.icmp_signed("==", pool.load(ACTIVE), i64(0)))
    pool.store(TASK, b.ptrtoint(task, I64))
    pool.store(ARGS, b.ptrtoint(args, I64))
    pool.store(COUNT, count)
    pool.store(NEXT, i64(0))
    pool.store(DONE, i64(0))
    pool.add(SEQ, 1)  # even: published
    pool.run_tasks(i64(0))
    _spin_until(b, pool, lambda: b.icmp_signed(">=", pool.load(DONE), count))
    pool.store(LOCK, i64(0))
    b.ret_void()


def _spin_until(b: ir.IRBuilder, pool: _Pool, condition) -> None:
    fn = b.function
    test = fn.append_basic_block("test")
    spin = fn.append_basic_block("spin")
    done = fn.append_basic_block("ready")
    b.branch(test)
    b.position_at_end(test)
    b.cbranch(condition(), done, spin)
    b.position_at_end(spin)
    pool.pause()
    b.branch(test)
    b.position_at_end(done)


def _serial(module: ir.Module) -> ir.Function:
    """ember_run_serially(task, args, count): every task on this thread."""
    existing = module.globals.get("ember_run_serially")
    if existing is not None:
        return existing
    fn = ir.Function(module, ir.FunctionType(VOID, [TASK_POINTER, PTR, I64]), name="ember_run_serially")
    task, args, count = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    loop = fn.append_basic_block("loop")
    body = fn.append_basic_block("body")
    done = fn.append_basic_block("done")
    b.branch(loop)
    b.position_at_end(loop)
    t = b.phi(I64)
    t.add_incoming(i64(0), b.function.entry_basic_block)
    b.cbranch(b.icmp_signed("<", t, count), body, done)
    b.position_at_end(body)
    b.call(task, [args, t, i64(0)])
    t.add_incoming(b.add(t, i64(1)), body)
    b.branch(loop)
    b.position_at_end(done)
    b.ret_void()
    return fn
