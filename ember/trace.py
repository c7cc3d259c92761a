"""Tracing: run a model's `forward` on symbolic tensors to get graph IR."""

from __future__ import annotations

from collections.abc import Sequence

from .ir import BATCH, ConfigError, DType, EmberError, Graph, ShapeError, TensorType
from .nn.layers import Linear
from .nn.losses import Loss
from .nn.module import Module
from .tensor import Tensor, TensorOps, tracing

INPUT = "x"
TARGET = "y"
PREDICTION = "out"
LOSS = "loss"


def infer_input_shape(model: Module, input_shape: Sequence[int] | None) -> tuple[int, ...]:
    """The per-example input shape: `input_shape` if given, else the
    `in_features` of the model's first Linear layer."""
    if input_shape is not None:
        shape = (input_shape,) if isinstance(input_shape, int) else tuple(input_shape)
        if not all(isinstance(d, int) and d >= 1 for d in shape):
            raise ConfigError(f"input_shape must be positive integers, got {input_shape!r}")
        return shape
    for m in model.modules():
        if isinstance(m, Linear):
            return (m.in_features,)
    raise ConfigError("cannot tell the model's input size: it has no Linear layer; pass input_shape=(features,)")


def _begin(name: str, model: Module, input_type: TensorType) -> tuple[Graph, list]:
    if not isinstance(model, Module):
        raise ConfigError(f"expected an ember.nn.Module to compile, got {type(model).__name__}")
    graph = Graph(name)
    graph.add_argument(INPUT, input_type)
    return graph, list(model.named_parameters())


def _add_params(graph: Graph, trace, named: list, dtype: DType) -> None:
    for param_name, p in named:
        trace.bind(p, graph.add_argument(param_name, TensorType(dtype, p.param_shape), "param"))


def _traced_output(model: Module, x: Tensor) -> Tensor:
    out = model(x)
    if not isinstance(out, TensorOps):
        raise EmberError(f"{type(model).__name__}.forward must return a tensor, got {type(out).__name__}")
    return Tensor(out._value())


def trace_model(model: Module, input_shape: Sequence[int], dtype: DType) -> Graph:
    """The inference graph `predict`: input `x: dtype[B, *input_shape]`, output `out`."""
    graph, named = _begin("predict", model, TensorType(dtype, (BATCH, *input_shape)))
    with tracing(graph) as trace:
        _add_params(graph, trace, named, dtype)
        graph.outputs[PREDICTION] = _traced_output(model, Tensor(graph.inputs[0])).value
    return graph


def trace_loss(model: Module, loss: Loss, input_shape: Sequence[int], dtype: DType) -> Graph:
    """The graph `model`: inputs `x` and target `y`; outputs `loss` and `out`."""
    if not isinstance(loss, Loss):
        raise ConfigError(f"loss must be an ember.nn loss such as nn.MSELoss(), got {type(loss).__name__}")
    graph, named = _begin("model", model, TensorType(dtype, (BATCH, *input_shape)))
    with tracing(graph) as trace:
        _add_params(graph, trace, named, dtype)
        out = _traced_output(model, Tensor(graph.inputs[0]))
        y = graph.add_argument(TARGET, loss.target_type(out.value.type))
        value = loss(out, Tensor(y)).value
        if value.type.rank != 0:
            raise ShapeError(f"{type(loss).__name__} must produce a scalar, got {value.type}")
        graph.outputs[LOSS] = value
        graph.outputs[PREDICTION] = out.value
    return graph
