"""Every activation module and functional activation against PyTorch, in
float64: values and gradients at and around their kinks, on both backends,
and a few optimizer steps of a small MLP using each activation."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember import functional as F
from ember import nn, optim

torch = pytest.importorskip("torch")
TF = torch.nn.functional

PROBES = [-25.0, -5.0, -3.5, -3.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 3.5, 6.0, 7.0, 25.0]
"""Kinks (0, +-3, 6, softplus's threshold 1.5 at beta 2), both sides of them, and the tails."""
WIDTH = len(PROBES)

MODULES = {
    "relu": (lambda: nn.ReLU(), lambda: torch.nn.ReLU()),
    "leaky_relu": (lambda: nn.LeakyReLU(0.2), lambda: torch.nn.LeakyReLU(0.2)),
    "sigmoid": (lambda: nn.Sigmoid(), lambda: torch.nn.Sigmoid()),
    "tanh": (lambda: nn.Tanh(), lambda: torch.nn.Tanh()),
    "gelu": (lambda: nn.GELU(), lambda: torch.nn.GELU()),
    "gelu_tanh": (lambda: nn.GELU(approximate="tanh"), lambda: torch.nn.GELU(approximate="tanh")),
    "silu": (lambda: nn.SiLU(), lambda: torch.nn.SiLU()),
    "mish": (lambda: nn.Mish(), lambda: torch.nn.Mish()),
    "elu": (lambda: nn.ELU(), lambda: torch.nn.ELU()),
    "elu_alpha": (lambda: nn.ELU(alpha=0.5), lambda: torch.nn.ELU(alpha=0.5)),
    "softplus": (lambda: nn.Softplus(), lambda: torch.nn.Softplus()),
    "softplus_beta": (lambda: nn.Softplus(beta=2.0, threshold=3.0), lambda: torch.nn.Softplus(2.0, 3.0)),
    "hardswish": (lambda: nn.Hardswish(), lambda: torch.nn.Hardswish()),
    "hardsigmoid": (lambda: nn.Hardsigmoid(), lambda: torch.nn.Hardsigmoid()),
    "relu6": (lambda: nn.ReLU6(), lambda: torch.nn.ReLU6()),
    "hardtanh": (lambda: nn.Hardtanh(), lambda: torch.nn.Hardtanh()),
    "hardtanh_range": (lambda: nn.Hardtanh(-3.0, 2.0), lambda: torch.nn.Hardtanh(-3.0, 2.0)),
    "softsign": (lambda: nn.Softsign(), lambda: torch.nn.Softsign()),
    "log_softmax": (lambda: nn.LogSoftmax(dim=1), lambda: torch.nn.LogSoftmax(dim=1)),
    "prelu": (lambda: nn.PReLU(), lambda: torch.nn.PReLU()),
    "prelu_channels": (lambda: nn.PReLU(WIDTH, init=0.1), lambda: torch.nn.PReLU(WIDTH, init=0.1)),
}

FUNCTIONS = {
    "erf": (ember.erf, torch.erf),
    "log1p": (lambda t: ember.log1p(t.abs()), lambda t: torch.log1p(t.abs())),
    "expm1": (ember.expm1, torch.expm1),
    "clamp": (lambda t: F.clamp(t, -3.0, 6.0), lambda t: torch.clamp(t, -3.0, 6.0)),
    "clamp_min": (lambda t: t.clamp(min=0.0), lambda t: t.clamp(min=0.0)),
    "clip_max": (lambda t: t.clip(max=-1.0), lambda t: t.clip(max=-1.0)),
    "relu6": (F.relu6, TF.relu6),
    "hardtanh": (lambda t: F.hardtanh(t, -2.0, 3.0), lambda t: TF.hardtanh(t, -2.0, 3.0)),
    "softplus": (lambda t: F.softplus(t, beta=0.5, threshold=1.0), lambda t: TF.softplus(t, 0.5, 1.0)),
    "gelu": (lambda t: F.gelu(t), lambda t: TF.gelu(t)),
    "gelu_tanh": (lambda t: F.gelu(t, approximate="tanh"), lambda t: TF.gelu(t, approximate="tanh")),
    "silu": (F.silu, TF.silu),
    "mish": (F.mish, TF.mish),
    "elu": (lambda t: F.elu(t, 2.0), lambda t: TF.elu(t, 2.0)),
    "hardswish": (F.hardswish, TF.hardswish),
    "hardsigmoid": (F.hardsigmoid, TF.hardsigmoid),
    "softsign": (F.softsign, TF.softsign),
}


class Probe(nn.Module):
    """act(x * p) for a parameter p holding the probe points (x is all ones),
    so that the gradient of p is the activation's derivative at the probes."""

    def __init__(self, act) -> None:
        self.p = nn.Parameter(data=np.array(PROBES))
        self.act = act

    def forward(self, x):
        return self.act(x * self.p)


def torch_probe(act, x: np.ndarray, y: np.ndarray):
    """Torch's output and parameter gradients for the same probe and MSE loss."""
    p = torch.tensor(PROBES, dtype=torch.float64, requires_grad=True)
    out = act(torch.tensor(x) * p)
    TF.mse_loss(out, torch.tensor(y)).backward()
    grads = {"p": p.grad.numpy()}
    if isinstance(act, torch.nn.Module):
        grads |= {f"act.{name}": q.grad.numpy() for name, q in act.named_parameters()}
    return out.detach().numpy(), grads


FLOAT32_CONSTANTS = {"hardsigmoid": 1e-7}
"""PyTorch's hardsigmoid gradient is 1.0f/6.0f, a float32 constant, also in float64."""


def check_probe(name: str, ember_act, torch_act, backend: str) -> None:
    prog = ember.compile(
        Probe(ember_act),
        loss=nn.MSELoss(),
        optimizer=optim.SGD(),
        dtype="float64",
        backend=backend,
        input_shape=(WIDTH,),
    )
    if isinstance(torch_act, torch.nn.Module):
        torch_act = torch_act.double()
        with torch.no_grad():
            for key, q in torch_act.named_parameters():  # PReLU's init is a float32 there
                q.copy_(torch.tensor(prog.parameters[f"act.{key}"]))
    x = np.ones((2, WIDTH))
    y = np.random.default_rng(0).normal(size=(2, WIDTH))
    expected_out, expected_grads = torch_probe(torch_act, x, y)
    np.testing.assert_allclose(prog.predict(x), expected_out, rtol=1e-13, atol=1e-15)
    grads = prog.gradients(x, y)
    assert set(grads) == set(expected_grads)
    rtol = FLOAT32_CONSTANTS.get(name, 1e-12)
    for key, grad in grads.items():
        np.testing.assert_allclose(grad, expected_grads[key], rtol=rtol, atol=1e-15, err_msg=key)


@pytest.mark.parametrize("backend", ["native", "reference"])
@pytest.mark.parametrize("name", MODULES)
def test_module_values_and_gradients_match_torch(name: str, backend: str) -> None:
    ember_module, torch_module = (make() for make in MODULES[name])
    check_probe(name, ember_module, torch_module, backend)


@pytest.mark.parametrize("backend", ["native", "reference"])
@pytest.mark.parametrize("name", FUNCTIONS)
def test_function_values_and_gradients_match_torch(name: str, backend: str) -> None:
    ember_fn, torch_fn = FUNCTIONS[name]
    check_probe(name, ember_fn, torch_fn, backend)


@pytest.mark.parametrize("name", MODULES)
def test_module_repr_matches_torch(name: str) -> None:
    ember_module, torch_module = (make() for make in MODULES[name])
    assert repr(ember_module) == repr(torch_module)


def test_inplace_is_accepted_and_shown_as_torch_shows_it() -> None:
    pairs = [
        (nn.ReLU(inplace=True), torch.nn.ReLU(inplace=True)),
        (nn.SiLU(inplace=True), torch.nn.SiLU(inplace=True)),
        (nn.ELU(0.5, inplace=True), torch.nn.ELU(0.5, inplace=True)),
        (nn.Hardtanh(-2.0, 2.0, inplace=True), torch.nn.Hardtanh(-2.0, 2.0, inplace=True)),
        (nn.ReLU6(inplace=True), torch.nn.ReLU6(inplace=True)),
        (nn.LeakyReLU(inplace=True), torch.nn.LeakyReLU(inplace=True)),
    ]
    for ours, theirs in pairs:
        assert repr(ours) == repr(theirs)


# -- training a small MLP ---------------------------------------------------------------
TRAINED = [name for name in MODULES if name not in ("log_softmax",)]


def train_both(name: str, backend: str, steps: int = 4):
    """Four Adam steps of Linear(5, 8) -> activation -> Linear(8, 3) with
    cross-entropy, in ember and in torch from the same weights."""
    make_ours, make_theirs = MODULES[name]
    width = 8
    ours = make_ours() if not name.startswith("prelu_") else nn.PReLU(width, init=0.1)
    theirs = make_theirs() if not name.startswith("prelu_") else torch.nn.PReLU(width, init=0.1)
    model = nn.Sequential(nn.Linear(5, width), ours, nn.Linear(width, 3))
    prog = ember.compile(
        model, loss=nn.CrossEntropyLoss(), optimizer=optim.Adam(lr=0.05), dtype="float64", backend=backend, seed=3
    )
    reference = torch.nn.Sequential(torch.nn.Linear(5, width), theirs, torch.nn.Linear(width, 3)).double()
    with torch.no_grad():
        for key, q in reference.named_parameters():
            q.copy_(torch.tensor(prog.parameters[key]))
    rng = np.random.default_rng(4)
    torch_opt = torch.optim.Adam(reference.parameters(), lr=0.05)
    for _ in range(steps):
        x, y = 3 * rng.normal(size=(16, 5)), rng.integers(0, 3, 16)
        loss = prog.train_step(x, y)
        torch_opt.zero_grad()
        torch_loss = TF.cross_entropy(reference(torch.tensor(x)), torch.tensor(y))
        torch_loss.backward()
        torch_opt.step()
        np.testing.assert_allclose(loss, torch_loss.item(), rtol=1e-10)
    return prog.parameters, {key: q.detach().numpy() for key, q in reference.named_parameters()}


@pytest.mark.parametrize("backend", ["native", "reference"])
@pytest.mark.parametrize("name", TRAINED)
def test_mlp_training_matches_torch(name: str, backend: str) -> None:
    ours, theirs = train_both(name, backend)
    assert set(ours) == set(theirs)
    for key in ours:
        np.testing.assert_allclose(ours[key], theirs[key], rtol=1e-8, atol=1e-10, err_msg=key)
