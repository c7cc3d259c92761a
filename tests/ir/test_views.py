"""Graph views: the networkx DiGraph and the Graphviz DOT text."""

from __future__ import annotations

import re

import networkx as nx
import pytest

from ember.ir import Builder, DType, Graph, TensorType, to_dot, to_networkx


@pytest.fixture
def graph() -> Graph:
    """relu(x @ w^T) with an output, and an SGD-like update of w."""
    graph = Graph("small")
    x = graph.add_argument("x", TensorType(DType.float32, ("B", 4)))
    w = graph.add_argument("w", TensorType(DType.float32, (3, 4)), "param")
    step = graph.add_argument("step", TensorType(DType.int64, ()), "state")
    b = Builder(graph)
    graph.outputs["out"] = b.relu(b.matmul(x, w, transpose_b=True))  # %0 matmul, %1 relu
    graph.updates["w"] = b.mul(w, 0.5)  # %2 constant, %3 mul
    graph.updates["step"] = b.add(step, 1)  # %4 constant, %5 add
    return graph


def test_networkx_nodes_and_edges(graph: Graph) -> None:
    g = to_networkx(graph)
    assert g.graph["name"] == "small"
    assert set(g.nodes) == {
        "%x", "%w", "%step", "%0", "%1", "%2", "%3", "%4", "%5", "output out", "update %w", "update %step",
    }  # fmt: skip
    assert set(g.edges) == {
        ("%x", "%0"), ("%w", "%0"), ("%0", "%1"), ("%1", "output out"),
        ("%w", "%3"), ("%2", "%3"), ("%3", "update %w"),
        ("%step", "%5"), ("%4", "%5"), ("%5", "update %step"),
    }  # fmt: skip
    assert nx.is_directed_acyclic_graph(g)


def test_networkx_node_attributes(graph: Graph) -> None:
    g = to_networkx(graph)
    assert g.nodes["%x"] == {"type": "f32[B,4]", "op": None, "role": "input", "label": "%x\\nf32[B,4]"}
    assert g.nodes["%w"]["role"] == "param"
    assert g.nodes["%step"]["role"] == "state"
    assert g.nodes["%0"] == {
        "type": "f32[B,3]",
        "op": "matmul",
        "role": None,
        "label": "%0 = matmul {transpose_b=true}\\nf32[B,3]",
    }
    assert g.nodes["%1"]["op"] == "relu"
    assert g.nodes["%2"]["label"] == "%2 = constant {value=0.5, dtype=f32}\\nf32[]"
    assert g.nodes["output out"]["role"] == "output"
    assert g.nodes["update %step"] == {"type": "i64[]", "op": None, "role": "update", "label": "update %step"}


def test_networkx_edges_follow_operand_use(graph: Graph) -> None:
    g = to_networkx(graph)
    ops = [n for n, op in g.nodes(data="op") if op is not None]
    assert ops == [f"%{i}" for i in range(len(graph.nodes))]
    for i, node in enumerate(graph.nodes):
        assert g.in_degree(f"%{i}") == len(set(node.inputs))


NODE_LINE = re.compile(r'  (n\d+) \[label="((?:[^"\\]|\\.)*)", shape=(\w+)\];')
EDGE_LINE = re.compile(r"  (n\d+) -> (n\d+);")


def test_dot_is_well_formed_and_has_every_node(graph: Graph) -> None:
    text = to_dot(graph)
    lines = text.splitlines()
    assert text.endswith("}\n")
    assert lines[0] == 'digraph "small" {'
    assert lines[-1] == "}"
    body = [line for line in lines[1:-1] if not line.startswith("  node [")]
    nodes = {m[1]: (m[2], m[3]) for m in map(NODE_LINE.fullmatch, body) if m}
    edges = {(m[1], m[2]) for m in map(EDGE_LINE.fullmatch, body) if m}
    assert len(nodes) + len(edges) == len(body), "every line is a node or an edge statement"

    g = to_networkx(graph)
    by_label = {label: node_id for node_id, (label, _) in nodes.items()}
    assert set(by_label) == {data["label"] for _, data in g.nodes(data=True)}
    assert edges == {(by_label[g.nodes[a]["label"]], by_label[g.nodes[b]["label"]]) for a, b in g.edges}


def test_dot_shapes_follow_roles(graph: Graph) -> None:
    shapes = dict(re.findall(r'label="([^"\\]*)[^"]*", shape=(\w+)', to_dot(graph)))
    assert shapes["%x"] == "invhouse"
    assert shapes["%w"] == "box"
    assert shapes["%step"] == "box3d"
    assert shapes["%1 = relu"] == "ellipse"
    assert shapes["output out"] == "house"
    assert shapes["update %w"] == "house"
