"""A fuzz campaign: random cases and MLPs, checked one after another until
the time or the program count runs out; a failing case is reported with
its seed, shrunk, and saved so that it can be replayed.

Unit j of a campaign with seed S is an MLP (seed (S, j)) when j % MLP_EVERY
is MLP_EVERY - 1, and otherwise a case of PROGRAMS random programs (seed
(S, j)) in the form FORMS_CYCLE[j % len(FORMS_CYCLE)]: a campaign is a
deterministic sequence, so `--seed S` replays it. Units are independent,
so worker processes can check several at once.
"""

from __future__ import annotations

import multiprocessing
import time
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ember.ir import parse, print_graph

from .cases import Case, make_case
from .check import Backend, check, native
from .mlps import check_mlp, random_mlp
from .shrink import shrink
from .tolerance import Difference

PROGRAMS = 12
FORMS_CYCLE = ("forward", "gradient", "forward", "train")
MLP_EVERY = 8
SHOWN = 5
"""Differences listed per failing case."""


@dataclass
class Tally:
    """What a campaign checked."""

    programs: int = 0
    mismatches: int = 0  # programs with at least one difference
    units: int = 0

    def add(self, unit: UnitResult) -> None:
        self.programs += unit.programs
        self.mismatches += unit.mismatches
        self.units += 1

    def summary(self) -> str:
        return f"checked {self.programs} programs, {self.mismatches} mismatches"


@dataclass
class UnitResult:
    """What one unit checked, and its report (empty when nothing differed)."""

    programs: int
    mismatches: int
    lines: list[str]


def unit_seed(seed: int, unit: int) -> int:
    """The seed of unit `unit` of the campaign with seed `seed`."""
    return int(np.random.SeedSequence([seed, unit]).generate_state(1)[0])


def check_unit(
    seed: int, unit: int, backend: Backend = native, save_dir: Path | None = None, shrink_seconds: float = 120.0
) -> UnitResult:
    """Check unit `unit` of the campaign with seed `seed` (see the module doc).
    An error while building its programs (autodiff, optimizer lowering) is
    reported as a mismatch of the whole unit."""
    try:
        return _check_unit(seed, unit, backend, save_dir, shrink_seconds)
    except Exception:
        return UnitResult(0, 1, [f"MISMATCH in unit {unit} of seed {seed}: raised", traceback.format_exc()])


def _check_unit(seed: int, unit: int, backend: Backend, save_dir: Path | None, shrink_seconds: float) -> UnitResult:
    useed = unit_seed(seed, unit)
    where = f"unit {unit} of seed {seed} (python tests/fuzz.py --seed {seed} --unit {unit})"
    if unit % MLP_EVERY == MLP_EVERY - 1:
        mlp = random_mlp(useed)
        differences = check_mlp(mlp)
        if not differences:
            return UnitResult(1, 0, [])
        return UnitResult(1, 1, [f"MISMATCH in {where}: MLP {mlp.describe()}", *_listed(differences)])
    case = make_case(useed, FORMS_CYCLE[unit % len(FORMS_CYCLE)], PROGRAMS)
    differences = check(case, backend)
    if not differences:
        return UnitResult(len(case.programs), 0, [])
    failing = _programs_of(differences, case)
    lines = [f"MISMATCH in {where}: {case.describe()}, programs {', '.join(failing)}", *_listed(differences)]
    lines += _shrunk(case, differences, backend, save_dir, f"seed{seed}-unit{unit}", shrink_seconds)
    return UnitResult(len(case.programs), len(failing), lines)


def run_campaign(
    seed: int,
    minutes: float | None = None,
    programs: int | None = None,
    jobs: int = 1,
    backend: Backend = native,
    report: Callable[[str], None] = print,
    save_dir: Path | None = None,
    shrink_seconds: float = 120.0,
) -> Tally:
    """Check units until `minutes` have passed or `programs` programs are
    checked (whichever comes first; at least one unit): in this process
    when `jobs` is 1, else `jobs` at a time in worker processes, where a
    crash of native code is reported as a mismatch of the unit that caused
    it. Units in flight when time is up still finish."""
    tally = Tally()
    deadline = time.monotonic() + 60 * minutes if minutes is not None else None

    def more() -> bool:
        return (deadline is None or time.monotonic() < deadline) and (programs is None or tally.programs < programs)

    def record(result: UnitResult) -> None:
        tally.add(result)
        for line in result.lines:
            report(line)

    if jobs == 1:
        while tally.units == 0 or more():
            record(check_unit(seed, tally.units, backend, save_dir, shrink_seconds))
        return tally
    arguments = (backend, save_dir, shrink_seconds)
    started = 0
    while started == 0 or more():
        with _workers(jobs) as pool:
            running: dict[Future, int] = {}
            while running or more():
                while len(running) < jobs and (started == 0 or more()):
                    running[pool.submit(check_unit, seed, started, *arguments)] = started
                    started += 1
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                if any(isinstance(f.exception(), BrokenProcessPool) for f in done):
                    break  # a worker died: find the unit that killed it, then start new workers
                for future in done:
                    record(future.result())
                    del running[future]
        for unit in sorted(running.values()):
            record(_alone(seed, unit, arguments))
    return tally


def _workers(jobs: int) -> ProcessPoolExecutor:
    # Spawned, not forked: the parent may have started native worker threads.
    return ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"))


def _alone(seed: int, unit: int, arguments: tuple) -> UnitResult:
    """Check a unit in a worker process of its own (after a worker died)."""
    with _workers(1) as pool:
        try:
            return pool.submit(check_unit, seed, unit, *arguments).result()
        except BrokenProcessPool:
            where = f"unit {unit} of seed {seed} (python tests/fuzz.py --seed {seed} --unit {unit})"
            return UnitResult(1, 1, [f"MISMATCH in {where}: the process checking it died (a crash in native code?)"])


def _listed(differences: list[Difference]) -> list[str]:
    return [f"  {d}" for d in differences[:SHOWN]]


def _programs_of(differences: list[Difference], case: Case) -> list[str]:
    """The programs whose results differ (the whole case for shared results
    such as the loss)."""
    prefixes = {d.name.split(".")[0] for d in differences}
    found = sorted(p for p in case.programs if p in prefixes)
    return found or ["(shared results)"]


def _shrunk(
    case: Case, differences: list[Difference], backend: Backend, save_dir: Path | None, label: str, seconds: float
) -> list[str]:
    """The report of the shrunk case: its IR, arguments and differences."""
    small = shrink(case, differences, backend, seconds)
    lines = [f"shrunk to {len(small.graph.nodes)} nodes:", print_graph(small.graph)]
    for name, value in small.arguments.items():
        lines.append(f"  %{name}: {_summary(np.asarray(value))}")
    lines += _listed(check(small, backend))
    if save_dir is not None:
        lines.append(f"saved: python tests/fuzz.py --replay {save_case(small, save_dir / f'{label}.npz')}")
    return lines


def _summary(array: np.ndarray) -> str:
    """An argument in one line: its values when few, else dtype, shape and range."""
    if array.size <= 6:
        return np.array2string(array, precision=17, separator=", ").replace("\n", "")
    return f"{array.dtype}{list(array.shape)} in [{array.min().item()!r}, {array.max().item()!r}]"


def save_case(case: Case, path: Path) -> Path:
    """Write a one-step case (IR text and arguments) to an .npz file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"arg:{k}": np.asarray(v) for k, v in case.arguments.items()}
    np.savez(path, graph=np.array(print_graph(case.graph)), **arrays)
    return path


def load_case(path: Path) -> Case:
    """A case written by `save_case`."""
    with np.load(path) as data:
        arguments = {k.removeprefix("arg:"): data[k] for k in data.files if k.startswith("arg:")}
        return Case(parse(str(data["graph"])), arguments)
