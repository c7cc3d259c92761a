"""Run under `mpiexec -n N`: fit(distributed=True) with batch b on every
rank trains as one process's fit with batch N*b over the same shuffled
epochs (float64: equal to round-off); the history is the same on every
rank; only rank 0 writes checkpoints. Rank 0 prints what it checked."""

import sys
from pathlib import Path

import numpy as np

import ember
import ember.distributed as dist
from ember import nn, optim
from ember.callbacks import ModelCheckpoint

ROWS, BATCH, EPOCHS = 60, 8, 3


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
    history = shared.fit(
        x,
        y,
        epochs=EPOCHS,
        batch_size=BATCH,
        distributed=True,
        progress=False,
        callbacks=[checkpoint],
        metrics=["accuracy"],
    )
    alone = program()
    expected = alone.fit(x, y, epochs=EPOCHS, batch_size=BATCH * world.size, progress=False, metrics=["accuracy"])
    worst = max(float(np.abs(shared.parameters[k] - alone.parameters[k]).max()) for k in alone.parameters)
    losses = np.abs(np.subtract(history["loss"], expected["loss"])).max()
    everywhere = world.comm.allgather(history["loss"])
    ok = worst < 1e-12 and losses < 1e-12 and all(h == everywhere[0] for h in everywhere)
    if world.rank == 0:
        saved = sorted(p.name for p in directory.iterdir())
        print(f"ranks {world.size}: parameter difference {worst:.1e}, loss difference {losses:.1e}, saved {saved}")
        print("ok" if ok else "MISMATCH")
    return 0 if not world.any(not ok) else 1


if __name__ == "__main__":
    sys.exit(main())
