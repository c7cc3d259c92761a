"""Run under `mpiexec -n N`: N ranks each taking b rows of every batch end
with the parameters of one process taking all N*b rows (float64: equal to
round-off), for SGD, Adam, and AdamW with clipping and a schedule; with
SyncBatchNorm, its running statistics too (the whole batch's).
Prints one line per case on rank 0; exits non-zero on a mismatch."""

import dataclasses
import sys

import numpy as np

import ember
import ember.distributed as dist
from ember import nn, optim
from ember.optim import lr_scheduler

STEPS, ROWS = 6, 8


def program(optimizer, *norm, **options):
    # no bias before a norm: its gradient is 0 but for round-off, which
    # Adam's step would scale up to the size of a real step
    model = nn.Sequential(nn.Linear(5, 16, bias=not norm), *norm, nn.Tanh(), nn.Linear(16, 3))
    return ember.compile(model, nn.CrossEntropyLoss(), optimizer, dtype="float64", seed=1, **options)


CASES = {
    "sgd": lambda: program(optim.SGD(lr=0.1, momentum=0.9)),
    "adam": lambda: program(optim.Adam(lr=0.01)),
    "adamw-clipped-scheduled": lambda: program(
        optim.AdamW(lr=0.01, weight_decay=0.1),
        clip_grad_norm=0.5,
        lr_schedule=lr_scheduler.StepLR.compiled(step_size=2, gamma=0.5),
    ),
    "adam-syncbatchnorm": lambda: program(optim.Adam(lr=0.01), nn.SyncBatchNorm(16)),
    "sgd-syncbatchnorm-cumulative": lambda: program(optim.SGD(lr=0.1), nn.SyncBatchNorm(16, momentum=None)),
    "sgd-syncbatchnorm-reference": lambda: program(optim.SGD(lr=0.1), nn.SyncBatchNorm(16), backend="reference"),
}

OVER_MPI = {"adam-through-mpi-allreduce"}
"""Cases whose gradients are averaged by MPI's Allreduce, as across hosts
(the others share memory on this host)."""
CASES["adam-through-mpi-allreduce"] = CASES["adam"]

PER_RANK = {"adam-batchnorm1d": lambda: program(optim.Adam(lr=0.01), nn.BatchNorm1d(16))}
"""Cases whose ranks normalize by their own rows: they must differ from one process."""


def main() -> int:
    world = dist.init()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((STEPS, world.size * ROWS, 5))
    y = rng.integers(0, 3, (STEPS, world.size * ROWS))
    mine = slice(world.rank * ROWS, (world.rank + 1) * ROWS)
    failed = False
    for name, make in (CASES | PER_RANK).items():
        dist._WORLD = dataclasses.replace(world, one_host=world.one_host and name not in OVER_MPI)
        shared, alone = make(), make()
        for step in range(STEPS):
            loss = shared.train_step(x[step, mine], y[step, mine], distributed=True)
            expected = alone.train_step(x[step], y[step])
        mine_state, whole_state = shared.state_dict(), alone.state_dict()
        worst = max(float(np.abs(mine_state[k] - whole_state[k]).max()) for k in whole_state)
        equal = worst < 1e-12 and abs(loss - expected) < 1e-12
        ok = equal if name in CASES else not equal
        failed |= not ok
        if world.rank == 0:
            verdict = "ok" if ok else "MISMATCH" if name in CASES else "EQUAL"
            print(f"{name}: ranks {world.size}, largest parameter difference {worst:.1e}, {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
