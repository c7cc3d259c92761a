"""Models, data sets and checks shared by the public-API tests."""

import numpy as np
import pytest

import ember
from ember import nn, optim

FEATURES, CLASSES = 4, 3


def _mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(FEATURES, 8), nn.ReLU(), nn.Linear(8, CLASSES))


@pytest.fixture
def make_mlp():
    """A factory of fresh MLPs Linear(4, 8) -> ReLU -> Linear(8, 3), whose
    parameters are 0.weight, 0.bias, 2.weight, 2.bias."""
    return _mlp


@pytest.fixture
def mlp() -> nn.Sequential:
    return _mlp()


@pytest.fixture
def blobs() -> tuple[np.ndarray, np.ndarray]:
    """A separable 3-class problem: 60 rows of 4 float32 features, int64 labels."""
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 3, (CLASSES, FEATURES))
    y = np.arange(60) % CLASSES
    x = centers[y] + rng.normal(0, 0.5, (60, FEATURES))
    return x.astype(np.float32), y


@pytest.fixture
def regression() -> tuple[np.ndarray, np.ndarray]:
    """A noisy linear map from 4 features to 2 float32 targets, 50 rows."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, FEATURES))
    y = x @ rng.normal(size=(FEATURES, 2)) + 0.5 + rng.normal(0, 0.01, (50, 2))
    return x.astype(np.float32), y.astype(np.float32)


@pytest.fixture
def classifier(mlp) -> ember.Program:
    """The MLP trained with cross entropy and Adam on the reference backend."""
    return ember.compile(mlp, loss=nn.CrossEntropyLoss(), optimizer=optim.Adam(lr=0.05), batch_size=16)


@pytest.fixture
def assert_same():
    """`assert_same(a, b)`: two dicts of arrays have the same names, dtypes and bits."""

    def check(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
        assert list(a) == list(b)
        for name in a:
            assert a[name].dtype == b[name].dtype, name
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)

    return check
