"""Elementwise math on scalars or SIMD vectors, emitted as LLVM IR.

`Math` is what the ops' `emit` rules (in the op table) call. Arithmetic maps
to LLVM instructions; exp, log, tanh and erf are vector polynomial
approximations (LLVM would turn `llvm.exp.*` into one scalar libm call per
element). Their float32 forms are accurate to a few ulp (relative error
below 1e-6) and the float64 forms to about 1e-15, with the IEEE results at
0, +-inf and NaN, and overflow to inf. log1p and expm1 build on log and exp
by the tricks of Goldberg and Kahan, which keep that accuracy near 0.

The range reductions follow Cephes (also used by XLA's CPU backend):
exp(x) = 2^n * e^r with |r| <= ln2/2, log(x) = e*ln2 + log(m) with m in
[sqrt(1/2), sqrt(2)) by the series of atanh, tanh by an odd polynomial near 0
and 1 - 2/(e^2|x| + 1) elsewhere. erf is x P(x^2) for |x| <= 1 and
1 - e^-x^2 / |x| Q(1/|x|) beyond (see `ERF_NEAR`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import llvmlite.ir as ir

from ...ir import DType
from ...ir.ops.random import PHILOX_M, PHILOX_ROUNDS, PHILOX_W
from .irutil import call_intrinsic, constant, scalar_type, splat, vector_of

FAST = ("contract",)  # lets LLVM fuse a*b+c into one FMA; no other rewrite of float math


@dataclass(frozen=True)
class Val:
    """An IR value with the element type it holds."""

    ir: ir.Value
    dtype: DType


Number = float | int | bool

# erf(x) = x P(x^2) on |x| <= 1, and erfc(x) = e^-x^2 / x Q(1/x - 0.6) on [1, ERF_SATURATES]
# (beyond it erf rounds to 1). Least-squares fits at 300 Chebyshev nodes in
# 60-digit arithmetic (mpmath), Q weighted by e^-x^2 / x so that its error is
# absolute in erf. Measured maximum errors of the fits: P 1.4e-9 (f32) and
# 1.3e-16 (f64) relative, Q 7e-10 (f32) and 5e-17 (f64) absolute.
# Coefficients from the highest power down, as `Math._polynomial` takes them.
ERF_NEAR = {
    DType.float32: [
        7.882497110086663e-05,
        -0.0008018854992786387,
        0.005189311942686617,
        -0.026854328796067244,
        0.11283597463488053,
        -0.3761262690358044,
        1.1283791658815026,
    ],
    DType.float64: [
        -7.798543850549947e-10,
        1.3721520406351094e-08,
        -1.6208829856810202e-07,
        1.6447471190594618e-06,
        -1.4924740785377576e-05,
        0.00012055295112667001,
        -0.0008548325982543225,
        0.005223977607269946,
        -0.026866170643256995,
        0.1128379167094513,
        -0.37612638903183543,
        1.1283791670955126,
    ],
}
ERF_FAR = {
    DType.float32: [
        -0.01620025672031467,
        0.05205109423890265,
        -0.08410953779477134,
        0.08015223265668879,
        -0.006999036666797353,
        -0.17138053114590085,
        0.49381244908700794,
    ],
    DType.float64: [
        -0.019234199896180238,
        0.054795334638676,
        -0.07406981049310728,
        0.06301187667310412,
        -0.03227098560729625,
        -0.004606248313256239,
        0.037282847050762825,
        -0.0567842506891738,
        0.056526579845794685,
        -0.03454427521789902,
        -0.004958624549868054,
        0.05075075057817377,
        -0.08431841704510994,
        0.08021881216763405,
        -0.007002649624477262,
        -0.17138075875027742,
        0.4938124622820193,
    ],
}
ERF_FAR_CENTER = 0.6
TRIG_LIMIT = 2.0**50
"""The largest |x| that sin and cos take: beyond, one float64 step of x
is at least a quarter radian, so x names no angle (NaN, on both backends)."""
HALF_PI_PARTS = (1.5707963267948966, 6.123233995736766e-17, -1.4973849048591698e-33)
"""pi/2 as the sum of three doubles (to about 2**-160)."""
SIN_KERNEL = [
    1.58969099521155010221e-10,
    -2.50507602534068634195e-08,
    2.75573137070700676789e-06,
    -1.98412698298579493134e-04,
    8.33333333332248946124e-03,
    -1.66666666666666324348e-01,
]
"""fdlibm's __kernel_sin: sin r = r + r^3 * S(r^2) on [-pi/4, pi/4]."""
COS_KERNEL = [
    -1.13596475577881948265e-11,
    2.08757232129817482790e-09,
    -2.75573143513906633035e-07,
    2.48015872894767294178e-05,
    -1.38888888888741095749e-03,
    4.16666666666666019037e-02,
]
"""fdlibm's __kernel_cos: cos r = 1 - r^2/2 + r^4 * C(r^2) on [-pi/4, pi/4]."""
ERF_SATURATES = {DType.float32: 4.0, DType.float64: 6.0}
"""erfc there is below half an ulp of 1: erf(x) rounds to 1 from here on."""


class Math:
    """Emit elementwise operations at a fixed width (`lanes` == 1: scalars)."""

    def __init__(
        self,
        builder: ir.IRBuilder,
        lanes: int,
        index: Callable[[int, DType], Val] | None = None,
        flat_index: Callable[[], Val] | None = None,
    ) -> None:
        self.b = builder
        self.lanes = lanes
        self._index = index
        self._flat_index = flat_index

    # -- values --------------------------------------------------------
    def type(self, dtype: DType) -> ir.Type:
        return vector_of(scalar_type(dtype), self.lanes)

    def const(self, value: Number, dtype: DType) -> Val:
        if dtype is DType.bool:
            value = bool(value)
        elif dtype.is_int:
            value = int(value)
        return Val(constant(self.type(dtype), value), dtype)

    def widen(self, value: Val) -> Val:
        """A scalar value splatted to this width."""
        return Val(splat(self.b, value.ir, self.lanes), value.dtype)

    def _pair(self, x: Val | Number, y: Val | Number) -> tuple[Val, Val]:
        if not isinstance(x, Val):
            x = self.const(x, y.dtype)  # type: ignore[union-attr]
        if not isinstance(y, Val):
            y = self.const(y, x.dtype)
        return x, y

    def index(self, axis: int, dtype: DType) -> Val:
        """The index of the current element along `axis` of the kernel domain."""
        if self._index is None:
            raise AssertionError("this Math has no loop index")
        return self._index(axis, dtype)

    def flat_index(self) -> Val:
        """The row-major position (int64) of the current element in the kernel domain."""
        if self._flat_index is None:
            raise AssertionError("this Math has no element index")
        return self._flat_index()

    # -- arithmetic ----------------------------------------------------
    def add(self, x, y) -> Val:
        x, y = self._pair(x, y)
        f = self.b.fadd(x.ir, y.ir, flags=FAST) if x.dtype.is_float else self.b.add(x.ir, y.ir)
        return Val(f, x.dtype)

    def sub(self, x, y) -> Val:
        x, y = self._pair(x, y)
        f = self.b.fsub(x.ir, y.ir, flags=FAST) if x.dtype.is_float else self.b.sub(x.ir, y.ir)
        return Val(f, x.dtype)

    def mul(self, x, y) -> Val:
        x, y = self._pair(x, y)
        f = self.b.fmul(x.ir, y.ir, flags=FAST) if x.dtype.is_float else self.b.mul(x.ir, y.ir)
        return Val(f, x.dtype)

    def div(self, x, y) -> Val:
        x, y = self._pair(x, y)
        return Val(self.b.fdiv(x.ir, y.ir), x.dtype)

    def fma(self, x: Val, y: Val | Number, z: Val | Number) -> Val:
        """x*y + z, fused where the CPU can."""
        y = y if isinstance(y, Val) else self.const(y, x.dtype)
        z = z if isinstance(z, Val) else self.const(z, x.dtype)
        return Val(call_intrinsic(self.b, "fmuladd", x.ir.type, [x.ir, y.ir, z.ir]), x.dtype)

    def neg(self, x: Val) -> Val:
        return Val(self.b.fneg(x.ir) if x.dtype.is_float else self.b.neg(x.ir), x.dtype)

    def abs(self, x: Val) -> Val:
        if x.dtype.is_float:
            return Val(call_intrinsic(self.b, "fabs", x.ir.type, [x.ir]), x.dtype)
        return self.select(self.compare("lt", x, 0), self.neg(x), x)

    def sign(self, x: Val) -> Val:
        zero_or_nan = self.select(self.compare("eq", x, 0), self.const(0, x.dtype), x)  # sign(-0.0) is 0.0
        positive = self.select(self.compare("gt", x, 0), self.const(1, x.dtype), zero_or_nan)
        return self.select(self.compare("lt", x, 0), self.const(-1, x.dtype), positive)

    def maximum(self, x, y) -> Val:
        """NaN-propagating max, as NumPy's."""
        x, y = self._pair(x, y)
        name = "maximum" if x.dtype.is_float else "smax"
        return Val(call_intrinsic(self.b, name, x.ir.type, [x.ir, y.ir]), x.dtype)

    def minimum(self, x, y) -> Val:
        x, y = self._pair(x, y)
        name = "minimum" if x.dtype.is_float else "smin"
        return Val(call_intrinsic(self.b, name, x.ir.type, [x.ir, y.ir]), x.dtype)

    def sqrt(self, x: Val) -> Val:
        return Val(call_intrinsic(self.b, "sqrt", x.ir.type, [x.ir]), x.dtype)

    def compare(self, predicate: str, x, y) -> Val:
        """`eq ne lt le gt ge` with NumPy's NaN rules (only `ne` is true for NaN)."""
        x, y = self._pair(x, y)
        symbol = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}[predicate]
        if x.dtype.is_float:
            cmp = self.b.fcmp_unordered if predicate == "ne" else self.b.fcmp_ordered
            return Val(cmp(symbol, x.ir, y.ir), DType.bool)
        if x.dtype is DType.bool:
            return Val(self.b.icmp_unsigned(symbol, x.ir, y.ir), DType.bool)
        return Val(self.b.icmp_signed(symbol, x.ir, y.ir), DType.bool)

    def select(self, condition: Val, x, y) -> Val:
        x, y = self._pair(x, y)
        return Val(self.b.select(condition.ir, x.ir, y.ir), x.dtype)

    def logical_and(self, x: Val, y: Val) -> Val:
        return Val(self.b.and_(x.ir, y.ir), DType.bool)

    def cast(self, x: Val, dtype: DType) -> Val:
        """NumPy's astype: floats truncate toward zero into ints; nonzero is True."""
        src, b, to = x.dtype, self.b, self.type(dtype)
        if src is dtype:
            return x
        if dtype is DType.bool:
            return self.compare("ne", x, 0)
        if src is DType.bool:
            return Val(b.uitofp(x.ir, to) if dtype.is_float else b.zext(x.ir, to), dtype)
        if src.is_float and dtype.is_float:
            return Val(b.fpext(x.ir, to) if dtype.itemsize > src.itemsize else b.fptrunc(x.ir, to), dtype)
        if src.is_float:
            return Val(b.fptosi(x.ir, to), dtype)
        if dtype.is_float:
            return Val(b.sitofp(x.ir, to), dtype)
        return Val(b.sext(x.ir, to) if dtype.itemsize > src.itemsize else b.trunc(x.ir, to), dtype)

    # -- transcendental functions --------------------------------------
    def _bits(self, x: Val) -> ir.Value:
        return self.b.bitcast(x.ir, vector_of(ir.IntType(8 * x.dtype.itemsize), self.lanes))

    def _from_bits(self, bits: ir.Value, dtype: DType) -> Val:
        return Val(self.b.bitcast(bits, self.type(dtype)), dtype)

    def _int(self, value: int, dtype: DType) -> ir.Constant:
        return constant(vector_of(ir.IntType(8 * dtype.itemsize), self.lanes), value)

    def _polynomial(self, x: Val, coefficients: list[float]) -> Val:
        """c0*x^n + c1*x^(n-1) + ... + cn by Horner's rule with FMAs."""
        result = self.const(coefficients[0], x.dtype)
        for c in coefficients[1:]:
            result = self.fma(result, x, c)
        return result

    def _power_of_two(self, n: Val, dtype: DType) -> Val:
        """2**n for integral float n in the normal exponent range."""
        mantissa_bits, bias = (23, 127) if dtype is DType.float32 else (52, 1023)
        ints = self.b.fptosi(n.ir, vector_of(ir.IntType(8 * dtype.itemsize), self.lanes))
        biased = self.b.add(ints, self._int(bias, dtype))
        return self._from_bits(self.b.shl(biased, self._int(mantissa_bits, dtype)), dtype)

    def exp(self, x: Val) -> Val:
        f32 = x.dtype is DType.float32
        hi, lo = (88.72283935546875, -103.97208404541016) if f32 else (709.782712893384, -745.1332191019412)
        ln2_hi, ln2_lo = (0.693359375, -2.12194440e-4) if f32 else (6.93145751953125e-1, 1.42860682030941723212e-6)
        degree = 7 if f32 else 13
        clamped = self.select(self.compare("gt", x, hi), hi, x)
        clamped = self.select(self.compare("lt", clamped, lo), lo, clamped)
        n = Val(call_intrinsic(self.b, "rint", x.ir.type, [self.mul(clamped, 1 / math.log(2)).ir]), x.dtype)
        r = self.fma(n, -ln2_hi, clamped)
        r = self.fma(n, -ln2_lo, r)
        p = self._polynomial(r, [1 / math.factorial(k) for k in range(degree, -1, -1)])
        # Scale by 2^n in two steps so that neither factor leaves the normal range.
        half = Val(call_intrinsic(self.b, "floor", x.ir.type, [self.mul(n, 0.5).ir]), x.dtype)
        result = self.mul(
            self.mul(p, self._power_of_two(half, x.dtype)), self._power_of_two(self.sub(n, half), x.dtype)
        )
        result = self.select(self.compare("gt", x, hi), math.inf, result)
        result = self.select(self.compare("lt", x, lo), 0.0, result)
        return self.select(self.compare("ne", x, x), x, result)

    def log(self, x: Val) -> Val:
        f32 = x.dtype is DType.float32
        mantissa_bits, bias, tiny = (23, 127, 1.1754943508222875e-38) if f32 else (52, 1023, 2.2250738585072014e-308)
        terms = 5 if f32 else 12
        # Subnormal inputs: scale into the normal range first.
        subnormal = self.compare("lt", x, tiny)
        scaled = self.select(subnormal, self.mul(x, float(2**mantissa_bits)), x)
        adjust = self.select(subnormal, self.const(-mantissa_bits, x.dtype), 0.0)
        bits = self._bits(scaled)
        exponent_bits = self.b.lshr(bits, self._int(mantissa_bits, x.dtype))
        exponent = self.add(Val(self.b.sitofp(exponent_bits, self.type(x.dtype)), x.dtype), adjust)
        exponent = self.sub(exponent, float(bias))
        mantissa_mask = (1 << mantissa_bits) - 1
        one_bits = bias << mantissa_bits
        m = self._from_bits(
            self.b.or_(self.b.and_(bits, self._int(mantissa_mask, x.dtype)), self._int(one_bits, x.dtype)), x.dtype
        )
        big = self.compare("gt", m, math.sqrt(2.0))
        m = self.select(big, self.mul(m, 0.5), m)
        exponent = self.select(big, self.add(exponent, 1.0), exponent)
        f = self.sub(m, 1.0)
        s = self.div(f, self.add(f, 2.0))
        z = self.mul(s, s)
        series = self._polynomial(z, [1 / (2 * k + 1) for k in range(terms, -1, -1)])
        log_m = self.mul(self.mul(s, 2.0), series)
        ln2_hi, ln2_lo = (0.693359375, -2.12194440e-4) if f32 else (6.93145751953125e-1, 1.42860682030941723212e-6)
        result = self.fma(exponent, ln2_hi, self.fma(exponent, ln2_lo, log_m))
        result = self.select(self.compare("eq", x, math.inf), math.inf, result)
        result = self.select(self.compare("eq", x, 0.0), -math.inf, result)
        result = self.select(self.compare("lt", x, 0.0), math.nan, result)
        return self.select(self.compare("ne", x, x), x, result)

    def tanh(self, x: Val) -> Val:
        a = self.abs(x)
        # Far from 0: 1 - 2 / (e^2a + 1), exact to rounding; e^2a = inf gives 1.
        far = self.sub(1.0, self.div(2.0, self.add(self.exp(self.mul(a, 2.0)), 1.0)))
        far = Val(call_intrinsic(self.b, "copysign", x.ir.type, [far.ir, x.ir]), x.dtype)
        z = self.mul(x, x)
        if x.dtype is DType.float32:  # Cephes tanhf
            p = self._polynomial(
                z, [-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1, -3.33332819422e-1]
            )
        else:  # Cephes tanh: a rational function
            top = self._polynomial(
                z, [-9.64399179425052238628e-1, -9.92877231001918586564e1, -1.61468768441708447952e3]
            )
            bottom = self._polynomial(
                z, [1.0, 1.12811678491632931402e2, 2.23548839060100448583e3, 4.84406305325125486048e3]
            )
            p = self.div(top, bottom)
        near = self.fma(self.mul(x, z), p, x)
        near = Val(call_intrinsic(self.b, "copysign", x.ir.type, [near.ir, x.ir]), x.dtype)  # tanh(-0.0) = -0.0
        return self.select(self.compare("lt", a, 0.625), near, far)

    def copysign(self, magnitude: Val, sign: Val) -> Val:
        """|magnitude| with the sign bit of `sign`."""
        return Val(call_intrinsic(self.b, "copysign", magnitude.ir.type, [magnitude.ir, sign.ir]), magnitude.dtype)

    def log1p(self, x: Val) -> Val:
        """log(1 + x), accurate near 0 (Goldberg): log(u) * x / (u - 1) with
        u = 1 + x corrects the rounding of u; x itself where u rounds to 1."""
        u = self.add(x, 1.0)
        corrected = self.mul(self.log(u), self.div(x, self.sub(u, 1.0)))
        result = self.select(self.compare("eq", u, 1.0), x, corrected)
        return self.select(self.compare("eq", x, math.inf), math.inf, result)

    def expm1(self, x: Val) -> Val:
        """e**x - 1, accurate near 0 (Kahan): (u - 1) * x / log(u) with u = e**x;
        x itself where u rounds to 1, -1 where u - 1 does."""
        u = self.exp(x)
        um1 = self.sub(u, 1.0)
        corrected = self.mul(um1, self.div(x, self.log(u)))  # x / log(u) is near 1: no overflow
        result = self.select(self.compare("eq", u, 1.0), x, corrected)
        result = self.select(self.compare("eq", um1, -1.0), -1.0, result)
        return self.select(self.compare("eq", u, math.inf), math.inf, result)

    def erf(self, x: Val) -> Val:
        """The error function; both of its formulas are computed for every
        lane and one selected (no branch)."""
        a = self.minimum(self.abs(x), ERF_SATURATES[x.dtype])  # NaN stays NaN
        near = self.mul(a, self._polynomial(self.mul(a, a), ERF_NEAR[x.dtype]))
        reciprocal = self.div(1.0, a)
        tail = self.mul(self.exp(self.neg(self.mul(a, a))), reciprocal)
        q = self._polynomial(self.sub(reciprocal, ERF_FAR_CENTER), ERF_FAR[x.dtype])
        far = self.sub(1.0, self.mul(tail, q))
        return self.copysign(self.select(self.compare("le", a, 1.0), near, far), x)

    def cos(self, x: Val) -> Val:
        return self._sin_quadrant(x, 1.0)

    def sin(self, x: Val) -> Val:
        return self._sin_quadrant(x, 0.0)

    def _sin_quadrant(self, x: Val, quarter_turns: float) -> Val:
        """sin(x + quarter_turns * pi/2), computed in float64 (float32 input
        is widened, then rounded once): x = n*pi/2 + r with |r| <= pi/4, the
        reduction by exact FMAs against pi/2 split into three doubles, then
        fdlibm's polynomials for sin r or cos r by the quadrant n mod 4.
        Within 2 ulp of the true value for |x| <= 2**30, within 1e-13
        absolute up to TRIG_LIMIT, NaN beyond it."""
        wide = self.cast(x, DType.float64)
        n = Val(call_intrinsic(self.b, "rint", wide.ir.type, [self.mul(wide, 2 / math.pi).ir]), DType.float64)
        r = wide
        for part in HALF_PI_PARTS:  # llvm.fma, not fmuladd: each step must be exact before it rounds
            r = Val(
                call_intrinsic(self.b, "fma", r.ir.type, [self.neg(n).ir, self.const(part, DType.float64).ir, r.ir]),
                r.dtype,
            )
        z = self.mul(r, r)
        sin_r = self.fma(self.mul(z, r), self._polynomial(z, SIN_KERNEL), r)
        cos_r = self.add(self.sub(1.0, self.mul(z, 0.5)), self.mul(self.mul(z, z), self._polynomial(z, COS_KERNEL)))
        # the quadrant (n + quarter_turns) mod 4, in float64 (exact; no int conversion of inf or NaN)
        turns = self.add(n, quarter_turns)
        floor = Val(call_intrinsic(self.b, "floor", turns.ir.type, [self.mul(turns, 0.25).ir]), DType.float64)
        quadrant = self.sub(turns, self.mul(floor, 4.0))
        odd = Val(self.b.or_(self.compare("eq", quadrant, 1.0).ir, self.compare("eq", quadrant, 3.0).ir), DType.bool)
        value = self.select(odd, cos_r, sin_r)
        value = self.select(self.compare("ge", quadrant, 2.0), self.neg(value), value)
        value = self.select(self.compare("le", self.abs(wide), TRIG_LIMIT), value, math.nan)
        if quarter_turns == 0.0:
            value = self.select(self.compare("eq", wide, 0.0), wide, value)  # sin(-0.0) is -0.0
        return self.cast(value, x.dtype)

    def pow(self, x, y) -> Val:
        """x**y as NumPy computes it for real results: exp(y*log|x|), with the
        sign of a negative base raised to an odd integer, NaN for a negative
        base and a non-integer exponent, and x**0 == 1**y == 1."""
        x, y = self._pair(x, y)
        magnitude = self.exp(self.mul(y, self.log(self.abs(x))))
        integral = self.compare("eq", Val(call_intrinsic(self.b, "rint", y.ir.type, [y.ir]), y.dtype), y)
        half = self.mul(y, 0.5)
        odd = self.logical_and(
            integral, self.compare("ne", Val(call_intrinsic(self.b, "rint", half.ir.type, [half.ir]), y.dtype), half)
        )
        # The sign bit, not x < 0: (-0.0)**3 is -0.0 and (-0.0)**-1 is -inf.
        one = self.const(1.0, x.dtype).ir
        sign_bit = self.compare("lt", Val(call_intrinsic(self.b, "copysign", x.ir.type, [one, x.ir]), x.dtype), 0.0)
        signed = self.select(self.logical_and(sign_bit, odd), self.neg(magnitude), magnitude)
        finite_negative = self.logical_and(self.compare("lt", x, 0.0), self.compare("gt", x, -math.inf))
        no_real_power = self.logical_and(finite_negative, Val(self.b.not_(integral.ir), DType.bool))
        result = self.select(no_real_power, math.nan, signed)  # (-inf)**0.5 is inf, (-2)**0.5 is NaN
        ones = Val(self.b.or_(self.compare("eq", y, 0.0).ir, self.compare("eq", x, 1.0).ir), DType.bool)
        minus_one = self.logical_and(self.compare("eq", x, -1.0), self.compare("eq", self.abs(y), math.inf))
        ones = Val(self.b.or_(ones.ir, minus_one.ir), DType.bool)  # (-1)**+-inf is 1
        return self.select(ones, 1.0, result)

    # -- random numbers ------------------------------------------------
    def random_uniform(self, seed: Val, step: Val, stream: int, dtype: DType) -> Val:
        """Floats in [0, 1) from Philox4x32-10 of the current element's index,
        as `ir/ops/random.py` defines them (bit for bit)."""
        index = self.flat_index().ir
        counter = [*self._words(index), self._words(step.ir)[0], self._u32(stream)]
        words = philox4x32(self, counter, list(self._words(seed.ir)))
        if dtype is DType.float32:
            top = self._to_float(self.b.lshr(words[0], self._u32(8)), dtype)
            return self.mul(top, 2.0**-24)
        high = self._to_float(self.b.lshr(words[0], self._u32(5)), dtype)
        low = self._to_float(self.b.lshr(words[1], self._u32(6)), dtype)
        return self.mul(self.add(self.mul(high, 2.0**26), low), 2.0**-53)

    def _u32(self, value: int) -> ir.Value:
        return constant(vector_of(ir.IntType(32), self.lanes), value)

    def _words(self, value: ir.Value) -> tuple[ir.Value, ir.Value]:
        """The low and high 32-bit words of 64-bit integers."""
        words = vector_of(ir.IntType(32), self.lanes)
        high = self.b.lshr(value, constant(value.type, 32))
        return self.b.trunc(value, words), self.b.trunc(high, words)

    def _to_float(self, small: ir.Value, dtype: DType) -> Val:
        """Unsigned 32-bit integers below 2^31 as floats (exact below 2^24 for float32)."""
        return Val(self.b.sitofp(small, self.type(dtype)), dtype)


def philox4x32(m: Math, counter: list[ir.Value], key: list[ir.Value]) -> list[ir.Value]:
    """Philox4x32-10 on vectors of 32-bit words (Salmon et al., SC 2011): four
    counter words and two key words in, four random words out. Each round's
    32x32->64-bit products are one widening multiply per word pair."""
    b = m.b
    mulhilo = _mulhilo_pairs if m.lanes > 1 else _mulhilo
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for round_ in range(PHILOX_ROUNDS):
        if round_:
            k0, k1 = b.add(k0, m._u32(PHILOX_W[0])), b.add(k1, m._u32(PHILOX_W[1]))
        hi0, lo0 = mulhilo(b, c0, PHILOX_M[0])
        hi1, lo1 = mulhilo(b, c2, PHILOX_M[1])
        c0, c1, c2, c3 = b.xor(b.xor(hi1, c1), k0), lo1, b.xor(b.xor(hi0, c3), k1), lo0
    return [c0, c1, c2, c3]


def _mulhilo(b: ir.IRBuilder, x: ir.Value, multiplier: int) -> tuple[ir.Value, ir.Value]:
    """The high and low 32-bit words of the 64-bit product x * multiplier."""
    wide = ir.IntType(64)
    product = b.mul(b.zext(x, wide), ir.Constant(wide, multiplier))
    return b.trunc(b.lshr(product, ir.Constant(wide, 32)), x.type), b.trunc(product, x.type)


def _mulhilo_pairs(b: ir.IRBuilder, x: ir.Value, multiplier: int) -> tuple[ir.Value, ir.Value]:
    """`_mulhilo` on a vector of 32-bit words, seen as 64-bit pairs: one
    32x32->64 multiply (vpmuludq) for the even words, one for the odd ones,
    and blends that put the halves back in place, with no shuffle across
    lanes (zero-extending the whole vector and truncating back costs more)."""
    words = x.type.count
    pairs = ir.VectorType(ir.IntType(64), words // 2)
    low_half, shift = constant(pairs, 0xFFFFFFFF), constant(pairs, 32)
    x_pairs = b.bitcast(x, pairs)
    even = b.mul(b.and_(x_pairs, low_half), constant(pairs, multiplier))  # products of words 0, 2, 4...
    odd = b.mul(b.lshr(x_pairs, shift), constant(pairs, multiplier))  # of words 1, 3, 5...
    take_odd = ir.Constant(ir.VectorType(ir.IntType(32), words), [i + words * (i % 2) for i in range(words)])
    high = b.shuffle_vector(b.bitcast(b.lshr(even, shift), x.type), b.bitcast(odd, x.type), take_odd)
    low = b.shuffle_vector(b.bitcast(even, x.type), b.bitcast(b.shl(odd, shift), x.type), take_odd)
    return high, low


def fold_lanes(b: ir.IRBuilder, vector: Val, lanes: int, combine: Callable[[Math, Val, Val], Val]) -> Val:
    """Combine the lanes of `vector` pairwise, halving the width each step,
    down to one scalar (a horizontal sum, max...)."""
    while lanes > 1:
        half = lanes // 2
        low, high = (_lanes(b, vector.ir, start, half) for start in (0, half))
        vector = combine(Math(b, half), Val(low, vector.dtype), Val(high, vector.dtype))
        lanes = half
    return vector


def _lanes(b: ir.IRBuilder, vector: ir.Value, start: int, count: int) -> ir.Value:
    """Lanes [start, start + count) of `vector` (a scalar when count == 1)."""
    if count == 1:
        return b.extract_element(vector, ir.Constant(ir.IntType(64), start))
    picks = ir.Constant(ir.VectorType(ir.IntType(32), count), list(range(start, start + count)))
    return b.shuffle_vector(vector, vector, picks)
