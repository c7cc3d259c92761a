"""The verifier accepts well-formed graphs and rejects malformed ones with a
message that names the problem and shows the IR around the failing line,
marked with `>>`."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

import ember
from ember.ir import OPS, Builder, DType, Graph, IRError, TensorType, Value, VerifyError, parse, print_graph, verify
from ember.ir.verifier import CONTEXT_LINES

f32 = DType.float32
GOLDEN = sorted((Path(__file__).parents[1] / "golden").glob("mlp_*.ir"))
HEAD = re.compile(r"invalid graph (?P<graph>\S+): line (?P<line>\d+): (?P<problem>.*)")


def small_graph() -> Graph:
    """x: f32[B,4], w: param f32[4], s: state f32[]; out = relu(x * w); s <- s + 1."""
    graph = Graph("g")
    x = graph.add_argument("x", TensorType(f32, ("B", 4)))
    w = graph.add_argument("w", TensorType(f32, (4,)), "param")
    s = graph.add_argument("s", TensorType(f32, ()), "state")
    build = Builder(graph)
    graph.outputs["out"] = build.relu(build.mul(x, w))
    graph.updates["s"] = build.add(s, 1.0)
    return graph


def expect_failure(graph: Graph, problem: str, marked: str) -> None:
    """verify(graph) raises VerifyError naming `problem`, with the printed line
    `marked` (without indentation) shown after `>>` among its neighbours."""
    with pytest.raises(VerifyError) as info:
        verify(graph)
    head, *context = str(info.value).splitlines()
    match = HEAD.fullmatch(head)
    assert match, head
    assert match["graph"] == graph.name
    assert problem in match["problem"]
    printed = print_graph(graph).splitlines()
    at = int(match["line"]) - 1
    assert printed[at] == "  " + marked
    assert [line for line in context if line.startswith(">>")] == [">> " + printed[at]]
    lo, hi = max(0, at - CONTEXT_LINES), at + CONTEXT_LINES + 1
    assert [line[3:] for line in context] == printed[lo:hi]


# -- valid graphs --------------------------------------------------------------
def test_valid_graph_verifies_and_is_returned():
    graph = small_graph()
    assert verify(graph) is graph


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_golden_graphs_verify(path):
    graph = parse(path.read_text())
    assert verify(graph) is graph


def test_cloned_graph_verifies():
    copy, _ = small_graph().clone("copy")
    assert verify(copy).name == "copy"


def test_errors_are_ember_value_errors():
    assert issubclass(VerifyError, IRError)
    assert issubclass(IRError, ember.EmberError)
    assert issubclass(IRError, ValueError)
    assert ember.VerifyError is VerifyError


# -- generic checks -------------------------------------------------------------
def test_use_before_definition():
    graph = small_graph()
    graph.nodes[0], graph.nodes[1] = graph.nodes[1], graph.nodes[0]
    expect_failure(graph, "input 0 of 'relu' is not defined before this node", "%0: f32[B,4] = relu %1")


def test_input_from_another_graph():
    graph = small_graph()
    stranger = Builder(Graph("other")).const(2.0, f32)
    graph.nodes[3].inputs = (graph.argument("s"), stranger)
    expect_failure(graph, "input 1 of 'add' is not defined", "%3: f32[] = add %s, %<undefined>")


def test_node_listed_twice():
    graph = small_graph()
    graph.nodes.insert(2, graph.nodes[1])
    expect_failure(graph, "defined more than once", "%2: f32[B,4] = relu %0")


def test_duplicate_argument_names():
    graph = small_graph()
    graph.state.append(Value(TensorType(f32, (4,)), name="w", role="state"))
    expect_failure(graph, "argument %w is declared twice", "state %w: f32[4]")


def test_output_outside_the_graph():
    graph = small_graph()
    graph.outputs["stray"] = Builder(Graph("other")).const(2.0, f32)
    expect_failure(graph, "output stray refers to a value that is not in the graph", "output stray = %<undefined>")


def test_output_with_an_invalid_name():
    graph = small_graph()
    graph.outputs["12"] = graph.outputs["out"]
    expect_failure(graph, "output '12': invalid name", "output 12 = %1")


def test_update_target_is_not_a_param_or_state():
    graph = small_graph()
    graph.updates["x"] = graph.outputs["out"]
    expect_failure(graph, "update of %x: the graph has no param, buffer or state with that name", "update %x = %1")


def test_update_of_a_buffer_is_accepted():
    graph = small_graph()
    running = graph.add_argument("bn.running_mean", TensorType(f32, (4,)), "buffer")
    graph.updates["bn.running_mean"] = Builder(graph).mul(running, 0.5)
    assert verify(graph) is graph


def test_update_value_outside_the_graph():
    graph = small_graph()
    graph.updates["s"] = Builder(Graph("other")).const(2.0, f32)
    expect_failure(graph, "update of %s refers to a value that is not in the graph", "update %s = %<undefined>")


def test_update_type_mismatch():
    graph = small_graph()
    graph.updates["w"] = graph.outputs["out"]
    expect_failure(graph, "update of %w: the argument is f32[4] but the new value is f32[B,4]", "update %w = %1")


# -- per-op checks -----------------------------------------------------------------
def test_stored_type_disagrees_with_the_rule():
    graph = small_graph()
    graph.nodes[1].output.type = TensorType(f32, ("B", 5))
    expect_failure(graph, "'relu' gives f32[B,4] but the node says f32[B,5]", "%1: f32[B,5] = relu %0")


def test_type_rule_rejects_the_inputs():
    graph = small_graph()
    graph.argument("w").type = TensorType(f32, (3,))
    expect_failure(graph, "cannot be broadcast together", "%0: f32[B,4] = mul %x, %w")


def test_wrong_number_of_inputs():
    graph = small_graph()
    graph.nodes[0].inputs = graph.nodes[0].inputs[:1]
    expect_failure(graph, "op 'mul' takes 2 inputs, got 1", "%0: f32[B,4] = mul %x")


@pytest.mark.parametrize(
    ("attrs", "shown"),
    [
        ({"axes": [1], "keepdims": False}, "{axes=[1]}"),
        ({"axes": (1,)}, "{axes=[1]}"),
        ({"axes": (1,), "keepdims": np.False_}, "{axes=[1]}"),
    ],
    ids=["list-for-tuple", "missing-default", "numpy-bool"],
)
def test_attributes_not_in_canonical_form(attrs, shown):
    graph = small_graph()
    graph.outputs["total"] = Builder(graph).sum(graph.outputs["out"], axes=[1])
    graph.nodes[-1].attrs = attrs
    expect_failure(graph, "attributes of 'sum' are not in canonical form", f"%4: f32[B] = sum %1 {shown}")


@pytest.mark.parametrize(("alpha", "shown"), [(1, "1"), (np.float32(0.1), "0.1")], ids=["int", "numpy-float32"])
def test_equal_attribute_of_another_type_is_not_canonical(alpha, shown):
    graph = small_graph()
    graph.outputs["leaky"] = Builder(graph).leaky_relu(graph.outputs["out"])
    graph.nodes[-1].attrs = {"alpha": alpha}
    expect_failure(graph, "not in canonical form", f"%4: f32[B,4] = leaky_relu %1 {{alpha={shown}}}")


def test_unknown_attribute():
    graph = small_graph()
    graph.nodes[1].attrs = {"alpha": 0.1}
    expect_failure(graph, "op 'relu' has no attribute alpha", "%1: f32[B,4] = relu %0")


def test_op_not_in_the_table():
    graph = small_graph()
    node = graph.nodes[1]
    node.op = dataclasses.replace(node.op)
    expect_failure(graph, "op 'relu' is not in the op table", "%1: f32[B,4] = relu %0")


def append(graph: Graph, op: str, inputs: tuple[Value, ...], attrs: dict, type: TensorType) -> None:
    """Add a node as a pass might, without the builder's checks, as output `bad`."""
    graph.outputs["bad"] = graph.append(OPS[op], inputs, attrs, type)


def test_reduction_over_an_axis_named_twice():
    # NumPy refuses such a sum; native code summed the axis once.
    graph = small_graph()
    append(graph, "sum", (graph.outputs["out"],), {"axes": (1, -1), "keepdims": False}, TensorType(f32, ("B",)))
    expect_failure(graph, "op 'sum': axes [1, -1] name axis 1 twice", "%4: f32[B] = sum %1 {axes=[1,-1]}")


def test_max_over_an_empty_axis():
    graph = small_graph()
    empty = graph.add_argument("e", TensorType(f32, (0, 4)))
    append(graph, "max", (empty,), {"axes": (0,), "keepdims": False}, TensorType(f32, (4,)))
    expect_failure(graph, "op 'max' needs elements along axis 0 of f32[0,4]", "%4: f32[4] = max %e {axes=[0]}")


def test_constant_outside_its_dtype():
    graph = small_graph()
    append(graph, "constant", (), {"value": 2**40, "dtype": DType.int32}, TensorType(DType.int32, ()))
    expect_failure(
        graph,
        "op 'constant': 1099511627776 is not a value of i32",
        "%4: i32[] = constant {value=1099511627776, dtype=i32}",
    )


def test_result_with_a_symbol_no_argument_binds():
    graph = small_graph()
    append(graph, "broadcast_to", (graph.argument("w"),), {"shape": ("N", 4)}, TensorType(f32, ("N", 4)))
    expect_failure(
        graph, "symbol N of f32[N,4] is not a dimension of any argument", "%4: f32[N,4] = broadcast_to %w {shape=[N,4]}"
    )


def test_context_is_bounded_in_a_long_graph():
    graph = parse(next(p for p in GOLDEN if p.stem == "mlp_train").read_text())
    node = graph.nodes[60]
    node.output.type = node.output.type.with_dtype(DType.float64)
    with pytest.raises(IRError) as info:
        verify(graph)
    lines = str(info.value).splitlines()
    assert len(lines) == 1 + 2 * CONTEXT_LINES + 1
    assert lines[1 + CONTEXT_LINES].startswith(">>   %60: f64[")
