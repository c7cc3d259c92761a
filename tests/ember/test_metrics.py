"""Metrics of evaluate and fit against scikit-learn's, over whole data sets."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

import ember
from ember import functional as F
from ember import nn, optim
from ember.ir import ConfigError, DType, TensorType
from ember.metrics import TopKAccuracy

CLASSES = 6


@pytest.fixture(scope="module")
def classifier():
    model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, CLASSES))
    return ember.compile(model, loss=nn.CrossEntropyLoss(), optimizer=optim.SGD(lr=0.1), dtype="float64")


@pytest.fixture(scope="module")
def regressor():
    return ember.compile(nn.Linear(5, 2), loss=nn.MSELoss(), optimizer=optim.SGD(lr=0.1), dtype="float64")


def _data(rows: int = 300, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(rows, 5)), rng.integers(0, CLASSES, rows)


def test_classification_metrics_match_sklearn(classifier) -> None:
    x, y = _data()
    scores = classifier.predict(x)
    got = classifier.evaluate(x, y, metrics=["accuracy", TopKAccuracy(k=2), "f1"])
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, scores.argmax(1)), abs=1e-12)
    assert got["f1"] == pytest.approx(skm.f1_score(y, scores.argmax(1), average="macro"), abs=1e-12)
    top2 = skm.top_k_accuracy_score(y, scores, k=2, labels=range(CLASSES))
    assert got["top_k_accuracy"] == pytest.approx(top2, abs=1e-12)


def test_top_k_default_is_five(classifier) -> None:
    x, y = _data(seed=1)
    got = classifier.evaluate(x, y, metrics=["top_k_accuracy"])
    expected = skm.top_k_accuracy_score(y, classifier.predict(x), k=5, labels=range(CLASSES))
    assert got["top_k_accuracy"] == pytest.approx(expected, abs=1e-12)


def test_regression_metrics_match_sklearn(regressor) -> None:
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(200, 5)), rng.normal(size=(200, 2))
    out = regressor.predict(x)
    got = regressor.evaluate(x, y, metrics=["mae", "mse", "rmse", "r2"])
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, out), rel=1e-12)
    assert got["mse"] == pytest.approx(skm.mean_squared_error(y, out), rel=1e-12)
    assert got["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, out)), rel=1e-12)
    assert got["r2"] == pytest.approx(skm.r2_score(y, out), rel=1e-12)
    assert "accuracy" not in got


def test_metrics_cover_the_whole_data_set_across_chunks(monkeypatch, regressor) -> None:
    """r2 and f1 are not means of per-chunk values: small chunks give the same result."""
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(50, 5)), rng.normal(size=(50, 2))
    whole = regressor.evaluate(x, y, metrics=["r2", "mae"])
    monkeypatch.setattr(ember.program, "EVAL_CHUNK_ROWS", 7)
    assert regressor.evaluate(x, y, metrics=["r2", "mae"]) == pytest.approx(whole, rel=1e-12)


def test_callable_metric_gets_targets_and_outputs(regressor) -> None:
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(20, 5)), rng.normal(size=(20, 2))

    def max_error(y_true, y_pred):
        return np.max(np.abs(y_true - y_pred))

    got = regressor.evaluate(x, y, metrics=[max_error])
    assert got["max_error"] == pytest.approx(np.max(np.abs(y - regressor.predict(x))))


def test_classification_metric_of_a_regression_loss_is_a_config_error(regressor) -> None:
    x = np.zeros((3, 5))
    with pytest.raises(ConfigError, match="'accuracy' is for classification losses, and MSELoss is not one"):
        regressor.evaluate(x, np.zeros((3, 2)), metrics=["accuracy"])
    with pytest.raises(ConfigError, match="unknown metric 'auc'"):
        regressor.evaluate(x, np.zeros((3, 2)), metrics=["auc"])


def test_regression_metric_of_class_labels_is_a_config_error(classifier) -> None:
    with pytest.raises(ConfigError, match="'mae' compares outputs"):
        classifier.evaluate(np.zeros((3, 5)), np.zeros(3, np.int64), metrics=["mae"])


def test_binary_metrics_follow_the_loss_decision() -> None:
    """BCE with logits decides by logit > 0, BCE by probability > 0.5."""
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(100, 5)), rng.integers(0, 2, (100, 1)).astype(np.float64)
    logits = ember.compile(nn.Linear(5, 1), loss=nn.BCEWithLogitsLoss(), optimizer=optim.SGD(), dtype="float64")
    probs = ember.compile(nn.Sequential(nn.Linear(5, 1), nn.Sigmoid()), loss=nn.BCELoss(), optimizer=optim.SGD(),
                          dtype="float64")  # fmt: skip
    for prog, threshold in ((logits, 0.0), (probs, 0.5)):
        predicted = (prog.predict(x) > threshold).ravel()
        got = prog.evaluate(x, y, metrics=["accuracy", "f1"])
        assert got["accuracy"] == pytest.approx(skm.accuracy_score(y.ravel(), predicted))
        assert got["f1"] == pytest.approx(skm.f1_score(y.ravel(), predicted, average="macro"))


class Focal(nn.Loss):
    """A user-defined classification loss on class labels."""

    classification = True

    def target_type(self, prediction):
        return TensorType(DType.int64, (prediction.shape[0],))

    def forward(self, logits, y):
        picked = F.one_hot(y, logits.shape[1], logits.dtype)
        log_p = F.sum(F.log_softmax(logits, dim=1) * picked, dim=1)
        return -((1 - F.exp(log_p)) ** 2) * log_p


def test_custom_classification_loss_reports_accuracy(classifier) -> None:
    x, y = _data(100, seed=6)
    model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, CLASSES))
    prog = ember.compile(model, loss=Focal(), optimizer=optim.SGD(lr=0.1), dtype="float64")
    prog.fit(x, y, epochs=30, progress=False)
    got = prog.evaluate(x, y, metrics=["f1"])
    predicted = prog.predict(x).argmax(1)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, predicted))
    assert got["accuracy"] > 0.3
    assert got["f1"] == pytest.approx(skm.f1_score(y, predicted, average="macro"))


def test_custom_loss_survives_save_and_load(tmp_path) -> None:
    x, y = _data(20, seed=7)
    prog = ember.compile(nn.Linear(5, CLASSES), loss=Focal(), optimizer=optim.SGD(lr=0.1), dtype="float64")
    prog.save(tmp_path / "focal.npz")
    back = ember.load(tmp_path / "focal.npz")
    assert back.evaluate(x, y) == prog.evaluate(x, y)
    assert back.loss_info["name"] == "Focal"


def test_fit_reports_metrics_per_epoch(regressor) -> None:
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(40, 5)), rng.normal(size=(40, 2))
    xv, yv = rng.normal(size=(10, 5)), rng.normal(size=(10, 2))
    history = regressor.fit(x, y, epochs=2, validation_data=(xv, yv), metrics=["r2", "mae"], progress=False)
    assert len(history["r2"]) == len(history["val_mae"]) == 2
    after = regressor.evaluate(xv, yv, metrics=["r2", "mae"])
    assert history["val_r2"][-1] == after["r2"]
    assert history["val_mae"][-1] == after["mae"]
    assert history["r2"][-1] == regressor.evaluate(x, y, metrics=["r2"])["r2"]
