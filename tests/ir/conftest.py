"""Shared helpers for the IR tests: random inputs by op domain, and one-op graphs."""

from __future__ import annotations

import numpy as np
import pytest

from ember.ir import Builder, DType, Graph, TensorType, interpret


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
