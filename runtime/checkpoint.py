"""Checkpoints: one `.npz` file holding a Program's IR text, parameters,
optimizer state and settings (JSON). No pickle is written or read, and a
file is replaced atomically, so a crash never leaves half a checkpoint."""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..ir import CheckpointError

FORMAT = "ember-checkpoint"
VERSION = 1


@dataclass
class Checkpoint:
    meta: dict[str, Any]
    texts: dict[str, str]
    params: dict[str, np.ndarray]
    state: dict[str, np.ndarray]


def save_checkpoint(path: str | os.PathLike, checkpoint: Checkpoint) -> None:
    """Write `checkpoint` to `path` (exactly that name) atomically."""
    path = Path(path)
    entries: dict[str, np.ndarray] = {
        "meta": np.array(json.dumps({"format": FORMAT, "version": VERSION, **checkpoint.meta}))
    }
    entries.update({f"ir/{k}": np.array(v) for k, v in checkpoint.texts.items()})
    entries.update({f"param/{k}": v for k, v in checkpoint.params.items()})
    entries.update({f"state/{k}": v for k, v in checkpoint.state.items()})
    directory = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as e:
        raise CheckpointError(f"cannot write checkpoint {path}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **entries)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise CheckpointError(f"cannot write checkpoint {path}: {e.strerror or e}") from None
        raise


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint written by `save_checkpoint`."""
    path = Path(path)
    try:
        with np.lib.npyio.NpzFile(path, allow_pickle=False) as data:  # only .npz archives, never pickle
            entries = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}: file not found") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise CheckpointError(f"{path} is not a readable ember checkpoint: {e}") from None
    try:
        meta = json.loads(str(entries.pop("meta")))
    except (KeyError, json.JSONDecodeError):
        raise CheckpointError(f"{path} is not an ember checkpoint (no valid 'meta' entry)") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} is not an ember checkpoint (no valid 'meta' entry)")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an ember checkpoint (format {meta.get('format')!r})")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {meta.get('version')}; this ember reads {VERSION}")
    sections: dict[str, dict] = {"ir": {}, "param": {}, "state": {}}
    for key, value in entries.items():
        section, _, name = key.partition("/")
        if section not in sections or not name:
            raise CheckpointError(f"{path}: unexpected entry {key!r}")
        sections[section][name] = str(value) if section == "ir" else value
    return Checkpoint(meta, sections["ir"], sections["param"], sections["state"])
