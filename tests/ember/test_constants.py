"""NumPy arrays used in forward become constants of the graphs: computed
with, never trained, the same in every mode's graph, kept by checkpoints."""

import numpy as np
import pytest

import ember
from ember import nn, optim

SHIFT = np.array([1.0, -2.0])
SCALE = np.array([[0.5, 0.25]])


class Shifted(nn.Module):
    """Adds a constant in both modes and scales by another in eval mode;
    NumPy operands on either side of the operator."""

    def __init__(self) -> None:
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        h = self.fc(x) + SHIFT
        return h if self.training else SCALE * h


def data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(5, 3)).astype(np.float32), rng.normal(size=(5, 2)).astype(np.float32)


@pytest.mark.parametrize("backend", ["native", "reference"])
def test_arrays_in_forward_are_constants_of_every_graph(backend):
    prog = ember.compile(Shifted(), loss=nn.MSELoss(), optimizer=optim.SGD(lr=0.1), backend=backend)
    assert list(prog.buffers) == ["_constant.0", "_constant.1"]
    for graph in ("predict", "model", "evaluate"):
        assert "buffer %_constant.1: f32[1,2]" in str(prog._sources[graph])
    x, y = data()
    p = prog.parameters
    np.testing.assert_allclose(prog.predict(x), SCALE * (x @ p["fc.weight"].T + p["fc.bias"] + SHIFT), rtol=1e-5)
    loss = prog.train_step(x, y)
    np.testing.assert_allclose(loss, np.mean((x @ p["fc.weight"].T + p["fc.bias"] + SHIFT - y) ** 2), rtol=1e-5)
    np.testing.assert_array_equal(prog.buffers["_constant.0"], SHIFT.astype(np.float32))
    assert list(prog.gradients(x, y)) == ["fc.weight", "fc.bias"]
    assert list(prog.state_dict()) == ["fc.weight", "fc.bias"]


def test_constants_survive_save_and_load(tmp_path):
    prog = ember.compile(Shifted(), loss=nn.MSELoss(), optimizer=optim.Adam(lr=0.1))
    prog.train_step(*data())
    prog.save(tmp_path / "m.npz")
    loaded = ember.load(tmp_path / "m.npz")
    x = data(1)[0]
    np.testing.assert_array_equal(loaded.predict(x), prog.predict(x))
    np.testing.assert_array_equal(loaded.buffers["_constant.1"], prog.buffers["_constant.1"])


def test_equal_arrays_share_one_constant_and_scalars_stay_scalars():
    class Twice(nn.Module):
        def __init__(self) -> None:
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            return (self.fc(x) * np.ones(2) + np.ones(2)) * np.float32(3.0)

    prog = ember.compile(Twice())
    assert list(prog.buffers) == ["_constant.0"]


def test_an_array_of_strings_is_named_with_the_line():
    class Strings(nn.Module):
        def __init__(self) -> None:
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            return self.fc(x) + np.array(["a", "b"])

    with pytest.raises(ember.DTypeError, match=r"must hold numbers, got dtype <U1 \(at \S+test_constants.py:\d+"):
        ember.compile(Strings())
