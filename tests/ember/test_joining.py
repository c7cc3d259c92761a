"""`ember.cat` and `ember.stack`: NumPy's results on both backends,
gradients against PyTorch, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember import functional as F
from ember import nn, optim
from ember.ir import ConfigError, DTypeError, ShapeError


class Join(nn.Module):
    """Joins pieces of its input [B, 6, 4] with `join(pieces)`."""

    def __init__(self, join) -> None:
        super().__init__()
        self.join = join

    def forward(self, x):
        return self.join(x)


CASES = {
    "cat_last": (lambda x: ember.cat([x[..., :1], x, x[..., ::-1] * 2], dim=-1),
                 lambda x: np.concatenate([x[..., :1], x, x[..., ::-1] * 2], axis=-1)),
    "cat_middle_axis_kw": (lambda x: ember.cat((x[:, 4:], x), axis=1),
                           lambda x: np.concatenate([x[:, 4:], x], axis=1)),
    "cat_one": (lambda x: ember.cat([x], 1), lambda x: x),
    "stack_first": (lambda x: ember.stack([x, x * 3]), lambda x: np.stack([x, x * 3])),
    "stack_last": (lambda x: ember.stack([x[:, 0], x[:, 1], x[:, 2]], dim=-1),
                   lambda x: np.stack([x[:, 0], x[:, 1], x[:, 2]], axis=-1)),
    "stack_middle": (lambda x: F.stack([x, -x], 1), lambda x: np.stack([x, -x], 1)),
}  # fmt: skip


@pytest.mark.parametrize("backend", ["reference", "native"])
@pytest.mark.parametrize("name", CASES)
def test_joins_match_numpy(name: str, backend: str) -> None:
    join, expected = CASES[name]
    x = np.random.default_rng(0).normal(size=(5, 6, 4)).astype(np.float32)
    prog = ember.compile(Join(join), input_shape=(6, 4), backend=backend)
    np.testing.assert_array_equal(prog.predict(x), expected(x))


class Joined(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 6)
        self.b = nn.Linear(4, 3)
        self.out = nn.Linear(12, 2)

    def forward(self, x):
        h = ember.cat([F.tanh(self.a(x)), self.b(x), x[:, :3]], dim=1)
        s = ember.stack([h, h * h], dim=-1)
        return self.out(F.sum(s, axis=2))


def test_gradients_match_pytorch() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(7, 4)), rng.normal(size=(7, 2))
    model = Joined()
    for backend in ("reference", "native"):
        prog = ember.compile(
            model, loss=nn.MSELoss(), optimizer=optim.SGD(lr=0.1), dtype="float64", backend=backend, seed=4
        )
        t = {name: torch.tensor(value, requires_grad=True) for name, value in prog.parameters.items()}
        tx = torch.tensor(x)
        h = torch.cat(
            [torch.tanh(tx @ t["a.weight"].T + t["a.bias"]), tx @ t["b.weight"].T + t["b.bias"], tx[:, :3]], 1
        )
        out = torch.stack([h, h * h], -1).sum(2) @ t["out.weight"].T + t["out.bias"]
        torch.nn.functional.mse_loss(out, torch.tensor(y)).backward()
        np.testing.assert_allclose(prog.predict(x), out.detach().numpy(), rtol=1e-12)
        grads = prog.gradients(x, y)
        for name, value in t.items():
            np.testing.assert_allclose(grads[name], value.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize(
    ("join", "error", "message"),
    [
        (lambda x: ember.cat([x, x], 0), ShapeError, "batch axis"),
        (lambda x: ember.cat([x, x[:, :2, :3]], 1), ShapeError, "equal sizes on the other axes"),
        (lambda x: ember.cat([x, F.cast(x, "f64")], 1), DTypeError, "one dtype"),
        (lambda x: ember.cat([], 1), ConfigError, "non-empty"),
        (lambda x: ember.cat(x, 1), ConfigError, "non-empty"),
        (lambda x: ember.cat([x, x], 3), ShapeError, "dim 3 is out of range"),
        (lambda x: ember.stack([x, x[:, 1:]], 1), ShapeError, "one shape"),
        (lambda x: ember.cat([x, x], dim=1, axis=2), ConfigError, "not both"),
    ],
)
def test_bad_joins_are_clear_errors(join, error, message: str) -> None:
    with pytest.raises(error, match=message) as info:
        ember.compile(Join(join), input_shape=(6, 4))
    assert "test_joining.py" in str(info.value)
