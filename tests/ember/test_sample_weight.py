"""Sample weights: the loss is the mean over the batch of w_i * loss_i."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember import functional as F
from ember import nn, optim
from ember.ir import ConfigError, EmberError, InputError

torch = pytest.importorskip("torch")

ROWS = 9


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(ROWS, 4)), rng.integers(0, 3, ROWS), rng.random(ROWS) * 2


def _compiled(loss, backend="native", **kwargs):
    return ember.compile(nn.Linear(4, 3), loss=loss, optimizer=optim.SGD(lr=0.1, **kwargs), dtype="float64",
                         backend=backend)  # fmt: skip


def _torch_weighted(params, per_sample, denominator=None):
    """Loss and gradients of sum_i w_i loss_i / denominator (default: rows)."""
    layer = torch.nn.Linear(4, 3).double()
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(params["weight"]))
        layer.bias.copy_(torch.from_numpy(params["bias"]))
    loss = per_sample(layer)
    loss.backward()
    return loss.item(), {"weight": layer.weight.grad.numpy(), "bias": layer.bias.grad.numpy()}


def _check(prog, x, y, w, expected, grads) -> None:
    np.testing.assert_allclose(prog.evaluate(x, y, sample_weight=w)["loss"], expected, rtol=1e-10)
    got = prog.gradients(x, y, sample_weight=w)
    for name, grad in grads.items():
        np.testing.assert_allclose(got[name], grad, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(prog.train_step(x, y, sample_weight=w), expected, rtol=1e-10)


@pytest.mark.parametrize("backend", ["native", "reference"])
def test_mse_weights_each_rows_mean(backend) -> None:
    x, _, w = _data()
    y = np.random.default_rng(1).normal(size=(ROWS, 3))
    prog = _compiled(nn.MSELoss(), backend)
    out = x @ prog.parameters["weight"].T + prog.parameters["bias"]
    by_hand = np.mean(w * np.mean((out - y) ** 2, axis=1))  # the mean over the batch of w_i * loss_i
    xt, yt, wt = (torch.from_numpy(a) for a in (x, y, w))
    expected, grads = _torch_weighted(prog.parameters, lambda m: ((m(xt) - yt) ** 2 * wt[:, None]).mean())
    assert expected == pytest.approx(by_hand, rel=1e-12)
    _check(prog, x, y, w, expected, grads)


@pytest.mark.parametrize("backend", ["native", "reference"])
def test_cross_entropy_weights_with_class_weights(backend) -> None:
    """With class weights the weighted sum is divided by the sum of the
    targets' class weights, as PyTorch's mean is."""
    x, y, w = _data(2)
    cw = torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64)
    prog = _compiled(nn.CrossEntropyLoss(weight=cw.numpy()), backend)
    xt, yt, wt = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(w)

    def weighted(m):
        per_sample = torch.nn.functional.cross_entropy(m(xt), yt, weight=cw, reduction="none")
        return (per_sample * wt).sum() / cw[yt].sum()

    _check(prog, x, y, w, *_torch_weighted(prog.parameters, weighted))


def test_plain_cross_entropy_is_the_mean_of_weighted_losses() -> None:
    x, y, w = _data(3)
    prog = _compiled(nn.CrossEntropyLoss())
    xt, yt, wt = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(w)
    expected, grads = _torch_weighted(
        prog.parameters, lambda m: (torch.nn.functional.cross_entropy(m(xt), yt, reduction="none") * wt).mean()
    )
    _check(prog, x, y, w, expected, grads)


def test_weights_of_one_change_nothing_and_zero_weights_do_not_train() -> None:
    x, y, _ = _data(4)
    a, b = _compiled(nn.CrossEntropyLoss()), _compiled(nn.CrossEntropyLoss())
    a.fit(x, y, epochs=2, batch_size=4, progress=False)
    b.fit(x, y, epochs=2, batch_size=4, progress=False, sample_weight=np.ones(ROWS))
    for name, value in a.parameters.items():
        np.testing.assert_array_equal(value, b.parameters[name])
    before = b.parameters
    b.fit(x, y, epochs=1, batch_size=4, progress=False, sample_weight=np.zeros(ROWS))
    for name, value in before.items():
        np.testing.assert_array_equal(value, b.parameters[name])


def test_evaluate_with_weights_spans_chunks(monkeypatch) -> None:
    x, y, w = _data(5)
    prog = _compiled(nn.CrossEntropyLoss())
    whole = prog.evaluate(x, y, sample_weight=w)["loss"]
    monkeypatch.setattr(ember.program, "EVAL_CHUNK_ROWS", 4)
    assert prog.evaluate(x, y, sample_weight=w)["loss"] == pytest.approx(whole, rel=1e-12)


@pytest.mark.parametrize(
    ("weights", "error", "message"),
    [
        (-np.ones(ROWS), InputError, r"sample_weight\[0\] = -1.0: sample weights must be finite numbers >= 0"),
        (np.r_[np.ones(ROWS - 1), np.nan], InputError, r"sample_weight\[8\] = nan"),
        (np.r_[np.ones(ROWS - 1), np.inf], InputError, r"sample_weight\[8\] = inf"),
        (np.ones(ROWS - 1), EmberError, r"sample_weight must have shape \[9\], got \[8\]"),
        (np.ones((ROWS, 2)), EmberError, r"sample_weight must have shape \[9\]"),
        (["a"] * ROWS, EmberError, "sample_weight must hold float values"),
    ],
)
def test_bad_sample_weights_are_refused_before_anything_runs(weights, error, message) -> None:
    x, y, _ = _data(6)
    prog = _compiled(nn.CrossEntropyLoss(), momentum=0.9)
    before = prog.parameters, prog.optimizer_state
    for call in (prog.train_step, prog.gradients, prog.evaluate):
        with pytest.raises(error, match=message):
            call(x, y, sample_weight=weights)
    with pytest.raises(error, match=message):
        prog.fit(x, y, sample_weight=weights, progress=False)
    for old, new in zip(before, (prog.parameters, prog.optimizer_state), strict=True):
        for name in old:
            np.testing.assert_array_equal(old[name], new[name])


class ScalarLoss(nn.Loss):
    def forward(self, prediction, target):
        return F.mean((prediction - target) ** 2)


class CalledLoss(nn.Loss):
    """A custom loss of the older form: it defines __call__ itself."""

    def __call__(self, prediction, target):
        return F.mean(F.abs(prediction - target))


@pytest.mark.parametrize("loss", [ScalarLoss, CalledLoss])
def test_a_loss_returning_a_scalar_takes_no_sample_weights(loss) -> None:
    prog = ember.compile(nn.Linear(4, 3), loss=loss(), optimizer=optim.SGD())
    x, y = np.zeros((2, 4), np.float32), np.zeros((2, 3), np.float32)
    assert np.isfinite(prog.train_step(x, y))
    with pytest.raises(ConfigError, match="takes no sample weights: its loss returns a scalar"):
        prog.train_step(x, y, sample_weight=[1.0, 2.0])


def test_sample_weights_survive_save_and_load(tmp_path) -> None:
    x, y, w = _data(7)
    prog = _compiled(nn.CrossEntropyLoss())
    prog.save(tmp_path / "m.npz")
    back = ember.load(tmp_path / "m.npz")
    assert back.evaluate(x, y, sample_weight=w) == prog.evaluate(x, y, sample_weight=w)
