"""Metrics of `Program.evaluate(x, y, metrics=[...])` and `fit(...,
metrics=[...])`, computed over a whole data set (not averaged over chunks).

A metric is a name — `"accuracy"`, `"top_k_accuracy"` (k = 5),
`"f1"` (macro average over classes, as scikit-learn's `f1_score(...,
average="macro")`), `"mae"`, `"mse"`, `"rmse"`, `"r2"` (scikit-learn's
`r2_score`, averaged over output columns) — a `Metric` object such as
`TopKAccuracy(k=3)`, or a callable `metric(y_true, y_pred) -> float` given
the targets and the model's outputs. Classification metrics need a loss
that declares `classification = True`; they turn outputs into classes as the
loss's `decision` says (argmax, logit > 0, probability > 0.5)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .ir import ConfigError


class Metric:
    """A metric of the whole data set: `__call__(y_true, y_pred, info)`
    with the targets, the model's outputs and the loss's info."""

    name = "metric"
    classification = False

    def __call__(self, y_true: np.ndarray, y_pred: np.ndarray, info: Mapping[str, Any]) -> float:
        raise NotImplementedError

    def check(self, info: Mapping[str, Any], target_shape: tuple, output_shape: tuple) -> str | None:
        """Why this metric does not fit a loss and its shapes, or None."""
        if self.classification and not info.get("classification"):
            return (
                f"metric {self.name!r} is for classification losses, and {info.get('name')} is not one "
                "(a custom loss declares classification = True)"
            )
        if not self.classification and tuple(target_shape) != tuple(output_shape):
            return (
                f"metric {self.name!r} compares outputs {output_shape} with targets of the same shape, "
                f"got {target_shape}"
            )
        return None


def _classes(y_true: np.ndarray, y_pred: np.ndarray, info: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """True and predicted classes, flat, without targets of `ignore_index`."""
    decision = info.get("decision", "argmax")
    if decision == "argmax":
        predicted = np.argmax(y_pred, axis=1) if y_pred.ndim > 1 else (y_pred > 0.5).astype(np.int64)
        true = y_true if y_true.ndim == 1 and y_true.dtype.kind in "iu" else np.argmax(y_true, axis=1)
    else:
        predicted = (y_pred > (0.0 if decision == "logits" else 0.5)).astype(np.int64)
        true = (y_true > 0.5).astype(np.int64)
    true, predicted = true.reshape(-1), predicted.reshape(-1)
    if "ignore_index" in info:
        kept = true != info["ignore_index"]
        true, predicted = true[kept], predicted[kept]
    return true, predicted


class Accuracy(Metric):
    name = "accuracy"
    classification = True

    def __call__(self, y_true, y_pred, info) -> float:
        true, predicted = _classes(y_true, y_pred, info)
        return float(np.mean(true == predicted)) if true.size else 0.0


class F1(Metric):
    """Macro F1: the unweighted mean over the classes that occur in the
    targets or the predictions of 2 tp / (2 tp + fp + fn) (0 where that is 0/0)."""

    name = "f1"
    classification = True

    def __call__(self, y_true, y_pred, info) -> float:
        true, predicted = _classes(y_true, y_pred, info)
        labels = np.union1d(true, predicted)
        if labels.size == 0:
            return 0.0
        scores = []
        for label in labels:
            tp = np.sum((predicted == label) & (true == label))
            wrong = np.sum((predicted == label) != (true == label))  # false positives and false negatives
            scores.append(2 * tp / (2 * tp + wrong))
        return float(np.mean(scores))


class TopKAccuracy(Metric):
    """The fraction of rows whose target class is among the `k` largest
    outputs (scikit-learn's `top_k_accuracy_score`)."""

    classification = True

    def __init__(self, k: int = 5) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"TopKAccuracy: k must be an integer >= 1, got {k!r}")
        self.k = k
        self.name = "top_k_accuracy"

    def check(self, info, target_shape, output_shape) -> str | None:
        reason = super().check(info, target_shape, output_shape)
        if reason is None and (info.get("decision", "argmax") != "argmax" or len(output_shape) != 1):
            return f"metric {self.name!r} needs class scores [B, C] of a loss deciding by argmax"
        return reason

    def __call__(self, y_true, y_pred, info) -> float:
        true = y_true if y_true.ndim == 1 else np.argmax(y_true, axis=1)
        top = np.argsort(y_pred, axis=1, kind="mergesort")[:, ::-1][:, : self.k]
        hits = np.any(top == true[:, None], axis=1)
        if "ignore_index" in info:
            hits = hits[true != info["ignore_index"]]
        return float(np.mean(hits)) if hits.size else 0.0


class _Regression(Metric):
    def __init__(self, name: str, formula: Callable[[np.ndarray, np.ndarray], float]) -> None:
        self.name = name
        self.formula = formula

    def __call__(self, y_true, y_pred, info) -> float:
        rows = y_true.shape[0]
        return float(self.formula(y_true.reshape(rows, -1).astype(np.float64), y_pred.reshape(rows, -1)))


def _r2(y: np.ndarray, p: np.ndarray) -> float:
    """1 - SS_res / SS_tot per column, averaged (a constant column scores 1
    if predicted exactly, else 0, as scikit-learn's force_finite)."""
    residual = np.sum((y - p) ** 2, axis=0)
    total = np.sum((y - y.mean(axis=0)) ** 2, axis=0)
    exact = residual == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = np.where(total == 0, np.where(exact, 1.0, 0.0), 1 - residual / total)
    return float(np.mean(scores))


class _Callable(Metric):
    def __init__(self, function: Callable[[np.ndarray, np.ndarray], float]) -> None:
        self.function = function
        self.name = getattr(function, "__name__", type(function).__name__)

    def check(self, info, target_shape, output_shape) -> str | None:
        return None

    def __call__(self, y_true, y_pred, info) -> float:
        value = self.function(y_true, y_pred)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"metric {self.name!r} must return a number, got {type(value).__name__}") from None


NAMED: dict[str, Callable[[], Metric]] = {
    "accuracy": Accuracy,
    "top_k_accuracy": TopKAccuracy,
    "f1": F1,
    "mae": lambda: _Regression("mae", lambda y, p: np.mean(np.abs(y - p))),
    "mse": lambda: _Regression("mse", lambda y, p: np.mean((y - p) ** 2)),
    "rmse": lambda: _Regression("rmse", lambda y, p: np.sqrt(np.mean((y - p) ** 2))),
    "r2": lambda: _Regression("r2", _r2),
}


def resolve(metrics: Sequence[Any] | None) -> list[Metric]:
    """`metrics=` as Metric objects: names, Metrics and callables."""
    if metrics is None:
        return []
    if isinstance(metrics, str | Metric) or callable(metrics):
        metrics = [metrics]
    if not isinstance(metrics, list | tuple):
        raise ConfigError(f"metrics must be a list of names, Metric objects or callables, got {metrics!r}")
    resolved = []
    for metric in metrics:
        if isinstance(metric, str) and metric in NAMED:
            resolved.append(NAMED[metric]())
        elif isinstance(metric, Metric):
            resolved.append(metric)
        elif callable(metric) and not isinstance(metric, str):
            resolved.append(_Callable(metric))
        else:
            raise ConfigError(f"unknown metric {metric!r}; metrics are {', '.join(NAMED)}, or a callable")
    return resolved


def default_metrics(info: Mapping[str, Any]) -> list[Metric]:
    """What evaluate reports without `metrics=`: accuracy for a classification loss."""
    return [Accuracy()] if info.get("classification") else []


def fitting(metrics: Sequence[Metric], infos: Sequence[Mapping[str, Any]], shapes: Sequence[tuple[tuple, tuple]]):
    """The metrics of each output (target and output shapes without the
    batch axis in `shapes`). With one output every metric must fit; with
    several, each applies where it fits and must fit one of them."""
    chosen: list[list[Metric]] = [[] for _ in infos]
    for metric in metrics:
        reasons = [metric.check(info, *shape) for info, shape in zip(infos, shapes, strict=True)]
        if all(reasons):
            raise ConfigError(reasons[0])
        for i, reason in enumerate(reasons):
            if reason is None:
                chosen[i].append(metric)
    return chosen


def compute(metrics: Sequence[Metric], info: Mapping[str, Any], y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """Each metric's value over the whole data set, by name."""
    return {metric.name: metric(y_true, y_pred, info) for metric in metrics}
