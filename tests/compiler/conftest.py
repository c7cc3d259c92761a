"""Fixtures shared by the compiler-pass tests."""

import numpy as np
import pytest

from ember import nn


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def make_batch(rng):
    """`make_batch(loss, in_features, out_features, rows=8)` -> a random float64
    batch `(x, y)` whose targets suit `loss`: class labels for cross entropy,
    probabilities for BCE, real values otherwise."""

    def make(loss, in_features, out_features, rows=8):
        x = rng.normal(size=(rows, in_features))
        if isinstance(loss, nn.CrossEntropyLoss):
            y = rng.integers(0, out_features, size=rows)
        elif isinstance(loss, nn.BCEWithLogitsLoss):
            y = rng.uniform(size=(rows, out_features))
        else:
            y = rng.normal(size=(rows, out_features))
        return x, y

    return make
