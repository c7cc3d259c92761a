"""Symbolic tensors: what `forward` receives while ember traces a model.

Arithmetic on a `Tensor` appends a node to the graph being traced instead of
computing numbers, so a model's `forward` written with ordinary operators
(`x @ w.T + b`) and ember's functional ops becomes graph IR."""

from __future__ import annotations

import contextvars
import os
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

from .ir import Builder, DType, EmberError, Graph, TensorType, Value

if TYPE_CHECKING:
    from .constants import ConstantPool
    from .nn.module import Buffer, Parameter

_EMBER_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


class Trace:
    """The graph being built, whether `forward` runs in training mode, the
    Value that stands for each Parameter and Buffer, and the new values
    assigned to buffers (applied as the graph's updates)."""

    def __init__(
        self,
        graph: Graph,
        training: bool = False,
        probe: frozenset[str] = frozenset(),
        constants: ConstantPool | None = None,
    ) -> None:
        self.graph = graph
        self.constants = constants  # where NumPy arrays used in forward become constants
        self.training = training
        self.probe = probe  # placeholder sizes of inputs whose types are being inferred
        self.builder = Builder(graph)
        self.params: dict[int, Value] = {}
        self.buffer_updates: dict[str, Value] = {}
        self.module_names: dict[int, str] = {}  # id(module) -> qualified name, for errors

    def bind(self, param: Parameter | Buffer, value: Value) -> None:
        self.params[id(param)] = value

    def value_of(self, param: Parameter | Buffer) -> Value:
        try:
            return self.params[id(param)]
        except KeyError:
            raise EmberError(
                f"forward() used a {type(param).__name__} that is not an attribute of the model "
                f"(assign it to a Module attribute so it gets a name) (at {user_location()})"
            ) from None


_ACTIVE: contextvars.ContextVar[Trace | None] = contextvars.ContextVar("ember_trace", default=None)


class InputNeeds(Exception):
    """Control flow of the probe trace, never seen by users: raised by the first layer called with a tensor of a
    placeholder size: `spec` is (shape per example, dtype name or None for
    the program's float dtype) that layer needs."""

    def __init__(self, spec: tuple[tuple[int, ...], str | None], placeholder: str) -> None:
        super().__init__(spec, placeholder)
        self.spec = spec
        self.placeholder = placeholder  # which input's placeholder size the layer met


@contextmanager
def tracing(
    graph: Graph, training: bool = False, probe: frozenset[str] = frozenset(), constants: ConstantPool | None = None
) -> Iterator[Trace]:
    """Make `graph` the target of tensor operations inside the block."""
    trace = Trace(graph, training, probe, constants)
    token = _ACTIVE.set(trace)
    try:
        yield trace
    finally:
        _ACTIVE.reset(token)


def record_buffer_update(buffer: Buffer, value: TensorOps, label: str) -> None:
    """`value` becomes `buffer`'s value after a step traced in training mode
    (ignored in eval mode). `label` names the attribute in errors."""
    trace = active_trace()
    if not trace.training:
        return
    target = trace.value_of(buffer)
    new = value._value()
    if new.type != target.type:
        raise EmberError(
            f"buffer {label} ({target.name}) is {target.type}; the value assigned to it is {new.type} "
            f"(at {user_location()})"
        )
    trace.buffer_updates[target.name] = new  # type: ignore[index]


def current_trace() -> Trace | None:
    """The trace being built, or None outside tracing."""
    return _ACTIVE.get()


def active_trace() -> Trace:
    trace = _ACTIVE.get()
    if trace is None:
        raise EmberError("tensor operations run only while ember traces a model (inside ember.compile)")
    return trace


def user_line() -> str:
    """`file:line` of the innermost caller outside ember itself (the file
    relative to the working directory when it is below it)."""
    for frame in reversed(traceback.extract_stack()):
        path = os.path.abspath(frame.filename)
        if not path.startswith(_EMBER_DIR):
            relative = os.path.relpath(path)
            return f"{path if relative.startswith('..') else relative}:{frame.lineno}"
    return "ember"


def user_location() -> str:
    """`file:line in function` of the innermost caller outside ember itself."""
    for frame in reversed(traceback.extract_stack()):
        if not os.path.abspath(frame.filename).startswith(_EMBER_DIR):
            return f"{frame.filename}:{frame.lineno} in {frame.name}"
    return "ember"


def emit(op: str, *operands: Any, **attrs: Any) -> Tensor:
    """Append `op` to the traced graph; errors name the user's line of code."""
    trace = active_trace()
    values = [as_value(x) for x in operands]
    try:
        return Tensor(trace.builder.emit(op, *values, **attrs))
    except EmberError as e:
        raise type(e)(f"{e} (at {user_location()})") from None


RNG_SEED = "rng_seed"
RNG_STEP = "rng_step"
RNG_INPUTS = (RNG_SEED, RNG_STEP)
"""The scalar int64 inputs of a graph that draws random numbers: the
program's seed and its step counter (which the Program passes and advances)."""


def random_uniform(shape: tuple, dtype: DType) -> Tensor:
    """Numbers in [0, 1) of `shape` drawn in the traced graph, keyed by the
    graph inputs `rng_seed` and `rng_step` (added on first use); each call
    draws from a stream of its own, so two dropout layers differ."""
    graph = active_trace().graph
    seed, step = (_rng_input(graph, name) for name in RNG_INPUTS)
    stream = sum(node.op.name == "random_uniform" for node in graph.nodes)
    return emit("random_uniform", Tensor(seed), Tensor(step), shape=shape, dtype=dtype, stream=stream)


def _rng_input(graph: Graph, name: str) -> Value:
    existing = [a for a in graph.inputs if a.name == name]
    return existing[0] if existing else graph.add_argument(name, TensorType(DType.int64, ()))


def as_value(x: Any) -> Value | float | int | bool:
    if isinstance(x, TensorOps):
        return x._value()
    if isinstance(x, bool | int | float):
        return x
    if isinstance(x, np.generic) and x.dtype.kind in "biuf":
        return x.item()
    trace = active_trace()
    if isinstance(x, np.ndarray) and trace.constants is not None:
        try:
            return trace.constants.value(x, trace.graph)
        except EmberError as e:
            raise type(e)(f"{e} (at {user_location()})") from None
    raise EmberError(
        f"cannot use a {type(x).__name__} in a traced model; use Tensors, Parameters or Python numbers "
        f"(at {user_location()})"
    )


class TensorOps:
    """Operators shared by `Tensor` and `nn.Parameter`."""

    __array_ufunc__ = None  # `array + tensor` calls Tensor.__radd__, not NumPy's elementwise loop

    def _value(self) -> Value:
        raise EmberError(f"{type(self).__name__} is not a tensor")

    @property
    def shape(self) -> tuple:
        return self._value().type.shape

    @property
    def dtype(self) -> DType:
        return self._value().type.dtype

    @property
    def ndim(self) -> int:
        return self._value().type.rank

    @property
    def T(self) -> Tensor:
        from . import functional as F

        return F.transpose(self)

    def __add__(self, other) -> Tensor:
        return emit("add", self, other)

    def __radd__(self, other) -> Tensor:
        return emit("add", other, self)

    def __sub__(self, other) -> Tensor:
        return emit("sub", self, other)

    def __rsub__(self, other) -> Tensor:
        return emit("sub", other, self)

    def __mul__(self, other) -> Tensor:
        return emit("mul", self, other)

    def __rmul__(self, other) -> Tensor:
        return emit("mul", other, self)

    def __truediv__(self, other) -> Tensor:
        return emit("div", self, other)

    def __rtruediv__(self, other) -> Tensor:
        return emit("div", other, self)

    def __pow__(self, other) -> Tensor:
        return emit("pow", self, other)

    def __rpow__(self, other) -> Tensor:
        return emit("pow", other, self)

    def __matmul__(self, other) -> Tensor:
        return emit("matmul", self, other)

    def __rmatmul__(self, other) -> Tensor:
        return emit("matmul", other, self)

    def __neg__(self) -> Tensor:
        return emit("neg", self)

    def __abs__(self) -> Tensor:
        return emit("abs", self)

    def __lt__(self, other) -> Tensor:
        return emit("lt", self, other)

    def __le__(self, other) -> Tensor:
        return emit("le", self, other)

    def __gt__(self, other) -> Tensor:
        return emit("gt", self, other)

    def __ge__(self, other) -> Tensor:
        return emit("ge", self, other)

    def __getitem__(self, key) -> Tensor:
        """Basic indexing (integers, slices, `...`, `None`): a strided view."""
        from .indexing import getitem

        return getitem(self, key)

    # Methods as PyTorch's, each the function of ember.functional of the same
    # name (reductions take dim=/keepdim= or axis=/keepdims=).
    def exp(self) -> Tensor:
        return _functional().exp(self)

    def expm1(self) -> Tensor:
        return _functional().expm1(self)

    def log(self) -> Tensor:
        return _functional().log(self)

    def log1p(self) -> Tensor:
        return _functional().log1p(self)

    def sqrt(self) -> Tensor:
        return _functional().sqrt(self)

    def rsqrt(self) -> Tensor:
        return _functional().rsqrt(self)

    def abs(self) -> Tensor:
        return _functional().abs(self)

    def neg(self) -> Tensor:
        return _functional().neg(self)

    def erf(self) -> Tensor:
        return _functional().erf(self)

    def cos(self) -> Tensor:
        return _functional().cos(self)

    def sin(self) -> Tensor:
        return _functional().sin(self)

    def pow(self, exponent) -> Tensor:
        return _functional().pow(self, exponent)

    def clamp(self, min=None, max=None) -> Tensor:
        return _functional().clamp(self, min, max)

    clip = clamp

    def sigmoid(self) -> Tensor:
        return _functional().sigmoid(self)

    def tanh(self) -> Tensor:
        return _functional().tanh(self)

    def relu(self) -> Tensor:
        return _functional().relu(self)

    def softmax(self, *args, **kwargs) -> Tensor:
        return _functional().softmax(self, *args, **kwargs)

    def log_softmax(self, *args, **kwargs) -> Tensor:
        return _functional().log_softmax(self, *args, **kwargs)

    def sum(self, *args, **kwargs) -> Tensor:
        return _functional().sum(self, *args, **kwargs)

    def mean(self, *args, **kwargs) -> Tensor:
        return _functional().mean(self, *args, **kwargs)

    def max(self, *args, **kwargs) -> Tensor:
        """The largest element over axes: values only, as torch.amax."""
        return _functional().max(self, *args, **kwargs)

    def min(self, *args, **kwargs) -> Tensor:
        """The smallest element over axes: values only, as torch.amin."""
        return _functional().min(self, *args, **kwargs)

    amax = max
    amin = min

    def var(self, *args, **kwargs) -> Tensor:
        return _functional().var(self, *args, **kwargs)

    def std(self, *args, **kwargs) -> Tensor:
        return _functional().std(self, *args, **kwargs)

    def reshape(self, *shape) -> Tensor:
        """`reshape(2, -1)` or `reshape((2, -1))`; one dimension may be -1."""
        return _functional().reshape(self, _shape_arguments(shape))

    def view(self, *shape) -> Tensor:
        """As `reshape`: traced tensors have no storage to share."""
        return self.reshape(*shape)

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        return _functional().flatten(self, start_dim, end_dim)

    def unsqueeze(self, dim: int) -> Tensor:
        return _functional().unsqueeze(self, dim)

    def squeeze(self, dim=None) -> Tensor:
        return _functional().squeeze(self, dim)


def _functional():
    from . import functional  # imported late: functional imports this module

    return functional


def _shape_arguments(shape: tuple) -> tuple:
    """The dimensions given as `f(2, 3)` or as `f((2, 3))`."""
    return tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], tuple | list) else shape


class Tensor(TensorOps):
    """A symbolic tensor in a model being traced. `shape` may contain `B`."""

    __slots__ = ("value",)
    __hash__ = object.__hash__  # comparisons build graph nodes, so keep identity hashing

    def __init__(self, value: Value) -> None:
        self.value = value

    def _value(self) -> Value:
        return self.value

    def __repr__(self) -> str:
        return f"Tensor({self.value.type})"

    def __bool__(self) -> bool:
        raise EmberError(
            f"a traced Tensor has no truth value: Python control flow cannot depend on tensor values "
            f"(use ember.where) (at {user_location()})"
        )
