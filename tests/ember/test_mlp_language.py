"""The model language as a whole: a model with two inputs (one of integer
indices through an Embedding), a slice, a concatenation, a residual block
with LayerNorm and two outputs trains natively with two losses along
PyTorch's trajectory, and a PyTorch state dict of it gives PyTorch's
predictions."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember import functional as F
from ember import nn, optim

STEPS = 5
LOSS_WEIGHTS = (1.0, 0.5)


class TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.inp = nn.Linear(6 + 4, 16)
        self.norm = nn.LayerNorm(16)
        self.block = nn.Linear(16, 16)
        self.head_a = nn.Linear(16, 3)
        self.head_b = nn.Linear(16, 1)

    def forward(self, x, idx):
        h = ember.cat([x[:, 2:8], self.emb(idx)], dim=1)
        h = F.relu(self.inp(h))
        h = h + self.block(F.gelu(self.norm(h)))
        return self.head_a(h), self.head_b(h)


def torch_model(torch):
    class TorchTwoHeads(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = torch.nn.Embedding(10, 4)
            self.inp = torch.nn.Linear(6 + 4, 16)
            self.norm = torch.nn.LayerNorm(16)
            self.block = torch.nn.Linear(16, 16)
            self.head_a = torch.nn.Linear(16, 3)
            self.head_b = torch.nn.Linear(16, 1)

        def forward(self, x, idx):
            h = torch.cat([x[:, 2:8], self.emb(idx)], dim=1)
            h = torch.relu(self.inp(h))
            h = h + self.block(torch.nn.functional.gelu(self.norm(h)))
            return self.head_a(h), self.head_b(h)

    return TorchTwoHeads().double()


def batches(count: int, rows: int = 12):
    rng = np.random.default_rng(7)
    for _ in range(count):
        x = rng.normal(size=(rows, 8))
        idx = rng.integers(0, 10, rows)
        labels = rng.integers(0, 3, rows)
        targets = rng.normal(size=(rows, 1))
        yield (x, idx), (labels, targets)


def compile_two_heads(backend: str = "native") -> ember.Program:
    (x, idx), _ = next(batches(1))
    return ember.compile(
        TwoHeads(),
        loss=[nn.CrossEntropyLoss(), nn.MSELoss()],
        loss_weights=list(LOSS_WEIGHTS),
        optimizer=optim.Adam(lr=0.01),
        example_inputs=(x, idx),
        dtype="float64",
        backend=backend,
        seed=4,
    )


def test_two_inputs_two_outputs_two_losses_train_on_both_backends_alike() -> None:
    progs = {backend: compile_two_heads(backend) for backend in ("native", "reference")}
    for (x, idx), (labels, targets) in batches(STEPS):
        losses = {backend: prog.train_step((x, idx), (labels, targets)) for backend, prog in progs.items()}
        assert losses["native"] == pytest.approx(losses["reference"], rel=1e-12)
    for name, value in progs["reference"].parameters.items():
        np.testing.assert_allclose(progs["native"].parameters[name], value, rtol=1e-10, atol=1e-13, err_msg=name)
    a, b = progs["native"].predict((x, idx))
    assert a.shape == (12, 3)
    assert b.shape == (12, 1)


def test_training_follows_pytorchs_trajectory() -> None:
    torch = pytest.importorskip("torch")
    prog = compile_two_heads()
    model = torch_model(torch)
    model.load_state_dict({name: torch.tensor(value) for name, value in prog.state_dict().items()})
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for (x, idx), (labels, targets) in batches(STEPS):
        ours = prog.train_step((x, idx), (labels, targets))
        opt.zero_grad()
        a, b = model(torch.tensor(x), torch.tensor(idx))
        loss = LOSS_WEIGHTS[0] * torch.nn.functional.cross_entropy(a, torch.tensor(labels))
        loss = loss + LOSS_WEIGHTS[1] * torch.nn.functional.mse_loss(b, torch.tensor(targets))
        loss.backward()
        opt.step()
        assert ours == pytest.approx(loss.item(), rel=1e-10)
    for name, value in model.state_dict().items():
        np.testing.assert_allclose(prog.state_dict()[name], value.numpy(), rtol=1e-8, atol=1e-11, err_msg=name)


def test_a_pytorch_state_dict_gives_pytorchs_predictions() -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch_model(torch).eval()
    prog = compile_two_heads()
    prog.load_state_dict(model.state_dict())
    (x, idx), _ = next(batches(1))
    ours = prog.predict((x, idx))
    with torch.no_grad():
        theirs = model(torch.tensor(x), torch.tensor(idx))
    for mine, other in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(mine, other.numpy(), rtol=1e-12, atol=1e-13)
