"""Print a graph in ember's IR text format (`ir.parse` reads it back).

    graph predict {
      input %x: f32[B,4]
      param %0.weight: f32[3,4]
      %0: f32[B,3] = matmul %x, %0.weight {transpose_b=true}
      output out = %0
    }

Arguments print by name, node results by number in execution order.
Attributes equal to their default are left out.
"""

from __future__ import annotations

from typing import Any

from .dtypes import DType
from .graph import Graph, Node, Value


def format_attr(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, DType):
        return str(value)
    if isinstance(value, tuple):
        return "[" + ",".join(format_attr(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def format_attrs(node: Node) -> str:
    shown = [
        f"{a.name}={format_attr(node.attrs[a.name])}"
        for a in node.op.attrs
        if a.name in node.attrs and node.attrs[a.name] != a.default
    ]
    return " {" + ", ".join(shown) + "}" if shown else ""


class Namer:
    """Printed names: `%name` for arguments, `%N` for node results."""

    def __init__(self, graph: Graph) -> None:
        self.names: dict[Value, str] = {a: f"%{a.name}" for a in graph.arguments}
        for i, node in enumerate(graph.nodes):
            self.names[node.output] = f"%{i}"

    def __call__(self, value: Value) -> str:
        return self.names.get(value, "%<undefined>")


def format_node(node: Node, name: Namer) -> str:
    operands = "".join((" " if i == 0 else ", ") + name(v) for i, v in enumerate(node.inputs))
    return f"{name(node.output)}: {node.output.type} = {node.op.name}{operands}{format_attrs(node)}"


def graph_lines(graph: Graph) -> list[str]:
    """The printed graph, one string per line."""
    name = Namer(graph)
    lines = [f"graph {graph.name} {{"]
    lines += [f"  {a.role} %{a.name}: {a.type}" for a in graph.arguments]
    lines += [f"  {format_node(n, name)}" for n in graph.nodes]
    lines += [f"  output {k} = {name(v)}" for k, v in graph.outputs.items()]
    lines += [f"  update %{k} = {name(v)}" for k, v in graph.updates.items()]
    lines.append("}")
    return lines


def print_graph(graph: Graph) -> str:
    """The IR text of `graph`, ending with a newline."""
    return "\n".join(graph_lines(graph)) + "\n"
