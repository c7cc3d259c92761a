"""Lowering before fusion: rewrite ops the native backend does not compile
directly into ones it does.

- `mean` becomes `sum` times the reciprocal of the element count;
- `softmax` and `log_softmax` become max / subtract / exp / sum / log|div,
  the numerically stable forms, so fusion sees ordinary reductions and
  elementwise ops it can merge with their producers and consumers;
- every output and update gets a value of its own computed by a node (an
  argument or a value shared by two results is copied), so each result has
  exactly one kernel that writes it; an update of a param to itself is dropped."""

from __future__ import annotations

from ..ir import Builder, Graph, Node, Value
from .rewrite import rewrite
from .simplify import cse


def _lower_node(b: Builder, node: Node) -> Value | None:
    op = node.op.name
    if op == "mean":
        x = node.inputs[0]
        count = b.size(x, axes=node.attrs["axes"], dtype=x.type.dtype)
        return b.mul(b.sum(x, axes=node.attrs["axes"], keepdims=node.attrs["keepdims"]), b.div(1.0, count))
    if op in ("softmax", "log_softmax"):
        x = node.inputs[0]
        axes = [node.attrs["axis"] % x.type.rank]
        shifted = b.sub(x, b.max(x, axes=axes, keepdims=True))
        if op == "softmax":
            e = b.exp(shifted)
            return b.div(e, b.sum(e, axes=axes, keepdims=True))
        return b.sub(shifted, b.log(b.sum(b.exp(shifted), axes=axes, keepdims=True)))
    return None


def _own_results(graph: Graph) -> Graph:
    b = Builder(graph)
    taken: set[Value] = set()

    def own(value: Value) -> Value:
        if value.node is None or value in taken:
            value = b.broadcast_to(value, shape=value.type.shape)  # an explicit copy
        taken.add(value)
        return value

    graph.outputs = {name: own(v) for name, v in graph.outputs.items()}
    graph.updates = {name: own(v) for name, v in graph.updates.items() if v is not graph.argument(name)}
    return graph


def lower_for_codegen(graph: Graph) -> Graph:
    """`graph` with mean, softmax and log_softmax expanded into primitives,
    and a node of its own for every output and update."""
    return _own_results(cse(rewrite(graph, _lower_node)))
