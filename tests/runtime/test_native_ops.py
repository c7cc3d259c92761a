"""Every op of the op table compiled to native code (`GraphFunction`) against
the NumPy reference interpreter (`ember.ir.interpret`).

Each graph applies one op to operands of many shapes at once (one output per
case: scalars, [1], [7], [B,13], rank 3, row and column vectors and scalars
broadcast on either side, transposed, reshaped and broadcast views; every
case for a few ops, a core of them for the rest, since the loop structure
does not depend on the op), with the batch size B symbolic so that one
compiled graph runs at B = 0, 1, 5 and 33 (no rows, tails shorter and longer
than a vector of 8 or 16 lanes). The same graphs then run on edge values
(signed zeros, extremes, subnormals, +-inf, NaN).

Tolerances: single IEEE operations, comparisons, selects, casts and layout
ops must match bit for bit (and so must integers). exp, log, tanh and the
ops built on them may differ by the bound compiler/codegen/vecmath.py
documents plus NumPy's own few ulp (`transcendental_rtol`), scaled by each
op's condition where it amplifies them; sums, means and matmuls by a
relative error of the sum of magnitudes."""

from __future__ import annotations

import contextlib
import functools
import itertools
import math

import numpy as np
import pytest
from inputs import draw
from native_helpers import (
    EPS,
    EXACT,
    FLOATS,
    INTS,
    Tol,
    assert_matches,
    edges,
    grid,
    make_graph,
    run_both,
    tensor,
    transcendental_rtol,
)

from ember.ir import OPS, DType, Graph, interpret
from ember.runtime.collectives import reducing_over

ALL_DTYPES = (*FLOATS, *INTS, DType.bool)
B_SIZES = (0, 1, 5, 33)
COLUMNS = 13

# -- operands of every shape ----------------------------------------------------

ARGUMENT_SHAPES = {
    "s": (),
    "one": (1,),
    "seven": (7,),
    "m": ("B", COLUMNS),
    "row": (COLUMNS,),
    "col": ("B", 1),
    "mt": (COLUMNS, "B"),
    "r3": (3, "B", 17),
    "row3": (17,),
    "st": (4, 6, 5),
}
"""The argument shapes operands are made from (B is the batch symbol)."""

LAYOUTS = {
    "T": lambda b, x: b.transpose(x, perm=[1, 0]),
    "T3": lambda b, x: b.transpose(x, perm=[2, 0, 1]),
    "bcast": lambda b, x: b.broadcast_to(x, shape=["B", COLUMNS]),
    "reshape": lambda b, x: b.reshape(x, shape=[24, 5]),
    "T_reshape": lambda b, x: b.reshape(b.transpose(x, perm=[1, 0, 2]), shape=[24, 5]),  # needs a copy
    "unsqueeze": lambda b, x: b.reshape(x, shape=[1, "B", COLUMNS]),
}
"""Layout nodes put between an argument and the op (strided views of it)."""

UNARY_CASES = {
    "scalar": ["s"],
    "one": ["one"],
    "seven": ["seven"],
    "matrix": ["m"],
    "rank3": ["r3"],
    "transposed": [("mt", "T")],
    "transposed3": [("r3", "T3")],
    "reshaped": [("st", "reshape")],
    "reshaped_transposed": [("st", "T_reshape")],
    "broadcast": [("row", "bcast")],
    "unsqueezed": [("m", "unsqueeze")],
}
BINARY_CASES = {
    "matrix": ["m", "m"],
    "row_right": ["m", "row"],
    "row_left": ["row", "m"],
    "col_right": ["m", "col"],
    "col_left": ["col", "m"],
    "scalar_right": ["m", "s"],
    "scalar_left": ["s", "m"],
    "outer": ["col", "row"],
    "scalars": ["s", "s"],
    "one_seven": ["one", "seven"],
    "sevens": ["seven", "seven"],
    "rank3": ["r3", "r3"],
    "rank3_col": ["r3", "col"],
    "rank3_row": ["row3", "r3"],
    "transposed_left": [("mt", "T"), "m"],
    "transposed_right": ["m", ("mt", "T")],
    "broadcast_view": [("row", "bcast"), "m"],
    "reshaped": [("st", "reshape"), ("st", "T_reshape")],
}
SELECT_CASES = {
    "matrix": ["m", "m", "m"],
    "col_condition": ["col", "m", "row"],
    "scalar_condition": ["s", "m", "m"],
    "scalar_branches": ["m", "s", "s"],
    "rank3": ["r3", "col", "row3"],
    "transposed": [("mt", "T"), "m", ("mt", "T")],
    "scalars": ["s", "s", "s"],
}
CASES = {1: UNARY_CASES, 2: BINARY_CASES, 3: SELECT_CASES}
CORE_CASES = {
    1: ["scalar", "seven", "matrix", "transposed", "broadcast"],
    2: ["matrix", "row_left", "col_right", "scalar_right", "transposed_left", "one_seven"],
    3: ["matrix", "col_condition", "scalar_branches"],
}
"""The cases every op runs: a vector loop with a tail, a scalar, broadcasting
(stride 0), a gather. The loop structure does not depend on the op, so only
`FULL_SHAPES` ops run every case (compiling a kernel costs ~10 ms)."""

# -- the ops, their dtypes and tolerances ---------------------------------------

FLOAT_UNARY = ["neg", "abs", "sign", "exp", "log", "sqrt", "rsqrt", "tanh", "sigmoid", "relu", "leaky_relu"]
FLOAT_UNARY += ["erf", "log1p", "expm1", "gelu", "gelu_tanh", "silu", "elu", "softplus", "mish"]
FLOAT_UNARY += ["hardswish", "hardsigmoid", "cos", "sin"]
INT_UNARY = ["neg", "abs", "sign"]
FLOAT_BINARY = ["add", "sub", "mul", "div", "maximum", "minimum", "pow"]
INT_BINARY = ["add", "sub", "mul", "maximum", "minimum"]
COMPARISONS = ["eq", "ne", "lt", "le", "gt", "ge"]
ATTRS = {  # not float32 numbers: the constants' rounding shows
    "leaky_relu": {"alpha": 0.1},
    "elu": {"alpha": 0.7},
    "softplus": {"beta": 1.3, "threshold": 10.0},
}

FULL_SHAPES = {"add", "neg", "exp", "lt", "select", "logical_and"}
"""Ops that run every shape case, in every dtype they take."""

ELEMENTWISE = sorted(
    [(op, d) for op in FLOAT_UNARY + FLOAT_BINARY for d in FLOATS]
    + [(op, d) for op in INT_UNARY + INT_BINARY for d in INTS]
    + [(op, d) for op in COMPARISONS for d in ALL_DTYPES]
    + [("select", d) for d in ALL_DTYPES]
    + [("logical_and", DType.bool)],
    key=lambda case: (case[0], case[1].value),
)

TRANSCENDENTAL = {"exp", "log", "tanh", "sigmoid", "gelu", "gelu_tanh", "pow", "erf", "log1p", "expm1", "silu", "elu"}
TRANSCENDENTAL |= {"softplus", "mish", "cos", "sin"}
SIGNED_ZERO_FREE = {"maximum", "minimum", "relu"}
"""Ops whose sign of a zero result NumPy does not fix: np.maximum(0.0, -0.0)
is -0.0 on its SIMD path, while LLVM's maximum (IEEE 754-2019) gives +0.0."""


def elementwise_tol(op: str, dtype: DType) -> Tol:
    """How closely native results of `op` must match on inputs drawn from its domain."""
    if op not in TRANSCENDENTAL or not dtype.is_float:
        return Tol(zero_sign=op not in SIGNED_ZERO_FREE)
    rt, eps = transcendental_rtol(dtype), EPS[dtype]
    if op in ("sigmoid", "silu"):  # x / (1 + exp(-x)): exp's error damped by e/(1+e) < 1, then two roundings
        return Tol(rt + 2 * eps)
    if op in ("gelu", "gelu_tanh"):  # 0.5x(1 + f(u)): f's error is absolute in 1 + f, times 0.5|x| <= 1 here
        return Tol(rt + 4 * eps, atol=rt)
    if op in ("softplus", "mish", "elu"):  # a few roundings around exp, log1p or expm1
        return Tol(rt + 4 * eps)
    if op == "pow":  # exp(y log x): log's error grows by |y log x| <= 2 ln 2 on the domain
        return Tol((rt + eps) * (1 + 2 * math.log(2)))
    return Tol(rt)


def edge_scale(op: str, expected: np.ndarray, *xs: np.ndarray) -> np.ndarray:
    """What the error of a transcendental op is relative to, per element."""
    with np.errstate(all="ignore"):
        if op in ("gelu", "gelu_tanh"):
            return np.maximum(np.abs(expected), 0.5 * np.abs(xs[0]))
        if op == "pow":  # relative to |x**y| (1 + |y log x|); 0 where the result is 0 or not finite
            x, y = (np.asarray(v, np.float64) for v in xs)
            condition = 1 + np.abs(np.nan_to_num(y * np.log(np.abs(x)), nan=0.0))
            return np.where(np.isfinite(expected) & (expected != 0), np.abs(expected) * condition, 0.0)
    return np.abs(expected)


# -- graphs -----------------------------------------------------------------------


def _operand(b, args, spec, position: int, dtype: DType):
    key, layout = (spec, None) if isinstance(spec, str) else spec
    name = f"{key}{position}"
    if name not in args:
        args[name] = b.graph.add_argument(name, tensor(dtype, ARGUMENT_SHAPES[key]))
    value = args[name]
    return LAYOUTS[layout](b, value) if layout else value


def operand_dtypes(op: str, dtype: DType) -> list[DType]:
    if op == "select":
        return [DType.bool, dtype, dtype]
    return [dtype] * OPS[op].arity


def cases_of(op: str) -> list[str]:
    arity = OPS[op].arity
    return list(CASES[arity]) if op in FULL_SHAPES else CORE_CASES[arity]


@functools.cache
def elementwise_graph(op: str, dtype: DType) -> Graph:
    """`op` applied to the operands of every case of its arity, one output per case."""
    dtypes = operand_dtypes(op, dtype)

    def build(b, args):
        outputs = {}
        for case in cases_of(op):
            specs = CASES[OPS[op].arity][case]
            operands = [_operand(b, args, s, i, dtypes[i]) for i, s in enumerate(specs)]
            outputs[case] = b.emit(op, *operands, **ATTRS.get(op, {}))
        return outputs

    return make_graph(f"{op}_{dtype}", {}, build)


def concrete(shape, batch: int) -> tuple[int, ...]:
    return tuple(batch if d == "B" else d for d in shape)


def arguments(graph: Graph, op: str, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random arguments from the domain of the operand each one feeds."""
    domains = OPS[op].domains
    out = {}
    for a in graph.inputs:
        position = int(a.name[-1])
        domain = "tie" if op in COMPARISONS else domains[position] if domains else "any"
        shape = concrete(a.type.shape, batch)
        if domain == "tie":  # few distinct values, so that equality holds often
            out[a.name] = rng.integers(-2, 3, shape).astype(a.type.dtype.numpy)
            if a.type.dtype is DType.bool:
                out[a.name] = rng.random(shape) < 0.5
        else:
            out[a.name] = draw(domain, shape, rng, a.type.dtype)
    return out


@pytest.mark.parametrize(("op", "dtype"), ELEMENTWISE, ids=[f"{op}-{d}" for op, d in ELEMENTWISE])
def test_elementwise_matches_reference_on_every_shape(op: str, dtype: DType) -> None:
    graph = elementwise_graph(op, dtype)
    rng = np.random.default_rng(0)
    tol = elementwise_tol(op, dtype)
    for batch in B_SIZES:
        args = arguments(graph, op, batch, rng)
        actual, expected = run_both(graph, args)
        assert set(actual.outputs) == set(expected.outputs) == set(cases_of(op))
        for case in expected.outputs:
            assert_matches(actual.outputs[case], expected.outputs[case], tol, f"{op} {dtype} {case} B={batch}")


@pytest.mark.parametrize(("op", "dtype"), ELEMENTWISE, ids=[f"{op}-{d}" for op, d in ELEMENTWISE])
def test_elementwise_matches_reference_on_edge_values(op: str, dtype: DType) -> None:
    """Every combination of edge values through the [B,13] case: NaN, infinities
    and (except where NumPy leaves it open) the sign of zero must match exactly."""
    graph = elementwise_graph(op, dtype)
    rng = np.random.default_rng(1)
    values = [np.array([False, True]) if d is DType.bool else edges(d) for d in operand_dtypes(op, dtype)]
    if op == "select":
        values[0] = np.array([False, True])
    matrices = grid(COLUMNS, *values)
    args = arguments(graph, op, len(matrices[0]), rng)
    for i, matrix in enumerate(matrices):
        args[f"m{i}"] = matrix
    actual, expected = run_both(graph, args)
    result, reference = actual.outputs["matrix"], expected.outputs["matrix"]
    tol = elementwise_tol(op, dtype)
    scale = None
    if op in TRANSCENDENTAL:
        # Relative error in the normal range, absolute below it (subnormal results).
        tol = Tol(tol.rtol, float(np.finfo(dtype.numpy).tiny), zero_sign=True)
        scale = edge_scale(op, reference, *matrices)
    if op == "pow":
        # Where the error bound crosses the overflow threshold, inf is within it
        # (e.g. pow(FLT_MAX, 1) = exp(log(FLT_MAX)) rounds up to inf).
        near_overflow = np.isfinite(reference) & (np.abs(reference) + tol.rtol * scale > np.finfo(dtype.numpy).max)
        result = np.where(near_overflow, reference, result)
    inputs = {f"x{i}": m for i, m in enumerate(matrices)}
    assert_matches(result, reference, tol, f"{op} {dtype} edges", scale=scale, inputs=inputs)


# -- reductions ---------------------------------------------------------------------

REDUCTION_INPUTS = {"a": ("B", 6, 16), "c": (3, "B", 13), "v": (33,), "s": ()}
"""Inner sizes that are (16) and are not (13, 33) multiples of the vector width."""


def axis_subsets(rank: int) -> list[tuple[int, ...]]:
    return [c for k in range(rank + 1) for c in itertools.combinations(range(rank), k)]


@functools.cache
def reduction_graph(op: str, dtype: DType) -> Graph:
    """`op` over every subset of axes of two rank-3 inputs, with keepdims on for
    a subset of one input and off for the same subset of the other (keepdims
    changes no loop), plus full reductions of a vector and of a scalar,
    negative axes and a transposed input."""

    def build(b, args):
        outputs = {}
        for name, flip in (("a", 0), ("c", 1)):
            for i, axes in enumerate(axis_subsets(3)):
                keep = (i + flip) % 2 == 1
                label = "".join(map(str, axes)) or "none"
                outputs[f"{name}_{label}_{'keep' if keep else 'drop'}"] = b.emit(
                    op, args[name], axes=axes, keepdims=keep
                )
        outputs["negative_axes"] = b.emit(op, args["c"], axes=[-1, 0], keepdims=True)
        outputs["vector"] = b.emit(op, args["v"], axes=[0])
        outputs["vector_keep"] = b.emit(op, args["v"], axes=[-1], keepdims=True)
        outputs["scalar"] = b.emit(op, args["s"], axes=[])
        outputs["transposed"] = b.emit(op, b.transpose(args["c"], perm=[2, 0, 1]), axes=[0, 2])
        return outputs

    inputs = {k: tensor(dtype, s) for k, s in REDUCTION_INPUTS.items()}
    return make_graph(f"{op}_{dtype}", inputs, build)


REDUCTION_RTOL = {DType.float32: 1e-5, DType.float64: 1e-12}
"""Relative to the sum of magnitudes: the summation orders differ (vector lanes
folded pairwise natively, NumPy's pairwise blocks)."""

REDUCTIONS = [("sum", d) for d in (*FLOATS, *INTS)] + [("max", d) for d in (*FLOATS, *INTS)]
REDUCTIONS += [("mean", d) for d in FLOATS]


def reduction_scales(op: str, graph: Graph, args: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per output, the reduction of |x| that a sum's rounding error is relative to."""
    absolute = {k: np.abs(v) for k, v in args.items()}
    return interpret(graph, absolute).outputs


def check_reduction(op: str, dtype: DType, graph: Graph, args: dict[str, np.ndarray], label: str) -> None:
    actual, expected = run_both(graph, args)
    scales = reduction_scales(op, graph, args) if dtype.is_float and op != "max" else {}
    for name in expected.outputs:
        if name in scales:
            tol = Tol(REDUCTION_RTOL[dtype], float(np.finfo(dtype.numpy).tiny))
            scale = scales[name]
        else:  # max: exact, but NumPy leaves the sign of max(-0.0, 0.0) open
            tol, scale = Tol(), None
        assert_matches(actual.outputs[name], expected.outputs[name], tol, f"{op} {dtype} {name} {label}", scale)


@pytest.mark.parametrize(("op", "dtype"), REDUCTIONS, ids=[f"{op}-{d}" for op, d in REDUCTIONS])
def test_reduction_matches_reference(op: str, dtype: DType) -> None:
    graph = reduction_graph(op, dtype)
    rng = np.random.default_rng(2)
    for batch in (0, 1, 5, 33):  # no rows: sums of no elements are 0, maxima the lowest value
        args = {k: draw("real", concrete(s, batch), rng, dtype) for k, s in REDUCTION_INPUTS.items()}
        check_reduction(op, dtype, graph, args, f"B={batch}")


@pytest.mark.parametrize("op", ["sum", "max", "mean"])
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_reduction_propagates_nan_and_inf(op: str, dtype: DType) -> None:
    """NaN and infinities anywhere in a row (vector body or masked tail) reach
    its result as in NumPy: max propagates NaN, inf - inf sums to NaN."""
    graph = reduction_graph(op, dtype)
    rng = np.random.default_rng(3)
    args = {k: draw("real", concrete(s, 5), rng, dtype) for k, s in REDUCTION_INPUTS.items()}
    a, c = args["a"], args["c"]
    a[0, 2, 15] = np.nan  # last lane of a full vector
    a[1, 0, 0] = np.inf
    a[1, 0, 9] = -np.inf  # inf - inf in one row
    a[2, 5, :] = -np.inf  # a whole row of -inf
    a[3, :, 3] = np.inf
    a[4, 1, 1] = -0.0
    c[0, 1, 12] = np.nan  # in the masked tail
    c[1, :, :] = -np.inf
    c[2, 4, 0] = np.inf
    args["v"][32] = np.nan
    args["s"] = np.array(-np.inf, dtype.numpy)
    check_reduction(op, dtype, graph, args, "special values")


@pytest.mark.parametrize("op", ["sum", "max"])
@pytest.mark.parametrize("dtype", INTS, ids=str)
def test_integer_reduction_extremes(op: str, dtype: DType) -> None:
    """Integer max starts from the dtype's minimum, and sums wrap like NumPy's."""
    graph = reduction_graph(op, dtype)
    info = np.iinfo(dtype.numpy)
    rng = np.random.default_rng(4)
    args = {
        k: rng.choice([info.min, info.max, info.min + 1, -1, 0], concrete(s, 5)) for k, s in REDUCTION_INPUTS.items()
    }
    args = {k: np.asarray(v, dtype.numpy) for k, v in args.items()}
    args["a"][0] = info.min
    check_reduction(op, dtype, graph, args, "extremes")


# -- softmax and log_softmax (lowered before fusion) --------------------------------

SOFTMAX_INPUTS = {"a": ("B", 6, 16), "c": (3, "B", 13), "m": ("B", 33), "one": ("B", 1)}
SOFTMAX_AXES = {"a": [1], "c": [0, 1, 2, -1], "m": [-1], "one": [-1]}
"""Every axis of a rank-3 input, a middle axis of a 16-wide one, rows of 33
(two vectors and a tail) and an axis of size 1."""
SOFTMAX_TOL = {DType.float32: Tol(1e-5, 1e-6), DType.float64: Tol(1e-12, 1e-14)}


@functools.cache
def softmax_graph(dtype: DType) -> Graph:
    def build(b, args):
        outputs = {}
        for op in ("softmax", "log_softmax"):
            for name, x in args.items():
                for axis in SOFTMAX_AXES[name]:
                    outputs[f"{op}_{name}_{axis}"] = b.emit(op, x, axis=axis)
        return outputs

    return make_graph(f"softmax_{dtype}", {k: tensor(dtype, s) for k, s in SOFTMAX_INPUTS.items()}, build)


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_softmax_matches_reference(dtype: DType) -> None:
    graph = softmax_graph(dtype)
    rng = np.random.default_rng(5)
    for batch in (1, 5, 33):
        args = {k: (3 * rng.standard_normal(concrete(s, batch))).astype(dtype.numpy) for k, s in SOFTMAX_INPUTS.items()}
        actual, expected = run_both(graph, args)
        for name in expected.outputs:
            assert_matches(actual.outputs[name], expected.outputs[name], SOFTMAX_TOL[dtype], f"{name} B={batch}")


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_softmax_edge_values(dtype: DType) -> None:
    """Masked (-inf) logits, huge logits, an all -inf row (NaN), a NaN logit."""
    graph = softmax_graph(dtype)
    rng = np.random.default_rng(6)
    args = {k: rng.standard_normal(concrete(s, 6)).astype(dtype.numpy) for k, s in SOFTMAX_INPUTS.items()}
    m = args["m"]
    m[0, ::2] = -np.inf
    m[1] = 1e4
    m[1, 7] = 2e4
    m[2, :] = -np.inf
    m[3, 32] = np.nan
    m[4, :] = np.linspace(-1e3, 1e3, 33)
    m[5, 16] = np.inf
    actual, expected = run_both(graph, args)
    for name in expected.outputs:
        assert_matches(actual.outputs[name], expected.outputs[name], SOFTMAX_TOL[dtype], f"{name} edges")


# -- matmul ---------------------------------------------------------------------------

TRANSPOSES = list(itertools.product([False, True], repeat=2))
MATMUL_SIZES = (1, 2, 5, 6, 7, 12, 13, 16, 31, 32, 33, 47, 64, 65, 70)
"""Multiples and non-multiples of the register tile (6 rows, 2 vectors of
8 or 16 lanes: 16 or 32 columns), K = 1 included."""


@functools.cache
def matmul_graph(transpose_a: bool, transpose_b: bool, dtype: DType) -> Graph:
    """C[M,N] = op(A) @ op(B) with every dimension a symbol: one compile for all sizes."""
    a_shape = ("K", "M") if transpose_a else ("M", "K")
    b_shape = ("N", "K") if transpose_b else ("K", "N")
    return make_graph(
        f"matmul_{int(transpose_a)}{int(transpose_b)}_{dtype}",
        {"a": tensor(dtype, a_shape), "b": tensor(dtype, b_shape)},
        lambda b, v: {"c": b.matmul(v["a"], v["b"], transpose_a=transpose_a, transpose_b=transpose_b)},
    )


def matmul_arrays(ta, tb, m, n, k, rng, dtype):
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype.numpy)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype.numpy)
    return a, b


def matmul_bound(a, b, ta, tb, dtype):
    """|computed - exact| <= K u (|A||B|) for each backend, so they differ by at most K eps |A||B|."""
    op_a, op_b = (a.T if ta else a), (b.T if tb else b)
    k = op_a.shape[1]
    return k * EPS[dtype] * (np.abs(op_a.astype(np.float64)) @ np.abs(op_b.astype(np.float64)))


MATMULS = [(ta, tb, d) for ta, tb in TRANSPOSES for d in FLOATS]


@pytest.mark.parametrize(("ta", "tb", "dtype"), MATMULS, ids=[f"ta{int(a)}-tb{int(b)}-{d}" for a, b, d in MATMULS])
def test_matmul_matches_reference(ta: bool, tb: bool, dtype: DType) -> None:
    graph = matmul_graph(ta, tb, dtype)
    rng = np.random.default_rng(7)
    sizes = MATMUL_SIZES
    shapes = [(m, n, sizes[(i + 2 * j) % len(sizes)]) for i, m in enumerate(sizes) for j, n in enumerate(sizes)]
    shapes += [(m, n, 1) for m, n in [(1, 1), (7, 33), (70, 70)]] + [(70, 70, 70), (3, 5, 0), (0, 4, 3)]
    shapes += [(1, 0, 3), (1, 0, 0), (5, 0, 3)]  # no columns, also for one row (a matrix-vector product)
    for m, n, k in shapes:
        a, b = matmul_arrays(ta, tb, m, n, k, rng, dtype)
        actual, expected = run_both(graph, {"a": a, "b": b})
        scale = matmul_bound(a, b, ta, tb, dtype)
        assert_matches(actual.outputs["c"], expected.outputs["c"], Tol(1.0), f"M={m} N={n} K={k}", scale=scale)


@pytest.mark.parametrize(("ta", "tb", "dtype"), MATMULS, ids=[f"ta{int(a)}-tb{int(b)}-{d}" for a, b, d in MATMULS])
def test_matmul_propagates_nan_and_inf(ta: bool, tb: bool, dtype: DType) -> None:
    graph = matmul_graph(ta, tb, dtype)
    rng = np.random.default_rng(8)
    a, b = matmul_arrays(ta, tb, 13, 37, 9, rng, dtype)
    op_a, op_b = (a.T if ta else a), (b.T if tb else b)  # views: writes reach a and b
    op_a[2, 3] = np.nan
    op_a[5, 0] = np.inf
    op_b[0, 36] = 0.0  # inf * 0 = NaN in row 5, column 36
    op_b[4, 20] = -np.inf
    op_a[12, :] = 0.0  # 0 * -inf = NaN in row 12, column 20
    actual, expected = run_both(graph, {"a": a, "b": b})
    finite = np.nan_to_num(a, nan=0, posinf=0, neginf=0), np.nan_to_num(b, nan=0, posinf=0, neginf=0)
    scale = matmul_bound(*finite, ta, tb, dtype)
    assert_matches(actual.outputs["c"], expected.outputs["c"], Tol(1.0), "special values", scale=scale)
    assert np.isnan(expected.outputs["c"]).any()
    assert np.isinf(expected.outputs["c"]).any()


@functools.cache
def matmul_views_graph(dtype: DType) -> Graph:
    """Matmul operands that are views: a transpose node, a reshape, a broadcast row."""

    def build(b, v):
        return {
            "transposed_a": b.matmul(b.transpose(v["at"], perm=[1, 0]), v["w"]),
            "transposed_both": b.matmul(
                b.transpose(v["at"], perm=[1, 0]), b.transpose(v["w"], perm=[1, 0]), transpose_b=True
            ),
            "reshaped": b.matmul(b.reshape(v["x3"], shape=["B", 10]), v["w"]),
            "broadcast": b.matmul(b.broadcast_to(v["row"], shape=["B", 10]), v["w"]),
        }

    inputs = {"at": (10, "B"), "w": (10, 7), "x3": ("B", 2, 5), "row": (10,)}
    return make_graph(f"matmul_views_{dtype}", {k: tensor(dtype, s) for k, s in inputs.items()}, build)


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_matmul_of_views(dtype: DType) -> None:
    graph = matmul_views_graph(dtype)
    rng = np.random.default_rng(9)
    for batch in (1, 7, 40):
        shapes = {a.name: concrete(a.type.shape, batch) for a in graph.inputs}
        args = {k: rng.standard_normal(s).astype(dtype.numpy) for k, s in shapes.items()}
        actual, expected = run_both(graph, args)
        for name in expected.outputs:
            tol = Tol(10 * EPS[dtype], 10 * EPS[dtype] * 10)  # K = 10 terms of magnitude ~1
            assert_matches(actual.outputs[name], expected.outputs[name], tol, f"{name} B={batch}")


# -- one_hot, cast, constant, size, layout ------------------------------------------

NUM_CLASSES = (1, 4, 17, 33)


@functools.cache
def one_hot_graph(label_dtype: DType) -> Graph:
    def build(b, v):
        outputs = {}
        for dtype in ALL_DTYPES:
            for classes in NUM_CLASSES:
                outputs[f"{dtype}_{classes}"] = b.one_hot(v["y"], num_classes=classes, dtype=dtype)
            outputs[f"{dtype}_rank2"] = b.one_hot(v["y2"], num_classes=5, dtype=dtype)
        return outputs

    inputs = {"y": tensor(label_dtype, ("B",)), "y2": tensor(label_dtype, ("B", 3))}
    return make_graph(f"one_hot_{label_dtype}", inputs, build)


@pytest.mark.parametrize("label_dtype", INTS, ids=str)
def test_one_hot_matches_reference(label_dtype: DType) -> None:
    """Every output dtype and class count; labels out of range give all zeros."""
    graph = one_hot_graph(label_dtype)
    rng = np.random.default_rng(10)
    info = np.iinfo(label_dtype.numpy)
    specials = [-1, 0, 1, 3, 4, 5, 16, 17, 32, 33, 1000, info.min, info.max]
    for batch in (1, 5, 33):
        y = rng.integers(-1, 35, batch)
        y[: min(batch, len(specials))] = specials[:batch]
        args = {"y": y.astype(label_dtype.numpy), "y2": rng.integers(-1, 6, (batch, 3)).astype(label_dtype.numpy)}
        actual, expected = run_both(graph, args)
        for name in expected.outputs:
            assert_matches(actual.outputs[name], expected.outputs[name], EXACT, f"{name} B={batch}")


@functools.cache
def cast_graph(source: DType) -> Graph:
    def build(b, v):
        outputs = {}
        for target in ALL_DTYPES:
            outputs[f"{target}"] = b.cast(v["x"], dtype=target)
            outputs[f"{target}_transposed"] = b.cast(b.transpose(v["xt"], perm=[1, 0]), dtype=target)
            outputs[f"{target}_scalar"] = b.cast(v["s"], dtype=target)
            outputs[f"{target}_broadcast"] = b.cast(b.broadcast_to(v["row"], shape=["B", COLUMNS]), dtype=target)
        return outputs

    shapes = {"x": ("B", COLUMNS), "xt": (COLUMNS, "B"), "s": (), "row": (COLUMNS,)}
    return make_graph(f"cast_{source}", {k: tensor(source, s) for k, s in shapes.items()}, build)


def cast_values(source: DType) -> np.ndarray:
    """Values to convert: fractions of both signs (truncation toward zero),
    rounding cases between floats and from big ints, zeros of both signs."""
    if source is DType.bool:
        return np.array([False, True])
    if source.is_int:
        info = np.iinfo(source.numpy)
        return np.array([0, 1, -1, 7, -100, 2**24 + 1, -(2**24) - 1, info.max, info.min], source.numpy)
    values = [0.0, -0.0, 0.5, -0.5, 1.7, -1.7, 2.5, -2.5, 1e9, -1e9, 16777217.0, 0.1, 1e-30, 5e-45, 1e-310]
    return np.array(values, source.numpy)


@pytest.mark.parametrize("source", ALL_DTYPES, ids=str)
def test_cast_between_every_dtype_pair(source: DType) -> None:
    graph = cast_graph(source)
    rng = np.random.default_rng(11)
    values = cast_values(source)
    for batch in (1, 5, 33):
        args = {
            "x": rng.choice(values, (batch, COLUMNS)),
            "xt": rng.choice(values, (COLUMNS, batch)),
            "s": np.asarray(values[batch % len(values)]),
            "row": rng.choice(values, COLUMNS),
        }
        actual, expected = run_both(graph, args)
        for name in expected.outputs:
            assert_matches(actual.outputs[name], expected.outputs[name], EXACT, f"{source} -> {name} B={batch}")


@pytest.mark.parametrize("source", FLOATS, ids=str)
def test_cast_of_non_finite_floats(source: DType) -> None:
    """inf, NaN and overflowing float64 values keep their meaning in float and
    bool targets (float-to-int conversion of these is undefined in NumPy)."""
    graph = cast_graph(source)
    with np.errstate(over="ignore"):
        values = np.array([np.inf, -np.inf, np.nan, 1e300, -1e300, 3.5e38, 1e-320]).astype(source.numpy)
    args = {"x": np.resize(values, (2, COLUMNS)), "xt": np.resize(values, (COLUMNS, 2))}
    args |= {"s": np.asarray(values[2]), "row": np.resize(values, COLUMNS)}
    actual, expected = run_both(graph, args)
    for name in expected.outputs:
        if name.split("_")[0] in ("f32", "f64", "bool"):
            assert_matches(actual.outputs[name], expected.outputs[name], EXACT, f"{source} -> {name}")


CONSTANTS = [
    (2.5, DType.float32),
    (0.1, DType.float32),
    (-0.0, DType.float32),
    (1e-300, DType.float64),
    (math.inf, DType.float64),
    (-math.inf, DType.float32),
    (math.nan, DType.float64),
    (5e-324, DType.float64),
    (-3, DType.int64),
    (2**40, DType.int64),
    (2**31 - 1, DType.int32),
    (-(2**31), DType.int32),
    (True, DType.bool),
    (False, DType.bool),
]


@functools.cache
def constant_graph() -> Graph:
    def build(b, v):
        outputs = {}
        for i, (value, dtype) in enumerate(CONSTANTS):
            outputs[f"c{i}"] = b.constant(value=value, dtype=dtype)
            x = v[f"x_{dtype}"]
            if dtype is DType.bool:
                outputs[f"used{i}"] = b.logical_and(x, b.constant(value=value, dtype=dtype))
            else:
                outputs[f"used{i}"] = b.add(x, b.constant(value=value, dtype=dtype))
            outputs[f"broadcast{i}"] = b.broadcast_to(b.constant(value=value, dtype=dtype), shape=["B", 3])
        return outputs

    return make_graph("constants", {f"x_{d}": tensor(d, ("B", 3)) for d in ALL_DTYPES}, build)


def test_constants_of_every_dtype() -> None:
    """Constants as outputs, as operands and broadcast, special values included."""
    graph = constant_graph()
    rng = np.random.default_rng(12)
    args = {f"x_{d}": draw("real", (4, 3), rng, d) for d in ALL_DTYPES}
    actual, expected = run_both(graph, args)
    for name in expected.outputs:
        assert_matches(actual.outputs[name], expected.outputs[name], EXACT, name)


@functools.cache
def size_graph() -> Graph:
    def build(b, v):
        x = v["x"]
        outputs = {}
        for dtype in (*FLOATS, *INTS):
            for axes in ([0], [1, 2], [0, 1, 2], [], [-1, 0]):
                outputs[f"{dtype}_{axes}"] = b.size(x, axes=axes, dtype=dtype)
        count = b.size(x, axes=[0, 2], dtype=DType.float32)
        outputs["scaled"] = b.mul(x, b.div(1.0, count))  # as mean is lowered
        outputs["offset"] = b.add(v["i"], b.size(x, axes=[0], dtype=DType.int64))
        return outputs

    return make_graph("size", {"x": tensor("f32", ("B", 3, 5)), "i": tensor("i64", ("B",))}, build)


def test_size_follows_the_batch_size() -> None:
    graph = size_graph()
    rng = np.random.default_rng(13)
    for batch in (1, 6, 40):
        args = {"x": draw("real", (batch, 3, 5), rng, "f32"), "i": np.arange(batch, dtype=np.int64)}
        actual, expected = run_both(graph, args)
        for name in expected.outputs:
            assert_matches(actual.outputs[name], expected.outputs[name], EXACT, f"{name} B={batch}")


def test_a_size_of_a_computed_value_reads_only_its_shape() -> None:
    """A size of a value a kernel computes needs only its shape: fusion
    neither orders the size after that kernel nor reads the value through a
    view (a fuzzing campaign found the row merge broadcasting the value to
    the size's scalar shape)."""

    def build(b, v):
        mask = b.ge(v["x"], v["y"])
        count = b.size(mask, axes=[0, 2], dtype=DType.float32)
        alone = b.size(b.cast(v["y"], dtype=DType.int32), axes=[0, 1], dtype=DType.bool)
        total = b.sum(b.mul(b.cast(mask, dtype=DType.float32), count), axes=[0, 1, 2])
        return {"count": count, "alone": alone, "total": total}

    graph = make_graph("size_of_computed", {"x": tensor("f64", ("B", "B", "B")), "y": tensor("f64", ("B", "B"))}, build)
    rng = np.random.default_rng(14)
    for batch in (1, 3, 8):
        args = {"x": draw("real", (batch,) * 3, rng, "f64"), "y": draw("real", (batch,) * 2, rng, "f64")}
        actual, expected = run_both(graph, args)
        for name in expected.outputs:
            assert_matches(actual.outputs[name], expected.outputs[name], EXACT, f"{name} B={batch}")


@functools.cache
def collective_graph(dtype: DType) -> Graph:
    """SyncBatchNorm's statistics: a column sum and a count all-reduced, a
    scalar argument too, and one fed by elementwise work."""

    def build(b, v):
        x = v["x"]
        total = b.allreduce_sum(b.sum(x, axes=[0]))
        count = b.allreduce_sum(b.size(x, axes=[0], dtype=dtype))
        return {
            "normalized": b.sub(x, b.div(total, count)),
            "scalar": b.allreduce_sum(v["s"]),
            "squares": b.mul(b.allreduce_sum(b.mul(x, x)), 2.0),
        }

    return make_graph("collective", {"x": tensor(dtype, ("B", 5)), "s": tensor(dtype, ())}, build)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("ranks", [None, 3])
def test_collectives_sum_over_the_active_group(dtype: DType, ranks: int | None) -> None:
    """Alone, the identity; in a group of `ranks` alike processes (each
    all-reduce multiplies by `ranks`), what the reference computes."""
    graph = collective_graph(dtype)
    rng = np.random.default_rng(3)
    calls = []

    def alike(buffer: np.ndarray) -> None:
        calls.append(buffer.size)
        buffer *= ranks

    expected_calls = []
    for batch in (1, 7, 33):
        args = {"x": draw("real", (batch, 5), rng, dtype), "s": np.asarray(1.5, dtype.numpy)}
        with contextlib.ExitStack() as stack:
            if ranks is not None:
                stack.enter_context(reducing_over(alike))
            actual, expected = run_both(graph, args)
        summed = Tol(atol=64 * EPS[dtype] * float(np.abs(args["x"]).max()))  # the column sum's order differs
        for name in expected.outputs:
            assert_matches(actual.outputs[name], expected.outputs[name], summed, f"{name} B={batch}")
        if ranks is not None:
            np.testing.assert_array_equal(actual.outputs["scalar"], ranks * 1.5)
            expected_calls += 2 * [1, 1, 5, 5 * batch]  # the reference's, then the native code's
    assert sorted(calls) == sorted(expected_calls)


@functools.cache
def layout_graph(dtype: DType) -> Graph:
    """Layout ops as outputs: each is stored by a copy of a strided view."""

    def build(b, v):
        outputs = {
            f"perm{''.join(map(str, p))}": b.transpose(v["r3"], perm=p) for p in itertools.permutations(range(3))
        }
        outputs["T"] = b.transpose(v["m"], perm=[1, 0])
        outputs["reshape_view"] = b.reshape(v["st"], shape=[4, 30])
        outputs["reshape_flat"] = b.reshape(v["st"], shape=[120])
        outputs["reshape_split"] = b.reshape(v["m"], shape=["B", 1, COLUMNS, 1])
        outputs["reshape_of_transpose"] = b.reshape(b.transpose(v["st"], perm=[1, 0, 2]), shape=[24, 5])
        outputs["transpose_of_reshape"] = b.transpose(b.reshape(v["st"], shape=[20, 6]), perm=[1, 0])
        outputs["broadcast_row"] = b.broadcast_to(v["row"], shape=["B", COLUMNS])
        outputs["broadcast_col"] = b.broadcast_to(v["col"], shape=["B", 4, COLUMNS])
        outputs["broadcast_scalar"] = b.broadcast_to(v["s"], shape=[2, "B"])
        outputs["broadcast_transposed"] = b.broadcast_to(b.transpose(v["m"], perm=[1, 0]), shape=[2, COLUMNS, "B"])
        return outputs

    shapes = {"r3": (3, "B", 17), "m": ("B", COLUMNS), "st": (4, 6, 5), "row": (COLUMNS,), "col": ("B", 1, 1), "s": ()}
    return make_graph(f"layout_{dtype}", {k: tensor(dtype, s) for k, s in shapes.items()}, build)


LAYOUT_DTYPES = (DType.float32, DType.float64, DType.int64, DType.bool)
"""One dtype of each width (int32 moves like float32)."""


@pytest.mark.parametrize("dtype", LAYOUT_DTYPES, ids=str)
def test_layout_ops_as_outputs(dtype: DType) -> None:
    graph = layout_graph(dtype)
    rng = np.random.default_rng(14)
    for batch in (1, 5, 33):
        args = {a.name: draw("real", concrete(a.type.shape, batch), rng, dtype) for a in graph.inputs}
        actual, expected = run_both(graph, args)
        for name in expected.outputs:
            assert_matches(actual.outputs[name], expected.outputs[name], EXACT, f"{name} B={batch}")


@functools.cache
def slice_graph(dtype: DType) -> Graph:
    """Slices as views (outputs, operands of elementwise ops, under other
    layout ops) and pads (the slices' transpose) written by strided stores."""

    def part(b, x, starts, steps, shape):
        return b.slice(x, starts=starts, steps=steps, shape=shape)

    def build(b, v):
        r3, m, st = v["r3"], v["m"], v["st"]
        outputs = {
            "columns": part(b, m, [0, 2], [1, 1], ["B", 6]),
            "every_other": part(b, m, [0, 0], [1, 2], ["B", 7]),
            "reversed": part(b, st, [3, 5, 4], [-1, -1, -1], [4, 6, 5]),
            "strided3": part(b, r3, [1, 0, 16], [1, 1, -3], [2, "B", 6]),
            "one_column": part(b, m, [0, 12], [1, 1], ["B", 1]),
            "empty": part(b, st, [0, 2, 0], [1, 1, 1], [4, 0, 5]),
            "of_transpose": part(b, b.transpose(m, perm=[1, 0]), [3, 0], [2, 1], [4, "B"]),
            "reshape_of_slice": b.reshape(part(b, st, [1, 0, 0], [2, 1, 1], [2, 6, 5]), shape=[60]),
            "reshape_of_strided": b.reshape(part(b, st, [0, 0, 1], [1, 1, 2], [4, 6, 2]), shape=[48]),
        }
        if dtype is not DType.bool:
            outputs["sum_of_slices"] = b.add(part(b, m, [0, 0], [1, 2], ["B", 6]), part(b, m, [0, 1], [1, 2], ["B", 6]))
            outputs["pad"] = b.pad(m, starts=[0, 3], steps=[1, 1], shape=["B", 20])
            outputs["pad_strided"] = b.pad(st, starts=[0, 1, 8], steps=[1, 2, -2], shape=[4, 13, 9])
            outputs["pad_of_sum"] = b.pad(b.add(m, m), starts=[0, 1], steps=[1, 3], shape=["B", 40])
            outputs["pad_of_slice"] = b.pad(part(b, st, [0, 0, 1], [1, 1, 2], [4, 6, 2]), shape=[4, 6, 5],
                                            starts=[0, 0, 1], steps=[1, 1, 2])  # fmt: skip
        return outputs

    shapes = {"r3": (3, "B", 17), "m": ("B", COLUMNS), "st": (4, 6, 5)}
    return make_graph(f"slice_{dtype}", {k: tensor(dtype, s) for k, s in shapes.items()}, build)


@pytest.mark.parametrize("dtype", LAYOUT_DTYPES, ids=str)
def test_slices_and_pads(dtype: DType) -> None:
    graph = slice_graph(dtype)
    rng = np.random.default_rng(15)
    for batch in (0, 1, 5, 33):
        args = {a.name: draw("real", concrete(a.type.shape, batch), rng, dtype) for a in graph.inputs}
        actual, expected = run_both(graph, args)
        for name in expected.outputs:
            assert_matches(actual.outputs[name], expected.outputs[name], EXACT, f"{name} B={batch}")


@functools.cache
def rows_graph(dtype: DType, index_dtype: DType) -> Graph:
    """gather and scatter_add: rows of tables (stored or through views) at
    indices of several shapes, fused with elementwise work, with columns of
    one and of more than a vector."""

    def build(b, v):
        t, i, i2, x = v["t"], v["i"], v["i2"], v["x"]
        return {
            "rows": b.gather(t, i),
            "rows2": b.gather(t, i2),
            "of_transpose": b.gather(b.transpose(v["tt"], perm=[1, 0]), i),
            "one_column": b.gather(v["t1"], i2),
            "fused": b.add(b.mul(b.gather(t, i), 2.0), x),
            "scatter": b.scatter_add(x, i, rows=10),
            "scatter_skip": b.scatter_add(b.mul(x, x), i, rows=10, skip=3),
            "scatter2": b.scatter_add(b.gather(t, i2), i2, rows=12),
            "scatter_one_column": b.scatter_add(b.gather(v["t1"], i2), i2, rows=4),
        }

    shapes = {"t": (10, COLUMNS), "tt": (COLUMNS, 10), "t1": (10, 1), "x": ("B", COLUMNS)}
    inputs = {k: tensor(dtype, s) for k, s in shapes.items()}
    inputs |= {"i": tensor(index_dtype, ("B",)), "i2": tensor(index_dtype, ("B", 3))}
    return make_graph(f"rows_{dtype}_{index_dtype}", inputs, build)


@pytest.mark.parametrize("index_dtype", INTS, ids=str)
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_gather_and_scatter_add(dtype: DType, index_dtype: DType) -> None:
    """Exact, and indices outside the table (negative too) are clamped into it."""
    graph = rows_graph(dtype, index_dtype)
    rng = np.random.default_rng(16)
    for batch in (0, 1, 5, 33):
        args = {}
        for a in graph.inputs:
            shape = concrete(a.type.shape, batch)
            args[a.name] = (
                rng.integers(-3, 13, shape).astype(index_dtype.numpy)
                if a.type.dtype.is_int
                else draw("real", shape, rng, dtype)
            )
        actual, expected = run_both(graph, args)
        for name in expected.outputs:
            assert_matches(actual.outputs[name], expected.outputs[name], EXACT, f"{name} B={batch}")


# -- random numbers ----------------------------------------------------------------------

SEED, STEP = tensor(DType.int64, ()), tensor(DType.int64, ())


@functools.cache
def random_graph(dtype: DType) -> Graph:
    """random_uniform stored (as outputs, or read through a view or broadcast)
    and recomputed where it is read: by elementwise ops, a reduction and a
    matmul's epilogue."""

    def build(b, v):
        def uniform(shape, stream):
            return b.random_uniform(v["seed"], v["step"], shape=shape, dtype=dtype, stream=stream)

        def keep(shape, stream, p=0.5):
            return b.ge(uniform(shape, stream), p)

        x = v["x"]
        product = b.matmul(x, v["w"], transpose_b=True)
        return {
            "u": uniform(("B", COLUMNS), 0),
            "u3": uniform((3, "B", 17), 1),
            "one": uniform((1,), 2),
            "masked": b.select(keep(("B", COLUMNS), 3), b.mul(x, 2.0), 0.0),
            "transposed": b.select(b.transpose(keep(("B", COLUMNS), 4), perm=[1, 0]), v["xt"], 0.0),
            "broadcast": b.add(x, uniform((1, COLUMNS), 5)),
            "row_sums": b.sum(b.select(keep(("B", COLUMNS), 6, 0.25), x, 0.0), axes=[1]),
            "epilogue": b.select(keep(("B", 9), 7), b.relu(product), 0.0),
            "two_loops": b.select(keep(("B", COLUMNS), 8), x, v["row"]),  # the row's broadcast keeps B apart
            "middle_sums": b.sum(b.select(keep((3, "B", 17), 9), v["x3"], 0.0), axes=[1]),
        }

    inputs = {
        "x": tensor(dtype, ("B", COLUMNS)),
        "xt": tensor(dtype, (COLUMNS, "B")),
        "row": tensor(dtype, (COLUMNS,)),
        "x3": tensor(dtype, (3, "B", 17)),
        "seed": SEED,
        "step": STEP,
    }
    return make_graph(f"random_{dtype}", inputs, build, params={"w": tensor(dtype, (9, COLUMNS))})


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_random_uniform_matches_reference_bit_for_bit(dtype: DType) -> None:
    """The same numbers wherever they are computed; sums and matmuls within
    their rounding, and the epilogue's zeros (the mask) exactly."""
    graph = random_graph(dtype)
    rng = np.random.default_rng(15)
    for batch, seed, step in [(0, 1, 0), (1, 2, 3), (5, -7, 2**40), (33, 2**62, 9)]:
        args = {
            "x": draw("positive", (batch, COLUMNS), rng, dtype),
            "xt": draw("real", (COLUMNS, batch), rng, dtype),
            "row": draw("real", (COLUMNS,), rng, dtype),
            "x3": draw("positive", (3, batch, 17), rng, dtype),
            "w": draw("positive", (9, COLUMNS), rng, dtype),
            "seed": np.asarray(seed, np.int64),
            "step": np.asarray(step, np.int64),
        }
        actual, expected = run_both(graph, args)
        for name in expected.outputs:
            tol = Tol(rtol=COLUMNS * EPS[dtype]) if name in ("row_sums", "middle_sums", "epilogue") else EXACT
            assert_matches(actual.outputs[name], expected.outputs[name], tol, f"{name} B={batch}")
        np.testing.assert_array_equal(actual.outputs["epilogue"] == 0, expected.outputs["epilogue"] == 0)


# -- coverage -------------------------------------------------------------------------

GRAPHS = [
    *(functools.partial(elementwise_graph, op, d) for op, d in ELEMENTWISE),
    *(functools.partial(reduction_graph, op, d) for op, d in REDUCTIONS),
    *(functools.partial(softmax_graph, d) for d in FLOATS),
    *(functools.partial(matmul_graph, ta, tb, d) for ta, tb, d in MATMULS),
    *(functools.partial(matmul_views_graph, d) for d in FLOATS),
    *(functools.partial(one_hot_graph, d) for d in INTS),
    *(functools.partial(cast_graph, d) for d in ALL_DTYPES),
    constant_graph,
    size_graph,
    *(functools.partial(layout_graph, d) for d in LAYOUT_DTYPES),
    *(functools.partial(slice_graph, d) for d in LAYOUT_DTYPES),
    *(functools.partial(rows_graph, d, i) for d in FLOATS for i in INTS),
    *(functools.partial(random_graph, d) for d in FLOATS),
    *(functools.partial(collective_graph, d) for d in FLOATS),
]
"""Every graph the tests above compile."""


def test_every_op_is_compiled_natively() -> None:
    covered = {node.op.name for make in GRAPHS for node in make().nodes}
    assert covered == set(OPS), f"not exercised natively: {sorted(set(OPS) - covered)}"
