"""The native thread pool (runtime/threads.py, compiler/codegen/threads.py):
the thread-count setting and EMBER_NUM_THREADS, big kernels really running on
the pool, the sleep/wake protocol of idle workers, several Python threads at
once, fork, a prompt exit, and an idle process that costs no CPU.

What must not hang (fork, exit, a bad environment) runs in a child Python
process with a timeout, so a deadlock fails the test instead of the suite."""

from __future__ import annotations

import ctypes
import functools
import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from native_helpers import make_graph, tensor

import ember
from ember.compiler.codegen.gemm import PARALLEL_FLOPS
from ember.compiler.codegen.threads import ACTIVE, LOCK, SEQ, SLEEPERS, SPIN_NANOSECONDS, WORKERS
from ember.ir import DType, Graph
from ember.runtime import threads
from ember.runtime.native import GraphFunction

F32 = DType.float32
CORES = threads.available_cores()
needs_two_cores = pytest.mark.skipif(CORES < 2, reason="one core: the pool has no worker")
SPIN = SPIN_NANOSECONDS / 1e9
GAPS = [0.0, 0.3 * SPIN, 0.9 * SPIN, 1.2 * SPIN, 3 * SPIN]
"""Pauses between rounds, either side of the time idle workers spin before they sleep."""


@pytest.fixture
def restore_threads():
    previous = ember.get_num_threads()
    yield
    ember.set_num_threads(previous)


@functools.cache
def matmul_graph() -> Graph:
    """c = a @ b, all dimensions symbolic."""
    return make_graph(
        "pool_matmul",
        {"a": tensor(F32, ("M", "K")), "b": tensor(F32, ("K", "N"))},
        lambda b, v: {"c": b.matmul(v["a"], v["b"])},
    )


@functools.cache
def matmul_function(copy: int = 0) -> GraphFunction:
    """A compiled `matmul_graph`; each `copy` has its own buffers."""
    return GraphFunction(matmul_graph())


def operands(m: int, n: int, k: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"a": rng.standard_normal((m, k)).astype(np.float32), "b": rng.standard_normal((k, n)).astype(np.float32)}


def check(c: np.ndarray, args: dict[str, np.ndarray]) -> None:
    a, b = args["a"].astype(np.float64), args["b"].astype(np.float64)
    allowed = 1e-5 * np.sqrt(a.shape[1]) * np.outer(np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=0))
    assert (np.abs(c - a @ b) <= allowed).all()


def rounds(run) -> int:
    """Pool rounds (calls that shared their tasks with workers) during `run()`."""
    state = threads.pool().state
    before = int(state[SEQ])
    run()
    after = int(state[SEQ])
    assert after % 2 == 0, "a round was left half published"
    return (after - before) // 2


# -- the setting ---------------------------------------------------------------------------


@pytest.mark.parametrize("count", [0, -1, 1.5, 2.0, True, False, "2", None])
def test_set_num_threads_rejects_anything_but_a_positive_int(restore_threads, count) -> None:
    before = ember.get_num_threads()
    with pytest.raises(ember.ConfigError, match="set_num_threads"):
        ember.set_num_threads(count)
    assert ember.get_num_threads() == before


def test_get_num_threads_follows_the_setting_up_to_the_cores(restore_threads) -> None:
    pool = threads.pool()
    assert pool.capacity == CORES
    ember.set_num_threads(1)
    assert ember.get_num_threads() == 1
    assert pool.state[WORKERS] == 0
    ember.set_num_threads(2)
    assert ember.get_num_threads() == min(2, CORES)
    ember.set_num_threads(CORES + 7)
    assert ember.get_num_threads() == CORES
    assert pool.state[WORKERS] == CORES - 1


def test_native_code_sees_the_thread_count(restore_threads) -> None:
    """ember_pool_threads(), which kernels call to choose their split, follows
    ember.set_num_threads."""
    pool = threads.pool()
    pool_threads = ctypes.CFUNCTYPE(ctypes.c_int64)(pool.code.address("ember_pool_threads"))
    for count in range(1, CORES + 1):
        ember.set_num_threads(count)
        assert pool_threads() == count


# -- the pool at work -------------------------------------------------------------------------


@needs_two_cores
def test_big_matmuls_run_on_the_pool_and_small_ones_do_not(restore_threads) -> None:
    fn = matmul_function(0)
    big = operands(400, 400, 64)
    assert PARALLEL_FLOPS // 2 <= 400 * 400 * 64
    ember.set_num_threads(2)
    assert rounds(lambda: check(fn(big).outputs["c"], big)) == 1
    small = operands(20, 20, 20)  # below PARALLEL_FLOPS: on the calling thread
    assert rounds(lambda: check(fn(small).outputs["c"], small)) == 0
    one_task = operands(8, 16, 5000)  # enough flops, but a single task
    assert rounds(lambda: check(fn(one_task).outputs["c"], one_task)) == 0
    ember.set_num_threads(1)
    assert rounds(lambda: check(fn(big).outputs["c"], big)) == 0
    state = threads.pool().state
    assert state[LOCK] == 0
    deadline = time.monotonic() + 5
    while state[ACTIVE] != 0 and time.monotonic() < deadline:  # workers leave the last round
        time.sleep(0.001)
    assert state[ACTIVE] == 0


@needs_two_cores
def test_one_row_products_split_their_columns_only_over_several_threads(restore_threads) -> None:
    """A big one-row product (x @ W for one x) shares its columns with the
    pool at two threads and runs alone at one (as a single task over all
    columns: gemm._whole_row); each column sums the same way on both paths,
    so the results are bitwise equal."""
    fn = matmul_function(0)
    row = operands(1, 3000, 700, seed=5)
    assert PARALLEL_FLOPS // 2 <= 3000 * 700
    ember.set_num_threads(2)
    shared: list[np.ndarray] = []
    assert rounds(lambda: shared.append(fn(row).outputs["c"])) == 1
    ember.set_num_threads(1)
    alone: list[np.ndarray] = []
    assert rounds(lambda: alone.append(fn(row).outputs["c"])) == 0
    check(alone[0], row)
    assert alone[0].tobytes() == shared[0].tobytes()


@pytest.mark.parametrize("shared", [False, True], ids=["two-functions", "one-function"])
def test_two_python_threads_at_once(restore_threads, shared: bool) -> None:
    """Native calls release the GIL: both threads run native code together,
    with pauses between calls that let the workers fall asleep or not.
    Whoever holds the pool shares its tasks, the other runs alone; results
    are bitwise those of a lone call (tasks are deterministic)."""
    ember.set_num_threads(CORES)
    functions = [matmul_function(0), matmul_function(0 if shared else 1)]
    inputs = [operands(300, 200, 96, seed=s) for s in (1, 2)]
    expected = [functions[0](args).outputs["c"] for args in inputs]
    for c, args in zip(expected, inputs, strict=True):
        check(c, args)
    barrier = threading.Barrier(2)
    failures: list[str] = []

    def work(i: int) -> None:
        gaps = np.random.default_rng(i).choice(GAPS, 40)  # workers spinning, or asleep
        try:
            barrier.wait()
            for call in range(40):
                time.sleep(gaps[call])
                c = functions[i](inputs[i]).outputs["c"]
                if c.tobytes() != expected[i].tobytes():
                    failures.append(f"thread {i}, call {call}: wrong result")
        except Exception as e:  # surfaced below
            failures.append(f"thread {i}: {e!r}")

    workers = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert not any(w.is_alive() for w in workers), "a thread hung"
    assert failures == []
    assert threads.pool().state[LOCK] == 0


@needs_two_cores
def test_second_caller_runs_alone_while_the_pool_is_busy(restore_threads) -> None:
    """While one thread's long matmul holds the pool, a call from another
    thread finds the pool taken and runs its tasks alone, correctly."""
    ember.set_num_threads(2)
    long_fn, short_fn = matmul_function(0), matmul_function(1)
    long_args, short_args = operands(1500, 1500, 256, seed=3), operands(300, 200, 96, seed=4)
    short_expected = short_fn(short_args).outputs["c"]
    state = threads.pool().state
    overlapped = 0
    for _ in range(3):
        thread = threading.Thread(target=long_fn, args=(long_args,))
        thread.start()
        deadline = time.monotonic() + 10
        while state[LOCK] == 0 and thread.is_alive() and time.monotonic() < deadline:
            pass  # until the long call holds the pool
        seq = int(state[SEQ])
        c = short_fn(short_args).outputs["c"]
        held = state[LOCK] == 1 and int(state[SEQ]) == seq  # the long round was on all along
        thread.join(timeout=60)
        assert not thread.is_alive()
        assert c.tobytes() == short_expected.tobytes()
        overlapped += held
    assert overlapped > 0, "the short call never ran while the pool was busy"


# -- the sleep/wake protocol -------------------------------------------------------------------

TASK = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)
PARALLEL_FOR = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)


def rendezvous(pool: threads.ThreadPool, rounds: list[tuple[int, float]]) -> tuple[list[str], int]:
    """Run (threads, gap) rounds on `pool`: set the threads, pause, then one
    call of its ember_parallel_for with a task per thread, each of which
    waits at a barrier for all the others. A round can only finish if every
    allowed worker (and no other) woke up and took a task; a lost wake-up
    breaks the barrier after its timeout. Returns the failures, and how many
    rounds began with a worker asleep."""
    parallel_for = PARALLEL_FOR(pool.code.address("ember_parallel_for"))
    failures: list[str] = []
    ran: list[int] = []
    barrier = threading.Barrier(1)

    @TASK
    def task(args, index, thread) -> None:
        ran.append(thread)
        try:
            barrier.wait()
        except threading.BrokenBarrierError:  # a callback cannot raise: reported below
            failures.append(f"thread {thread} gave up waiting: a worker never came")

    woken = 0
    for i, (count, gap) in enumerate(rounds):
        if count != pool.threads:
            pool.set_threads(count)
        barrier = threading.Barrier(count, timeout=10)
        ran.clear()
        time.sleep(gap)
        woken += int(pool.state[SLEEPERS]) > 0
        parallel_for(ctypes.cast(task, ctypes.c_void_p), None, count)
        if sorted(ran) != list(range(count)):
            failures.append(f"round {i} at {count} threads ran on threads {sorted(ran)}")
        if failures:
            break
    return failures, woken


@pytest.mark.parametrize("futex", [True, False], ids=["futex", "naps"])
def test_every_allowed_worker_wakes_for_every_round(futex: bool) -> None:
    """Hundreds of rounds on a private pool of three workers, at random
    thread counts (so workers park and come back) and random pauses either
    side of the spin time (so they are spinning, just asleep or long asleep).
    Also the napping fallback for systems without futexes."""
    pool = threads.ThreadPool(3, futex=futex)
    rng = np.random.default_rng(7)
    counts = np.repeat(rng.integers(1, pool.capacity + 1, 30), 10)  # a setting holds for ten rounds
    try:
        failures, woken = rendezvous(pool, list(zip(counts.tolist(), rng.choice(GAPS, len(counts)), strict=True)))
    finally:
        pool.stop()
    assert failures == []
    assert woken > 10, "the rounds never found a worker asleep"
    assert pool.state[ACTIVE] == 0
    assert pool.state[LOCK] == 0


# -- in a child process ------------------------------------------------------------------------

PRELUDE = """
import os, sys, time
import numpy as np
import ember
from ember.compiler.codegen.threads import SEQ
from ember.ir import Builder, DType, Graph, TensorType
from ember.runtime import threads
from ember.runtime.native import GraphFunction

def matmul():
    g = Graph("child_matmul")
    a = g.add_argument("a", TensorType(DType.float32, ("M", "K")), "input")
    b = g.add_argument("b", TensorType(DType.float32, ("K", "N")), "input")
    g.outputs["c"] = Builder(g).matmul(a, b)
    return GraphFunction(g)

rng = np.random.default_rng(0)
ARGS = {"a": rng.standard_normal((500, 64)).astype(np.float32),
        "b": rng.standard_normal((64, 500)).astype(np.float32)}
EXPECTED = ARGS["a"].astype(np.float64) @ ARGS["b"]

def correct(c):
    return bool(c.shape == EXPECTED.shape and np.abs(c - EXPECTED).max() < 1e-3)
"""


def run_child(body: str, tmp_path, timeout: float = 60, **environment: str) -> subprocess.CompletedProcess:
    """Run PRELUDE + `body` in a fresh Python; fail on a nonzero exit or a hang."""
    script = tmp_path / "child.py"
    script.write_text(PRELUDE + textwrap.dedent(body))
    env = {k: v for k, v in os.environ.items() if k != threads.ENVIRONMENT_VARIABLE} | environment
    try:
        done = subprocess.run(
            [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"child process hung for {timeout} s; stdout: {e.stdout!r}, stderr: {e.stderr!r}")
    assert done.returncode == 0, f"child failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done


def test_environment_variable_sets_the_threads_when_the_pool_starts(tmp_path) -> None:
    run_child(
        f"""
        assert ember.get_num_threads() == 1          # read before the pool exists
        fn = matmul()                                 # starts the pool
        pool = threads.pool()
        assert pool.capacity == {CORES} and pool.threads == 1
        before = int(pool.state[SEQ])
        assert correct(fn(ARGS).outputs["c"])
        assert int(pool.state[SEQ]) == before         # one thread: never shared
        os.environ["{threads.ENVIRONMENT_VARIABLE}"] = "2"
        assert ember.get_num_threads() == 1           # read once, at pool start
        ember.set_num_threads(2)
        assert ember.get_num_threads() == {min(2, CORES)}
        assert correct(fn(ARGS).outputs["c"])
        assert (int(pool.state[SEQ]) > before) == {CORES >= 2}
        """,
        tmp_path,
        **{threads.ENVIRONMENT_VARIABLE: "1"},
    )


def test_invalid_environment_variable_is_a_clear_error(tmp_path) -> None:
    run_child(
        f"""
        name = "{threads.ENVIRONMENT_VARIABLE}"
        for text in ("0", "-3", "1.5", "two", "abc"):
            os.environ[name] = text
            try:
                ember.get_num_threads()
            except ember.ConfigError as e:
                assert name in str(e) and repr(text) in str(e), e
            else:
                raise AssertionError(f"{{text!r}} accepted")
        os.environ[name] = ""                         # empty: unset, every core
        assert ember.get_num_threads() == {CORES}
        os.environ[name] = "abc"
        for attempt in range(2):                      # native code cannot start...
            try:
                matmul()
            except ember.ConfigError as e:
                assert name in str(e) and "'abc'" in str(e), e
            else:
                raise AssertionError(f"attempt {{attempt}}: native code ran with {{name}}=abc")
        ember.set_num_threads(1)                      # ...until the program says how many
        assert correct(matmul()(ARGS).outputs["c"])
        assert threads.pool().threads == 1
        """,
        tmp_path,
        **{threads.ENVIRONMENT_VARIABLE: "abc"},
    )


def test_forked_children_run_parallel_matmuls(tmp_path) -> None:
    """A child of a process whose pool has workers (which fork does not copy)
    runs alone; also when forked while the parent is inside a pool round,
    and through multiprocessing's 'fork' context."""
    run_child(
        """
        import multiprocessing, threading, warnings
        warnings.simplefilter("ignore", DeprecationWarning)   # fork with threads
        fn, busy_fn = matmul(), matmul()
        ember.set_num_threads(2)
        assert correct(fn(ARGS).outputs["c"])

        def in_child():  # busy_fn may have been inside a call at the fork: its lock is free again
            return correct(fn(ARGS).outputs["c"]) and correct(busy_fn(ARGS).outputs["c"])

        def fork_and_wait():
            pid = os.fork()
            if pid == 0:
                os._exit(0 if in_child() else 1)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    assert os.waitstatus_to_exitcode(status) == 0, "child computed a wrong result"
                    return
                time.sleep(0.01)
            os.kill(pid, 9)
            raise AssertionError("forked child hung")

        fork_and_wait()                                # parent idle, workers spinning
        time.sleep(0.05)
        fork_and_wait()                                # workers asleep
        before = int(threads.pool().state[SEQ])
        assert correct(fn(ARGS).outputs["c"])          # wakes the parent's workers
        assert int(threads.pool().state[SEQ]) > before
        stop = threading.Event()
        def keep_busy():
            while not stop.is_set():
                busy_fn(ARGS)
        busy = threading.Thread(target=keep_busy)
        busy.start()
        try:
            for _ in range(5):                         # parent busy in pool rounds
                fork_and_wait()
        finally:
            stop.set()
            busy.join()

        def report(queue):
            queue.put(in_child())
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        child = context.Process(target=report, args=(queue,))
        child.start()
        assert queue.get(timeout=20) is True
        child.join(timeout=20)
        assert child.exitcode == 0
        assert correct(fn(ARGS).outputs["c"])          # the parent's pool still works
        """,
        tmp_path,
    )


@pytest.mark.parametrize(
    "before_exit",
    ["", "time.sleep(0.05)", "ember.set_num_threads(1); time.sleep(0.05)"],
    ids=["spinning", "asleep", "parked"],
)
def test_process_exits_promptly_after_using_the_pool(tmp_path, before_exit: str) -> None:
    """Exit wakes and joins the workers, whether they spin, sleep until the
    next round, or sleep because the setting leaves them out."""
    done = run_child(
        f"""
        fn = matmul()
        ember.set_num_threads(2)
        for _ in range(3):
            assert correct(fn(ARGS).outputs["c"])
        {before_exit}
        print(time.time())
        """,
        tmp_path,
        timeout=30,
    )
    exited = time.time()
    assert exited - float(done.stdout.split()[-1]) < 5, "the workers kept the process alive"


@pytest.mark.slow
def test_an_idle_process_uses_no_cpu(tmp_path) -> None:
    """After training on two threads, and again after set_num_threads(1), a
    process that sleeps 2 s spends under 1% of a core: workers spin only
    briefly after a round, then sleep in the kernel, and so do the workers
    the setting leaves out."""
    run_child(
        f"""
        from ember import nn, optim
        model = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 10))
        prog = ember.compile(model, loss=nn.CrossEntropyLoss(), optimizer=optim.Adam(lr=1e-3), batch_size=64)
        x, y = rng.standard_normal((64, 256)).astype(np.float32), rng.integers(0, 10, 64)
        for count in (2, 1):
            ember.set_num_threads(count)
            before = int(threads.pool().state[SEQ])
            for _ in range(10):
                prog.train_step(x, y)
            assert (int(threads.pool().state[SEQ]) > before) == (count == 2 and {CORES} >= 2)
            start, cpu = time.monotonic(), time.process_time()
            time.sleep(2)
            busy = (time.process_time() - cpu) / (time.monotonic() - start)
            assert busy < 0.01, f"at {{count}} thread(s) the idle process used {{busy:.1%}} of a core"
        """,
        tmp_path,
    )
