"""The training loop behind `Program.fit`: shuffled minibatches, optional
validation after each epoch, a history of metrics, and a progress bar."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from ..ir import ConfigError


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


def minibatches(rows: int, options: FitOptions, rng: np.random.Generator) -> list[np.ndarray]:
    """Index arrays of one epoch's minibatches (shuffled when asked)."""
    order = rng.permutation(rows) if options.shuffle else np.arange(rows)
    stop = rows - rows % options.batch_size if options.drop_last else rows
    return [order[i : i + options.batch_size] for i in range(0, stop, options.batch_size)]


Arrays = dict[str, np.ndarray]
"""A data set: arrays of the same number of rows, by argument name."""


def fit_loop(
    train_batch: Callable[[Arrays], float],
    evaluate: Callable[[Arrays], dict[str, float]] | None,
    data: Arrays,
    validation: Arrays | None,
    options: FitOptions,
    rng: np.random.Generator,
    train_metrics: Callable[[], dict[str, float]] | None = None,
) -> dict[str, list[float]]:
    """Train for `options.epochs` epochs on minibatches of the rows of
    `data` (inputs and targets); return the history: `loss` (mean training
    loss per epoch, weighted by batch rows), `seconds` (training time per
    epoch) and, with validation data, `val_loss` (and `val_accuracy` for
    classification losses, and per-output metrics for several outputs).
    `train_metrics`, when given, is called after each epoch for metrics of
    the training data, kept under their own names."""
    history: dict[str, list[float]] = {"loss": [], "seconds": []}
    rows_total = next(iter(data.values())).shape[0]
    batches_per_epoch = rows_total // options.batch_size if options.drop_last else -(-rows_total // options.batch_size)
    with tqdm(total=options.epochs * batches_per_epoch, disable=not options.progress, unit="batch") as bar:
        for epoch in range(options.epochs):
            bar.set_description(f"epoch {epoch + 1}/{options.epochs}")
            start = time.perf_counter()
            total, rows = 0.0, 0
            for index in minibatches(rows_total, options, rng):
                loss = train_batch({name: array[index] for name, array in data.items()})
                total += loss * len(index)
                rows += len(index)
                bar.update(1)
            history["seconds"].append(time.perf_counter() - start)
            history["loss"].append(total / max(rows, 1))
            postfix = {"loss": f"{history['loss'][-1]:.4g}"}
            for name, value in (train_metrics() if train_metrics else {}).items():
                history.setdefault(name, []).append(value)
            if validation is not None and evaluate is not None:
                for name, value in evaluate(validation).items():
                    history.setdefault(f"val_{name}", []).append(value)
                    postfix[f"val_{name}"] = f"{value:.4g}"
            bar.set_postfix(postfix)
    return history
