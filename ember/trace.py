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
from .nn.losses import Loss, ReducedLoss
from .nn.module import Module
from .tensor import Tensor, TensorOps, tracing

INPUT = "x"
TARGET = "y"
PREDICTION = "out"
LOSS = "loss"
SAMPLE_WEIGHT = "sample_weight"
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


def names(base: str, count: int) -> list[str]:
    """Graph names of `count` inputs, outputs or targets: `x` for one,
    `x0`, `x1`, ... for several."""
    return [base] if count == 1 else [f"{base}{i}" for i in range(count)]


def _begin(name: str, model: Module, input_types: Sequence[TensorType]) -> Graph:
    if not isinstance(model, Module):
        raise ConfigError(f"expected an ember.nn.Module to compile, got {type(model).__name__}")
    graph = Graph(name)
    for input_name, input_type in zip(names(INPUT, len(input_types)), input_types, strict=True):
        graph.add_argument(input_name, input_type)
    return graph


def add_model_arguments(graph: Graph, trace, model: Module, dtype: DType) -> None:
    """The model's params, then its buffers, as graph arguments (all in
    `dtype`); the trace learns each module's qualified name, for errors."""
    trace.module_names.update((id(m), name) for name, m in model.named_modules())
    for name, p in model.named_parameters():
        trace.bind(p, graph.add_argument(name, TensorType(dtype, p.param_shape), "param"))
    for name, b in model.named_buffers():
        trace.bind(b, graph.add_argument(name, TensorType(dtype, b.shape), "buffer"))


def _traced_outputs(model: Module, graph: Graph) -> list[Tensor]:
    """The tensors forward returns: one, or a tuple of several."""
    out = model(*(Tensor(x) for x in graph.inputs))
    outs = list(out) if isinstance(out, tuple) else [out]
    for i, o in enumerate(outs):
        if not isinstance(o, TensorOps):
            what = type(out).__name__ if not isinstance(out, tuple) else f"a tuple holding a {type(o).__name__} at {i}"
            raise EmberError(f"{type(model).__name__}.forward must return a tensor or a tuple of tensors, got {what}")
    if not outs:
        raise EmberError(f"{type(model).__name__}.forward must return a tensor or a tuple of tensors, got ()")
    return [Tensor(o._value()) for o in outs]


def _inputs(input_shape: Sequence[int] | TensorType | Sequence[TensorType], dtype: DType) -> list[TensorType]:
    """The inputs' types: given, or one `dtype[B, *input_shape]`."""
    if isinstance(input_shape, TensorType):
        return [input_shape]
    if all(isinstance(t, TensorType) for t in input_shape) and input_shape:
        return list(input_shape)  # type: ignore[arg-type]
    return [TensorType(dtype, (BATCH, *input_shape))]  # type: ignore[misc]


def trace_model(
    model: Module, input_shape: Sequence[int] | TensorType, dtype: DType, constants: ConstantPool | None = None
) -> Graph:
    """The inference graph `predict`, traced in eval mode: input
    `x: dtype[B, *input_shape]` (or of the type given), output `out`.
    NumPy arrays in forward become constants of `constants` (default: a
    pool of this graph's own)."""
    graph = _begin(PREDICT, model, _inputs(input_shape, dtype))
    constants = constants or ConstantPool(dtype)
    with model_mode(model, False), tracing(graph, constants=constants) as trace:
        add_model_arguments(graph, trace, model, dtype)
        outs = _traced_outputs(model, graph)
        graph.outputs.update(zip(names(PREDICTION, len(outs)), (o.value for o in outs), strict=True))
    constants.complete(graph)
    return graph


def trace_loss(
    model: Module,
    loss: Loss | Sequence[Loss],
    input_shape: Sequence[int] | TensorType | Sequence[TensorType],
    dtype: DType,
    training: bool = True,
    constants: ConstantPool | None = None,
    loss_weights: Sequence[float] | None = None,
    sample_weights: bool = True,
) -> Graph:
    """The loss graph: the inputs, a target per output (`y`, or `y0`,
    `y1`, ... for several outputs, each with its own loss) and, when every
    loss can weigh its samples, the input `sample_weight` (`[B]`, ones for
    unweighted data); outputs `loss` (the weighted sum of the losses, each
    also output as `loss0`, ... when there are several) and the model's
    outputs. In training mode it is the graph `model` (with the buffers'
    updates), in eval mode `evaluate`."""
    losses = list(loss) if isinstance(loss, list | tuple) else [loss]
    for item in losses:
        if not isinstance(item, Loss):
            raise ConfigError(f"loss must be an ember.nn loss such as nn.MSELoss(), got {type(item).__name__}")
    weights = [1.0] * len(losses) if loss_weights is None else [float(w) for w in loss_weights]
    graph = _begin(MODEL if training else EVALUATE, model, _inputs(input_shape, dtype))
    constants = constants or ConstantPool(dtype)
    with model_mode(model, training), tracing(graph, training, constants=constants) as trace:
        add_model_arguments(graph, trace, model, dtype)
        outs = _traced_outputs(model, graph)
        if len(outs) != len(losses):
            raise ConfigError(
                f"{type(model).__name__}.forward returns {len(outs)} output(s) but {len(losses)} loss(es) were "
                "given; pass loss=[one loss per output]"
            )
        targets = [
            Tensor(graph.add_argument(target, item.target_type(out.value.type)))
            for item, out, target in zip(losses, outs, names(TARGET, len(outs)), strict=True)
        ]
        weight = Tensor(graph.add_argument(SAMPLE_WEIGHT, TensorType(dtype, (BATCH,)))) if sample_weights else None
        values = [_traced_loss(graph, *item, weight) for item in zip(losses, outs, targets, strict=True)]
        unweighted = weight is not None and not all(weighted for _, weighted in values)
        _loss_outputs(graph, [value for value, _ in values], weights, outs)
        graph.updates.update(trace.buffer_updates)
    if unweighted:  # a loss returning only a scalar cannot weigh samples: the program takes no sample weights
        return trace_loss(model, loss, input_shape, dtype, training, constants, loss_weights, False)
    constants.complete(graph)
    return graph


def _loss_outputs(graph: Graph, values: list[Tensor], weights: list[float], outs: list[Tensor]) -> None:
    """The outputs of a loss graph: the weighted total, each loss, each model output."""
    total = values[0] * weights[0] if weights[0] != 1.0 else values[0]
    for value, weight in zip(values[1:], weights[1:], strict=True):
        total = total + (value * weight if weight != 1.0 else value)
    graph.outputs[LOSS] = total.value
    if len(values) > 1:
        graph.outputs.update(zip(names(LOSS, len(values)), (v.value for v in values), strict=True))
    graph.outputs.update(zip(names(PREDICTION, len(outs)), (o.value for o in outs), strict=True))


def _traced_loss(graph: Graph, loss: Loss, out: Tensor, y: Tensor, weight: Tensor | None) -> tuple[Tensor, bool]:
    """The loss's value, and whether it weighs the samples by `weight`."""
    uses = _uses(graph, weight)
    value = loss(out, y, weight) if weight is not None and _takes_weights(loss) else loss(out, y)
    if value.value.type.rank != 0:
        unreduced = getattr(loss, "reduction", "") == "none"
        hint = " (reduction='none' gives per-sample losses: train with 'mean' or 'sum')" if unreduced else ""
        raise ShapeError(f"{type(loss).__name__} must produce a scalar loss to train, got {value.value.type}{hint}")
    return value, _uses(graph, weight) > uses


def _takes_weights(loss: Loss) -> bool:
    """Whether `loss` is called with sample weights: not a custom loss that
    defines `__call__(prediction, target)` itself (as before `forward`)."""
    return type(loss).__call__ is Loss.__call__ or isinstance(loss, ReducedLoss)


def _uses(graph: Graph, value: Tensor | None) -> int:
    """How many nodes of `graph` read `value`."""
    if value is None:
        return 0
    return sum(1 for node in graph.nodes for x in node.inputs if x is value.value)
