"""`Module`, `Parameter` and `Sequential`: the containers of a model.

Parameters get stable, readable names from the attribute path that reaches
them, as PyTorch names them: `0.weight` in a Sequential, `encoder.fc.bias`
in nested Modules."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..ir import EmberError, ShapeError
from ..tensor import TensorOps, active_trace
from .init import Initializer, get_initializer


class Parameter(TensorOps):
    """A trainable tensor of a fixed shape. Its starting values come from
    `data` when given, else from `init` when the model is compiled (seeded)."""

    def __init__(
        self,
        shape: tuple[int, ...] | None = None,
        init: str | Initializer = "default",
        fan_in: int | None = None,
        fan_out: int | None = None,
        data: np.ndarray | None = None,
    ) -> None:
        if data is not None:
            data = np.array(data, dtype=np.float64)
            shape = data.shape
        if shape is None or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise ShapeError(f"a Parameter needs a shape of non-negative integers, got {shape!r}")
        self.param_shape = tuple(shape)
        self.init = get_initializer(init)
        self.fan_in = fan_in if fan_in is not None else (shape[-1] if shape else 1)
        self.fan_out = fan_out if fan_out is not None else (shape[0] if shape else 1)
        self.data = data

    def initial_value(self, rng: np.random.Generator) -> np.ndarray:
        """The starting values: `data` if set, else drawn by the initializer."""
        if self.data is not None:
            return self.data
        return np.asarray(self.init(rng, self.param_shape, self.fan_in, self.fan_out), dtype=np.float64)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.param_shape

    def _value(self):
        return active_trace().value_of(self)

    def __repr__(self) -> str:
        return f"Parameter(shape={self.param_shape})"


class Module:
    """Base class of models and layers. Subclasses define `forward`, which
    ember traces; attributes that are Parameters or Modules are registered."""

    training = True  # layers such as Dropout read it while ember traces the model

    def __setattr__(self, name: str, value: Any) -> None:
        registry = self.__dict__.setdefault("_children", [])
        if isinstance(value, Parameter | Module) and name not in registry:
            registry.append(name)
        elif not isinstance(value, Parameter | Module) and name in registry:
            registry.remove(name)
        object.__setattr__(self, name, value)

    def forward(self, *inputs: Any) -> Any:
        raise EmberError(f"{type(self).__name__} must define forward()")

    def __call__(self, *inputs: Any) -> Any:
        return self.forward(*inputs)

    def named_children(self) -> Iterator[tuple[str, Module]]:
        for name in self.__dict__.get("_children", []):
            value = getattr(self, name)
            if isinstance(value, Module):
                yield name, value

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """(name, Parameter) pairs in registration order; each Parameter once."""
        seen: set[int] = set()
        for name, p in self._walk_parameters(prefix):
            if id(p) not in seen:
                seen.add(id(p))
                yield name, p

    def _walk_parameters(self, prefix: str) -> Iterator[tuple[str, Parameter]]:
        for name in self.__dict__.get("_children", []):
            value = getattr(self, name)
            if isinstance(value, Parameter):
                yield prefix + name, value
            else:
                yield from value._walk_parameters(f"{prefix}{name}.")

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def modules(self) -> Iterator[Module]:
        """This module and every submodule, depth first."""
        yield self
        for _, child in self.named_children():
            yield from child.modules()

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        children = list(self.named_children())
        if not children:
            return f"{type(self).__name__}({self.extra_repr()})"
        body = "\n".join(f"  ({name}): " + repr(m).replace("\n", "\n  ") for name, m in children)
        return f"{type(self).__name__}(\n{body}\n)"


class Sequential(Module):
    """Modules applied in order; parameters are named `0.weight`, `1.bias`, ..."""

    def __init__(self, *modules: Module) -> None:
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise EmberError(f"Sequential: argument {i} is a {type(m).__name__}, not an ember.nn.Module")
            setattr(self, str(i), m)

    def forward(self, x: Any) -> Any:
        for _, m in self.named_children():
            x = m(x)
        return x

    def __getitem__(self, index: int) -> Module:
        return list(self.named_children())[index][1]

    def __len__(self) -> int:
        return len(self.__dict__.get("_children", []))

    def __iter__(self) -> Iterator[Module]:
        return (m for _, m in self.named_children())
