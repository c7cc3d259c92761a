"""Models of several inputs and outputs: inputs travel as tuples, a tuple
of outputs takes a list of losses (weighted), and every entry point,
metric and checkpoint handles them."""

import numpy as np
import pytest

import ember
from ember import nn, optim


class TwoTower(nn.Module):
    """Two inputs of different sizes; a class score and a regression value."""

    def __init__(self) -> None:
        self.classes = nn.Linear(8, 3)  # declared first, consumed last
        self.value = nn.Linear(8, 1)
        self.a = nn.Linear(4, 8)
        self.b = nn.Linear(2, 8)

    def forward(self, a, b):
        h = ember.relu(self.a(a) + self.b(b))
        return self.classes(h), self.value(h)


def data(rows: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(rows, 4)).astype(np.float32), rng.normal(size=(rows, 2)).astype(np.float32))
    y = (rng.integers(0, 3, rows), rng.normal(size=(rows, 1)).astype(np.float32))
    return x, y


def numpy_forward(p: dict, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h = np.maximum(a @ p["a.weight"].T + p["a.bias"] + b @ p["b.weight"].T + p["b.bias"], 0)
    return h @ p["classes.weight"].T + p["classes.bias"], h @ p["value.weight"].T + p["value.bias"]


def compile_two_tower(backend: str = "native", weights=(1.0, 0.5)) -> ember.Program:
    return ember.compile(
        TwoTower(),
        loss=[nn.CrossEntropyLoss(), nn.MSELoss()],
        loss_weights=list(weights),
        optimizer=optim.SGD(lr=0.1),
        backend=backend,
    )


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


@pytest.mark.parametrize("backend", ["native", "reference"])
def test_inputs_and_outputs_travel_as_tuples(backend):
    prog = compile_two_tower(backend)
    assert [str(t) for t in prog.input_types] == ["f32[B,4]", "f32[B,2]"]
    (a, b), (labels, values) = data()
    classes, value = prog.predict((a, b))
    expected = numpy_forward(prog.parameters, a, b)
    np.testing.assert_allclose(classes, expected[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(value, expected[1], rtol=1e-4, atol=1e-5)
    total = cross_entropy(expected[0], labels) + 0.5 * float(np.mean((expected[1] - values) ** 2))
    metrics = prog.evaluate((a, b), (labels, values))
    assert set(metrics) == {"loss", "loss0", "accuracy0", "loss1"}
    np.testing.assert_allclose(metrics["loss"], total, rtol=1e-5)
    np.testing.assert_allclose(metrics["loss0"], cross_entropy(expected[0], labels), rtol=1e-5)
    assert list(prog.gradients((a, b), (labels, values))) == list(prog.parameters)
    np.testing.assert_allclose(prog.train_step((a, b), (labels, values)), total, rtol=1e-5)


def test_loss_weights_weigh_the_training_loss_and_its_gradients():
    (a, b), (labels, values) = data()
    heavy, light = compile_two_tower(weights=(1.0, 2.0)), compile_two_tower(weights=(1.0, 0.0))
    only_classes = ember.compile(
        TwoTower(), loss=[nn.CrossEntropyLoss(), nn.MSELoss()], loss_weights=[1.0, 0.0], optimizer=optim.SGD()
    )
    g_light = light.gradients((a, b), (labels, values))
    np.testing.assert_array_equal(g_light["value.weight"], 0)
    g_heavy = heavy.gradients((a, b), (labels, values))
    np.testing.assert_array_equal(g_heavy["classes.weight"], g_light["classes.weight"])
    assert only_classes.evaluate((a, b), (labels, values))["loss"] == pytest.approx(
        only_classes.evaluate((a, b), (labels, values))["loss0"]
    )


def test_fit_trains_on_tuples_with_validation():
    prog = compile_two_tower()
    x, y = data(rows=40)
    history = prog.fit(x, y, epochs=3, batch_size=8, validation_data=data(rows=10, seed=1), progress=False)
    assert set(history) == {"loss", "lr", "seconds", "val_loss", "val_loss0", "val_accuracy0", "val_loss1"}
    assert history["loss"][-1] < history["loss"][0]


def test_checkpoints_keep_several_inputs_and_outputs(tmp_path):
    prog = compile_two_tower()
    x, y = data()
    prog.train_step(x, y)
    prog.save(tmp_path / "m.npz")
    loaded = ember.load(tmp_path / "m.npz")
    for ours, theirs in zip(loaded.predict(x), prog.predict(x), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    assert loaded.evaluate(x, y) == prog.evaluate(x, y)
    assert loaded.loss_info == prog.loss_info


def test_example_inputs_give_several_inputs_their_types():
    class Mixed(nn.Module):
        def forward(self, a, b):
            return a * ember.cast(b, "float32")

    prog = ember.compile(Mixed(), example_inputs=(np.zeros((1, 3)), ((5, 3), "int64")))
    assert [str(t) for t in prog.input_types] == ["f32[B,3]", "i64[B,3]"]
    np.testing.assert_array_equal(prog.predict((np.ones((2, 3)), np.full((2, 3), 2))), 2.0)
    with pytest.raises(ember.ConfigError, match="forward takes 2 inputs but example_inputs has 1"):
        ember.compile(Mixed(), example_inputs=(np.zeros((1, 3)),))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda p, x, y: p.predict(x[0]), r"this model takes 2 inputs: pass x as a tuple \(x0, x1\), got ndarray"),
        (lambda p, x, y: p.train_step(x, y[0]), r"this model takes 2 targets: pass y as a tuple \(y0, y1\)"),
        (lambda p, x, y: p.predict((x[0], x[1][:3])), r"x1 must have shape \[12, 2\], got \[3, 2\]"),
        (lambda p, x, y: p.evaluate(x, (y[0] + 5, y[1])), r"y0\[0\] = \d+ is not a class index in \[0, 3\)"),
    ],
    ids=["one-input", "one-target", "rows-differ", "bad-labels"],
)
def test_bad_tuples_are_named(call, message):
    prog = compile_two_tower("reference")
    x, y = data()
    with pytest.raises(ember.EmberError, match=message):
        call(prog, x, y)


def test_mismatched_losses_and_weights_are_named():
    with pytest.raises(ember.ConfigError, match=r"returns 2 output\(s\) but 1 loss\(es\) were given"):
        ember.compile(TwoTower(), loss=nn.MSELoss(), optimizer=optim.SGD())
    with pytest.raises(ember.ConfigError, match="loss_weights must be a list of 2 numbers"):
        ember.compile(TwoTower(), loss=[nn.CrossEntropyLoss(), nn.MSELoss()], loss_weights=[1.0], optimizer=optim.SGD())
    with pytest.raises(ember.ConfigError, match="loss_weights= weighs the losses of a list"):
        ember.compile(nn.Sequential(nn.Linear(2, 1)), loss=nn.MSELoss(), loss_weights=[2.0], optimizer=optim.SGD())
