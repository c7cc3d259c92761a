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


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) * 1024


def test_a_huge_predict_followed_by_small_ones_gives_its_memory_back():
    prog, reference = classifier(), classifier("reference")
    huge, _ = batch(1_000_000, seed=2)
    prog.predict(huge)
    held = prog._exec.memory_bytes
    assert held >= 32 * 1_000_000  # the hidden activations, f32[B,8]
    prog.predict(huge[:300_000])  # within 4x: nothing is reallocated
    assert prog._exec.memory_bytes == held
    small = huge[:10]
    np.testing.assert_allclose(prog.predict(small), reference.predict(small), rtol=1e-5, atol=1e-6)
    assert prog._exec.memory_bytes < 2 << 20


def test_release_memory_gives_the_memory_back_to_the_os():
    """The workspace of a 2 000 000-row predict (64 MB) is returned to the
    OS, and every entry runs as before afterwards."""
    prog, reference = classifier(), classifier("reference")
    x, y = batch(32)
    prog.train_step(x, y)
    reference.train_step(x, y)
    huge, _ = batch(2_000_000, seed=3)
    out = prog.predict(huge)  # kept alive: only the workspace may change the RSS below
    before = rss_bytes()
    prog.release_memory()
    assert prog._exec.memory_bytes == 0
    assert before - rss_bytes() > 0.8 * 32 * len(huge)
    assert out.shape == (len(huge), 3)
    np.testing.assert_allclose(prog.predict(huge[:50]), reference.predict(huge[:50]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(prog.train_step(x, y), reference.train_step(x, y), rtol=1e-5)


def test_release_memory_on_the_reference_backend_is_harmless():
    prog = classifier("reference")
    x, _ = batch(5)
    expected = prog.predict(x)
    prog.release_memory()
    np.testing.assert_array_equal(prog.predict(x), expected)
