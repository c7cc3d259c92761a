"""Helpers for the differential tests of the native backend: small graphs
built in one call, inputs drawn from an op's domain or from edge values,
and an element-by-element comparison of native results with the reference
interpreter's that reports the first mismatches with their inputs."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ember.ir import Builder, DType, Graph, RunResult, TensorType, Value, interpret
from ember.runtime.native import GraphFunction

FLOATS = (DType.float32, DType.float64)
INTS = (DType.int32, DType.int64)
NUMERIC = (*FLOATS, *INTS)

EPS = {DType.float32: float(np.finfo(np.float32).eps), DType.float64: float(np.finfo(np.float64).eps)}
"""Machine epsilon (one ulp at 1.0) per float dtype."""

VECMATH_RTOL = {DType.float32: 1e-6, DType.float64: 1e-15}
"""The relative error compiler/codegen/vecmath.py documents for its exp,
log and tanh: below 1e-6 in float32, about 1e-15 in float64."""

REFERENCE_ULPS = 4
"""NumPy's own exp/log/tanh are accurate to a few ulp: the reference's share
of the difference between the two backends."""


def transcendental_rtol(dtype: DType) -> float:
    """The relative difference allowed between native and reference results
    of exp, log or tanh: the native bound plus the reference's few ulp."""
    return VECMATH_RTOL[dtype] + REFERENCE_ULPS * EPS[dtype]


def tensor(dtype: DType | str, shape: Sequence) -> TensorType:
    return TensorType(DType.parse(dtype), tuple(shape))


BuildResult = Mapping[str, Value] | tuple[Mapping[str, Value], Mapping[str, Value]]


def make_graph(
    name: str,
    inputs: Mapping[str, TensorType],
    build: Callable[[Builder, dict[str, Value]], BuildResult],
    params: Mapping[str, TensorType] | None = None,
    state: Mapping[str, TensorType] | None = None,
    buffers: Mapping[str, TensorType] | None = None,
) -> Graph:
    """A graph with the given arguments; `build(b, args)` returns its outputs,
    or a pair (outputs, updates)."""
    graph = Graph(name)
    args: dict[str, Value] = {}
    roles = (("input", inputs), ("param", params or {}), ("buffer", buffers or {}), ("state", state or {}))
    for role, table in roles:
        for arg_name, type in table.items():
            args[arg_name] = graph.add_argument(arg_name, type, role)
    result = build(Builder(graph), args)
    outputs, updates = result if isinstance(result, tuple) else (result, {})
    graph.outputs.update(outputs)
    graph.updates.update(updates)
    return graph


@functools.cache
def native(graph: Graph) -> GraphFunction:
    """`graph` compiled to native code (once per graph object)."""
    return GraphFunction(graph)


def run_both(graph: Graph, arguments: Mapping[str, np.ndarray]) -> tuple[RunResult, RunResult]:
    """(native result, reference result) of one run of `graph`."""
    expected = interpret(graph, arguments)
    actual = native(graph)(arguments)
    return actual, expected


# -- inputs -------------------------------------------------------------------


def float_edges(dtype: DType) -> np.ndarray:
    """Edge values of a float dtype: signed zeros, small integers and halves,
    the largest finite values, tiny and subnormal values, infinities, NaN,
    and the arguments where exp overflows and underflows."""
    info = np.finfo(dtype.numpy)
    large = 1e30 if dtype is DType.float32 else 1e300
    values = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -1.5, 3.0, -3.0, 0.3, 20.0, -20.0, 100.0, -100.0]
    values += [large, -large, float(info.max), -float(info.max), 1e-30, -1e-30, float(info.tiny)]
    values += [float(info.smallest_subnormal), -3 * float(info.smallest_subnormal), np.inf, -np.inf, np.nan]
    values += [88.0, -88.0, 90.0, -104.0, 709.0, -709.0, 745.5, -745.5]
    return np.array(values, dtype.numpy)


def int_edges(dtype: DType) -> np.ndarray:
    """Edge values of an int dtype: 0, +-1, small values and the extremes."""
    info = np.iinfo(dtype.numpy)
    return np.array([0, 1, -1, 2, -7, 100, info.max, info.min, info.max - 1, info.min + 1], dtype.numpy)


def edges(dtype: DType) -> np.ndarray:
    if dtype is DType.bool:
        return np.array([False, True])
    return float_edges(dtype) if dtype.is_float else int_edges(dtype)


def grid(columns: int, *values: np.ndarray) -> tuple[np.ndarray, ...]:
    """Every combination of `values` (one array per operand), laid out as
    matrices with `columns` columns (the last row padded by repetition)."""
    mesh = [m.ravel() for m in np.meshgrid(*values, indexing="ij")]
    rows = -(-len(mesh[0]) // columns)
    return tuple(np.resize(m, rows * columns).reshape(rows, columns) for m in mesh)


# -- comparison ---------------------------------------------------------------


@dataclass(frozen=True)
class Tol:
    """|actual - expected| <= atol + rtol * scale, where scale is |expected|
    unless the caller gives another; `zero_sign` also requires zero results
    to have the same sign. NaN and infinite results must match exactly."""

    rtol: float = 0.0
    atol: float = 0.0
    zero_sign: bool = False


EXACT = Tol(zero_sign=True)


def assert_matches(
    actual: np.ndarray,
    expected: np.ndarray,
    tol: Tol = EXACT,
    name: str = "",
    scale: np.ndarray | None = None,
    inputs: Mapping[str, np.ndarray] | None = None,
) -> None:
    """`actual` (native) equals `expected` (reference) in dtype, shape, and
    every element within `tol`. Failures list the first offending elements
    (with the matching elements of same-shaped `inputs`)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype, f"{name}: dtype {actual.dtype}, reference {expected.dtype}"
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape}, reference {expected.shape}"
    if actual.dtype.kind != "f":
        bad = actual != expected
    else:
        with np.errstate(invalid="ignore", over="ignore"):
            bad = np.isnan(actual) != np.isnan(expected)
            special = ~np.isfinite(actual) | ~np.isfinite(expected)
            bad |= special & ~np.isnan(expected) & (actual != expected)
            limit = tol.atol + tol.rtol * (np.abs(expected) if scale is None else np.broadcast_to(scale, actual.shape))
            error = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
            bad |= ~special & ~(error <= limit)
            if tol.zero_sign:
                bad |= (actual == 0) & (expected == 0) & (np.signbit(actual) != np.signbit(expected))
    if bad.any():
        where = np.argwhere(bad)
        lines = [f"{name}: {len(where)} of {actual.size} elements differ ({tol})"]
        for index in map(tuple, where[:10]):
            context = ", ".join(f"{k}={v[index]!r}" for k, v in (inputs or {}).items() if np.shape(v) == actual.shape)
            lines.append(f"  at {index}: native {actual[index]!r}, reference {expected[index]!r}  {context}")
        raise AssertionError("\n".join(lines))


def max_relative_error(actual: np.ndarray, truth: np.ndarray) -> float:
    """The largest |actual - truth| / |truth| over elements where truth is a
    nonzero finite number (0 when there are none)."""
    truth = np.asarray(truth, np.longdouble)
    keep = np.isfinite(truth) & (truth != 0)
    if not keep.any():
        return 0.0
    error = np.abs(np.asarray(actual, np.longdouble)[keep] - truth[keep]) / np.abs(truth[keep])
    return float(error.max())


# -- gradients ------------------------------------------------------------------
FD_EPS = 1e-6


def central_differences(loss_of, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """d(loss)/d(param) of `loss_of(params) -> float` by float64 central differences."""
    grads = {}
    for name, value in params.items():
        grad = np.zeros_like(value)
        for index in np.ndindex(value.shape):
            losses = []
            for delta in (FD_EPS, -FD_EPS):
                shifted = value.copy()
                shifted[index] += delta
                losses.append(loss_of({**params, name: shifted}))
            grad[index] = (losses[0] - losses[1]) / (2 * FD_EPS)
        grads[name] = grad
    return grads
