"""Run under `mpiexec -n N`: fit(distributed=True) with batch b on every
rank trains as one process's fit with batch N*b over the same shuffled
epochs (float64: equal to round-off), and its history (training metrics
and validation, which the ranks share out) equals that process's; the
history is the same on every rank; only rank 0 writes checkpoints. Rank 0
prints what it checked."""

import sys
from pathlib import Path

import numpy as np

import ember
import ember.distributed as dist
from ember import nn, optim
from ember.callbacks import ModelCheckpoint

ROWS, BATCH, EPOCHS = 75, 8, 3  # 15 rows held out: a share of 7 and one of 8 on two ranks


def program() -> ember.Program:
    model = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 3))
    return ember.compile(model, nn.CrossEntropyLoss(), optim.Adam(lr=0.01), dtype="float64", seed=7)


def main() -> int:
    world = dist.init()
    directory = Path(sys.argv[1])
    x, y = np.random.default_rng(0).standard_normal((ROWS, 5)), np.random.default_rng(1).integers(0, 3, ROWS)
    shared = program()
    if world.rank != 0:  # other weights here: fit starts from rank 0's
        rng = np.random.default_rng(world.rank)
        shared.set_parameters({k: rng.standard_normal(v.shape) for k, v in shared.parameters.items()})
    checkpoint = ModelCheckpoint(directory / f"rank{world.rank}.npz")
    evaluated = []  # rows this rank's evaluate entry ran
    run = shared._exec.run
    shared._exec.run = lambda graph, inputs, **kw: (
        evaluated.append(len(inputs["x"])) if graph == "evaluate" else None,
        run(graph, inputs, **kw),
    )[1]
    history = shared.fit(
        x,
        y,
        epochs=EPOCHS,
        batch_size=BATCH,
        distributed=True,
        progress=False,
        callbacks=[checkpoint],
        metrics=["accuracy", "f1"],
        validation_split=0.2,
    )
    alone = program()
    expected = alone.fit(
        x,
        y,
        epochs=EPOCHS,
        batch_size=BATCH * world.size,
        progress=False,
        metrics=["accuracy", "f1"],
        validation_split=0.2,
    )
    worst = max(float(np.abs(shared.parameters[k] - alone.parameters[k]).max()) for k in alone.parameters)
    assert sorted(history) == sorted(expected), (sorted(history), sorted(expected))
    measured = [key for key in expected if key not in ("seconds", "lr")]
    losses = max(float(np.abs(np.subtract(history[key], expected[key])).max()) for key in measured)
    everywhere = world.comm.allgather({key: history[key] for key in measured})
    rows_evaluated = sum(world.comm.allgather(sum(evaluated)))
    shared_out = rows_evaluated == EPOCHS * ROWS  # each row once per epoch, not once per rank
    ok = worst < 1e-12 and losses < 1e-12 and all(h == everywhere[0] for h in everywhere) and shared_out
    if world.rank == 0:
        saved = sorted(p.name for p in directory.iterdir())
        print(f"ranks {world.size}: {', '.join(measured)}")
        print(f"parameter difference {worst:.1e}, history difference {losses:.1e}, saved {saved}")
        print(f"rows evaluated by all ranks: {rows_evaluated} (epochs x rows: {EPOCHS * ROWS})")
        print("ok" if ok else "MISMATCH")
    return 0 if not world.any(not ok) else 1


if __name__ == "__main__":
    sys.exit(main())
