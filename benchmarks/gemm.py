"""ember's generated matmul against NumPy (OpenBLAS), float32.

    python benchmarks/gemm.py [--quick] [--threads 1,2]

Square sizes 64..2048 and the three matmuls of an MLP layer (forward
X @ W.T, backward dY @ W and dY.T @ X), one thread and all threads, GFLOP/s
and ember / NumPy ratios. Both sides run in alternating short rounds in one
process; GFLOP/s are medians over rounds, ratios the median of each round's
ratio. The ember side is the native entry function called directly (the
runtime's own call path), with its output written to a preallocated buffer.
As in a compiled MLP, every size is known when compiling except the batch
(M of X @ W.T and dY @ W, the inner K of dY.T @ X).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

# Current NumPy wheels run slower with these set (they pin an OpenBLAS core
# type and L2 size); unset them for this process only, before NumPy loads.
for _name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(_name, None)

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

import ember  # noqa: E402
import ember.ir as ir  # noqa: E402
from ember.runtime.arena import aligned_array  # noqa: E402
from ember.runtime.native import GraphFunction  # noqa: E402

SQUARE = [64, 128, 256, 512, 1024, 2048]
MLP_LAYERS = [(784, 512), (512, 256), (256, 10), (1024, 2048), (2048, 2048)]
BATCHES = [1, 32, 64, 256]


def matmul_function(m, n, k, transpose_a: bool, transpose_b: bool) -> GraphFunction:
    """C = op(A) @ op(B); each size an int or a symbol name (known only when called)."""
    g = ir.Graph("matmul")
    b = ir.Builder(g)
    a_shape = (k, m) if transpose_a else (m, k)
    b_shape = (n, k) if transpose_b else (k, n)
    x = g.add_argument("a", ir.TensorType(ir.DType.float32, a_shape))
    y = g.add_argument("b", ir.TensorType(ir.DType.float32, b_shape))
    g.outputs["c"] = b.matmul(x, y, transpose_a=transpose_a, transpose_b=transpose_b)
    return GraphFunction(g)


class Case:
    """One matmul shape: the native call, the NumPy call, and their inputs."""

    def __init__(
        self, label: str, m: int, n: int, k: int, ta: bool = False, tb: bool = False, batch_dim: str | None = None
    ) -> None:
        """`batch_dim`: which of "m", "k" is the batch size, compiled as a symbol."""
        rng = np.random.default_rng(0)
        self.label, self.flops = label, 2.0 * m * n * k
        self.a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
        self.b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
        sizes = {"m": m, "n": n, "k": k} | ({batch_dim: "B"} if batch_dim else {})
        fn = matmul_function(sizes["m"], sizes["n"], sizes["k"], ta, tb)
        executable = fn._executable
        out = executable.run(fn.graph.name, {"a": self.a, "b": self.b})["c"]
        entry = executable.entry(fn.graph.name)
        entry.block[entry.slot["out:c"]] = out.ctypes.data
        self.fn, self.entry, self.out = fn, entry, out
        a_op = self.a.T if ta else self.a
        b_op = self.b.T if tb else self.b
        # both write into 64-byte-aligned outputs (ember allocates its outputs
        # so), so the ratio compares the matmuls, not where C happens to sit
        self.numpy_out = aligned_array((m, n), np.float32)[0]
        self.ember = lambda: entry.function(entry.block_address)
        self.numpy = lambda: np.matmul(a_op, b_op, out=self.numpy_out)
        self.ember()
        expected = a_op.astype(np.float64) @ b_op.astype(np.float64)
        scale = np.abs(a_op).astype(np.float64) @ np.abs(b_op).astype(np.float64)
        assert np.all(np.abs(self.out - expected) <= 1e-5 * k * scale + 1e-6), f"{label}: wrong result"


def seconds_per_call(run, budget: float) -> float:
    run()
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < budget:
        run()
        calls += 1
    return elapsed / max(calls, 1)


def measure(case: Case, threads: int, rounds: int, budget: float) -> tuple[float, float, float]:
    """GFLOP/s of ember and of NumPy with `threads` threads (medians over
    rounds), and the median over rounds of their ratio: each round times
    both back to back, so the ratio is not thrown by the VM's drift between
    rounds."""
    ember.set_num_threads(threads)
    ours, theirs = [], []
    with threadpool_limits(limits=threads):
        for _ in range(rounds):
            time.sleep(0.12)  # OpenBLAS threads spin ~0.1 s after a call; let them park
            ours.append(case.flops / seconds_per_call(case.ember, budget) / 1e9)
            time.sleep(0.12)
            theirs.append(case.flops / seconds_per_call(case.numpy, budget) / 1e9)
    ratio = statistics.median(o / t for o, t in zip(ours, theirs, strict=True))
    return statistics.median(ours), statistics.median(theirs), ratio


def cases(quick: bool) -> list[Case]:
    result = [Case(f"square {n}", n, n, n) for n in (SQUARE[:4] if quick else SQUARE)]
    for batch in BATCHES[:3] if quick else BATCHES:
        for fan_in, fan_out in MLP_LAYERS[:3] if quick else MLP_LAYERS:
            shape = f"{batch}x{fan_in}->{fan_out}"
            result.append(Case(f"X@W.T   {shape}", batch, fan_out, fan_in, tb=True, batch_dim="m"))
            result.append(Case(f"dY@W    {shape}", batch, fan_in, fan_out, batch_dim="m"))
            result.append(Case(f"dY.T@X  {shape}", fan_out, fan_in, batch, ta=True, batch_dim="k"))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer sizes and shorter rounds")
    parser.add_argument("--threads", default=f"1,{os.cpu_count()}", help="thread counts to measure, e.g. 1,2")
    args = parser.parse_args()
    rounds, budget = (3, 0.03) if args.quick else (7, 0.1)
    blas = [f"{i['internal_api']} {i.get('version')} ({i.get('architecture')})" for i in threadpool_info()]
    print(f"NumPy {np.__version__}, BLAS: {'; '.join(blas) or 'unknown'}")
    thread_counts = [int(t) for t in args.threads.split(",")]
    columns = "".join(f"  {'ember':>7} {'numpy':>7} {'ratio':>5}" for _ in thread_counts)
    print(f"{'GFLOP/s':<28}" + "".join(f"  {f'{t} thread' + ('s' if t > 1 else ''):^21}" for t in thread_counts))
    print(f"{'case':<28}{columns}")
    for case in cases(args.quick):
        cells = []
        for threads in thread_counts:
            ours, theirs, ratio = measure(case, threads, rounds, budget)
            cells.append(f"  {ours:7.1f} {theirs:7.1f} {ratio:5.2f}")
        print(f"{case.label:<28}{''.join(cells)}", flush=True)


if __name__ == "__main__":
    main()
