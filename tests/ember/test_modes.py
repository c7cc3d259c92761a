"""Training and eval modes, and buffers: each mode is traced into its own
graph, a training-mode forward updates buffers in place, and checkpoints
keep every graph and buffer."""

import numpy as np
import pytest

import ember
from ember import nn, optim


class ModeScaled(nn.Module):
    """Doubles its input in training mode, triples it in eval mode."""

    def __init__(self) -> None:
        self.fc = nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(x * 2.0 if self.training else x * 3.0)


class Centering(nn.Module):
    """A running mean of its inputs (updated in training mode) subtracted
    before a Linear layer, and a count of the training steps."""

    def __init__(self) -> None:
        self.fc = nn.Linear(3, 2)
        self.register_buffer("mean", np.zeros(3))
        self.register_buffer("count", np.zeros((), np.int64))
        self.register_buffer("scratch", np.ones(3), persistent=False)

    def forward(self, x):
        if self.training:
            self.mean = self.mean * 0.5 + x.mean(axis=0) * 0.5
            self.count = self.count + 1
        return self.fc((x - self.mean) * self.scratch)


def data(rows: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(rows, 3)).astype(np.float32), rng.normal(size=(rows, 2)).astype(np.float32)


def linear(params: dict, x: np.ndarray) -> np.ndarray:
    return x @ params["fc.weight"].T + params["fc.bias"]


# -- modes ----------------------------------------------------------------------
def test_train_and_eval_set_every_module_and_return_self():
    model = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.ReLU()))
    assert model.training
    assert all(m.training for m in model.modules())
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    assert model.train() is model
    assert all(m.training for m in model.modules())
    model[1].train(False)
    assert model.training
    assert not model[1].training
    assert not model[1][0].training
    with pytest.raises(ember.ConfigError, match="mode must be True or False"):
        model.train("yes")


@pytest.mark.parametrize("backend", ["native", "reference"])
def test_predict_and_evaluate_run_eval_mode_train_step_and_gradients_train_mode(backend):
    prog = ember.compile(ModeScaled(), loss=nn.MSELoss(reduction="sum"), optimizer=optim.SGD(lr=0.0), backend=backend)
    x, y = data()
    params = prog.parameters
    np.testing.assert_allclose(prog.predict(x), linear(params, 3 * x), rtol=1e-5)
    eval_loss = float(np.sum((linear(params, 3 * x) - y) ** 2))
    np.testing.assert_allclose(prog.evaluate(x, y)["loss"], eval_loss, rtol=1e-5)
    train_out = linear(params, 2 * x)
    np.testing.assert_allclose(prog.train_step(x, y), np.sum((train_out - y) ** 2), rtol=1e-5)
    expected_bias_grad = 2 * (train_out - y).sum(axis=0)
    np.testing.assert_allclose(prog.gradients(x, y)["fc.bias"], expected_bias_grad, rtol=1e-4)


def test_each_mode_has_its_own_source_graph_and_checkpoints_keep_them(tmp_path):
    prog = ember.compile(ModeScaled(), loss=nn.MSELoss(), optimizer=optim.Adam(lr=0.1), backend="reference")
    assert set(prog._sources) == {"predict", "model", "evaluate"}
    assert "3.0" in str(prog._sources["evaluate"])
    assert "2.0" in str(prog._sources["model"])
    x, y = data()
    prog.train_step(x, y)
    prog.save(tmp_path / "m.npz")
    loaded = ember.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.predict(x), prog.predict(x))
    assert loaded.evaluate(x, y) == prog.evaluate(x, y)
    assert loaded.train_step(x, y) == prog.train_step(x, y)


def test_compiling_gives_back_the_users_modes():
    model = ModeScaled()
    ember.compile(model, loss=nn.MSELoss(), optimizer=optim.SGD(lr=0.1))
    assert model.training
    assert model.fc.training
    model.eval()
    model.fc.train()
    ember.compile(model, loss=nn.MSELoss(), optimizer=optim.SGD(lr=0.1))
    assert not model.training
    assert model.fc.training


# -- buffers --------------------------------------------------------------------
def test_register_buffer_names_buffers_in_pytorch_order():
    model = nn.Sequential(Centering(), nn.ReLU(), Centering())
    assert [name for name, _ in model.named_buffers()] == [
        "0.mean",
        "0.count",
        "0.scratch",
        "2.mean",
        "2.count",
        "2.scratch",
    ]
    assert model.buffers()[1].data.dtype == np.int64
    assert [name for name, _ in model.named_parameters()] == ["0.fc.weight", "0.fc.bias", "2.fc.weight", "2.fc.bias"]
    assert model.state_names()[:4] == ["0.mean", "0.count", "0.fc.weight", "0.fc.bias"]


def test_register_buffer_rejects_bad_names_and_values():
    layer = nn.Linear(2, 2)
    with pytest.raises(ember.ConfigError, match="attribute 'weight' already exists"):
        layer.register_buffer("weight", np.zeros(2))
    with pytest.raises(ember.ConfigError, match=r"without '\.'"):
        layer.register_buffer("a.b", np.zeros(2))
    with pytest.raises(ember.ConfigError, match="must hold numbers"):
        layer.register_buffer("names", np.array(["a"]))


@pytest.mark.parametrize("backend", ["native", "reference"])
def test_training_steps_update_buffers_and_nothing_else_does(backend):
    model = Centering()
    prog = ember.compile(model, loss=nn.MSELoss(), optimizer=optim.SGD(lr=0.1), backend=backend)
    assert list(prog.buffers) == ["mean", "count", "scratch"]
    x, y = data()
    prog.predict(x)
    prog.evaluate(x, y)
    prog.gradients(x, y)
    np.testing.assert_array_equal(prog.buffers["count"], 0.0)
    mean = np.zeros(3)
    for step in range(1, 4):
        xs, ys = data(seed=step)
        before = prog.parameters
        expected_out = linear(before, xs - mean)  # the forward reads the buffer's value before the step
        loss = prog.train_step(xs, ys)
        np.testing.assert_allclose(loss, np.mean((expected_out - ys) ** 2), rtol=1e-5)
        mean = 0.5 * mean + 0.5 * xs.mean(axis=0)
        np.testing.assert_allclose(prog.buffers["mean"], mean, rtol=1e-5, atol=1e-6)
        assert prog.buffers["count"] == step
    np.testing.assert_allclose(prog.predict(x), linear(prog.parameters, x - mean), rtol=1e-5, atol=1e-6)
    assert "mean.grad" not in prog.dump("autodiff")
    assert not any("mean" in name for name in prog.optimizer_state)
    assert list(prog.gradients(x, y)) == ["fc.weight", "fc.bias"]


def test_buffers_survive_save_and_load(tmp_path):
    prog = ember.compile(Centering(), loss=nn.MSELoss(), optimizer=optim.Adam(lr=0.1))
    x, y = data()
    prog.train_step(x, y)
    prog.save(tmp_path / "m.npz")
    loaded = ember.load(tmp_path / "m.npz")
    for name, value in prog.buffers.items():
        np.testing.assert_array_equal(loaded.buffers[name], value)
    assert loaded.train_step(x, y) == prog.train_step(x, y)
    for name, value in prog.buffers.items():
        np.testing.assert_array_equal(loaded.buffers[name], value)


def test_a_buffer_assigned_a_value_of_another_shape_names_it_and_the_line():
    class Bad(nn.Module):
        def __init__(self) -> None:
            self.fc = nn.Linear(3, 2)
            self.register_buffer("mean", np.zeros(3))

        def forward(self, x):
            self.mean = x.mean(axis=0, keepdims=True)
            return self.fc(x)

    with pytest.raises(ember.EmberError, match=r"buffer Bad.mean \(mean\) is f32\[3\]; .* f32\[1,3\] .*test_modes.py"):
        ember.compile(Bad(), loss=nn.MSELoss(), optimizer=optim.SGD())


def test_assigning_an_array_to_a_buffer_outside_tracing_sets_its_data():
    model = Centering()
    model.mean = np.full(3, 2.0)
    assert [name for name, _ in model.named_buffers()] == ["mean", "count", "scratch"]
    prog = ember.compile(model)
    np.testing.assert_array_equal(prog.buffers["mean"], 2.0)
