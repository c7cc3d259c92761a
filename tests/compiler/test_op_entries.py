"""What the compiler reads from the op table: every op is classified by its
entry, `lower` rules compute the op's reference semantics, and `view` rules
of layout ops address the elements the op's reference semantics picks."""

from __future__ import annotations

import numpy as np
import pytest

from ember.compiler.fusion import node_class
from ember.compiler.lower import lower_for_codegen
from ember.compiler.views import View, layout_view
from ember.ir import OPS, Builder, DType, Graph, TensorType, interpret
from ember.ir.graph import Node

LOWERED = sorted(name for name, op in OPS.items() if op.lower is not None)
LAYOUT = sorted(name for name, op in OPS.items() if op.view is not None)


def _one_op_graph(op: str, input_shape: tuple[int, ...], **attrs) -> Graph:
    graph = Graph(op)
    x = graph.add_argument("x", TensorType(DType.float64, input_shape))
    graph.outputs["out"] = Builder(graph).emit(op, x, **attrs)
    return graph


@pytest.mark.parametrize("name", sorted(OPS))
def test_every_op_is_classified_or_lowered(name: str) -> None:
    op = OPS[name]
    if op.lower is None:
        assert node_class(Node(op, (), {})) in ("matmul", "reduce", "layout", "elementwise", "collective")


def test_the_table_has_lowered_and_layout_ops() -> None:
    assert {"mean", "softmax", "log_softmax"} <= set(LOWERED)
    assert {"reshape", "transpose", "broadcast_to"} <= set(LAYOUT)


@pytest.mark.parametrize("name", LOWERED)
def test_lower_rules_compute_the_reference_semantics(name: str) -> None:
    attrs = {"axes": [1]} if OPS[name].kind == "reduction" else {"axis": 1}
    x = np.random.default_rng(0).normal(size=(3, 5, 2))
    graph = _one_op_graph(name, x.shape, **attrs)
    want = interpret(graph, {"x": x}).outputs["out"]
    lowered = lower_for_codegen(_one_op_graph(name, x.shape, **attrs))
    assert all(n.op.lower is None for n in lowered.nodes)
    np.testing.assert_allclose(interpret(lowered, {"x": x}).outputs["out"], want, rtol=1e-12)


def gather(view: View, base: np.ndarray) -> np.ndarray:
    """The elements `view` addresses in the flat `base`, in the view's shape."""
    flat = base.reshape(-1)
    index = np.full(view.shape, view.offset.constant)
    for axis, (size, stride) in enumerate(zip(view.shape, view.strides, strict=True)):
        steps = np.arange(size).reshape([-1 if k == axis else 1 for k in range(len(view.shape))])
        index = index + steps * stride.constant
    return flat[index]


def layout_cases():
    for name in LAYOUT:
        op = OPS[name]
        x = TensorType(DType.float64, (2, 3, 4))
        attr = op.attrs[0]
        for value in attr.examples([x])[:12]:
            yield pytest.param(name, {attr.name: value}, id=f"{name}-{value}")


@pytest.mark.parametrize(("name", "attrs"), list(layout_cases()))
def test_view_rules_address_the_reference_elements(name: str, attrs: dict) -> None:
    x = np.arange(24.0).reshape(2, 3, 4)
    graph = _one_op_graph(name, x.shape, **attrs)
    want = interpret(graph, {"x": x}).outputs["out"]
    view = layout_view(graph.outputs["out"], lambda v: v.node is None)
    if view is None:  # this layout needs a copy
        return
    assert view.base is graph.arguments[0]
    np.testing.assert_array_equal(gather(view, x), want)
