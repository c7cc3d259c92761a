"""The reference interpreter: binding B, validating arguments, keeping dtypes."""

from __future__ import annotations

import numpy as np
import pytest

from ember.ir import Builder, DType, DTypeError, Graph, ShapeError, TensorType, interpret
from ember.ir.interpreter import bind_symbols


def f64(*shape) -> TensorType:
    return TensorType(DType.float64, shape)


@pytest.fixture
def batch_graph() -> Graph:
    """x: f64[B,3], y: f64[B], w: param f64[3] -> rows = x @ w + y, the batch
    size as a float, and x broadcast to [2,B,3]; w is updated to w * 2."""
    graph = Graph("batch")
    x = graph.add_argument("x", f64("B", 3))
    y = graph.add_argument("y", f64("B"))
    w = graph.add_argument("w", f64(3), "param")
    b = Builder(graph)
    graph.outputs["rows"] = b.add(b.sum(b.mul(x, w), axes=[1]), y)
    graph.outputs["count"] = b.size(x, axes=[0], dtype="f64")
    graph.outputs["tiled"] = b.broadcast_to(x, shape=[2, "B", 3])
    graph.updates["w"] = b.mul(w, 2.0)
    return graph


@pytest.mark.parametrize("batch", [1, 5, 0])
def test_batch_dim_is_bound_from_the_arguments(batch_graph: Graph, batch: int, rng: np.random.Generator) -> None:
    x, y, w = rng.normal(size=(batch, 3)), rng.normal(size=batch), rng.normal(size=3)
    result = interpret(batch_graph, {"x": x, "y": y, "w": w})
    np.testing.assert_allclose(result.outputs["rows"], x @ w + y, rtol=1e-12)
    assert result.outputs["count"] == batch
    assert result.outputs["tiled"].shape == (2, batch, 3)
    np.testing.assert_array_equal(result.updates["w"], 2 * w)


def test_bind_symbols_returns_the_sizes() -> None:
    graph = Graph("two")
    graph.add_argument("a", f64("B", "T"))
    graph.add_argument("b", f64("T"))
    assert bind_symbols(graph, {"a": np.zeros((4, 7)), "b": np.zeros(7)}) == {"B": 4, "T": 7}


def test_arguments_are_not_modified(batch_graph: Graph) -> None:
    args = {"x": np.ones((2, 3)), "y": np.ones(2), "w": np.ones(3)}
    copies = {k: v.copy() for k, v in args.items()}
    interpret(batch_graph, args)
    for name, value in args.items():
        np.testing.assert_array_equal(value, copies[name])


def test_inconsistent_batch_dim(batch_graph: Graph) -> None:
    with pytest.raises(ShapeError, match=r"%y has B=4 but an earlier argument has B=5"):
        interpret(batch_graph, {"x": np.zeros((5, 3)), "y": np.zeros(4), "w": np.zeros(3)})


def test_missing_argument(batch_graph: Graph) -> None:
    with pytest.raises(ShapeError, match=r"missing argument %w: f64\[3\]"):
        interpret(batch_graph, {"x": np.zeros((5, 3)), "y": np.zeros(5)})


@pytest.mark.parametrize(
    ("name", "value", "error", "match"),
    [
        ("x", np.zeros((5, 3), np.float32), DTypeError, "%x must be float64, got float32"),
        ("w", np.zeros(3, np.int64), DTypeError, "%w must be float64, got int64"),
        ("x", np.zeros(15), ShapeError, r"%x must have shape f64\[B,3\], got \(15,\)"),
        ("x", np.zeros((5, 3, 1)), ShapeError, r"%x must have shape f64\[B,3\]"),
        ("x", np.zeros((5, 4)), ShapeError, r"%x must have shape f64\[B,3\], got \(5, 4\)"),
        ("w", np.zeros(()), ShapeError, r"%w must have shape f64\[3\]"),
    ],
)
def test_bad_argument_is_named(batch_graph: Graph, name: str, value: np.ndarray, error, match: str) -> None:
    args = {"x": np.zeros((5, 3)), "y": np.zeros(5), "w": np.zeros(3), name: value}
    with pytest.raises(error, match=match):
        interpret(batch_graph, args)


@pytest.mark.parametrize("dtype", ["f32", "i32", "i64"])
def test_results_keep_the_declared_dtype(dtype: str) -> None:
    """NumPy would promote some of these (sum of i32 to i64, f32 * Python float...)."""
    dt = DType.parse(dtype)
    graph = Graph("keep")
    x = graph.add_argument("x", TensorType(dt, ("B", 4)))
    b = Builder(graph)
    graph.outputs["scaled"] = b.mul(x, 3)
    graph.outputs["total"] = b.sum(x, axes=[0, 1])
    graph.outputs["peak"] = b.max(b.neg(x), axes=[1], keepdims=True)
    graph.outputs["count"] = b.size(x, axes=[0], dtype=dtype)
    if dt.is_float:
        graph.outputs["mean"] = b.mean(b.sigmoid(x), axes=[0])
        graph.outputs["soft"] = b.log_softmax(b.div(x, 0.1), axis=1)
    x_value = np.arange(8).reshape(2, 4).astype(dt.numpy)
    outputs = interpret(graph, {"x": x_value}).outputs
    for name, value in outputs.items():
        assert value.dtype == dt.numpy, name
        assert value.shape == graph.outputs[name].type.concrete_shape({"B": 2}), name
    np.testing.assert_array_equal(outputs["scaled"], 3 * x_value)
    assert outputs["total"] == 28


def test_comparisons_give_bool_results() -> None:
    graph = Graph("cmp")
    x = graph.add_argument("x", TensorType(DType.float32, (3,)))
    graph.outputs["pos"] = Builder(graph).gt(x, 0.0)
    out = interpret(graph, {"x": np.array([-1.0, 0.0, 2.0], np.float32)}).outputs["pos"]
    assert out.dtype == np.bool_
    np.testing.assert_array_equal(out, [False, False, True])


def test_a_node_with_a_wrong_declared_shape_is_caught() -> None:
    """The interpreter re-checks each result against the node's type."""
    graph = Graph("lie")
    x = graph.add_argument("x", f64(3))
    relu = Builder(graph).relu(x).node
    graph.outputs["out"] = graph.append(relu.op, (x,), relu.attrs, f64(4))
    with pytest.raises(ShapeError, match=r"'relu' produced shape \(3,\), expected f64\[4\]"):
        interpret(graph, {"x": np.zeros(3)})
