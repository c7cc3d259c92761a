"""Shared helpers for the IR tests: random inputs by op domain, and one-op graphs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from ember.ir import Builder, DType, Graph, TensorType, interpret

NUM_CLASSES = 4
"""Labels drawn for the `label` domain lie in [0, NUM_CLASSES)."""


def draw(domain: str, shape: Sequence[int], rng: np.random.Generator, dtype: DType | str = "f64") -> np.ndarray:
    """Random values from an op's input domain (see `OpDef.domains`).

    Numeric values keep a magnitude of at least 0.25 (1 for integers), so
    they stay away from kinks such as relu's at 0 and from division by 0."""
    dtype = DType.parse(dtype)
    shape = tuple(shape)
    if domain == "bool":
        return rng.random(shape) < 0.5
    if domain == "label":
        return rng.integers(0, NUM_CLASSES, shape).astype(dtype.numpy)
    if domain not in ("real", "positive", "nonzero", "any"):
        raise ValueError(f"unknown domain {domain!r}")
    if dtype.is_int:
        magnitude = rng.integers(1, 10, shape)
    else:
        magnitude = rng.uniform(0.5, 2.0, shape) if domain == "positive" else rng.uniform(0.25, 2.0, shape)
    sign = 1 if domain == "positive" else rng.choice([-1, 1], shape)
    return np.asarray(sign * magnitude, dtype.numpy)


def argument_type(array: np.ndarray) -> TensorType:
    """The static tensor type of `array`."""
    return TensorType(DType.parse(array.dtype), array.shape)


def op_graph(op: str, *arrays: np.ndarray, **attrs) -> Graph:
    """A graph with inputs `x0`, `x1`, ... typed like `arrays` and one output
    `out = op(x0, x1, ..., **attrs)`."""
    graph = Graph(op)
    args = [graph.add_argument(f"x{i}", argument_type(a)) for i, a in enumerate(arrays)]
    graph.outputs["out"] = Builder(graph).emit(op, *args, **attrs)
    return graph


def run_op(op: str, *arrays, **attrs) -> np.ndarray:
    """`op(*arrays, **attrs)` computed by the reference interpreter."""
    arrays = [np.asarray(a) for a in arrays]
    graph = op_graph(op, *arrays, **attrs)
    return interpret(graph, {f"x{i}": a for i, a in enumerate(arrays)}).outputs["out"]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
