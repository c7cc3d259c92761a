"""Reverse-mode automatic differentiation as a graph-to-graph pass.

The backward graph is ordinary IR appended after the forward nodes, so it
prints, simplifies, fuses and compiles like the forward graph. Each op's
gradient comes from its `vjp` rule in the op table; this pass only walks
the nodes last to first, sums cotangents where a value fans out, and sums
broadcast cotangents down to each input's shape."""

from __future__ import annotations

from collections.abc import Sequence

from ..ir import Builder, Graph, IRError, Value

GRAD_SUFFIX = ".grad"


def grad_name(param: str) -> str:
    """The output name of the gradient of `param`: `0.weight` -> `0.weight.grad`."""
    return param + GRAD_SUFFIX


def autodiff(graph: Graph, loss: str = "loss", wrt: Sequence[str] | None = None) -> Graph:
    """A copy of `graph` that also computes d(loss)/d(param) for each param in
    `wrt` (default: all params). Its outputs are `loss` and one
    `NAME.grad` per param, in param order."""
    graph, _ = graph.clone()
    if loss not in graph.outputs:
        raise IRError(f"graph {graph.name} has no output {loss!r} to differentiate")
    loss_value = graph.outputs[loss]
    if loss_value.type.rank != 0 or not loss_value.type.dtype.is_float:
        raise IRError(f"the loss must be a floating-point scalar, got {loss_value.type}")
    params = [graph.argument(name) for name in wrt] if wrt is not None else list(graph.params)

    active = _active_values(graph, params, loss_value)
    b = Builder(graph)
    cotangents: dict[Value, Value] = {loss_value: b.const(1.0, loss_value.type.dtype)}
    for node in reversed(list(graph.nodes)):
        g = cotangents.get(node.output)
        if g is None or node.op.vjp is None:
            continue
        wanted = [v in active for v in node.inputs]
        if not any(wanted):
            continue
        grads = node.op.vjp(b, node, g, wanted)
        for value, needed, grad in zip(node.inputs, wanted, grads, strict=True):
            if not needed or not isinstance(grad, Value):
                continue  # a rule gives None (or False) where no gradient flows
            grad = unbroadcast(b, grad, value)
            cotangents[value] = b.add(cotangents[value], grad) if value in cotangents else grad

    graph.outputs = {loss: loss_value}
    for p in params:
        grad = cotangents.get(p)
        if grad is None:  # the loss does not depend on this param
            grad = b.broadcast_to(b.const(0.0, p.type.dtype), shape=p.type.shape)
        graph.outputs[grad_name(p.name)] = grad  # type: ignore[operator]
    return graph


def unbroadcast(b: Builder, grad: Value, target: Value) -> Value:
    """Sum `grad` over the axes along which `target` was broadcast."""
    have, want = grad.type.shape, target.type.shape
    if have == want:
        return grad
    lead = len(have) - len(want)
    axes = list(range(lead)) + [lead + i for i, d in enumerate(want) if d == 1 and have[lead + i] != 1]
    summed = b.sum(grad, axes=axes, keepdims=True)
    return summed if summed.type.shape == want else b.reshape(summed, shape=want)


def _active_values(graph: Graph, params: Sequence[Value], loss: Value) -> set[Value]:
    """Values that depend on some param and that the loss depends on: the only
    ones whose cotangents are worth computing."""
    depends_on_params = set(params)
    for node in graph.nodes:
        if any(v in depends_on_params for v in node.inputs):
            depends_on_params.add(node.output)
    feeds_loss = {loss}
    for node in reversed(graph.nodes):
        if node.output in feeds_loss:
            feeds_loss.update(node.inputs)
    return depends_on_params & feeds_loss
