"""The memory native calls keep between calls (runtime/native.py): each
entry's workspace and scratch, sized for the batch at hand, and what
happens when getting them fails."""

import numpy as np
import pytest

import ember
import ember.runtime.native as native
from ember import nn, optim


def classifier(backend: str = "native") -> ember.Program:
    """A 4-8-3 classifier trained with SGD (the same initial parameters every time)."""
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    return ember.compile(model, loss=nn.CrossEntropyLoss(), optimizer=optim.SGD(lr=0.1), backend=backend)


def batch(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(rows, 4)).astype(np.float32), rng.integers(0, 3, rows)


class FailingAllocation:
    """Stands in for `aligned_empty`: raises `error` at the `failing`-th call."""

    def __init__(self, error: type[BaseException], failing: int) -> None:
        self.error = error
        self.failing = failing
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.failing:
            raise self.error("injected")
        return ALIGNED_EMPTY(*args, **kwargs)


ALIGNED_EMPTY = native.aligned_empty


@pytest.mark.parametrize("error", [MemoryError, KeyboardInterrupt])
@pytest.mark.parametrize("failing", [1, 2])
def test_a_resize_that_fails_midway_leaves_every_entry_runnable(monkeypatch, error, failing):
    """A training step on a larger batch needs a larger workspace and scratch;
    when one of those allocations fails, nothing may keep a pointer to freed
    memory: predict (sized earlier, for a batch large enough that freed
    memory goes back to the OS) and the step itself still run correctly."""
    prog, reference = classifier(), classifier("reference")
    x_predict, _ = batch(400_000, seed=1)
    expected = prog.predict(x_predict)
    x, y = batch(100_000)

    allocation = FailingAllocation(error, failing)
    monkeypatch.setattr(native, "aligned_empty", allocation)
    with pytest.raises(error, match="injected"):
        prog.train_step(x, y)
    assert allocation.calls == failing
    monkeypatch.undo()

    np.testing.assert_array_equal(prog.predict(x_predict), expected)
    np.testing.assert_allclose(prog.train_step(x, y), reference.train_step(x, y), rtol=1e-5)
    for name, value in reference.parameters.items():
        np.testing.assert_allclose(prog.parameters[name], value, rtol=1e-4, atol=1e-6, err_msg=name)
