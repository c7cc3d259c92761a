"""`Module`, `Parameter`, `Buffer` and the containers of a model.

Parameters and buffers get stable, readable names from the attribute path
that reaches them, as PyTorch names them: `0.weight` in a Sequential,
`encoder.fc.bias` in nested Modules. A module lists its own parameters, then
its own buffers, then its children's, as PyTorch's `state_dict` does.

A module is in training mode (`training` True) until `eval()`. ember traces
`forward` once per mode: `train_step`, `gradients` and `fit` run the graph
traced in training mode, `predict` and `evaluate` the one traced in eval
mode; the user's modes are put back after tracing."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from ..ir import ConfigError, EmberError, ShapeError
from ..tensor import InputNeeds, TensorOps, active_trace, current_trace, record_buffer_update, user_line
from .init import Initializer, get_initializer


class Parameter(TensorOps):
    """A trainable tensor of a fixed shape. Its starting values come from
    `data` when given, else from `init` when the model is compiled (seeded).
    With `requires_grad` False it is frozen: no gradient, no update, no
    optimizer state."""

    def __init__(
        self,
        shape: tuple[int, ...] | None = None,
        init: str | Initializer = "default",
        fan_in: int | None = None,
        fan_out: int | None = None,
        data: np.ndarray | None = None,
        requires_grad: bool = True,
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
        self.requires_grad = bool(requires_grad)

    def initial_value(self, rng: np.random.Generator) -> np.ndarray:
        """The starting values: `data` if set, else drawn by the initializer."""
        if self.data is not None:
            return self.data
        return np.asarray(self.init(rng, self.param_shape, self.fan_in, self.fan_out), dtype=np.float64)

    def requires_grad_(self, requires_grad: bool = True) -> Parameter:
        """Freeze (False) or unfreeze this parameter; returns it, as PyTorch does."""
        self.requires_grad = bool(requires_grad)
        return self

    @property
    def shape(self) -> tuple[int, ...]:
        return self.param_shape

    def _value(self):
        return active_trace().value_of(self)

    def __repr__(self) -> str:
        frozen = ", requires_grad=False" if not self.requires_grad else ""
        return f"Parameter(shape={self.param_shape}{frozen})"


class Buffer(TensorOps):
    """A tensor of the model that is not trained, such as BatchNorm's running
    statistics: every graph reads it, and a forward traced in training mode
    may assign it a new value (see `Module.register_buffer`). `persistent`
    buffers are part of the state dict. Programs keep buffers in their
    floating-point dtype; `state_dict` gives them back in `data`'s dtype."""

    def __init__(self, data: Any, persistent: bool = True) -> None:
        array = np.array(data)
        if array.dtype.kind not in "biuf":
            raise ConfigError(f"a buffer must hold numbers, got dtype {array.dtype}")
        self.data = array
        self.persistent = bool(persistent)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    def _value(self):
        return active_trace().value_of(self)

    def __repr__(self) -> str:
        return f"Buffer(shape={self.data.shape}, dtype={self.data.dtype})"


class Module:
    """Base class of models and layers. Subclasses define `forward`, which
    ember traces; attributes that are Parameters, Buffers or Modules are
    registered in assignment order."""

    training: bool = True  # a class default: subclasses need not call Module.__init__

    def __new__(cls, *args: Any, **kwargs: Any) -> Module:
        module = super().__new__(cls)
        object.__setattr__(module, "_defined_at", user_line())  # where errors about this layer point
        return module

    def __setattr__(self, name: str, value: Any) -> None:
        registry = self.__dict__.setdefault("_children", [])
        current = self.__dict__.get(name)
        if isinstance(current, Buffer) and not isinstance(value, Buffer) and value is not None:
            self._assign_buffer(name, current, value)
            return
        if isinstance(value, Parameter | Buffer | Module) and name not in registry:
            registry.append(name)
        elif not isinstance(value, Parameter | Buffer | Module) and name in registry:
            registry.remove(name)
        object.__setattr__(self, name, value)

    def _assign_buffer(self, name: str, buffer: Buffer, value: Any) -> None:
        """`self.name = value` for a registered buffer: while tracing, the
        buffer's new value after the step; otherwise new data for it."""
        if isinstance(value, TensorOps):
            record_buffer_update(buffer, value, f"{type(self).__name__}.{name}")
        else:
            object.__setattr__(self, name, Buffer(value, buffer.persistent))

    def register_buffer(self, name: str, tensor: Any, persistent: bool = True) -> None:
        """Add a buffer (a tensor that is not trained) named `name`, as
        PyTorch's `register_buffer`. Assigning a tensor to `self.name` in a
        forward traced in training mode sets its value after the step
        (reads in that forward see its value before the step); in eval mode
        such an assignment is ignored, so `predict` and `evaluate` never
        change the model. `persistent=False` leaves it out of the state dict."""
        if not isinstance(name, str) or not name or "." in name:
            raise ConfigError(f"register_buffer: a buffer name must be a non-empty string without '.', got {name!r}")
        if name in self.__dict__ and not isinstance(self.__dict__[name], Buffer):
            raise ConfigError(f"register_buffer: attribute {name!r} already exists")
        if tensor is None:
            raise ConfigError(f"register_buffer: buffer {name!r} needs an array, got None")
        object.__setattr__(self, name, None)  # so the assignment below registers it, not updates it
        self.__setattr__(name, Buffer(tensor, persistent))

    # -- modes -----------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Set training mode (`mode` True) or eval mode on this module and
        every submodule; returns self."""
        if not isinstance(mode, bool):
            raise ConfigError(f"train(mode): mode must be True or False, got {mode!r}")
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        """Set eval mode on this module and every submodule; returns self."""
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Freeze (False) or unfreeze every parameter; returns self."""
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    # -- calling -----------------------------------------------------------
    def forward(self, *inputs: Any) -> Any:
        raise EmberError(f"{type(self).__name__} must define forward()")

    def __call__(self, *inputs: Any) -> Any:
        trace = current_trace()
        if trace is None:
            return self.forward(*inputs)
        if trace.probe:
            self._report_input_needs(inputs, trace.probe)
        try:
            return self.forward(*inputs)
        except EmberError as e:
            raise self._located(e, trace) from None

    def _located(self, error: EmberError, trace: Any) -> EmberError:
        """`error` raised in this layer's forward, prefixed with the layer's
        type, qualified name and the line that built it (the innermost
        named layer only; the model itself adds nothing)."""
        name = trace.module_names.get(id(self))
        if not name or getattr(error, "layer", None):
            return error
        located = type(error)(f"{type(self).__name__} {name!r} ({self.__dict__.get('_defined_at', '?')}): {error}")
        located.layer = name  # type: ignore[attr-defined]
        return located

    def input_spec(self) -> tuple[tuple[int, ...], str | None] | None:
        """What this layer needs of a model input it is called with, so ember
        can infer the input's type: (shape of one example, dtype name such as
        "int64", or None for the program's float dtype). None (the default)
        for layers that take any size, such as activations and containers."""
        return None

    def _report_input_needs(self, inputs: tuple, probe: frozenset[str]) -> None:
        """In a probe trace: stop at the first layer with an `input_spec`
        called with a tensor of a placeholder size."""
        spec = self.input_spec()
        if spec is None:
            return
        for x in inputs:
            if isinstance(x, TensorOps) and not isinstance(x, Parameter | Buffer):
                for symbol in x._value().type.symbols:
                    if symbol in probe:
                        raise InputNeeds(spec, symbol)

    # -- walking -----------------------------------------------------------
    def _registered(self, kind: type) -> Iterator[tuple[str, Any]]:
        for name in self.__dict__.get("_children", []):
            value = self.__dict__.get(name)
            if isinstance(value, kind):
                yield name, value

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """(name, Module) pairs of the direct submodules."""
        return self._registered(Module)

    def children(self) -> Iterator[Module]:
        return (m for _, m in self.named_children())

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """(qualified name, Module) for this module ("") and every submodule,
        depth first; each module once."""
        seen: set[int] = set()
        stack = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = [(f"{name}.{n}" if name else n, m) for n, m in module.named_children()]
            stack.extend(reversed(children))

    def modules(self) -> Iterator[Module]:
        """This module and every submodule, depth first."""
        return (m for _, m in self.named_modules())

    def _named_members(self, kind: type, prefix: str) -> Iterator[tuple[str, Any]]:
        """Members of `kind` of every module, each module's own first; each member once."""
        seen: set[int] = set()
        for module_name, module in self.named_modules():
            for name, member in module._registered(kind):
                if id(member) not in seen:
                    seen.add(id(member))
                    yield prefix + (f"{module_name}.{name}" if module_name else name), member

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """(name, Parameter) pairs in PyTorch's order; each Parameter once."""
        return self._named_members(Parameter, prefix)

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, Buffer]]:
        """(name, Buffer) pairs in PyTorch's order; each Buffer once."""
        return self._named_members(Buffer, prefix)

    def buffers(self) -> list[Buffer]:
        return [b for _, b in self.named_buffers()]

    def state_names(self) -> list[str]:
        """The names of a state dict of this model, in PyTorch's order: each
        module's parameters, then its persistent buffers, then its children's."""
        names: list[str] = []
        seen: set[int] = set()
        for module_name, module in self.named_modules():
            params = list(module._registered(Parameter))
            buffers = [(n, b) for n, b in module._registered(Buffer) if b.persistent]
            for name, member in [*params, *buffers]:
                if id(member) not in seen:
                    seen.add(id(member))
                    names.append(f"{module_name}.{name}" if module_name else name)
        return names

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        children = list(self.named_children())
        if not children:
            return f"{type(self).__name__}({self.extra_repr()})"
        body = "\n".join(f"  ({name}): " + repr(m).replace("\n", "\n  ") for name, m in children)
        return f"{type(self).__name__}(\n{body}\n)"


def _check_module(what: str, module: Any) -> Module:
    if not isinstance(module, Module):
        raise ConfigError(f"{what} is a {type(module).__name__}, not an ember.nn.Module")
    return module


class Sequential(Module):
    """Modules applied in order; parameters are named `0.weight`, `1.bias`, ..."""

    def __init__(self, *modules: Module) -> None:
        for i, m in enumerate(modules):
            setattr(self, str(i), _check_module(f"Sequential: argument {i}", m))

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


class ModuleList(Module):
    """A list of modules, named `0`, `1`, ... as in PyTorch. It has no
    forward: a parent module calls its items."""

    def __init__(self, modules: Iterable[Module] | None = None) -> None:
        if modules is not None:
            self.extend(modules)

    def _items(self) -> list[Module]:
        return [m for _, m in self.named_children()]

    def _reset(self, items: list[Module]) -> None:
        for name in list(self.__dict__.get("_children", [])):
            delattr(self, name)
            self.__dict__["_children"].remove(name)
        for i, m in enumerate(items):
            setattr(self, str(i), m)

    def append(self, module: Module) -> ModuleList:
        setattr(self, str(len(self)), _check_module("ModuleList.append: the module", module))
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        for m in modules:
            self.append(m)
        return self

    def insert(self, index: int, module: Module) -> None:
        items = self._items()
        items.insert(index, _check_module("ModuleList.insert: the module", module))
        self._reset(items)

    def __getitem__(self, index: int | slice) -> Any:
        items = self._items()
        return ModuleList(items[index]) if isinstance(index, slice) else items[index]

    def __setitem__(self, index: int, module: Module) -> None:
        items = self._items()
        items[index] = _check_module("ModuleList item", module)
        self._reset(items)

    def __len__(self) -> int:
        return len(self.__dict__.get("_children", []))

    def __iter__(self) -> Iterator[Module]:
        return iter(self._items())

    def forward(self, *inputs: Any) -> Any:
        raise EmberError("ModuleList has no forward(): call its modules from the parent's forward")


class ModuleDict(Module):
    """Modules by name, in insertion order, as PyTorch's ModuleDict."""

    def __init__(self, modules: Mapping[str, Module] | Iterable[tuple[str, Module]] | None = None) -> None:
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key: str) -> Module:
        if key not in self:
            raise KeyError(key)
        return self.__dict__[key]

    def __setitem__(self, key: str, module: Module) -> None:
        if not isinstance(key, str) or not key or "." in key:
            raise ConfigError(f"ModuleDict: a key must be a non-empty string without '.', got {key!r}")
        setattr(self, key, _check_module(f"ModuleDict[{key!r}]", module))

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        delattr(self, key)
        self.__dict__["_children"].remove(key)

    def __contains__(self, key: object) -> bool:
        return key in self.__dict__.get("_children", [])

    def __len__(self) -> int:
        return len(self.__dict__.get("_children", []))

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.__dict__.get("_children", [])))

    def keys(self) -> list[str]:
        return list(self)

    def values(self) -> list[Module]:
        return [self[k] for k in self]

    def items(self) -> list[tuple[str, Module]]:
        return [(k, self[k]) for k in self]

    def update(self, modules: Mapping[str, Module] | Iterable[tuple[str, Module]]) -> None:
        pairs = modules.items() if isinstance(modules, Mapping) else modules
        for key, module in pairs:
            self[key] = module

    def forward(self, *inputs: Any) -> Any:
        raise EmberError("ModuleDict has no forward(): call its modules from the parent's forward")
