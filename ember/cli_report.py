"""How the `ember` command reports an exception: a few lines on stderr and
an exit status, or the whole traceback with `--traceback`.

- An ember error (`EmberError`), or an OS error ember meets (a file it cannot
  write): `ember: error: MESSAGE`, status 2.
- Any other exception raised in the user's code (the model file at load, its
  `data()`, the model's `forward` while ember traces it, or modules of the
  user's they call): the user's file and line, the exception, and that line
  of source; status 2.

      ember: error: model.py:12: ZeroDivisionError: division by zero
          return x / 0

- Any other exception raised in ember's own code is a bug in ember:
  `ember: internal error: ...` with where it happened, status 3.

Whose code raised is read from the traceback: the innermost frame that is
not the standard library's or an installed package's (NumPy called from a
model file is the model file's doing) belongs to ember or to the user.
"""

from __future__ import annotations

import functools
import linecache
import os
import site
import sys
import sysconfig
import traceback
from dataclasses import dataclass
from types import FrameType
from typing import TextIO

from .ir import EmberError

USER_ERROR = 2
"""Exit status of an error in the user's input, files or code."""

INTERNAL_ERROR = 3
"""Exit status of a bug in ember: an exception ember did not mean to raise."""


@dataclass(frozen=True)
class Frame:
    """Where a traceback passes: file, line and whose code it is."""

    filename: str
    lineno: int
    owner: str  # "ember", "library" or "user"

    def __str__(self) -> str:
        return f"{self.filename}:{self.lineno}"


def report(error: Exception, stream: TextIO, full_traceback: bool = False) -> int:
    """Write `error` to `stream` as the `ember` command shows it; return the exit status."""
    status, lines = summary(error)
    if full_traceback:
        lines = ["".join(traceback.format_exception(error)).rstrip("\n")]
    print("\n".join(lines), file=stream)
    return status


def summary(error: Exception) -> tuple[int, list[str]]:
    """The exit status for `error` and the few lines that explain it."""
    frames = traceback_frames(error)
    # The innermost frame of ember's or the user's code raised the error, or called the library that did.
    raiser = next((f for f in reversed(frames) if f.owner != "library"), None)
    by_user = raiser is not None and raiser.owner == "user"
    if isinstance(error, EmberError) or (isinstance(error, OSError) and not by_user):
        return USER_ERROR, [f"ember: error: {error}"]
    if by_user:
        source = linecache.getline(raiser.filename, raiser.lineno).strip()
        return USER_ERROR, [f"ember: error: {raiser}: {describe(error)}"] + ([f"    {source}"] if source else [])
    user = next((f for f in reversed(frames) if f.owner == "user"), None)
    where = [f"at {raiser}"] if raiser else []
    where += [f"called from {user}"] if user else []
    context = f" ({', '.join(where)})" if where else ""
    hint = "rerun with --traceback to see the whole traceback"
    return INTERNAL_ERROR, [f"ember: internal error: {describe(error)}{context}; {hint}"]


def describe(error: BaseException) -> str:
    """`ZeroDivisionError: division by zero`, as Python's traceback ends."""
    return "".join(traceback.format_exception_only(error)).strip()


def traceback_frames(error: BaseException) -> list[Frame]:
    """The frames of `error`'s traceback, outermost first."""
    return [Frame(f.f_code.co_filename, lineno, owner(f)) for f, lineno in traceback.walk_tb(error.__traceback__)]


def owner(frame: FrameType) -> str:
    """Whose code `frame` runs: ember's (by module name, wherever ember is
    installed), a library's (the standard library, installed packages,
    frozen modules) or else the user's."""
    module = frame.f_globals.get("__name__") or ""
    if module == "ember" or module.startswith("ember."):
        return "ember"
    filename = frame.f_code.co_filename
    if filename.startswith("<") or os.path.abspath(filename).startswith(_library_dirs()):
        return "library"
    return "user"


@functools.cache
def _library_dirs() -> tuple[str, ...]:
    """The directories of the standard library and of installed packages
    (this environment's and, in a virtual environment, the base Python's)."""
    bases = {"base": sys.base_prefix, "platbase": sys.base_exec_prefix}
    schemes = (sysconfig.get_paths(), sysconfig.get_paths(vars=bases))
    dirs = {paths[key] for paths in schemes for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    dirs.update(site.getsitepackages(), [site.getusersitepackages()])
    return tuple(os.path.join(os.path.abspath(d), "") for d in dirs)
