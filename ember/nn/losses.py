"""Loss functions with PyTorch's names, arguments, defaults and formulas.

A loss is called on (predictions, targets) inside the trace and declares the
type of the targets it expects, so `ember.compile` can add the right target
input to the program. It also declares whether it is a classification loss
and how its outputs become class predictions, which the metrics follow.

Built-in losses compute their terms (one per element, or per sample for
the class losses) and reduce them: `"mean"` divides their sum by the number
of terms, or, where PyTorch does, by the sum of the class weights of the
targets (`ignore_index` excluded); `"sum"` adds them; `"none"` returns them
unreduced. With sample weights `w` (`train_step(x, y, sample_weight=w)`),
each sample's terms are multiplied by its `w_i` before the same reduction:
the mean over the batch of `w_i * loss_i`, as Keras computes it.

`reduction="none"` gives per-sample losses to use inside a custom loss (a
subclass of `Loss` that reduces them); training needs a scalar, so
`ember.compile` refuses a loss that returns per-element values unreduced,
as PyTorch's `backward()` refuses a non-scalar."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import functional as F
from ..ir import ConfigError, DType, ShapeError, TensorType
from ..tensor import Tensor

REDUCTIONS = ("mean", "sum", "none")
DECISIONS = ("argmax", "logits", "probabilities")
"""How a classification loss's outputs become class predictions: the
largest output of each row, a logit above 0, a probability above 0.5."""


class Loss:
    """Base class of losses, and of user-defined ones.

    A custom loss subclasses `Loss` and overrides `forward(prediction,
    target)`, built from ember's functions and Tensor methods; it returns
    the scalar loss, or the loss of each sample (shape `[B]` or
    `[B, ...]`), which ember averages (and weights by the sample weights,
    when given). Class attributes declare what it is:

    - `classification`: True for a classifier's loss; metrics such as
      `"accuracy"` and `"f1"` are only offered for classification losses.
    - `decision`: how outputs become class predictions: `"argmax"` (the
      default: the largest of each row), `"logits"` (a logit above 0) or
      `"probabilities"` (a probability above 0.5).
    - `target_type(prediction)`: the type of the targets (by default, the
      prediction's type; return `TensorType(DType.int64, (prediction.shape[0],))`
      for class labels; then an integer attribute `ignore_index` names a
      label the input check lets through, as PyTorch's class losses do).

    For example::

        class FocalLoss(nn.Loss):
            classification = True

            def target_type(self, prediction):
                return TensorType(DType.int64, (prediction.shape[0],))

            def forward(self, logits, y):
                log_p = F.sum(F.log_softmax(logits, dim=1) * F.one_hot(y, logits.shape[1], logits.dtype), dim=1)
                return -((1 - F.exp(log_p)) ** 2) * log_p  # per sample: ember averages it"""

    classification = False
    decision = "argmax"
    reduction = "mean"

    def __init__(self, reduction: str = "mean") -> None:
        if reduction not in self.reductions():
            raise ConfigError(f"{type(self).__name__}: reduction must be one of {self.reductions()}, got {reduction!r}")
        self.reduction = reduction

    @classmethod
    def reductions(cls) -> tuple[str, ...]:
        return REDUCTIONS

    def target_type(self, prediction: TensorType) -> TensorType:
        """The type of the targets for predictions of type `prediction`."""
        return prediction

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        """The loss: a scalar, or per-sample losses that ember averages."""
        raise NotImplementedError(f"{type(self).__name__} must define forward(prediction, target)")

    def __call__(self, prediction: Tensor, target: Tensor, sample_weight: Tensor | None = None) -> Tensor:
        """The loss, traced into the graph; `sample_weight` (`[B]`) weighs each sample's loss."""
        value = self.forward(prediction, target)
        if value.ndim == 0:
            return value  # a scalar cannot be weighed by sample: such a program takes no sample weights
        weighted = value if sample_weight is None else value * _per_row(sample_weight, value.ndim)
        return F.mean(weighted)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reduction={self.reduction!r})"


def _per_row(sample_weight: Tensor, rank: int) -> Tensor:
    """Sample weights `[B]` shaped to broadcast over terms of `rank` axes."""
    return sample_weight if rank == 1 else F.reshape(sample_weight, (sample_weight.shape[0], *([1] * (rank - 1))))


class ReducedLoss(Loss):
    """A built-in loss: `terms` gives the unreduced losses and the
    denominator of their mean (None: the number of terms)."""

    def terms(self, prediction: Tensor, target: Tensor) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        return self(prediction, target)

    def __call__(self, prediction: Tensor, target: Tensor, sample_weight: Tensor | None = None) -> Tensor:
        terms, denominator = self.terms(prediction, target)
        if sample_weight is not None:
            terms = terms * _per_row(sample_weight, terms.ndim)
        return self._reduce(terms, denominator)

    def _reduce(self, terms: Tensor, denominator: Tensor | None) -> Tensor:
        if self.reduction == "none":
            return terms
        if self.reduction == "sum":
            return F.sum(terms)
        if self.reduction == "batchmean":  # the sum over each row, averaged over the rows
            return F.mean(terms if terms.ndim == 1 else F.sum(terms, axis=tuple(range(1, terms.ndim))))
        return F.mean(terms) if denominator is None else F.sum(terms) / denominator


def _weight_array(owner: str, name: str, weight, length: int | None = None) -> np.ndarray | None:
    """A class weight / pos_weight given as anything NumPy converts: a 1-D
    finite float64 array (of `length` values when given)."""
    if weight is None:
        return None
    array = np.array(getattr(weight, "detach", lambda: weight)(), dtype=np.float64)  # a torch tensor too
    if array.ndim == 0:
        array = array.reshape(1)
    if array.ndim != 1 or not np.all(np.isfinite(array)) or (length is not None and array.size != length):
        size = f"{length} " if length is not None else ""
        raise ConfigError(f"{owner}: {name} must be a 1-D array of {size}finite numbers, got shape {array.shape}")
    return array


def _class_weight(owner: str, weight: np.ndarray | None, classes: int, dtype: DType) -> np.ndarray | None:
    """`weight` checked against the number of classes, in the model's dtype."""
    if weight is None:
        return None
    if weight.size != classes:
        raise ShapeError(f"{owner}: weight has {weight.size} values but the output has {classes} classes")
    return weight.astype(dtype.numpy)


def _check_index(owner: str, ignore_index) -> int:
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int | np.integer):
        raise ConfigError(f"{owner}: ignore_index must be an integer, got {ignore_index!r}")
    return int(ignore_index)


def _labels(prediction: TensorType, owner: str) -> TensorType:
    if prediction.rank != 2:
        raise ShapeError(f"{owner} needs outputs of shape [B, classes], got {prediction}")
    return TensorType(DType.int64, (prediction.shape[0],))


class _ClassIndexLoss(ReducedLoss):
    """NLL and cross entropy: class weights and an ignored label."""

    mean_over_class_weights = True  # their mean divides by the targets' class weights, not the rows

    def __init__(self, weight=None, ignore_index: int = -100, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.weight = _weight_array(type(self).__name__, "weight", weight)
        self.ignore_index = _check_index(type(self).__name__, ignore_index)

    def _target_weights(self, log_probs: Tensor, target: Tensor) -> tuple[Tensor, Tensor, np.ndarray | None]:
        """Each row's one-hot target scaled by its class weight (zero for an
        ignored target), the sum of those weights (the mean's denominator),
        and the class weights."""
        classes = log_probs.shape[1]
        weight = _class_weight(type(self).__name__, self.weight, classes, log_probs.dtype)
        picked = F.one_hot(target, classes, dtype=log_probs.dtype)  # an out-of-range label picks nothing
        if 0 <= self.ignore_index < classes:
            picked = picked * F.cast(F.unsqueeze(F.not_equal(target, self.ignore_index), 1), log_probs.dtype)
        if weight is not None:
            picked = picked * weight
        return picked, F.sum(picked), weight


class NLLLoss(_ClassIndexLoss):
    """Negative log likelihood of log-probabilities `[B, C]` against class
    labels `[B]`: `-weight[y_i] * input[i, y_i]`, targets equal to
    `ignore_index` left out (mean: divided by the sum of `weight[y_i]`)."""

    classification = True

    def target_type(self, prediction: TensorType) -> TensorType:
        return _labels(prediction, "NLLLoss")

    def terms(self, prediction: Tensor, target: Tensor) -> tuple[Tensor, Tensor | None]:
        picked, total, _ = self._target_weights(prediction, target)
        return -F.sum(picked * prediction, axis=1), total

    def __repr__(self) -> str:
        return f"NLLLoss(ignore_index={self.ignore_index}, reduction={self.reduction!r})"


class CrossEntropyLoss(_ClassIndexLoss):
    """Cross entropy of logits `[B, C]`, through a numerically stable
    log-softmax, against class labels `[B]` (with class `weight`,
    `ignore_index` and `label_smoothing`, as PyTorch), or, with
    `probabilities=True`, against class probabilities `[B, C]` of the
    model's float dtype (PyTorch tells the two apart by the target's dtype;
    ember fixes the target's type when it compiles, so it is told)."""

    classification = True

    def __init__(
        self,
        weight=None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        *,
        probabilities: bool = False,
    ) -> None:
        if isinstance(weight, str):  # the older CrossEntropyLoss("sum") form
            weight, reduction = None, weight
        super().__init__(weight, ignore_index, reduction)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ConfigError(f"CrossEntropyLoss: label_smoothing must be in [0, 1], got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)
        self.probabilities = bool(probabilities)

    def target_type(self, prediction: TensorType) -> TensorType:
        labels = _labels(prediction, "CrossEntropyLoss")
        return prediction if self.probabilities else labels

    def terms(self, prediction: Tensor, target: Tensor) -> tuple[Tensor, Tensor | None]:
        log_probs = F.log_softmax(prediction, axis=1)
        if self.probabilities:
            return self._probability_terms(log_probs, target), None
        if self.weight is None and self.ignore_index < 0:
            return self._plain_terms(log_probs, target)
        classes, smoothing = log_probs.shape[1], self.label_smoothing
        picked, total, weight = self._target_weights(log_probs, target)
        per_row = -F.sum(picked * log_probs, axis=1)
        if smoothing:
            valid = F.sum(F.one_hot(target, classes, dtype=log_probs.dtype), axis=1)  # 0 for ignored rows
            if 0 <= self.ignore_index < classes:
                valid = valid * F.cast(F.not_equal(target, self.ignore_index), log_probs.dtype)
            spread = log_probs if weight is None else log_probs * weight
            per_row = per_row * (1 - smoothing) - F.sum(spread, axis=1) * valid * (smoothing / classes)
        return per_row, total

    def _plain_terms(self, log_probs: Tensor, target: Tensor) -> tuple[Tensor, Tensor | None]:
        """Without class weights: labels of `ignore_index` count for
        nothing, and the mean is over the other rows."""
        classes, smoothing = log_probs.shape[1], self.label_smoothing
        picked = F.one_hot(target, classes, dtype=log_probs.dtype)  # all zeros for an ignored row
        if smoothing:
            valid = F.sum(picked, axis=1, keepdims=True)
            picked = picked * (1 - smoothing) + valid * (smoothing / classes)
        counted = F.sum(F.cast(F.not_equal(target, self.ignore_index), log_probs.dtype))
        return -F.sum(picked * log_probs, axis=1), counted

    def _probability_terms(self, log_probs: Tensor, target: Tensor) -> Tensor:
        classes, smoothing = log_probs.shape[1], self.label_smoothing
        if smoothing:
            target = target * (1 - smoothing) + smoothing / classes
        weight = _class_weight("CrossEntropyLoss", self.weight, classes, log_probs.dtype)
        spread = log_probs * target if weight is None else log_probs * target * weight
        return -F.sum(spread, axis=1)

    def __repr__(self) -> str:
        extra = ", probabilities=True" if self.probabilities else ""
        return (
            f"CrossEntropyLoss(ignore_index={self.ignore_index}, reduction={self.reduction!r}, "
            f"label_smoothing={self.label_smoothing}{extra})"
        )


class L1Loss(ReducedLoss):
    """Mean absolute error: |prediction - target| per element."""

    def terms(self, prediction: Tensor, target: Tensor) -> tuple[Tensor, Tensor | None]:
        return F.abs(prediction - target), None


class MSELoss(ReducedLoss):
    """Mean squared error: (prediction - target)^2 per element."""

    def terms(self, prediction: Tensor, target: Tensor) -> tuple[Tensor, Tensor | None]:
        diff = prediction - target
        return diff * diff, None


def _nonnegative(owner: str, name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating) or not 0 <= value < np.inf:
        raise ConfigError(f"{owner}: {name} must be a finite number >= 0, got {value!r}")
    return float(value)


class SmoothL1Loss(ReducedLoss):
    """0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta (d = prediction -
    target); beta = 0 is the L1 loss."""

    def __init__(self, reduction: str = "mean", beta: float = 1.0) -> None:
        super().__init__(reduction)
        self.beta = _nonnegative("SmoothL1Loss", "beta", beta)

    def terms(self, prediction: Tensor, target: Tensor) -> tuple[Tensor, Tensor | None]:
        distance = F.abs(prediction - target)
        if self.beta == 0:
            return distance, None
        quadratic = distance * distance * (0.5 / self.beta)
        return F.where(distance < self.beta, quadratic, distance - 0.5 * self.beta), None


class HuberLoss(ReducedLoss):
    """0.5 d^2 where |d| <= delta, else delta (|d| - 0.5 delta)."""

    def __init__(self, reduction: str = "mean", delta: float = 1.0) -> None:
        super().__init__(reduction)
        self.delta = _nonnegative("HuberLoss", "delta", delta)
        if self.delta == 0:
            raise ConfigError("HuberLoss: delta must be > 0")

    def terms(self, prediction: Tensor, target: Tensor) -> tuple[Tensor, Tensor | None]:
        distance = F.abs(prediction - target)
        linear = (distance - 0.5 * self.delta) * self.delta
        return F.where(distance <= self.delta, distance * distance * 0.5, linear), None


def _element_weight(owner: str, weight: np.ndarray | None, prediction: Tensor) -> np.ndarray | None:
    """A per-element weight broadcast over the batch: one value, or one per
    position of the last axis."""
    if weight is None:
        return None
    last = prediction.shape[-1] if prediction.ndim > 1 else 1
    if weight.size not in (1, last):
        raise ShapeError(f"{owner}: weight of {weight.size} values does not broadcast over outputs {prediction.shape}")
    return weight.astype(prediction.dtype.numpy)


class BCELoss(ReducedLoss):
    """Binary cross entropy of probabilities: -weight (y log p + (1 - y)
    log(1 - p)), each log clamped at -100 as in PyTorch. `weight` is one
    value or one per output column."""

    classification = True
    decision = "probabilities"

    def __init__(self, weight=None, reduction: str = "mean") -> None:
        if isinstance(weight, str):
            weight, reduction = None, weight
        super().__init__(reduction)
        self.weight = _weight_array("BCELoss", "weight", weight)

    def terms(self, prediction: Tensor, target: Tensor) -> tuple[Tensor, Tensor | None]:
        log_p = F.maximum(F.log(prediction), -100.0)
        log_q = F.maximum(F.log(1.0 - prediction), -100.0)
        per_element = -(target * log_p + (1.0 - target) * log_q)
        weight = _element_weight("BCELoss", self.weight, prediction)
        return (per_element if weight is None else per_element * weight), None


class BCEWithLogitsLoss(ReducedLoss):
    """Binary cross entropy on logits, computed stably:
    (1 - y) x + (1 + (pos_weight - 1) y) (log(1 + exp(-|x|)) + max(-x, 0)),
    times `weight`. Targets are probabilities in [0, 1]; `pos_weight` has one
    value per output column (or one for all)."""

    classification = True
    decision = "logits"

    def __init__(self, weight=None, reduction: str = "mean", pos_weight=None) -> None:
        if isinstance(weight, str):
            weight, reduction = None, weight
        super().__init__(reduction)
        self.weight = _weight_array("BCEWithLogitsLoss", "weight", weight)
        self.pos_weight = _weight_array("BCEWithLogitsLoss", "pos_weight", pos_weight)

    def terms(self, prediction: Tensor, target: Tensor) -> tuple[Tensor, Tensor | None]:
        x = prediction
        softplus_neg = F.log(1.0 + F.exp(-F.abs(x)))  # log(1 + exp(-|x|)): no overflow
        pos_weight = _element_weight("BCEWithLogitsLoss", self.pos_weight, x)
        if pos_weight is None:
            per_element = F.maximum(x, 0.0) - x * target + softplus_neg
        else:
            scale = (target * (pos_weight - 1.0)) + 1.0
            per_element = (1.0 - target) * x + scale * (softplus_neg + F.maximum(-x, 0.0))
        weight = _element_weight("BCEWithLogitsLoss", self.weight, x)
        return (per_element if weight is None else per_element * weight), None


class KLDivLoss(ReducedLoss):
    """Kullback-Leibler divergence of log-probabilities `input` from `target`:
    target (log target - input) per element (0 where target is 0), or with
    `log_target`, exp(target) (target - input). `reduction="batchmean"`
    divides the sum by the batch size (the mathematical KL divergence);
    `"mean"`, PyTorch's default, by the number of elements."""

    def __init__(self, reduction: str = "mean", log_target: bool = False) -> None:
        super().__init__(reduction)
        self.log_target = bool(log_target)

    @classmethod
    def reductions(cls) -> tuple[str, ...]:
        return (*REDUCTIONS, "batchmean")

    def terms(self, prediction: Tensor, target: Tensor) -> tuple[Tensor, Tensor | None]:
        if self.log_target:
            return F.exp(target) * (target - prediction), None
        positive = target > 0.0
        log_target = F.log(F.where(positive, target, F.constant(1.0, target.dtype)))  # xlogy: 0 log 0 = 0
        return target * log_target - target * prediction, None


LOSSES = {
    cls.__name__: cls
    for cls in (
        L1Loss,
        MSELoss,
        SmoothL1Loss,
        HuberLoss,
        NLLLoss,
        CrossEntropyLoss,
        BCELoss,
        BCEWithLogitsLoss,
        KLDivLoss,
    )
}


def loss_list(loss: Loss | Sequence[Loss]) -> list[Loss]:
    """The losses of `loss=`: one, or a list of one per output."""
    return list(loss) if isinstance(loss, list | tuple) else [loss]


def loss_info_of(name: str, loss: object, prediction: TensorType, target: TensorType) -> dict[str, Any]:
    """What a Program records of a loss (JSON, kept by checkpoints): its
    name, reduction, whether it classifies and how (`decision`), and for
    class-label targets the number of classes and the ignored label."""
    info: dict[str, Any] = {
        "name": name,
        "reduction": getattr(loss, "reduction", "mean"),
        "classification": bool(getattr(loss, "classification", False)),
    }
    if info["classification"] and getattr(loss, "decision", "argmax") is not None:
        info["decision"] = getattr(loss, "decision", "argmax")
    if is_label_target(prediction, target):
        info["num_classes"] = int(prediction.shape[1])
        if isinstance(getattr(loss, "ignore_index", None), int):
            info["ignore_index"] = loss.ignore_index  # type: ignore[attr-defined]
        if getattr(loss, "mean_over_class_weights", False):
            weight = loss.weight  # type: ignore[attr-defined]
            info["class_weight"] = None if weight is None else [float(v) for v in weight]
    return info


def is_label_target(prediction: TensorType, target: TensorType) -> bool:
    """Targets that are class labels `[B]` of outputs `[B, C]`."""
    return target.dtype.is_int and target.rank == 1 and prediction.rank == 2
