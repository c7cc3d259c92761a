"""nn.Embedding and F.embedding: PyTorch's initialization, outputs,
gradients (repeated indices accumulate, the padding row gets none) and Adam
steps; the same gradients at any thread count; bad indices rejected before
native code runs; unsupported options and wrong arguments as clear errors.

Until programs take integer inputs, the models here take the indices as
floats and cast them (`ember.cast(x, "i64")`), which is also a path the
index checks follow."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember import functional as F
from ember import nn, optim
from ember.ir import ConfigError, DTypeError, InputError

ROWS, DIM, WORDS = 10, 5, 3


class Bag(nn.Module):
    """Embeds WORDS indices per example and maps the joined vectors to 4 outputs."""

    def __init__(self, padding_idx: int | None = None) -> None:
        super().__init__()
        self.emb = nn.Embedding(ROWS, DIM, padding_idx=padding_idx)
        self.out = nn.Linear(WORDS * DIM, 4)

    def forward(self, x):
        e = self.emb(ember.cast(x, "i64"))
        return self.out(F.reshape(e, ["B", WORDS * DIM]))


def _batch(rng: np.random.Generator, rows: int = 8) -> tuple[np.ndarray, np.ndarray]:
    x = rng.integers(0, ROWS, size=(rows, WORDS)).astype(np.float64)
    x[0] = x[1] = [2, 2, 7]  # repeated rows and repeated indices within a row
    x[2, 0] = 0
    return x, rng.normal(size=(rows, 4))


def _torch_bag(torch, params: dict[str, np.ndarray], padding_idx: int | None):
    model = torch.nn.Sequential()
    emb = torch.nn.Embedding(ROWS, DIM, padding_idx=padding_idx, dtype=torch.float64)
    out = torch.nn.Linear(WORDS * DIM, 4, dtype=torch.float64)
    with torch.no_grad():
        emb.weight.copy_(torch.tensor(params["emb.weight"]))
        out.weight.copy_(torch.tensor(params["out.weight"]))
        out.bias.copy_(torch.tensor(params["out.bias"]))
    model.emb, model.out = emb, out
    return model, lambda x: out(emb(torch.tensor(x).long()).reshape(len(x), WORDS * DIM))


def test_initialization_is_pytorchs() -> None:
    layer = nn.Embedding(400, 300, padding_idx=-3)
    assert layer.padding_idx == 397
    weight = layer.weight.initial_value(np.random.default_rng(0))
    assert weight.shape == (400, 300)
    np.testing.assert_array_equal(weight[397], 0.0)
    assert weight.std() == pytest.approx(1.0, rel=0.01)
    assert abs(weight.mean()) < 0.01


@pytest.mark.parametrize("padding_idx", [None, 2])
@pytest.mark.parametrize("backend", ["reference", "native"])
def test_outputs_and_gradients_match_pytorch(backend: str, padding_idx: int | None) -> None:
    torch = pytest.importorskip("torch")
    x, y = _batch(np.random.default_rng(0))
    prog = ember.compile(
        Bag(padding_idx),
        loss=nn.MSELoss(),
        optimizer=optim.SGD(lr=0.1),
        dtype="float64",
        backend=backend,
        seed=1,
        input_shape=(WORDS,),
    )
    model, forward = _torch_bag(torch, prog.parameters, padding_idx)
    out = forward(x)
    torch.nn.functional.mse_loss(out, torch.tensor(y)).backward()
    np.testing.assert_allclose(prog.predict(x), out.detach().numpy(), rtol=1e-13)
    grads = prog.gradients(x, y)
    for name, p in model.named_parameters():
        np.testing.assert_allclose(grads[name], p.grad.numpy(), rtol=1e-12, atol=1e-15, err_msg=name)
    if padding_idx is not None:
        np.testing.assert_array_equal(grads["emb.weight"][padding_idx], 0.0)
    assert np.all(grads["emb.weight"][2] != 0.0) or padding_idx == 2  # row 2 is used four times


@pytest.mark.parametrize("backend", ["reference", "native"])
def test_adam_steps_match_pytorch(backend: str) -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    prog = ember.compile(
        Bag(padding_idx=0),
        loss=nn.MSELoss(),
        optimizer=optim.Adam(lr=0.05),
        dtype="float64",
        backend=backend,
        input_shape=(WORDS,),
    )
    model, forward = _torch_bag(torch, prog.parameters, 0)
    adam = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(4):
        x, y = _batch(rng)
        loss = prog.train_step(x, y)
        adam.zero_grad()
        expected = torch.nn.functional.mse_loss(forward(x), torch.tensor(y))
        expected.backward()
        adam.step()
        assert loss == pytest.approx(expected.item(), rel=1e-12)
    for name, p in model.named_parameters():
        np.testing.assert_allclose(prog.parameters[name], p.detach().numpy(), rtol=1e-10, atol=1e-13, err_msg=name)


def test_gradients_are_the_same_at_any_thread_count() -> None:
    x, y = _batch(np.random.default_rng(2), rows=64)
    prog = ember.compile(Bag(), loss=nn.MSELoss(), optimizer=optim.SGD(lr=0.1), input_shape=(WORDS,))
    before = ember.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            ember.set_num_threads(threads)
            results.append(prog.gradients(x, y)["emb.weight"])
    finally:
        ember.set_num_threads(before)
    np.testing.assert_array_equal(results[0], results[1])


@pytest.mark.parametrize("bad", [ROWS, -1, 10_000, np.nan])
@pytest.mark.parametrize("backend", ["reference", "native"])
def test_indices_outside_the_table_are_input_errors(bad: float, backend: str) -> None:
    prog = ember.compile(Bag(), loss=nn.MSELoss(), optimizer=optim.SGD(lr=0.1), backend=backend, input_shape=(WORDS,))
    x, y = _batch(np.random.default_rng(3))
    before = prog.parameters
    x[3, 1] = bad
    for run in (prog.predict, lambda x: prog.train_step(x, y), lambda x: prog.gradients(x, y)):
        with pytest.raises(InputError, match=r"x\[3,1\] = .* is not a row index in \[0, 10\)"):
            run(x)
    for name, value in prog.parameters.items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)


def test_indices_that_truncate_into_the_table_are_accepted() -> None:
    prog = ember.compile(Bag(), backend="native", input_shape=(WORDS,))
    x = np.array([[-0.5, 9.9, 3.0]])
    np.testing.assert_array_equal(prog.predict(x), prog.predict(np.array([[0.0, 9.0, 3.0]])))


class Functional(nn.Module):
    def __init__(self, **options) -> None:
        super().__init__()
        self.weight = nn.Parameter((ROWS, DIM))
        self.options = options

    def forward(self, x):
        return F.sum(ember.embedding(ember.cast(x, "i32"), self.weight, **self.options), axis=1)


def test_functional_embedding_with_negative_padding_idx() -> None:
    x = np.array([[1.0, 9.0, 9.0], [0.0, 1.0, 2.0]])
    native = ember.compile(Functional(padding_idx=-1), input_shape=(WORDS,))
    weight = native.parameters["weight"]
    np.testing.assert_allclose(native.predict(x), weight[x.astype(int)].sum(axis=1), rtol=1e-6)


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: nn.Embedding(0, 4), ConfigError, "num_embeddings must be a positive integer"),
        (lambda: nn.Embedding(4, 2.5), ConfigError, "embedding_dim must be a positive integer"),
        (lambda: nn.Embedding(4, 2, max_norm=1.0), ConfigError, "max_norm=1.0 is not supported"),
        (lambda: nn.Embedding(4, 2, sparse=True), ConfigError, "sparse=True is not supported"),
        (lambda: nn.Embedding(4, 2, padding_idx=4), ConfigError, r"padding_idx must be an integer in \[-4, 4\)"),
    ],
)
def test_bad_layer_arguments(make, error, message: str) -> None:
    with pytest.raises(error, match=message):
        make()


def test_float_indices_are_a_dtype_error_naming_the_line() -> None:
    class FloatIndices(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(ROWS, DIM)

        def forward(self, x):
            return self.emb(x)

    with pytest.raises(DTypeError, match=r"needs integer indices.*test_embedding\.py"):
        ember.compile(FloatIndices(), input_shape=(WORDS,))


def test_a_saved_program_keeps_its_index_checks(tmp_path) -> None:
    prog = ember.compile(Bag(padding_idx=3), loss=nn.MSELoss(), optimizer=optim.Adam(), input_shape=(WORDS,))
    x, y = _batch(np.random.default_rng(4))
    prog.train_step(x, y)
    prog.save(tmp_path / "bag.npz")
    loaded = ember.load(tmp_path / "bag.npz")
    np.testing.assert_array_equal(loaded.predict(x), prog.predict(x))
    assert loaded.train_step(x, y) == prog.train_step(x, y)
    x[0, 0] = ROWS
    with pytest.raises(InputError, match="not a row index"):
        loaded.predict(x)
