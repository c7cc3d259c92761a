"""Gradient clipping compiled into the training step: ten steps equal
torch.nn.utils.clip_grad_norm_ / clip_grad_value_ before torch.optim's
step (float64, 1e-10), natively and in the reference backend; the fused
step computes the global norm once and keeps each update in one kernel."""

import re

import numpy as np
import pytest

import ember
from ember import nn, optim
from ember.compiler.clipping import GradientClipping, clip_gradients

STEPS = 10
TOLERANCE = 1e-10
SIZES = (5, 16, 3)

CLIPS = {
    "norm": {"clip_grad_norm": 0.05},
    "norm-inactive": {"clip_grad_norm": 1e3},
    "value": {"clip_grad_value": 0.01},
    "value-and-norm": {"clip_grad_value": 0.02, "clip_grad_norm": 0.03},
}
OPTIMIZERS = {
    "sgd": (optim.SGD, "SGD", {"lr": 0.1, "momentum": 0.9}),
    "adam": (optim.Adam, "Adam", {"lr": 0.01}),
}


def _model() -> nn.Sequential:
    return nn.Sequential(nn.Linear(SIZES[0], SIZES[1]), nn.Tanh(), nn.Linear(SIZES[1], SIZES[2]))


def _batches() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(3)
    return [(rng.normal(0, 2, (8, SIZES[0])), rng.integers(0, SIZES[2], 8)) for _ in range(STEPS)]


def _torch_trajectory(torch, params: dict, torch_opt: str, hyper: dict, clip: dict) -> dict[str, np.ndarray]:
    model = torch.nn.Sequential(
        torch.nn.Linear(SIZES[0], SIZES[1]), torch.nn.Tanh(), torch.nn.Linear(SIZES[1], SIZES[2])
    ).double()
    model.load_state_dict({k: torch.tensor(v) for k, v in params.items()})
    opt = getattr(torch.optim, torch_opt)(model.parameters(), **hyper)
    for x, y in _batches():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(torch.tensor(x)), torch.tensor(y)).backward()
        if "clip_grad_value" in clip:
            torch.nn.utils.clip_grad_value_(model.parameters(), clip["clip_grad_value"])
        if "clip_grad_norm" in clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip["clip_grad_norm"])
        opt.step()
    return {k: v.detach().numpy() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("backend", ["native", "reference"])
@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("clip_name", sorted(CLIPS))
def test_clipped_steps_match_torch(clip_name, opt_name, backend):
    torch = pytest.importorskip("torch")
    make, torch_opt, hyper = OPTIMIZERS[opt_name]
    clip = CLIPS[clip_name]
    prog = ember.compile(
        _model(), loss=nn.CrossEntropyLoss(), optimizer=make(**hyper), dtype="float64", backend=backend, **clip
    )
    want = _torch_trajectory(torch, prog.parameters, torch_opt, hyper, clip)
    for x, y in _batches():
        prog.train_step(x, y)
    for name, value in prog.parameters.items():
        np.testing.assert_allclose(value, want[name], rtol=TOLERANCE, atol=TOLERANCE, err_msg=name)


def test_gradients_stay_unclipped():
    x, y = _batches()[0]
    clipped = ember.compile(_model(), nn.CrossEntropyLoss(), optim.SGD(lr=0.1), dtype="float64", clip_grad_norm=1e-3)
    plain = ember.compile(_model(), nn.CrossEntropyLoss(), optim.SGD(lr=0.1), dtype="float64")
    for name, g in clipped.gradients(x, y).items():
        np.testing.assert_array_equal(g, plain.gradients(x, y)[name])


def _kernels(dump: str) -> list[str]:
    """The fused dump's kernels (each its text), without the inline scalars."""
    body = dump.split("inline scalars")[0]
    return re.split(r"\n(?=kernel k\d+)", body)[1:]


def test_fused_step_computes_the_norm_once_and_keeps_updates_fused():
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    prog = ember.compile(model, loss=nn.CrossEntropyLoss(), optimizer=optim.Adam(), clip_grad_norm=1.0)
    kernels = _kernels(prog.dump("fused"))
    scalar_sqrt = [k for k in kernels if re.search(r"f32\[\] = sqrt", k)]
    assert len(scalar_sqrt) == 1, "the global norm is one scalar, computed in one kernel"
    # sums of squares are read from the gradients, never stored beside them by a matmul
    for kernel in kernels:
        if "matmul" in kernel.splitlines()[0]:
            assert not re.search(r"= mul (%\d+), \1\n", kernel + "\n"), kernel
    names = [name for name, _ in model.named_parameters()]
    for name in names:
        (update,) = [k for k in kernels if re.search(rf"= sub %{re.escape(name)},", k)]
        assert re.search(rf"%{re.escape(name)}\.exp_avg\b(?!_)", update)  # both moments updated in the same pass
        assert f"%{name}.exp_avg_sq" in update
    plain = ember.compile(model, loss=nn.CrossEntropyLoss(), optimizer=optim.Adam())
    # at most one reduction per gradient, and each weight's update leaves the
    # epilogue of its gradient's matmul (it waits for the norm of all gradients)
    assert len(kernels) <= len(_kernels(plain.dump("fused"))) + 2 * len(names)


def test_clip_by_value_fuses_into_the_update():
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
    clipped = ember.compile(model, loss=nn.CrossEntropyLoss(), optimizer=optim.Adam(), clip_grad_value=0.1)
    plain = ember.compile(model, loss=nn.CrossEntropyLoss(), optimizer=optim.Adam())
    assert len(_kernels(clipped.dump("fused"))) == len(_kernels(plain.dump("fused")))


def test_clipping_survives_save_and_load(tmp_path):
    prog = ember.compile(_model(), nn.CrossEntropyLoss(), optim.SGD(lr=0.1), dtype="float64", clip_grad_norm=0.05)
    prog.save(tmp_path / "m.npz")
    loaded = ember.load(tmp_path / "m.npz")
    assert loaded.clipping == GradientClipping(max_norm=0.05)
    for x, y in _batches()[:3]:
        prog.train_step(x, y)
        loaded.train_step(x, y)
    for name, value in prog.parameters.items():
        np.testing.assert_array_equal(loaded.parameters[name], value)


@pytest.mark.parametrize(
    "kwargs",
    [{"clip_grad_norm": 0}, {"clip_grad_norm": -1.0}, {"clip_grad_value": float("inf")}, {"clip_grad_norm": "1"}],
)
def test_bad_clipping_is_a_config_error(kwargs):
    with pytest.raises(ember.EmberError, match="clip_grad"):
        ember.compile(_model(), nn.CrossEntropyLoss(), optim.SGD(lr=0.1), **kwargs)


def test_inference_programs_refuse_clipping():
    with pytest.raises(ember.EmberError, match="loss= and optimizer="):
        ember.compile(_model(), clip_grad_norm=1.0)


def test_clip_pass_without_gradients_changes_nothing():
    empty = ember.ir.Graph("g")
    assert clip_gradients(empty, GradientClipping(max_norm=1.0)).outputs == {}
