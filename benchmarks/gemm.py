"""ember's generated matmul against torch.mm (MKL) and NumPy (OpenBLAS), float32.

    python benchmarks/gemm.py --threads 1      # pinned to one core
    python benchmarks/gemm.py --threads 2      # every core
    python benchmarks/gemm.py --quick

Square sizes 64..2048 and the three matmuls of an MLP layer (forward
X @ W.T, backward dY @ W and dY.T @ X), GFLOP/s of each and ember's ratio
to the best peer (above 1: ember is faster), and ember's share of this
core's FMA peak, measured by a generated kernel that does nothing but vector
FMAs (ember.runtime.machine.fma_peak; per core, so the share at two threads
is of two cores' peak). With `--threads 1` the process is pinned to one core
(os.sched_setaffinity) before any library starts a thread. The peers run in
alternating short rounds in one process; GFLOP/s are medians over rounds,
ratios the median of each round's ratio. The ember side is the native entry
function called directly (the runtime's own call path), with its output
written to a preallocated buffer. As in a compiled MLP, every size is known
when compiling except the batch (M of X @ W.T and dY @ W, the inner K of
dY.T @ X). torch.mm runs where PyTorch is installed (an optional extra).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

if __name__ == "__main__" and "--threads" in sys.argv and sys.argv[sys.argv.index("--threads") + 1 :][:1] == ["1"]:
    # one core for every library, before any of them starts a thread
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})

# Current NumPy wheels run slower with these set (they pin an OpenBLAS core
# type and L2 size); unset them for this process only, before NumPy loads.
for _name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(_name, None)

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

import ember  # noqa: E402
import ember.ir as ir  # noqa: E402
from ember.runtime.arena import aligned_array  # noqa: E402
from ember.runtime.machine import fma_peak  # noqa: E402
from ember.runtime.native import GraphFunction  # noqa: E402

try:
    import torch
except ImportError:
    torch = None

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
        self.runs = {
            "ember": lambda: entry.function(entry.block_address),
            "numpy": lambda: np.matmul(a_op, b_op, out=self.numpy_out),
        }
        if torch is not None:
            ta_op, tb_op, t_out = (torch.from_numpy(v) for v in (self.a, self.b, self.numpy_out))
            ta_op, tb_op = (ta_op.t() if ta else ta_op), (tb_op.t() if tb else tb_op)
            self.runs["torch"] = lambda: torch.mm(ta_op, tb_op, out=t_out)
        self.runs["ember"]()
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


def measure(case: Case, threads: int, rounds: int, budget: float) -> tuple[dict[str, float], float]:
    """GFLOP/s of each peer with `threads` threads (medians over rounds), and
    the median over rounds of ember's ratio to the best other peer: each
    round times all back to back, so the ratio is not thrown by the VM's
    drift between rounds."""
    ember.set_num_threads(threads)
    if torch is not None:
        torch.set_num_threads(threads)
    samples: dict[str, list[float]] = {name: [] for name in case.runs}
    with threadpool_limits(limits=threads):
        for _ in range(rounds):
            for name, run in case.runs.items():
                time.sleep(0.12)  # OpenBLAS threads spin ~0.1 s after a call; let them park
                samples[name].append(case.flops / seconds_per_call(run, budget) / 1e9)
    peers = [name for name in samples if name != "ember"]
    ratios = [ours / max(samples[p][i] for p in peers) for i, ours in enumerate(samples["ember"])]
    return {name: statistics.median(values) for name, values in samples.items()}, statistics.median(ratios)


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
    peak = fma_peak() / 1e9
    pinned = f", pinned to CPU {sorted(os.sched_getaffinity(0))[0]}" if len(os.sched_getaffinity(0)) == 1 else ""
    print(f"NumPy {np.__version__}, BLAS: {'; '.join(blas) or 'unknown'}")
    print(f"PyTorch {torch.__version__ if torch is not None else 'not installed'}{pinned}")
    print(f"FMA peak: {peak:.1f} GFLOP/s per core (float32)")
    thread_counts = [int(t) for t in args.threads.split(",")]
    names = ["ember", "numpy"] + (["torch"] if torch is not None else [])
    width = 8 * len(names) + 14
    columns = "".join("".join(f"{n:>8}" for n in names) + f"{'/best':>7}{'%peak':>7}" for _ in thread_counts)
    heading = "".join(f"{f'{t} thread' + ('s' if t > 1 else ''):^{width}}" for t in thread_counts)
    print(f"{'GFLOP/s':<28}{heading}")
    print(f"{'case':<28}{columns}")
    for case in cases(args.quick):
        cells = []
        for threads in thread_counts:
            speeds, ratio = measure(case, threads, rounds, budget)
            share = 100 * speeds["ember"] / (peak * threads)
            cells.append("".join(f"{speeds[n]:8.1f}" for n in names) + f"{ratio:7.2f}{share:7.0f}")
        print(f"{case.label:<28}{''.join(cells)}", flush=True)


if __name__ == "__main__":
    main()
