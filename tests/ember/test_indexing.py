"""Indexing traced tensors (`x[:, 0]`, `x[..., ::2]`, `x[None]`): NumPy's
results on both backends, views (not copies) in native code, gradients
against PyTorch, and clear errors naming the user's line."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember import functional as F
from ember import nn, optim
from ember.ir import ShapeError

KEYS = {
    "int": np.s_[:, 0],
    "negative_int": np.s_[:, -1],
    "ellipsis_step": np.s_[..., ::2],
    "range": np.s_[:, 2:6],
    "reversed": np.s_[:, ::-1, 1:],
    "new_axis": np.s_[:, None, 1],
    "trailing_new_axis": np.s_[..., None],
    "negative_bounds": np.s_[:, -5:-1:2, ::-2],
    "int_and_ellipsis": np.s_[..., 3],
    "empty": np.s_[:, 4:2],
    "whole": np.s_[:],
}


class Index(nn.Module):
    """Returns `x[key] * 2` (the product makes the result a kernel's own)."""

    def __init__(self, key) -> None:
        super().__init__()
        self.key = key

    def forward(self, x):
        return x[self.key] * 2.0


@pytest.mark.parametrize("backend", ["reference", "native"])
@pytest.mark.parametrize("name", KEYS)
def test_indexing_matches_numpy(name: str, backend: str) -> None:
    key = KEYS[name]
    x = np.random.default_rng(0).normal(size=(5, 6, 4)).astype(np.float32)
    prog = ember.compile(Index(key), input_shape=(6, 4), backend=backend)
    np.testing.assert_array_equal(prog.predict(x), x[key] * 2)


def test_a_slice_is_a_view_in_native_code() -> None:
    prog = ember.compile(Index(np.s_[:, 2:6, ::2]), input_shape=(6, 4))
    kernels = prog.dump("kernels")
    assert kernels.count("over [") == 1, kernels  # one kernel: no copy of the slice
    assert "= %x[8 + 24*i0 + 4*i1 + 2*i2] * " in kernels, kernels


class Sliced(nn.Module):
    """Slices of activations and of a parameter, through layers and back."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 16)
        self.b = nn.Linear(8, 4)
        self.c = nn.Linear(4, 4)

    def forward(self, x):
        h = F.tanh(self.a(x))
        y = self.b(h[:, 2:10]) + self.c(h[..., ::-5][:, None, :][:, 0])
        return y + h[:, -1][:, None] * self.a.weight[3, :4]


def test_gradients_match_pytorch() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(6, 8)), rng.normal(size=(6, 4))
    model = Sliced()
    progs = {
        backend: ember.compile(
            model, loss=nn.MSELoss(), optimizer=optim.SGD(lr=0.1), dtype="float64", backend=backend, seed=3
        )
        for backend in ("reference", "native")
    }
    params = progs["native"].parameters
    t = {name: torch.tensor(value, requires_grad=True) for name, value in params.items()}
    h = torch.tanh(torch.tensor(x) @ t["a.weight"].T + t["a.bias"])
    out = h[:, 2:10] @ t["b.weight"].T + t["b.bias"]
    out = out + torch.flip(h, [1])[:, ::5] @ t["c.weight"].T + t["c.bias"]
    out = out + h[:, -1][:, None] * t["a.weight"][3, :4]
    torch.nn.functional.mse_loss(out, torch.tensor(y)).backward()
    for backend, prog in progs.items():
        np.testing.assert_allclose(prog.predict(x), out.detach().numpy(), rtol=1e-12, err_msg=backend)
        grads = prog.gradients(x, y)
        for name, value in t.items():
            np.testing.assert_allclose(grads[name], value.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (np.s_[0], "axis 0 of size B"),
        (np.s_[1:], "axis 0 of size B"),
        (np.s_[:, 6], "index 6 is out of range for axis 1 of size 6"),
        (np.s_[:, -7], "index -7 is out of range"),
        (np.s_[..., 0, ...], "single ellipsis"),
        (np.s_[:, 0, 0, 0], "too many indices"),
        (np.s_[:, 1.5], "cannot index a traced tensor with float"),
        (np.s_[:, ::0], "step cannot be zero"),
    ],
)
def test_bad_indices_name_the_users_line(key, message: str) -> None:
    with pytest.raises(ShapeError, match=message) as info:
        ember.compile(Index(key), input_shape=(6, 4))
    assert "test_indexing.py" in str(info.value)
