"""Each op's reference semantics (run through the interpreter on a one-node
graph) against an independent NumPy or `math` expectation, edge values
included, and each op's type rule rejecting bad inputs with the right error."""

from __future__ import annotations

import math
import operator
import re
import warnings

import numpy as np
import pytest
from inputs import NUM_CLASSES, draw

from ember.ir import OPS, Builder, DType, DTypeError, Graph, IRError, ShapeError, TensorType, interpret
from ember.ir.collectives import reducing_over

from .conftest import run_op

TINY = 5e-324
INF, NAN = math.inf, math.nan


def scalarwise(f, otype=float):
    """Apply the Python scalar function `f` element by element (with broadcasting)."""
    return np.vectorize(f, otypes=[otype])


def _sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v)) if v >= 0 else math.exp(v) / (1 + math.exp(v))


def _gelu_tanh(v: float) -> float:
    return 0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v**3)))


def _gelu(v: float) -> float:
    return 0.5 * v * (1 + math.erf(v / math.sqrt(2)))


def _softplus(v: float) -> float:
    return math.log1p(math.exp(v))  # v is at most 2 here


def _ramp(v: float) -> float:
    """min(max(v + 3, 0), 6) / 6."""
    return min(max(v + 3, 0), 6) / 6


UNARY = {
    "neg": operator.neg,
    "abs": abs,
    "sign": lambda v: (v > 0) - (v < 0),
    "exp": math.exp,
    "log": math.log,
    "sqrt": math.sqrt,
    "rsqrt": lambda v: 1 / math.sqrt(v),
    "tanh": math.tanh,
    "sigmoid": _sigmoid,
    "relu": lambda v: v if v > 0 else 0.0,
    "leaky_relu": lambda v: v if v > 0 else 0.01 * v,
    "gelu": _gelu,
    "gelu_tanh": _gelu_tanh,
    "erf": math.erf,
    "cos": math.cos,
    "sin": math.sin,
    "log1p": math.log1p,
    "expm1": math.expm1,
    "silu": lambda v: v * _sigmoid(v),
    "elu": lambda v: v if v > 0 else math.expm1(v),
    "softplus": _softplus,
    "mish": lambda v: v * math.tanh(_softplus(v)),
    "hardswish": lambda v: v * _ramp(v),
    "hardsigmoid": _ramp,
}
BINARY = {
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "div": operator.truediv,
    "maximum": max,
    "minimum": min,
    "pow": math.pow,
}
COMPARISONS = {
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
}
INT_OPS = {"neg", "abs", "sign", "add", "sub", "mul", "maximum", "minimum"}
"""The elementwise ops that also take integers; the others are float-only."""

RTOL = {DType.float64: 1e-12, DType.float32: 1e-5, DType.int64: 0, DType.int32: 0}


def dtypes_for(op: str) -> list[str]:
    return ["f64", "f32", "i64", "i32"] if op in INT_OPS else ["f64", "f32"]


def check_close(result: np.ndarray, expected: np.ndarray, dtype: DType) -> None:
    """`result` has `dtype` and matches `expected` to that dtype's precision."""
    assert result.dtype == dtype.numpy
    np.testing.assert_allclose(result, expected, rtol=RTOL[dtype], atol=0)


# -- elementwise semantics on random inputs ---------------------------------


@pytest.mark.parametrize(("op", "dtype"), [(op, d) for op in UNARY for d in dtypes_for(op)])
def test_unary_semantics(op: str, dtype: str, rng: np.random.Generator) -> None:
    x = draw(OPS[op].domains[0], (3, 5), rng, dtype)
    expected = scalarwise(UNARY[op])(x.astype(np.float64))
    check_close(run_op(op, x), expected, DType.parse(dtype))


@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((3, 4), (4,)), ((3, 1), (1, 4)), ((), (2, 3))])
@pytest.mark.parametrize(("op", "dtype"), [(op, d) for op in BINARY for d in dtypes_for(op)])
def test_binary_semantics(op: str, dtype: str, shapes, rng: np.random.Generator) -> None:
    x, y = (draw(domain, s, rng, dtype) for domain, s in zip(OPS[op].domains, shapes, strict=True))
    expected = scalarwise(BINARY[op])(x.astype(np.float64), y.astype(np.float64))
    check_close(run_op(op, x, y), expected, DType.parse(dtype))


def test_leaky_relu_alpha() -> None:
    np.testing.assert_array_equal(run_op("leaky_relu", np.array([-2.0, 0.0, 3.0]), alpha=0.25), [-0.5, 0.0, 3.0])


def test_gelu_tanh_is_the_tanh_approximation(rng: np.random.Generator) -> None:
    x = rng.normal(scale=3.0, size=50)
    expected = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    np.testing.assert_allclose(run_op("gelu_tanh", x), expected, rtol=1e-14, atol=1e-300)


def test_gelu_is_exact(rng: np.random.Generator) -> None:
    """x times the standard normal CDF (as torch.nn.GELU()), not the tanh form."""
    x = rng.normal(scale=3.0, size=50)
    expected = [v * 0.5 * math.erfc(-v / math.sqrt(2)) for v in x]
    np.testing.assert_allclose(run_op("gelu", x), expected, rtol=1e-12, atol=1e-15)
    assert np.abs(run_op("gelu", x) - run_op("gelu_tanh", x)).max() > 1e-5


def test_elu_alpha_and_softplus_beta_threshold() -> None:
    x = np.array([-2.0, 0.0, 3.0])
    np.testing.assert_allclose(run_op("elu", x, alpha=0.5), [0.5 * math.expm1(-2.0), 0.0, 3.0], rtol=1e-15)
    # beta x > threshold gives x itself (PyTorch); 1.5 * 3 = 4.5 > 4, 1.5 * 2 = 3 is not
    x = np.array([-1.0, 2.0, 3.0])
    expected = [math.log1p(math.exp(-1.5)) / 1.5, math.log1p(math.exp(3.0)) / 1.5, 3.0]
    np.testing.assert_allclose(run_op("softplus", x, beta=1.5, threshold=4.0), expected, rtol=1e-15)


def test_hard_activations_at_their_kinks() -> None:
    x = np.array([-4.0, -3.0, -1.5, 0.0, 1.5, 3.0, 4.0])
    np.testing.assert_array_equal(run_op("hardsigmoid", x), [0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0])
    np.testing.assert_array_equal(run_op("hardswish", x), [0.0, 0.0, -0.375, 0.0, 1.125, 3.0, 4.0])


@pytest.mark.parametrize("op", COMPARISONS)
def test_comparison_semantics(op: str, rng: np.random.Generator) -> None:
    x = rng.integers(-2, 3, (3, 4)).astype(np.float64)  # small integers, so ties occur
    y = rng.integers(-2, 3, 4).astype(np.float64)
    result = run_op(op, x, y)
    assert result.dtype == np.bool_
    np.testing.assert_array_equal(result, scalarwise(COMPARISONS[op], bool)(x, y))


def test_comparisons_with_nan_are_false_except_ne() -> None:
    x, y = np.array([NAN, 1.0, NAN]), np.array([1.0, NAN, NAN])
    for op in COMPARISONS:
        np.testing.assert_array_equal(run_op(op, x, y), [op == "ne"] * 3, err_msg=op)


def test_logical_and_semantics() -> None:
    x = np.array([[True, False], [True, True]])
    y = np.array([True, False])
    np.testing.assert_array_equal(run_op("logical_and", x, y), [[True, False], [True, False]])


def test_select_semantics(rng: np.random.Generator) -> None:
    cond = rng.random((3, 4)) < 0.5
    x, y = rng.normal(size=(3, 4)), np.float64(7.5)
    expected = [[x[i, j] if cond[i, j] else 7.5 for j in range(4)] for i in range(3)]
    np.testing.assert_array_equal(run_op("select", cond, x, y), expected)


# -- elementwise edge values --------------------------------------------------

EDGES = [
    ("exp", [0.0, -INF, INF, 1000.0, -1000.0, TINY, NAN], [1.0, 0.0, INF, INF, 0.0, 1.0, NAN]),
    ("log", [1.0, 0.0, INF, -1.0, NAN], [0.0, -INF, INF, NAN, NAN]),
    ("sqrt", [0.0, 4.0, INF, -1.0, 1e-300], [0.0, 2.0, INF, NAN, 1e-150]),
    ("rsqrt", [0.0, 4.0, INF, -1.0], [INF, 0.5, 0.0, NAN]),
    ("tanh", [0.0, 1000.0, -1000.0, INF, -INF, NAN], [0.0, 1.0, -1.0, 1.0, -1.0, NAN]),
    ("sigmoid", [0.0, 1000.0, -1000.0, INF, -INF, TINY, NAN], [0.5, 1.0, 0.0, 1.0, 0.0, 0.5, NAN]),
    ("relu", [NAN, -INF, INF, -1e300, TINY], [NAN, 0.0, INF, 0.0, TINY]),
    ("leaky_relu", [NAN, -INF, INF, -100.0], [NAN, -INF, INF, -1.0]),
    ("gelu_tanh", [0.0, 1000.0, -1000.0, 1e200, -1e200, NAN], [0.0, 1000.0, 0.0, 1e200, 0.0, NAN]),
    ("gelu", [0.0, 1000.0, -1000.0, 1e200, INF, NAN], [0.0, 1000.0, 0.0, 1e200, INF, NAN]),
    ("erf", [0.0, -0.0, INF, -INF, 10.0, -10.0, TINY, NAN], [0.0, -0.0, 1.0, -1.0, 1.0, -1.0, TINY, NAN]),
    ("cos", [0.0, -0.0, INF, NAN, 2.0**51, math.pi], [1.0, 1.0, NAN, NAN, NAN, -1.0]),
    ("sin", [0.0, -0.0, -INF, NAN, -(2.0**51), TINY], [0.0, -0.0, NAN, NAN, NAN, TINY]),
    ("log1p", [0.0, -1.0, INF, -2.0, TINY, NAN], [0.0, -INF, INF, NAN, TINY, NAN]),
    ("expm1", [0.0, INF, -INF, 1000.0, TINY, NAN], [0.0, INF, -1.0, INF, TINY, NAN]),
    ("silu", [0.0, INF, -1000.0, 1000.0, NAN], [0.0, INF, 0.0, 1000.0, NAN]),
    ("elu", [0.0, INF, -INF, -1000.0, NAN], [0.0, INF, -1.0, -1.0, NAN]),
    ("softplus", [100.0, -1000.0, INF, -INF, NAN], [100.0, 0.0, INF, 0.0, NAN]),
    ("mish", [0.0, INF, -1000.0, 1000.0, NAN], [0.0, INF, 0.0, 1000.0, NAN]),
    ("hardswish", [-3.0, 3.0, -10.0, INF, NAN], [0.0, 3.0, 0.0, INF, NAN]),
    ("hardsigmoid", [-3.0, 3.0, INF, -INF, NAN], [0.0, 1.0, 1.0, 0.0, NAN]),
    ("abs", [-INF, -0.0, NAN], [INF, 0.0, NAN]),
    ("neg", [INF, 0.0, NAN], [-INF, -0.0, NAN]),
    ("sign", [-INF, -3.0, 0.0, TINY, NAN], [-1.0, -1.0, 0.0, 1.0, NAN]),
]


def exact_in(dtype: np.dtype, *values: np.ndarray) -> np.ndarray:
    """Where every one of `values` is NaN, infinite or exactly representable in `dtype`."""
    with np.errstate(over="ignore"):
        return np.logical_and.reduce([~np.isfinite(v) | (v.astype(dtype) == v) for v in values])


@pytest.mark.parametrize("dtype", ["f64", "f32"])
@pytest.mark.parametrize(("op", "x", "expected"), EDGES, ids=[e[0] for e in EDGES])
def test_unary_edge_values(op: str, x: list[float], expected: list[float], dtype: str) -> None:
    x, expected = np.array(x), np.array(expected)
    dt = DType.parse(dtype).numpy
    keep = exact_in(dt, x, expected)  # f32 drops entries such as TINY and 1e200
    result = run_op(op, x[keep].astype(dt))
    assert result.dtype == dt
    np.testing.assert_array_equal(result, expected[keep].astype(dt))


def test_sigmoid_is_accurate_in_both_tails() -> None:
    x = np.array([-700.0, -50.0, -1.0, 1.0, 50.0])
    np.testing.assert_allclose(run_op("sigmoid", x), scalarwise(_sigmoid)(x), rtol=1e-14)
    assert 0 < run_op("sigmoid", np.array([-700.0]))[0] < 1e-300


@pytest.mark.parametrize(
    ("op", "x", "y", "expected"),
    [
        ("div", [1.0, -1.0, 0.0, 1.0], [0.0, 0.0, 0.0, INF], [INF, -INF, NAN, 0.0]),
        ("pow", [0.0, 0.0, 2.0, INF], [0.0, -1.0, 0.5, -1.0], [1.0, INF, math.sqrt(2.0), 0.0]),
        ("maximum", [NAN, 1.0, -INF], [1.0, NAN, 2.0], [NAN, NAN, 2.0]),
        ("minimum", [NAN, 1.0, INF], [1.0, NAN, 2.0], [NAN, NAN, 2.0]),
        ("add", [INF, INF, 1e308], [1.0, -INF, 1e308], [INF, NAN, INF]),
        ("mul", [0.0, TINY], [INF, 0.5], [NAN, 0.0]),
    ],
)
def test_binary_edge_values(op: str, x: list[float], y: list[float], expected: list[float]) -> None:
    np.testing.assert_array_equal(run_op(op, np.array(x), np.array(y)), expected)


def test_integer_arithmetic_is_exact() -> None:
    big = np.array([2**62, -(2**62)], np.int64)
    np.testing.assert_array_equal(run_op("add", big, np.array(1, np.int64)), [2**62 + 1, -(2**62) + 1])


def test_interpreter_raises_no_floating_point_warnings() -> None:
    with np.errstate(all="raise"), warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isinf(run_op("log", np.array([0.0]))[0])
        assert np.isnan(run_op("div", np.array([0.0]), np.array([0.0]))[0])
        assert np.isnan(run_op("mean", np.zeros((0, 2)), axes=[0])).all()  # np.mean warns of an empty slice


# -- reductions and softmax ---------------------------------------------------

REDUCTIONS = {"sum": np.sum, "mean": np.mean, "max": np.max}


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axes", [(0,), (1,), (-1,), (0, 2), (2, 0), (0, 1, 2), ()])
@pytest.mark.parametrize("op", REDUCTIONS)
def test_reduction_semantics(op: str, axes: tuple[int, ...], keepdims: bool, rng: np.random.Generator) -> None:
    x = rng.normal(size=(2, 3, 4))
    result = run_op(op, x, axes=axes, keepdims=keepdims)
    expected = REDUCTIONS[op](x, axis=axes, keepdims=keepdims)
    assert result.shape == expected.shape
    np.testing.assert_allclose(result, expected, rtol=1e-12)


def test_integer_reductions_keep_their_dtype() -> None:
    x = np.arange(12, dtype=np.int32).reshape(3, 4)
    result = run_op("sum", x, axes=[1])
    assert result.dtype == np.int32
    np.testing.assert_array_equal(result, [6, 22, 38])
    np.testing.assert_array_equal(run_op("max", x, axes=[0]), [8, 9, 10, 11])


def test_reduction_edge_values() -> None:
    x = np.array([[-INF, -INF], [1.0, NAN], [INF, -INF]])
    np.testing.assert_array_equal(run_op("max", x, axes=[1]), [-INF, NAN, INF])
    np.testing.assert_array_equal(run_op("sum", x, axes=[1]), [-INF, NAN, NAN])


def run_on_empty_batch(op: str, dtype: str, **attrs) -> np.ndarray:
    """`op` of an input typed [B, 3], run by the reference with B = 0 (a
    static axis of length 0 is refused by max's and softmax's type rules)."""
    graph = Graph(op)
    x = graph.add_argument("x", t(f"{dtype}[B,3]"))
    graph.outputs["out"] = Builder(graph).emit(op, x, **attrs)
    return interpret(graph, {"x": np.zeros((0, 3), DType.parse(dtype).numpy)}).outputs["out"]


@pytest.mark.parametrize(("dtype", "lowest"), [("f32", -INF), ("f64", -INF), ("i32", -(2**31)), ("i64", -(2**63))])
def test_max_over_an_empty_batch_is_the_lowest_value(dtype: str, lowest: float) -> None:
    """The identity max starts from (native code starts there too); sum gives 0."""
    np.testing.assert_array_equal(run_on_empty_batch("max", dtype, axes=[0]), [lowest] * 3)
    np.testing.assert_array_equal(run_on_empty_batch("max", dtype, axes=[0, 1], keepdims=True), [[lowest]])
    np.testing.assert_array_equal(run_on_empty_batch("sum", dtype, axes=[0]), [0, 0, 0])


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_softmax_along_an_empty_batch_axis(op: str) -> None:
    assert run_on_empty_batch(op, "f64", axis=0).shape == (0, 3)


def test_mean_over_no_elements_is_nan_without_a_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(run_op("mean", np.zeros((0, 3)), axes=[0])).all()


def _softmax_rows(x: np.ndarray) -> np.ndarray:
    """Softmax of each row, from `math` (inputs of moderate size only)."""
    out = []
    for row in x.tolist():
        total = math.fsum(math.exp(v) for v in row)
        out.append([math.exp(v) / total for v in row])
    return np.array(out)


@pytest.mark.parametrize("axis", [0, 1, -1, -2])
def test_softmax_semantics(axis: int, rng: np.random.Generator) -> None:
    x = rng.normal(scale=3.0, size=(3, 4))
    expected = _softmax_rows(x) if axis in (1, -1) else _softmax_rows(x.T).T
    np.testing.assert_allclose(run_op("softmax", x, axis=axis), expected, rtol=1e-13)
    np.testing.assert_allclose(run_op("log_softmax", x, axis=axis), np.log(expected), rtol=1e-13)


def test_softmax_on_a_middle_axis(rng: np.random.Generator) -> None:
    x = rng.normal(size=(2, 3, 4))
    result = run_op("softmax", x, axis=1)
    for i in range(2):
        np.testing.assert_allclose(result[i], _softmax_rows(x[i].T).T, rtol=1e-13)


@pytest.mark.parametrize("dtype", ["f64", "f32"])
def test_softmax_is_stable_for_large_logits(dtype: str) -> None:
    x = np.array([[1000.0, 0.0, -1000.0], [1e4, 1e4, 1e4]], DType.parse(dtype).numpy)
    np.testing.assert_allclose(run_op("softmax", x, axis=1), [[1.0, 0.0, 0.0], [1 / 3] * 3], rtol=1e-6, atol=0)
    log_softmax = run_op("log_softmax", x, axis=1)
    assert np.isfinite(log_softmax).all()
    np.testing.assert_allclose(log_softmax, [[0.0, -1000.0, -2000.0], [-math.log(3)] * 3], rtol=1e-6)


# -- matmul and layout --------------------------------------------------------


@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("transpose_b", [False, True])
@pytest.mark.parametrize("dtype", ["f64", "f32"])
def test_matmul_semantics(transpose_a: bool, transpose_b: bool, dtype: str, rng: np.random.Generator) -> None:
    a = draw("real", (4, 2) if transpose_a else (2, 4), rng, dtype)
    b = draw("real", (3, 4) if transpose_b else (4, 3), rng, dtype)
    op_a = (a.T if transpose_a else a).astype(np.float64)
    op_b = (b.T if transpose_b else b).astype(np.float64)
    expected = [[math.fsum(op_a[i] * op_b[:, j]) for j in range(3)] for i in range(2)]
    result = run_op("matmul", a, b, transpose_a=transpose_a, transpose_b=transpose_b)
    check_close(result, np.array(expected), DType.parse(dtype))


@pytest.mark.parametrize("perm", [(0, 1, 2), (1, 0, 2), (2, 0, 1), (1, 2, 0)])
def test_transpose_semantics(perm: tuple[int, ...]) -> None:
    x = np.arange(24.0).reshape(2, 3, 4)
    result = run_op("transpose", x, perm=perm)
    assert result.shape == tuple(x.shape[p] for p in perm)
    for index in np.ndindex(result.shape):
        source = [0, 0, 0]
        for out_axis, in_axis in enumerate(perm):
            source[in_axis] = index[out_axis]
        assert result[index] == x[tuple(source)]


@pytest.mark.parametrize("shape", [(12,), (2, 6), (4, 1, 3), (2, 2, 3)])
def test_reshape_keeps_row_major_order(shape: tuple[int, ...]) -> None:
    x = np.arange(12.0).reshape(3, 4)
    result = run_op("reshape", x, shape=shape)
    assert result.shape == shape
    assert result.ravel().tolist() == list(range(12))


@pytest.mark.parametrize(("source", "shape"), [((4,), (3, 4)), ((3, 1), (3, 4)), ((), (2, 3)), ((1, 4), (2, 3, 4))])
def test_broadcast_to_semantics(source: tuple[int, ...], shape: tuple[int, ...], rng: np.random.Generator) -> None:
    x = rng.normal(size=source)
    result = run_op("broadcast_to", x, shape=shape)
    assert result.shape == shape
    lead = len(shape) - len(source)
    for index in np.ndindex(shape):
        assert result[index] == x[tuple(0 if n == 1 else i for i, n in zip(index[lead:], source, strict=True))]


# -- source ops and cast ------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "dtype"),
    [(2.5, "f32"), (-3, "i64"), (True, "bool"), (1e-300, "f64"), (-(2**31), "i32"), (2**63 - 1, "i64"), (2.7, "i32")],
)
def test_constant(value, dtype: str) -> None:
    result = run_op("constant", value=value, dtype=dtype)
    assert result.shape == ()
    assert result.dtype == DType.parse(dtype).numpy
    assert result == np.asarray(value, DType.parse(dtype).numpy)


def test_size_counts_elements_along_axes_at_run_time() -> None:
    graph = Graph("size")
    x = graph.add_argument("x", TensorType(DType.float32, ("B", 3, 2)))
    b = Builder(graph)
    graph.outputs["rows"] = b.size(x, axes=[0], dtype="i64")
    graph.outputs["all"] = b.size(x, axes=[-1, 0, 1], dtype="f32")
    outputs = interpret(graph, {"x": np.zeros((5, 3, 2), np.float32)}).outputs
    assert outputs["rows"] == 5
    assert outputs["rows"].dtype == np.int64
    assert outputs["all"] == 30.0
    assert outputs["all"].dtype == np.float32


def test_one_hot() -> None:
    labels = np.array([0, 3, 1, NUM_CLASSES, -1])
    result = run_op("one_hot", labels, num_classes=NUM_CLASSES, dtype="f32")
    assert result.dtype == np.float32
    expected = [[float(c == y) for c in range(NUM_CLASSES)] for y in labels]  # out of range: all zeros
    np.testing.assert_array_equal(result, expected)


@pytest.mark.parametrize(
    ("x", "dtype", "expected"),
    [
        ([-1.7, -0.5, 0.5, 1.7], "i32", [-1, 0, 0, 1]),
        ([-2.0, 0.0, 0.5, NAN], "bool", [True, False, True, True]),
        ([True, False], "f32", [1.0, 0.0]),
        ([1, -2], "f64", [1.0, -2.0]),
        ([0.1, 1e300], "f32", [np.float32(0.1), INF]),
        ([0.1, -3.0], "f64", [0.1, -3.0]),
    ],
)
def test_cast(x: list, dtype: str, expected: list) -> None:
    result = run_op("cast", np.array(x), dtype=dtype)
    assert result.dtype == DType.parse(dtype).numpy
    np.testing.assert_array_equal(result, np.array(expected, result.dtype))


@pytest.mark.parametrize(
    ("starts", "steps", "shape", "index"),
    [
        ((0, 2), (1, 1), (3, 4), np.s_[:, 2:6]),
        ((0, 0), (1, 2), (3, 4), np.s_[:, ::2]),
        ((2, 7), (-1, -1), (3, 8), np.s_[::-1, ::-1]),
        ((1, 6), (1, -3), (2, 3), np.s_[1:, 6::-3]),
        ((0, 1), (1, 1), (3, 0), np.s_[:, 1:1]),
    ],
)
def test_slice_and_pad_semantics(starts, steps, shape, index) -> None:
    x = np.arange(24.0).reshape(3, 8)
    part = run_op("slice", x, starts=starts, steps=steps, shape=shape)
    np.testing.assert_array_equal(part, x[index])
    padded = np.zeros_like(x)
    padded[index] = x[index]
    np.testing.assert_array_equal(run_op("pad", part, starts=starts, steps=steps, shape=x.shape), padded)


def test_gather_reads_rows_and_clamps_indices() -> None:
    table = np.arange(12.0).reshape(4, 3)
    indices = np.array([[2, 0], [3, 3], [-5, 9]])
    np.testing.assert_array_equal(run_op("gather", table, indices), table[[[2, 0], [3, 3], [0, 3]]])


def test_scatter_add_accumulates_repeats_in_order_and_skips() -> None:
    values = np.arange(15.0).reshape(5, 3)
    indices = np.array([1, 3, 1, 7, 0], np.int32)
    want = np.zeros((4, 3))
    for row, i in zip(values, np.clip(indices, 0, 3), strict=True):
        want[i] += row
    np.testing.assert_array_equal(run_op("scatter_add", values, indices, rows=4), want)
    want[1] = 0
    np.testing.assert_array_equal(run_op("scatter_add", values, indices, rows=4, skip=1), want)


def test_allreduce_sum_is_the_identity_alone_and_the_groups_sum_in_one() -> None:
    x = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(run_op("allreduce_sum", x), x)
    seen = []

    def three_ranks_alike(buffer: np.ndarray) -> None:
        seen.append(buffer.flags.c_contiguous)
        buffer *= 3

    with reducing_over(three_ranks_alike):
        np.testing.assert_array_equal(run_op("allreduce_sum", x), 3 * x)
    np.testing.assert_array_equal(run_op("allreduce_sum", x), x)  # the group is gone with the block
    assert seen == [True]
    with pytest.raises(DTypeError, match="allreduce_sum"):
        Builder(Graph("g")).allreduce_sum(Graph("h").add_argument("i", TensorType(DType.int32, (3,))))


def test_every_op_has_a_semantics_test() -> None:
    elsewhere = {
        "logical_and", "select", "softmax", "log_softmax", "matmul", "transpose",
        "reshape", "broadcast_to", "constant", "size", "one_hot", "cast", "random_uniform",
        "slice", "pad", "gather", "scatter_add", "allreduce_sum",
    }  # fmt: skip
    tested = {*UNARY, *BINARY, *COMPARISONS, *REDUCTIONS, *elsewhere}
    assert tested == set(OPS)


# -- type rules ---------------------------------------------------------------


def t(text: str) -> TensorType:
    """A type from IR notation: `f32[B,4]`, `i64[]`."""
    dtype, dims = re.fullmatch(r"(\w+)\[(.*)\]", text).groups()
    shape = tuple(int(d) if d.isdigit() else d for d in dims.split(",") if d)
    return TensorType(DType.parse(dtype), shape)


def build(op: str, types: list[str], **attrs):
    """Emit `op` on fresh arguments of `types`; return the result value."""
    graph = Graph("rule")
    args = [graph.add_argument(f"x{i}", t(s)) for i, s in enumerate(types)]
    return Builder(graph).emit(op, *args, **attrs)


DTYPE_ERRORS = [
    ("add", ["f32[3]", "f64[3]"], {}),
    ("maximum", ["i32[3]", "i64[3]"], {}),
    ("exp", ["i64[3]"], {}),
    ("log", ["i32[3]"], {}),
    ("sigmoid", ["bool[3]"], {}),
    ("neg", ["bool[3]"], {}),
    ("div", ["i64[3]", "i64[3]"], {}),
    ("pow", ["i64[]", "i64[]"], {}),
    ("matmul", ["i64[2,2]", "i64[2,2]"], {}),
    ("matmul", ["f32[2,2]", "f64[2,2]"], {}),
    ("sum", ["bool[3]"], {"axes": [0]}),
    ("mean", ["i64[3]"], {"axes": [0]}),
    ("softmax", ["i64[3]"], {}),
    ("lt", ["f32[3]", "f64[3]"], {}),
    ("logical_and", ["f64[3]", "bool[3]"], {}),
    ("select", ["f64[3]", "f64[3]", "f64[3]"], {}),
    ("select", ["bool[3]", "f64[3]", "f32[3]"], {}),
    ("one_hot", ["f64[3]"], {"num_classes": 3, "dtype": "f32"}),
]

SHAPE_ERRORS = [
    ("add", ["f64[3,4]", "f64[5]"], {}),
    ("mul", ["f64[B,4]", "f64[5,4]"], {}),
    ("eq", ["f64[2]", "f64[3]"], {}),
    ("select", ["bool[2]", "f64[3]", "f64[3]"], {}),
    ("logical_and", ["bool[2]", "bool[3]"], {}),
    ("matmul", ["f64[2,3]", "f64[4,5]"], {}),
    ("matmul", ["f64[2,3]", "f64[2,3]"], {"transpose_a": True, "transpose_b": True}),
    ("matmul", ["f64[B,3]", "f64[3,B]"], {"transpose_a": True}),
    ("matmul", ["f64[2,3,4]", "f64[4,2]"], {}),
    ("matmul", ["f64[3]", "f64[3,2]"], {}),
    ("reshape", ["f64[3,4]"], {"shape": [5, 2]}),
    ("reshape", ["f64[B,4]"], {"shape": [8]}),
    ("transpose", ["f64[3,4]"], {"perm": [0, 0]}),
    ("transpose", ["f64[3,4]"], {"perm": [0, 1, 2]}),
    ("transpose", ["f64[3,4]"], {"perm": [1, 2]}),
    ("broadcast_to", ["f64[3,4]"], {"shape": [4, 4]}),
    ("broadcast_to", ["f64[3,4]"], {"shape": [4]}),
    ("broadcast_to", ["f64[B,4]"], {"shape": [3, 4]}),
    ("sum", ["f64[3,4]"], {"axes": [2]}),
    ("max", ["f64[3,4]"], {"axes": [-3]}),
    ("mean", ["f64[]"], {"axes": [0]}),
    ("softmax", ["f64[3,4]"], {"axis": 2}),
    ("log_softmax", ["f64[3,4]"], {"axis": -3}),
    ("size", ["f64[3]"], {"axes": [1], "dtype": "i64"}),
    ("one_hot", ["i64[3]"], {"num_classes": 0, "dtype": "f32"}),
    ("one_hot", ["i32[3]"], {"num_classes": 2**31 + 1, "dtype": "f32"}),
    # an axis named twice: NumPy raises, native code reduced it once
    ("sum", ["f64[3,4]"], {"axes": [1, 1]}),
    ("max", ["f64[3,4]"], {"axes": [1, -1]}),
    ("mean", ["f64[B,4]"], {"axes": [0, -2]}),
    ("size", ["f64[3,4]"], {"axes": [0, 0], "dtype": "i64"}),
    # the max of no elements
    ("max", ["f64[0,4]"], {"axes": [0]}),
    ("softmax", ["f64[3,0]"], {"axis": 1}),
    ("log_softmax", ["f64[0,B]"], {"axis": 0}),
    # more elements than any memory holds
    ("broadcast_to", ["f64[1]"], {"shape": [2**25, 2**24]}),
    ("one_hot", ["i64[16777216]"], {"num_classes": 2**25, "dtype": "f32"}),
]


def _case_id(case) -> str:
    op, types, attrs = case
    return f"{op}({','.join(types)}){''.join(f',{k}={v}' for k, v in attrs.items())}"


@pytest.mark.parametrize(("op", "types", "attrs"), DTYPE_ERRORS, ids=map(_case_id, DTYPE_ERRORS))
def test_dtype_errors_name_the_op(op: str, types: list[str], attrs: dict) -> None:
    with pytest.raises(DTypeError, match=f"'{op}'"):
        build(op, types, **attrs)


@pytest.mark.parametrize(("op", "types", "attrs"), SHAPE_ERRORS, ids=map(_case_id, SHAPE_ERRORS))
def test_shape_errors_name_the_op(op: str, types: list[str], attrs: dict) -> None:
    with pytest.raises(ShapeError, match=f"'{op}'"):
        build(op, types, **attrs)


VALUE_ERRORS = [
    # a constant the dtype cannot hold: NumPy raises, native code wrapped it
    ("constant", [], {"value": INF, "dtype": "i32"}, "inf is not a value of i32"),
    ("constant", [], {"value": NAN, "dtype": "i64"}, "nan is not a value of i64"),
    ("constant", [], {"value": 2**31, "dtype": "i32"}, "2147483648 is not a value of i32"),
    ("constant", [], {"value": -(2**63) - 1, "dtype": "i64"}, "is not a value of i64"),
    ("constant", [], {"value": 1e19, "dtype": "i64"}, "1e+19 is not a value of i64"),
    ("constant", [], {"value": 2**1024, "dtype": "f64"}, "an integer of 1025 bits is not a value of f64"),
    ("constant", [], {"value": -(2**5000), "dtype": "bool"}, "an integer of 5001 bits is not a value of bool"),
    # a size that no argument binds
    ("broadcast_to", ["f64[1]"], {"shape": ["N"]}, "symbol N of f64[N] is not a dimension of any argument"),
    ("broadcast_to", ["f64[B,1]"], {"shape": ["N", "B", 2]}, "symbol N of f64[N,B,2]"),
]


@pytest.mark.parametrize(("op", "types", "attrs", "message"), VALUE_ERRORS, ids=[_case_id(c[:3]) for c in VALUE_ERRORS])
def test_value_errors_name_the_op(op: str, types: list[str], attrs: dict, message: str) -> None:
    with pytest.raises(IRError, match=f"^op '{op}': .*{re.escape(message)}"):
        build(op, types, **attrs)


@pytest.mark.parametrize(
    ("op", "types", "attrs", "expected"),
    [
        ("add", ["f32[B,4]", "f32[4]"], {}, "f32[B,4]"),
        ("add", ["f32[B,1]", "f32[1,4]"], {}, "f32[B,4]"),
        ("sub", ["i64[]", "i64[2]"], {}, "i64[2]"),
        ("lt", ["f64[3,1]", "f64[4]"], {}, "bool[3,4]"),
        ("select", ["bool[B,1]", "f32[3]", "f32[]"], {}, "f32[B,3]"),
        ("matmul", ["f32[B,3]", "f32[3,4]"], {}, "f32[B,4]"),
        ("matmul", ["f32[3,B]", "f32[4,3]"], {"transpose_a": True, "transpose_b": True}, "f32[B,4]"),
        ("matmul", ["f32[B,3]", "f32[B,4]"], {"transpose_a": True}, "f32[3,4]"),
        ("sum", ["f32[B,3,4]"], {"axes": [0, -1]}, "f32[3]"),
        ("max", ["i32[B,3]"], {"axes": [1], "keepdims": True}, "i32[B,1]"),
        ("mean", ["f64[B,3]"], {"axes": []}, "f64[B,3]"),
        ("softmax", ["f32[B,10]"], {"axis": 0}, "f32[B,10]"),
        ("reshape", ["f32[B,2,3]"], {"shape": ["B", 6]}, "f32[B,6]"),
        ("reshape", ["f32[]"], {"shape": [1, 1]}, "f32[1,1]"),
        ("transpose", ["f32[B,3]"], {"perm": [1, 0]}, "f32[3,B]"),
        ("broadcast_to", ["f32[3,1]"], {"shape": [2, 3, 4]}, "f32[2,3,4]"),
        ("broadcast_to", ["f32[B,1,1]"], {"shape": ["B", 3, 4]}, "f32[B,3,4]"),
        ("one_hot", ["i32[B]"], {"num_classes": 10, "dtype": "f32"}, "f32[B,10]"),
        ("cast", ["f64[B]"], {"dtype": "bool"}, "bool[B]"),
        ("size", ["f64[B,3]"], {"axes": [0], "dtype": "f32"}, "f32[]"),
        ("constant", [], {"value": 1, "dtype": "i32"}, "i32[]"),
    ],
)
def test_result_types(op: str, types: list[str], attrs: dict, expected: str) -> None:
    assert build(op, types, **attrs).type == t(expected)


# -- attribute examples (what program generators draw) -------------------------

EXAMPLE_INPUTS = ["f32[B,6,4]", "f64[3,1]", "f32[B]", "f32[]", "f64[2,B,1,5]"]
FIXED_INPUTS = {"random_uniform": ["i64[]", "i64[]"]}
"""Ops whose inputs have one type (a seed and a step): their examples are built on those."""


@pytest.mark.parametrize(
    ("op", "attr"), [(op.name, a.name) for op in OPS.values() for a in op.attrs if a.examples], ids=str
)
@pytest.mark.parametrize("input_type", EXAMPLE_INPUTS)
def test_attribute_examples_pass_the_type_rule(op: str, attr: str, input_type: str) -> None:
    """Every example value of an attribute, for an input of any rank (with a
    symbolic axis or not), is one the op's type rule accepts."""
    examples = OPS[op].attr_index[attr].examples([t(input_type)])
    assert examples or t(input_type).rank == 0  # a scalar has no axis
    dtypes = {a.name: "f32" for a in OPS[op].attrs if a.kind == "dtype"}  # size's result type
    for value in examples:
        build(op, FIXED_INPUTS.get(op, [input_type]), **dtypes, **{attr: value})
