"""nn.LayerNorm and F.layer_norm: PyTorch's parameters and formula, gradients
against float64 finite differences, the native backend against the reference
interpreter, and training steps against PyTorch."""

from __future__ import annotations

import re

import numpy as np
import pytest

import ember
from ember import functional as F
from ember import nn, optim
from ember.ir import ConfigError, ShapeError

FEATURES, HIDDEN, CLASSES = 5, 7, 3


def ln_mlp() -> nn.Sequential:
    """Linear -> LayerNorm -> ReLU -> Linear: parameters 0.*, 1.weight, 1.bias, 3.*."""
    return nn.Sequential(nn.Linear(FEATURES, HIDDEN), nn.LayerNorm(HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, CLASSES))


class Normalized2d(nn.Module):
    """F.layer_norm over the last two axes of a [B, 3, 4] input, with an affine map."""

    def __init__(self) -> None:
        self.weight = nn.Parameter((3, 4), init="normal")
        self.bias = nn.Parameter((3, 4), init="normal")

    def forward(self, x):
        return F.layer_norm(x, (3, 4), self.weight, self.bias, eps=1e-3)


def numpy_layer_norm(x, axes, weight=None, bias=None, eps=1e-5):
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(var + eps)
    y = y * weight if weight is not None else y
    return y + bias if bias is not None else y


def test_parameters_start_as_pytorchs():
    layer = nn.LayerNorm(6)
    program = ember.compile(nn.Sequential(layer), input_shape=(6,))
    params = program.parameters
    assert list(params) == ["0.weight", "0.bias"]
    np.testing.assert_array_equal(params["0.weight"], np.ones(6, np.float32))
    np.testing.assert_array_equal(params["0.bias"], np.zeros(6, np.float32))
    assert repr(layer) == "LayerNorm((6,), eps=1e-05, elementwise_affine=True)"


def test_without_affine_or_bias():
    assert [n for n, _ in nn.LayerNorm(4, elementwise_affine=False).named_parameters()] == []
    assert [n for n, _ in nn.LayerNorm(4, bias=False).named_parameters()] == ["weight"]


@pytest.mark.parametrize("backend", ["reference", "native"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_forward_matches_the_formula(backend, dtype):
    rng = np.random.default_rng(0)
    model = Normalized2d()
    program = ember.compile(model, input_shape=(3, 4), dtype=dtype, backend=backend)
    params = program.parameters
    x = (3 * rng.normal(size=(5, 3, 4)) + 1).astype(dtype)
    expected = numpy_layer_norm(x.astype(np.float64), (1, 2), params["weight"], params["bias"], eps=1e-3)
    rtol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(program.predict(x), expected, rtol=rtol, atol=rtol)


@pytest.mark.parametrize(
    ("make", "error", "words"),
    [
        (lambda: nn.LayerNorm(0), ConfigError, "normalized_shape"),
        (lambda: nn.LayerNorm((3, 2.5)), ConfigError, "normalized_shape"),
        (lambda: nn.LayerNorm(3, eps=-1.0), ConfigError, "eps"),
    ],
)
def test_bad_arguments(make, error, words):
    with pytest.raises(error, match=words):
        make()


def test_normalized_shape_must_match_the_input():
    with pytest.raises(ShapeError, match=r"normalized_shape \[4\].*shape \['B', 5\]"):
        ember.compile(nn.Sequential(nn.LayerNorm(4)), input_shape=(5,))


def _loss(program: ember.Program, x, y) -> float:
    return program.evaluate(x, y)["loss"]


def test_gradients_match_finite_differences():
    """Every parameter's gradient, float64, against central differences of the loss."""
    rng = np.random.default_rng(1)
    program = ember.compile(
        ln_mlp(), loss=nn.MSELoss(), optimizer=optim.SGD(lr=0.1), dtype="float64", backend="reference", seed=3
    )
    params = program.parameters
    params["1.weight"] = rng.normal(size=HIDDEN)  # away from the ones and zeros it starts at
    params["1.bias"] = rng.normal(size=HIDDEN)
    program.set_parameters(params)
    x, y = rng.normal(size=(4, FEATURES)), rng.normal(size=(4, CLASSES))
    grads = program.gradients(x, y)
    step = 1e-6
    for name, value in params.items():
        numeric = np.zeros_like(value)
        for index in np.ndindex(value.shape):
            for sign in (1, -1):
                shifted = {k: v.copy() for k, v in params.items()}
                shifted[name][index] += sign * step
                program.set_parameters(shifted)
                numeric[index] += sign * _loss(program, x, y) / (2 * step)
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-5, atol=1e-8, err_msg=name)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_native_matches_the_reference(dtype):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(9, FEATURES)).astype(dtype)
    y = rng.integers(0, CLASSES, 9)
    kwargs = {"loss": nn.CrossEntropyLoss(), "optimizer": optim.Adam(lr=0.01), "dtype": dtype, "seed": 4}
    native = ember.compile(ln_mlp(), **kwargs)
    reference = ember.compile(ln_mlp(), backend="reference", **kwargs)
    rtol = 1e-4 if dtype == "float32" else 1e-11
    for name, grad in reference.gradients(x, y).items():
        np.testing.assert_allclose(native.gradients(x, y)[name], grad, rtol=rtol, atol=rtol, err_msg=name)
    for _ in range(3):
        assert native.train_step(x, y) == pytest.approx(reference.train_step(x, y), rel=rtol)
    for name, value in reference.parameters.items():
        np.testing.assert_allclose(native.parameters[name], value, rtol=rtol, atol=rtol, err_msg=name)


@pytest.mark.parametrize("backend", ["reference", "native"])
def test_training_matches_pytorch(backend):
    """Forward, gradients and five Adam steps of Linear-LayerNorm-ReLU-Linear, against torch."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    program = ember.compile(
        ln_mlp(), loss=nn.CrossEntropyLoss(), optimizer=optim.Adam(lr=0.01), dtype="float64", backend=backend
    )
    params = program.parameters
    params["1.weight"] = 1 + 0.3 * rng.normal(size=HIDDEN)
    params["1.bias"] = 0.3 * rng.normal(size=HIDDEN)
    program.set_parameters(params)
    model = torch.nn.Sequential(
        torch.nn.Linear(FEATURES, HIDDEN),
        torch.nn.LayerNorm(HIDDEN),
        torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN, CLASSES),
    ).double()
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in params.items()})
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    x, y = rng.normal(size=(6, FEATURES)), rng.integers(0, CLASSES, 6)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    with torch.no_grad():
        np.testing.assert_allclose(program.predict(x), model(tx).numpy(), rtol=1e-10, atol=1e-12)
    grads = program.gradients(x, y)
    torch.nn.functional.cross_entropy(model(tx), ty).backward()
    for name, p in model.named_parameters():
        np.testing.assert_allclose(grads[name], p.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=name)
    for _ in range(5):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(tx), ty)
        loss.backward()
        opt.step()
        assert program.train_step(x, y) == pytest.approx(loss.item(), rel=1e-10)
    for name, p in model.named_parameters():
        np.testing.assert_allclose(program.parameters[name], p.detach().numpy(), rtol=1e-8, atol=1e-10, err_msg=name)


def _fused_kernels(dump: str) -> list[str]:
    """The kernels of a `fused` dump, each as its block of text."""
    return ["kernel" + block for block in dump.split("\nkernel")[1:]]


def test_fused_dump_shows_each_normalization_as_one_kernel():
    """Linear-LayerNorm-GELU-Linear: LayerNorm's forward (and the GELU after it)
    is one kernel that sweeps each row three times; its backward is one more."""
    model = nn.Sequential(nn.Linear(32, 64), nn.LayerNorm(64), nn.GELU(), nn.Linear(64, 10))
    program = ember.compile(model, loss=nn.CrossEntropyLoss(), optimizer=optim.Adam(lr=1e-3))
    kernels = _fused_kernels(program.dump("fused"))
    row_sums = [k for k in kernels if "[B,64]" in k and "{axes=[1], keepdims=true}" in k]
    forward = [k for k in kernels if "rsqrt" in k]
    assert len(forward) == 1
    assert forward[0].startswith("kernel k1: rows over [B,64] in 3 sweeps per row")
    assert "gelu" in forward[0]
    assert len(row_sums) == 2  # the forward's mean and variance; the backward's two sums over each row
    backward = next(k for k in row_sums if k is not forward[0])
    assert backward.count("{axes=[1], keepdims=true}") == 2
    kernels_text = program.dump("kernels")
    assert "k1: rows over [B,64], 3 sweeps per row" in kernels_text
    assert "sweep 2: for (i1) in [64]:" in kernels_text


def test_dropout_after_a_normalization_stays_in_its_row_kernel():
    """Linear-LayerNorm-GELU-Dropout-Linear: the dropout mask is drawn inside
    LayerNorm's row kernel (and again in the backward), never stored; native
    and reference training steps agree, masks included."""
    model = nn.Sequential(nn.Linear(32, 64), nn.LayerNorm(64), nn.GELU(), nn.Dropout(0.3), nn.Linear(64, 10))
    progs = {
        backend: ember.compile(
            model, loss=nn.CrossEntropyLoss(), optimizer=optim.Adam(lr=1e-2), dtype="float64", backend=backend
        )
        for backend in ("native", "reference")
    }
    fused = progs["native"].dump("fused")
    forward = [k for k in _fused_kernels(fused) if "rsqrt" in k]
    assert len(forward) == 1
    assert forward[0].startswith("kernel k1: rows over [B,64] in 3 sweeps per row")
    recomputed = fused[fused.index("recomputed (") :]
    mask = re.search(r"(%\d+): f64\[B,64\] = mul %\d+, %\d+\n", recomputed).group(1)  # the scaled mask
    assert re.search(rf"= mul %\d+, {mask}$", forward[0], re.M)  # dropout applied in the row kernel
    assert "random_uniform" in recomputed
    assert not re.search(rf"^    {mask} +f64\[", progs["native"].dump("kernels"), re.M)  # no buffer holds the mask
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 32)), rng.integers(0, 10, 16)
    losses = {backend: [prog.train_step(x, y) for _ in range(3)] for backend, prog in progs.items()}
    np.testing.assert_allclose(losses["native"], losses["reference"], rtol=1e-12)
    for name, value in progs["reference"].parameters.items():
        np.testing.assert_allclose(progs["native"].parameters[name], value, rtol=1e-10, atol=1e-12, err_msg=name)
