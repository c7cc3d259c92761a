"""Graph views for analysis and pictures: a networkx DiGraph and DOT text."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .graph import Graph
from .printer import Namer, format_attrs

if TYPE_CHECKING:
    import networkx as nx


def to_networkx(graph: Graph) -> nx.DiGraph:
    """A DiGraph whose nodes are the printed value names (`%x`, `%3`) and whose
    edges run from each operand to the value computed from it. Node data:
    `type`, `op` (None for arguments), `role` (argument role or None), `label`."""
    import networkx as nx  # here: importing it takes longer than `import ember` without it

    name = Namer(graph)
    g = nx.DiGraph(name=graph.name)
    for a in graph.arguments:
        g.add_node(name(a), type=str(a.type), op=None, role=a.role, label=f"{name(a)}\\n{a.type}")
    for node in graph.nodes:
        out = name(node.output)
        label = f"{out} = {node.op.name}{format_attrs(node)}\\n{node.output.type}"
        g.add_node(out, type=str(node.output.type), op=node.op.name, role=None, label=label)
        for v in node.inputs:
            g.add_edge(name(v), out)
    for k, v in graph.outputs.items():
        g.add_node(f"output {k}", type=str(v.type), op=None, role="output", label=f"output {k}")
        g.add_edge(name(v), f"output {k}")
    for k, v in graph.updates.items():
        g.add_node(f"update %{k}", type=str(v.type), op=None, role="update", label=f"update %{k}")
        g.add_edge(name(v), f"update %{k}")
    return g


_SHAPES = {"input": "invhouse", "param": "box", "buffer": "box", "state": "box3d", "output": "house", "update": "house"}


def to_dot(graph: Graph) -> str:
    """Graphviz DOT text of the graph (render with `dot -Tsvg`)."""
    g = to_networkx(graph)
    lines = [f'digraph "{graph.name}" {{', "  node [fontname=monospace, fontsize=10];"]
    ids = {n: f"n{i}" for i, n in enumerate(g.nodes)}
    for n, data in g.nodes(data=True):
        shape = _SHAPES.get(data["role"], "ellipse")
        label = data["label"].replace('"', '\\"')
        lines.append(f'  {ids[n]} [label="{label}", shape={shape}];')
    for a, b in g.edges:
        lines.append(f"  {ids[a]} -> {ids[b]};")
    lines.append("}")
    return "\n".join(lines) + "\n"
