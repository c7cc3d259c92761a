"""Compiling one module on several cores.

LLVM's optimization and code generation of a training step take most of a
cold compile, on one core: llvmlite serializes every call into LLVM in a
process. So a large module is cut into parts (split.py), and the parts,
with the matmul library's functions no process compiled before
(shared_code.py), are dealt to this process and helper processes
(compiler/llvm_job.py run by its path), largest first to the least
loaded; each optimizes and compiles its share, and the system's C
compiler joins the objects into one relocatable object, which is then
cached and linked like any other. LLVM's JIT loads the parts' objects
instead (MachineCode.parts): from the joined object it computed wrong
results (measured: Adam's step counter added 0, a constant read amiss),
from the parts the same as from the module compiled whole.

The helpers are started before the module is generated, so their start-up
(the interpreter, llvmlite) overlaps ember's code generation. A helper that
fails, hangs or cannot start leaves its share to this process: the objects
are the same either way. `EMBER_COMPILE_JOBS` sets the number of workers
(1: no helpers); by default it is the number of cores this process may run on."""

from __future__ import annotations

import os
import pickle
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..ir import ConfigError
from .codegen.target import Target, available_cores
from .toolchain import linker, run_linker

if TYPE_CHECKING:
    import subprocess

# subprocess is imported where a compile uses it: `import ember` stays lighter

JOBS_VARIABLE = "EMBER_COMPILE_JOBS"

MIN_PART_LINES = 1500
"""Lines of LLVM IR per part below which cutting a module does not pay (a
helper's start-up, ~0.1 s of a second core, and the link, ~10 ms)."""

MAX_PARTS = 8
"""The most parts a module is cut into (a module of ~10 000 lines makes
about that many of MIN_PART_LINES)."""

HELPER_SECONDS = 120
"""A helper that takes longer is stopped and its part compiled here."""


def compile_jobs() -> int:
    """How many parts a large module is compiled in: `EMBER_COMPILE_JOBS`,
    else the cores this process may run on."""
    text = os.environ.get(JOBS_VARIABLE, "").strip()
    if not text:
        return available_cores()
    try:
        jobs = int(text)
    except ValueError:
        jobs = 0
    if jobs < 1:
        raise ConfigError(f"{JOBS_VARIABLE} must be a whole number of parallel compiles >= 1, got {text!r}")
    return jobs


def join_objects(objects: list[bytes]) -> bytes | None:
    """`objects` joined into one relocatable object (`cc -r`), or None
    where there is no linker or the join failed."""
    compiler = linker()
    return None if compiler is None else run_linker(compiler, ["-r", "-nostdlib"], objects, HELPER_SECONDS)


class Helper:
    """A process that optimizes and compiles one module text (llvm_job.py)."""

    def __init__(self) -> None:
        import subprocess

        self._process: subprocess.Popen | None = None
        try:
            self._process = subprocess.Popen(
                # -P: the script's folder (ember's compiler) is not put on sys.path
                [sys.executable, "-P", str(Path(__file__).with_name("llvm_job.py"))],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        except OSError:
            self._process = None

    def compile(self, texts: list[str], target: Target) -> list[bytes] | None:
        """The object code of each of `texts`, or None if the helper failed."""
        if self._process is None:
            return None
        import subprocess

        try:
            job = pickle.dumps((texts, target.triple, target.cpu, target.features))
            out, _ = self._process.communicate(job, timeout=HELPER_SECONDS)
            result = pickle.loads(out) if self._process.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired, pickle.UnpicklingError, EOFError):
            result = None
        finally:
            self.close()
        valid = isinstance(result, list) and len(result) == len(texts)
        return result if valid and all(isinstance(code, bytes) for code in result) else None

    def close(self) -> None:
        """Stop the helper (if it still runs)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._process = None


def start_helpers(parts: int) -> list[Helper]:
    """A helper for each part but the first (at most MAX_PARTS parts),
    started now so it is ready when its part is; none where the objects
    could not be joined (no C compiler, or not Linux)."""
    if linker() is None:
        return []
    return [Helper() for _ in range(min(parts, MAX_PARTS) - 1)]


def deal(texts: list[str], workers: int) -> list[list[int]]:
    """The indices of `texts` each of `workers` compiles: largest first, each
    to the worker with the fewest lines so far (worker 0: this process)."""
    sizes = [text.count("\n") for text in texts]
    shares: list[list[int]] = [[] for _ in range(workers)]
    lines = [0] * workers
    for i in sorted(range(len(texts)), key=lambda i: -sizes[i]):
        lightest = min(range(workers), key=lambda w: (lines[w], w))
        shares[lightest].append(i)
        lines[lightest] += sizes[i]
    return shares


def compile_in_parts(
    texts: list[str], helpers: list[Helper], compile_here: Callable[[str], bytes], target: Target
) -> list[bytes]:
    """The object of each of `texts`, dealt to this process and `helpers`
    (`deal`); a helper's share it could not compile is compiled here."""
    from concurrent.futures import ThreadPoolExecutor

    shares = deal(texts, len(helpers) + 1)
    objects: list[bytes | None] = [None] * len(texts)
    # a thread per helper feeds it its share and waits for the objects (the
    # pipes release the GIL) while this thread compiles its own
    with ThreadPoolExecutor(max_workers=max(1, len(helpers))) as pool:
        sent = [
            (pool.submit(helper.compile, [texts[i] for i in share], target), share)
            for helper, share in zip(helpers, shares[1:], strict=True)
            if share
        ]
        for i in shares[0]:
            objects[i] = compile_here(texts[i])
        for future, share in sent:
            done = future.result() or [compile_here(texts[i]) for i in share]
            for i, code in zip(share, done, strict=True):
                objects[i] = code
    return objects  # type: ignore[return-value]
