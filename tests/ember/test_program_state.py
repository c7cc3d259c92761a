"""A Program's state over time, threads and processes: resuming from a
checkpoint, copies and pickles, readers and writers racing a training
thread, saves through odd paths and saves killed at random moments."""

import copy
import io
import itertools
import os
import pickle
import random
import signal
import threading
import time

import numpy as np
import pytest

import ember
from ember import nn, optim
from ember.runtime.checkpoint import load_checkpoint


def adam_classifier(make_mlp, backend: str = "native") -> ember.Program:
    return ember.compile(
        make_mlp(), loss=nn.CrossEntropyLoss(), optimizer=optim.Adam(lr=0.01), batch_size=8, seed=2, backend=backend
    )


def same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return list(a) == list(b) and all(a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a)


# -- resuming ----------------------------------------------------------------
@pytest.mark.parametrize("backend", ["native", "reference"])
def test_resuming_from_a_checkpoint_equals_training_on(make_mlp, blobs, tmp_path, assert_same, backend):
    """fit(1), save, load, fit(2) is fit(3) bit for bit: the shuffling RNG is saved too."""
    straight = adam_classifier(make_mlp, backend)
    straight.fit(*blobs, epochs=3, progress=False)
    first = adam_classifier(make_mlp, backend)
    first.fit(*blobs, epochs=1, progress=False)
    first.save(tmp_path / "model.npz")
    resumed = ember.load(tmp_path / "model.npz")
    resumed.fit(*blobs, epochs=2, progress=False)
    assert_same(resumed.parameters, straight.parameters)
    assert_same(resumed.optimizer_state, straight.optimizer_state)


# -- copies and pickles ------------------------------------------------------
def pickled(prog: ember.Program) -> ember.Program:
    return pickle.loads(pickle.dumps(prog))


COPIES = [
    pytest.param(copy.copy, id="copy"),
    pytest.param(copy.deepcopy, id="deepcopy"),
    pytest.param(pickled, id="pickle"),
]


@pytest.mark.parametrize("copy_with", COPIES)
@pytest.mark.parametrize("backend", ["native", "reference"])
def test_a_copy_is_independent_and_trains_as_the_original(make_mlp, blobs, assert_same, copy_with, backend):
    prog = adam_classifier(make_mlp, backend)
    prog.fit(*blobs, epochs=1, progress=False)
    prog.lr = 0.02
    dup = copy_with(prog)
    assert dup is not prog
    assert (dup.backend, dup.lr, dup.optimizer, dup.loss_info) == (backend, 0.02, prog.optimizer, prog.loss_info)
    assert (dup.dtype, dup.batch_size, dup.seed) == (prog.dtype, prog.batch_size, prog.seed)
    params, state = prog.parameters, prog.optimizer_state
    dup.fit(*blobs, epochs=2, progress=False)
    assert_same(prog.parameters, params)  # training the copy leaves the original as it was
    assert_same(prog.optimizer_state, state)
    prog.fit(*blobs, epochs=2, progress=False)  # the same RNG state: the same shuffles
    assert_same(dup.parameters, prog.parameters)
    assert_same(dup.optimizer_state, prog.optimizer_state)


@pytest.mark.parametrize("copy_with", COPIES)
def test_an_inference_program_copies(mlp, blobs, copy_with):
    prog = ember.compile(mlp, dtype="float64")
    dup = copy_with(prog)
    assert not dup.is_training
    np.testing.assert_array_equal(dup.predict(blobs[0]), prog.predict(blobs[0]))


class OnlyTheRestorer(pickle.Unpickler):
    """Refuses every global but the one that rebuilds a Program from checkpoint bytes."""

    def find_class(self, module: str, name: str):
        assert (module, name) == ("ember.restore", "program_from_bytes")
        return super().find_class(module, name)


def test_a_pickle_holds_checkpoint_bytes_not_code(classifier, blobs):
    data = pickle.dumps(classifier)
    assert b"PK\x03\x04" in data  # the start of the .npz archive a saved file holds
    dup = OnlyTheRestorer(io.BytesIO(data)).load()
    np.testing.assert_array_equal(dup.predict(blobs[0]), classifier.predict(blobs[0]))


# -- threads -----------------------------------------------------------------
def wide_program() -> ember.Program:
    """Big enough that a step takes a while: readers meet it mid-step."""
    model = nn.Sequential(nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 10))
    return ember.compile(model, loss=nn.CrossEntropyLoss(), optimizer=optim.Adam(lr=1e-3), seed=1)


STEPS = 150


@pytest.fixture(scope="module")
def replay():
    """A batch, and the parameters and optimizer state after each of 0..STEPS steps on it."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 64)).astype(np.float32)
    y = rng.integers(0, 10, 128)
    prog = wide_program()
    history = [(prog.parameters, prog.optimizer_state)]
    for _ in range(STEPS):
        prog.train_step(x, y)
        history.append((prog.parameters, prog.optimizer_state))
    return x, y, history


def in_another_thread(work) -> threading.Thread:
    thread = threading.Thread(target=work)
    thread.start()
    return thread


def test_readers_during_training_see_whole_steps(replay, tmp_path):
    x, y, history = replay
    prog = wide_program()
    params_seen, states_seen, saves = [], [], []

    def train() -> None:
        for _ in range(STEPS):
            prog.train_step(x, y)
            time.sleep(0.0002)  # a loop's other work: the readers take turns (Python's locks are not fair)

    trainer = in_another_thread(train)
    while trainer.is_alive():
        params_seen.append(prog.parameters)
        states_seen.append(prog.optimizer_state)
        if len(params_seen) % 10 == 0:
            path = tmp_path / f"{len(saves)}.npz"
            prog.save(path)
            saves.append(load_checkpoint(path))
    trainer.join()
    assert len(params_seen) > 10
    assert saves
    params_by_step = [params for params, _ in history]
    for params in params_seen:
        assert any(same(params, p) for p in params_by_step), "a parameter snapshot between two steps"
    for state in states_seen:
        assert same(state, history[int(state["step"])][1])
    for saved in saves:  # parameters and state of one and the same step
        params, state = history[int(saved.state["step"])]
        assert same(saved.params, params)
        assert same(saved.state, state)


def test_set_parameters_during_predictions_is_seen_whole(replay):
    x = replay[0]
    prog = wide_program()
    versions = [prog.parameters, {name: value + 1 for name, value in prog.parameters.items()}]
    expected = []
    for params in versions:
        prog.set_parameters(params)
        expected.append(prog.predict(x))
    writer = in_another_thread(lambda: [prog.set_parameters(versions[i % 2]) for i in range(400)])
    outputs = []
    while writer.is_alive():
        outputs.append(prog.predict(x))
    writer.join()
    assert outputs
    for out in outputs:
        assert np.array_equal(out, expected[0]) or np.array_equal(out, expected[1]), "a half-set parameter set"


# -- saving ------------------------------------------------------------------
@pytest.mark.parametrize("path", [None, 3, b"m.npz", ""])
def test_save_rejects_a_bad_path(classifier, path):
    with pytest.raises(ember.EmberError, match="checkpoint path"):
        classifier.save(path)


KILLS = 100


def test_a_save_killed_at_any_moment_leaves_the_old_or_the_new_checkpoint(mlp, tmp_path):
    """A child forked from this process saves in a loop, alternating between
    two parameter sets (starting with the one the file does not hold), until
    it is killed after a random delay. Each time, the file must load and hold
    one of the two sets, and at most one temporary file (the killed save's)
    may be left: the next save removes it."""
    prog = ember.compile(mlp, loss=nn.CrossEntropyLoss(), optimizer=optim.SGD(lr=0.1), backend="reference")
    versions = [prog.parameters, {name: value + 1 for name, value in prog.parameters.items()}]
    path = tmp_path / "model.npz"
    prog.save(path)
    delays = random.Random(0)
    held, seen, strays_left = 0, set(), 0
    for _ in range(KILLS):
        pid = os.fork()
        if pid == 0:
            try:
                for i in itertools.count(held + 1):
                    prog.set_parameters(versions[i % 2])
                    prog.save(path)
            finally:
                os._exit(1)
        time.sleep(delays.uniform(0, 0.02))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status), "the child stopped saving"
        assert os.WTERMSIG(status) == signal.SIGKILL
        params = ember.load(path, backend="reference").parameters
        matches = [i for i, version in enumerate(versions) if same(params, version)]
        assert matches, "the checkpoint holds neither parameter set"
        held = matches[0]
        seen.add(held)
        strays = [name for name in os.listdir(tmp_path) if name != path.name]
        assert len(strays) <= 1, strays
        strays_left += len(strays)
    assert seen == {0, 1}
    assert strays_left > 0  # some kills did land in the middle of a save
    prog.save(path)
    assert os.listdir(tmp_path) == [path.name]
