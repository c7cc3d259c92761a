"""Optimizers, and the pass that lowers one into the training graph.

Each optimizer is a small frozen dataclass of hyperparameters with PyTorch's
defaults, names and update formulas (torch.optim, single-tensor path).
`lower_optimizer` turns a graph that outputs `loss` and `NAME.grad` into
the training graph: it adds the runtime input `lr`, the state `step` (the
number of updates taken, a float as in PyTorch) and each optimizer's
per-param state buffers (named like PyTorch's state keys), and expresses
every update as IR, so the whole step is one program."""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from typing import ClassVar

from ..ir import Builder, ConfigError, Graph, Value
from .autodiff import GRAD_SUFFIX, grad_name

STEP = "step"
LEARNING_RATE = "lr"


@dataclass(frozen=True)
class Scalars:
    """Per-step scalars shared by every parameter's update."""

    lr: Value
    step: Value  # the step number of this update: 1 on the first call


class Optimizer(ABC):
    """Base class: subclasses name their per-param state and emit one update."""

    lr: float

    @abstractmethod
    def state_slots(self) -> tuple[str, ...]:
        """Names of the state buffers each param gets (shaped like the param)."""

    @abstractmethod
    def update(self, b: Builder, s: Scalars, p: Value, g: Value, state: dict[str, Value]) -> tuple[Value, dict]:
        """Emit the update of one param; return its new value and new state."""

    def hyperparameters(self) -> dict[str, float | bool | tuple]:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _nonnegative(value: object) -> bool:
    """A real number >= 0 (False, not a TypeError, for strings and None)."""
    return isinstance(value, numbers.Real) and value >= 0


@dataclass(frozen=True)
class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum (torch.optim.SGD)."""

    lr: float = 1e-3
    momentum: float = 0.0
    dampening: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False

    def __post_init__(self) -> None:
        _check(_nonnegative(self.lr), f"SGD: invalid learning rate {self.lr} (must be >= 0)")
        _check(_nonnegative(self.momentum), f"SGD: invalid momentum {self.momentum} (must be >= 0)")
        _check(_nonnegative(self.weight_decay), f"SGD: invalid weight_decay {self.weight_decay} (must be >= 0)")
        _check(
            not self.nesterov or (self.momentum > 0 and self.dampening == 0),
            "SGD: nesterov momentum needs momentum > 0 and dampening = 0",
        )

    def state_slots(self) -> tuple[str, ...]:
        return ("momentum_buffer",) if self.momentum else ()

    def update(self, b, s, p, g, state):
        d = b.add(g, b.mul(p, self.weight_decay)) if self.weight_decay else g
        new_state = {}
        if self.momentum:
            buf = b.add(b.mul(state["momentum_buffer"], self.momentum), b.mul(d, 1 - self.dampening))
            if self.dampening:  # PyTorch starts the buffer at the first gradient itself
                buf = b.select(b.eq(s.step, 1.0), d, buf)
            new_state["momentum_buffer"] = buf
            d = b.add(d, b.mul(buf, self.momentum)) if self.nesterov else buf
        return b.sub(p, b.mul(d, s.lr)), new_state


@dataclass(frozen=True)
class Adam(Optimizer):
    """Adam (torch.optim.Adam), with L2 weight decay added to the gradient."""

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    amsgrad: bool = False
    decoupled: ClassVar[bool] = False

    def __post_init__(self) -> None:
        name = type(self).__name__
        _check(_nonnegative(self.lr), f"{name}: invalid learning rate {self.lr} (must be >= 0)")
        _check(_nonnegative(self.eps), f"{name}: invalid eps {self.eps} (must be >= 0)")
        _check(len(self.betas) == 2, f"{name}: betas must be a pair, got {self.betas!r}")
        for i, beta in enumerate(self.betas):
            _check(0 <= beta < 1, f"{name}: invalid beta at index {i}: {beta} (must be in [0, 1))")
        _check(_nonnegative(self.weight_decay), f"{name}: invalid weight_decay {self.weight_decay} (must be >= 0)")
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))

    def state_slots(self) -> tuple[str, ...]:
        return ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if self.amsgrad else ("exp_avg", "exp_avg_sq")

    def update(self, b, s, p, g, state):
        beta1, beta2 = self.betas
        if self.weight_decay and self.decoupled:
            p = b.mul(p, b.sub(1.0, b.mul(s.lr, self.weight_decay)))
        elif self.weight_decay:
            g = b.add(g, b.mul(p, self.weight_decay))
        m = b.add(b.mul(state["exp_avg"], beta1), b.mul(g, 1 - beta1))
        v = b.add(b.mul(state["exp_avg_sq"], beta2), b.mul(b.mul(g, g), 1 - beta2))
        new_state = {"exp_avg": m, "exp_avg_sq": v}
        if self.amsgrad:
            v = new_state["max_exp_avg_sq"] = b.maximum(state["max_exp_avg_sq"], v)
        bias_correction1 = b.sub(1.0, b.pow(b.const(beta1, s.step.type.dtype), s.step))
        bias_correction2 = b.sub(1.0, b.pow(b.const(beta2, s.step.type.dtype), s.step))
        step_size = b.div(s.lr, bias_correction1)
        denom = b.add(b.div(b.sqrt(v), b.sqrt(bias_correction2)), self.eps)
        return b.sub(p, b.mul(b.div(m, denom), step_size)), new_state


@dataclass(frozen=True)
class AdamW(Adam):
    """AdamW (torch.optim.AdamW): weight decay applied to the param directly."""

    weight_decay: float = 1e-2
    decoupled: ClassVar[bool] = True


def lower_optimizer(graph: Graph, optimizer: Optimizer) -> Graph:
    """The training graph: `graph` (outputs `loss` and `NAME.grad`) plus the
    optimizer update of every param that has a gradient."""
    train, _ = graph.clone("train")
    dtype = train.outputs["loss"].type.dtype
    b = Builder(train)
    lr = train.add_argument(LEARNING_RATE, train.outputs["loss"].type.with_dtype(dtype), "input")
    step = train.add_argument(STEP, lr.type, "state")
    new_step = b.add(step, 1.0)
    scalars = Scalars(lr=lr, step=new_step)
    for p in list(train.params):
        g = train.outputs.get(grad_name(p.name))  # type: ignore[operator]
        if g is None:
            continue
        state = {slot: train.add_argument(f"{p.name}.{slot}", p.type, "state") for slot in optimizer.state_slots()}
        new_p, new_state = optimizer.update(b, scalars, p, g, state)
        train.updates[p.name] = new_p  # type: ignore[index]
        for slot, value in new_state.items():
            train.updates[state[slot].name] = value  # type: ignore[index]
    train.updates[STEP] = new_step
    train.outputs = {k: v for k, v in train.outputs.items() if not k.endswith(GRAD_SUFFIX)}
    return train


OPTIMIZERS = {cls.__name__: cls for cls in (SGD, Adam, AdamW)}
