"""Callbacks for `Program.fit`, with Keras' names, arguments and rules:
`Callback` (the base class), `EarlyStopping` and `ModelCheckpoint`.

fit calls each callback's hooks in the order given: `on_train_begin`,
then per epoch `on_epoch_begin`, `on_batch_begin`/`on_batch_end` (or under
Keras' other names `on_train_batch_begin`/`_end`) around each step and
`on_epoch_end` after validation, and `on_train_end`. Epochs
and batches count from 0 as in Keras. A callback stops training by setting
`self.program.stop_training = True` (Keras' `model.stop_training`): fit
leaves the epoch after the current step, validates it, ends it and stops."""

from __future__ import annotations

import inspect
import numbers
import os
import re
import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from .ir import ConfigError
from .runtime.training import Events, Logs

if TYPE_CHECKING:
    from .program import Program

__all__ = ["Callback", "EarlyStopping", "ModelCheckpoint"]

MODES = ("auto", "min", "max")
LOWER_IS_BETTER = frozenset({"loss", "mae", "mse", "rmse"})
HIGHER_IS_BETTER = frozenset({"accuracy", "top_k_accuracy", "r2", "f1"})


class Callback:
    """The base class of fit's callbacks: override the hooks you need.
    `self.program` is the Program being fitted (set by fit before
    `on_train_begin`); `logs` are the epoch's entries of the history
    (`loss`, metrics, `val_*`, `lr`, `seconds`) or, per batch, `loss`: the
    mean training loss of the epoch so far."""

    program: Program | None = None

    def set_program(self, program: Program) -> None:
        self.program = program

    def on_train_begin(self, logs: Logs | None = None) -> None:
        """Before the first epoch."""

    def on_train_end(self, logs: Logs | None = None) -> None:
        """After the last epoch; `logs` are the last epoch's."""

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        """Before the first step of `epoch`."""

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        """After `epoch`'s steps and its validation."""

    def on_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        """Before step `batch` of the epoch."""

    def on_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        """After step `batch` of the epoch."""

    def on_train_batch_begin(self, batch: int, logs: Logs | None = None) -> None:
        """Keras' name for `on_batch_begin`, which it calls: override either."""
        self.on_batch_begin(batch, logs)

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        """Keras' name for `on_batch_end`, which it calls: override either."""
        self.on_batch_end(batch, logs)


class MonitorCallback(Callback):
    """A callback that follows one logged quantity: Keras' rules for
    `mode` and improvement. In `"auto"` mode a loss or an error (`mae`,
    `mse`, `rmse`) should fall and `accuracy`, `top_k_accuracy`, `r2`, `f1`
    rise (with or without `val_` and an output number); for other names
    pass `mode="min"` or `"max"`. A value improves on a reference when it
    beats it by more than `min_delta`."""

    def __init__(self, monitor: str, mode: str, min_delta: float = 0.0) -> None:
        if not isinstance(monitor, str):
            raise ConfigError(f"monitor must be the name of a logged quantity, got {monitor!r}")
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(map(repr, MODES))}, got {mode!r}")
        if not isinstance(min_delta, numbers.Real) or isinstance(min_delta, bool):
            raise ConfigError(f"min_delta must be a number, got {min_delta!r}")
        self.monitor = monitor
        self.mode = mode
        self.min_delta = abs(min_delta)
        self.lower_is_better = _lower_is_better(monitor, mode)

    def _is_improvement(self, value: float, reference: float) -> bool:
        if self.lower_is_better:
            return value + self.min_delta < reference
        return value - self.min_delta > reference

    def _worst(self) -> float:
        return np.inf if self.lower_is_better else -np.inf

    def _monitored(self, logs: Logs | None) -> float | None:
        """The monitored value in `logs`, or None (with a warning) if absent."""
        value = (logs or {}).get(self.monitor)
        if value is None:
            warnings.warn(
                f"{type(self).__name__} monitors {self.monitor!r}, which is not logged; "
                f"logged: {', '.join(logs or {}) or 'nothing'}",
                stacklevel=3,
            )
        return value


def _check_count(name: str, value: Any) -> None:
    """`value` must count epochs: an integer >= 0."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"{name} must be an integer >= 0 (epochs), got {value!r}")


def _lower_is_better(monitor: str, mode: str) -> bool:
    if mode != "auto":
        return mode == "min"
    name = re.sub(r"\d+$", "", monitor.removeprefix("val_"))
    if name in LOWER_IS_BETTER or name in HIGHER_IS_BETTER:
        return name in LOWER_IS_BETTER
    raise ConfigError(
        f"cannot tell whether {monitor!r} should be minimized or maximized: "
        'pass mode="min" (lower is better) or mode="max" (higher is better)'
    )


class EarlyStopping(MonitorCallback):
    """Stop training when `monitor` has stopped improving, as Keras does.

    After epoch `start_from_epoch` onwards, each epoch that does not improve
    on the best value so far by more than `min_delta` counts one; training
    stops at the end of the epoch where the count reaches `patience` (never
    after the first epoch). An improvement resets the count, unless
    `baseline` is given and the value does not also improve on it. With
    `restore_best_weights`, the parameters and buffers of the best epoch's
    end (the first monitored epoch's if none improved) are loaded at the end
    of training, whether it stopped early or not. `stopped_epoch` and
    `best_epoch` count from 0; `best` is the best value. Each fit starts
    afresh."""

    def __init__(
        self,
        monitor: str = "val_loss",
        min_delta: float = 0,
        patience: int = 0,
        verbose: int = 0,
        mode: str = "auto",
        baseline: float | None = None,
        restore_best_weights: bool = False,
        start_from_epoch: int = 0,
    ) -> None:
        super().__init__(monitor, mode, min_delta)
        _check_count("patience", patience)
        _check_count("start_from_epoch", start_from_epoch)
        self.patience = patience
        self.verbose = verbose
        self.baseline = baseline
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch
        self.on_train_begin()

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.wait = 0
        self.stopped_epoch = 0
        self.best: float = self._worst()
        self.best_epoch = 0
        self.best_weights: dict[str, np.ndarray] | None = None

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        current = self._monitored(logs)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights, self.best_epoch = self._weights(), epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self._weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.program.stop_training = True

    def on_train_end(self, logs: Logs | None = None) -> None:
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.program.load_state_dict(self.best_weights)

    def _weights(self) -> dict[str, np.ndarray]:
        return dict(self.program.state_dict())


class ModelCheckpoint(MonitorCallback):
    """Save the program (`Program.save`: atomic, loadable by `ember.load`)
    during training, as Keras does.

    `filepath` may hold format fields: `{epoch}` (counted from 1), `{batch}`
    (from 1, when saving every `save_freq` batches) and any logged quantity
    (`"ckpt-{epoch:02d}-{val_loss:.3f}.npz"`); missing directories are
    made. `save_freq="epoch"` saves after each epoch, an integer after that
    many steps. With `save_best_only`, it saves only when `monitor` improves
    on the best value seen (or on `initial_value_threshold` first), so a
    fixed `filepath` always holds the best program; the best value carries
    over to later fits with this callback."""

    def __init__(
        self,
        filepath: str | os.PathLike,
        monitor: str = "val_loss",
        verbose: int = 0,
        save_best_only: bool = False,
        *,
        mode: str = "auto",
        save_freq: str | int = "epoch",
        initial_value_threshold: float | None = None,
    ) -> None:
        super().__init__(monitor, mode)
        if not isinstance(filepath, str | os.PathLike) or not os.fspath(filepath):
            raise ConfigError(f"filepath must be a non-empty str or os.PathLike, got {filepath!r}")
        if save_freq != "epoch" and (not isinstance(save_freq, int) or isinstance(save_freq, bool) or save_freq < 1):
            raise ConfigError(f'save_freq must be "epoch" or an integer >= 1 (steps), got {save_freq!r}')
        self.filepath = os.fspath(filepath)
        self.verbose = verbose
        self.save_best_only = save_best_only
        self.save_freq = save_freq
        self.best: float = self._worst() if initial_value_threshold is None else initial_value_threshold
        self._epoch = 0
        self._batches_since_save = 0

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        self._epoch = epoch

    def on_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        if self.save_freq == "epoch":
            return
        self._batches_since_save += 1
        if self._batches_since_save >= self.save_freq:
            self._batches_since_save = 0
            self._save(self._epoch, batch, logs)

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if self.save_freq == "epoch":
            self._save(epoch, None, logs)

    def _save(self, epoch: int, batch: int | None, logs: Logs | None) -> None:
        path = self._path(epoch, batch, logs or {})
        if not self._should_save(epoch, logs):
            return
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        self.program.save(path)
        if self.verbose > 0:
            print(f"Epoch {epoch + 1}: saved the program to {path}")

    def _should_save(self, epoch: int, logs: Logs | None) -> bool:
        if not self.save_best_only:
            return True
        current = self._monitored(logs)
        if current is None:
            return True  # as Keras: without the value, save every time
        improved = self._is_improvement(current, self.best)
        if self.verbose > 0:
            change = "improved" if improved else "did not improve"
            print(f"Epoch {epoch + 1}: {self.monitor} {change} from {self.best:.5f}: {current:.5f}")
        if improved:
            self.best = current
        return improved

    def _path(self, epoch: int, batch: int | None, logs: Logs) -> str:
        fields = {**logs, "epoch": epoch + 1}
        if batch is not None:
            fields["batch"] = batch + 1
        try:
            return self.filepath.format(**fields)
        except (KeyError, IndexError, ValueError) as e:
            raise ConfigError(
                f"cannot fill in the checkpoint path {self.filepath!r} ({type(e).__name__}: {e}); "
                f"its fields can be epoch{', batch' if batch is not None else ''} and {', '.join(logs)}"
            ) from None


class SchedulerStep(Callback):
    """Steps a learning-rate scheduler after each epoch or each step. A
    scheduler whose `step` requires an argument (such as
    `ReduceLROnPlateau.step(metrics)`) gets the monitored value: `val_loss`
    with validation data, else the epoch's training `loss` (per step: the
    epoch's mean training loss so far)."""

    def __init__(self, scheduler: Any, interval: str, monitor: str) -> None:
        if not callable(getattr(scheduler, "step", None)):
            raise ConfigError(
                f"lr_scheduler must have a step() method (such as ember.optim.lr_scheduler.StepLR), "
                f"got {type(scheduler).__name__}"
            )
        self.scheduler = scheduler
        self.interval = interval
        self.monitor = monitor
        self.takes_metric = _step_takes_metric(scheduler.step)

    def on_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        if self.interval == "step":
            self._step(logs or {}, "loss")

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if self.interval == "epoch":
            self._step(logs or {}, self.monitor)

    def _step(self, logs: Logs, monitor: str) -> None:
        if self.takes_metric:
            self.scheduler.step(logs[monitor])
        else:
            self.scheduler.step()


def _step_takes_metric(step: Any) -> bool:
    """Whether `step` has a parameter that must be given (the metric)."""
    try:
        parameters = inspect.signature(step).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return any(p.kind in positional and p.default is inspect.Parameter.empty for p in parameters)


class CallbackList(Events):
    """fit's events delivered to callbacks, in order, with the program set."""

    def __init__(self, program: Program, callbacks: Iterable[Callback]) -> None:
        self.program = program
        self.callbacks = list(callbacks)
        for callback in self.callbacks:
            if not isinstance(callback, Callback):
                raise ConfigError(
                    f"callbacks must be ember.callbacks.Callback instances, got {type(callback).__name__}"
                )
            callback.set_program(program)

    def train_begin(self) -> None:
        self.program.stop_training = False
        for callback in self.callbacks:
            callback.on_train_begin({})

    def epoch_begin(self, epoch: int) -> None:
        for callback in self.callbacks:
            callback.on_epoch_begin(epoch, {})

    def batch_begin(self, batch: int) -> None:
        for callback in self.callbacks:
            callback.on_train_batch_begin(batch, {})

    def batch_end(self, batch: int, logs: Logs) -> None:
        for callback in self.callbacks:
            callback.on_train_batch_end(batch, dict(logs))

    def epoch_end(self, epoch: int, logs: Logs) -> None:
        for callback in self.callbacks:
            callback.on_epoch_end(epoch, dict(logs))

    def train_end(self, logs: Logs) -> None:
        for callback in self.callbacks:
            callback.on_train_end(dict(logs))

    def stop(self) -> bool:
        return bool(self.program.stop_training)
