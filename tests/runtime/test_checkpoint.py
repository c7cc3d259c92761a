"""Checkpoint files: round trips, atomic replacement when writing fails,
paths (symlinks, special files, bad arguments), file modes, temporary files
of killed saves, and a clear CheckpointError for every file that is not a
checkpoint. (What a checkpoint must contain: tests/ember/test_restore.py.)"""

import fcntl
import json
import os
import socket
import stat
import subprocess

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
    with pytest.raises(ember.CheckpointError, match=r"cannot write checkpoint .*nowhere.* does not exist"):
        save_checkpoint(tmp_path / "nowhere" / "a.npz", checkpoint)


def test_a_file_as_directory_is_a_checkpoint_error(checkpoint, tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ember.CheckpointError, match=r"directory .*file is not a directory"):
        save_checkpoint(tmp_path / "file" / "a.npz", checkpoint)


# -- paths -------------------------------------------------------------------
class BytesPath(os.PathLike):
    def __fspath__(self) -> bytes:
        return b"a.npz"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        pytest.param(None, "must be a str or os.PathLike, got NoneType", id="none"),
        pytest.param(3, "must be a str or os.PathLike, got int", id="int"),
        pytest.param(b"a.npz", "must be a str or os.PathLike, got bytes", id="bytes"),
        pytest.param(BytesPath(), "must be a str or os.PathLike, got BytesPath", id="pathlike-bytes"),
        pytest.param("", "the checkpoint path is empty", id="empty"),
        pytest.param("a\0.npz", "contains a NUL character", id="nul"),
    ],
)
def test_a_bad_path_is_a_config_error(checkpoint, tmp_path, monkeypatch, path, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ember.ConfigError, match=message):
        save_checkpoint(path, checkpoint)
    with pytest.raises(ember.ConfigError, match=message):
        load_checkpoint(path)
    assert os.listdir(tmp_path) == []


def test_saving_through_a_symlink_writes_its_target(checkpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    save_checkpoint("runs/a.npz", checkpoint)
    os.symlink("runs/a.npz", "latest.npz")  # relative, as `ln -s` makes them
    checkpoint.params["0.bias"] = np.full(2, 7, np.float32)
    save_checkpoint("latest.npz", checkpoint)
    assert os.readlink("latest.npz") == "runs/a.npz"
    np.testing.assert_array_equal(load_checkpoint("runs/a.npz").params["0.bias"], 7)
    assert sorted(os.listdir(tmp_path)) == ["latest.npz", "runs"]
    assert os.listdir(tmp_path / "runs") == ["a.npz"]


def test_saving_through_a_dangling_symlink_creates_its_target(checkpoint, tmp_path):
    (tmp_path / "link.npz").symlink_to(tmp_path / "new.npz")
    save_checkpoint(tmp_path / "link.npz", checkpoint)
    assert (tmp_path / "link.npz").is_symlink()
    assert load_checkpoint(tmp_path / "new.npz").texts == checkpoint.texts


def make_special(path, kind: str) -> None:
    if kind == "directory":
        path.mkdir()
    elif kind == "FIFO":
        os.mkfifo(path)
    else:
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(str(path))


@pytest.mark.parametrize("kind", ["directory", "FIFO", "socket"])
@pytest.mark.parametrize("through_symlink", [False, True])
def test_refuses_to_replace_what_is_not_a_regular_file(checkpoint, tmp_path, kind, through_symlink):
    special = tmp_path / "special"
    make_special(special, kind)
    path = special
    if through_symlink:
        path = tmp_path / "link.npz"
        path.symlink_to(special)
    mode = special.lstat().st_mode
    with pytest.raises(ember.CheckpointError, match=f"special.* is a {kind}, not a regular file"):
        save_checkpoint(path, checkpoint)
    assert special.lstat().st_mode == mode
    assert sorted(os.listdir(tmp_path)) == sorted({"special", path.name})


def test_loading_a_fifo_does_not_block(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # a reader's open returns at once with a writer present
    try:
        os.write(writer, b"PK\x03\x04")
        with pytest.raises(ember.CheckpointError, match="it is a FIFO, not a regular file"):
            load_checkpoint(fifo)
    finally:
        os.close(writer)


def test_loading_a_directory_is_a_checkpoint_error(tmp_path):
    with pytest.raises(ember.CheckpointError, match="it is a directory, not a regular file"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_a_checkpoint_gets_the_mode_the_umask_gives(checkpoint, tmp_path, umask):
    old = os.umask(umask)
    try:
        save_checkpoint(tmp_path / "a.npz", checkpoint)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.npz").stat().st_mode) == 0o666 & ~umask


def gone_pid() -> int:
    """The pid of a process that has exited."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_a_save_removes_the_temporary_files_of_killed_saves(checkpoint, tmp_path):
    gone = gone_pid()
    stale = tmp_path / f".a.npz.{gone}.0123abcd.tmp"
    other_target = tmp_path / f".b.npz.{gone}.0123abcd.tmp"
    this_process = tmp_path / f".a.npz.{os.getpid()}.0123abcd.tmp"  # perhaps a save in another thread
    locked = tmp_path / f".a.npz.{gone}.4567cdef.tmp"  # perhaps a process in another pid namespace
    for path in (stale, other_target, this_process, locked):
        path.write_bytes(b"PK\x03\x04 half a zip")
    with locked.open("rb") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        save_checkpoint(tmp_path / "a.npz", checkpoint)
    assert sorted(os.listdir(tmp_path)) == sorted(["a.npz", other_target.name, this_process.name, locked.name])


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
        pytest.param({"meta": meta_entry(format=FORMAT, version=True)}, "checkpoint version True", id="bool-version"),
        pytest.param({"meta": meta_entry(format="keras", version=VERSION)}, "format 'keras'", id="format"),
        pytest.param({"meta": meta_entry(version=VERSION)}, "format None", id="no-format"),
        pytest.param({"param/w": np.zeros(2)}, "no valid 'meta' entry", id="no-meta"),
        pytest.param({"meta": np.array("{not json")}, "no valid 'meta' entry", id="meta-not-json"),
        pytest.param({"meta": np.array("[1, 2]")}, "no valid 'meta' entry", id="meta-not-an-object"),
        pytest.param({"meta": np.array("[" * 100_000)}, "no valid 'meta' entry", id="meta-too-deep"),
        pytest.param({"meta": np.array('{"seed": ' + "9" * 5000 + "}")}, "no valid 'meta' entry", id="meta-huge-int"),
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
