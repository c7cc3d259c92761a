"""Checkpoint files: round trips, atomic replacement when writing fails,
and a clear CheckpointError for every file that is not a checkpoint."""

import json
import os

import numpy as np
import pytest

import ember
from ember import nn, optim
from ember.runtime.checkpoint import FORMAT, VERSION, Checkpoint, load_checkpoint, save_checkpoint


@pytest.fixture
def checkpoint() -> Checkpoint:
    return Checkpoint(
        meta={"dtype": "float32", "lr": 0.5, "loss": {"name": "MSELoss"}},
        texts={"predict": "graph predict {\n}\n"},
        params={"0.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "0.bias": np.ones(2, np.float32)},
        state={"step": np.array(3.0, np.float32)},
    )


def write_npz(path, **entries) -> None:
    """An .npz file at exactly `path` holding `entries`."""
    with open(path, "wb") as f:
        np.savez(f, **entries)


def meta_entry(**meta) -> np.ndarray:
    return np.array(json.dumps(meta))


def test_round_trip(checkpoint, tmp_path):
    save_checkpoint(tmp_path / "a.npz", checkpoint)
    loaded = load_checkpoint(tmp_path / "a.npz")
    assert loaded.meta == {"format": FORMAT, "version": VERSION, **checkpoint.meta}
    assert loaded.texts == checkpoint.texts
    for mine, theirs in ((loaded.params, checkpoint.params), (loaded.state, checkpoint.state)):
        assert list(mine) == list(theirs)
        for name in mine:
            assert mine[name].dtype == theirs[name].dtype
            np.testing.assert_array_equal(mine[name], theirs[name])


@pytest.mark.parametrize("name", ["model", "model.ckpt", "model.npz"])
def test_writes_exactly_the_given_name(checkpoint, tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    save_checkpoint(name, checkpoint)  # a bare name: the current directory
    assert os.listdir(tmp_path) == [name]
    assert load_checkpoint(name).texts == checkpoint.texts


def test_saving_again_replaces_the_file(checkpoint, tmp_path):
    path = tmp_path / "a.npz"
    save_checkpoint(path, checkpoint)
    checkpoint.params["0.bias"] = np.full(2, 7, np.float32)
    save_checkpoint(path, checkpoint)
    np.testing.assert_array_equal(load_checkpoint(path).params["0.bias"], 7)
    assert os.listdir(tmp_path) == ["a.npz"]


def failing_savez(error: BaseException):
    """A stand-in for np.savez that writes half a file, then raises `error`."""

    def savez(file, **entries):
        file.write(b"PK\x03\x04 half a zip")
        raise error

    return savez


FAILURES = [
    pytest.param(RuntimeError("bug in the writer"), RuntimeError, id="exception"),
    pytest.param(KeyboardInterrupt(), KeyboardInterrupt, id="interrupt"),
    pytest.param(OSError(28, "No space left on device"), ember.CheckpointError, id="disk-full"),
]


@pytest.mark.parametrize(("error", "raised"), FAILURES)
def test_a_failed_write_keeps_the_previous_file(checkpoint, tmp_path, monkeypatch, error, raised):
    path = tmp_path / "a.npz"
    save_checkpoint(path, checkpoint)
    before = path.read_bytes()
    monkeypatch.setattr(np, "savez", failing_savez(error))
    checkpoint.params["0.bias"] = np.zeros(2, np.float32)
    with pytest.raises(raised):
        save_checkpoint(path, checkpoint)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["a.npz"]  # no temporary file left behind


@pytest.mark.parametrize(("error", "raised"), FAILURES)
def test_a_failed_first_write_leaves_no_file(checkpoint, tmp_path, monkeypatch, error, raised):
    monkeypatch.setattr(np, "savez", failing_savez(error))
    with pytest.raises(raised):
        save_checkpoint(tmp_path / "a.npz", checkpoint)
    assert os.listdir(tmp_path) == []


def test_a_failed_fsync_keeps_the_previous_file(checkpoint, tmp_path, monkeypatch):
    path = tmp_path / "a.npz"
    save_checkpoint(path, checkpoint)
    before = path.read_bytes()

    def fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(ember.CheckpointError, match=f"cannot write checkpoint {path}: Input/output error"):
        save_checkpoint(path, checkpoint)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["a.npz"]


def test_a_failed_program_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    prog = ember.compile(nn.Sequential(nn.Linear(3, 2)), loss=nn.MSELoss(), optimizer=optim.SGD(lr=0.1))
    path = tmp_path / "model.npz"
    prog.save(path)
    saved = prog.parameters
    prog.train_step(np.ones((4, 3)), np.zeros((4, 2)))
    monkeypatch.setattr(np, "savez", failing_savez(OSError(28, "No space left on device")))
    with pytest.raises(ember.CheckpointError, match="No space left on device"):
        prog.save(path)
    monkeypatch.undo()
    loaded = ember.load(path).parameters
    for name in saved:
        np.testing.assert_array_equal(loaded[name], saved[name])
    assert os.listdir(tmp_path) == ["model.npz"]


def test_a_missing_directory_is_a_checkpoint_error(checkpoint, tmp_path):
    with pytest.raises(ember.CheckpointError, match=r"cannot write checkpoint .*nowhere"):
        save_checkpoint(tmp_path / "nowhere" / "a.npz", checkpoint)


# -- files that are not checkpoints ------------------------------------------
VALID_META = meta_entry(format=FORMAT, version=VERSION)
NEWER = VERSION + 1


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        pytest.param(
            {"meta": meta_entry(format=FORMAT, version=NEWER)}, f"version {NEWER}; this ember reads", id="version"
        ),
        pytest.param({"meta": meta_entry(format=FORMAT)}, "checkpoint version None", id="no-version"),
        pytest.param({"meta": meta_entry(format="keras", version=VERSION)}, "format 'keras'", id="format"),
        pytest.param({"meta": meta_entry(version=VERSION)}, "format None", id="no-format"),
        pytest.param({"param/w": np.zeros(2)}, "no valid 'meta' entry", id="no-meta"),
        pytest.param({"meta": np.array("{not json")}, "no valid 'meta' entry", id="meta-not-json"),
        pytest.param({"meta": np.array("[1, 2]")}, "no valid 'meta' entry", id="meta-not-an-object"),
        pytest.param({"meta": VALID_META, "weights": np.zeros(2)}, "unexpected entry 'weights'", id="entry"),
        pytest.param({"meta": VALID_META, "param/": np.zeros(2)}, "unexpected entry 'param/'", id="no-name"),
        pytest.param({"meta": np.array([{"format": FORMAT}], dtype=object)}, "not a readable", id="pickle"),
    ],
)
def test_not_a_checkpoint(tmp_path, entries, message):
    path = tmp_path / "bad.npz"
    write_npz(path, **entries)
    with pytest.raises(ember.CheckpointError, match=message) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_a_truncated_checkpoint(checkpoint, tmp_path):
    path = tmp_path / "a.npz"
    save_checkpoint(path, checkpoint)
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(ember.CheckpointError, match="not a readable ember checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize("missing", ["dtype", "batch_size", "seed", "backend"])
def test_a_checkpoint_without_a_setting(tmp_path, missing):
    prog = ember.compile(nn.Sequential(nn.Linear(3, 2)))
    prog.save(tmp_path / "a.npz")
    with np.load(tmp_path / "a.npz") as data:
        entries = {k: data[k] for k in data.files}
    meta = json.loads(str(entries["meta"]))
    del meta[missing]
    write_npz(tmp_path / "a.npz", **{**entries, "meta": meta_entry(**meta)})
    with pytest.raises(ember.CheckpointError, match=f"lacks '{missing}'"):
        ember.load(tmp_path / "a.npz")
