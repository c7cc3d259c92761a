"""Parameter initializers. Each is `init(rng, shape, fan_in, fan_out) -> ndarray`
(float64; cast to the program's dtype when a program is compiled)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..ir import ConfigError

Initializer = Callable[[np.random.Generator, tuple[int, ...], int, int], np.ndarray]

NORMAL_STD = 0.02


def pytorch_default(rng, shape, fan_in, fan_out):
    """PyTorch's nn.Linear default: kaiming_uniform(a=sqrt(5)), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return rng.uniform(-bound, bound, shape)


def normal(rng, shape, fan_in, fan_out):
    """N(0, 0.02^2), as in GPT-2 and BERT."""
    return rng.normal(0.0, NORMAL_STD, shape)


def xavier(rng, shape, fan_in, fan_out):
    """Glorot uniform: U(-a, a) with a = sqrt(6 / (fan_in + fan_out))."""
    bound = math.sqrt(6 / (fan_in + fan_out)) if fan_in + fan_out > 0 else 0.0
    return rng.uniform(-bound, bound, shape)


def he(rng, shape, fan_in, fan_out):
    """He (Kaiming) normal for ReLU nets: N(0, 2 / fan_in)."""
    std = math.sqrt(2 / fan_in) if fan_in > 0 else 0.0
    return rng.normal(0.0, std, shape)


def zeros(rng, shape, fan_in, fan_out):
    return np.zeros(shape)


def ones(rng, shape, fan_in, fan_out):
    return np.ones(shape)


INITIALIZERS: dict[str, Initializer] = {
    "default": pytorch_default,
    "pytorch": pytorch_default,
    "normal": normal,
    "xavier": xavier,
    "glorot": xavier,
    "he": he,
    "kaiming": he,
    "zeros": zeros,
    "ones": ones,
}


def get_initializer(init: str | Initializer) -> Initializer:
    """An initializer by name (see `INITIALIZERS`), or `init` itself if callable."""
    if callable(init):
        return init
    try:
        return INITIALIZERS[init]
    except (KeyError, TypeError):
        raise ConfigError(
            f"unknown initializer {init!r}; expected one of {sorted(INITIALIZERS)} or a callable"
        ) from None
