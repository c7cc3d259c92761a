"""Random test inputs by op domain, shared by the IR, compiler and native tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ember.ir import DType

NUM_CLASSES = 4
"""Labels drawn for the `label` domain lie in [0, NUM_CLASSES)."""


def draw(domain: str, shape: Sequence[int], rng: np.random.Generator, dtype: DType | str = "f64") -> np.ndarray:
    """Random values from an op's input domain (see `OpDef.domains`).

    Numeric values keep a magnitude of at least 0.25 (1 for integers), so
    they stay away from kinks such as relu's at 0 and from division by 0."""
    dtype = DType.parse(dtype)
    shape = tuple(shape)
    if dtype is DType.bool or domain == "bool":
        return rng.random(shape) < 0.5
    if domain == "label":
        return rng.integers(0, NUM_CLASSES, shape).astype(dtype.numpy)
    if domain == "seed":
        return rng.integers(-(2**62), 2**62, shape).astype(dtype.numpy)
    if domain not in ("real", "positive", "nonzero", "any"):
        raise ValueError(f"unknown domain {domain!r}")
    if dtype.is_int:
        magnitude = rng.integers(1, 10, shape)
    else:
        magnitude = rng.uniform(0.5, 2.0, shape) if domain == "positive" else rng.uniform(0.25, 2.0, shape)
    sign = 1 if domain == "positive" else rng.choice([-1, 1], shape)
    return np.asarray(sign * magnitude, dtype.numpy)
