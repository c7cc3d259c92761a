"""A Program's state over time: resuming from a checkpoint, saves through
bad paths and saves killed at random moments."""

import itertools
import os
import random
import signal
import time

import numpy as np
import pytest

import ember
from ember import nn, optim


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
