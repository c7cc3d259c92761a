"""Learning-rate schedules computed inside the training step.

A schedule that depends only on the number of updates taken needs no
Python per step: `schedule_lr` rewrites the training graph so that every
use of the runtime input `lr` reads `schedule(lr, t)` instead, where `t` is
the optimizer's `step` state before this update (0 on the first). That is
the learning rate PyTorch's scheduler gives the (t+1)-th `optimizer.step()`
when `scheduler.step()` follows each one; the runtime `lr` plays the base
lr, so it can still be changed without recompiling. The formulas are the
closed forms of torch.optim.lr_scheduler."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..ir import Builder, ConfigError, DType, Graph, Value
from .optimizers import LEARNING_RATE, STEP


def _floor(b: Builder, x: Value) -> Value:
    """floor(x) for x >= 0 (a cast truncates toward zero)."""
    return b.cast(b.cast(x, dtype=DType.int64), dtype=x.type.dtype)


def _round(b: Builder, x: Value) -> Value:
    """x rounded to the nearest integer, for x >= 0."""
    return _floor(b, b.add(x, 0.5))


def _ge(b: Builder, t: Value, bound: float) -> Value:
    """1.0 where t >= bound, else 0.0."""
    return b.cast(b.ge(t, float(bound)), dtype=t.type.dtype)


def _step_lr(b, base, t, step_size, gamma=0.1):
    return b.mul(base, b.pow(b.const(float(gamma), t.type.dtype), _floor(b, b.div(t, float(step_size)))))


def _multi_step_lr(b, base, t, milestones, gamma=0.1):
    passed = b.const(0.0, t.type.dtype)
    for m in sorted(milestones):  # a milestone listed twice counts twice, as bisect_right does
        passed = b.add(passed, _ge(b, t, m))
    return b.mul(base, b.pow(b.const(float(gamma), t.type.dtype), passed))


def _exponential_lr(b, base, t, gamma):
    return b.mul(base, b.pow(b.const(float(gamma), t.type.dtype), t))


def _linear_lr(b, base, t, start_factor=1.0 / 3, end_factor=1.0, total_iters=5):
    done = b.minimum(t, float(total_iters))
    scale = b.add(b.div(b.mul(done, end_factor - start_factor), float(total_iters)), start_factor)
    return b.mul(base, scale)


def _constant_lr(b, base, t, factor=1.0 / 3, total_iters=5):
    return b.mul(base, b.add(b.mul(_ge(b, t, total_iters), 1 - factor), factor))


def _polynomial_lr(b, base, t, total_iters=5, power=1.0):
    done = b.minimum(t, float(total_iters))
    return b.mul(base, b.pow(b.sub(1.0, b.div(done, float(total_iters))), float(power)))


def _annealed(b, base, eta_min, fraction):
    """eta_min + (base - eta_min) * (1 + cos(pi * fraction)) / 2."""
    wave = b.mul(b.add(b.cos(b.mul(fraction, math.pi)), 1.0), 0.5)
    return b.add(b.mul(b.sub(base, float(eta_min)), wave), float(eta_min))


def _cosine_annealing_lr(b, base, t, T_max, eta_min=0.0):
    return _annealed(b, base, eta_min, b.div(t, float(T_max)))


def _cosine_annealing_warm_restarts(b, base, t, T_0, T_mult=1, eta_min=0.0):
    if T_mult == 1:
        since_restart = b.sub(t, b.mul(_floor(b, b.div(t, float(T_0))), float(T_0)))
        return _annealed(b, base, eta_min, b.div(since_restart, float(T_0)))
    # period n starts at T_0 (T_mult^n - 1) / (T_mult - 1): n from a log, then
    # set exact where rounding put it one off (period starts are integers)
    growth = b.const(float(T_mult), t.type.dtype)
    start = lambda n: _round(b, b.div(b.mul(b.sub(b.pow(growth, n), 1.0), float(T_0)), float(T_mult - 1)))
    n = _floor(b, b.div(b.log(b.add(b.div(b.mul(t, float(T_mult - 1)), float(T_0)), 1.0)), math.log(T_mult)))
    n = b.sub(n, b.cast(b.lt(t, start(n)), dtype=t.type.dtype))
    n = b.add(n, b.cast(b.ge(t, start(b.add(n, 1.0))), dtype=t.type.dtype))
    period = _round(b, b.mul(b.pow(growth, n), float(T_0)))
    return _annealed(b, base, eta_min, b.div(b.sub(t, start(n)), period))


def _sequential_lr(b, base, t, schedulers, milestones):
    """Each schedule from its milestone on, counting its steps from there."""
    lr = schedulers[0].emit(b, base, t)
    for milestone, schedule in zip(milestones, schedulers[1:], strict=True):
        later = schedule.emit(b, base, b.maximum(b.sub(t, float(milestone)), 0.0))
        lr = b.select(b.ge(t, float(milestone)), later, lr)
    return lr


SCHEDULERS = "schedulers"
"""SequentialLR's argument holding its child schedules."""

POSITIVE_INTEGERS = {"CosineAnnealingLR": ("T_max",), "CosineAnnealingWarmRestarts": ("T_0", "T_mult")}
"""Arguments that count steps (a zero period would divide by zero)."""

SCHEDULES: dict[str, Callable[..., Value]] = {
    "StepLR": _step_lr,
    "MultiStepLR": _multi_step_lr,
    "ExponentialLR": _exponential_lr,
    "LinearLR": _linear_lr,
    "ConstantLR": _constant_lr,
    "PolynomialLR": _polynomial_lr,
    "CosineAnnealingLR": _cosine_annealing_lr,
    "CosineAnnealingWarmRestarts": _cosine_annealing_warm_restarts,
    "SequentialLR": _sequential_lr,
}
"""The schedules that compile into the step, by PyTorch's class name."""


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class StepSchedule:
    """A learning-rate schedule of the step count, compiled into the step:
    PyTorch's class name and its arguments (without the optimizer)."""

    name: str
    arguments: tuple[tuple[str, Any], ...]

    def __post_init__(self) -> None:
        if self.name not in SCHEDULES:
            raise ConfigError(
                f"{self.name} does not compile into the step; these do: {', '.join(SCHEDULES)} "
                "(the others run in Python: construct them on the Program)"
            )
        for key, value in self.arguments:
            if key == SCHEDULERS:
                if not (value and all(isinstance(v, StepSchedule) for v in value)):
                    raise ConfigError(
                        f"{self.name}: schedulers must be a list of compiled schedules "
                        f"(such as LinearLR.compiled(...)), got {value!r}"
                    )
                continue
            numbers_ok = all(map(_is_number, value)) if isinstance(value, list | tuple) else _is_number(value)
            if not numbers_ok:
                raise ConfigError(f"{self.name}: argument {key}={value!r} must be a finite number (or list of them)")
        self._check_signature()
        given = dict(self.arguments)
        if self.name == "SequentialLR" and len(given["milestones"]) != len(given[SCHEDULERS]) - 1:
            raise ConfigError(
                f"SequentialLR expects one milestone fewer than schedulers, got {len(given[SCHEDULERS])} schedulers "
                f"and {len(given['milestones'])} milestones"
            )
        for key in POSITIVE_INTEGERS.get(self.name, ()):
            value = given.get(key, 1)
            if not (float(value).is_integer() and value >= 1):
                raise ConfigError(f"{self.name}: {key} must be an integer >= 1, got {value!r}")

    def _check_signature(self) -> None:
        code = SCHEDULES[self.name].__code__
        names = code.co_varnames[3 : code.co_argcount]  # after (b, base, t)
        required = names[: len(names) - len(SCHEDULES[self.name].__defaults__ or ())]
        given = dict(self.arguments)
        unknown = [k for k in given if k not in names]
        if unknown:
            raise ConfigError(f"{self.name} got an unexpected argument {unknown[0]!r}; it takes {', '.join(names)}")
        missing = [k for k in required if k not in given]
        if missing:
            raise ConfigError(f"{self.name} needs the argument {missing[0]!r}")

    def emit(self, b: Builder, base_lr: Value, t: Value) -> Value:
        """The learning rate of the update after `t` updates, from `base_lr`."""
        return SCHEDULES[self.name](b, base_lr, t, **dict(self.arguments))

    def to_json(self) -> dict[str, Any]:
        """The schedule as a checkpoint records it."""
        arguments = {k: list(v) if isinstance(v, tuple) else v for k, v in self.arguments}
        if SCHEDULERS in arguments:
            arguments[SCHEDULERS] = [s.to_json() for s in arguments[SCHEDULERS]]
        return {"name": self.name, "arguments": arguments}

    @classmethod
    def of(cls, name: str, **arguments: Any) -> StepSchedule:
        """The schedule `name` with `arguments` (lists become tuples, so it
        hashes; a SequentialLR's schedulers may be given as `to_json` dicts)."""
        if isinstance(arguments.get(SCHEDULERS), list | tuple):
            arguments[SCHEDULERS] = [_schedule(s) for s in arguments[SCHEDULERS]]
        items = tuple((k, tuple(v) if isinstance(v, list | tuple) else v) for k, v in sorted(arguments.items()))
        return cls(name, items)


def _schedule(value: Any) -> Any:
    """A child schedule of SequentialLR: itself, or one from its `to_json` dict."""
    if isinstance(value, dict) and set(value) == {"name", "arguments"} and isinstance(value["arguments"], dict):
        return StepSchedule.of(value["name"], **value["arguments"])
    return value


def schedule_lr(graph: Graph, schedule: StepSchedule) -> Graph:
    """The pass: `graph` (a training graph with input `lr` and state
    `step`) with every use of `lr` reading the scheduled learning rate."""
    out = Graph(graph.name)
    mapping = {a: out.add_argument(a.name, a.type, a.role) for a in graph.arguments}  # type: ignore[arg-type]
    lr = graph.argument(LEARNING_RATE)
    mapping[lr] = schedule.emit(Builder(out), mapping[lr], mapping[graph.argument(STEP)])
    for node in graph.nodes:
        inputs = tuple(mapping[v] for v in node.inputs)
        mapping[node.output] = out.append(node.op, inputs, node.attrs, node.output.type)
    out.outputs = {k: mapping[v] for k, v in graph.outputs.items()}
    out.updates = {k: mapping[v] for k, v in graph.updates.items()}
    return out
