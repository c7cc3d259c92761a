"""Data-parallel training on this machine: 1 and 2 MPI ranks, one thread
each (rank r pinned to core r), every rank stepping on its own batch of
the case's size (weak scaling, as data-parallel training runs).

    python benchmarks/distributed.py                 # cases R, S-adam, M
    python benchmarks/distributed.py --cases M --steps 40 --rounds 5

The rank counts alternate for --rounds rounds (3) and each keeps its
fastest: on a shared machine a single window swings by tens of percent.

For each case and rank count (and 2 ranks with the optimizer state
sharded, ZeRO stage 1): training steps per second, samples per
second (all ranks), the all-reduce's share of a step (the gradients'
mean over the ranks timed alone, as the step takes it: in shared memory
on one host, else MPI's Allreduce), and the scaling efficiency
(samples/s of N ranks over N times one rank's), and the optimizer
state each rank holds. Last, a model (not a
measurement) of the step at more hosts: a ring all-reduce moves
2 (N-1)/N times the gradient bytes per rank, at the bandwidth given by
--network-gbps, plus 2 (N-1) latencies of --latency-us, added to the
one-rank step time. Needs the [mpi] extra (mpi4py and mpich).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

CASES = {
    "R": ((13, 64, 64, 1), 32, "sgd"),
    "S-adam": ((784, 128, 10), 64, "adam"),
    "M": ((784, 512, 512, 10), 256, "adam"),
    "L": ((1024, 2048, 2048, 1024, 10), 512, "adam"),
}


def worker(case: str, steps: int, sharded: bool) -> None:
    """One rank: time `steps` distributed steps (`sharded`: with the
    optimizer state sharded over the ranks) and the all-reduce alone."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    os.sched_setaffinity(0, {comm.Get_rank() % os.cpu_count()})
    import numpy as np

    import ember
    import ember.distributed as dist
    from ember import nn, optim

    ember.set_num_threads(1)
    world = dist.init()
    widths, batch, kind = CASES[case]
    layers = []
    for i in range(len(widths) - 1):
        layers += [nn.Linear(widths[i], widths[i + 1])] + ([nn.ReLU()] if i < len(widths) - 2 else [])
    loss = nn.MSELoss() if widths[-1] == 1 else nn.CrossEntropyLoss()
    optimizer = optim.SGD(lr=0.01) if kind == "sgd" else optim.Adam(lr=1e-3)
    prog = ember.compile(nn.Sequential(*layers), loss, optimizer, batch_size=batch, seed=0)
    if sharded:
        prog.shard_optimizer_state()
    rng = np.random.default_rng(world.rank)
    x = rng.standard_normal((batch, widths[0])).astype(np.float32)
    y = rng.standard_normal((batch, 1)).astype(np.float32) if widths[-1] == 1 else rng.integers(0, widths[-1], batch)
    for _ in range(max(3, steps // 5)):
        prog.train_step(x, y, distributed=True)
    comm.Barrier()
    start = time.perf_counter()
    for _ in range(steps):
        prog.train_step(x, y, distributed=True)
    comm.Barrier()
    step = (time.perf_counter() - start) / steps
    exchange = world.gradient_mean(1 + sum(v.size for v in prog.parameters.values()), np.float32)
    comm.Barrier()
    start = time.perf_counter()
    for _ in range(steps):
        exchange.reduce()
    reduce = (time.perf_counter() - start) / steps
    if world.rank == 0:
        reduce = reduce if world.size > 1 else 0.0
        state = prog.optimizer_state_nbytes
        print(json.dumps({"step": step, "allreduce": reduce, "bytes": exchange.local.nbytes, "state": state}))


def measure(mpiexec: str, case: str, ranks: int, steps: int, sharded: bool = False) -> dict:
    command = [mpiexec, "-n", str(ranks), sys.executable, str(Path(__file__).resolve()), "--worker", case]
    command += ["--sharded"] if sharded else []
    result = subprocess.run([*command, "--steps", str(steps)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="R,S-adam,M", help="comma-separated: R, S-adam, M, L")
    parser.add_argument("--steps", type=int, default=0, help="timed steps (default: by case)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs per rank count; the fastest is kept")
    parser.add_argument("--network-gbps", type=float, default=10.0, help="the model's link bandwidth (Gbit/s)")
    parser.add_argument("--latency-us", type=float, default=20.0, help="the model's per-message latency")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--sharded", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.steps, args.sharded)
        return
    mpiexec = shutil.which("mpiexec") or shutil.which("mpiexec", path=str(Path(sys.executable).parent))
    if mpiexec is None:
        raise SystemExit('needs MPI: pip install -e ".[mpi]"')
    cores = len(os.sched_getaffinity(0))
    print(f"one thread per rank, rank r pinned to core r ({cores} cores); per-rank batch as the case's")
    columns = (
        ("ranks", 5),
        ("step ms", 8),
        ("steps/s", 8),
        ("samples/s", 10),
        ("allreduce", 10),
        ("scaling", 8),
        ("opt MB/rank", 12),
    )
    header = f"{'case':<7} " + " ".join(f"{name:>{width}}" for name, width in columns)
    print(header)
    print("-" * len(header))
    models = []
    for case in args.cases.split(","):
        batch = CASES[case][1]
        steps = args.steps or {"R": 2000, "S-adam": 400, "M": 40, "L": 4}[case]
        kinds = [(1, False), (2, False), (2, True)] if cores > 1 else [(1, False)]
        runs = [[measure(mpiexec, case, ranks, steps, sharded) for ranks, sharded in kinds] for _ in range(args.rounds)]
        best = {kind: min((run[i] for run in runs), key=lambda got: got["step"]) for i, kind in enumerate(kinds)}
        one = best[1, False]
        for (ranks, sharded), got in best.items():
            samples = ranks * batch / got["step"]
            scaling = samples / (batch / one["step"]) / ranks
            share = f"{100 * got['allreduce'] / got['step']:.0f}%" if ranks > 1 else "-"
            label = f"{ranks}{'*' if sharded else ''}"
            print(
                f"{case:<7} {label:>5} {got['step'] * 1e3:>8.3f} {1 / got['step']:>8.1f} {samples:>10.0f} "
                f"{share:>10} {scaling:>8.2f} {got['state'] / 1e6:>12.2f}"
            )
        models.append((case, batch, one))
    print("* the optimizer state sharded over the ranks (ZeRO stage 1: Program.shard_optimizer_state)")
    bandwidth = args.network_gbps * 1e9 / 8
    print(f"\nmodel (not measured): ring all-reduce over {args.network_gbps:g} Gbit/s, {args.latency_us:g} us latency")
    print(f"{'case':<7} " + " ".join(f"{f'{n} hosts':>10}" for n in (2, 4, 8, 16, 64)) + "   (scaling efficiency)")
    for case, _, one in models:
        cells = []
        for hosts in (2, 4, 8, 16, 64):
            reduce = 2 * (hosts - 1) / hosts * one["bytes"] / bandwidth + 2 * (hosts - 1) * args.latency_us * 1e-6
            cells.append(f"{one['step'] / (one['step'] + reduce):>10.2f}")
        print(f"{case:<7} " + " ".join(cells))


if __name__ == "__main__":
    main()
