"""The fast path of a repeated call (NativeExecutable.rerun): a predict or
a training step on exactly the array types the entry was last prepared for
skips the checks (but of the class labels' values); anything else takes the
checked path and gets the same answer."""

import threading

import numpy as np
import pytest

import ember
from ember import nn, optim
from ember.runtime.native import SMALL_OUTPUT_BYTES
from ember.trace import PREDICTION


def classifier(backend: str = "native") -> ember.Program:
    """A 6-16-3 classifier (the same initial parameters every time)."""
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    return ember.compile(model, loss=nn.CrossEntropyLoss(), optimizer=optim.SGD(lr=0.1), backend=backend, seed=3)


def rows(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, 6)).astype(np.float32)


def predict_again(prog: ember.Program, x) -> np.ndarray | None:
    """The fast path of predict, alone: its output, or None."""
    outputs = prog._exec.rerun("predict", {"x": x})
    return None if outputs is None else outputs[PREDICTION]


def unaligned(x: np.ndarray) -> np.ndarray:
    """`x` copied to an address that is not a multiple of 4."""
    raw = np.empty(x.nbytes + 1, np.uint8)
    copy = np.ndarray(x.shape, x.dtype, raw.data, 1)
    copy[...] = x
    return copy


class Subclass(np.ndarray):
    """An ndarray subclass: it could override anything, so it is checked."""


def test_a_repeated_predict_takes_the_fast_path_and_matches_the_reference():
    prog, reference = classifier(), classifier("reference")
    x = rows(1)
    assert predict_again(prog, x) is None  # nothing prepared yet
    first = prog.predict(x)
    again = predict_again(prog, x)
    assert again is not None
    np.testing.assert_allclose(again, reference.predict(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(prog.predict(x), first)
    other = rows(1, seed=1)
    np.testing.assert_allclose(prog.predict(other), reference.predict(other), rtol=1e-5, atol=1e-6)


def test_each_call_returns_a_fresh_array():
    prog = classifier()
    x = rows(1)
    first, second = prog.predict(x), prog.predict(x)
    assert first is not second
    assert not np.shares_memory(first, second)
    first[...] = 0
    assert np.any(prog.predict(x) != 0)


@pytest.mark.parametrize(
    "variant",
    [
        lambda x: x.astype(np.float64),
        lambda x: x.astype(">f4"),
        lambda x: np.asfortranarray(np.repeat(x, 2, axis=0))[:1],
        lambda x: np.repeat(x, 2, axis=1)[:, ::2],
        lambda x: unaligned(x),
        lambda x: x.tolist(),
        lambda x: x.view(Subclass),
        lambda x: x[0],  # one row without its batch axis: refused
    ],
    ids=["float64", "big-endian", "fortran", "strided", "unaligned", "list", "subclass", "vector"],
)
def test_any_other_array_type_takes_the_checked_path(variant):
    prog, reference = classifier(), classifier("reference")
    x = rows(1)
    prog.predict(x)  # prepares the fast path for this exact type
    given = variant(x)
    assert predict_again(prog, given) is None
    try:
        expected = reference.predict(given)
    except ember.EmberError as error:
        with pytest.raises(type(error)):
            prog.predict(given)
        return
    np.testing.assert_allclose(prog.predict(given), expected, rtol=1e-5, atol=1e-6)


def test_a_new_batch_size_moves_the_fast_path_to_it():
    prog, reference = classifier(), classifier("reference")
    one, three = rows(1), rows(3, seed=2)
    prog.predict(one)
    assert predict_again(prog, three) is None
    np.testing.assert_allclose(prog.predict(three), reference.predict(three), rtol=1e-5, atol=1e-6)
    assert predict_again(prog, one) is None
    assert predict_again(prog, three) is not None


def test_released_memory_disables_the_fast_path_until_the_next_checked_call():
    prog, reference = classifier(), classifier("reference")
    x = rows(1)
    prog.predict(x)
    prog.release_memory()
    assert predict_again(prog, x) is None
    np.testing.assert_allclose(prog.predict(x), reference.predict(x), rtol=1e-5, atol=1e-6)


def test_the_fast_path_sees_parameters_a_training_step_changed():
    prog, reference = classifier(), classifier("reference")
    x, labels = rows(8, seed=4), np.arange(8) % 3
    prog.predict(x[:1])
    prog.train_step(x, labels)
    reference.train_step(x, labels)
    np.testing.assert_allclose(prog.predict(x[:1]), reference.predict(x[:1]), rtol=1e-5, atol=1e-6)


def test_large_outputs_come_cache_line_aligned_from_the_fast_path_too():
    """Outputs over SMALL_OUTPUT_BYTES start on a cache line, as from the checked path."""
    prog, reference = classifier(), classifier("reference")
    x = rows(2000)
    prog.predict(x)
    again = predict_again(prog, x)
    assert again is not None
    assert again.nbytes > SMALL_OUTPUT_BYTES
    assert again.ctypes.data % 64 == 0
    np.testing.assert_allclose(again, reference.predict(x), rtol=1e-5, atol=1e-6)


def test_threads_alternating_batch_sizes_each_get_their_own_answer():
    """One thread repeats a batch-1 predict while another repeats a large
    batch, each preparing the entry for its own size again and again (or
    finding it prepared: the fast path): every result is right and nothing
    raises."""
    prog, reference = classifier(), classifier("reference")
    small, large = rows(1, seed=5), rows(1500, seed=6)
    expected_small, expected_large = reference.predict(small), reference.predict(large)
    errors: list[BaseException] = []

    def repeat(x: np.ndarray, expected: np.ndarray) -> None:
        try:
            for _ in range(300):
                np.testing.assert_allclose(prog.predict(x), expected, rtol=1e-5, atol=1e-6)
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    workers = [
        threading.Thread(target=repeat, args=(small, expected_small)),
        threading.Thread(target=repeat, args=(large, expected_large)),
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []


# -- training steps ------------------------------------------------------------


def assert_same_parameters(prog: ember.Program, reference: ember.Program) -> None:
    for name, value in reference.parameters.items():
        np.testing.assert_allclose(prog.parameters[name], value, rtol=1e-5, atol=1e-6, err_msg=name)


def labels(count: int) -> np.ndarray:
    return np.arange(count) % 3


def test_a_repeated_training_step_takes_the_fast_path_and_trains_as_the_reference():
    prog, reference = classifier(), classifier("reference")
    x, y = rows(8, seed=7), labels(8)
    assert prog._step_again(x, y) is None  # nothing prepared yet: nothing done
    assert_same_parameters(prog, reference)
    np.testing.assert_allclose(prog.train_step(x, y), reference.train_step(x, y), rtol=1e-5)
    again = prog._step_again(x, y)
    assert again is not None
    np.testing.assert_allclose(again, reference.train_step(x, y), rtol=1e-5)
    for seed in range(3):  # new values, the same array types: the fast path
        x = rows(8, seed=seed)
        np.testing.assert_allclose(prog.train_step(x, y), reference.train_step(x, y), rtol=1e-5)
    assert_same_parameters(prog, reference)


@pytest.mark.parametrize("bad", [3, -1, 2**40])
def test_labels_out_of_range_are_refused_on_the_fast_path_and_change_nothing(bad):
    prog = classifier()
    x, y = rows(8), labels(8)
    prog.train_step(x, y)
    before = {name: value.copy() for name, value in prog.parameters.items()}
    wrong = y.copy()
    wrong[5] = bad
    with pytest.raises(ember.InputError) as fast:
        prog._step_again(x, wrong)
    with pytest.raises(ember.InputError) as checked:
        classifier().train_step(x, wrong)
    assert str(fast.value) == str(checked.value)
    for name, value in before.items():
        np.testing.assert_array_equal(prog.parameters[name], value)


@pytest.mark.parametrize(
    "variant",
    [
        lambda x, y: (x.astype(np.float64), y),
        lambda x, y: (x, y.astype(np.int32)),
        lambda x, y: (x, y.tolist()),
        lambda x, y: (np.repeat(x, 2, axis=1)[:, ::2], y),
        lambda x, y: (unaligned(x), y),
        lambda x, y: (x.view(Subclass), y),
        lambda x, y: (x[:5], y[:5]),  # another batch size
        lambda x, y: (x, y[:5]),  # rows that disagree: refused
        lambda x, y: (x, y.astype(np.float32)),  # labels must be integers: refused
    ],
    ids=["float64", "int32-labels", "list", "strided", "unaligned", "subclass", "rows", "mismatch", "float-labels"],
)
def test_any_other_training_arrays_take_the_checked_path(variant):
    prog, reference = classifier(), classifier("reference")
    x, y = rows(8, seed=8), labels(8)
    np.testing.assert_allclose(prog.train_step(x, y), reference.train_step(x, y), rtol=1e-5)
    given = variant(x, y)
    assert prog._step_again(*given) is None
    try:
        expected = reference.train_step(*given)
    except ember.EmberError as error:
        with pytest.raises(type(error)):
            prog.train_step(*given)
    else:
        np.testing.assert_allclose(prog.train_step(*given), expected, rtol=1e-5)
    assert_same_parameters(prog, reference)


def regressor(backend: str = "native") -> ember.Program:
    """A 6-8-1 regressor: its step takes sample weights (ones unless given)."""
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 1))
    return ember.compile(model, loss=nn.MSELoss(), optimizer=optim.Adam(lr=0.01), backend=backend, seed=4)


def test_unweighted_rows_take_the_fast_path_and_given_weights_the_checked_one():
    prog, reference = regressor(), regressor("reference")
    x, y = rows(16, seed=9), np.ascontiguousarray(rows(16, seed=10)[:, :1])
    for _ in range(2):
        np.testing.assert_allclose(prog.train_step(x, y), reference.train_step(x, y), rtol=1e-5)
    assert prog._step_again(x, y) is not None
    reference.train_step(x, y)
    weights = np.linspace(0, 2, 16).astype(np.float32)
    np.testing.assert_allclose(prog.train_step(x, y, weights), reference.train_step(x, y, weights), rtol=1e-5)
    with pytest.raises(ember.InputError, match="sample weights"):
        prog.train_step(x, y, -weights)
    assert_same_parameters(prog, reference)


def test_dropout_draws_new_masks_on_every_fast_step():
    """The random numbers' step advances on the fast path as on the checked
    one: the masks, and so the parameters, follow the reference's."""
    model = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 3))
    prog, reference = (
        ember.compile(model, loss=nn.CrossEntropyLoss(), optimizer=optim.SGD(lr=0.1), backend=b, seed=2)
        for b in ("native", "reference")
    )
    x, y = rows(8, seed=11), labels(8)
    losses = [prog.train_step(x, y) for _ in range(4)]
    np.testing.assert_allclose(losses, [reference.train_step(x, y) for _ in range(4)], rtol=1e-5)
    assert prog.rng_step == reference.rng_step == 4
    assert_same_parameters(prog, reference)
