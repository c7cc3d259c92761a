"""Run under `mpiexec -n N`: with the optimizer state sharded over the
ranks (ZeRO stage 1, `shard_optimizer_state`), N ranks each taking b rows
still end with the parameters of one process taking all N*b rows (float64:
to round-off), for SGD with momentum, Adam, and AdamW with clipping and a
schedule, on both backends; each rank keeps only its share of the state;
what needs the whole state refuses until `gather_optimizer_state`, which
brings back the state one process has. Prints one line per case on rank 0;
exits non-zero on a mismatch."""

import dataclasses
import sys
from pathlib import Path

import numpy as np

import ember
import ember.distributed as dist
from ember import nn, optim
from ember.callbacks import ModelCheckpoint
from ember.ir import ConfigError
from ember.optim import lr_scheduler

STEPS, ROWS = 5, 8


def program(optimizer, backend="native", **options):
    model = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 12), nn.Tanh(), nn.Linear(12, 3))
    return ember.compile(model, nn.CrossEntropyLoss(), optimizer, dtype="float64", seed=1, backend=backend, **options)


CASES = {
    "sgd-momentum": lambda: program(optim.SGD(lr=0.1, momentum=0.9)),
    "adam": lambda: program(optim.Adam(lr=0.01)),
    "adamw-clipped-scheduled": lambda: program(
        optim.AdamW(lr=0.01, weight_decay=0.1),
        clip_grad_norm=0.5,
        lr_schedule=lr_scheduler.StepLR.compiled(step_size=2, gamma=0.5),
    ),
    "adam-reference": lambda: program(optim.Adam(lr=0.01), backend="reference"),
}
CASES["adam-through-mpi"] = CASES["adam"]

OVER_MPI = {"adam-through-mpi"}
"""Cases whose gradients and parameters go through MPI's Allreduce and
broadcasts, as across hosts (the others share memory on this host)."""


def refuses(action) -> bool:
    try:
        action()
    except ConfigError as error:
        return "gather_optimizer_state" in str(error)
    return False


def refuses_the_whole_state(prog: ember.Program, x: np.ndarray, y: np.ndarray) -> bool:
    """What needs the whole optimizer state raises, and writes nothing."""
    path = Path(f"never-written-{prog.seed}.npz")
    actions = [
        lambda: prog.optimizer_state,
        lambda: prog.train_step(x, y),
        lambda: prog.save(path),
        lambda: prog.fit(x, y, distributed=True, callbacks=[ModelCheckpoint(path)], progress=False),
    ]
    return all(refuses(action) for action in actions) and not path.exists()


def largest_difference(mine: dict, whole: dict) -> float:
    assert mine.keys() == whole.keys(), (mine.keys(), whole.keys())
    return max(float(np.abs(mine[k] - whole[k]).max()) for k in whole)


def main() -> int:
    world = dist.init()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((STEPS + 1, world.size * ROWS, 5))
    y = rng.integers(0, 3, (STEPS + 1, world.size * ROWS))
    mine = slice(world.rank * ROWS, (world.rank + 1) * ROWS)
    failed = False
    for name, make in CASES.items():
        dist._WORLD = dataclasses.replace(world, one_host=world.one_host and name not in OVER_MPI)
        shared, alone = make(), make()
        whole = sum(v.size for k, v in shared.optimizer_state.items() if k != "step")
        shared.shard_optimizer_state()
        held = sum(shared._shard.state[k].size for k in shared._shard.state.names() if k != "step")
        for step in range(STEPS):
            loss = shared.train_step(x[step, mine], y[step, mine], distributed=True)
            expected = alone.train_step(x[step], y[step])
        worst = largest_difference(shared.state_dict(), alone.state_dict())
        sharded = (
            held < whole
            and sum(world.allgather(held)) == whole  # every piece of state on exactly one rank
            and refuses_the_whole_state(shared, x[0, mine], y[0, mine])
        )
        shared.gather_optimizer_state()
        state = largest_difference(shared.optimizer_state, alone.optimizer_state)
        after = abs(shared.train_step(x[STEPS], y[STEPS]) - alone.train_step(x[STEPS], y[STEPS]))
        ok = worst < 1e-12 and abs(loss - expected) < 1e-12 and sharded and state < 1e-12 and after < 1e-12
        failed |= not ok
        if world.rank == 0:
            print(
                f"{name}: ranks {world.size}, state held {held} of {whole}, largest parameter difference "
                f"{worst:.1e}, gathered state {state:.1e}, {'ok' if ok else 'MISMATCH'}"
            )
    return 1 if world.any(failed) else 0


if __name__ == "__main__":
    sys.exit(main())
