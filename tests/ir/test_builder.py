"""The Builder: numbers as typed constants, arity and attribute checks, op lookup."""

from __future__ import annotations

import numpy as np
import pytest

from ember.ir import OPS, Builder, DType, Graph, IRError, OpDef, ShapeError, TensorType, Value, get_op, interpret


@pytest.fixture
def graph() -> Graph:
    graph = Graph("g")
    graph.add_argument("x", TensorType(DType.float32, ("B", 4)))
    graph.add_argument("n", TensorType(DType.int64, (3,)))
    graph.add_argument("c", TensorType(DType.bool, (3,)))
    graph.add_argument("d", TensorType(DType.float64, (3,)))
    return graph


@pytest.fixture
def b(graph: Graph) -> Builder:
    return Builder(graph)


def arg(graph: Graph, name: str) -> Value:
    return graph.argument(name)


# -- numbers become constants ------------------------------------------------


@pytest.mark.parametrize(
    ("op", "tensor", "number", "dtype"),
    [("mul", "x", 0.5, "f32"), ("add", "n", 2, "i64"), ("sub", "d", 3, "f64"), ("maximum", "x", -1, "f32")],
)
def test_numbers_become_constants_of_the_tensor_dtype(graph, b, op, tensor, number, dtype) -> None:
    result = b.emit(op, arg(graph, tensor), number)
    constant, node = graph.nodes
    assert constant.op is OPS["constant"]
    assert constant.attrs == {"value": number, "dtype": DType.parse(dtype)}
    assert node.inputs == (arg(graph, tensor), constant.output)
    assert result.type == arg(graph, tensor).type


def test_number_on_the_left_keeps_operand_order(graph, b) -> None:
    graph.outputs["out"] = b.sub(1.0, arg(graph, "d"))
    assert graph.nodes[-1].inputs[0] is graph.nodes[0].output
    args = {"x": np.zeros((2, 4), np.float32), "n": np.zeros(3, np.int64), "c": np.zeros(3, bool)}
    out = interpret(graph, {**args, "d": np.array([0.25, 2.0, -1.0])}).outputs["out"]
    np.testing.assert_array_equal(out, [0.75, -1.0, 2.0])


def test_constants_take_the_dtype_of_the_non_bool_operand(graph, b) -> None:
    result = b.select(arg(graph, "c"), arg(graph, "d"), 0.0)
    assert graph.nodes[0].attrs["dtype"] is DType.float64
    assert result.type == TensorType(DType.float64, (3,))


def test_constants_are_bool_when_every_tensor_is_bool(graph, b) -> None:
    b.logical_and(arg(graph, "c"), True)
    assert graph.nodes[0].attrs == {"value": True, "dtype": DType.bool}


def test_numbers_alone_have_no_dtype(b) -> None:
    with pytest.raises(IRError, match="'add': cannot tell the dtype"):
        b.add(1.0, 2.0)


@pytest.mark.parametrize("operand", ["1", None, [1.0]])
def test_operands_must_be_values_or_numbers(graph, b, operand) -> None:
    with pytest.raises(IRError, match=r"'mul': operand .* is neither a Value nor a number"):
        b.mul(arg(graph, "x"), operand)


def test_const(graph, b) -> None:
    value = b.const(3, "i32")
    assert value.type == TensorType(DType.int32, ())
    assert graph.nodes[0].attrs == {"value": 3, "dtype": DType.int32}


# -- arity and attributes ------------------------------------------------------


@pytest.mark.parametrize(("op", "count"), [("add", 1), ("relu", 2), ("select", 2), ("constant", 1)])
def test_wrong_arity(graph, b, op: str, count: int) -> None:
    arity = OPS[op].arity
    with pytest.raises(IRError, match=f"op '{op}' takes {arity} inputs, got {count}"):
        b.emit(op, *[arg(graph, "d")] * count)


@pytest.mark.parametrize(
    ("op", "attrs", "message"),
    [
        ("relu", {"alpha": 0.1}, "op 'relu' has no attribute alpha"),
        ("sum", {"axes": [0], "keep_dims": True}, "op 'sum' has no attribute keep_dims"),
        ("sum", {}, "op 'sum' needs attribute axes"),
        ("cast", {}, "op 'cast' needs attribute dtype"),
        ("reshape", {}, "op 'reshape' needs attribute shape"),
    ],
)
def test_unknown_and_missing_attributes(graph, b, op: str, attrs: dict, message: str) -> None:
    with pytest.raises(IRError, match=message):
        b.emit(op, arg(graph, "d"), **attrs)


@pytest.mark.parametrize(
    ("op", "attrs", "kind"),
    [
        ("sum", {"axes": 0}, "a list of integers"),
        ("sum", {"axes": "0"}, "a list of integers"),
        ("sum", {"axes": [0.0]}, "a list of integers"),
        ("sum", {"axes": [0], "keepdims": 1}, "true or false"),
        ("leaky_relu", {"alpha": "big"}, "a number"),
        ("leaky_relu", {"alpha": True}, "a number"),
        ("softmax", {"axis": 1.5}, "an integer"),
        ("cast", {"dtype": "f16"}, "an element type"),
        ("cast", {"dtype": None}, "an element type"),
        ("reshape", {"shape": [-1]}, "a list of dimensions"),
        ("reshape", {"shape": ["1B"]}, "a list of dimensions"),
        ("transpose", {"perm": [True]}, "a list of integers"),
        ("one_hot", {"num_classes": 2.5, "dtype": "f32"}, "an integer"),
        ("matmul", {"transpose_a": "yes"}, "true or false"),
    ],
)
def test_attribute_of_the_wrong_kind(graph, b, op: str, attrs: dict, kind: str) -> None:
    operands = [arg(graph, "n") if op == "one_hot" else arg(graph, "d")] * OPS[op].arity
    with pytest.raises(IRError, match=f"op '{op}': attribute .* must be {kind}"):
        b.emit(op, *operands, **attrs)


def test_constant_value_must_be_a_number(b) -> None:
    with pytest.raises(IRError, match="op 'constant': attribute value must be a number or boolean"):
        b.constant(value="1", dtype="f32")


def test_attributes_are_normalized_and_defaults_filled(graph, b) -> None:
    x = arg(graph, "x")
    b.sum(x, axes=(np.int64(1),))
    b.leaky_relu(x, alpha=1)
    b.reshape(x, shape=["B", np.int32(2), 2])
    b.cast(x, dtype=np.float64)
    sum_attrs, leaky_attrs, reshape_attrs, cast_attrs = (n.attrs for n in graph.nodes)
    assert sum_attrs == {"axes": (1,), "keepdims": False}
    assert type(sum_attrs["axes"][0]) is int
    assert leaky_attrs == {"alpha": 1.0}
    assert type(leaky_attrs["alpha"]) is float
    assert reshape_attrs == {"shape": ("B", 2, 2)}
    assert cast_attrs == {"dtype": DType.float64}


# -- op lookup -----------------------------------------------------------------


def test_unknown_op_suggests_close_names(graph, b) -> None:
    with pytest.raises(IRError, match=r"unknown op 'relux' \(did you mean relu"):
        b.emit("relux", arg(graph, "d"))
    with pytest.raises(IRError, match="did you mean softmax"):
        get_op("sofmax")


def test_unknown_op_without_close_names() -> None:
    with pytest.raises(IRError, match="unknown op 'xyzzy'") as info:
        get_op("xyzzy")
    assert "did you mean" not in str(info.value)


def test_builder_attribute_that_is_no_op(b) -> None:
    with pytest.raises(AttributeError, match="no attribute or op named 'sofmax'"):
        b.sofmax  # noqa: B018


# -- nodes and type-rule errors ----------------------------------------------


def test_emit_appends_a_typed_node(graph, b) -> None:
    x = arg(graph, "x")
    w = graph.add_argument("w", TensorType(DType.float32, (3, 4)), "param")
    out = b.matmul(x, w, transpose_b=True)
    (node,) = graph.nodes
    assert node.op is get_op("matmul")
    assert node.inputs == (x, w)
    assert node.output is out
    assert out.node is node
    assert node.attrs == {"transpose_a": False, "transpose_b": True}
    assert out.type == TensorType(DType.float32, ("B", 3))


def test_type_rule_errors_are_prefixed_with_the_op_once(graph, b) -> None:
    y = b.cast(arg(graph, "d"), dtype="f32")
    with pytest.raises(ShapeError, match=r"^op 'add': shapes \['B', 4\] and \[3\] cannot be broadcast"):
        b.add(arg(graph, "x"), y)
    with pytest.raises(ShapeError) as info:
        b.reshape(arg(graph, "d"), shape=[2])
    assert str(info.value).count("'reshape'") == 1


def test_a_crashing_type_rule_becomes_an_ir_error(graph, b) -> None:
    broken = OpDef("broken", 1, lambda types, attrs: types[5], lambda x: x, None, "elementwise")
    with pytest.raises(IRError, match=r"op 'broken': .*index out of range"):
        b.emit(broken, arg(graph, "d"))
