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
SQRT_HALF = math.sqrt(0.5)
ERF_SLOPE = 2 / math.sqrt(math.pi)
"""d/dx erf(x) = ERF_SLOPE * e**-x^2."""
TRIG_LIMIT = 2.0**50
"""The largest |x| sin and cos take (see compiler/codegen/vecmath.py)."""


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # Both branches are evaluated; each is exact where it is selected.
    return np.where(x >= 0, 1 / (1 + np.exp(-x)), np.exp(x) / (1 + np.exp(x))).astype(x.dtype)


def _erf(x: np.ndarray) -> np.ndarray:
    # math.erf is within an ulp in float64; float32 results are its rounding.
    return np.vectorize(math.erf, otypes=[np.float64])(x.astype(np.float64)).astype(x.dtype)


def _trig(f):
    """np.sin or np.cos, NaN where |x| > TRIG_LIMIT (as native code: no
    float64 that large names an angle to better than a quarter radian)."""

    def evaluate(x: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return np.where(np.abs(x) <= TRIG_LIMIT, f(x), np.nan).astype(x.dtype)

    return evaluate


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1 + _erf(x * x.dtype.type(SQRT_HALF)))


def _gelu_vjp(b, node, g, wanted):
    # Phi(x) + x phi(x), phi the standard normal density
    (x,) = node.inputs
    cdf = b.mul(b.add(b.erf(b.mul(x, SQRT_HALF)), 1.0), 0.5)
    density = b.mul(b.exp(b.mul(b.mul(x, x), -0.5)), 1 / math.sqrt(2 * math.pi))
    return [b.mul(g, b.add(cdf, b.mul(x, density)))]


def _gelu_emit(m, x):
    return m.mul(m.mul(x, 0.5), m.add(1.0, m.erf(m.mul(x, SQRT_HALF))))


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1 + np.tanh(GELU_K * (x + GELU_C * x**3)))


def _gelu_tanh_vjp(b, node, g, wanted):
    (x,) = node.inputs
    x2 = b.mul(x, x)
    t = b.tanh(b.mul(b.add(x, b.mul(b.mul(x, x2), GELU_C)), GELU_K))
    outer = b.mul(b.add(t, 1.0), 0.5)
    inner = b.mul(b.mul(b.mul(x, b.sub(1.0, b.mul(t, t))), 0.5 * GELU_K), b.add(b.mul(x2, 3 * GELU_C), 1.0))
    return [b.mul(g, b.add(outer, inner))]


def _silu(x: np.ndarray) -> np.ndarray:
    return x * _sigmoid(x)


def _silu_vjp(b, node, g, wanted):
    # s (1 + x (1 - s)), s = sigmoid(x)
    (x,) = node.inputs
    s = b.sigmoid(x)
    return [b.mul(g, b.mul(s, b.add(b.mul(x, b.sub(1.0, s)), 1.0)))]


def _elu(x: np.ndarray, alpha: float) -> np.ndarray:
    return np.where(x > 0, x, np.expm1(x) * x.dtype.type(alpha))


def _elu_vjp(b, node, g, wanted):
    # As PyTorch: the alpha branch at x == 0
    (x,) = node.inputs
    return [b.select(b.gt(x, 0.0), g, b.mul(g, b.mul(b.exp(x), node.attrs["alpha"])))]


def _elu_emit(m, x, alpha):
    return m.select(m.compare("gt", x, 0.0), x, m.mul(m.expm1(x), alpha))


def _softplus(x: np.ndarray, beta: float, threshold: float) -> np.ndarray:
    # As PyTorch: x itself where beta x > threshold, else log1p(e**(beta x)) / beta, computed stably
    bx = x * x.dtype.type(beta)
    smooth = (np.maximum(bx, 0) + np.log1p(np.exp(-np.abs(bx)))) / x.dtype.type(beta)
    return np.where(bx > threshold, x, smooth).astype(x.dtype)


def _softplus_vjp(b, node, g, wanted):
    (x,) = node.inputs
    bx = b.mul(x, node.attrs["beta"])
    return [b.select(b.gt(bx, node.attrs["threshold"]), g, b.mul(g, b.sigmoid(bx)))]


def _softplus_emit(m, x, beta, threshold):
    bx = m.mul(x, beta)
    smooth = m.div(m.add(m.maximum(bx, 0.0), m.log1p(m.exp(m.neg(m.abs(bx))))), beta)
    return m.select(m.compare("gt", bx, threshold), x, smooth)


MISH_FLAT = 20.0
"""tanh(softplus(x)) rounds to 1 in float64 (and float32) from here on."""


def _mish(x: np.ndarray) -> np.ndarray:
    return x * np.tanh(_softplus(x, 1.0, 20.0))


def _mish_vjp(b, node, g, wanted):
    # As PyTorch: t + x sigmoid(x) (1 - t^2), t = tanh(softplus(x))
    (x,) = node.inputs
    t = b.tanh(b.softplus(x))
    return [b.mul(g, b.add(t, b.mul(b.mul(x, b.sigmoid(x)), b.sub(1.0, b.mul(t, t)))))]


def _mish_emit(m, x):
    # tanh(log(1 + e)) = n / (n + 2) with n = e (e + 2): one exp and one division
    e = m.exp(m.minimum(x, MISH_FLAT))
    n = m.mul(e, m.add(e, 2.0))
    return m.mul(x, m.div(n, m.add(n, 2.0)))


def _relu6_of_shift(x):
    """min(max(x + 3, 0), 6), the ramp of hardswish and hardsigmoid."""
    return np.minimum(np.maximum(x + 3, 0), 6)


def _hardswish_vjp(b, node, g, wanted):
    # As PyTorch (2.x): 0 up to -3, x/3 + 1/2 strictly between, 1 from 3 on
    (x,) = node.inputs
    ramp = b.add(b.div(x, 3.0), 0.5)
    inner = b.select(b.lt(x, 3.0), b.mul(g, ramp), g)
    return [b.select(b.le(x, -3.0), 0.0, inner)]


def _hardsigmoid_vjp(b, node, g, wanted):
    # As PyTorch: 1/6 strictly inside (-3, 3), else 0
    (x,) = node.inputs
    inside = b.logical_and(b.gt(x, -3.0), b.lt(x, 3.0))
    return [b.select(inside, b.div(g, 6.0), 0.0)]


def _ramp_emit(m, x):
    return m.minimum(m.maximum(m.add(x, 3.0), 0.0), 6.0)


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
        "log1p",
        np.log1p,
        lambda b, n, g, w: [b.div(g, b.add(n.inputs[0], 1.0))],
        lambda m, x: m.log1p(x),
        "log(1 + x), accurate for small x",
        domain="positive",
    ),
    unary(
        "expm1",
        np.expm1,
        lambda b, n, g, w: [b.mul(g, b.add(n.output, 1.0))],
        lambda m, x: m.expm1(x),
        "e**x - 1, accurate for small x",
    ),
    unary(
        "erf",
        _erf,
        lambda b, n, g, w: [b.mul(g, b.mul(b.exp(b.neg(b.mul(n.inputs[0], n.inputs[0]))), ERF_SLOPE))],
        lambda m, x: m.erf(x),
        "the error function 2/sqrt(pi) * integral of e**-t^2 from 0 to x",
    ),
    unary(
        "cos",
        _trig(np.cos),
        lambda b, n, g, w: [b.mul(g, b.neg(b.sin(n.inputs[0])))],
        lambda m, x: m.cos(x),
        "cosine (radians); NaN where |x| > 2**50",
    ),
    unary(
        "sin",
        _trig(np.sin),
        lambda b, n, g, w: [b.mul(g, b.cos(n.inputs[0]))],
        lambda m, x: m.sin(x),
        "sine (radians); NaN where |x| > 2**50",
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
        _gelu_emit,
        "GELU, exact: 0.5x(1 + erf(x / sqrt(2))), as torch.nn.GELU()",
    ),
    unary(
        "gelu_tanh",
        _gelu_tanh,
        _gelu_tanh_vjp,
        lambda m, x: m.mul(m.mul(x, 0.5), m.add(1.0, m.tanh(m.mul(m.fma(m.mul(x, x), m.mul(x, GELU_C), x), GELU_K)))),
        'GELU, tanh approximation: 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3))), as torch.nn.GELU(approximate="tanh")',
    ),
    unary(
        "silu",
        _silu,
        _silu_vjp,
        lambda m, x: m.div(x, m.add(1.0, m.exp(m.neg(x)))),
        "x * sigmoid(x) (SiLU, swish)",
    ),
    unary(
        "elu",
        _elu,
        _elu_vjp,
        _elu_emit,
        "x if x > 0 else alpha * (e**x - 1)",
        attrs=(Attr("alpha", "float", 1.0),),
    ),
    unary(
        "softplus",
        _softplus,
        _softplus_vjp,
        _softplus_emit,
        "log(1 + e**(beta x)) / beta, or x where beta x > threshold (as PyTorch)",
        attrs=(Attr("beta", "float", 1.0, examples=lambda types: [1.0, 2.0, 0.5]), Attr("threshold", "float", 20.0)),
    ),
    unary("mish", _mish, _mish_vjp, _mish_emit, "x * tanh(softplus(x))"),
    unary(
        "hardswish",
        lambda x: x * _relu6_of_shift(x) / 6,
        _hardswish_vjp,
        lambda m, x: m.div(m.mul(x, _ramp_emit(m, x)), 6.0),
        "x * min(max(x + 3, 0), 6) / 6",
    ),
    unary(
        "hardsigmoid",
        lambda x: _relu6_of_shift(x) / 6,
        _hardsigmoid_vjp,
        lambda m, x: m.div(_ramp_emit(m, x), 6.0),
        "min(max(x + 3, 0), 6) / 6",
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
