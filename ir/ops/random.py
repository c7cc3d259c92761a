"""Random numbers: `random_uniform`, from the counter-based generator
Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2,
3", SC 2011; the generator JAX and PyTorch use).

Philox maps a 128-bit counter and a 64-bit key to 128 random bits, so any
element can be drawn on its own: element `i` of a `random_uniform` is
Philox of the counter (i mod 2^32, i div 2^32, step mod 2^32, stream) under
the key (seed mod 2^32, seed div 2^32 mod 2^32), where `seed` and `step`
are the op's two scalar int64 inputs and `stream` its attribute. The value
does not depend on how the elements are split among loops or threads, and
native code (`compiler/codegen/vecmath.py`) computes the same bits and
turns them into the same floats as `uniform_bits` here:

- float32: the top 24 bits of the first word, times 2^-24;
- float64: the top 27 bits of the first word times 2^26 plus the top 26
  bits of the second, times 2^-53 (NumPy's own 53-bit recipe).

Both are exact, so the values lie in [0, 1) and are bitwise equal on both
backends. The step counter wraps after 2^32 steps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..dtypes import DType
from ..errors import DTypeError, IRError, ShapeError
from ..opdef import Attr, OpDef
from ..types import TensorType

PHILOX_M = (0xD2511F53, 0xCD9E8D57)
"""The round multipliers of Philox4x32."""

PHILOX_W = (0x9E3779B9, 0xBB67AE85)
"""The key increments between rounds (the golden ratio and sqrt(3) - 1, in 32 bits)."""

PHILOX_ROUNDS = 10

MAX_STREAM = 2**32 - 1


def philox4x32(counter: Sequence[np.ndarray], key: Sequence[np.ndarray]) -> tuple[np.ndarray, ...]:
    """Philox4x32-10 of four uint32 counter words under two uint32 key words
    (arrays that broadcast together); returns the four output words."""
    c0, c1, c2, c3 = (np.asarray(c, np.uint32) for c in counter)
    k0, k1 = (np.asarray(k, np.uint32) for k in key)
    low = np.uint64(0xFFFFFFFF)
    with np.errstate(over="ignore"):
        for round_ in range(PHILOX_ROUNDS):
            if round_:
                k0, k1 = k0 + np.uint32(PHILOX_W[0]), k1 + np.uint32(PHILOX_W[1])
            p0 = np.uint64(PHILOX_M[0]) * c0.astype(np.uint64)
            p1 = np.uint64(PHILOX_M[1]) * c2.astype(np.uint64)
            hi0, lo0 = (p0 >> np.uint64(32)).astype(np.uint32), (p0 & low).astype(np.uint32)
            hi1, lo1 = (p1 >> np.uint64(32)).astype(np.uint32), (p1 & low).astype(np.uint32)
            c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


def split_words(value: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
    """The low and high 32-bit words of a 64-bit integer (two's complement)."""
    bits = np.asarray(value).astype(np.int64).view(np.uint64)
    return (bits & np.uint64(0xFFFFFFFF)).astype(np.uint32), (bits >> np.uint64(32)).astype(np.uint32)


def uniform_bits(words: Sequence[np.ndarray], dtype: DType) -> np.ndarray:
    """Floats in [0, 1) from Philox output words, exactly as native code makes them."""
    if dtype is DType.float32:
        return (words[0] >> np.uint32(8)).astype(np.float32) * np.float32(2.0**-24)
    high, low = (words[0] >> np.uint32(5)).astype(np.float64), (words[1] >> np.uint32(6)).astype(np.float64)
    return (high * 2.0**26 + low) * 2.0**-53


def random_uniform(seed: np.ndarray, step: np.ndarray, shape: tuple[int, ...], dtype: DType, stream: int) -> np.ndarray:
    """The reference semantics of `random_uniform` (see the module docstring)."""
    index = np.arange(int(np.prod(shape, dtype=np.int64)), dtype=np.int64)
    index_lo, index_hi = split_words(index)
    step_lo, _ = split_words(step)
    words = philox4x32((index_lo, index_hi, step_lo, np.uint32(stream)), split_words(seed))
    return uniform_bits(words, dtype).reshape(shape)


def _random_uniform_infer(types: Sequence[TensorType], attrs: Mapping[str, Any]) -> TensorType:
    for name, t in zip(("seed", "step"), types, strict=True):
        if t != TensorType(DType.int64, ()):
            raise DTypeError(f"op 'random_uniform' needs a scalar i64 {name}, got {t}")
    if not attrs["dtype"].is_float:
        raise DTypeError(f"op 'random_uniform' makes floats (f32 or f64), not {attrs['dtype']}")
    if not 0 <= attrs["stream"] <= MAX_STREAM:
        raise IRError(f"op 'random_uniform': stream must be in [0, {MAX_STREAM}], got {attrs['stream']}")
    if not attrs["shape"]:
        raise ShapeError("op 'random_uniform' needs a shape of rank >= 1 (a scalar is a shape of [1])")
    return TensorType(attrs["dtype"], attrs["shape"])


def _shapes(types: Sequence[TensorType]) -> list[tuple]:
    return [(5,), (3, 4), (2, 3, 4), (1, 17)]


OPS = [
    OpDef(
        "random_uniform",
        2,
        _random_uniform_infer,
        random_uniform,
        None,
        "source",
        attrs=(
            Attr("shape", "shape", examples=_shapes),
            Attr("dtype", "dtype"),
            Attr("stream", "int", 0),
        ),
        domains=("seed", "seed"),
        doc="values in [0, 1) from Philox4x32-10 keyed by (seed, step, stream) and the element index",
        emit=lambda m, seed, step, shape, dtype, stream: m.random_uniform(seed, step, stream, dtype),
        element_index=True,
    ),
]
