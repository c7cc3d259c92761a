"""Accuracy of the vector exp, log, tanh, sigmoid, gelu_tanh, pow, erf,
gelu, log1p, expm1, cos and sin that
compiler/codegen/vecmath.py emits, measured through small native graphs
against NumPy in long double (80-bit on x86-64), and their IEEE special
values.

vecmath.py documents "a few ulp (relative error below 1e-6)" in float32 and
"about 1e-15" in float64. The bounds asserted here are tighter: the maximum
relative error, in units of the dtype's epsilon (one ulp at 1.0), that a
sweep of 2e7 points measured, rounded up (exp 0.66, log 1.93, tanh 1.22,
sigmoid 1.25 eps; gelu_tanh 1.86 eps of 0.5|x|; pow 1.49 eps per unit of
1 + |y ln x|; erf 1.38, log1p 2.42, expm1 2.16 eps), in both dtypes."""

from __future__ import annotations

import functools
import math
import re

import numpy as np
import pytest
from native_helpers import EPS, FLOATS, VECMATH_RTOL, make_graph, native, tensor

import ember
from ember import functional as F
from ember import nn
from ember.compiler.plan import PROFILE_SUFFIX
from ember.ir import DType, Graph, interpret

LONG = np.longdouble
SAMPLES = 200_000

ULPS = {
    "exp": 1.0,
    "log": 2.0,
    "tanh": 1.5,
    "sigmoid": 1.5,
    "gelu_tanh": 2.5,
    "pow": 2.0,
    "erf": 2.0,
    "gelu": 2.5,
    "log1p": 3.0,
    "expm1": 3.0,
    "cos": 2.0,
    "sin": 2.0,
}
"""Asserted bounds on the relative error, in epsilons (gelu's and gelu_tanh's
are relative to max(|gelu(x)|, 0.5|x|); pow's is per unit of 1 + |y ln x|).
erf's includes its float64 reference's own error (math.erf: below one ulp)."""

GELU_K, GELU_C = math.sqrt(2.0 / math.pi), 0.044715


@functools.cache
def math_graph(dtype: DType) -> Graph:
    """Every vector math function of x (and x**y), one output each."""

    def build(b, v):
        x, y = v["x"], v["y"]
        return {
            "exp": b.exp(x),
            "log": b.log(x),
            "tanh": b.tanh(x),
            "sigmoid": b.sigmoid(x),
            "gelu_tanh": b.gelu_tanh(x),
            "pow": b.pow(x, y),
            "erf": b.erf(x),
            "gelu": b.gelu(x),
            "log1p": b.log1p(x),
            "expm1": b.expm1(x),
            "cos": b.cos(x),
            "sin": b.sin(x),
        }

    return make_graph(f"vecmath_{dtype}", {"x": tensor(dtype, ("N",)), "y": tensor(dtype, ("N",))}, build)


def evaluate(dtype: DType, x, y=None) -> dict[str, np.ndarray]:
    """The native results for arrays x (and y, default 1)."""
    x = np.asarray(x, dtype.numpy).ravel()
    y = np.ones_like(x) if y is None else np.asarray(y, dtype.numpy).ravel()
    return native(math_graph(dtype))({"x": x, "y": y}).outputs


def reference(name: str, x, y=None) -> np.ndarray:
    """`name` of x (and y) in long double."""
    x = np.asarray(x).astype(LONG)
    with np.errstate(all="ignore"):
        if name == "sigmoid":
            return 1 / (1 + np.exp(-x))
        if name == "gelu_tanh":
            return 0.5 * x * (1 + np.tanh(LONG(GELU_K) * (x + LONG(GELU_C) * x**3)))
        if name in ("erf", "gelu"):
            erf = np.vectorize(math.erf, otypes=[np.float64])
            if name == "erf":
                return erf(x.astype(np.float64)).astype(LONG)
            return 0.5 * x * (1 + erf((x / np.sqrt(LONG(2))).astype(np.float64)).astype(LONG))
        if name == "pow":
            return x ** np.asarray(y).astype(LONG)
        return getattr(np, name)(x)


def normal_range(truth: np.ndarray, dtype: DType) -> np.ndarray:
    """Where the exact result is a finite number of the normal range of `dtype`."""
    info = np.finfo(dtype.numpy)
    return np.isfinite(truth) & (np.abs(truth) >= info.tiny) & (np.abs(truth) <= info.max)


def relative_error_in_eps(actual, truth, dtype: DType, scale=None) -> float:
    """max |actual - truth| / scale over the normal range, in epsilons of `dtype`."""
    keep = normal_range(truth, dtype)
    assert keep.sum() > truth.size // 2, "the sample should lie mostly in the normal range"
    scale = np.abs(truth) if scale is None else np.asarray(scale, LONG)
    error = np.abs(np.asarray(actual, LONG)[keep] - truth[keep]) / scale[keep]
    return float(error.max() / LONG(EPS[dtype]))


def assert_accuracy(name: str, measured: float, dtype: DType) -> None:
    documented = VECMATH_RTOL[dtype] / EPS[dtype]
    assert measured <= ULPS[name], f"{name} {dtype}: {measured:.3f} eps > {ULPS[name]} eps"
    assert measured <= documented, f"{name} {dtype}: above the documented {VECMATH_RTOL[dtype]}"


def sample(dtype: DType, *parts: np.ndarray) -> np.ndarray:
    return np.concatenate(parts).astype(dtype.numpy)


EXP_RANGE = {DType.float32: (-100.0, 100.0), DType.float64: (-745.0, 745.0)}
MAX_EXPONENT = {DType.float32: 38, DType.float64: 307}

# -- accuracy --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_exp_accuracy(dtype: DType) -> None:
    """exp over its whole range: relative error where the result is normal,
    at most one subnormal step below, inf above the largest float, 0 far below."""
    rng = np.random.default_rng(30)
    low, high = EXP_RANGE[dtype]
    x = sample(dtype, rng.uniform(low, high, SAMPLES), rng.uniform(-1, 1, SAMPLES // 10))
    actual, truth = evaluate(dtype, x)["exp"], reference("exp", x)
    assert_accuracy("exp", relative_error_in_eps(actual, truth, dtype), dtype)
    info = np.finfo(dtype.numpy)
    subnormal = (truth > 0) & (truth < info.tiny)
    assert subnormal.any()
    assert np.abs(actual[subnormal] - truth[subnormal]).max() <= info.smallest_subnormal
    overflow = truth > info.max
    assert overflow.any()
    assert np.all(actual[overflow] == np.inf)
    assert np.all(actual[truth < info.smallest_subnormal / 2] == 0)


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_log_accuracy(dtype: DType) -> None:
    """log over every exponent, densely near 1 (where log is small), and of subnormals."""
    rng = np.random.default_rng(31)
    info = np.finfo(dtype.numpy)
    top = MAX_EXPONENT[dtype]
    subnormals = np.exp(rng.uniform(np.log(float(info.smallest_subnormal)), np.log(float(info.tiny)), SAMPLES // 4))
    x = sample(
        dtype,
        10.0 ** rng.uniform(-top, top, SAMPLES),
        rng.uniform(0.5, 2.0, SAMPLES),
        1 + rng.choice([-1, 1], SAMPLES // 4) * 10.0 ** rng.uniform(-7, -1, SAMPLES // 4),
        subnormals,
        [info.smallest_subnormal, info.tiny, info.max, 1 - info.epsneg, 1 + info.eps],
    )
    x = x[x != 1]
    actual, truth = evaluate(dtype, x)["log"], reference("log", x)
    assert_accuracy("log", relative_error_in_eps(actual, truth, dtype), dtype)


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_tanh_accuracy(dtype: DType) -> None:
    """tanh on [-20, 20], densely near 0 (the odd polynomial) and around 0.625
    (where the formula switches)."""
    rng = np.random.default_rng(32)
    signs = rng.choice([-1, 1], SAMPLES)
    x = sample(
        dtype,
        rng.uniform(-20, 20, SAMPLES),
        signs * 10.0 ** rng.uniform(-30, 0, SAMPLES),
        signs[: SAMPLES // 4] * rng.uniform(0.6, 0.65, SAMPLES // 4),
    )
    actual, truth = evaluate(dtype, x)["tanh"], reference("tanh", x)
    assert_accuracy("tanh", relative_error_in_eps(actual, truth, dtype), dtype)


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_sigmoid_accuracy(dtype: DType) -> None:
    rng = np.random.default_rng(33)
    low, high = EXP_RANGE[dtype]
    x = sample(dtype, rng.uniform(low * 0.9, high * 0.9, SAMPLES), rng.uniform(-5, 5, SAMPLES))
    actual, truth = evaluate(dtype, x)["sigmoid"], reference("sigmoid", x)
    assert_accuracy("sigmoid", relative_error_in_eps(actual, truth, dtype), dtype)


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_gelu_accuracy(dtype: DType) -> None:
    """For negative x, 1 + tanh(u) cancels (any formula in working precision
    loses relative accuracy there), so the error is measured against
    max(|gelu(x)|, 0.5|x|): relative for x > 0, absolute in 1 + tanh for x < 0."""
    rng = np.random.default_rng(34)
    x = sample(
        dtype, rng.uniform(-10, 10, SAMPLES), rng.choice([-1, 1], SAMPLES) * 10.0 ** rng.uniform(-20, 0, SAMPLES)
    )
    for name in ("gelu_tanh", "gelu"):
        actual, truth = evaluate(dtype, x)[name], reference(name, x)
        scale = np.maximum(np.abs(truth), 0.5 * np.abs(x.astype(LONG)))
        assert_accuracy(name, relative_error_in_eps(actual, truth, dtype, scale), dtype)
        positive = x > 0
        assert relative_error_in_eps(actual[positive], truth[positive], dtype) <= ULPS[name]


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_erf_accuracy(dtype: DType) -> None:
    """erf on [-8, 8] (it rounds to +-1 beyond 4 in float32, 6 in float64),
    densely near 0 (the odd polynomial) and around 1 (where the formula switches)."""
    rng = np.random.default_rng(36)
    signs = rng.choice([-1, 1], SAMPLES)
    x = sample(
        dtype,
        rng.uniform(-8, 8, SAMPLES),
        signs * 10.0 ** rng.uniform(-30, 0, SAMPLES),
        signs[: SAMPLES // 4] * rng.uniform(0.95, 1.05, SAMPLES // 4),
    )
    actual, truth = evaluate(dtype, x)["erf"], reference("erf", x)
    assert_accuracy("erf", relative_error_in_eps(actual, truth, dtype), dtype)


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_cos_and_sin_accuracy(dtype: DType) -> None:
    """cos and sin up to 2**30 (the argument reduction is exact there),
    densely near 0 and near multiples of pi/2 (where one of them is near 0
    and only an exact reduction keeps its relative accuracy)."""
    rng = np.random.default_rng(38)
    signs = rng.choice([-1, 1], SAMPLES)
    near_zeros = rng.integers(-(10**6), 10**6, SAMPLES) * (np.pi / 2) + rng.uniform(-1e-3, 1e-3, SAMPLES)
    x = sample(
        dtype,
        rng.uniform(-10, 10, SAMPLES),
        signs * 10.0 ** rng.uniform(-30, 9, SAMPLES),
        near_zeros,
    )
    outputs = evaluate(dtype, x)
    for name in ("cos", "sin"):
        assert_accuracy(name, relative_error_in_eps(outputs[name], reference(name, x), dtype), dtype)


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_log1p_and_expm1_accuracy(dtype: DType) -> None:
    """Relative accuracy near 0, where log(1 + x) and exp(x) - 1 cancel."""
    rng = np.random.default_rng(37)
    signs = rng.choice([-1, 1], SAMPLES)
    small = signs * 10.0 ** rng.uniform(-30, 0, SAMPLES)
    x = sample(dtype, small, rng.uniform(-0.9, 50, SAMPLES), 10.0 ** rng.uniform(0, 30, SAMPLES // 4))
    outputs = evaluate(dtype, x)
    truth = np.log1p(x.astype(LONG))
    assert_accuracy("log1p", relative_error_in_eps(outputs["log1p"], truth, dtype), dtype)
    x = sample(dtype, small, rng.uniform(-40, 80, SAMPLES))
    truth = np.expm1(x.astype(LONG))
    assert_accuracy("expm1", relative_error_in_eps(evaluate(dtype, x)["expm1"], truth, dtype), dtype)


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_pow_accuracy(dtype: DType) -> None:
    """x**y = exp(y log x): log's error grows with |y log x|, so the relative
    error is measured per unit of 1 + |y ln x|."""
    rng = np.random.default_rng(35)
    x = sample(dtype, 10.0 ** rng.uniform(-3, 3, SAMPLES), rng.uniform(0.5, 2, SAMPLES))
    y = sample(dtype, rng.uniform(-10, 10, SAMPLES), rng.integers(-5, 6, SAMPLES))
    actual, truth = evaluate(dtype, x, y)["pow"], reference("pow", x, y)
    condition = 1 + np.abs(y.astype(LONG) * np.log(x.astype(LONG)))
    assert_accuracy("pow", relative_error_in_eps(actual, truth, dtype, np.abs(truth) * condition), dtype)


# -- special values ----------------------------------------------------------------------

INF, NAN = math.inf, math.nan


def special_cases(dtype: DType) -> dict[str, list[tuple]]:
    """(x, expected) per function, or (x, y, expected) for pow."""
    info = np.finfo(dtype.numpy)
    over, under = (89.0, -104.0) if dtype is DType.float32 else (710.0, -746.0)
    tiny, sub = float(info.tiny), float(info.smallest_subnormal)
    return {
        "exp": [(INF, INF), (-INF, 0.0), (NAN, NAN), (over, INF), (under, 0.0), (0.0, 1.0), (-0.0, 1.0), (sub, 1.0)],
        "log": [
            (0.0, -INF),
            (-0.0, -INF),
            (-1.0, NAN),
            (-sub, NAN),
            (-INF, NAN),
            (INF, INF),
            (NAN, NAN),
            (1.0, 0.0),
        ],
        "tanh": [
            (INF, 1.0),
            (-INF, -1.0),
            (-0.0, -0.0),
            (0.0, 0.0),
            (NAN, NAN),
            (50.0, 1.0),
            (-50.0, -1.0),
            (tiny, tiny),
            (-sub, -sub),
            (1e-30, 1e-30),
        ],
        "sigmoid": [(INF, 1.0), (-INF, 0.0), (NAN, NAN), (0.0, 0.5), (-0.0, 0.5), (1000.0, 1.0)],
        "gelu_tanh": [(INF, INF), (NAN, NAN), (0.0, 0.0), (-0.0, -0.0), (1000.0, 1000.0), (-1000.0, -0.0)],
        "gelu": [(INF, INF), (NAN, NAN), (0.0, 0.0), (-0.0, -0.0), (1000.0, 1000.0), (-1000.0, -0.0)],
        "erf": [(INF, 1.0), (-INF, -1.0), (NAN, NAN), (0.0, 0.0), (-0.0, -0.0), (-sub, -sub), (10.0, 1.0)],
        "log1p": [(0.0, 0.0), (-0.0, -0.0), (-1.0, -INF), (-2.0, NAN), (INF, INF), (NAN, NAN), (sub, sub)],
        "expm1": [(0.0, 0.0), (-0.0, -0.0), (INF, INF), (-INF, -1.0), (NAN, NAN), (over, INF), (sub, sub)],
        # beyond 2**50 no float64 names an angle: NaN, on both backends
        "cos": [(0.0, 1.0), (-0.0, 1.0), (INF, NAN), (-INF, NAN), (NAN, NAN), (2.0**51, NAN), (sub, 1.0)],
        "sin": [(0.0, 0.0), (-0.0, -0.0), (INF, NAN), (-INF, NAN), (NAN, NAN), (-(2.0**51), NAN), (-sub, -sub)],
        "pow": [
            (2.0, 0.0, 1.0),
            (NAN, 0.0, 1.0),
            (1.0, NAN, 1.0),
            (1.0, INF, 1.0),
            (0.0, -1.0, INF),
            (0.0, 2.0, 0.0),
            (-0.0, 3.0, -0.0),
            (-0.0, -3.0, -INF),
            (-0.0, 0.5, 0.0),
            (INF, -1.0, 0.0),
            (INF, 0.5, INF),
            (-INF, 3.0, -INF),
            (-INF, 0.5, INF),
            (-INF, -0.5, 0.0),
            (-2.0, 0.5, NAN),
            (-1.0, INF, 1.0),
            (0.5, INF, 0.0),
            (2.0, INF, INF),
            (2.0, -INF, 0.0),
            (NAN, 1.0, NAN),
        ],
    }


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("name", list(ULPS))
def test_special_values(name: str, dtype: DType) -> None:
    """IEEE results at 0, -0, +-inf, NaN, overflow and underflow, with the sign
    of zero; the reference interpreter agrees on every one."""
    cases = special_cases(dtype)[name]
    columns = list(zip(*cases, strict=True))
    x = np.array(columns[0], dtype.numpy)
    y = np.array(columns[1], dtype.numpy) if name == "pow" else np.ones_like(x)
    expected = np.array(columns[-1], dtype.numpy)
    actual = evaluate(dtype, x, y)[name]
    graph = math_graph(dtype)
    oracle = interpret(graph, {"x": x, "y": y}).outputs[name]
    for result, source in ((actual, "native"), (oracle, "reference")):
        for i, want in enumerate(expected):
            got = result[i]
            same = (np.isnan(got) and np.isnan(want)) or (got == want and np.signbit(got) == np.signbit(want))
            assert same, (
                f"{source} {name}({x[i]!r}{', ' + repr(y[i]) if name == 'pow' else ''}) = {got!r}, not {want!r}"
            )


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_every_lane_of_a_vector_is_computed(dtype: DType) -> None:
    """The same special values spread over lengths 1..40 (full vectors, masked
    tails), each at every position: no lane is skipped or computed twice."""
    values = np.array([0.5, -INF, NAN, -0.0, 3.0, 1e-30, INF, -2.0], dtype.numpy)
    expected = {name: reference(name, values).astype(dtype.numpy) for name in ("exp", "tanh", "sigmoid")}
    for n in range(1, 41):
        x = np.resize(values, n + 3)[3:]
        outputs = evaluate(dtype, x)
        for name, want in expected.items():
            np.testing.assert_allclose(
                outputs[name], np.resize(want, n + 3)[3:], rtol=2 * EPS[dtype], atol=0, err_msg=f"{name} n={n}"
            )


def test_activations_compile_to_packed_arithmetic_without_calls() -> None:
    """No scalar libm call and no call at all in the fused kernel of every
    activation built on exp, log, erf, log1p and expm1: packed multiplies."""

    class Activations(nn.Module):
        def forward(self, x):
            total = F.erf(x) + F.gelu(x) + F.gelu(x, approximate="tanh") + F.silu(x) + F.mish(x)
            total = total + F.elu(x) + F.softplus(x) + F.hardswish(x) + F.hardsigmoid(x)
            return total + F.log1p(x.abs()) + F.expm1(x)

    for dtype, packed in (("float32", "ps"), ("float64", "pd")):
        asm = ember.compile(Activations(), input_shape=(64,), dtype=dtype).dump("asm")
        # the profiled twin of the entry calls the kernel between two reads of the clock
        kernels = re.split(rf"^\S+{re.escape(PROFILE_SUFFIX)}:$.*?(?=^\S+:$|\Z)", asm, flags=re.M | re.S)
        assert len(kernels) == 2, "the profiled entry is one function"
        assert not [line for part in kernels for line in part.splitlines() if re.search(r"\bcall", line)]
        assert re.search(rf"\bv?(mul|fmadd\d*){packed}\b", asm), f"no packed {dtype} arithmetic"
