"""The training loop behind `Program.fit`: shuffled minibatches, optional
validation after each epoch, events for callbacks and learning-rate
schedulers, a history of metrics, and a progress bar."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..ir import ConfigError

if TYPE_CHECKING:
    from tqdm import tqdm

SCHEDULER_INTERVALS = ("epoch", "step")


@dataclass(frozen=True)
class FitOptions:
    epochs: int
    batch_size: int
    shuffle: bool
    drop_last: bool
    progress: bool

    def __post_init__(self) -> None:
        if not isinstance(self.epochs, int) or isinstance(self.epochs, bool) or self.epochs < 0:
            raise ConfigError(f"epochs must be an integer >= 0, got {self.epochs!r}")
        if not isinstance(self.batch_size, int) or isinstance(self.batch_size, bool) or self.batch_size < 1:
            raise ConfigError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")


def minibatches(
    rows: int, options: FitOptions, rng: np.random.Generator, shard: tuple[int, int] = (0, 1)
) -> list[np.ndarray]:
    """Index arrays of one epoch's minibatches (shuffled when asked). With
    `shard` = (rank, ranks), this rank's: the epoch's order is cut into
    equal shards, rank r taking rows r, r + ranks, ... (padded by wrapping
    around to a multiple of `ranks`, or cut short with `drop_last`, as
    PyTorch's DistributedSampler), so every rank takes as many steps, and
    step j of all ranks together covers the rows that step j of one process
    with `ranks` times the batch size would."""
    order = rng.permutation(rows) if options.shuffle else np.arange(rows)
    rank, ranks = shard
    if ranks > 1:
        whole = rows - rows % ranks if options.drop_last else -(-rows // ranks) * ranks
        order = np.resize(order, whole)[rank::ranks]  # np.resize repeats the order to pad it
    count = len(order)
    stop = count - count % options.batch_size if options.drop_last else count
    return [order[i : i + options.batch_size] for i in range(0, stop, options.batch_size)]


Arrays = dict[str, np.ndarray]
"""A data set: arrays of the same number of rows, by argument name."""

Logs = dict[str, float]


def split_validation(data: Arrays, fraction: Any) -> tuple[Arrays, Arrays]:
    """(training, validation): the last `fraction` of the rows held out, in
    their order and before any shuffling, as Keras' `validation_split`
    (the first floor(rows * (1 - fraction)) rows train)."""
    if not isinstance(fraction, int | float) or isinstance(fraction, bool) or not 0 < fraction < 1:
        raise ConfigError(f"validation_split must be a number in [0, 1), got {fraction!r}")
    rows = next(iter(data.values())).shape[0]
    split = math.floor(rows * (1.0 - fraction))
    if split in (0, rows):
        raise ConfigError(
            f"validation_split={fraction} of {rows} rows leaves {'no training' if split == 0 else 'no validation'} "
            "rows: pass more data or another fraction"
        )
    return {k: v[:split] for k, v in data.items()}, {k: v[split:] for k, v in data.items()}


class Events:
    """What the loop tells the world as it runs: the callbacks' hooks (all
    do nothing here) and whether to stop. `Program.fit` passes the user's
    callbacks and the learning-rate scheduler through one of these."""

    def train_begin(self) -> None:
        """Before the first epoch."""

    def epoch_begin(self, epoch: int) -> None:
        """Before the first step of `epoch` (counted from 0)."""

    def batch_begin(self, batch: int) -> None:
        """Before step `batch` of the epoch (counted from 0)."""

    def batch_end(self, batch: int, logs: Logs) -> None:
        """After step `batch` of the epoch; `logs` holds the epoch's mean
        training loss so far (`loss`)."""

    def epoch_end(self, epoch: int, logs: Logs) -> None:
        """After `epoch`'s steps and validation; `logs` holds the epoch's
        entries of the history."""

    def train_end(self, logs: Logs) -> None:
        """After the last epoch (or the one training stopped after)."""

    def stop(self) -> bool:
        """Whether training stops after the current step."""
        return False


def fit_loop(
    train_batch: Callable[[Arrays], float],
    evaluate: Callable[[Arrays], dict[str, float]] | None,
    data: Arrays,
    validation: Arrays | None,
    options: FitOptions,
    rng: np.random.Generator,
    events: Events | None = None,
    epoch_logs: Callable[[], Logs] | None = None,
    train_metrics: Callable[[Arrays], dict[str, float]] | None = None,
    shard: tuple[int, int] = (0, 1),
) -> dict[str, list[float]]:
    """Train for `options.epochs` epochs on minibatches of the rows of
    `data` (inputs and targets); return the history: `loss` (mean training
    loss per epoch, weighted by batch rows), what `train_metrics` gives on
    `data` after the epoch (but its `loss`), with validation data what
    `evaluate` gives prefixed `val_` (`val_loss`, `val_accuracy`, ...), the
    entries `epoch_logs` gives at the epoch's start (such as `lr`), and
    `seconds` (training time of the epoch).

    As in Keras, when `events` asks to stop, the loop leaves the epoch after
    the current step, still validates and ends that epoch, and stops.
    `shard` = (rank, ranks): train on this rank's share of each epoch (see
    `minibatches`)."""
    events = events or Events()
    history: dict[str, list[float]] = {}
    rows_total = next(iter(data.values())).shape[0]
    # the count alone (unshuffled: the shuffling RNG is not drawn from)
    batches_per_epoch = len(minibatches(rows_total, dataclasses.replace(options, shuffle=False), rng, shard))
    logs: Logs = {}
    events.train_begin()
    from tqdm.auto import tqdm  # here: importing it takes ~50 ms, a quarter of `import ember`

    with tqdm(total=options.epochs * batches_per_epoch, disable=not options.progress, unit="batch") as bar:
        for epoch in range(options.epochs):
            if events.stop():
                break
            bar.set_description(f"epoch {epoch + 1}/{options.epochs}")
            starting = dict(epoch_logs()) if epoch_logs else {}
            events.epoch_begin(epoch)
            start = time.perf_counter()
            batches = minibatches(rows_total, options, rng, shard)
            logs = {"loss": _train_epoch(train_batch, data, batches, events, bar)}
            seconds = time.perf_counter() - start
            if train_metrics is not None:
                logs.update({name: value for name, value in train_metrics(data).items() if name != "loss"})
            if validation is not None and evaluate is not None:
                logs.update({f"val_{name}": value for name, value in evaluate(validation).items()})
            logs.update(starting, seconds=seconds)
            for name, value in logs.items():
                history.setdefault(name, []).append(value)
            bar.set_postfix({name: f"{value:.4g}" for name, value in logs.items() if name != "seconds"})
            events.epoch_end(epoch, dict(logs))
    events.train_end(logs)
    return history or {"loss": [], "seconds": []}


def _train_epoch(
    train_batch: Callable[[Arrays], float], data: Arrays, batches: list[np.ndarray], events: Events, bar: tqdm
) -> float:
    """Train on each minibatch in turn; return the mean loss over the rows
    trained on (0.0 for none)."""
    total, rows = 0.0, 0
    for step, index in enumerate(batches):
        events.batch_begin(step)
        loss = train_batch({name: array[index] for name, array in data.items()})
        total += loss * len(index)
        rows += len(index)
        bar.update(1)
        events.batch_end(step, {"loss": total / rows})
        if events.stop():
            break
    return total / max(rows, 1)
