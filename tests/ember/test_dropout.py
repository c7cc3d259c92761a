"""Dropout (`nn.Dropout`, `F.dropout`): PyTorch's semantics, masks from
Philox keyed by the seed, the step counter and the element index, computed
inside the kernels (never stored), the same on both backends and at any
thread count, a new mask every training step, and the counter kept in
checkpoints."""

from __future__ import annotations

import copy
import math
import re

import numpy as np
import pytest
from test_native import central_differences

import ember
from ember import ConfigError, nn, optim
from ember import functional as F
from ember.ir import Value

P = 0.3


class DropoutOnly(nn.Module):
    """`F.dropout(x, p, training)`: with training=True it drops in predict too
    (as PyTorch's functional form does in any mode), which shows the mask."""

    def __init__(self, p: float = P, training: bool = True) -> None:
        self.p = p
        self.drop = training

    def forward(self, x):
        return F.dropout(x, self.p, self.drop)


def masks_program(p: float = P, dtype: str = "float32", backend: str = "native", features: int = 1000, seed: int = 0):
    return ember.compile(DropoutOnly(p), input_shape=(features,), dtype=dtype, backend=backend, seed=seed)


def mlp(hidden: int = 16, p: float = P) -> nn.Module:
    return nn.Sequential(nn.Linear(8, hidden), nn.ReLU(), nn.Dropout(p), nn.Linear(hidden, 4), nn.Dropout(p / 2))


def training_program(dtype: str = "float32", backend: str = "native", hidden: int = 16, lr: float = 0.05):
    model = mlp(hidden)
    return ember.compile(
        model, loss=nn.CrossEntropyLoss(), optimizer=optim.SGD(lr=lr), dtype=dtype, backend=backend, seed=5
    )


def batch(rows: int = 24, dtype: str = "float32", seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(rows, 8)).astype(dtype), rng.integers(0, 4, rows)


# -- semantics ---------------------------------------------------------------------


def test_the_fraction_of_zeros_is_p_within_four_standard_deviations() -> None:
    n = 10**6
    out = masks_program().predict(np.ones((1000, 1000), np.float32))
    fraction = np.mean(out == 0)
    assert abs(fraction - P) < 4 * math.sqrt(P * (1 - P) / n), fraction


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("p", [0.1, P, 0.75])
def test_survivors_are_scaled_by_exactly_one_over_one_minus_p(dtype: str, p: float) -> None:
    x = np.random.default_rng(1).normal(size=(64, 50)).astype(dtype)  # no zeros
    out = masks_program(p, dtype, features=50).predict(x)
    kept = out != 0
    assert 0 < kept.mean() < 1
    np.testing.assert_array_equal(out[kept], x[kept] * np.dtype(dtype).type(1 / (1 - p)))


def test_eval_mode_is_the_identity() -> None:
    x = np.random.default_rng(2).normal(size=(5, 7)).astype(np.float32)
    prog = ember.compile(DropoutOnly(training=False), input_shape=(7,))
    np.testing.assert_array_equal(prog.predict(x), x)
    assert "random_uniform" not in prog.dump("graph")
    layer = nn.Dropout(P)
    layer.training = False
    np.testing.assert_array_equal(ember.compile(layer, input_shape=(7,)).predict(x), x)


def test_p_zero_is_the_identity_and_p_one_gives_zeros_as_pytorch() -> None:
    x = np.array([[np.inf, np.nan, -1.0, 2.0]], np.float32)
    np.testing.assert_array_equal(masks_program(0.0, features=4).predict(x), x)
    np.testing.assert_array_equal(masks_program(1.0, features=4).predict(x), [[np.nan, np.nan, -0.0, 0.0]])


def test_survivors_are_what_pytorch_makes_of_them() -> None:
    """Where each keeps an element, both give x times 1/(1-p) rounded to the dtype."""
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(3).normal(size=(40, 30)).astype(np.float32)
    ours = masks_program(features=30).predict(x)
    theirs = torch.nn.functional.dropout(torch.from_numpy(x), P, training=True).numpy()
    scale = np.float32(1 / (1 - P))
    for out in (ours, theirs):
        kept = out != 0
        np.testing.assert_array_equal(out[kept], x[kept] * scale)


class ScaledBySum(nn.Module):
    def forward(self, x):
        return x * F.dropout(F.sum(x), 0.5)  # dropout of a scalar


def test_dropout_of_a_scalar() -> None:
    x = np.arange(1.0, 7.0).reshape(2, 3)
    results = {
        backend: [
            ember.compile(ScaledBySum(), input_shape=(3,), dtype="float64", backend=backend, seed=seed).predict(x)
            for seed in range(6)
        ]
        for backend in ("native", "reference")
    }
    np.testing.assert_array_equal(results["native"], results["reference"])
    assert {float(out[0, 0]) for out in results["native"]} == {0.0, 42.0}  # dropped, or kept and doubled


@pytest.mark.parametrize("p", [-0.1, 1.5, math.nan, True, "0.5"])
def test_p_outside_zero_one_is_a_config_error(p) -> None:
    with pytest.raises(ConfigError, match="dropout probability has to be between 0 and 1"):
        nn.Dropout(p)
    with pytest.raises(ConfigError, match="dropout probability has to be between 0 and 1"):
        ember.compile(DropoutOnly(p), input_shape=(3,))


def test_dropout_repr_is_pytorchs() -> None:
    assert repr(nn.Dropout(0.25)) == "Dropout(p=0.25, inplace=False)"


# -- the same masks everywhere ---------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_native_and_reference_masks_are_bitwise_equal(dtype: str) -> None:
    x = np.random.default_rng(4).normal(size=(77, 301)).astype(dtype)
    native = masks_program(dtype=dtype, features=301, seed=2**40 + 7).predict(x)
    reference = masks_program(dtype=dtype, backend="reference", features=301, seed=2**40 + 7).predict(x)
    np.testing.assert_array_equal(native, reference)


def test_masks_are_the_same_at_one_and_two_threads(restore_threads) -> None:
    """A model large enough that its matmuls (and their epilogues, which
    compute the masks) are split among threads."""
    x, y = batch(rows=256)
    grads, losses = {}, {}
    for threads in (1, 2):
        ember.set_num_threads(threads)
        prog = training_program(hidden=512)
        grads[threads] = prog.gradients(x, y)
        losses[threads] = [prog.train_step(x, y) for _ in range(3)]
    assert losses[1] == losses[2]
    for name in grads[1]:
        np.testing.assert_array_equal(grads[1][name], grads[2][name], err_msg=name)


@pytest.fixture
def restore_threads():
    previous = ember.get_num_threads()
    yield
    ember.set_num_threads(previous)


# -- the step counter ------------------------------------------------------------------


def test_successive_training_runs_draw_new_masks_and_advance_the_counter() -> None:
    prog = training_program()
    x, y = batch()
    assert prog.rng_step == 0
    first, again = prog.gradients(x, y), prog.gradients(x, y)
    assert prog.rng_step == 2
    assert not np.array_equal(first["0.weight"], again["0.weight"])  # no update between them: only the mask moved
    prog.train_step(x, y)
    assert prog.rng_step == 3
    prog.fit(x, y, epochs=2, batch_size=8, progress=False)
    assert prog.rng_step == 3 + 2 * 3


def test_predict_and_evaluate_leave_the_counter_alone() -> None:
    prog = training_program()
    x, y = batch()
    prog.predict(x)
    prog.evaluate(x, y)
    assert prog.rng_step == 0


def test_the_seed_keys_the_masks() -> None:
    x = np.ones((32, 64), np.float32)
    first = masks_program(features=64).predict(x)
    np.testing.assert_array_equal(masks_program(features=64).predict(x), first)
    assert np.mean(masks_program(features=64, seed=1).predict(x) == first) < 0.7


# -- gradients -----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gradients_match_the_reference(dtype: str) -> None:
    native, reference = training_program(dtype), training_program(dtype, backend="reference")
    x, y = batch(dtype=dtype)
    rtol = 1e-5 if dtype == "float32" else 1e-12
    for _ in range(3):
        ours, theirs = native.gradients(x, y), reference.gradients(x, y)
        for name in theirs:
            np.testing.assert_allclose(ours[name], theirs[name], rtol=rtol, atol=rtol, err_msg=name)
        assert native.train_step(x, y) == pytest.approx(reference.train_step(x, y), rel=rtol)


def test_float64_gradients_match_finite_differences_with_the_mask_fixed() -> None:
    """The loss at one step counter is a smooth function of the params (the
    mask is fixed), so its gradient is checked by central differences,
    evaluated by the reference interpreter at that same counter."""
    native = training_program("float64", hidden=3)
    x, y = batch(rows=10, dtype="float64")
    native.gradients(x, y)  # step 0; the check runs at step 1
    params = native.parameters
    oracle = training_program("float64", backend="reference", hidden=3, lr=0.0)
    oracle.gradients(x, y)
    analytic = native.gradients(x, y)

    def loss_of(values):
        probe = copy.deepcopy(oracle)  # at step 1, every time
        probe.set_parameters(values)
        return probe.train_step(x, y)

    numeric = central_differences(loss_of, params)
    for name, value in numeric.items():
        np.testing.assert_allclose(analytic[name], value, rtol=1e-3, atol=1e-6, err_msg=name)
    at_another_step = native.gradients(x, y)  # another mask: the check tells them apart
    assert not np.allclose(at_another_step["0.weight"], numeric["0.weight"], rtol=1e-3, atol=1e-6)


# -- no mask in memory --------------------------------------------------------------


def is_mask(value: Value) -> bool:
    """A tensor computed from random numbers and scalars alone (a mask, the
    random numbers themselves, a scaled mask), not from data or params."""
    stack, seen, random = [value], set(), False
    while stack:
        v = stack.pop()
        if v.node is None:
            if v.type.rank > 0:
                return False
            continue
        random |= v.node.op.name == "random_uniform"
        for u in v.node.inputs:
            if u not in seen:
                seen.add(u)
                stack.append(u)
    return random and value.type.rank > 0


def test_the_training_step_stores_no_mask() -> None:
    """No buffer of the training step (or of gradients) holds a mask or random
    numbers: forward and backward kernels compute the mask where they use it.
    The kernels dump shows it: no bool buffer, the random numbers inside loops."""
    prog = training_program(hidden=64)
    for name in ("train", "gradients"):
        program = prog._native.programs[name]
        assert any(n.op.name == "random_uniform" for n in program.graph.nodes)
        assert not [v for v in program.buffers if is_mask(v)], name
    dump = prog.dump("kernels")
    plan = dump.split("\n\n")[0]
    buffers = [line.split() for line in plan.splitlines() if re.match(r"\s+%\S+\s+\w+\[", line)]
    assert not [b for b in buffers if b[1].startswith("bool")]
    computed = re.findall(r"(%\d+) = random_uniform", dump)
    assert len(computed) > len(set(computed)) == 2  # two layers' numbers, each in forward and backward kernels
    assert not {b[0] for b in buffers} & set(computed)


# -- checkpoints ----------------------------------------------------------------------


def test_a_checkpoint_keeps_the_counter_and_training_continues_with_the_same_masks(tmp_path) -> None:
    x, y = batch()
    prog = training_program()
    for _ in range(3):
        prog.train_step(x, y)
    prog.save(tmp_path / "m.npz")
    loaded = ember.load(tmp_path / "m.npz")
    assert loaded.rng_step == prog.rng_step == 3
    for _ in range(3):
        assert loaded.train_step(x, y) == prog.train_step(x, y)
    for name, value in prog.parameters.items():
        np.testing.assert_array_equal(loaded.parameters[name], value)


@pytest.mark.parametrize("value", [-1, 2**63, 1.5, "3", None, True])
def test_a_bad_counter_in_a_checkpoint_is_a_checkpoint_error(tmp_path, value) -> None:
    from ember.restore import program_from_checkpoint
    from ember.runtime.checkpoint import load_checkpoint

    training_program().save(tmp_path / "m.npz")
    checkpoint = load_checkpoint(tmp_path / "m.npz")
    checkpoint.meta["rng_step"] = value
    with pytest.raises(ember.CheckpointError, match="setting 'rng_step' must be an integer"):
        program_from_checkpoint(checkpoint, "m.npz")


def test_a_checkpoint_without_the_counter_starts_it_at_zero(tmp_path) -> None:
    from ember.restore import program_from_checkpoint
    from ember.runtime.checkpoint import load_checkpoint

    prog = training_program()
    prog.train_step(*batch())
    prog.save(tmp_path / "m.npz")
    checkpoint = load_checkpoint(tmp_path / "m.npz")
    del checkpoint.meta["rng_step"]
    assert program_from_checkpoint(checkpoint, "m.npz").rng_step == 0


def test_a_predict_that_draws_random_numbers_saves_and_loads(tmp_path) -> None:
    """F.dropout(training=True) drops in predict as well: the random numbers'
    inputs are not the caller's, and a checkpoint of it loads back."""
    prog = ember.compile(DropoutOnly(), input_shape=(64,), seed=5)
    x = np.ones((4, 64), np.float32)
    prog.save(tmp_path / "p.npz")
    loaded = ember.load(tmp_path / "p.npz")
    assert len(loaded.input_types) == 1
    np.testing.assert_array_equal(loaded.predict(x), prog.predict(x))
    assert (prog.predict(x) == 0).any()
