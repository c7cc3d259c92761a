"""The system's C compiler, as the linker of ember's object code: it joins
the parts of a module compiled on several cores (parallel.py) and links
machine code into shared libraries (runtime/shared_library.py) and exports.
Where there is none, ember does without: one part, and LLVM's JIT."""

from __future__ import annotations

import functools
import shutil
import sys
import tempfile
from pathlib import Path


@functools.cache
def c_compiler() -> str | None:
    """The system's C compiler (`cc`, else `gcc`), or None."""
    return shutil.which("cc") or shutil.which("gcc")


def linker() -> str | None:
    """The C compiler that links ember's objects here, or None where there
    is none, or off Linux (linking is done with Linux's rules: a library
    leaves the symbols it calls to the process)."""
    return c_compiler() if sys.platform.startswith("linux") else None


def run_linker(compiler: str, flags: list[str], objects: list[bytes], seconds: float) -> bytes | None:
    """What `compiler flags -o OUT objects...` writes to OUT, or None if it
    failed, could not start or took longer than `seconds`."""
    import subprocess  # here: only a compile that stores new code links, and `import ember` stays lighter

    with tempfile.TemporaryDirectory(prefix="ember-link-") as directory:
        paths = [Path(directory, f"input{i}.o") for i in range(len(objects))]
        for path, data in zip(paths, objects, strict=True):
            path.write_bytes(data)
        output = Path(directory, "output")
        command = [compiler, *flags, "-o", str(output), *map(str, paths)]
        try:
            done = subprocess.run(command, capture_output=True, timeout=seconds)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return output.read_bytes() if done.returncode == 0 else None
