"""Optimizers, and the pass that lowers one into the training graph.

Each optimizer carries PyTorch's names, defaults, state names and update
formulas (torch.optim, single-tensor path) and PyTorch's first argument:
the params to train, as params, names, glob patterns (`"*.bias"`) or a list
of param-group dicts with their own hyperparameters (default: every
trainable param, one group).

`lower_optimizer` turns a graph that outputs `loss` and `NAME.grad` into
the training graph. Every numeric hyperparameter of every group is a
runtime scalar input (`lr`, `momentum`, `beta1`, ...; `group1.lr`, ... when
there are several groups), so changing one never recompiles; flags
(`nesterov`, `amsgrad`, `maximize`, ...) shape the graph. The state `step`
counts updates (a float as in PyTorch); each param gets its state buffers,
named like PyTorch's state keys (`0.weight.exp_avg`)."""

from __future__ import annotations

import fnmatch
import inspect
import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..ir import Builder, ConfigError, Graph, TensorType, Value
from .autodiff import GRAD_SUFFIX, grad_name

STEP = "step"
LEARNING_RATE = "lr"
PARAMS = "params"
GLOB_CHARACTERS = "*?["

Settings = dict[str, Any]
"""One group's hyperparameters by PyTorch's name (`lr`, `betas`, `nesterov`, ...)."""


@dataclass(frozen=True)
class Scalars:
    """The per-step scalars of one param group: the learning rate, the step
    number of this update (1 on the first call), the group's other runtime
    hyperparameters by input name (`momentum`, `beta1`, ...; absent ones are
    the optimizer's compiled constants), its settings (flags such as
    `nesterov`; default: the optimizer's) and its scalar state after this
    step's update (NAdam's `mu_product`)."""

    lr: Value
    step: Value
    values: Mapping[str, Value] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)
    state: Mapping[str, Value] = field(default_factory=dict)


class Optimizer(ABC):
    """Base class. Subclasses take PyTorch's hyperparameters as `__init__`
    arguments (in its order, with its defaults), `check` one group's
    settings, name the per-param state (`state_slots`) and emit one param's
    update (`update`)."""

    DEFAULTS: ClassVar[Settings] = {}
    """Each hyperparameter and its default: read from the subclass's
    `__init__` signature (after `params`), then `IMPLIED`."""
    IMPLIED: ClassVar[Settings] = {}
    """Settings a subclass fixes without taking them as arguments (AdamW's
    decoupled weight decay)."""
    FIXED_ZERO: ClassVar[tuple[str, ...]] = ("weight_decay",)
    """Hyperparameters whose being zero decides the step: a group compiled
    with zero keeps zero (SGD's momentum decides its state; a weight decay
    of zero leaves its multiply-add out of every update)."""
    NOT_INPUTS: ClassVar[tuple[str, ...]] = ()
    """Numeric settings that only set the starting state (as in PyTorch,
    changing them later changes nothing)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        arguments = list(inspect.signature(cls.__init__).parameters.values())[2:]  # after self, params
        cls.DEFAULTS = {a.name: a.default for a in arguments if a.kind is not a.VAR_KEYWORD} | cls.IMPLIED

    def __init__(self, params: Any = None, **settings: Any) -> None:
        if isinstance(params, numbers.Number):
            raise ConfigError(
                f"{type(self).__name__}: the first argument is the params to train (as in PyTorch), "
                f"got {params!r}; pass the learning rate as lr={params!r}"
            )
        self.defaults: Settings = _normalized(settings)
        self.check(self.defaults, type(self).__name__)
        self.param_groups: list[Settings] = [
            self._group(spec, i) for i, spec in enumerate(_group_specs(params, type(self).__name__))
        ]

    # -- what subclasses define -------------------------------------------
    def check(self, settings: Settings, where: str) -> None:
        """Raise ConfigError unless `settings` are valid (`where` names them)."""
        _check(_nonnegative(settings["lr"]), f"{where}: invalid learning rate {settings['lr']!r} (must be >= 0)")
        for name in ("weight_decay", "eps", "momentum"):
            if name in settings:
                _check(_nonnegative(settings[name]), f"{where}: invalid {name} {settings[name]!r} (must be >= 0)")
        if "betas" in settings:
            betas = settings["betas"]
            _check(isinstance(betas, tuple) and len(betas) == 2, f"{where}: betas must be a pair, got {betas!r}")
            for i, beta in enumerate(betas):
                _check(_real(beta) and 0 <= beta < 1, f"{where}: invalid beta at index {i}: {beta} (must be in [0, 1))")

    def state_slots(self, settings: Settings | None = None) -> tuple[str, ...]:
        """Names of the state buffers each param of a group gets (shaped like the param)."""
        return ()

    def group_state(self) -> dict[str, float]:
        """Scalar state of each group, by name, with its starting value."""
        return {}

    def initial_state(self, slot: str, settings: Settings) -> float:
        """The starting value of per-param state `slot` (PyTorch's zeros_like)."""
        return 0.0

    @abstractmethod
    def update(self, b: Builder, s: Scalars, p: Value, g: Value, state: dict[str, Value]) -> tuple[Value, dict]:
        """Emit the update of one param; return its new value and new state."""

    def update_group(self, b: Builder, s: Scalars, state: dict[str, Value]) -> dict[str, Value]:
        """Emit the update of a group's scalar state (before its params')."""
        return {}

    # -- shared ------------------------------------------------------------
    def hyperparameters(self) -> Settings:
        """The default settings (as `defaults`; a copy)."""
        return dict(self.defaults)

    def __getattr__(self, name: str) -> Any:
        """A default setting as an attribute (`optimizer.momentum`)."""
        defaults = self.__dict__.get("defaults", {})
        if name in defaults:
            return defaults[name]
        raise AttributeError(f"{type(self).__name__} has no attribute or hyperparameter {name!r}")

    def numeric(self, settings: Settings) -> dict[str, float]:
        """The runtime scalars of a group's settings, by input name (`betas`
        becomes `beta1` and `beta2`)."""
        values: dict[str, float] = {}
        for name, value in settings.items():
            if name == "betas":
                values.update(beta1=float(value[0]), beta2=float(value[1]))
            elif _real(value) and name not in self.NOT_INPUTS:
                values[name] = float(value)
        return values

    def resolve(
        self, names: Sequence[str], frozen: Iterable[str] = (), identities: Mapping[int, str] | None = None
    ) -> Optimizer:
        """A copy whose groups name their params: of the model's params `names`
        (`identities`: a Parameter's id -> its name), the ones each group
        selects, frozen ones left out."""
        frozen_names = set(frozen)
        taken: dict[str, int] = {}
        groups = []
        for i, group in enumerate(self.param_groups):
            selected = _select(group[PARAMS], names, identities or {}, f"{type(self).__name__} group {i}")
            for name in selected:
                if name in taken:
                    raise ConfigError(
                        f"{type(self).__name__}: param {name!r} appears in groups {taken[name]} and {i}; "
                        "some parameters appear in more than one parameter group"
                    )
                taken[name] = i
            groups.append({**group, PARAMS: [n for n in selected if n not in frozen_names]})
        copy = object.__new__(type(self))
        copy.defaults, copy.param_groups = dict(self.defaults), groups
        return copy

    def _group(self, spec: dict[str, Any], index: int) -> Settings:
        unknown = [k for k in spec if k != PARAMS and k not in self.DEFAULTS]
        if unknown:
            raise ConfigError(
                f"{type(self).__name__} group {index}: unknown hyperparameter {unknown[0]!r}; "
                f"known: {', '.join(self.DEFAULTS)}"
            )
        group = {PARAMS: spec.get(PARAMS), **self.defaults, **dict(_normalized_items(spec))}
        self.check(group, f"{type(self).__name__} group {index}")
        return group

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self._key() == other._key()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(type(self))

    def _key(self) -> tuple:
        return (
            self.defaults,
            [{k: _identity(v) if k == PARAMS else v for k, v in g.items()} for g in self.param_groups],
        )

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.defaults.items())
        groups = f", {len(self.param_groups)} param groups" if len(self.param_groups) > 1 else ""
        return f"{type(self).__name__}({settings}{groups})"


def _normalized(settings: Mapping[str, Any]) -> Settings:
    return dict(_normalized_items(settings))


def _normalized_items(settings: Mapping[str, Any]) -> Iterable[tuple[str, Any]]:
    """Settings as stored: betas as a tuple of floats (JSON gives lists)."""
    for name, value in settings.items():
        if name == PARAMS:
            continue
        if name == "betas" and isinstance(value, list | tuple) and all(_real(v) for v in value):
            value = tuple(float(v) for v in value)
        yield name, value


def _identity(selectors: Any) -> Any:
    if selectors is None:
        return None
    return tuple(s if isinstance(s, str) else id(s) for s in selectors)


def _group_specs(params: Any, where: str) -> list[dict[str, Any]]:
    """PyTorch's first argument as group dicts whose `params` is a list of
    selectors (a Parameter, a (name, Parameter) pair, a name or a glob
    pattern), or None for every param."""
    if params is None:
        return [{PARAMS: None}]
    if isinstance(params, set):
        raise ConfigError(f"{where}: params must be an ordered collection (a list), not a set")
    if isinstance(params, str | Mapping) or not isinstance(params, Iterable):
        params = [params]
    items = list(params)
    if not items:
        raise ConfigError(f"{where}: optimizer got an empty parameter list")
    if not all(isinstance(item, Mapping) for item in items):
        if any(isinstance(item, Mapping) for item in items):
            raise ConfigError(f"{where}: pass either params or a list of param-group dicts, not both")
        return [{PARAMS: _selectors(items, where)}]
    groups = []
    for i, item in enumerate(items):
        if PARAMS not in item:
            raise ConfigError(f"{where}: param group {i} has no 'params'")
        selectors = item[PARAMS]
        if isinstance(selectors, str) or not isinstance(selectors, Iterable):
            selectors = [selectors]
        groups.append({**item, PARAMS: _selectors(list(selectors), where)})
    return groups


def _selectors(items: list[Any], where: str) -> list[Any]:
    if isinstance(items, set):
        raise ConfigError(f"{where}: params must be an ordered collection (a list), not a set")
    return [
        item[1] if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str) else item for item in items
    ]


def _select(selectors: list[Any] | None, names: Sequence[str], identities: Mapping[int, str], where: str) -> list[str]:
    """The param names `selectors` pick, in the model's order."""
    if selectors is None:
        return list(names)
    picked: set[str] = set()
    for selector in selectors:
        if isinstance(selector, str):
            matches = fnmatch.filter(names, selector) if any(c in selector for c in GLOB_CHARACTERS) else None
            matches = matches if matches is not None else ([selector] if selector in names else [])
            if not matches:
                raise ConfigError(f"{where}: {selector!r} names no parameter; parameters are {', '.join(names)}")
            picked.update(matches)
        elif id(selector) in identities:
            picked.add(identities[id(selector)])
        else:
            raise ConfigError(
                f"{where}: {type(selector).__name__} {selector!r} is not a parameter of the compiled model "
                "(pass model.parameters(), names or glob patterns)"
            )
    return [n for n in names if n in picked]


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _nonnegative(value: object) -> bool:
    """A finite real number >= 0 (False, not a TypeError, for strings and None)."""
    return _real(value) and value >= 0  # type: ignore[operator]


def _flag(settings: Settings, name: str, where: str) -> None:
    _check(isinstance(settings[name], bool), f"{where}: {name} must be True or False, got {settings[name]!r}")


class _Hyper:
    """A group's hyperparameters as IR values: runtime inputs where the
    group has them, else constants; flags as Python values."""

    def __init__(self, b: Builder, s: Scalars, defaults: Settings) -> None:
        self.b, self.s = b, s
        self.settings = {**defaults, **s.settings}
        self.dtype = s.step.type.dtype

    def __getitem__(self, name: str) -> Value:
        if name == LEARNING_RATE:
            return self.s.lr
        if name in self.s.values:
            return self.s.values[name]
        value = self.settings["betas"][int(name[-1]) - 1] if name in ("beta1", "beta2") else self.settings[name]
        return self.b.const(float(value), self.dtype)

    def flag(self, name: str) -> bool:
        return bool(self.settings[name])


def _decay(b: Builder, h: _Hyper, p: Value, g: Value, decoupled: bool) -> tuple[Value, Value]:
    """PyTorch's weight decay: L2 added to the gradient, or (decoupled, as
    AdamW) the param scaled by 1 - lr * weight_decay. Compiled out for a
    group whose weight decay is zero (it stays zero: `FIXED_ZERO`)."""
    if h.settings["weight_decay"] == 0:
        return p, g
    if decoupled:
        return b.mul(p, b.sub(1.0, b.mul(h["lr"], h["weight_decay"]))), g
    return p, b.add(g, b.mul(p, h["weight_decay"]))


def _maximized(b: Builder, h: _Hyper, g: Value) -> Value:
    return b.neg(g) if h.flag("maximize") else g


def _lerp(b: Builder, start: Value, end: Value, weight: Value) -> Value:
    """torch.lerp: start + weight * (end - start)."""
    return b.add(start, b.mul(weight, b.sub(end, start)))


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum (torch.optim.SGD)."""

    FIXED_ZERO = ("momentum", "weight_decay")

    def __init__(
        self,
        params: Any = None,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(
            params,
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
        )

    def check(self, settings: Settings, where: str) -> None:
        super().check(settings, where)
        _check(_real(settings["dampening"]), f"{where}: invalid dampening {settings['dampening']!r}")
        for name in ("nesterov", "maximize"):
            _flag(settings, name, where)
        _check(
            not settings["nesterov"] or (settings["momentum"] > 0 and settings["dampening"] == 0),
            f"{where}: nesterov momentum needs momentum > 0 and dampening = 0",
        )

    def state_slots(self, settings: Settings | None = None) -> tuple[str, ...]:
        return ("momentum_buffer",) if (settings or self.defaults)["momentum"] else ()

    def update(self, b, s, p, g, state):
        h = _Hyper(b, s, self.defaults)
        _, d = _decay(b, h, p, _maximized(b, h, g), decoupled=False)
        new_state = {}
        if "momentum_buffer" in state:
            old, momentum = state["momentum_buffer"], h["momentum"]
            buf = b.add(b.mul(old, momentum), b.mul(d, b.sub(1.0, h["dampening"])))
            buf = b.select(b.eq(s.step, 1.0), d, buf)  # PyTorch starts the buffer at the first gradient
            moving = b.ne(momentum, 0.0)  # momentum set to 0 later: PyTorch leaves the buffer alone
            new_state["momentum_buffer"] = b.select(moving, buf, old)
            step = b.add(d, b.mul(buf, momentum)) if h.flag("nesterov") else buf
            d = b.select(moving, step, d)
        return b.sub(p, b.mul(d, h["lr"])), new_state


class Adam(Optimizer):
    """Adam (torch.optim.Adam), with L2 weight decay added to the gradient
    (or, with `decoupled_weight_decay`, applied to the param as AdamW)."""

    def __init__(
        self,
        params: Any = None,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        decoupled_weight_decay: bool = False,
    ) -> None:
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
            decoupled_weight_decay=decoupled_weight_decay,
        )

    def check(self, settings: Settings, where: str) -> None:
        super().check(settings, where)
        for name in ("amsgrad", "maximize", "decoupled_weight_decay"):
            _flag(settings, name, where)

    def state_slots(self, settings: Settings | None = None) -> tuple[str, ...]:
        amsgrad = (settings or self.defaults)["amsgrad"]
        return ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if amsgrad else ("exp_avg", "exp_avg_sq")

    def update(self, b, s, p, g, state):
        h = _Hyper(b, s, self.defaults)
        beta1, beta2 = h["beta1"], h["beta2"]
        p, g = _decay(b, h, p, _maximized(b, h, g), h.flag("decoupled_weight_decay"))
        m = _lerp(b, state["exp_avg"], g, b.sub(1.0, beta1))
        v = b.add(b.mul(state["exp_avg_sq"], beta2), b.mul(b.mul(g, g), b.sub(1.0, beta2)))
        new_state = {"exp_avg": m, "exp_avg_sq": v}
        if "max_exp_avg_sq" in state:
            v = new_state["max_exp_avg_sq"] = b.maximum(state["max_exp_avg_sq"], v)
        bias_correction1 = b.sub(1.0, b.pow(beta1, s.step))
        bias_correction2 = b.sub(1.0, b.pow(beta2, s.step))
        step_size = b.div(h["lr"], bias_correction1)
        denom = b.add(b.div(b.sqrt(v), b.sqrt(bias_correction2)), h["eps"])
        return b.sub(p, b.mul(b.div(m, denom), step_size)), new_state


class AdamW(Adam):
    """AdamW (torch.optim.AdamW): weight decay applied to the param directly."""

    IMPLIED: ClassVar[Settings] = {"decoupled_weight_decay": True}

    def __init__(
        self,
        params: Any = None,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        Optimizer.__init__(
            self,
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
            decoupled_weight_decay=True,
        )


class RMSprop(Optimizer):
    """RMSprop (torch.optim.RMSprop), optionally centered and with momentum."""

    FIXED_ZERO = ("momentum", "weight_decay")

    def __init__(
        self,
        params: Any = None,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(
            params,
            lr=lr,
            alpha=alpha,
            eps=eps,
            weight_decay=weight_decay,
            momentum=momentum,
            centered=centered,
            maximize=maximize,
        )

    def check(self, settings: Settings, where: str) -> None:
        super().check(settings, where)
        _check(_nonnegative(settings["alpha"]), f"{where}: invalid alpha {settings['alpha']!r} (must be >= 0)")
        for name in ("centered", "maximize"):
            _flag(settings, name, where)

    def state_slots(self, settings: Settings | None = None) -> tuple[str, ...]:
        settings = settings or self.defaults
        momentum = ("momentum_buffer",) if settings["momentum"] > 0 else ()
        return ("square_avg", *momentum, *(("grad_avg",) if settings["centered"] else ()))

    def update(self, b, s, p, g, state):
        h = _Hyper(b, s, self.defaults)
        alpha = h["alpha"]
        _, g = _decay(b, h, p, _maximized(b, h, g), decoupled=False)
        square_avg = b.add(b.mul(state["square_avg"], alpha), b.mul(b.mul(g, g), b.sub(1.0, alpha)))
        new_state = {"square_avg": square_avg}
        if "grad_avg" in state:
            grad_avg = new_state["grad_avg"] = _lerp(b, state["grad_avg"], g, b.sub(1.0, alpha))
            avg = b.sqrt(b.sub(square_avg, b.mul(grad_avg, grad_avg)))
        else:
            avg = b.sqrt(square_avg)
        avg = b.add(avg, h["eps"])
        step = b.div(g, avg)
        if "momentum_buffer" in state:
            old, momentum = state["momentum_buffer"], h["momentum"]
            moving = b.gt(momentum, 0.0)  # momentum set to 0 later: PyTorch leaves the buffer alone
            buf = b.add(b.mul(old, momentum), step)
            new_state["momentum_buffer"] = b.select(moving, buf, old)
            step = b.select(moving, buf, step)
        return b.sub(p, b.mul(step, h["lr"])), new_state


class Adagrad(Optimizer):
    """Adagrad (torch.optim.Adagrad)."""

    NOT_INPUTS = ("initial_accumulator_value",)

    def __init__(
        self,
        params: Any = None,
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(
            params,
            lr=lr,
            lr_decay=lr_decay,
            weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value,
            eps=eps,
            maximize=maximize,
        )

    def check(self, settings: Settings, where: str) -> None:
        super().check(settings, where)
        for name in ("lr_decay", "initial_accumulator_value"):
            _check(_nonnegative(settings[name]), f"{where}: invalid {name} {settings[name]!r} (must be >= 0)")
        _flag(settings, "maximize", where)

    def state_slots(self, settings: Settings | None = None) -> tuple[str, ...]:
        return ("sum",)

    def initial_state(self, slot: str, settings: Settings) -> float:
        return float(settings["initial_accumulator_value"])

    def update(self, b, s, p, g, state):
        h = _Hyper(b, s, self.defaults)
        _, g = _decay(b, h, p, _maximized(b, h, g), decoupled=False)
        clr = b.div(h["lr"], b.add(1.0, b.mul(b.sub(s.step, 1.0), h["lr_decay"])))
        total = b.add(state["sum"], b.mul(g, g))
        std = b.add(b.sqrt(total), h["eps"])
        return b.sub(p, b.mul(b.div(g, std), clr)), {"sum": total}


class Adamax(Optimizer):
    """Adamax (torch.optim.Adamax): Adam with the infinity norm."""

    def __init__(
        self,
        params: Any = None,
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, maximize=maximize)

    def check(self, settings: Settings, where: str) -> None:
        super().check(settings, where)
        _flag(settings, "maximize", where)

    def state_slots(self, settings: Settings | None = None) -> tuple[str, ...]:
        return ("exp_avg", "exp_inf")

    def update(self, b, s, p, g, state):
        h = _Hyper(b, s, self.defaults)
        beta1 = h["beta1"]
        _, g = _decay(b, h, p, _maximized(b, h, g), decoupled=False)
        exp_avg = _lerp(b, state["exp_avg"], g, b.sub(1.0, beta1))
        exp_inf = b.maximum(b.mul(state["exp_inf"], h["beta2"]), b.add(b.abs(g), h["eps"]))
        clr = b.div(h["lr"], b.sub(1.0, b.pow(beta1, s.step)))
        return b.sub(p, b.mul(b.div(exp_avg, exp_inf), clr)), {"exp_avg": exp_avg, "exp_inf": exp_inf}


MU_PRODUCT = "mu_product"


class NAdam(Optimizer):
    """NAdam (torch.optim.NAdam): Adam with Nesterov momentum. Its
    `mu_product` (one number per param in PyTorch, the same for all params of
    a group) is a scalar state per group."""

    def __init__(
        self,
        params: Any = None,
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum_decay: float = 4e-3,
        decoupled_weight_decay: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            momentum_decay=momentum_decay,
            decoupled_weight_decay=decoupled_weight_decay,
            maximize=maximize,
        )

    def check(self, settings: Settings, where: str) -> None:
        super().check(settings, where)
        decay = settings["momentum_decay"]
        _check(_nonnegative(decay), f"{where}: invalid momentum_decay {decay!r} (must be >= 0)")
        for name in ("decoupled_weight_decay", "maximize"):
            _flag(settings, name, where)

    def state_slots(self, settings: Settings | None = None) -> tuple[str, ...]:
        return ("exp_avg", "exp_avg_sq")

    def group_state(self) -> dict[str, float]:
        return {MU_PRODUCT: 1.0}

    @staticmethod
    def _mu(b: Builder, h: _Hyper, step: Value) -> Value:
        """beta1 * (1 - 0.5 * 0.96 ** (step * momentum_decay))."""
        decayed = b.pow(b.const(0.96, step.type.dtype), b.mul(step, h["momentum_decay"]))
        return b.mul(h["beta1"], b.sub(1.0, b.mul(decayed, 0.5)))

    def update_group(self, b, s, state):
        return {MU_PRODUCT: b.mul(state[MU_PRODUCT], self._mu(b, _Hyper(b, s, self.defaults), s.step))}

    def update(self, b, s, p, g, state):
        h = _Hyper(b, s, self.defaults)
        beta1, beta2 = h["beta1"], h["beta2"]
        p, g = _decay(b, h, p, _maximized(b, h, g), h.flag("decoupled_weight_decay"))
        mu, mu_next = self._mu(b, h, s.step), self._mu(b, h, b.add(s.step, 1.0))
        mu_product = s.state[MU_PRODUCT]
        mu_product_next = b.mul(mu_product, mu_next)
        exp_avg = _lerp(b, state["exp_avg"], g, b.sub(1.0, beta1))
        exp_avg_sq = b.add(b.mul(state["exp_avg_sq"], beta2), b.mul(b.mul(g, g), b.sub(1.0, beta2)))
        bias_correction2 = b.sub(1.0, b.pow(beta2, s.step))
        denom = b.add(b.sqrt(b.div(exp_avg_sq, bias_correction2)), h["eps"])
        lr = h["lr"]
        grad_scale = b.div(b.mul(lr, b.sub(1.0, mu)), b.sub(1.0, mu_product))
        avg_scale = b.div(b.mul(lr, mu_next), b.sub(1.0, mu_product_next))
        p = b.sub(p, b.mul(b.div(g, denom), grad_scale))
        p = b.sub(p, b.mul(b.div(exp_avg, denom), avg_scale))
        return p, {"exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}


class RAdam(Optimizer):
    """RAdam (torch.optim.RAdam): Adam with the variance rectified."""

    def __init__(
        self,
        params: Any = None,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decoupled_weight_decay: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            decoupled_weight_decay=decoupled_weight_decay,
            maximize=maximize,
        )

    def check(self, settings: Settings, where: str) -> None:
        super().check(settings, where)
        for name in ("decoupled_weight_decay", "maximize"):
            _flag(settings, name, where)

    def state_slots(self, settings: Settings | None = None) -> tuple[str, ...]:
        return ("exp_avg", "exp_avg_sq")

    def update(self, b, s, p, g, state):
        h = _Hyper(b, s, self.defaults)
        beta1, beta2, step = h["beta1"], h["beta2"], s.step
        p, g = _decay(b, h, p, _maximized(b, h, g), h.flag("decoupled_weight_decay"))
        exp_avg = _lerp(b, state["exp_avg"], g, b.sub(1.0, beta1))
        exp_avg_sq = b.add(b.mul(state["exp_avg_sq"], beta2), b.mul(b.mul(g, g), b.sub(1.0, beta2)))
        bias_correction1 = b.sub(1.0, b.pow(beta1, step))
        beta2_t = b.pow(beta2, step)
        bias_correction2 = b.sub(1.0, beta2_t)
        corrected = b.div(exp_avg, bias_correction1)
        rho_inf = b.sub(b.div(2.0, b.sub(1.0, beta2)), 1.0)
        rho_t = b.sub(rho_inf, b.div(b.mul(b.mul(step, 2.0), beta2_t), bias_correction2))
        rect = b.sqrt(
            b.div(
                b.mul(b.mul(b.sub(rho_t, 4.0), b.sub(rho_t, 2.0)), rho_inf),
                b.mul(b.mul(b.sub(rho_inf, 4.0), b.sub(rho_inf, 2.0)), rho_t),
            )
        )
        adaptive = b.div(b.sqrt(bias_correction2), b.add(b.sqrt(exp_avg_sq), h["eps"]))
        lr = h["lr"]
        # PyTorch branches on rho_t > 5 (the same for every element): a select of whole steps
        rectified = b.mul(b.mul(b.mul(corrected, lr), adaptive), rect)
        step_value = b.select(b.gt(rho_t, 5.0), rectified, b.mul(corrected, lr))
        return b.sub(p, step_value), {"exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}


OPTIMIZERS: dict[str, type[Optimizer]] = {
    cls.__name__: cls for cls in (SGD, Adam, AdamW, RMSprop, Adagrad, Adamax, NAdam, RAdam)
}


# -- lowering ------------------------------------------------------------------
def scalar_name(name: str, group: int, groups: int) -> str:
    """The graph argument of a group's scalar `name`: `lr` with one group,
    `group0.lr`, `group1.lr`, ... with several."""
    return name if groups == 1 else f"group{group}.{name}"


def hyperparameter_inputs(optimizer: Optimizer) -> dict[str, float]:
    """Every runtime hyperparameter input of the training graph, by name,
    with its value in `optimizer`'s groups."""
    groups = optimizer.param_groups
    return {
        scalar_name(name, i, len(groups)): value
        for i, group in enumerate(groups)
        for name, value in optimizer.numeric(group).items()
    }


def initial_state(optimizer: Optimizer, graph_state: Iterable[str]) -> dict[str, float]:
    """The starting values of the state that does not start at zero."""
    names = set(graph_state)
    groups = optimizer.param_groups
    values = {}
    for i, group in enumerate(groups):
        for slot, value in optimizer.group_state().items():
            values[scalar_name(slot, i, len(groups))] = value
        for param in group[PARAMS] or ():
            for slot in optimizer.state_slots(group):
                values[f"{param}.{slot}"] = optimizer.initial_state(slot, group)
    return {name: value for name, value in values.items() if value != 0 and name in names}


def lower_optimizer(graph: Graph, optimizer: Optimizer) -> Graph:
    """The training graph: `graph` (outputs `loss` and `NAME.grad`) plus the
    update of every param that has a gradient and is in a group of
    `optimizer` (a group without params, before `resolve`, takes them all)."""
    train, _ = graph.clone("train")
    b = Builder(train)
    scalar = TensorType(train.outputs["loss"].type.dtype, ())
    step = train.add_argument(STEP, scalar, "state")
    new_step = b.add(step, 1.0)
    grads = {p.name: train.outputs[grad_name(p.name)] for p in train.params if grad_name(p.name) in train.outputs}
    groups = optimizer.param_groups
    for i, group in enumerate(groups):
        values = {
            name: train.add_argument(scalar_name(name, i, len(groups)), scalar, "input")
            for name in optimizer.numeric(group)
        }
        state = {
            name: train.add_argument(scalar_name(name, i, len(groups)), scalar, "state")
            for name in optimizer.group_state()
        }
        s = Scalars(lr=values.pop(LEARNING_RATE), step=new_step, values=values, settings=group)
        new_state = optimizer.update_group(b, s, state)
        for name, value in new_state.items():
            train.updates[state[name].name] = value  # type: ignore[index]
        s = Scalars(s.lr, s.step, s.values, s.settings, new_state)
        names = group[PARAMS] if group[PARAMS] is not None else list(grads)
        _update_params(train, b, optimizer, s, {n: grads[n] for n in names if n in grads})
    train.updates[STEP] = new_step
    train.outputs = {k: v for k, v in train.outputs.items() if not k.endswith(GRAD_SUFFIX)}
    return train


def _update_params(train: Graph, b: Builder, optimizer: Optimizer, s: Scalars, grads: dict[str, Value]) -> None:
    """Emit the update of each param of one group from its gradient."""
    for name, g in grads.items():
        p = train.argument(name)
        state = {
            slot: train.add_argument(f"{name}.{slot}", p.type, "state") for slot in optimizer.state_slots(s.settings)
        }
        new_p, new_state = optimizer.update(b, s, p, g, state)
        train.updates[name] = new_p  # type: ignore[index]
        for slot, value in new_state.items():
            train.updates[state[slot].name] = value  # type: ignore[index]
