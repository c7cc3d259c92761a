"""The fast path of a repeated call (NativeExecutable.rerun): a predict on
exactly the array type the entry was last prepared for skips the checks;
anything else takes the checked path and gets the same answer."""

import threading

import numpy as np
import pytest

import ember
from ember import nn, optim


def classifier(backend: str = "native") -> ember.Program:
    """A 6-16-3 classifier (the same initial parameters every time)."""
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))
    return ember.compile(model, loss=nn.CrossEntropyLoss(), optimizer=optim.SGD(lr=0.1), backend=backend, seed=3)


def rows(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, 6)).astype(np.float32)


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
    assert prog._exec.rerun("predict", x) is None  # nothing prepared yet
    first = prog.predict(x)
    again = prog._exec.rerun("predict", x)
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
    assert prog._exec.rerun("predict", given) is None
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
    assert prog._exec.rerun("predict", three) is None
    np.testing.assert_allclose(prog.predict(three), reference.predict(three), rtol=1e-5, atol=1e-6)
    assert prog._exec.rerun("predict", one) is None
    assert prog._exec.rerun("predict", three) is not None


def test_released_memory_disables_the_fast_path_until_the_next_checked_call():
    prog, reference = classifier(), classifier("reference")
    x = rows(1)
    prog.predict(x)
    prog.release_memory()
    assert prog._exec.rerun("predict", x) is None
    np.testing.assert_allclose(prog.predict(x), reference.predict(x), rtol=1e-5, atol=1e-6)


def test_the_fast_path_sees_parameters_a_training_step_changed():
    prog, reference = classifier(), classifier("reference")
    x, labels = rows(8, seed=4), np.arange(8) % 3
    prog.predict(x[:1])
    prog.train_step(x, labels)
    reference.train_step(x, labels)
    np.testing.assert_allclose(prog.predict(x[:1]), reference.predict(x[:1]), rtol=1e-5, atol=1e-6)


def test_large_outputs_always_take_the_checked_path():
    """Outputs over SMALL_OUTPUT_BYTES come cache-line aligned, from the checked path."""
    prog = classifier()
    x = rows(2000)
    prog.predict(x)
    assert prog._exec.rerun("predict", x) is None


def test_threads_alternating_batch_sizes_each_get_their_own_answer():
    """One thread repeats a batch-1 predict (the fast path) while another
    resizes the entry for a large batch (whose output is too large for the
    fast path) again and again: every result is right and nothing raises."""
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
