"""Loss functions. Each is called on (predictions, targets) inside the trace
and declares the type of the targets it expects, so `ember.compile` can
add the right target input to the program."""

from __future__ import annotations

from abc import ABC, abstractmethod

from .. import functional as F
from ..ir import ConfigError, DType, ShapeError, TensorType
from ..tensor import Tensor

REDUCTIONS = ("mean", "sum")


class Loss(ABC):
    """Base class. `classification` losses report accuracy in `fit`."""

    classification = False

    def __init__(self, reduction: str = "mean") -> None:
        if reduction not in REDUCTIONS:
            raise ConfigError(
                f"{type(self).__name__}: reduction must be one of {REDUCTIONS} for training, got {reduction!r}"
            )
        self.reduction = reduction

    def target_type(self, prediction: TensorType) -> TensorType:
        """The type of the targets for predictions of type `prediction`."""
        return prediction

    def _reduce(self, per_element: Tensor) -> Tensor:
        return F.mean(per_element) if self.reduction == "mean" else F.sum(per_element)

    @abstractmethod
    def __call__(self, prediction: Tensor, target: Tensor) -> Tensor:
        """The scalar loss, traced into the graph."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reduction={self.reduction!r})"


class MSELoss(Loss):
    """Mean squared error: mean((prediction - target)^2) over all elements."""

    def __call__(self, prediction: Tensor, target: Tensor) -> Tensor:
        diff = prediction - target
        return self._reduce(diff * diff)


class CrossEntropyLoss(Loss):
    """Cross entropy of logits `[B, C]` against integer class labels `[B]`,
    via a numerically stable log-softmax. `label_smoothing` as in PyTorch."""

    classification = True

    def __init__(self, reduction: str = "mean", label_smoothing: float = 0.0) -> None:
        super().__init__(reduction)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ConfigError(f"CrossEntropyLoss: label_smoothing must be in [0, 1], got {label_smoothing}")
        self.label_smoothing = label_smoothing

    def target_type(self, prediction: TensorType) -> TensorType:
        if prediction.rank != 2:
            raise ShapeError(f"CrossEntropyLoss needs logits of shape [B, classes], got {prediction}")
        return TensorType(DType.int64, (prediction.shape[0],))

    def __call__(self, prediction: Tensor, target: Tensor) -> Tensor:
        classes = prediction.shape[1]
        log_probs = F.log_softmax(prediction, axis=1)
        weights = F.one_hot(target, classes, dtype=prediction.dtype)
        if self.label_smoothing:
            weights = weights * (1 - self.label_smoothing) + self.label_smoothing / classes
        per_row = -F.sum(weights * log_probs, axis=1)
        return self._reduce(per_row)


class BCEWithLogitsLoss(Loss):
    """Binary cross entropy on logits, computed stably as
    max(x, 0) - x*y + log(1 + exp(-|x|)). Targets are probabilities in [0, 1]."""

    classification = True

    def __call__(self, prediction: Tensor, target: Tensor) -> Tensor:
        x = prediction
        per_element = F.maximum(x, 0.0) - x * target + F.log(1.0 + F.exp(-F.abs(x)))
        return self._reduce(per_element)


LOSSES = {cls.__name__: cls for cls in (MSELoss, CrossEntropyLoss, BCEWithLogitsLoss)}
