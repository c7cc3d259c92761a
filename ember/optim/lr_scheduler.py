"""Learning-rate schedules with PyTorch's classes, arguments and formulas
(torch.optim.lr_scheduler), constructed on a training Program in place of
the optimizer: `sched = StepLR(prog, step_size=10, gamma=0.5)`, then
`sched.step()` after each epoch (or step) and `sched.get_last_lr()`.

A schedule sets the program's learning rate, a runtime input, so it never
recompiles. With parameter groups (`prog.param_groups`) it drives each
group's `lr` from that group's base lr, as PyTorch does; otherwise the one
group is `prog.lr`. The chainable (recursive) forms are PyTorch's own, so
the sequence of learning rates is the same floating-point sequence."""

from __future__ import annotations

import math
import types
import warnings
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, MutableMapping, Sequence
from typing import Any

from ..compiler.schedules import StepSchedule
from ..ir import ConfigError

__all__ = [
    "ChainedScheduler",
    "ConstantLR",
    "CosineAnnealingLR",
    "CosineAnnealingWarmRestarts",
    "ExponentialLR",
    "LRScheduler",
    "LambdaLR",
    "LinearLR",
    "MultiStepLR",
    "MultiplicativeLR",
    "OneCycleLR",
    "PolynomialLR",
    "ReduceLROnPlateau",
    "SequentialLR",
    "StepLR",
]

_EPOCH_DEPRECATION = (
    "passing an epoch to step() is deprecated (as in PyTorch): it uses the closed form where one exists; call step()"
)
_SCHEDULE_KEYS = "_lr_schedule_keys"  # where a Program keeps its groups' schedule keys (initial_lr, max_lr, ...)


class _Group(MutableMapping):
    """One parameter group as a schedule sees it: `lr` (and any key the
    program's own group has, such as `momentum` or `betas`) reads and writes
    the program; other keys (`initial_lr`, `max_lr`, ...) live beside it,
    shared by every schedule of the program as PyTorch shares them through
    the optimizer's groups."""

    def __init__(self, program: Any, index: int, extra: dict[str, Any]) -> None:
        self._program = program
        self._index = index
        self._extra = extra

    def _target(self) -> MutableMapping | None:
        groups = getattr(self._program, "param_groups", None)
        return None if groups is None else groups[self._index]

    def __getitem__(self, key: str) -> Any:
        target = self._target()
        if target is None and key == "lr":
            return self._program.lr
        if target is not None and key in target:
            return target[key]
        return self._extra[key]

    def __setitem__(self, key: str, value: Any) -> None:
        target = self._target()
        if target is None and key == "lr":
            self._program.lr = value
        elif target is not None and key in target:
            target[key] = value
        else:
            self._extra[key] = value

    def __delitem__(self, key: str) -> None:
        del self._extra[key]

    def __iter__(self) -> Iterator[str]:
        target = self._target()
        own = list(target) if target is not None else ["lr"]
        return iter(own + [k for k in self._extra if k not in own])

    def __len__(self) -> int:
        return len(list(iter(self)))


def _groups(program: Any) -> list[_Group]:
    """The program's parameter groups as schedules see them."""
    if not getattr(program, "is_training", False):
        raise ConfigError(
            f"a learning-rate schedule needs a training Program (compiled with loss= and optimizer=), got {program!r}"
        )
    count = len(program.param_groups) if hasattr(program, "param_groups") else 1
    extras = getattr(program, _SCHEDULE_KEYS, None)
    if extras is None or len(extras) != count:
        extras = [{} for _ in range(count)]
        setattr(program, _SCHEDULE_KEYS, extras)
    return [_Group(program, i, extra) for i, extra in enumerate(extras)]


def _lrs(groups: Sequence[MutableMapping], key: str = "lr") -> list[Any]:
    return [group[key] for group in groups]


def _per_group(name: str, groups: Sequence[MutableMapping], value: Any) -> list[Any]:
    """`value` for each group: one value for all, or a list with one per group."""
    if isinstance(value, list | tuple):
        if len(value) != len(groups):
            raise ConfigError(f"{name} must have one value per parameter group ({len(groups)}), got {len(value)}")
        return list(value)
    return [value] * len(groups)


class LRScheduler:
    """Base class: subclasses compute the next learning rates in `get_lr`
    (PyTorch's chainable form) and may give `_get_closed_form_lr`."""

    def __init__(self, program: Any, last_epoch: int = -1) -> None:
        self.program = program
        self.param_groups = _groups(program)
        if last_epoch == -1:
            for group in self.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(self.param_groups):
                if "initial_lr" not in group:
                    raise ConfigError(
                        f"param group {i} has no 'initial_lr': resuming a schedule with last_epoch={last_epoch} "
                        "needs a schedule that started on this program"
                    )
        self.base_lrs: list[float] = _lrs(self.param_groups, "initial_lr")
        self.last_epoch = last_epoch
        self._is_initial = False
        self._initial_step()

    @classmethod
    def compiled(cls, **arguments: Any) -> StepSchedule:
        """This schedule computed inside the training step from the
        optimizer's step count (`ember.compile(..., lr_schedule=...)`), as
        if `step()` followed every optimizer step: the arguments are this
        class's, without the program (SequentialLR's `schedulers` are
        compiled schedules). Schedules of the step count alone compile:
        see `ember.compiler.schedules.SCHEDULES`."""
        return StepSchedule.of(cls.__name__, **arguments)

    @property
    def optimizer(self) -> Any:
        """The program whose learning rates this schedule sets (PyTorch's name)."""
        return self.program

    def _initial_step(self) -> None:
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def get_lr(self) -> list[float]:
        """The learning rates of the next step (called by `step`)."""
        raise NotImplementedError

    def get_last_lr(self) -> list[float]:
        """The learning rate of each parameter group, as last set by this schedule."""
        return list(self._last_lr)

    def step(self, epoch: int | None = None) -> None:
        """Advance the schedule by one step (call it after the training step or epoch)."""
        self._step_count += 1
        if epoch is not None:
            warnings.warn(_EPOCH_DEPRECATION, UserWarning, stacklevel=2)
        self._update_lr(epoch)

    def _update_lr(self, epoch: int | None = None) -> None:
        if epoch is None:
            self.last_epoch += 1
            values = self.get_lr()
        else:
            self.last_epoch = epoch
            closed_form = getattr(self, "_get_closed_form_lr", None)
            values = closed_form() if closed_form is not None else self.get_lr()
        for group, lr in zip(self.param_groups, values, strict=True):
            group["lr"] = lr
        self._last_lr = _lrs(self.param_groups)

    def state_dict(self) -> dict[str, Any]:
        """The schedule's state: every attribute but the program."""
        return {k: v for k, v in self.__dict__.items() if k not in ("program", "param_groups")}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a state from `state_dict()`."""
        self.__dict__.update(state_dict)


class LambdaLR(LRScheduler):
    """lr = base_lr * lr_lambda(epoch); one function, or one per group."""

    def __init__(self, program: Any, lr_lambda: Callable | Sequence[Callable], last_epoch: int = -1) -> None:
        groups = _groups(program)
        if isinstance(lr_lambda, list | tuple) and len(lr_lambda) != len(groups):
            raise ConfigError(f"expected {len(groups)} lr_lambdas (one per parameter group), got {len(lr_lambda)}")
        self.lr_lambdas = _per_group("lr_lambda", groups, lr_lambda)
        super().__init__(program, last_epoch)

    def state_dict(self) -> dict[str, Any]:
        """The state; lambdas are kept only if they are callable objects (as PyTorch does)."""
        state = {k: v for k, v in super().state_dict().items() if k != "lr_lambdas"}
        state["lr_lambdas"] = [
            None if isinstance(fn, types.FunctionType) else fn.__dict__.copy() for fn in self.lr_lambdas
        ]
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a state from `state_dict()`."""
        state = dict(state_dict)
        lambdas = state.pop("lr_lambdas")
        self.__dict__.update(state)
        for fn, saved in zip(self.lr_lambdas, lambdas, strict=True):
            if saved is not None:
                fn.__dict__.update(saved)

    def get_lr(self) -> list[float]:
        return [base * fn(self.last_epoch) for fn, base in zip(self.lr_lambdas, self.base_lrs, strict=True)]


class MultiplicativeLR(LambdaLR):
    """lr = lr * lr_lambda(epoch) at each step after the first."""

    def get_lr(self) -> list[float]:
        if not self._is_initial:
            return [g["lr"] * fn(self.last_epoch) for fn, g in zip(self.lr_lambdas, self.param_groups, strict=True)]
        return _lrs(self.param_groups)


class StepLR(LRScheduler):
    """Multiply the lr by `gamma` every `step_size` steps."""

    def __init__(self, program: Any, step_size: int, gamma: float = 0.1, last_epoch: int = -1) -> None:
        self.step_size = step_size
        self.gamma = gamma
        super().__init__(program, last_epoch)

    def get_lr(self) -> list[float]:
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return _lrs(self.param_groups)
        return [g["lr"] * self.gamma for g in self.param_groups]

    def _get_closed_form_lr(self) -> list[float]:
        return [base * self.gamma ** (self.last_epoch // self.step_size) for base in self.base_lrs]


class MultiStepLR(LRScheduler):
    """Multiply the lr by `gamma` at each milestone (a milestone listed twice, twice)."""

    def __init__(self, program: Any, milestones: Iterable[int], gamma: float = 0.1, last_epoch: int = -1) -> None:
        self.milestones = Counter(milestones)
        self.gamma = gamma
        super().__init__(program, last_epoch)

    def get_lr(self) -> list[float]:
        if self.last_epoch not in self.milestones:
            return _lrs(self.param_groups)
        return [g["lr"] * self.gamma ** self.milestones[self.last_epoch] for g in self.param_groups]

    def _get_closed_form_lr(self) -> list[float]:
        milestones = sorted(self.milestones.elements())
        return [base * self.gamma ** bisect_right(milestones, self.last_epoch) for base in self.base_lrs]


class ConstantLR(LRScheduler):
    """lr = base_lr * factor for the first `total_iters` steps, then base_lr."""

    def __init__(self, program: Any, factor: float = 1.0 / 3, total_iters: int = 5, last_epoch: int = -1) -> None:
        if factor > 1.0 or factor < 0:
            raise ConfigError(f"ConstantLR: factor must be between 0 and 1, got {factor}")
        self.factor = factor
        self.total_iters = total_iters
        super().__init__(program, last_epoch)

    def get_lr(self) -> list[float]:
        if self.last_epoch == 0:
            return [g["lr"] * self.factor for g in self.param_groups]
        if self.last_epoch != self.total_iters:
            return _lrs(self.param_groups)
        return [g["lr"] * (1.0 / self.factor) for g in self.param_groups]

    def _get_closed_form_lr(self) -> list[float]:
        on = self.last_epoch >= self.total_iters
        return [base * (self.factor + on * (1 - self.factor)) for base in self.base_lrs]


class LinearLR(LRScheduler):
    """Scale the lr linearly from `start_factor` to `end_factor` over `total_iters` steps."""

    def __init__(
        self,
        program: Any,
        start_factor: float = 1.0 / 3,
        end_factor: float = 1.0,
        total_iters: int = 5,
        last_epoch: int = -1,
    ) -> None:
        if start_factor > 1.0 or start_factor <= 0:
            raise ConfigError(f"LinearLR: start_factor must be in (0, 1], got {start_factor}")
        if end_factor > 1.0 or end_factor < 0:
            raise ConfigError(f"LinearLR: end_factor must be in [0, 1], got {end_factor}")
        self.start_factor = start_factor
        self.end_factor = end_factor
        self.total_iters = total_iters
        super().__init__(program, last_epoch)

    def get_lr(self) -> list[float]:
        if self.last_epoch == 0:
            return [g["lr"] * self.start_factor for g in self.param_groups]
        if self._is_initial or self.last_epoch > self.total_iters:
            return _lrs(self.param_groups)
        delta = self.end_factor - self.start_factor
        scale = 1.0 + delta / (self.total_iters * self.start_factor + (self.last_epoch - 1) * delta)
        return [g["lr"] * scale for g in self.param_groups]

    def _get_closed_form_lr(self) -> list[float]:
        delta = self.end_factor - self.start_factor
        done = min(self.total_iters, self.last_epoch)
        return [base * (self.start_factor + delta * done / self.total_iters) for base in self.base_lrs]


class ExponentialLR(LRScheduler):
    """Multiply the lr by `gamma` every step."""

    def __init__(self, program: Any, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = gamma
        super().__init__(program, last_epoch)

    def get_lr(self) -> list[float]:
        if self._is_initial:
            return _lrs(self.param_groups)
        return [g["lr"] * self.gamma for g in self.param_groups]

    def _get_closed_form_lr(self) -> list[float]:
        return [base * self.gamma**self.last_epoch for base in self.base_lrs]


class PolynomialLR(LRScheduler):
    """Decay the lr to 0 over `total_iters` steps as (1 - t/total_iters) ** power."""

    def __init__(self, program: Any, total_iters: int = 5, power: float = 1.0, last_epoch: int = -1) -> None:
        self.total_iters = total_iters
        self.power = power
        super().__init__(program, last_epoch)

    def get_lr(self) -> list[float]:
        if self._is_initial or self.last_epoch > self.total_iters:
            return _lrs(self.param_groups)
        decay = (
            (1.0 - self.last_epoch / self.total_iters) / (1.0 - (self.last_epoch - 1) / self.total_iters)
        ) ** self.power
        return [g["lr"] * decay for g in self.param_groups]

    def _get_closed_form_lr(self) -> list[float]:
        done = min(self.total_iters, self.last_epoch)
        return [base * (1.0 - done / self.total_iters) ** self.power for base in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """Cosine annealing from the base lr to `eta_min` over `T_max` steps (SGDR without restarts)."""

    def __init__(self, program: Any, T_max: int, eta_min: float = 0.0, last_epoch: int = -1) -> None:
        self.T_max = T_max
        self.eta_min = eta_min
        super().__init__(program, last_epoch)

    def get_lr(self) -> list[float]:
        t, t_max, eta_min = self.last_epoch, self.T_max, self.eta_min
        if self._is_initial:
            return _lrs(self.param_groups)
        if self._step_count == 1 and t > 0:
            return [eta_min + (base - eta_min) * (1 + math.cos(t * math.pi / t_max)) / 2 for base in self.base_lrs]
        if (t - 1 - t_max) % (2 * t_max) == 0:
            return [
                g["lr"] + (base - eta_min) * (1 - math.cos(math.pi / t_max)) / 2
                for base, g in zip(self.base_lrs, self.param_groups, strict=True)
            ]
        ratio = (1 + math.cos(math.pi * t / t_max)) / (1 + math.cos(math.pi * (t - 1) / t_max))
        return [ratio * (g["lr"] - eta_min) + eta_min for g in self.param_groups]

    def _get_closed_form_lr(self) -> list[float]:
        cos = 1 + math.cos(math.pi * self.last_epoch / self.T_max)
        return [self.eta_min + (base - self.eta_min) * cos / 2 for base in self.base_lrs]


class _Composite(LRScheduler):
    """A schedule made of other schedules of the same program; its state holds theirs."""

    _schedulers: list[LRScheduler]

    def state_dict(self) -> dict[str, Any]:
        """The state, with each child's state."""
        state = {k: v for k, v in super().state_dict().items() if k != "_schedulers"}
        state["_schedulers"] = [s.state_dict() for s in self._schedulers]
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a state from `state_dict()`."""
        state = dict(state_dict)
        children = state.pop("_schedulers")
        self.__dict__.update(state)
        for scheduler, child in zip(self._schedulers, children, strict=True):
            scheduler.load_state_dict(child)


class SequentialLR(_Composite):
    """Run `schedulers` one after another, switching at each of `milestones`."""

    def __init__(
        self, program: Any, schedulers: Sequence[LRScheduler], milestones: Sequence[int], last_epoch: int = -1
    ) -> None:
        _check_children(type(self).__name__, program, schedulers)
        if len(milestones) != len(schedulers) - 1:
            raise ConfigError(
                f"SequentialLR expects one milestone fewer than schedulers, got {len(schedulers)} schedulers "
                f"and {len(milestones)} milestones"
            )
        self._schedulers = list(schedulers)
        self._milestones = list(milestones)
        self.last_epoch = last_epoch + 1
        self.program = program
        self.param_groups = _groups(program)
        for group in self.param_groups:
            group["lr"] = group["initial_lr"]
        self._undo(self)  # the children each took their initial step: take them back
        index = bisect_right(self._milestones, 0)
        self._schedulers[index]._initial_step()
        self._last_lr = self._schedulers[index].get_last_lr()

    def _undo(self, scheduler: Any) -> None:
        if hasattr(scheduler, "_schedulers"):
            for child in scheduler._schedulers:
                self._undo(child)
        elif hasattr(scheduler, "last_epoch"):
            scheduler.last_epoch -= 1

    def step(self) -> None:  # type: ignore[override]
        """Advance by one step: the scheduler of this step steps (restarting at its milestone)."""
        self.last_epoch += 1
        index = bisect_right(self._milestones, self.last_epoch)
        scheduler = self._schedulers[index]
        if index > 0 and self._milestones[index - 1] == self.last_epoch:
            scheduler._update_lr(0)
        else:
            scheduler.step()
        self._last_lr = scheduler.get_last_lr()


class ChainedScheduler(_Composite):
    """Step every scheduler of `schedulers` at each step (their effects multiply)."""

    def __init__(self, schedulers: Sequence[LRScheduler], optimizer: Any = None) -> None:
        program = optimizer if optimizer is not None else (schedulers[0].program if schedulers else None)
        _check_children(type(self).__name__, program, schedulers)
        self._schedulers = list(schedulers)
        self.program = program
        self.param_groups = _groups(program)
        self._last_lr = _lrs(self.param_groups)

    def step(self) -> None:  # type: ignore[override]
        """Step every scheduler."""
        for scheduler in self._schedulers:
            scheduler.step()
        self._last_lr = _lrs(self.param_groups)


def _check_children(name: str, program: Any, schedulers: Sequence[LRScheduler]) -> None:
    if len(schedulers) < 1:
        raise ConfigError(f"{name} expects at least one scheduler, got none")
    for i, scheduler in enumerate(schedulers):
        if isinstance(scheduler, ReduceLROnPlateau):
            raise ConfigError(f"{name} cannot hold ReduceLROnPlateau (index {i}): its step() needs a metric")
        if getattr(scheduler, "program", None) is not program:
            raise ConfigError(f"{name}: scheduler {type(scheduler).__name__} at index {i} is on another program")


class ReduceLROnPlateau(LRScheduler):
    """Multiply the lr by `factor` when a metric (`step(metric)`) has not
    improved for `patience` steps."""

    def __init__(
        self,
        program: Any,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float | Sequence[float] = 0,
        eps: float = 1e-8,
    ) -> None:
        if factor >= 1.0:
            raise ConfigError(f"ReduceLROnPlateau: factor must be < 1.0, got {factor}")
        if mode not in ("min", "max"):
            raise ConfigError(f"ReduceLROnPlateau: mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ConfigError(f"ReduceLROnPlateau: threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        self.factor = factor
        self.program = program
        self.param_groups = _groups(program)
        self.min_lrs = _per_group("min_lr", self.param_groups, min_lr)
        self.patience = patience
        self.cooldown = cooldown
        self.eps = eps
        self.mode = mode
        self.threshold = threshold
        self.threshold_mode = threshold_mode
        self.mode_worse = math.inf if mode == "min" else -math.inf
        self.last_epoch = 0
        self._last_lr = _lrs(self.param_groups)
        self._reset()

    def _reset(self) -> None:
        self.best = self.mode_worse
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    @property
    def in_cooldown(self) -> bool:
        """Whether the schedule waits out its cooldown after a reduction."""
        return self.cooldown_counter > 0

    def step(self, metrics: float, epoch: int | None = None) -> None:  # type: ignore[override]
        """Record this step's metric (a validation loss, say) and reduce the lr if it stalls."""
        current = float(metrics)
        if epoch is None:
            epoch = self.last_epoch + 1
        else:
            warnings.warn(_EPOCH_DEPRECATION, UserWarning, stacklevel=2)
        self.last_epoch = epoch
        if self._is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad epochs in cooldown do not count
        if self.num_bad_epochs > self.patience:
            self._reduce_lr()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = _lrs(self.param_groups)

    def _reduce_lr(self) -> None:
        for group, min_lr in zip(self.param_groups, self.min_lrs, strict=True):
            old = float(group["lr"])
            new = max(old * self.factor, min_lr)
            if old - new > self.eps:
                group["lr"] = new

    def _is_better(self, a: float, best: float) -> bool:
        if self.mode == "min" and self.threshold_mode == "rel":
            return a < best * (1.0 - self.threshold)
        if self.mode == "min":
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold


class CosineAnnealingWarmRestarts(LRScheduler):
    """Cosine annealing restarted every T_i steps, T_0 first, each period
    `T_mult` times the last (SGDR)."""

    def __init__(self, program: Any, T_0: int, T_mult: int = 1, eta_min: float = 0.0, last_epoch: int = -1) -> None:
        if not isinstance(T_0, int) or T_0 <= 0:
            raise ConfigError(f"CosineAnnealingWarmRestarts: expected a positive integer T_0, got {T_0!r}")
        if not isinstance(T_mult, int) or T_mult < 1:
            raise ConfigError(f"CosineAnnealingWarmRestarts: expected an integer T_mult >= 1, got {T_mult!r}")
        if not isinstance(eta_min, float | int):
            raise ConfigError(f"CosineAnnealingWarmRestarts: expected a number eta_min, got {eta_min!r}")
        self.T_0 = T_0
        self.T_i = T_0
        self.T_mult = T_mult
        self.eta_min = eta_min
        self.T_cur = last_epoch
        super().__init__(program, last_epoch)

    def get_lr(self) -> list[float]:
        cos = 1 + math.cos(math.pi * self.T_cur / self.T_i)
        return [self.eta_min + (base - self.eta_min) * cos / 2 for base in self.base_lrs]

    def step(self, epoch: float | None = None) -> None:
        """Advance by one step, or go to `epoch` (may be fractional: epoch + i / iters)."""
        if epoch is None and self.last_epoch < 0:
            epoch = 0
        if epoch is None:
            epoch = self.last_epoch + 1
            self.T_cur = self.T_cur + 1
            if self.T_cur >= self.T_i:
                self.T_cur = self.T_cur % self.T_i
                self.T_i = self.T_i * self.T_mult
        else:
            self._go_to(epoch)
        self.last_epoch = math.floor(epoch)
        for group, lr in zip(self.param_groups, self.get_lr(), strict=True):
            group["lr"] = lr
        self._last_lr = _lrs(self.param_groups)

    def _go_to(self, epoch: float) -> None:
        if epoch < 0:
            raise ConfigError(f"CosineAnnealingWarmRestarts: expected a non-negative epoch, got {epoch}")
        if epoch < self.T_0:
            self.T_i = self.T_0
            self.T_cur = epoch
        elif self.T_mult == 1:
            self.T_cur = epoch % self.T_0
        else:
            n = int(math.log((epoch / self.T_0 * (self.T_mult - 1) + 1), self.T_mult))
            self.T_cur = epoch - self.T_0 * (self.T_mult**n - 1) / (self.T_mult - 1)
            self.T_i = self.T_0 * self.T_mult**n


class OneCycleLR(LRScheduler):
    """The 1cycle policy: warm up from max_lr/div_factor to max_lr over
    `pct_start` of `total_steps`, then anneal to initial_lr/final_div_factor;
    momentum (or Adam's beta1) cycles inversely when the program's groups
    expose it."""

    def __init__(
        self,
        program: Any,
        max_lr: float | Sequence[float],
        total_steps: int | None = None,
        epochs: int | None = None,
        steps_per_epoch: int | None = None,
        pct_start: float = 0.3,
        anneal_strategy: str = "cos",
        cycle_momentum: bool = True,
        base_momentum: float | Sequence[float] = 0.85,
        max_momentum: float | Sequence[float] = 0.95,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        three_phase: bool = False,
        last_epoch: int = -1,
    ) -> None:
        groups = _groups(program)
        self.total_steps = _total_steps(total_steps, epochs, steps_per_epoch)
        if not isinstance(pct_start, float) or not 0 <= pct_start <= 1:
            raise ConfigError(f"OneCycleLR: expected a float pct_start between 0 and 1, got {pct_start!r}")
        if anneal_strategy not in ("cos", "linear"):
            raise ConfigError(f"OneCycleLR: anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}")
        self._anneal_func_type = anneal_strategy
        self._schedule_phases = _one_cycle_phases(self.total_steps, pct_start, three_phase)
        if last_epoch == -1:
            for group, top in zip(groups, _per_group("max_lr", groups, max_lr), strict=True):
                group["initial_lr"] = top / div_factor
                group["max_lr"] = top
                group["min_lr"] = group["initial_lr"] / final_div_factor
        self.cycle_momentum = cycle_momentum
        if cycle_momentum:
            self._init_momentum(groups, base_momentum, max_momentum, last_epoch)
        super().__init__(program, last_epoch)

    def _init_momentum(self, groups: list[_Group], base: Any, top: Any, last_epoch: int) -> None:
        keys = set(groups[0]) if groups else set()
        if "betas" not in keys and "momentum" not in keys:
            raise ConfigError(
                "OneCycleLR(cycle_momentum=True) cycles the optimizer's momentum or beta1, which this program "
                "does not take as a runtime hyperparameter; pass cycle_momentum=False"
            )
        self.use_beta1 = "betas" in keys
        if last_epoch == -1:
            tops, bases = _per_group("max_momentum", groups, top), _per_group("base_momentum", groups, base)
            for m_top, m_base, group in zip(tops, bases, groups, strict=True):
                try:
                    self._set_momentum(group, m_top)
                except ConfigError as e:  # SGD compiled without momentum: it cannot be cycled
                    raise ConfigError(f"OneCycleLR(cycle_momentum=True): {e}; or pass cycle_momentum=False") from None
                group["max_momentum"] = m_top
                group["base_momentum"] = m_base

    def _set_momentum(self, group: MutableMapping, value: float) -> None:
        if self.use_beta1:
            group["betas"] = (value, *group["betas"][1:])
        else:
            group["momentum"] = value

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self._anneal_func_type == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def get_lr(self) -> list[float]:
        step = self.last_epoch
        if step > self.total_steps:
            raise ConfigError(f"OneCycleLR: tried to step {step} times; total_steps is {self.total_steps}")
        lrs = []
        for group in self.param_groups:
            start_step = 0.0
            for i, phase in enumerate(self._schedule_phases):
                end_step = phase["end_step"]
                if step <= end_step or i == len(self._schedule_phases) - 1:
                    pct = (step - start_step) / (end_step - start_step)
                    lrs.append(self._anneal(group[phase["start_lr"]], group[phase["end_lr"]], pct))
                    if self.cycle_momentum:
                        momentum = self._anneal(group[phase["start_momentum"]], group[phase["end_momentum"]], pct)
                        self._set_momentum(group, momentum)
                    break
                start_step = phase["end_step"]
        return lrs


def _total_steps(total_steps: int | None, epochs: int | None, steps_per_epoch: int | None) -> int:
    if total_steps is not None:
        if not isinstance(total_steps, int) or total_steps <= 0:
            raise ConfigError(f"OneCycleLR: expected a positive integer total_steps, got {total_steps!r}")
        return total_steps
    if epochs is None or steps_per_epoch is None:
        raise ConfigError("OneCycleLR: give total_steps, or epochs and steps_per_epoch")
    for name, value in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch)):
        if not isinstance(value, int) or value <= 0:
            raise ConfigError(f"OneCycleLR: expected a positive integer {name}, got {value!r}")
    return epochs * steps_per_epoch


def _one_cycle_phases(total: int, pct_start: float, three_phase: bool) -> list[dict[str, Any]]:
    """PyTorch's phases of the 1cycle policy: (end step, lr keys, momentum keys)."""

    def phase(end_step: float, lr: tuple[str, str], momentum: tuple[str, str]) -> dict[str, Any]:
        return {
            "end_step": end_step,
            "start_lr": lr[0],
            "end_lr": lr[1],
            "start_momentum": momentum[0],
            "end_momentum": momentum[1],
        }

    warmup = phase(float(pct_start * total) - 1, ("initial_lr", "max_lr"), ("max_momentum", "base_momentum"))
    if not three_phase:
        return [warmup, phase(total - 1, ("max_lr", "min_lr"), ("base_momentum", "max_momentum"))]
    return [
        warmup,
        phase(float(2 * pct_start * total) - 2, ("max_lr", "initial_lr"), ("base_momentum", "max_momentum")),
        phase(total - 1, ("initial_lr", "min_lr"), ("max_momentum", "max_momentum")),
    ]
