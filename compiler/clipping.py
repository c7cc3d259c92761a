"""The global gradient step, and gradient clipping built on it.

A training step has three parts: gradients, one step over all of them at
once, then updates. `global_gradient_step` is the middle part's pass: it
hands every gradient output (`NAME.grad`) to a function that may read them
all (a global norm here; an all-reduce across processes in data-parallel
training) and puts back what it returns, so the optimizer lowering that
follows updates every param from the transformed gradients.

`clip_gradients` clips as torch.nn.utils does before `optimizer.step()`:
`clip_grad_value_` clamps each element to [-value, value];
`clip_grad_norm_` scales every gradient by
min(max_norm / (total_norm + 1e-6), 1), total_norm the L2 norm of all of
them together. The norm is one scalar: per gradient a sum of squares, then
their sum, computed once."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass

from ..ir import Builder, ConfigError, Graph, Value
from .autodiff import GRAD_SUFFIX

NORM_EPS = 1e-6  # torch.nn.utils.clip_grad_norm_ adds it to the norm before dividing

GradientFn = Callable[[Builder, dict[str, Value]], dict[str, Value]]


@dataclass(frozen=True)
class GradientClipping:
    """What to clip: each gradient element to [-value, value] (`value`),
    then all gradients together to L2 norm `max_norm`. None: no clipping."""

    max_norm: float | None = None
    value: float | None = None

    def __post_init__(self) -> None:
        for name, bound in (("clip_grad_norm", self.max_norm), ("clip_grad_value", self.value)):
            if bound is None:
                continue
            if not isinstance(bound, numbers.Real) or isinstance(bound, bool) or not math.isfinite(bound):
                raise ConfigError(f"{name} must be a finite number > 0, got {bound!r}")
            if bound <= 0:
                raise ConfigError(f"{name} must be > 0, got {bound!r}")
        object.__setattr__(self, "max_norm", None if self.max_norm is None else float(self.max_norm))
        object.__setattr__(self, "value", None if self.value is None else float(self.value))

    def __bool__(self) -> bool:
        return self.max_norm is not None or self.value is not None

    def to_json(self) -> dict[str, float | None]:
        """The settings as a checkpoint records them."""
        return {"max_norm": self.max_norm, "value": self.value}


def global_gradient_step(graph: Graph, fn: GradientFn) -> Graph:
    """`graph` (outputs `loss` and `NAME.grad`) with its gradient outputs
    replaced by `fn(builder, {name: gradient})` (keyed by param name)."""
    out, _ = graph.clone()
    grads = {_param_of(k): v for k, v in out.outputs.items() if k.endswith(GRAD_SUFFIX)}
    if not grads:
        return out
    new = fn(Builder(out), grads)
    out.outputs = {k: new[_param_of(k)] if k.endswith(GRAD_SUFFIX) else v for k, v in out.outputs.items()}
    return out


def _param_of(grad_output: str) -> str:
    return grad_output[: -len(GRAD_SUFFIX)]


def clip_gradients(graph: Graph, clipping: GradientClipping) -> Graph:
    """The pass: `graph`'s gradients clipped as `clipping` says."""
    if not clipping:
        return graph
    return global_gradient_step(graph, lambda b, grads: _clip(b, grads, clipping))


def _clip(b: Builder, grads: dict[str, Value], clipping: GradientClipping) -> dict[str, Value]:
    if clipping.value is not None:
        grads = {name: _clamp(b, g, clipping.value) for name, g in grads.items()}
    if clipping.max_norm is not None:
        coef = _norm_coefficient(b, list(grads.values()), clipping.max_norm)
        grads = {name: b.mul(g, coef) for name, g in grads.items()}
    return grads


def _clamp(b: Builder, g: Value, bound: float) -> Value:
    """`g` limited to [-bound, bound]; NaN stays NaN (as torch.clamp)."""
    g = b.select(b.lt(g, -bound), -bound, g)
    return b.select(b.gt(g, bound), bound, g)


def _norm_coefficient(b: Builder, grads: list[Value], max_norm: float) -> Value:
    """min(max_norm / (L2 norm of all `grads` + 1e-6), 1): one scalar."""
    total = None
    for g in grads:
        squares = b.sum(b.mul(g, g), axes=list(range(g.type.rank)))
        total = squares if total is None else b.add(total, squares)
    coef = b.div(max_norm, b.add(b.sqrt(total), NORM_EPS))
    return b.select(b.gt(coef, 1.0), 1.0, coef)  # torch.clamp(coef, max=1.0): NaN stays NaN
