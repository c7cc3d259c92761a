"""Elementwise ops: unary math, activations, broadcasting binary ops,
comparisons and select. Gradients may keep the result's broadcast shape;
autodiff sums them down to each input's shape."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..dtypes import DType
from ..errors import DTypeError
from ..opdef import Attr, OpDef
from ..types import TensorType, broadcast_shapes
from .rules import broadcast_binary, comparison, float_unary, numeric_unary, require_same_dtype

GELU_K = math.sqrt(2.0 / math.pi)
GELU_C = 0.044715


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # Both branches are evaluated; each is exact where it is selected.
    return np.where(x >= 0, 1 / (1 + np.exp(-x)), np.exp(x) / (1 + np.exp(x))).astype(x.dtype)


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1 + np.tanh(GELU_K * (x + GELU_C * x**3)))


def _gelu_vjp(b, node, g, wanted):
    (x,) = node.inputs
    x2 = b.mul(x, x)
    t = b.tanh(b.mul(b.add(x, b.mul(b.mul(x, x2), GELU_C)), GELU_K))
    outer = b.mul(b.add(t, 1.0), 0.5)
    inner = b.mul(b.mul(b.mul(x, b.sub(1.0, b.mul(t, t))), 0.5 * GELU_K), b.add(b.mul(x2, 3 * GELU_C), 1.0))
    return [b.mul(g, b.add(outer, inner))]


def _rsqrt_vjp(b, node, g, wanted):
    y = node.output
    return [b.mul(b.mul(g, -0.5), b.mul(y, b.mul(y, y)))]


def _pow_vjp(b, node, g, wanted):
    # As PyTorch: d/dx is 0 where the exponent is 0, d/dy is 0 where x == 0 and y >= 0.
    x, y = node.inputs
    grads = [None, None]
    if wanted[0]:
        dx = b.mul(g, b.mul(y, b.pow(x, b.sub(y, 1.0))))
        grads[0] = b.select(b.eq(y, 0.0), 0.0, dx)
    if wanted[1]:
        dy = b.mul(g, b.mul(node.output, b.log(x)))
        grads[1] = b.select(b.logical_and(b.eq(x, 0.0), b.ge(y, 0.0)), 0.0, dy)
    return grads


def _extremum_vjp(wins: str):
    # As PyTorch: the winner gets the gradient; ties split it in half.
    def vjp(b, node, g, wanted):
        x, y = node.inputs
        half = b.mul(g, 0.5)
        tie = b.eq(x, y)
        gx = b.select(getattr(b, wins)(x, y), g, b.select(tie, half, 0.0))
        gy = b.select(getattr(b, wins)(y, x), g, b.select(tie, half, 0.0))
        return [gx, gy]

    return vjp


def _select_infer(types: Sequence[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    cond, a, b = types
    if cond.dtype is not DType.bool:
        raise DTypeError(f"op 'select' needs a bool condition, got {cond}")
    dtype = require_same_dtype("select", (a, b))
    return TensorType(dtype, broadcast_shapes(cond.shape, a.shape, b.shape))


def _logical_infer(types: Sequence[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    if any(t.dtype is not DType.bool for t in types):
        raise DTypeError(f"op 'logical_and' needs bool inputs, got {', '.join(map(str, types))}")
    return TensorType(DType.bool, broadcast_shapes(*(t.shape for t in types)))


def unary(name: str, evaluate, vjp, emit, doc: str, domain: str = "real", numeric: bool = False, attrs=()) -> OpDef:
    infer = numeric_unary(name) if numeric else float_unary(name)
    return OpDef(name, 1, infer, evaluate, vjp, "elementwise", attrs=attrs, domains=(domain,), doc=doc, emit=emit)


def binary(
    name: str, evaluate, vjp, emit, doc: str, domains=("real", "real"), float_only=False, commutative=False
) -> OpDef:
    return OpDef(
        name,
        2,
        broadcast_binary(name, float_only),
        evaluate,
        vjp,
        "elementwise",
        domains=domains,
        doc=doc,
        commutative=commutative,
        emit=emit,
    )


def compare(name: str, evaluate, doc: str) -> OpDef:
    return OpDef(
        name,
        2,
        comparison(name),
        evaluate,
        None,
        "elementwise",
        domains=("real", "real"),
        doc=doc,
        emit=lambda m, x, y: m.compare(name, x, y),
    )


OPS = [
    # unary math
    unary("neg", np.negative, lambda b, n, g, w: [b.neg(g)], lambda m, x: m.neg(x), "-x", numeric=True),
    unary(
        "abs",
        np.abs,
        lambda b, n, g, w: [b.mul(g, b.sign(n.inputs[0]))],
        lambda m, x: m.abs(x),
        "|x|",
        numeric=True,
    ),
    unary("sign", np.sign, None, lambda m, x: m.sign(x), "-1, 0 or 1 (no gradient)", numeric=True),
    unary("exp", np.exp, lambda b, n, g, w: [b.mul(g, n.output)], lambda m, x: m.exp(x), "e**x"),
    unary(
        "log",
        np.log,
        lambda b, n, g, w: [b.div(g, n.inputs[0])],
        lambda m, x: m.log(x),
        "natural log",
        domain="positive",
    ),
    unary(
        "sqrt",
        np.sqrt,
        lambda b, n, g, w: [b.div(g, b.mul(n.output, 2.0))],
        lambda m, x: m.sqrt(x),
        "square root",
        domain="positive",
    ),
    unary(
        "rsqrt",
        lambda x: 1 / np.sqrt(x),
        _rsqrt_vjp,
        lambda m, x: m.div(1.0, m.sqrt(x)),
        "1 / sqrt(x)",
        domain="positive",
    ),
    unary(
        "tanh",
        np.tanh,
        lambda b, n, g, w: [b.mul(g, b.sub(1.0, b.mul(n.output, n.output)))],
        lambda m, x: m.tanh(x),
        "tanh",
    ),
    # activations
    unary(
        "sigmoid",
        _sigmoid,
        lambda b, n, g, w: [b.mul(g, b.mul(n.output, b.sub(1.0, n.output)))],
        lambda m, x: m.div(1.0, m.add(1.0, m.exp(m.neg(x)))),
        "1 / (1 + e**-x)",
    ),
    unary(
        "relu",
        lambda x: np.maximum(x, 0),
        lambda b, n, g, w: [b.select(b.gt(n.output, 0.0), g, 0.0)],
        lambda m, x: m.maximum(x, 0.0),
        "max(x, 0); gradient 0 at x == 0 as in PyTorch",
    ),
    unary(
        "leaky_relu",
        lambda x, alpha: np.where(x > 0, x, x * alpha),
        lambda b, n, g, w: [b.select(b.gt(n.inputs[0], 0.0), g, b.mul(g, n.attrs["alpha"]))],
        lambda m, x, alpha: m.select(m.compare("gt", x, 0.0), x, m.mul(x, alpha)),
        "x if x > 0 else alpha * x",
        attrs=(Attr("alpha", "float", 0.01),),
    ),
    unary(
        "gelu",
        _gelu,
        _gelu_vjp,
        lambda m, x: m.mul(m.mul(x, 0.5), m.add(1.0, m.tanh(m.mul(m.fma(m.mul(x, x), m.mul(x, GELU_C), x), GELU_K)))),
        'GELU, tanh approximation: 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3))), as torch.nn.GELU(approximate="tanh")',
    ),
    # binary arithmetic with NumPy broadcasting
    binary("add", np.add, lambda b, n, g, w: [g, g], lambda m, x, y: m.add(x, y), "x + y", commutative=True),
    binary("sub", np.subtract, lambda b, n, g, w: [g, b.neg(g)], lambda m, x, y: m.sub(x, y), "x - y"),
    binary(
        "mul",
        np.multiply,
        lambda b, n, g, w: [w[0] and b.mul(g, n.inputs[1]), w[1] and b.mul(g, n.inputs[0])],
        lambda m, x, y: m.mul(x, y),
        "x * y",
        commutative=True,
    ),
    binary(
        "div",
        np.divide,
        lambda b, n, g, w: [w[0] and b.div(g, n.inputs[1]), w[1] and b.neg(b.div(b.mul(g, n.output), n.inputs[1]))],
        lambda m, x, y: m.div(x, y),
        "x / y",
        domains=("real", "nonzero"),
        float_only=True,
    ),
    binary(
        "maximum",
        np.maximum,
        _extremum_vjp("gt"),
        lambda m, x, y: m.maximum(x, y),
        "elementwise max",
        commutative=True,
    ),
    binary(
        "minimum",
        np.minimum,
        _extremum_vjp("lt"),
        lambda m, x, y: m.minimum(x, y),
        "elementwise min",
        commutative=True,
    ),
    binary(
        "pow",
        np.power,
        _pow_vjp,
        lambda m, x, y: m.pow(x, y),
        "x ** y",
        domains=("positive", "real"),
        float_only=True,
    ),
    # comparisons (bool results, no gradient)
    compare("eq", np.equal, "x == y"),
    compare("ne", np.not_equal, "x != y"),
    compare("lt", np.less, "x < y"),
    compare("le", np.less_equal, "x <= y"),
    compare("gt", np.greater, "x > y"),
    compare("ge", np.greater_equal, "x >= y"),
    OpDef(
        "logical_and",
        2,
        _logical_infer,
        np.logical_and,
        None,
        "elementwise",
        domains=("bool", "bool"),
        doc="x and y",
        emit=lambda m, x, y: m.logical_and(x, y),
    ),
    OpDef(
        "select",
        3,
        _select_infer,
        np.where,
        lambda b, n, g, w: [None, w[1] and b.select(n.inputs[0], g, 0.0), w[2] and b.select(n.inputs[0], 0.0, g)],
        "elementwise",
        domains=("bool", "real", "real"),
        doc="where(cond, x, y)",
        emit=lambda m, c, x, y: m.select(c, x, y),
    ),
]
