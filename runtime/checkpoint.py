"""Checkpoints: one `.npz` file holding a Program's IR text, parameters,
buffers, optimizer state and settings (JSON). No pickle is written or read.

A save never leaves half a checkpoint behind. It writes a temporary file
beside the target (through symlinks: the file a symlink points to is the
one replaced), flushes it to disk, renames it over the target in one step
and flushes the directory. A save that is killed leaves its temporary file;
the next save to the same target removes it. This module only reads and
writes the file: checking that its contents describe a valid Program is
`ember.restore`'s job."""

from __future__ import annotations

import io
import json
import os
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..ir import CheckpointError, ConfigError
from .atomic_file import write_atomically

FORMAT = "ember-checkpoint"
VERSION = 2
"""The version written. Version 1 lacked the state of the shuffling RNG."""

READABLE_VERSIONS = (1, 2)


@dataclass
class Checkpoint:
    meta: dict[str, Any]
    texts: dict[str, str]
    params: dict[str, np.ndarray]
    state: dict[str, np.ndarray]
    buffers: dict[str, np.ndarray] = field(default_factory=dict)  # none before buffers existed


# -- paths -------------------------------------------------------------------
def checkpoint_path(path: Any) -> Path:
    """The file a save to `path` writes: `path` with every symlink resolved.

    Checks, before any work is done, that `path` is a non-empty str or
    os.PathLike (else ConfigError), that its directory exists and that it
    names a regular file or nothing yet (else CheckpointError)."""
    name = _path_text(path)
    target = Path(os.path.realpath(name))
    try:
        mode = target.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None  # the directory is checked next
    except OSError as e:
        raise CheckpointError(f"cannot write checkpoint {name}: {e.strerror}") from None
    if mode is not None and not stat.S_ISREG(mode):
        shown = name if str(target) == os.path.abspath(name) else f"{target} (the target of {name})"
        raise CheckpointError(f"cannot write checkpoint {shown}: it is {_file_kind(mode)}, not a regular file")
    if not target.parent.is_dir():
        problem = "is not a directory" if target.parent.exists() else "does not exist"
        raise CheckpointError(f"cannot write checkpoint {name}: directory {target.parent} {problem}")
    return target


def _path_text(path: Any) -> str:
    """`path` as text, if it is a usable file name."""
    text = os.fspath(path) if isinstance(path, str | os.PathLike) else None
    if not isinstance(text, str):  # an os.PathLike may give bytes
        raise ConfigError(f"a checkpoint path must be a str or os.PathLike, got {type(path).__name__}")
    if not text:
        raise ConfigError("the checkpoint path is empty")
    if "\0" in text:
        raise ConfigError(f"the checkpoint path {text!r} contains a NUL character")
    return text


def _file_kind(mode: int) -> str:
    kinds = {
        stat.S_ISDIR: "a directory",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
        stat.S_ISFIFO: "a FIFO",
        stat.S_ISSOCK: "a socket",
    }
    return next((kind for test, kind in kinds.items() if test(mode)), "a special file")


# -- writing -----------------------------------------------------------------
def save_checkpoint(path: Any, checkpoint: Checkpoint) -> None:
    """Write `checkpoint` to `path` (exactly that name, or the file a symlink
    there points to) atomically: afterwards the file holds either its old
    contents or the whole new checkpoint, even if the process is killed."""
    target = checkpoint_path(path)
    entries = _entries(checkpoint)
    try:
        write_atomically(target, lambda f: np.savez(f, **entries))
    except OSError as e:
        raise CheckpointError(f"cannot write checkpoint {path}: {e.strerror or e}") from None


def checkpoint_bytes(checkpoint: Checkpoint) -> bytes:
    """`checkpoint` in the file format, in memory (for pickling a Program)."""
    buffer = io.BytesIO()
    np.savez(buffer, **_entries(checkpoint))
    return buffer.getvalue()


def _entries(checkpoint: Checkpoint) -> dict[str, np.ndarray]:
    entries = {"meta": np.array(json.dumps({"format": FORMAT, "version": VERSION, **checkpoint.meta}))}
    entries.update({f"ir/{k}": np.array(v) for k, v in checkpoint.texts.items()})
    entries.update({f"param/{k}": v for k, v in checkpoint.params.items()})
    entries.update({f"state/{k}": v for k, v in checkpoint.state.items()})
    entries.update({f"buffer/{k}": v for k, v in checkpoint.buffers.items()})
    return entries


# -- reading -----------------------------------------------------------------
def load_checkpoint(path: Any) -> Checkpoint:
    """Read a checkpoint written by `save_checkpoint`."""
    name = _path_text(path)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK)  # opening a FIFO must not block
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {name}: file not found") from None
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {name}: {e.strerror}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):  # before fdopen, which refuses a directory with IsADirectoryError
        os.close(fd)
        raise CheckpointError(f"cannot read checkpoint {name}: it is {_file_kind(mode)}, not a regular file")
    with os.fdopen(fd, "rb") as f:
        return _read(f, name)


def checkpoint_from_bytes(data: bytes, source: str) -> Checkpoint:
    """Read a checkpoint from `checkpoint_bytes`; errors name `source`."""
    return _read(io.BytesIO(data), source)


def _read(file: IO[bytes], source: str) -> Checkpoint:
    try:
        with np.lib.npyio.NpzFile(file, allow_pickle=False) as data:  # only .npz archives, never pickle
            entries = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise CheckpointError(f"{source} is not a readable ember checkpoint: {e}") from None
    try:
        meta = json.loads(str(entries.pop("meta")))
    except (KeyError, ValueError, RecursionError):  # ValueError: bad JSON, or an integer of 4300+ digits
        raise CheckpointError(f"{source} is not an ember checkpoint (no valid 'meta' entry)") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{source} is not an ember checkpoint (no valid 'meta' entry)")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{source} is not an ember checkpoint (format {meta.get('format')!r})")
    version = meta.get("version")
    if type(version) is not int or version not in READABLE_VERSIONS:
        readable = " and ".join(map(str, READABLE_VERSIONS))
        raise CheckpointError(f"{source} has checkpoint version {version!r}; this ember reads versions {readable}")
    sections: dict[str, dict] = {"ir": {}, "param": {}, "state": {}, "buffer": {}}
    for key, value in entries.items():
        section, _, name = key.partition("/")
        if section not in sections or not name:
            raise CheckpointError(f"{source}: unexpected entry {key!r}")
        if section == "ir" and (value.dtype.kind != "U" or value.ndim != 0):
            raise CheckpointError(f"{source}: entry {key!r} must be IR text, got a {value.dtype} array")
        sections[section][name] = str(value) if section == "ir" else value
    return Checkpoint(meta, sections["ir"], sections["param"], sections["state"], sections["buffer"])
