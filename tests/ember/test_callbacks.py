"""EarlyStopping and ModelCheckpoint on scripted metric sequences, against
Keras' rules worked out by hand, and the order of callback hooks.

The loop is fit's own (`fit_loop` with a `CallbackList`); the program is a
stand-in whose "weights" are the number of epochs trained, so a restored
weight names the epoch it came from."""

from collections.abc import Sequence

import numpy as np
import pytest

import ember
from ember.callbacks import Callback, CallbackList, EarlyStopping, ModelCheckpoint
from ember.runtime.training import FitOptions, fit_loop

DATA = {"x": np.zeros((4, 1)), "y": np.zeros(4)}
"""4 rows: one batch per epoch in batches of 4, two in batches of 2."""


class Trained:
    """A stand-in Program: its state is how many steps it has taken."""

    def __init__(self) -> None:
        self.steps = 0
        self.stop_training = False
        self.loaded: list[float] = []

    def train_batch(self, batch: dict[str, np.ndarray]) -> float:
        self.steps += 1
        return 1.0

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"w": np.array(float(self.steps))}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.loaded.append(float(state["w"]))
        self.steps = int(state["w"])


def run(values: Sequence[float], callbacks: Sequence[Callback], monitor: str = "val_loss", batch_size: int = 4):
    """fit on DATA for len(values) epochs whose `monitor` is values[epoch];
    returns the stand-in program and the history."""
    program = Trained()
    scripted = iter(values)

    def evaluate(batch: dict[str, np.ndarray]) -> dict[str, float]:
        return {monitor.removeprefix("val_"): next(scripted)}

    options = FitOptions(epochs=len(values), batch_size=batch_size, shuffle=False, drop_last=False, progress=False)
    events = CallbackList(program, callbacks)
    history = fit_loop(program.train_batch, evaluate, DATA, DATA, options, np.random.default_rng(0), events)
    return program, history


# -- EarlyStopping: which epoch it stops at ----------------------------------
@pytest.mark.parametrize(
    ("values", "settings", "epochs_run", "best_epoch"),
    [
        # best 1.0, 0.9; then 2 epochs without improvement: stop after epoch 3
        ([1.0, 0.9, 0.95, 0.96, 0.97, 0.5], {"patience": 2}, 4, 1),
        # patience 0: the first epoch without improvement stops
        ([1.0, 1.1, 0.5, 0.4], {"patience": 0}, 2, 0),
        # equal is no improvement
        ([1.0, 0.9, 0.8, 0.8, 0.1], {"patience": 0}, 4, 2),
        # never stops after the first epoch, even with nothing to beat
        ([1.0], {"patience": 0}, 1, 0),
        # min_delta 0.1: 0.95 and 0.8, 0.79 are no improvement on 1.0, 0.85
        ([1.0, 0.95, 0.85, 0.8, 0.79, 0.1], {"patience": 2, "min_delta": 0.1}, 5, 2),
        # a negative min_delta counts as its absolute value (Keras takes abs)
        ([1.0, 0.95, 0.85, 0.8, 0.79, 0.1], {"patience": 2, "min_delta": -0.1}, 5, 2),
        # mode max: 0.6 then no rise for 2 epochs
        ([0.5, 0.6, 0.6, 0.55, 0.9], {"patience": 2, "mode": "max"}, 4, 1),
        # mode min on the same values: 0.5 is best, no fall for 2 epochs
        ([0.5, 0.6, 0.6, 0.55, 0.9], {"patience": 2, "mode": "min"}, 3, 0),
        # start_from_epoch 2: epochs 0 and 1 are not looked at
        ([0.1, 0.2, 0.3, 0.4, 0.5], {"patience": 1, "start_from_epoch": 2}, 4, 2),
        # baseline 0.5: improvements that miss it do not reset the wait, but
        # an improving epoch never stops; the first non-improving one does
        ([0.9, 0.8, 0.7, 0.6, 0.65, 0.1], {"patience": 3, "baseline": 0.5}, 5, 3),
        # baseline never reached: stops after `patience` epochs
        ([0.9, 0.95, 0.97, 0.1], {"patience": 2, "baseline": 0.5}, 2, 0),
        # beating the baseline resets the wait as usual
        ([0.9, 0.4, 0.45, 0.46, 0.1], {"patience": 2, "baseline": 0.5}, 4, 1),
    ],
)
def test_early_stopping_stops_where_keras_does(values, settings, epochs_run, best_epoch):
    stopper = EarlyStopping(restore_best_weights=True, **settings)
    program, history = run(values, [stopper])
    assert len(history["loss"]) == epochs_run
    assert history["val_loss"] == values[:epochs_run]
    assert stopper.stopped_epoch == (epochs_run - 1 if epochs_run < len(values) else 0)
    assert stopper.best_epoch == best_epoch
    # the weights at the end of the best epoch: best_epoch + 1 steps taken
    assert program.loaded == [best_epoch + 1]
    assert program.steps == best_epoch + 1


def test_early_stopping_auto_mode_follows_the_name():
    _, history = run([0.5, 0.6, 0.6, 0.55, 0.9], [EarlyStopping("val_accuracy", patience=2)], "val_accuracy")
    assert len(history["val_accuracy"]) == 4  # accuracy should rise
    _, history = run([0.5, 0.6, 0.6, 0.55, 0.9], [EarlyStopping("val_mae", patience=2)], "val_mae")
    assert len(history["val_mae"]) == 3  # an error should fall
    with pytest.raises(ember.ConfigError, match=r"cannot tell whether 'val_custom'.*mode=\"min\""):
        EarlyStopping("val_custom")


def test_early_stopping_monitors_the_training_loss():
    stopper = EarlyStopping("loss", patience=1)
    _, history = run([5.0, 4.0, 3.0], [stopper])  # the training loss is 1.0 every epoch
    assert len(history["loss"]) == 2
    assert stopper.best == 1.0


def test_restore_best_weights_also_when_training_runs_to_the_end():
    """Keras 3 restores the best epoch's weights at the end of training,
    whether or not it stopped early."""
    stopper = EarlyStopping(patience=5, restore_best_weights=True)
    program, history = run([1.0, 0.5, 0.7], [stopper])
    assert len(history["loss"]) == 3
    assert stopper.stopped_epoch == 0
    assert program.loaded == [2.0]


def test_without_restore_best_weights_the_last_weights_stay():
    program, history = run([1.0, 0.9, 0.95, 0.96, 0.97], [EarlyStopping(patience=2)])
    assert len(history["loss"]) == 4
    assert program.loaded == []
    assert program.steps == 4


def test_early_stopping_without_its_metric_warns_and_never_stops():
    program = Trained()
    options = FitOptions(epochs=3, batch_size=4, shuffle=False, drop_last=False, progress=False)
    events = CallbackList(program, [EarlyStopping(patience=0)])
    with pytest.warns(UserWarning, match="monitors 'val_loss', which is not logged; logged: loss, seconds"):
        history = fit_loop(program.train_batch, None, DATA, None, options, np.random.default_rng(0), events)
    assert len(history["loss"]) == 3


def test_an_early_stopping_callback_starts_afresh_in_each_fit():
    stopper = EarlyStopping(patience=1, restore_best_weights=True)
    run([0.1, 0.2, 0.3], [stopper])
    assert (stopper.best, stopper.stopped_epoch) == (0.1, 1)
    program, history = run([0.9, 0.8, 0.85, 0.9], [stopper])
    assert len(history["loss"]) == 3
    assert (stopper.best, stopper.best_epoch, program.loaded) == (0.8, 1, [2.0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "maximum"}, "mode must be one of 'auto', 'min', 'max', got 'maximum'"),
        ({"patience": -1}, r"patience must be an integer >= 0 \(epochs\), got -1"),
        ({"patience": 1.5}, "patience must be an integer >= 0"),
        ({"start_from_epoch": None}, "start_from_epoch must be an integer >= 0"),
        ({"monitor": 3}, "monitor must be the name of a logged quantity, got 3"),
        ({"min_delta": "0.1"}, "min_delta must be a number, got '0.1'"),
    ],
)
def test_bad_early_stopping_arguments(kwargs, message):
    with pytest.raises(ember.ConfigError, match=message):
        EarlyStopping(**kwargs)


# -- callbacks: hooks, order, stopping ----------------------------------------
class Recorder(Callback):
    def __init__(self, name: str, calls: list[str]) -> None:
        self.name, self.calls = name, calls

    def on_train_begin(self, logs=None):
        self.calls.append(f"{self.name} train_begin")

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(f"{self.name} epoch_begin {epoch}")

    def on_batch_begin(self, batch, logs=None):
        self.calls.append(f"{self.name} batch_begin {batch}")

    def on_batch_end(self, batch, logs=None):
        self.calls.append(f"{self.name} batch_end {batch} {sorted(logs)}")

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(f"{self.name} epoch_end {epoch} {sorted(logs)}")

    def on_train_end(self, logs=None):
        self.calls.append(f"{self.name} train_end {sorted(logs)}")


def test_hooks_run_in_order_for_each_callback():
    calls: list[str] = []
    run([0.5], [Recorder("a", calls), Recorder("b", calls)], batch_size=2)
    epoch_logs = "['loss', 'seconds', 'val_loss']"
    assert calls == [
        "a train_begin",
        "b train_begin",
        "a epoch_begin 0",
        "b epoch_begin 0",
        "a batch_begin 0",
        "b batch_begin 0",
        "a batch_end 0 ['loss']",
        "b batch_end 0 ['loss']",
        "a batch_begin 1",
        "b batch_begin 1",
        "a batch_end 1 ['loss']",
        "b batch_end 1 ['loss']",
        f"a epoch_end 0 {epoch_logs}",
        f"b epoch_end 0 {epoch_logs}",
        f"a train_end {epoch_logs}",
        f"b train_end {epoch_logs}",
    ]


class KerasNames(Callback):
    """Overrides the batch hooks under Keras' other names."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def on_train_batch_begin(self, batch, logs=None):
        self.calls.append(f"begin {batch}")

    def on_train_batch_end(self, batch, logs=None):
        self.calls.append(f"end {batch} {logs}")


def test_batch_hooks_answer_to_keras_train_batch_names():
    callback = KerasNames()
    run([0.5], [callback], batch_size=2)
    assert callback.calls == ["begin 0", "end 0 {'loss': 1.0}", "begin 1", "end 1 {'loss': 1.0}"]


class StopAt(Callback):
    """Sets stop_training at (epoch, batch), or at an epoch's end (batch None)."""

    def __init__(self, epoch: int, batch: int | None) -> None:
        self.epoch, self.batch, self.current = epoch, batch, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_batch_end(self, batch, logs=None):
        if (self.current, batch) == (self.epoch, self.batch):
            self.program.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.batch is None and epoch == self.epoch:
            self.program.stop_training = True


def test_stop_training_after_a_step_ends_that_epoch_with_its_validation():
    """As Keras: the epoch is cut after the step, validated, ended, and training stops."""
    program, history = run([0.5, 0.4, 0.3, 0.2], [StopAt(1, 0)], batch_size=2)
    assert program.steps == 2 + 1
    assert history["val_loss"] == [0.5, 0.4]


def test_stop_training_at_an_epoch_end():
    program, history = run([0.5, 0.4, 0.3, 0.2], [StopAt(2, None)], batch_size=2)
    assert program.steps == 6
    assert len(history["loss"]) == 3


def test_callbacks_must_be_callback_instances():
    with pytest.raises(ember.ConfigError, match=r"must be ember\.callbacks\.Callback instances, got function"):
        CallbackList(Trained(), [lambda epoch, logs: None])


# -- ModelCheckpoint -----------------------------------------------------------
class Saved(Trained):
    """A stand-in program that records what it saves: (path, steps)."""

    def __init__(self) -> None:
        super().__init__()
        self.saves: list[tuple[str, int]] = []

    def save(self, path: str) -> None:
        self.saves.append((path, self.steps))


def saves(values, checkpoint, monitor="val_loss", batch_size=4):
    program = Saved()
    scripted = iter(values)
    options = FitOptions(epochs=len(values), batch_size=batch_size, shuffle=False, drop_last=False, progress=False)
    fit_loop(
        program.train_batch,
        lambda batch: {monitor.removeprefix("val_"): next(scripted)},
        DATA,
        DATA,
        options,
        np.random.default_rng(0),
        CallbackList(program, [checkpoint]),
    )
    return program.saves


def test_checkpoint_every_epoch_formats_the_path(tmp_path):
    path = str(tmp_path / "ckpt-{epoch:02d}-{val_loss:.2f}.npz")
    assert saves([0.5, 0.75, 0.25], ModelCheckpoint(path)) == [
        (str(tmp_path / "ckpt-01-0.50.npz"), 1),
        (str(tmp_path / "ckpt-02-0.75.npz"), 2),
        (str(tmp_path / "ckpt-03-0.25.npz"), 3),
    ]


def test_checkpoint_best_only_saves_the_improvements(tmp_path):
    path = str(tmp_path / "best.npz")
    assert saves([0.5, 0.75, 0.25, 0.25, 0.1], ModelCheckpoint(path, save_best_only=True)) == [
        (path, 1),
        (path, 3),
        (path, 5),
    ]


def test_checkpoint_best_only_in_max_mode_and_from_a_threshold(tmp_path):
    path = str(tmp_path / "{epoch}.npz")
    checkpoint = ModelCheckpoint(path, "val_accuracy", save_best_only=True, initial_value_threshold=0.55)
    assert saves([0.5, 0.6, 0.58, 0.7], checkpoint, "val_accuracy") == [
        (str(tmp_path / "2.npz"), 2),
        (str(tmp_path / "4.npz"), 4),
    ]
    # the best value carries over to the next fit, as in Keras
    assert saves([0.65, 0.71], checkpoint, "val_accuracy") == [(str(tmp_path / "2.npz"), 2)]


def test_checkpoint_every_n_steps_counts_across_epochs(tmp_path):
    """4 rows in batches of 2 for 3 epochs: 6 steps; every 4th step saves."""
    path = str(tmp_path / "e{epoch}-b{batch}.npz")
    assert saves([0.5, 0.4, 0.3], ModelCheckpoint(path, save_freq=4), batch_size=2) == [
        (str(tmp_path / "e2-b2.npz"), 4),
    ]
    assert saves([0.5, 0.4, 0.3], ModelCheckpoint(path, save_freq=1), batch_size=2)[:3] == [
        (str(tmp_path / "e1-b1.npz"), 1),
        (str(tmp_path / "e1-b2.npz"), 2),
        (str(tmp_path / "e2-b1.npz"), 3),
    ]


def test_checkpoint_makes_missing_directories(tmp_path):
    saves([0.5], ModelCheckpoint(tmp_path / "a" / "b" / "{epoch}.npz"))
    assert (tmp_path / "a" / "b").is_dir()


def test_checkpoint_path_with_an_unknown_field(tmp_path):
    checkpoint = ModelCheckpoint(str(tmp_path / "{val_f1}.npz"))
    with pytest.raises(ember.ConfigError, match=r"cannot fill in the checkpoint path .*its fields can be epoch and"):
        saves([0.5], checkpoint)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"save_freq": 0}, 'save_freq must be "epoch" or an integer >= 1'),
        ({"save_freq": "batch"}, 'save_freq must be "epoch" or an integer >= 1'),
        ({"filepath": ""}, "filepath must be a non-empty str or os.PathLike"),
        ({"mode": "up"}, "mode must be one of"),
    ],
)
def test_bad_checkpoint_arguments(tmp_path, kwargs, message):
    with pytest.raises(ember.ConfigError, match=message):
        ModelCheckpoint(**{"filepath": str(tmp_path / "x.npz"), **kwargs})
