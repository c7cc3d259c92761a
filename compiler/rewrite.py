"""A small engine for local rewrites, and dead-code elimination.

`rewrite(graph, rule)` copies the graph node by node; after copying each
node it asks `rule(builder, node)` for a replacement value. The rule may
emit new nodes with the builder. Replaced nodes are left dead and removed
by `dce` at the end."""

from __future__ import annotations

from collections.abc import Callable

from ..ir import Builder, Graph, Node, Value

Rule = Callable[[Builder, Node], Value | None]


def rewrite(graph: Graph, rule: Rule) -> Graph:
    """Apply `rule` to every node once, in execution order."""
    out = Graph(graph.name)
    b = Builder(out)
    mapping: dict[Value, Value] = {}
    for a in graph.arguments:
        mapping[a] = out.add_argument(a.name, a.type, a.role)  # type: ignore[arg-type]
    for node in graph.nodes:
        copy = out.append(node.op, tuple(mapping[v] for v in node.inputs), node.attrs, node.output.type)
        replacement = rule(b, copy.node)  # type: ignore[arg-type]
        mapping[node.output] = replacement if replacement is not None else copy
    out.outputs = {k: mapping[v] for k, v in graph.outputs.items()}
    out.updates = {k: mapping[v] for k, v in graph.updates.items()}
    return dce(out)


def dce(graph: Graph) -> Graph:
    """Remove nodes whose results no output or update needs (in place)."""
    live = set(graph.outputs.values()) | set(graph.updates.values())
    kept = []
    for node in reversed(graph.nodes):
        if node.output in live:
            kept.append(node)
            live.update(node.inputs)
    graph.nodes = kept[::-1]
    return graph
