"""Generated calls to the public API keep its contract (tests/fuzzing/api.py).

The slice here runs in a child process, so a crash in native code fails the
test instead of ending the test run; the checker itself is shown to catch
each kind of violation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ember

from .api import Call, Checker, check_calls

FUZZ = Path(__file__).resolve().parents[1] / "fuzz.py"


@pytest.mark.parametrize(("backend", "calls"), [("native", 1500), ("reference", 300)])
def test_generated_calls_keep_the_contract(backend: str, calls: int) -> None:
    result = subprocess.run(
        [sys.executable, str(FUZZ), "--api", str(calls), "--backend", backend, "--seed", "1"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]  # < 0: killed by a signal
    summary = result.stdout.splitlines()[-1]
    assert summary.startswith(f"checked {calls} calls ("), summary
    assert summary.endswith(", 0 contract violations"), summary


@pytest.fixture
def checker(tmp_path) -> Checker:
    return Checker("classifier", "reference", tmp_path)


def test_an_error_that_is_not_an_ember_error_is_a_violation(checker, monkeypatch) -> None:
    monkeypatch.setattr(ember.Program, "predict", lambda self, x: int("not a number"))
    with pytest.raises(AssertionError, match=r"predict\(None\) raised ValueError, not an EmberError"):
        checker.check(Call("predict", (None,)))


def test_a_rejected_call_that_changed_the_program_is_a_violation(checker, monkeypatch) -> None:
    def half_done(self, values, strict=True):
        self._params["0.bias"][:] = 7
        raise ember.ConfigError("rejected after writing")

    monkeypatch.setattr(ember.Program, "set_parameters", half_done)
    with pytest.raises(AssertionError, match="was rejected but changed the program"):
        checker.check(Call("set_parameters", ({},)))


def test_a_wrong_result_is_a_violation(checker, monkeypatch) -> None:
    monkeypatch.setattr(ember.Program, "train_step", lambda self, x, y: np.float32(1.0))
    with pytest.raises(AssertionError, match="train_step"):
        checker.check(Call("train_step", (np.zeros((2, 4), np.float32), np.zeros(2, np.int64))))


def test_a_campaign_reports_the_violation_it_finds(monkeypatch) -> None:
    monkeypatch.setattr(ember.Program, "dump", lambda self, stage="graph": 1 / 0)
    tally = check_calls(30, "reference", seed=0)
    assert tally.violations
    assert "ZeroDivisionError" in tally.violations[0]
    assert tally.summary().endswith(f"{len(tally.violations)} contract violations")
