"""The thread pool's native code: workers and `ember_parallel_for`.

Native kernels split their work into tasks and call

    void ember_parallel_for(void (*task)(i8 *args, i64 task, i64 thread), i8 *args, i64 tasks)

which runs the tasks on the calling thread and on the pool's workers and
returns when all are done. Tasks are handed out one at a time from a shared
counter, so a worker that joins late (it was asleep) still takes its share,
and uneven tasks balance themselves. `i64 ember_pool_threads()` says how
many threads a round may use now (ember.set_num_threads), for kernels whose
best split depends on it. Python changes the pool only through
`ember_pool_set_workers(i64)` and `ember_pool_stop()`, which wake sleepers.

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
    SLEEPERS workers asleep (or about to be) on WAKE
    WAKE     futex word: a round came for the sleepers
    PARK     futex word: the setting changed, or STOP (for workers beyond
             WORKERS, who sleep whenever they are not allowed to help)

A worker joins a round by raising ACTIVE and checking that SEQ did not
move; the caller only rewrites the fields after making SEQ odd and seeing
ACTIVE fall to zero, so a worker never reads half a round.

After a round a worker spins (with `pause`) for SPIN_NANOSECONDS by the
monotonic clock, so the rounds of a training step hand work over in
microseconds; then it sleeps in the kernel and costs nothing. To sleep, it
raises SLEEPERS, reads WAKE, looks once more for a round or STOP, and waits
for WAKE to change. A caller, after publishing a round, bumps WAKE and
wakes the sleepers only if SLEEPERS is nonzero, so there is no system call
while the workers spin. No wake-up is lost: all these accesses are
sequentially consistent, so either the caller sees the sleeper in SLEEPERS
or the sleeper sees the caller's SEQ, and a futex wait returns at once if
the word no longer holds the value the sleeper read. A sleeper that joins
late still takes whatever tasks are left.

The waits are Linux futexes on the low 32 bits of WAKE and PARK, through the
C library's `syscall` (number 202 is x86-64's, as `pause` is x86's). Other
systems (`futex=False`) get the same protocol with naps instead: a sleeping
worker naps NAP_NANOSECONDS at a time and looks again, which costs a little
CPU when idle and up to a nap before a sleeper helps.
"""

from __future__ import annotations

import time

import llvmlite.ir as ir

from .irutil import I32, I64, PTR, VOID, declare, for_range, i64
from .pool_state import (
    ACTIVE,
    ARGS,
    COUNT,
    DONE,
    FUTEXES,
    LOCK,
    NEXT,
    PARK,
    SEQ,
    SLEEPERS,
    STOP,
    TASK,
    WAKE,
    WORKERS,
)

SPIN_NANOSECONDS = 1_000_000
"""How long a worker spins after a round before it sleeps."""

NAP_NANOSECONDS = 1_000_000
"""Without futexes: how long a sleeping worker naps between looks for work."""

SYS_FUTEX = 202
"""The futex system call's number on x86-64 Linux."""

FUTEX_WAIT_PRIVATE, FUTEX_WAKE_PRIVATE = 128, 129
EVERYONE = 2**31 - 1
"""FUTEX_WAKE's count for "all waiters"."""

TIMESPEC = ir.LiteralStructType([I64, I64])
"""struct timespec on 64-bit Linux and BSDs: seconds, nanoseconds."""

TASK_TYPE = ir.FunctionType(VOID, [PTR, I64, I64])
TASK_POINTER = ir.PointerType(TASK_TYPE)  # printed as `ptr`; llvmlite needs the signature to call through it


class _Pool:
    """Typed access to the pool's slots from one function."""

    def __init__(self, b: ir.IRBuilder, state: ir.Value, futex: bool = FUTEXES) -> None:
        self.b = b
        self.state = state
        self.futex = futex

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

    def wait(self, index: int, word: ir.Value) -> None:
        """Sleep while slot `index`'s futex word still holds `word`, which the
        worker read after announcing itself; may return early (a signal).
        Without futexes: one nap."""
        if self.futex:
            self._futex(index, FUTEX_WAIT_PRIVATE, word)
        else:
            nap = self.b.module.globals.get("ember_pool_nap")
            if nap is None:
                nap = ir.GlobalVariable(self.b.module, TIMESPEC, name="ember_pool_nap")
                nap.initializer = ir.Constant(TIMESPEC, [0, NAP_NANOSECONDS])
                nap.global_constant = True
            self.b.call(declare(self.b.module, "nanosleep", I32, [PTR, PTR]), [nap, ir.Constant(PTR, None)])

    def wake(self, index: int) -> None:
        """Change slot `index` and wake every thread waiting on it."""
        self.add(index, 1)
        if self.futex:
            self._futex(index, FUTEX_WAKE_PRIVATE, i64(EVERYONE))

    def _futex(self, index: int, operation: int, value: ir.Value) -> None:
        """syscall(SYS_futex, &slot, operation, value): the futex word is the
        slot's low 32 bits (x86 is little-endian). The result does not
        matter: a waiter looks at the pool again however it returns."""
        b = self.b
        syscall = b.module.globals.get("syscall")
        if syscall is None:
            syscall = ir.Function(b.module, ir.FunctionType(I64, [I64], var_arg=True), name="syscall")
        word = b.zext(b.trunc(value, I32), I64)
        null = ir.Constant(PTR, None)
        b.call(syscall, [i64(SYS_FUTEX), self.slot(index), i64(operation), word, null, null, i64(0)])

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


def run_tasks(b: ir.IRBuilder, task: ir.Function, args: ir.Value, tasks: ir.Value, parallel: ir.Value) -> None:
    """Emit at `b`: `task(args, t, 0)` for every t < tasks, on the pool
    (`ember_parallel_for`) where `parallel` holds, else in a loop on the
    calling thread."""
    with b.if_else(parallel) as (then, otherwise):
        with then:
            run = declare(b.module, "ember_parallel_for", VOID, [TASK_POINTER, PTR, I64])
            b.call(run, [task, args, tasks])
        with otherwise, for_range(b, i64(0), tasks, 1, name="t") as t:
            b.call(task, [args, t, i64(0)])


def emit_pool_module(module: ir.Module, futex: bool = FUTEXES) -> None:
    """Define `ember_pool_init`, `ember_worker`, `ember_parallel_for`,
    `ember_pool_threads`, `ember_pool_set_workers` and `ember_pool_stop` in
    `module`; sleeping workers wait on futexes if `futex`, else they nap."""
    state = ir.GlobalVariable(module, PTR, name="ember_pool_state")
    state.initializer = ir.Constant(PTR, None)
    init = ir.Function(module, ir.FunctionType(VOID, [PTR]), name="ember_pool_init")
    b = ir.IRBuilder(init.append_basic_block())
    b.store(init.args[0], state)
    b.ret_void()
    _emit_worker(module, state, futex)
    _emit_parallel_for(module, state, futex)
    _emit_pool_threads(module, state)
    _emit_controls(module, state, futex)


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


def _emit_controls(module: ir.Module, state_var: ir.GlobalVariable, futex: bool) -> None:
    """ember_pool_set_workers(i64 n) and ember_pool_stop(): change WORKERS or
    set STOP, then wake every sleeper to look at the change."""
    for name, slot, params in (("ember_pool_set_workers", WORKERS, [I64]), ("ember_pool_stop", STOP, [])):
        fn = ir.Function(module, ir.FunctionType(VOID, params), name=name)
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        pool = _Pool(b, b.load(state_var, typ=PTR), futex)
        pool.store(slot, fn.args[0] if params else i64(1))
        pool.wake(PARK)
        pool.wake(WAKE)
        b.ret_void()


def _now(b: ir.IRBuilder, clock: ir.Value) -> ir.Value:
    """The monotonic clock in nanoseconds; `clock` is a timespec to fill."""
    clock_gettime = declare(b.module, "clock_gettime", I32, [I32, PTR])
    b.call(clock_gettime, [ir.Constant(I32, time.CLOCK_MONOTONIC), clock])
    seconds = b.load(b.gep(clock, [ir.Constant(I32, 0), ir.Constant(I32, 0)], source_etype=TIMESPEC), typ=I64)
    nanoseconds = b.load(b.gep(clock, [ir.Constant(I32, 0), ir.Constant(I32, 1)], source_etype=TIMESPEC), typ=I64)
    return b.add(b.mul(seconds, i64(1_000_000_000)), nanoseconds)


def _emit_worker(module: ir.Module, state_var: ir.GlobalVariable, futex: bool) -> None:
    """void ember_worker(i64 index): help with rounds until STOP; spin for a
    while after each round, then sleep until the next."""
    fn = ir.Function(module, ir.FunctionType(VOID, [I64]), name="ember_worker")
    index = fn.args[0]
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    pool = _Pool(b, b.load(state_var, typ=PTR), futex)
    seen = b.alloca(I64)  # the last round this worker joined
    deadline = b.alloca(I64)  # when spinning gives way to sleep
    clock = b.alloca(TIMESPEC)

    def spin_from_now() -> None:
        b.store(b.add(_now(b, clock), i64(SPIN_NANOSECONDS)), deadline)

    def stay_awake(seq: ir.Value) -> ir.Value:
        """STOP, not allowed to help, or a round this worker has not joined."""
        stop = b.icmp_signed("!=", pool.load(STOP), i64(0))
        barred = b.icmp_signed(">=", index, pool.load(WORKERS))
        return b.or_(stop, b.or_(barred, b.icmp_signed("!=", seq, b.load(seen, typ=I64))))

    b.store(pool.load(SEQ), seen)
    spin_from_now()
    look, check, allowed, idle, spin = (fn.append_basic_block(n) for n in ("look", "check", "allowed", "idle", "spin"))
    sleep, wait, awake = (fn.append_basic_block(n) for n in ("sleep", "wait", "awake"))
    park, park_wait = fn.append_basic_block("park"), fn.append_basic_block("park_wait")
    join, joined, leave = (fn.append_basic_block(n) for n in ("join", "joined", "leave"))
    stop = fn.append_basic_block("stop")
    b.branch(look)

    b.position_at_end(look)
    b.cbranch(b.icmp_signed("!=", pool.load(STOP), i64(0)), stop, check)
    b.position_at_end(check)
    seq = pool.load(SEQ)
    b.cbranch(b.icmp_signed("<", index, pool.load(WORKERS)), allowed, park)
    b.position_at_end(allowed)
    fresh = b.icmp_signed("!=", seq, b.load(seen, typ=I64))
    published = b.icmp_signed("==", b.and_(seq, i64(1)), i64(0))
    b.cbranch(b.and_(fresh, published), join, idle)
    b.position_at_end(idle)
    b.cbranch(b.icmp_signed("<", _now(b, clock), b.load(deadline, typ=I64)), spin, sleep)
    b.position_at_end(spin)
    pool.pause()
    b.branch(look)

    # Announce, then look once more: a caller that publishes after this sees SLEEPERS.
    b.position_at_end(sleep)
    pool.add(SLEEPERS, 1)
    word = pool.load(WAKE)
    b.cbranch(stay_awake(pool.load(SEQ)), awake, wait)
    b.position_at_end(wait)
    pool.wait(WAKE, word)
    b.branch(awake)
    b.position_at_end(awake)
    pool.add(SLEEPERS, -1)
    b.branch(look)  # the deadline stays past: back to sleep unless a round came

    # Not allowed to help: sleep until the setting changes (or STOP), no spinning.
    b.position_at_end(park)
    word = pool.load(PARK)
    barred = b.icmp_signed(">=", index, pool.load(WORKERS))
    b.cbranch(b.and_(barred, b.icmp_signed("==", pool.load(STOP), i64(0))), park_wait, look)
    b.position_at_end(park_wait)
    pool.wait(PARK, word)
    b.branch(look)

    b.position_at_end(join)
    pool.add(ACTIVE, 1)
    b.cbranch(b.icmp_signed("==", pool.load(SEQ), seq), joined, leave)
    b.position_at_end(joined)
    pool.run_tasks(b.add(index, i64(1)))
    b.store(seq, seen)
    b.branch(leave)
    b.position_at_end(leave)
    pool.add(ACTIVE, -1)
    spin_from_now()
    b.branch(look)

    b.position_at_end(stop)
    b.ret_void()


def _emit_parallel_for(module: ir.Module, state_var: ir.GlobalVariable, futex: bool) -> None:
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
    pool = _Pool(b, state, futex)
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
    with b.if_then(b.icmp_signed("!=", pool.load(SLEEPERS), i64(0))):  # no system call while workers spin
        pool.wake(WAKE)
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
