"""Files written whole or not at all: the content goes to a new file beside
the target, is flushed to disk, and the file is renamed over the target, so
a reader (or a process killed midway) sees the old file or the whole new
one. Checkpoints and exported code are written this way."""

from __future__ import annotations

import errno
import fcntl
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO


def write_atomically(target: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Replace `target` with what `write(file)` writes, atomically (an
    OSError if it cannot; the temporary file is removed on any failure)."""
    _remove_stale_temporaries(target)
    fd, tmp = _create_temporary(target)
    try:
        with os.fdopen(fd, "wb") as f:  # closing it releases the lock, after the rename
            write(f)
            f.flush()
            os.fsync(f.fileno())
            os.replace(tmp, target)
        _sync_directory(target.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# Temporary files are named after their target and the process writing them,
# and their writer holds an exclusive flock on them until the rename. A file
# is stale (its save was killed) when its process is gone and nobody holds
# its lock: the pid check protects a file in the moment between its creation
# and its locking, the lock protects files of live processes whose pids this
# process cannot see (another pid namespace or machine sharing the directory).
def _temporary_pattern(target: Path) -> re.Pattern[str]:
    return re.compile(rf"\.{re.escape(target.name)}\.([1-9][0-9]{{0,8}})\.[0-9a-f]{{8}}\.tmp")


def _create_temporary(target: Path) -> tuple[int, Path]:
    """Create and lock a new temporary file beside `target`. It is created
    with mode 0o666 so that the kernel applies the umask, as for any new
    file (reading the umask would mean setting it: a race with other threads)."""
    while True:
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        return fd, tmp


def _remove_stale_temporaries(target: Path) -> None:
    """Delete the temporary files that killed saves to `target` left behind."""
    pattern = _temporary_pattern(target)
    try:
        names = os.listdir(target.parent)
    except OSError:
        return  # the save itself will report the problem
    for name in names:
        match = pattern.fullmatch(name)
        if match and not _process_exists(int(match[1])):
            _remove_if_unlocked(target.parent / name)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by another user
        return True
    return True


def _remove_if_unlocked(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return  # removed by a concurrent save, or not a file of ours
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        path.unlink(missing_ok=True)
    except BlockingIOError:
        pass  # its writer is alive
    finally:
        os.close(fd)


def _sync_directory(directory: Path) -> None:
    """Flush the directory, so the rename survives a power cut."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno != errno.EINVAL:  # EINVAL: this file system does not sync directories
            raise
    finally:
        os.close(fd)
