"""State dicts under PyTorch's names (given out, loaded back, loaded from
PyTorch) and frozen parameters."""

import numpy as np
import pytest

import ember
from ember import nn, optim

NAMES = [
    "0.weight",
    "0.bias",
    "2.weight",
    "2.bias",
    "2.running_mean",
    "2.running_var",
    "2.num_batches_tracked",
    "3.weight",
    "3.bias",
]


def mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.BatchNorm1d(8), nn.Linear(8, 3))


def torch_mlp(torch):
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 3))


def data(rows: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(1.0, 2.0, size=(rows, 4)).astype(np.float32), rng.integers(0, 3, rows)


@pytest.fixture
def prog() -> ember.Program:
    prog = ember.compile(mlp(), loss=nn.CrossEntropyLoss(), optimizer=optim.SGD(lr=0.1), backend="reference")
    prog.train_step(*data())
    return prog


def test_state_dict_has_pytorchs_names_order_and_dtypes(prog):
    state = prog.state_dict()
    assert list(state) == NAMES
    assert state["2.num_batches_tracked"].dtype == np.int64
    assert state["2.num_batches_tracked"] == 1
    assert state["0.weight"].dtype == np.float32
    state["0.weight"][:] = 0  # a copy
    assert np.any(prog.parameters["0.weight"] != 0)


def test_non_persistent_buffers_stay_out_of_the_state_dict():
    class Shifted(nn.Module):
        def __init__(self) -> None:
            self.fc = nn.Linear(2, 2)
            self.register_buffer("shift", np.ones(2), persistent=False)

        def forward(self, x):
            return self.fc(x) + self.shift

    assert list(ember.compile(Shifted()).state_dict()) == ["fc.weight", "fc.bias"]


def test_a_pytorch_state_dict_loads_and_gives_pytorchs_eval_predictions():
    torch = pytest.importorskip("torch")
    model = torch_mlp(torch)
    torch_optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for seed in range(3):  # running statistics away from their start
        x, y = data(seed=seed)
        torch_optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        torch_optimizer.step()
    model.eval()
    prog = ember.compile(mlp())
    assert list(prog.state_dict()) == list(model.state_dict())
    assert prog.load_state_dict(model.state_dict()) == ([], [])
    x = data(rows=9, seed=5)[0]
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(prog.predict(x), expected, rtol=1e-5, atol=1e-6)
    assert prog.state_dict()["2.num_batches_tracked"] == 3

    twin = torch_mlp(torch)
    twin.load_state_dict({k: torch.from_numpy(v) for k, v in prog.state_dict().items()})
    twin.eval()
    with torch.no_grad():
        np.testing.assert_allclose(twin(torch.from_numpy(x)).numpy(), expected, rtol=1e-6)


def test_load_state_dict_round_trips_and_accepts_lists(prog):
    state = prog.state_dict()
    other = ember.compile(mlp())
    other.load_state_dict({k: v.tolist() for k, v in state.items()})
    for name, value in other.state_dict().items():
        np.testing.assert_array_equal(value, state[name])


def expect_rejected(prog: ember.Program, state: dict, error: type, message: str) -> None:
    before = prog.state_dict()
    with pytest.raises(error, match=message):
        prog.load_state_dict(state)
    for name, value in prog.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


def test_bad_state_dicts_name_the_key_and_write_nothing(prog):
    good = {k: np.zeros_like(v) for k, v in prog.state_dict().items()}
    missing = {k: v for k, v in good.items() if k != "2.running_var"}
    expect_rejected(prog, missing, ember.InputError, r"missing keys '2\.running_var' \(pass strict=False")
    expect_rejected(prog, {**good, "9.weight": 1}, ember.InputError, r"unexpected keys '9\.weight'")
    wrong_shape = {**good, "3.bias": np.zeros(4)}
    expect_rejected(prog, wrong_shape, ember.ShapeError, r"state_dict\['3\.bias'\] must have shape \[3\], got \[4\]")
    float_count = {**good, "2.num_batches_tracked": np.float32(2.5)}
    expect_rejected(prog, float_count, ember.DTypeError, r"'2\.num_batches_tracked'\] must hold integers \(int64\)")
    strings = {**good, "0.bias": ["a"] * 8}
    expect_rejected(prog, strings, ember.DTypeError, r"state_dict\['0\.bias'\] must hold numbers")
    with pytest.raises(ember.DTypeError, match="needs a mapping"):
        prog.load_state_dict([1, 2])


def test_non_strict_loading_returns_missing_and_unexpected_keys(prog):
    bias = np.full(3, 0.5, np.float32)
    keys = prog.load_state_dict({"3.bias": bias, "head.weight": np.zeros(2)}, strict=False)
    assert keys.missing_keys == [n for n in NAMES if n != "3.bias"]
    assert keys.unexpected_keys == ["head.weight"]
    np.testing.assert_array_equal(prog.parameters["3.bias"], bias)


def test_state_dicts_survive_save_and_load(prog, tmp_path):
    prog.save(tmp_path / "m.npz")
    loaded = ember.load(tmp_path / "m.npz")
    state = loaded.state_dict()
    assert list(state) == NAMES
    assert state["2.num_batches_tracked"].dtype == np.int64


# -- frozen parameters ------------------------------------------------------------
@pytest.mark.parametrize("how", ["module", "attribute"])
@pytest.mark.parametrize("backend", ["native", "reference"])
def test_frozen_parameters_get_no_gradient_update_or_state(how, backend, tmp_path):
    model = mlp()
    if how == "module":
        assert model[0].requires_grad_(False) is model[0]
    else:
        model[0].weight.requires_grad = False
        model[0].bias.requires_grad = False
    prog = ember.compile(model, loss=nn.CrossEntropyLoss(), optimizer=optim.Adam(lr=0.1), backend=backend)
    before = prog.parameters
    x, y = data()
    assert list(prog.gradients(x, y)) == NAMES[2:4] + NAMES[7:]
    prog.train_step(x, y)
    after = prog.parameters
    np.testing.assert_array_equal(after["0.weight"], before["0.weight"])
    assert np.any(after["3.weight"] != before["3.weight"])
    assert not any(name.startswith("0.") for name in prog.optimizer_state)
    assert "0.weight.grad" not in prog.dump("simplified")
    prog.save(tmp_path / "m.npz")
    loaded = ember.load(tmp_path / "m.npz")
    assert loaded.frozen == ("0.weight", "0.bias")
    loaded.train_step(x, y)
    np.testing.assert_array_equal(loaded.parameters["0.weight"], before["0.weight"])
