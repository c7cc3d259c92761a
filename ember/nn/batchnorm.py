"""`BatchNorm1d` and `SyncBatchNorm`: batch normalization with PyTorch's
arguments, formulas and state dict names (`weight`, `bias`,
`running_mean`, `running_var`, `num_batches_tracked`)."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from .. import functional as F
from ..ir import ConfigError, ShapeError
from ..tensor import emit, user_location
from .module import Buffer, Module, Parameter


class BatchNorm1d(Module):
    """Normalizes each of `num_features` channels of an input [N, C] or
    [N, C, L] over the batch (and length): `(x - mean) / sqrt(var + eps)
    * weight + bias`, as torch.nn.BatchNorm1d.

    In training mode it uses the batch's statistics (biased variance) and,
    with `track_running_stats`, updates `running_mean` and `running_var`
    (unbiased variance) by `momentum`, or by a cumulative average over
    `num_batches_tracked` batches when `momentum` is None. In eval mode it
    uses the running statistics; without `track_running_stats` it always
    uses the batch's. A training batch of one row per channel (PyTorch
    refuses it) adds its biased variance, 0, instead of dividing by zero."""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
    ) -> None:
        if not isinstance(num_features, int) or isinstance(num_features, bool) or num_features < 1:
            raise ConfigError(f"BatchNorm1d: num_features must be a positive integer, got {num_features!r}")
        if not _is_real(eps) or eps < 0:
            raise ConfigError(f"BatchNorm1d: eps must be a number >= 0, got {eps!r}")
        if momentum is not None and (not _is_real(momentum) or not 0 <= momentum <= 1):
            raise ConfigError(f"BatchNorm1d: momentum must be a number in [0, 1] or None, got {momentum!r}")
        self.num_features = num_features
        self.eps = float(eps)
        self.momentum = None if momentum is None else float(momentum)
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        if self.affine:
            self.weight = Parameter(data=np.ones(num_features))
            self.bias = Parameter(data=np.zeros(num_features))
        if self.track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features))
            self.register_buffer("running_var", np.ones(num_features))
            self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))

    def forward(self, x: Any) -> Any:
        axes = self._axes(x)
        if self.training or not self.track_running_stats:
            count = self._total(emit("size", x, axes=axes, dtype=x.dtype))  # rows (times length) per channel
            mean = self._total(F.sum(x, axes, keepdims=True)) / count
            centered = x - mean
            var = self._total(F.sum(centered * centered, axes, keepdims=True)) / count
            if self.training and self.track_running_stats:
                self._update_running_stats(count, mean, var)
        else:
            mean, var = self._channels(self.running_mean, x), self._channels(self.running_var, x)
            centered = x - mean
        y = centered * F.rsqrt(var + self.eps)
        if self.affine:
            y = y * self._channels(self.weight, x) + self._channels(self.bias, x)
        return y

    def input_spec(self) -> tuple[tuple[int, ...], str | None]:
        return (self.num_features,), None

    def _axes(self, x: Any) -> list[int]:
        """The axes statistics reduce over; checks the input's shape."""
        if x.ndim not in (2, 3) or x.shape[1] != self.num_features:
            raise ShapeError(
                f"expects input [N, {self.num_features}] or [N, {self.num_features}, L], got {list(x.shape)} "
                f"(at {user_location()})"
            )
        return [0] if x.ndim == 2 else [0, 2]

    def _channels(self, value: Any, x: Any) -> Any:
        """A per-channel vector shaped to broadcast against `x`."""
        return value if x.ndim == 2 else F.reshape(value, (self.num_features, 1))

    def _total(self, value: Any) -> Any:
        """A sum over this step's rows, `value` being this batch's: the
        batch is all the rows there are."""
        return value

    def _update_running_stats(self, count: Any, mean: Any, var: Any) -> None:
        unbiased = F.reshape(var, (self.num_features,)) * (count / F.maximum(count - 1.0, 1.0))
        self.num_batches_tracked = self.num_batches_tracked + 1.0
        factor = self.momentum if self.momentum is not None else 1.0 / (self.num_batches_tracked + 1.0)
        self.running_mean = self.running_mean * (1.0 - factor) + F.reshape(mean, (self.num_features,)) * factor
        self.running_var = self.running_var * (1.0 - factor) + unbiased * factor

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"track_running_stats={self.track_running_stats}"
        )


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class SyncBatchNorm(BatchNorm1d):
    """`BatchNorm1d` whose training statistics are those of the whole
    batch of a distributed step, every process's rows together, as
    torch.nn.SyncBatchNorm: the sums behind the mean and the variance
    (and the row count) are all-reduced across the processes, and so are
    their gradients. Outside a distributed step (`train_step` without
    `distributed=True`, a job of one, an exported model) it is
    `BatchNorm1d`. It synchronizes over the whole MPI job: `process_group`
    must be None."""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        process_group: Any = None,
    ) -> None:
        _whole_job(process_group)
        super().__init__(num_features, eps, momentum, affine, track_running_stats)

    def _total(self, value: Any) -> Any:
        return emit("allreduce_sum", value)

    @classmethod
    def convert_sync_batchnorm(cls, module: Module, process_group: Any = None) -> Module:
        """`module` with every BatchNorm1d in it replaced by a SyncBatchNorm
        holding the same parameters, buffers and mode (`module` itself if it
        is one); as torch.nn.SyncBatchNorm.convert_sync_batchnorm."""
        _whole_job(process_group)
        if isinstance(module, BatchNorm1d) and not isinstance(module, SyncBatchNorm):
            synced = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
            for name, member in [*module._registered(Parameter), *module._registered(Buffer)]:
                setattr(synced, name, member)
            synced.training = module.training
            return synced
        for name, child in list(module.named_children()):
            setattr(module, name, cls.convert_sync_batchnorm(child))
        return module


def _whole_job(process_group: Any) -> None:
    if process_group is not None:
        raise ConfigError("SyncBatchNorm: process_group must be None (ember synchronizes over the whole job)")
