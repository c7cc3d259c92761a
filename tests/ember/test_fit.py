"""Program.fit as Keras users call it: keyword-only options,
validation_split, the history, callbacks on a real program (EarlyStopping
restoring the best parameters, ModelCheckpoint keeping the best program,
stopping from a callback) and learning-rate schedulers stepped per epoch
or per step."""

import itertools

import numpy as np
import pytest

import ember
from ember import nn, optim
from ember.callbacks import Callback, EarlyStopping, ModelCheckpoint

FEATURES = 4


def regressor(lr: float = 0.1, seed: int = 0) -> ember.Program:
    """Linear(4, 2) trained with MSE and plain SGD."""
    model = nn.Sequential(nn.Linear(FEATURES, 2))
    return ember.compile(model, loss=nn.MSELoss(), optimizer=optim.SGD(lr=lr), seed=seed)


class Halving:
    """A stand-in for ember.optim.lr_scheduler's step-counting schedulers:
    each step halves the program's learning rate."""

    def __init__(self, program: ember.Program) -> None:
        self.program = program
        self.steps = 0

    def step(self) -> None:
        self.steps += 1
        self.program.lr = self.program.lr / 2

    def get_last_lr(self) -> list[float]:
        return [self.program.lr]


class Plateau:
    """A stand-in for ReduceLROnPlateau: its step takes the monitored metric."""

    def __init__(self) -> None:
        self.metrics: list[float] = []

    def step(self, metrics: float, epoch: int | None = None) -> None:
        self.metrics.append(metrics)


class Recorder(Callback):
    """Records the parameters and logs at each epoch's end."""

    def __init__(self) -> None:
        self.parameters: list[dict[str, np.ndarray]] = []
        self.logs: list[dict[str, float]] = []

    def on_epoch_end(self, epoch, logs=None):
        self.parameters.append(self.program.parameters)
        self.logs.append(logs)


# -- arguments -------------------------------------------------------------
def test_options_after_y_are_keyword_only(regression):
    prog = regressor()
    with pytest.raises(ember.ConfigError, match=r"fit takes only x and y by position, got 1 more \(32\): .*epochs=10"):
        prog.fit(*regression, 32)
    with pytest.raises(ember.ConfigError, match=r"got 2 more \(5, 32\)"):
        prog.fit(*regression, 5, 32)
    assert prog.optimizer_state["step"] == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"validation_split": 1.0}, r"validation_split must be a number in \[0, 1\), got 1.0"),
        ({"validation_split": -0.2}, "validation_split must be a number in"),
        ({"validation_split": "0.2"}, "validation_split must be a number in"),
        ({"validation_split": 0.99}, "validation_split=0.99 of 50 rows leaves no training rows"),
        ({"scheduler_interval": "batch"}, 'scheduler_interval must be "epoch" or "step", got \'batch\''),
        ({"lr_scheduler": 0.5}, r"lr_scheduler must have a step\(\) method .*got float"),
        ({"callbacks": EarlyStopping()}, "callbacks must be a list of Callback instances, got EarlyStopping"),
        ({"metrics": 3}, "metrics must be a list of names, Metric objects or callables, got 3"),
    ],
)
def test_bad_fit_arguments(regression, kwargs, message):
    prog = regressor()
    with pytest.raises(ember.ConfigError, match=message):
        prog.fit(*regression, progress=False, **kwargs)
    assert prog.optimizer_state["step"] == 0


# -- validation_split and the history -----------------------------------------
def test_validation_split_holds_out_the_last_rows_before_shuffling(regression, assert_same):
    """50 rows, split 0.25: the first floor(37.5) = 37 train, the last 13 validate."""
    x, y = regression
    split, held_out = regressor(), regressor()
    history = split.fit(x, y, epochs=2, batch_size=10, validation_split=0.25, progress=False)
    given = held_out.fit(x[:37], y[:37], epochs=2, batch_size=10, validation_data=(x[37:], y[37:]), progress=False)
    assert_same(split.parameters, held_out.parameters)  # the same rows, the same shuffles
    assert history["val_loss"] == given["val_loss"]
    assert history["val_loss"][-1] == split.evaluate(x[37:], y[37:])["loss"]
    assert split.optimizer_state["step"] == 2 * 4


def test_validation_data_wins_over_validation_split(regression):
    x, y = regression
    prog = regressor()
    history = prog.fit(x, y, epochs=1, validation_data=(x[:5], y[:5]), validation_split=0.5, progress=False)
    assert history["val_loss"][-1] == prog.evaluate(x[:5], y[:5])["loss"]
    assert prog.optimizer_state["step"] == 2  # all 50 rows trained, in batches of 32


class TwoHeads(nn.Module):
    """Two inputs; a class score and a regression value."""

    def __init__(self) -> None:
        self.a, self.b = nn.Linear(4, 8), nn.Linear(2, 8)
        self.classes, self.value = nn.Linear(8, 3), nn.Linear(8, 1)

    def forward(self, a, b):
        h = ember.relu(self.a(a) + self.b(b))
        return self.classes(h), self.value(h)


def test_validation_split_with_several_inputs_and_outputs():
    prog = ember.compile(TwoHeads(), loss=[nn.CrossEntropyLoss(), nn.MSELoss()], optimizer=optim.SGD(lr=0.1))
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(20, 4)).astype(np.float32), rng.normal(size=(20, 2)).astype(np.float32)
    labels, values = rng.integers(0, 3, 20), rng.normal(size=(20, 1)).astype(np.float32)
    history = prog.fit((a, b), (labels, values), epochs=2, batch_size=5, validation_split=0.2, progress=False)
    assert set(history) == {"loss", "lr", "seconds", "val_loss", "val_loss0", "val_accuracy0", "val_loss1"}
    assert history["val_loss"][-1] == prog.evaluate((a[16:], b[16:]), (labels[16:], values[16:]))["loss"]
    assert prog.optimizer_state["step"] == 2 * 4


def test_history_has_one_float_per_epoch_for_each_key(classifier, blobs):
    history = classifier.fit(*blobs, epochs=3, validation_split=0.2, progress=False)
    assert list(history) == ["loss", "val_loss", "val_accuracy", "lr", "seconds"]
    assert all(len(v) == 3 and all(type(f) is float for f in v) for v in history.values())
    assert history["lr"] == [0.05] * 3


# -- learning-rate schedulers --------------------------------------------------
def test_scheduler_steps_after_each_epoch(regression):
    prog = regressor(lr=0.1)
    scheduler = Halving(prog)
    history = prog.fit(*regression, epochs=3, batch_size=20, lr_scheduler=scheduler, progress=False)
    assert scheduler.steps == 3
    assert history["lr"] == [0.1, 0.05, 0.025]
    assert prog.lr == 0.0125


def test_scheduler_steps_after_each_step_with_the_lr_it_set(regression, assert_same):
    """With shuffle off, fit with a per-step schedule equals train_step with
    the lr halved after each step."""
    x, y = regression
    fitted, stepped = regressor(lr=0.2), regressor(lr=0.2)
    scheduler = Halving(fitted)
    history = fitted.fit(
        x, y, epochs=2, batch_size=20, shuffle=False, lr_scheduler=scheduler, scheduler_interval="step", progress=False
    )
    for _ in range(2):
        for start in (0, 20, 40):
            stepped.train_step(x[start : start + 20], y[start : start + 20])
            stepped.lr = stepped.lr / 2
    assert scheduler.steps == 6
    assert history["lr"] == [0.2, 0.2 / 8]
    assert_same(fitted.parameters, stepped.parameters)


def test_a_scheduler_whose_step_takes_a_metric_gets_the_validation_loss(regression):
    prog = regressor()
    scheduler = Plateau()
    history = prog.fit(*regression, epochs=3, validation_split=0.2, lr_scheduler=scheduler, progress=False)
    assert scheduler.metrics == history["val_loss"]


def test_a_scheduler_whose_step_takes_a_metric_gets_the_training_loss_without_validation(regression):
    prog = regressor()
    scheduler = Plateau()
    history = prog.fit(*regression, epochs=2, lr_scheduler=scheduler, progress=False)
    assert scheduler.metrics == history["loss"]


def test_a_checkpoint_saved_at_an_epoch_end_holds_the_next_epochs_lr(regression, tmp_path):
    prog = regressor(lr=0.1)
    path = tmp_path / "{epoch}.npz"
    prog.fit(*regression, epochs=2, lr_scheduler=Halving(prog), callbacks=[ModelCheckpoint(path)], progress=False)
    assert ember.load(tmp_path / "1.npz").lr == 0.05


def test_a_scheduler_of_another_program_is_refused(regression):
    prog, other = regressor(lr=0.1), regressor(lr=0.1)
    with pytest.raises(ember.ConfigError, match="lr_scheduler was built on another program"):
        prog.fit(*regression, lr_scheduler=Halving(other), progress=False)
    assert prog.optimizer_state["step"] == 0


def test_fit_with_ember_schedulers(regression):
    lr_scheduler = pytest.importorskip("ember.optim.lr_scheduler")
    prog = regressor(lr=0.1)
    step_lr = lr_scheduler.StepLR(prog, step_size=2, gamma=0.5)
    history = prog.fit(*regression, epochs=5, lr_scheduler=step_lr, progress=False)
    assert history["lr"] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025], rel=1e-12)
    # a learning rate this small leaves the loss flat: no improvement after the
    # first epoch (eps=0: PyTorch skips reductions smaller than eps)
    prog = regressor(lr=1e-12)
    plateau = lr_scheduler.ReduceLROnPlateau(prog, factor=0.5, patience=0, eps=0)
    history = prog.fit(*regression, epochs=4, validation_split=0.2, lr_scheduler=plateau, progress=False)
    assert history["lr"] == pytest.approx([1e-12, 1e-12, 5e-13, 2.5e-13], rel=1e-12)


# -- callbacks on a real program -------------------------------------------------
class Diverge(Halving):
    """A schedule that trains well for `good` epochs, then sets a learning
    rate so large that the loss grows every epoch."""

    def __init__(self, program: ember.Program, good: int) -> None:
        super().__init__(program)
        self.good = good

    def step(self) -> None:
        self.steps += 1
        if self.steps == self.good:
            self.program.lr = 3.0


def test_early_stopping_restores_the_best_parameters(regression, assert_same):
    x, y = regression
    prog = regressor(lr=0.1)
    recorder = Recorder()
    stopper = EarlyStopping(patience=2, restore_best_weights=True)
    history = prog.fit(
        x[:40],
        y[:40],
        epochs=20,
        batch_size=8,
        shuffle=False,
        validation_data=(x[40:], y[40:]),
        lr_scheduler=Diverge(prog, good=4),
        callbacks=[recorder, stopper],
        progress=False,
    )
    losses = history["val_loss"]
    best = int(np.argmin(losses))
    # the loss falls for the good epochs, then rises: Keras stops `patience` epochs after the best
    assert best == 3
    assert all(a > b for a, b in itertools.pairwise(losses[: best + 1]))
    assert all(a < b for a, b in itertools.pairwise(losses[best:]))
    assert len(losses) == best + 2 + 1
    assert stopper.stopped_epoch == best + 2
    assert stopper.best_epoch == best
    assert_same(prog.parameters, recorder.parameters[best])
    assert not np.array_equal(prog.parameters["0.weight"], recorder.parameters[-1]["0.weight"])
    assert prog.evaluate(x[40:], y[40:])["loss"] == losses[best]


def test_early_stopping_without_restoring_keeps_the_last_parameters(regression, assert_same):
    x, y = regression
    prog = regressor(lr=0.1)
    recorder = Recorder()
    history = prog.fit(
        x,
        y,
        epochs=20,
        shuffle=False,
        validation_split=0.2,
        lr_scheduler=Diverge(prog, good=4),
        callbacks=[recorder, EarlyStopping(patience=1)],
        progress=False,
    )
    assert len(history["loss"]) == 5
    assert_same(prog.parameters, recorder.parameters[-1])


def test_model_checkpoint_keeps_the_best_program(regression, tmp_path):
    x, y = regression
    prog = regressor(lr=0.1)
    best_path = tmp_path / "best.npz"
    every = tmp_path / "every" / "epoch{epoch:02d}.npz"
    history = prog.fit(
        x,
        y,
        epochs=7,
        shuffle=False,
        validation_split=0.2,
        lr_scheduler=Diverge(prog, good=4),
        callbacks=[ModelCheckpoint(best_path, save_best_only=True), ModelCheckpoint(every)],
        progress=False,
    )
    assert sorted(p.name for p in (tmp_path / "every").iterdir()) == [f"epoch{e:02d}.npz" for e in range(1, 8)]
    best = ember.load(best_path)
    assert best.evaluate(x[40:], y[40:])["loss"] == min(history["val_loss"])
    epoch = int(np.argmin(history["val_loss"])) + 1
    np.testing.assert_array_equal(
        best.parameters["0.weight"], ember.load(tmp_path / "every" / f"epoch{epoch:02d}.npz").parameters["0.weight"]
    )


class StopAfter(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            self.program.stop_training = True


def test_a_callback_stops_training(regression):
    prog = regressor()
    history = prog.fit(*regression, epochs=10, batch_size=25, callbacks=[StopAfter(2)], progress=False)
    assert len(history["loss"]) == 3
    assert prog.optimizer_state["step"] == 3 * 2
    assert prog.stop_training
    history = prog.fit(*regression, epochs=2, batch_size=25, progress=False)  # the next fit starts afresh
    assert len(history["loss"]) == 2


def test_callbacks_see_the_program_and_the_epoch_logs(classifier, blobs):
    recorder = Recorder()
    history = classifier.fit(*blobs, epochs=2, validation_split=0.2, callbacks=[recorder], progress=False)
    assert recorder.program is classifier
    assert [log["val_loss"] for log in recorder.logs] == history["val_loss"]
    assert set(recorder.logs[0]) == set(history)


# -- sample weights and metrics ------------------------------------------------
def test_sample_weights_travel_with_their_rows(regression, monkeypatch):
    """Shuffling keeps each row with its weight, and validation_split holds
    out the last rows with theirs."""
    x, y = regression
    prog = regressor()
    weights = np.arange(50, dtype=np.float32)
    train_batch, seen = prog._train_batch, []

    def step(batch):
        np.testing.assert_array_equal(batch["x"], x[batch["sample_weight"].astype(int)])
        seen.append(batch["sample_weight"].copy())
        return train_batch(batch)

    monkeypatch.setattr(prog, "_train_batch", step)
    history = prog.fit(x, y, epochs=2, batch_size=8, sample_weight=weights, validation_split=0.2, progress=False)
    assert sorted(np.concatenate(seen[:5]).tolist()) == list(range(40))
    assert history["val_loss"][-1] == prog.evaluate(x[40:], y[40:], sample_weight=weights[40:])["loss"]


def test_metrics_of_the_training_and_validation_rows(regression):
    x, y = regression
    prog = regressor()
    history = prog.fit(x, y, epochs=2, metrics=["mae"], validation_split=0.2, progress=False)
    assert list(history) == ["loss", "mae", "val_loss", "val_mae", "lr", "seconds"]
    assert history["mae"][-1] == prog.evaluate(x[:40], y[:40], metrics=["mae"])["mae"]
    assert history["val_mae"][-1] == prog.evaluate(x[40:], y[40:], metrics=["mae"])["mae"]


def test_none_stands_for_no_callbacks_and_no_metrics_as_in_keras(regression):
    history = regressor().fit(*regression, callbacks=None, metrics=None, progress=False)
    assert list(history) == ["loss", "lr", "seconds"]
