"""`Program.param_groups`: the optimizer's param groups as live dicts, like
PyTorch's. Each numeric hyperparameter is a runtime input of the training
step, so assigning one (`prog.param_groups[0]["lr"] = 0.01`) takes effect
at the next step without recompiling. What shapes the compiled step (the
params, flags such as `nesterov`, a momentum compiled as zero) is fixed:
changing it raises ConfigError."""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

from .compiler import Optimizer
from .compiler.optimizers import PARAMS, Settings, hyperparameter_inputs, scalar_name
from .ir import ConfigError, DType
from .runtime.locks import ForkSafeLock


class ParamGroup(dict):
    """One param group: `params` (names) and every hyperparameter. Numeric
    values may change between steps; each change is checked first."""

    def __init__(self, settings: Settings, index: int, check: Callable[[int, Settings], None]) -> None:
        super().__init__(settings)
        self._index = index
        self._check = check

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in self:
            raise ConfigError(f"param group {self._index} has no hyperparameter {key!r}; it has {', '.join(self)}")
        changed = {**self, key: _plain(value)}
        self._check(self._index, changed)
        super().__setitem__(key, changed[key])

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def _fixed(self, *args: Any, **kwargs: Any) -> Any:
        raise ConfigError(f"param group {self._index}: its keys are fixed (assign values to change them)")

    __delitem__ = pop = popitem = clear = setdefault = __ior__ = _fixed  # type: ignore[assignment]


def _plain(value: Any) -> Any:
    """Numbers as Python floats (NumPy scalars too) and pairs as tuples, as
    PyTorch's groups and JSON checkpoints hold them; anything else as given
    (the optimizer's check rejects it)."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_):
        return float(value)
    if isinstance(value, list | tuple) and all(isinstance(v, numbers.Real) for v in value):
        return tuple(_plain(v) for v in value)
    return value


class Hyperparameters:
    """The param groups of a compiled optimizer and the runtime inputs they
    feed: one 0-d array per numeric hyperparameter of each group, written
    when a value changes (the training step reads them as they are)."""

    def __init__(self, optimizer: Optimizer, dtype: DType, lock: ForkSafeLock) -> None:
        """`lock`: the owner's lock, held while the inputs are written (it
        holds no reference back to the owner, so a Program is freed as soon
        as it is unused, its native code with it)."""
        self.optimizer = optimizer
        self.dtype = dtype
        self._lock = lock
        self.compiled = [dict(g) for g in optimizer.param_groups]
        self.groups = [ParamGroup(g, i, self._check) for i, g in enumerate(optimizer.param_groups)]
        self.inputs = {name: np.asarray(value, dtype.numpy) for name, value in hyperparameter_inputs(optimizer).items()}

    def _check(self, index: int, settings: Settings) -> None:
        """`settings` may replace group `index`'s: valid for the optimizer,
        finite in the dtype, and what was compiled where it shapes the step."""
        compiled = self.compiled[index]
        name = type(self.optimizer).__name__
        for key, value in settings.items():
            fixed = key == PARAMS or isinstance(compiled[key], bool)
            fixed = fixed or (key in self.optimizer.FIXED_ZERO and compiled[key] == 0)
            if fixed and value != self.groups[index][key]:
                raise ConfigError(
                    f"{name} param group {index}: {key} is compiled into the training step "
                    f"(it is {compiled[key]!r}); compile again to change it"
                )
        self.optimizer.check(settings, f"{name} param group {index}")
        values = self.optimizer.numeric(settings)
        with np.errstate(over="ignore"):
            infinite = [k for k, v in values.items() if not np.isfinite(self.dtype.numpy.type(v))]
        if infinite:
            raise ConfigError(f"{name} param group {index}: {infinite[0]} must be finite in {self.dtype}")
        with self._lock:
            for key, value in values.items():
                self.inputs[scalar_name(key, index, len(self.groups))][...] = value

    def runtime_values(self) -> list[Settings]:
        """Each group's hyperparameters (without `params`), for a checkpoint."""
        return [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items() if k != PARAMS} for g in self.groups]
