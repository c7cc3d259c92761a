"""Every op's VJP rule against central finite differences, in float64 and
with PyTorch gradcheck's tolerances.

Each case builds `loss = sum(op(params...) * w)` with fixed random weights
`w`, differentiates it with `ember.compiler.autodiff`, and compares each
`NAME.grad` output with central differences of the loss computed by the
reference interpreter."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from inputs import draw

from ember.compiler.autodiff import autodiff, grad_name
from ember.ir import OPS, Builder, DType, Graph, TensorType, Value, interpret, verify

from .conftest import argument_type

EPS, RTOL, ATOL = 1e-6, 1e-3, 1e-5

Shapes = tuple[tuple[int, ...], ...]
Draw = Callable[[np.random.Generator, Shapes], list[np.ndarray]]


@dataclass
class Case:
    """One gradient check: `op` applied to inputs of `shapes` with `attrs`.

    Inputs come from the op's domains unless `draw` makes them; float inputs
    become params (differentiated), others plain inputs."""

    op: str
    shapes: Shapes
    attrs: dict[str, Any] = field(default_factory=dict)
    draw: Draw | None = None
    eps: float = EPS

    @property
    def id(self) -> str:
        shapes = "_".join(f"[{','.join(map(str, s))}]" for s in self.shapes)
        attrs = ",".join(f"{k}={v}" for k, v in self.attrs.items())
        return f"{self.op}-{shapes}" + (f"-{attrs}" if attrs else "")

    def inputs(self, rng: np.random.Generator) -> list[np.ndarray]:
        if self.draw is not None:
            return self.draw(rng, self.shapes)
        return [draw(d, s, rng) for d, s in zip(OPS[self.op].domains, self.shapes, strict=True)]


def separated(rng: np.random.Generator, shapes: Shapes) -> list[np.ndarray]:
    """Inputs for maximum/minimum: the first on odd, the second on even
    multiples of 0.1, so no pair is within 0.1 of a tie."""
    return [
        np.asarray(0.1 * (2 * rng.integers(-10, 10, shapes[0]) + 1)),
        np.asarray(0.2 * rng.integers(-10, 10, shapes[1])),
    ]


def distinct(rng: np.random.Generator, shapes: Shapes) -> list[np.ndarray]:
    """Inputs for the max reduction: all values at least 0.1 apart (no ties)."""
    (shape,) = shapes
    return [0.1 * rng.permutation(math.prod(shape)).reshape(shape) - 0.5]


def rows_and_indices(rng: np.random.Generator, shapes: Shapes) -> list[np.ndarray]:
    """A float table or values, and indices into 4 rows with repeats."""
    values, indices = shapes
    return [rng.normal(size=values), np.array([0, 2, 2, 3, 0, 2][: math.prod(indices)]).reshape(indices)]


def away_from_kinks(rng: np.random.Generator, shapes: Shapes) -> list[np.ndarray]:
    """Inputs in [-5, 5], at least 0.1 away from hardswish's kinks at -3 and 3."""
    (shape,) = shapes
    x = rng.uniform(-5, 5, shape)
    return [np.where(np.abs(np.abs(x) - 3) < 0.1, x * 0.9, x)]


ACTIVATIONS = ["erf", "log1p", "expm1", "gelu", "gelu_tanh", "silu", "mish", "hardswish", "hardsigmoid", "cos", "sin"]

BROADCASTS = [((3, 4), (3, 4)), ((3, 4), (4,)), ((4,), (3, 4)), ((3, 4), (3, 1)), ((3, 1), (1, 4)), ((3, 4), ())]
REDUCE_AXES = [(0,), (1,), (-1,), (0, 2), (0, 1, 2), ()]

CASES = [
    *(Case(op, ((3, 4),)) for op in ["neg", "abs", "exp", "log", "sqrt", "rsqrt", "tanh", "sigmoid", "relu"]),
    *(Case(op, ((3, 4),)) for op in ACTIVATIONS),
    *(Case(op, ((4, 5),), draw=away_from_kinks) for op in ["hardswish", "hardsigmoid", "mish", "silu", "erf", "gelu"]),
    *(Case("elu", ((3, 4),), {"alpha": alpha}) for alpha in (1.0, 0.3)),
    *(
        Case("softplus", ((4, 5),), {"beta": beta, "threshold": threshold}, draw=away_from_kinks)
        for beta, threshold in [(1.0, 20.0), (2.0, 3.0), (0.5, 1.0)]
    ),
    Case("exp", ((),)),
    Case("allreduce_sum", ((3, 4),)),  # no process group: the identity (tests/distributed checks a group)
    Case("sigmoid", ((2, 3, 2),)),
    *(Case("leaky_relu", ((3, 4),), {"alpha": alpha}) for alpha in (0.01, 0.2, -0.5)),
    *(Case(op, shapes) for op in ["add", "sub", "mul", "div", "pow"] for shapes in BROADCASTS),
    *(Case(op, shapes, draw=separated) for op in ["maximum", "minimum"] for shapes in BROADCASTS),
    Case("select", ((3, 4), (3, 4), (3, 4))),
    Case("select", ((3, 4), (4,), ())),
    Case("select", ((3, 1), (1, 4), (3, 4))),
    *(
        Case("matmul", ((3, 2) if ta else (2, 3), (4, 3) if tb else (3, 4)), {"transpose_a": ta, "transpose_b": tb})
        for ta in (False, True)
        for tb in (False, True)
    ),
    *(
        Case(op, ((2, 3, 4),), {"axes": axes, "keepdims": keep})
        for op in ["sum", "mean"]
        for axes in REDUCE_AXES
        for keep in (False, True)
    ),
    *(
        Case("max", ((2, 3, 4),), {"axes": axes, "keepdims": keep}, draw=distinct)
        for axes in REDUCE_AXES
        for keep in (False, True)
    ),
    *(
        Case(op, (shape,), {"axis": axis})
        for op in ["softmax", "log_softmax"]
        for shape, axis in [((3, 4), 0), ((3, 4), 1), ((3, 4), -1), ((2, 3, 4), 0), ((2, 3, 4), 1), ((2, 3, 4), -1)]
    ),
    Case("transpose", ((3, 4),), {"perm": (1, 0)}),
    *(Case("transpose", ((2, 3, 4),), {"perm": perm}) for perm in [(0, 1, 2), (1, 0, 2), (2, 0, 1), (1, 2, 0)]),
    *(Case("reshape", ((3, 4),), {"shape": shape}) for shape in [(12,), (2, 6), (2, 2, 3)]),
    Case("reshape", ((),), {"shape": (1, 1)}),
    *(
        Case("broadcast_to", (source,), {"shape": shape})
        for source, shape in [((4,), (3, 4)), ((3, 1), (3, 4)), ((), (2, 3)), ((1, 4), (2, 3, 4))]
    ),
    Case("slice", ((3, 5),), {"starts": (1, 0), "steps": (1, 2), "shape": (2, 3)}),
    Case("slice", ((2, 3, 4),), {"starts": (1, 2, 3), "steps": (-1, -1, -2), "shape": (2, 3, 2)}),
    Case("pad", ((2, 3),), {"starts": (1, 4), "steps": (1, -2), "shape": (4, 5)}),
    Case("gather", ((4, 3), (6,)), draw=rows_and_indices),
    Case("gather", ((4, 3), (2, 3)), draw=rows_and_indices),  # padding_idx is not a derivative: test_embedding
    Case("scatter_add", ((6, 3), (6,)), {"rows": 4}, draw=rows_and_indices),
    Case("scatter_add", ((2, 3, 5), (2, 3)), {"rows": 4, "skip": 0}, draw=rows_and_indices),
    Case("cast", ((3, 4),), {"dtype": "f64"}),
    # f64 -> f32 rounds to ~1e-7, so a wider step: the cast is linear, the step adds no error.
    Case("cast", ((3, 4),), {"dtype": "f32"}, eps=1e-2),
]

NON_DIFFERENTIABLE = {
    "sign", "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "constant", "size", "one_hot", "random_uniform",
}  # fmt: skip


def weighted_loss_graph(case: Case, inputs: list[np.ndarray]) -> Graph:
    """`loss = sum(op(x0, x1, ...) * w)`; float inputs are params."""
    graph = Graph("check")
    args = [
        graph.add_argument(f"x{i}", argument_type(a), "param" if a.dtype.kind == "f" else "input")
        for i, a in enumerate(inputs)
    ]
    b = Builder(graph)
    out = b.emit(case.op, *args, **case.attrs)
    assert out.type.dtype.is_float, f"{case.op} has no float result to differentiate"
    graph.outputs["loss"] = weighted_sum(b, graph, out)
    return graph


def weighted_sum(b: Builder, graph: Graph, out: Value) -> Value:
    """sum(out * w) in float64, for a new input `w` shaped like `out`."""
    if out.type.dtype is not DType.float64:
        out = b.cast(out, dtype="f64")
    w = graph.add_argument("w", out.type)
    return b.sum(b.mul(out, w), axes=range(out.type.rank))


def weights(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Weights with magnitudes in [0.5, 1.5], so no gradient entry is tiny."""
    return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.5, 1.5, shape)


def numeric_gradient(graph: Graph, args: dict[str, np.ndarray], name: str, eps: float) -> np.ndarray:
    """Central differences of the `loss` output with respect to argument `name`."""
    grad = np.zeros_like(args[name])
    for index in np.ndindex(grad.shape):
        total = []
        for step in (eps, -eps):
            shifted = args[name].copy()
            shifted[index] += step
            total.append(interpret(graph, {**args, name: shifted}).outputs["loss"])
        grad[index] = (total[0] - total[1]) / (2 * eps)
    return grad


def check_gradients(graph: Graph, args: dict[str, np.ndarray], eps: float = EPS) -> None:
    """Every param's autodiff gradient of `loss` matches central differences."""
    backward = verify(autodiff(graph))
    result = interpret(backward, args).outputs
    np.testing.assert_allclose(result["loss"], interpret(graph, args).outputs["loss"], rtol=1e-12)
    for p in graph.params:
        analytic = result[grad_name(p.name)]
        assert analytic.shape == args[p.name].shape
        numeric = numeric_gradient(graph, args, p.name, eps)
        np.testing.assert_allclose(analytic, numeric, rtol=RTOL, atol=ATOL, err_msg=f"gradient of {p.name}")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_vjp_matches_finite_differences(case: Case) -> None:
    rng = np.random.default_rng(0)
    inputs = case.inputs(rng)
    graph = weighted_loss_graph(case, inputs)
    args = {f"x{i}": a for i, a in enumerate(inputs)}
    args["w"] = weights(graph.argument("w").type.shape, rng)
    assert graph.params, "the case has nothing to differentiate"
    check_gradients(graph, args, case.eps)


def test_every_op_is_gradient_checked_or_non_differentiable() -> None:
    covered = {c.op for c in CASES}
    assert set(OPS) == covered | NON_DIFFERENTIABLE, "add gradient cases for new ops, or list them here"
    assert not covered & NON_DIFFERENTIABLE
    assert all(OPS[op].vjp is None for op in NON_DIFFERENTIABLE)
    assert all(OPS[op].vjp is not None for op in covered)


def test_gradients_with_symbolic_batch_dim() -> None:
    """A small MLP loss over x: f64[B,3], checked at B=5 and B=2."""
    graph = Graph("mlp")
    x = graph.add_argument("x", TensorType(DType.float64, ("B", 3)))
    t = graph.add_argument("t", TensorType(DType.float64, ("B", 4)))
    w = graph.add_argument("w", TensorType(DType.float64, (3, 4)), "param")
    bias = graph.add_argument("bias", TensorType(DType.float64, (4,)), "param")
    b = Builder(graph)
    h = b.tanh(b.add(b.matmul(x, w), bias))
    per_row = b.sum(b.mul(b.log_softmax(h, axis=1), t), axes=[1])
    graph.outputs["loss"] = b.add(b.mean(per_row, axes=[0]), b.mean(b.max(h, axes=[0]), axes=[0]))
    rng = np.random.default_rng(1)
    params = {"w": rng.normal(size=(3, 4)), "bias": rng.normal(size=4)}
    for batch in (5, 2):
        args = {"x": rng.normal(size=(batch, 3)), "t": rng.normal(size=(batch, 4)), **params}
        check_gradients(graph, args)


def test_non_differentiable_op_gives_zero_gradient() -> None:
    graph = Graph("sign")
    x = graph.add_argument("x", TensorType(DType.float64, (3,)), "param")
    b = Builder(graph)
    graph.outputs["loss"] = b.sum(b.mul(b.sign(x), x), axes=[0])  # |x|, but only through the second operand
    grads = interpret(autodiff(graph), {"x": np.array([-2.0, 0.5, 3.0])}).outputs
    np.testing.assert_array_equal(grads["x.grad"], [-1.0, 1.0, 1.0])


def test_unused_param_gets_zero_gradient() -> None:
    graph = Graph("unused")
    x = graph.add_argument("x", TensorType(DType.float64, (2,)), "param")
    graph.add_argument("y", TensorType(DType.float64, (2, 3)), "param")
    graph.outputs["loss"] = Builder(graph).sum(x, axes=[0])
    grads = interpret(autodiff(graph), {"x": np.ones(2), "y": np.ones((2, 3))}).outputs
    np.testing.assert_array_equal(grads["y.grad"], np.zeros((2, 3)))


@pytest.mark.parametrize(("op", "x_wins"), [("maximum", 1.0), ("minimum", 0.0)])
def test_extremum_ties_split_the_gradient(op: str, x_wins: float) -> None:
    graph = Graph("tie")
    x = graph.add_argument("x", TensorType(DType.float64, (2,)), "param")
    y = graph.add_argument("y", TensorType(DType.float64, (2,)), "param")
    b = Builder(graph)
    graph.outputs["loss"] = b.sum(b.emit(op, x, y), axes=[0])
    grads = interpret(autodiff(graph), {"x": np.array([1.0, 2.0]), "y": np.array([1.0, 0.0])}).outputs
    np.testing.assert_array_equal(grads["x.grad"], [0.5, x_wins])
    np.testing.assert_array_equal(grads["y.grad"], [0.5, 1.0 - x_wins])


def test_max_reduction_ties_share_the_gradient() -> None:
    graph = Graph("tie")
    x = graph.add_argument("x", TensorType(DType.float64, (2, 3)), "param")
    b = Builder(graph)
    graph.outputs["loss"] = b.sum(b.max(x, axes=[1]), axes=[0])
    grads = interpret(autodiff(graph), {"x": np.array([[3.0, 1.0, 3.0], [0.0, 2.0, 2.0]])}).outputs
    np.testing.assert_array_equal(grads["x.grad"], [[0.5, 0.0, 0.5], [0.0, 0.5, 0.5]])


def gradient_at(op: str, x: list[float], **attrs) -> np.ndarray:
    graph = Graph(op)
    value = graph.add_argument("x", TensorType(DType.float64, (len(x),)), "param")
    b = Builder(graph)
    graph.outputs["loss"] = b.sum(b.emit(op, value, **attrs), axes=[0])
    return interpret(autodiff(graph), {"x": np.array(x)}).outputs["x.grad"]


def test_gradients_at_kinks_are_pytorchs() -> None:
    """hardswish: 0 at -3 and 1 at 3; hardsigmoid: 0 at both ends; elu:
    the alpha branch at 0; softplus: 1 past the threshold."""
    np.testing.assert_array_equal(gradient_at("hardswish", [-3.0, 3.0, -4.0, 4.0, 0.0]), [0.0, 1.0, 0.0, 1.0, 0.5])
    np.testing.assert_array_equal(gradient_at("hardsigmoid", [-3.0, 3.0, 0.0]), [0.0, 0.0, 1 / 6])
    np.testing.assert_array_equal(gradient_at("elu", [0.0, 1.0], alpha=0.5), [0.5, 1.0])
    np.testing.assert_array_equal(gradient_at("softplus", [30.0, 100.0], beta=1.0, threshold=20.0), [1.0, 1.0])


def test_relu_gradient_is_zero_at_zero() -> None:
    graph = Graph("relu")
    x = graph.add_argument("x", TensorType(DType.float64, (3,)), "param")
    b = Builder(graph)
    graph.outputs["loss"] = b.sum(b.relu(x), axes=[0])
    grads = interpret(autodiff(graph), {"x": np.array([-1.0, 0.0, 1.0])}).outputs
    np.testing.assert_array_equal(grads["x.grad"], [0.0, 0.0, 1.0])


def test_cast_through_an_integer_has_no_gradient() -> None:
    graph = Graph("round")
    x = graph.add_argument("x", TensorType(DType.float64, (3,)), "param")
    b = Builder(graph)
    graph.outputs["loss"] = b.sum(b.cast(b.cast(x, dtype="i32"), dtype="f64"), axes=[0])
    grads = interpret(autodiff(graph), {"x": np.array([0.5, 1.5, -2.5])}).outputs
    np.testing.assert_array_equal(grads["x.grad"], np.zeros(3))
