"""Every op's attribute and type rules against random operand types and
random attribute values, wrong kinds included: the builder and the verifier
either reject the node with an ember error, or the node is one the reference
interpreter runs, giving the type the rule promised and printing to text
that parses back."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from inputs import draw

from ember.ir import OPS, Builder, DType, EmberError, Graph, TensorType, interpret, parse, print_graph, verify
from ember.ir.types import concrete_shape

SIZES = {"B": 3, "N": 2}
"""The sizes the symbols of the drawn shapes take when the graph runs."""

MAX_RUN_ELEMENTS = 10_000
"""Valid nodes with larger results (a one-hot encoding into 2**31 classes)
are checked but not run."""

DIMS = (0, 1, 2, 3, "B", "N")
EDGE_INTS = (2**31 - 1, 2**31, -(2**31) - 1, 2**63 - 1, 2**63, 2**70, -(2**70))
"""Integers at the edges of i32 and i64, and beyond them."""

dims = st.sampled_from(DIMS)
any_types = st.builds(TensorType, st.sampled_from(list(DType)), st.lists(dims, max_size=3).map(tuple))
scalars = st.one_of(
    st.booleans(),
    st.integers(-4, 4),
    st.sampled_from(EDGE_INTS),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["f32", "i32", "bool", "B", "x", "float16", ""]),
)
junk = st.one_of(
    scalars,
    st.lists(scalars, max_size=3),
    st.lists(st.lists(st.integers(-4, 4), max_size=2), max_size=2),
)
"""Values of any kind, or of none."""


def rarely(draw_from: st.DrawFn, n: int) -> bool:
    """True once in `n` draws. Hypothesis favours (and shrinks to) small
    integers, so the common branch is the one at 0."""
    return draw_from(st.integers(0, n - 1)) == n - 1


DOMAIN_DTYPES = {
    "bool": [DType.bool],
    "label": [DType.int32, DType.int64],
    "seed": [DType.int64],
    "any": list(DType),
}
"""The dtypes an operand from each domain usually has (floats otherwise)."""


def operand_type(draw_from: st.DrawFn, domain: str, shape: tuple, real: DType) -> TensorType:
    """Usually a type that suits `domain` (`real` for numbers) with `shape`,
    a shape that broadcasts with it or its axes permuted; now and then any
    type at all."""
    if rarely(draw_from, 6):
        return draw_from(any_types)
    dtype = draw_from(st.sampled_from(DOMAIN_DTYPES[domain])) if domain in DOMAIN_DTYPES else real
    if draw_from(st.booleans()):
        return TensorType(dtype, tuple(draw_from(st.permutations(shape))))
    keep = draw_from(st.integers(0, len(shape)))
    ones = draw_from(st.lists(st.booleans(), min_size=len(shape), max_size=len(shape)))
    return TensorType(dtype, tuple(1 if one else d for d, one in zip(shape[keep:], ones[keep:], strict=True)))


def attribute(draw_from: st.DrawFn, kind: str, shape: tuple) -> object:
    """A value of attribute `kind` for an operand of `shape`: often valid,
    often just off (an axis out of range or given twice, a shape with more or
    fewer elements, a number the dtype cannot hold); now and then junk."""
    rank = len(shape)
    if rarely(draw_from, 8):
        return draw_from(junk)
    off = rarely(draw_from, 4)
    if kind == "ints":  # axes or a permutation, some counted from the end
        perm = draw_from(st.permutations(range(rank)))
        axes = [a - rank if draw_from(st.booleans()) else a for a in perm[: draw_from(st.integers(0, rank))]]
        if off:  # one more axis: out of range, or one already there
            axes.insert(draw_from(st.integers(0, len(axes))), draw_from(st.integers(-rank - 1, rank)))
        return tuple(axes)
    if kind == "shape":  # reshape to permuted dims, or broadcast to more leading dims
        if off:
            return tuple(draw_from(st.lists(st.one_of(dims, st.just(2**30)), max_size=4)))
        permuted = st.permutations(shape).map(tuple)
        return draw_from(st.one_of(permuted, st.lists(dims, max_size=2).map(lambda lead: (*lead, *shape))))
    if kind == "int":  # an axis or a number of classes
        return draw_from(st.sampled_from(EDGE_INTS) if off else st.integers(-rank - 1, rank + 3))
    if kind == "scalar":  # a constant's value
        return draw_from(st.sampled_from([*EDGE_INTS, math.inf, -math.inf, math.nan]) if off else scalars)
    if kind == "dtype":
        return draw_from(st.one_of(st.sampled_from(list(DType)), st.sampled_from([str(d) for d in DType])))
    return draw_from({"float": st.floats(), "bool": st.booleans()}[kind])


@st.composite
def nodes(draw_from: st.DrawFn, op_name: str) -> tuple[str, list[TensorType], dict]:
    """Operand types for `op_name` and attributes: each of the op's
    attributes usually given, sometimes left out, now and then an unknown one."""
    op = OPS[op_name]
    shape = draw_from(st.lists(dims, max_size=3).map(tuple))
    real = draw_from(st.sampled_from([DType.float32, DType.float64, DType.int32]))
    operands = [operand_type(draw_from, domain, shape, real) for domain in op.domains]
    first = operands[0].shape if operands else shape
    attrs = {a.name: attribute(draw_from, a.kind, first) for a in op.attrs if not rarely(draw_from, 10)}
    if rarely(draw_from, 20):
        attrs["bogus"] = 1
    return op.name, operands, attrs


def operand(domain: str, type: TensorType, rng: np.random.Generator) -> np.ndarray:
    """A random array of `type` (symbols bound to SIZES) from `domain`."""
    return draw(domain, concrete_shape(type.shape, SIZES), rng, type.dtype)


@pytest.mark.parametrize("op", sorted(OPS))
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_a_node_is_rejected_or_runs(op, data):
    op, operand_types, attrs = data.draw(nodes(op))
    graph = Graph("g")
    args = [graph.add_argument(f"x{i}", t) for i, t in enumerate(operand_types)]
    try:
        graph.outputs["out"] = Builder(graph).emit(op, *args, **attrs)
    except EmberError:
        return
    verify(graph)
    assert print_graph(parse(print_graph(graph))) == print_graph(graph)
    out = graph.outputs["out"].type
    if math.prod(concrete_shape(out.shape, SIZES)) > MAX_RUN_ELEMENTS:
        return
    rng = np.random.default_rng(0)
    arrays = {a.name: operand(d, a.type, rng) for a, d in zip(args, OPS[op].domains, strict=True)}
    result = interpret(graph, arrays).outputs["out"]
    assert result.dtype == out.dtype.numpy
    assert result.shape == concrete_shape(out.shape, SIZES)


@pytest.mark.parametrize("op", sorted(OPS))
@settings(max_examples=10, deadline=None)
@given(data=st.data(), claimed=st.one_of(any_types, st.none()))
def test_the_verifier_rejects_a_node_with_an_ember_error(op, data, claimed):
    """Nodes appended without the builder's checks, with the result type the
    rule gives or another: the verifier accepts exactly the valid ones."""
    op, operand_types, attrs = data.draw(nodes(op))
    graph = Graph("g")
    args = tuple(graph.add_argument(f"x{i}", t) for i, t in enumerate(operand_types))
    try:
        built = Builder(graph).emit(op, *args, **attrs)
        canonical, expected = built.node.attrs, built.type
    except EmberError:
        canonical, expected = attrs, None
    graph.nodes.clear()
    graph.outputs["out"] = graph.append(OPS[op], args, canonical, claimed or expected or TensorType(DType.bool, ()))
    try:
        verify(graph)
    except EmberError:
        return
    assert graph.outputs["out"].type == expected
    bound = {d for t in operand_types for d in t.shape if isinstance(d, str)}
    assert {d for d in expected.shape if isinstance(d, str)} <= bound
