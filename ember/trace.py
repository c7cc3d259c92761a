"""Tracing: run a model's `forward` on symbolic tensors to get graph IR.

`forward` is traced once per mode: the inference graph `predict` and the
loss graph `evaluate` in eval mode, the loss graph `model` (which training
differentiates) in training mode. Buffers assigned in a training-mode
forward become the graph's updates."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from .constants import ConstantPool
from .ir import BATCH, ConfigError, DType, EmberError, Graph, ShapeError, TensorType
from .nn.losses import Loss
from .nn.module import Module
from .tensor import Tensor, TensorOps, tracing

INPUT = "x"
TARGET = "y"
PREDICTION = "out"
LOSS = "loss"
PREDICT = "predict"
MODEL = "model"
EVALUATE = "evaluate"


@contextmanager
def model_mode(model: Module, training: bool) -> Iterator[None]:
    """Run the block with every module of `model` in training mode (or eval
    mode), then give each module back the mode it had."""
    modes = [(m, m.training) for m in model.modules()]
    model.train(training)
    try:
        yield
    finally:
        for m, mode in modes:
            object.__setattr__(m, "training", mode)


def _begin(name: str, model: Module, input_type: TensorType) -> Graph:
    if not isinstance(model, Module):
        raise ConfigError(f"expected an ember.nn.Module to compile, got {type(model).__name__}")
    graph = Graph(name)
    graph.add_argument(INPUT, input_type)
    return graph


def add_model_arguments(graph: Graph, trace, model: Module, dtype: DType) -> None:
    """The model's params, then its buffers, as graph arguments (all in
    `dtype`); the trace learns each module's qualified name, for errors."""
    trace.module_names.update((id(m), name) for name, m in model.named_modules())
    for name, p in model.named_parameters():
        trace.bind(p, graph.add_argument(name, TensorType(dtype, p.param_shape), "param"))
    for name, b in model.named_buffers():
        trace.bind(b, graph.add_argument(name, TensorType(dtype, b.shape), "buffer"))


def _traced_output(model: Module, x: Tensor) -> Tensor:
    out = model(x)
    if not isinstance(out, TensorOps):
        raise EmberError(f"{type(model).__name__}.forward must return a tensor, got {type(out).__name__}")
    return Tensor(out._value())


def _input(input_shape: Sequence[int] | TensorType, dtype: DType) -> TensorType:
    """The input's type: given, or `dtype[B, *input_shape]`."""
    return input_shape if isinstance(input_shape, TensorType) else TensorType(dtype, (BATCH, *input_shape))


def trace_model(
    model: Module, input_shape: Sequence[int] | TensorType, dtype: DType, constants: ConstantPool | None = None
) -> Graph:
    """The inference graph `predict`, traced in eval mode: input
    `x: dtype[B, *input_shape]` (or of the type given), output `out`.
    NumPy arrays in forward become constants of `constants` (default: a
    pool of this graph's own)."""
    graph = _begin(PREDICT, model, _input(input_shape, dtype))
    constants = constants or ConstantPool(dtype)
    with model_mode(model, False), tracing(graph, constants=constants) as trace:
        add_model_arguments(graph, trace, model, dtype)
        graph.outputs[PREDICTION] = _traced_output(model, Tensor(graph.inputs[0])).value
    constants.complete(graph)
    return graph


def trace_loss(
    model: Module,
    loss: Loss,
    input_shape: Sequence[int] | TensorType,
    dtype: DType,
    training: bool = True,
    constants: ConstantPool | None = None,
) -> Graph:
    """The loss graph: inputs `x` and target `y`; outputs `loss` and `out`.
    In training mode it is the graph `model` (with the buffers' updates),
    in eval mode the graph `evaluate`."""
    if not isinstance(loss, Loss):
        raise ConfigError(f"loss must be an ember.nn loss such as nn.MSELoss(), got {type(loss).__name__}")
    graph = _begin(MODEL if training else EVALUATE, model, _input(input_shape, dtype))
    constants = constants or ConstantPool(dtype)
    with model_mode(model, training), tracing(graph, training, constants=constants) as trace:
        add_model_arguments(graph, trace, model, dtype)
        out = _traced_output(model, Tensor(graph.inputs[0]))
        y = graph.add_argument(TARGET, loss.target_type(out.value.type))
        value = loss(out, Tensor(y)).value
        if value.type.rank != 0:
            raise ShapeError(f"{type(loss).__name__} must produce a scalar, got {value.type}")
        graph.outputs[LOSS] = value
        graph.outputs[PREDICTION] = out.value
        graph.updates.update(trace.buffer_updates)
    constants.complete(graph)
    return graph
