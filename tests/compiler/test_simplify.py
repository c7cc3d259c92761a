"""Simplification: each algebraic rule, CSE, constant folding and DCE on small
graphs, and a property over random MLP training graphs: simplifying changes
no result and adds no node."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ember import nn, optim
from ember.compiler import algebraic, autodiff, cse, dce, fold_constants, lower_optimizer, simplify
from ember.ir import Builder, DType, Graph, TensorType, interpret, print_graph, verify
from ember.trace import trace_loss

F64 = DType.float64


def graph_of(build, shape=(2, 3), **extra_inputs):
    """A graph with f64 input `x` of `shape` (plus `extra_inputs`: name -> shape)
    whose output `out` is `build(builder, x, *extras)`."""
    g = Graph("t")
    x = g.add_argument("x", TensorType(F64, shape))
    extras = [g.add_argument(name, TensorType(F64, s)) for name, s in extra_inputs.items()]
    g.outputs["out"] = build(Builder(g), x, *extras)
    return verify(g)


def ops(graph):
    return [n.op.name for n in graph.nodes]


def random_arguments(graph, rng):
    """Values in [0.5, 2) for every argument of `graph`, with B = 3."""
    return {
        a.name: rng.uniform(0.5, 2.0, size=[3 if d == "B" else d for d in a.type.shape]).astype(a.type.dtype.numpy)
        for a in graph.arguments
    }


def assert_same_results(before, after, arguments, tolerance=0.0):
    """Both graphs give the same outputs and updates, to `tolerance` (relative and absolute)."""
    want, got = interpret(before, arguments), interpret(after, arguments)
    assert list(got.outputs) == list(want.outputs)
    assert list(got.updates) == list(want.updates)
    for kind in ("outputs", "updates"):
        for name, value in getattr(want, kind).items():
            np.testing.assert_allclose(getattr(got, kind)[name], value, rtol=tolerance, atol=tolerance, err_msg=name)


# -- algebraic identities -----------------------------------------------------
RULES = [
    pytest.param(lambda b, x: b.mul(x, 1.0), [], id="x*1"),
    pytest.param(lambda b, x: b.mul(1.0, x), [], id="1*x"),
    pytest.param(lambda b, x: b.add(x, 0.0), [], id="x+0"),
    pytest.param(lambda b, x: b.add(0.0, x), [], id="0+x"),
    pytest.param(lambda b, x: b.sub(x, 0.0), [], id="x-0"),
    pytest.param(lambda b, x: b.div(x, 1.0), [], id="x/1"),
    pytest.param(lambda b, x: b.pow(x, 1.0), [], id="x**1"),
    pytest.param(lambda b, x: b.pow(x, 2.0), ["mul"], id="x**2"),
    pytest.param(lambda b, x: b.mul(x, -1.0), ["neg"], id="x*-1"),
    pytest.param(lambda b, x: b.neg(b.neg(x)), [], id="--x"),
    pytest.param(lambda b, x: b.transpose(x, perm=[0, 1]), [], id="identity-transpose"),
    pytest.param(lambda b, x: b.reshape(x, shape=[2, 3]), [], id="identity-reshape"),
    pytest.param(lambda b, x: b.broadcast_to(x, shape=[2, 3]), [], id="identity-broadcast"),
    pytest.param(lambda b, x: b.cast(x, dtype="f64"), [], id="identity-cast"),
    pytest.param(lambda b, x: b.reshape(b.reshape(x, shape=[3, 2]), shape=[6]), ["reshape"], id="reshape-reshape"),
    pytest.param(lambda b, x: b.select(b.gt(x, 1.0), x, x), [], id="select-same"),
]


@pytest.mark.parametrize(("build", "expected_ops"), RULES)
def test_algebraic_rule_fires(build, expected_ops, rng):
    g = graph_of(build)
    out = verify(algebraic(g))
    assert ops(out) == expected_ops
    if not expected_ops:
        assert out.outputs["out"] is out.argument("x")
    assert_same_results(g, out, random_arguments(g, rng))


def test_square_becomes_x_times_x():
    out = algebraic(graph_of(lambda b, x: b.pow(x, 2.0)))
    assert out.outputs["out"].node.inputs == (out.argument("x"), out.argument("x"))


def test_reshape_of_reshape_reads_the_original():
    out = algebraic(graph_of(lambda b, x: b.reshape(b.reshape(x, shape=[3, 2]), shape=[6])))
    (node,) = out.nodes
    assert node.inputs == (out.argument("x"),)
    assert node.attrs["shape"] == (6,)


def test_double_transpose_composes_into_one(rng):
    g = graph_of(lambda b, x: b.transpose(b.transpose(x, perm=[1, 2, 0]), perm=[0, 2, 1]), shape=(2, 3, 4))
    out = verify(algebraic(g))
    (node,) = out.nodes
    assert node.op.name == "transpose"
    assert node.inputs == (out.argument("x"),)
    assert node.attrs["perm"] == (1, 0, 2)
    assert_same_results(g, out, random_arguments(g, rng))


def test_inverse_transposes_vanish():
    g = graph_of(lambda b, x: b.transpose(b.transpose(x, perm=[2, 0, 1]), perm=[1, 2, 0]), shape=(2, 3, 4))
    assert ops(algebraic(g)) == ["transpose"]  # one round leaves an identity transpose...
    out = simplify(g)
    assert ops(out) == []  # ...the next removes it
    assert out.outputs["out"] is out.argument("x")


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda b, x: b.mul(x, 0.0), id="x*0"),  # 0 * inf is nan, so not 0
        pytest.param(lambda b, x: b.sub(x, x), id="x-x"),
        pytest.param(lambda b, x: b.add(x, 1.0), id="x+1"),
        pytest.param(lambda b, x: b.sub(0.0, x), id="0-x"),
        pytest.param(lambda b, x: b.div(1.0, x), id="1/x"),
        pytest.param(lambda b, x: b.pow(x, 3.0), id="x**3"),
        pytest.param(lambda b, x: b.pow(1.0, x), id="1**x"),
        pytest.param(lambda b, x: b.mul(x, -2.0), id="x*-2"),
        pytest.param(lambda b, x: b.transpose(x, perm=[1, 0]), id="transpose"),
        pytest.param(lambda b, x: b.reshape(x, shape=[3, 2]), id="reshape"),
        pytest.param(lambda b, x: b.select(b.gt(x, 1.0), x, b.neg(x)), id="select-different"),
    ],
)
def test_algebraic_leaves_other_expressions_alone(build):
    g = graph_of(build)
    assert print_graph(algebraic(g)) == print_graph(g)


def test_select_of_same_value_kept_when_the_condition_broadcasts():
    g = graph_of(lambda b, x, z: b.select(b.gt(z, 0.0), x, x), shape=(3,), z=(2, 3))
    assert print_graph(algebraic(g)) == print_graph(g)


# -- common subexpressions ----------------------------------------------------
def two_outputs(first, second):
    """A graph with f64[3] inputs `x`, `y` whose outputs `a`, `b` are built by `first` and `second`."""
    g = Graph("t")
    x, y = (g.add_argument(n, TensorType(F64, (3,))) for n in ("x", "y"))
    b = Builder(g)
    g.outputs["a"] = first(b, x, y)
    g.outputs["b"] = second(b, x, y)
    return g


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param(lambda b, x, y: b.exp(x), lambda b, x, y: b.exp(x), id="exp"),
        pytest.param(lambda b, x, y: b.add(x, y), lambda b, x, y: b.add(y, x), id="add-commuted"),
        pytest.param(lambda b, x, y: b.mul(x, y), lambda b, x, y: b.mul(y, x), id="mul-commuted"),
        pytest.param(lambda b, x, y: b.maximum(x, y), lambda b, x, y: b.maximum(y, x), id="maximum-commuted"),
        pytest.param(lambda b, x, y: b.const(2.5, F64), lambda b, x, y: b.const(2.5, F64), id="constant"),
        pytest.param(
            lambda b, x, y: b.sum(x, axes=[0], keepdims=True),
            lambda b, x, y: b.sum(x, axes=[0], keepdims=True),
            id="same-attributes",
        ),
    ],
)
def test_cse_merges_duplicates(first, second, rng):
    g = two_outputs(first, second)
    out = verify(cse(g))
    assert len(out.nodes) == 1
    assert out.outputs["a"] is out.outputs["b"]
    assert_same_results(g, out, random_arguments(g, rng))


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param(lambda b, x, y: b.sub(x, y), lambda b, x, y: b.sub(y, x), id="sub-swapped"),
        pytest.param(lambda b, x, y: b.div(x, y), lambda b, x, y: b.div(y, x), id="div-swapped"),
        pytest.param(lambda b, x, y: b.pow(x, y), lambda b, x, y: b.pow(y, x), id="pow-swapped"),
        pytest.param(lambda b, x, y: b.exp(x), lambda b, x, y: b.exp(y), id="other-input"),
        pytest.param(lambda b, x, y: b.exp(x), lambda b, x, y: b.log(x), id="other-op"),
        pytest.param(
            lambda b, x, y: b.sum(x, axes=[0]),
            lambda b, x, y: b.sum(x, axes=[0], keepdims=True),
            id="other-attributes",
        ),
        pytest.param(lambda b, x, y: b.const(2.0, F64), lambda b, x, y: b.const(2.0, "f32"), id="constant-dtype"),
        pytest.param(lambda b, x, y: b.const(2.0, F64), lambda b, x, y: b.const(3.0, F64), id="constant-value"),
    ],
)
def test_cse_keeps_distinct_nodes(first, second):
    g = two_outputs(first, second)
    out = cse(g)
    assert len(out.nodes) == 2
    assert out.outputs["a"] is not out.outputs["b"]


def test_cse_merges_whole_chains_and_remaps_updates(rng):
    g = Graph("t")
    x = g.add_argument("x", TensorType(F64, ("B", 3)))
    w = g.add_argument("w", TensorType(F64, (3,)), "param")
    b = Builder(g)
    left = b.tanh(b.mul(b.add(x, w), 2.0))
    right = b.tanh(b.mul(b.add(w, x), 2.0))
    g.outputs["out"] = b.sub(left, right)
    g.updates["w"] = b.sum(b.tanh(b.mul(b.add(x, w), 2.0)), axes=[0])
    out = verify(cse(g))
    assert ops(out) == ["add", "constant", "mul", "tanh", "sub", "sum"]
    assert out.updates["w"].node.inputs[0] is out.outputs["out"].node.inputs[0]
    assert_same_results(g, out, random_arguments(g, rng))


# -- constant folding ---------------------------------------------------------
def folded(build):
    """The output node of `build(builder)` (no inputs) after constant folding."""
    g = Graph("t")
    g.outputs["out"] = build(Builder(g))
    out = verify(fold_constants(g))
    assert len(out.nodes) == 1
    return out.nodes[0]


@pytest.mark.parametrize(
    ("build", "value", "dtype"),
    [
        pytest.param(lambda b: b.add(b.const(2.0, F64), b.const(3.0, F64)), 5.0, F64, id="add"),
        pytest.param(
            lambda b: b.mul(b.add(b.const(2.0, F64), b.const(3.0, F64)), b.const(4.0, F64)), 20.0, F64, id="nested"
        ),
        pytest.param(lambda b: b.add(b.sqrt(b.const(16.0, F64)), b.const(1.0, F64)), 5.0, F64, id="sqrt"),
        pytest.param(lambda b: b.sub(b.const(1.0, "f32"), b.const(0.9, "f32")), 0.100000024, DType.float32, id="f32"),
        pytest.param(lambda b: b.add(b.const(2, "i64"), b.const(3, "i64")), 5, DType.int64, id="int"),
        pytest.param(lambda b: b.gt(b.const(2.0, F64), b.const(3.0, F64)), False, DType.bool, id="comparison"),
        pytest.param(lambda b: b.cast(b.const(2.7, F64), dtype="i32"), 2, DType.int32, id="cast"),
        pytest.param(lambda b: b.pow(b.const(0.9, F64), b.const(3.0, F64)), 0.9**3, F64, id="pow"),
    ],
)
def test_fold_scalar_constant_expressions(build, value, dtype):
    node = folded(build)
    assert node.op.name == "constant"
    assert node.attrs["dtype"] is dtype
    assert node.attrs["value"] == pytest.approx(value, rel=1e-7)
    assert type(node.attrs["value"]) is type(value)


@pytest.mark.parametrize(
    ("axes", "dtype", "value"),
    [([1, 2], F64, 12.0), ([1], DType.int64, 3), ([], F64, 1.0)],
)
def test_fold_size_of_static_axes(axes, dtype, value):
    g = graph_of(lambda b, x: b.size(x, axes=axes, dtype=dtype), shape=("B", 3, 4))
    out = verify(fold_constants(g))
    (node,) = out.nodes
    assert node.op.name == "constant"
    assert node.attrs["value"] == value
    assert node.attrs["dtype"] is dtype


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda b, x: b.size(x, axes=[0], dtype=F64), id="size-of-batch-axis"),
        pytest.param(lambda b, x: b.size(x, axes=[0, 2], dtype=F64), id="size-with-batch-axis"),
        pytest.param(lambda b, x: b.exp(x), id="input"),
        pytest.param(lambda b, x: b.mul(x, 2.0), id="input-and-constant"),
        pytest.param(lambda b, x: b.add(x, b.broadcast_to(b.const(1.0, F64), shape=[4])), id="tensor-constant"),
        pytest.param(lambda b, x: b.allreduce_sum(b.const(3.0, F64)), id="collective-of-constant"),
    ],
)
def test_fold_keeps_what_is_not_a_scalar_constant(build):
    g = graph_of(build, shape=("B", 3, 4))
    assert print_graph(fold_constants(g)) == print_graph(g)


# -- dead code ----------------------------------------------------------------
def test_dce_removes_unused_nodes_and_keeps_outputs_and_updates():
    g = Graph("t")
    x = g.add_argument("x", TensorType(F64, (3,)))
    w = g.add_argument("w", TensorType(F64, (3,)), "param")
    s = g.add_argument("s", TensorType(F64, ()), "state")
    b = Builder(g)
    b.exp(x)  # dead
    kept = b.mul(x, w)
    b.log(kept)  # dead, though it reads a live value
    g.outputs["out"] = kept
    g.updates["w"] = b.sub(w, b.tanh(kept))
    g.updates["s"] = b.add(s, 1.0)
    out = dce(g)
    assert out is g  # in place
    assert ops(out) == ["mul", "tanh", "sub", "constant", "add"]
    assert [a.name for a in out.arguments] == ["x", "w", "s"]  # arguments are never removed
    verify(out)


def test_dce_of_graph_without_outputs_removes_everything():
    g = graph_of(lambda b, x: b.exp(x))
    g.outputs = {}
    assert dce(g).nodes == []


# -- property: simplify changes nothing observable -----------------------------
ACTIVATIONS = [nn.ReLU, nn.Sigmoid, nn.Tanh, nn.LeakyReLU, nn.GELU, nn.Softmax, nn.SiLU, nn.Mish, nn.ELU, nn.Softplus]
ACTIVATIONS += [nn.Hardswish, nn.Hardsigmoid, nn.ReLU6, nn.Hardtanh, nn.Softsign, nn.PReLU]
LOSSES = [
    nn.MSELoss,
    nn.CrossEntropyLoss,
    nn.BCEWithLogitsLoss,
    lambda: nn.CrossEntropyLoss(reduction="sum", label_smoothing=0.2),
]
OPTIMIZERS = [
    optim.SGD(lr=0.1),
    optim.SGD(lr=0.1, momentum=0.9, dampening=0.5, weight_decay=0.1),
    optim.SGD(lr=0.1, momentum=0.9, nesterov=True),
    optim.Adam(weight_decay=0.1, amsgrad=True),
    optim.AdamW(),
]


@st.composite
def training_graphs(draw):
    """A random MLP's training graph (forward, backward, update), unsimplified."""
    widths = draw(st.lists(st.integers(1, 5), min_size=2, max_size=4))
    layers = [nn.Linear(widths[0], widths[1], bias=draw(st.booleans()))]
    for n_in, n_out in itertools.pairwise(widths[1:]):
        layers += [draw(st.sampled_from(ACTIVATIONS))(), nn.Linear(n_in, n_out, bias=draw(st.booleans()))]
    loss = draw(st.sampled_from(LOSSES))()
    graph = trace_loss(nn.Sequential(*layers), loss, (widths[0],), F64)
    return lower_optimizer(autodiff(graph), draw(st.sampled_from(OPTIMIZERS))), loss


def training_arguments(graph, loss, rng):
    """Random arguments of a training graph: real inputs, valid labels, any step count."""
    arguments = random_arguments(graph, rng)
    arguments["x"] = rng.normal(size=arguments["x"].shape)
    if isinstance(loss, nn.CrossEntropyLoss):
        classes = [p for p in graph.params if p.name.endswith(".weight")][-1].type.shape[0]
        arguments["y"] = rng.integers(0, classes, size=arguments["x"].shape[0])
    arguments["step"] = np.asarray(float(rng.integers(0, 4)))
    return arguments


@settings(max_examples=30, deadline=None)
@given(case=training_graphs(), seed=st.integers(0, 2**32 - 1))
def test_simplify_preserves_results_of_training_graphs(case, seed):
    graph, loss = case
    simple = verify(simplify(graph))
    assert len(simple.nodes) <= len(graph.nodes)
    assert print_graph(simplify(simple)) == print_graph(simple)  # a fixed point
    assert_same_results(graph, simple, training_arguments(graph, loss, np.random.default_rng(seed)), tolerance=1e-12)
