"""Lowering before fusion: rewrite ops the native backend does not compile
directly into ones it does.

- every op with a `lower` rule in its entry is replaced by what the rule
  builds (`mean` by `sum` times the reciprocal of the count, `softmax` and
  `log_softmax` by their stable max / subtract / exp / sum forms), so fusion
  sees ordinary reductions and elementwise ops it can merge;
- every output and update gets a value of its own computed by a node (an
  argument or a value shared by two results is copied), so each result has
  exactly one kernel that writes it; an update of a param to itself is dropped."""

from __future__ import annotations

from ..ir import Builder, Graph, Node, Value
from .rewrite import rewrite
from .simplify import cse


def _lower_node(b: Builder, node: Node) -> Value | None:
    return node.op.lower(b, node) if node.op.lower is not None else None


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
    """`graph` with every op that has a `lower` rule expanded into primitives,
    and a node of its own for every output and update."""
    return _own_results(cse(rewrite(graph, _lower_node)))
