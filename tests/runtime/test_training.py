"""The fit loop: minibatch index sets, fit options, and the history it returns."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ember
from ember.runtime.training import Events, FitOptions, fit_loop, minibatches, split_validation


def options(batch_size: int = 4, *, epochs: int = 1, shuffle: bool = True, drop_last: bool = False) -> FitOptions:
    return FitOptions(epochs=epochs, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, progress=False)


@given(rows=st.integers(1, 200), batch_size=st.integers(1, 64), shuffle=st.booleans(), seed=st.integers(0, 9))
def test_every_row_once_per_epoch(rows, batch_size, shuffle, seed):
    batches = minibatches(rows, options(batch_size, shuffle=shuffle), np.random.default_rng(seed))
    assert len(batches) == -(-rows // batch_size)
    assert all(len(b) == batch_size for b in batches[:-1])
    assert 1 <= len(batches[-1]) <= batch_size
    assert sorted(np.concatenate(batches).tolist()) == list(range(rows))


@given(rows=st.integers(1, 200), batch_size=st.integers(1, 64), shuffle=st.booleans(), seed=st.integers(0, 9))
def test_drop_last_keeps_only_full_batches(rows, batch_size, shuffle, seed):
    batches = minibatches(rows, options(batch_size, shuffle=shuffle, drop_last=True), np.random.default_rng(seed))
    assert len(batches) == rows // batch_size
    assert all(len(b) == batch_size for b in batches)
    seen = np.concatenate(batches) if batches else np.zeros(0, int)
    assert len(np.unique(seen)) == len(seen)
    assert np.all((seen >= 0) & (seen < rows))


def test_without_shuffle_rows_come_in_order():
    batches = minibatches(10, options(4, shuffle=False), np.random.default_rng(0))
    assert [b.tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_shuffling_differs_between_epochs_and_follows_the_seed():
    def epochs(seed):
        rng = np.random.default_rng(seed)
        return [np.concatenate(minibatches(50, options(8), rng)) for _ in range(2)]

    first, second = epochs(0)
    assert not np.array_equal(first, second)
    assert not np.array_equal(first, np.arange(50))
    np.testing.assert_array_equal(epochs(0)[1], second)
    assert not np.array_equal(epochs(1)[0], first)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": -1}, "epochs must be an integer >= 0, got -1"),
        ({"epochs": 2.0}, "epochs must be an integer >= 0, got 2.0"),
        ({"epochs": True}, "epochs must be an integer >= 0, got True"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
        ({"batch_size": "8"}, "batch_size must be an integer >= 1, got '8'"),
        ({"batch_size": None}, "batch_size must be an integer >= 1, got None"),
    ],
)
def test_bad_fit_options(kwargs, message):
    settings = {"epochs": 1, "batch_size": 4, "shuffle": True, "drop_last": False, "progress": False, **kwargs}
    with pytest.raises(ember.ConfigError, match=message):
        FitOptions(**settings)


class Recorder:
    """A stand-in for a Program's train step and evaluation that records its calls."""

    def __init__(self) -> None:
        self.batches: list[np.ndarray] = []
        self.evaluations = 0

    def train_batch(self, batch: dict[str, np.ndarray]) -> float:
        np.testing.assert_array_equal(batch["x"][:, 0], batch["y"])  # rows of x and y stay paired
        self.batches.append(batch["y"].copy())
        return float(len(self.batches))  # loss k for the k-th batch

    def evaluate(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        self.evaluations += 1
        return {"loss": 0.5 * self.evaluations, "accuracy": 0.25}


@pytest.fixture
def data() -> dict[str, np.ndarray]:
    """10 rows whose first feature equals the row's target."""
    y = np.arange(10.0)
    return {"x": np.stack([y, -y], axis=1), "y": y}


def test_fit_loop_history(data):
    recorder = Recorder()
    opts = options(4, epochs=2, shuffle=False)
    history = fit_loop(recorder.train_batch, recorder.evaluate, data, data, opts, np.random.default_rng(0))
    assert [len(b) for b in recorder.batches] == [4, 4, 2] * 2
    assert history["loss"] == [pytest.approx((1 * 4 + 2 * 4 + 3 * 2) / 10), pytest.approx((4 * 4 + 5 * 4 + 6 * 2) / 10)]
    assert history["val_loss"] == [0.5, 1.0]
    assert history["val_accuracy"] == [0.25, 0.25]
    assert len(history["seconds"]) == 2
    assert all(s >= 0 for s in history["seconds"])


def test_fit_loop_shuffles_rows_with_their_targets(data):
    recorder = Recorder()
    fit_loop(recorder.train_batch, None, data, None, options(3, epochs=3), np.random.default_rng(0))
    for epoch in range(3):
        rows = np.concatenate(recorder.batches[4 * epoch : 4 * epoch + 4])
        assert sorted(rows.tolist()) == list(range(10))
        assert not np.array_equal(rows, np.arange(10.0))


def test_fit_loop_without_validation_or_epochs(data):
    recorder = Recorder()
    history = fit_loop(recorder.train_batch, recorder.evaluate, data, None, options(4), np.random.default_rng(0))
    assert set(history) == {"loss", "seconds"}
    assert recorder.evaluations == 0
    no_epochs = options(4, epochs=0)
    history = fit_loop(recorder.train_batch, recorder.evaluate, data, data, no_epochs, np.random.default_rng(0))
    assert history == {"loss": [], "seconds": []}


def test_fit_loop_drop_last_with_too_few_rows_trains_nothing(data):
    recorder = Recorder()
    opts = options(32, drop_last=True)
    history = fit_loop(recorder.train_batch, None, data, None, opts, np.random.default_rng(0))
    assert recorder.batches == []
    assert len(history["loss"]) == 1


@pytest.mark.parametrize(("rows", "fraction", "split"), [(10, 0.2, 8), (10, 0.25, 7), (50, 0.25, 37), (3, 0.5, 1)])
def test_split_validation_holds_out_the_last_rows(rows, fraction, split):
    """As Keras: the first floor(rows * (1 - fraction)) rows train, in order."""
    data = {"x": np.arange(rows * 2.0).reshape(rows, 2), "y": np.arange(rows)}
    train, validation = split_validation(data, fraction)
    assert train["y"].tolist() == list(range(split))
    assert validation["y"].tolist() == list(range(split, rows))
    np.testing.assert_array_equal(validation["x"], data["x"][split:])


@pytest.mark.parametrize(
    ("rows", "fraction", "message"),
    [
        (10, 0.95, r"validation_split=0.95 of 10 rows leaves no training rows"),
        (1, 0.5, r"validation_split=0.5 of 1 rows leaves no training rows"),
        (10, 1e-17, r"leaves no validation rows"),
        (10, 1, r"validation_split must be a number in \[0, 1\), got 1"),
        (10, True, r"validation_split must be a number in \[0, 1\), got True"),
    ],
)
def test_split_validation_needs_rows_on_both_sides(rows, fraction, message):
    with pytest.raises(ember.ConfigError, match=message):
        split_validation({"y": np.arange(rows)}, fraction)


def test_fit_loop_history_order_with_metrics_and_epoch_logs(data):
    recorder = Recorder()
    history = fit_loop(
        recorder.train_batch,
        recorder.evaluate,
        data,
        data,
        options(5, epochs=2, shuffle=False),
        np.random.default_rng(0),
        epoch_logs=lambda: {"lr": 0.5},
        train_metrics=lambda rows: {"loss": -1.0, "mae": float(len(rows["y"]))},
    )
    assert list(history) == ["loss", "mae", "val_loss", "val_accuracy", "lr", "seconds"]
    assert history["mae"] == [10.0, 10.0]
    assert history["lr"] == [0.5, 0.5]
    assert history["loss"] == [1.5, 3.5]  # the training loss, not the metrics' loss


class StopAfterSteps(Events):
    def __init__(self, steps: int) -> None:
        self.steps, self.seen = steps, 0

    def batch_end(self, batch, logs):
        self.seen += 1

    def stop(self):
        return self.seen >= self.steps


def test_fit_loop_stops_after_the_step_the_events_ask(data):
    recorder = Recorder()
    opts = options(3, epochs=5, shuffle=False)
    events = StopAfterSteps(6)
    history = fit_loop(recorder.train_batch, recorder.evaluate, data, data, opts, np.random.default_rng(0), events)
    assert len(recorder.batches) == 6  # 4 steps in the first epoch, 2 in the second
    assert len(history["loss"]) == 2
    assert recorder.evaluations == 2
