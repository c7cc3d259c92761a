"""benchmarks/compile_time.py runs: for the smallest model it prints a row
with ember's cold times (pinned to one core and not) and warm times (a warm compile loads the cached machine
code, so it is faster than the cold one; the speeds themselves are the
benchmark's business)."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "compile_time.py"


def test_the_compile_time_benchmark_prints_cold_and_warm_times(tmp_path):
    command = [sys.executable, str(SCRIPT), "--models", "13-64-64-1", "--repeat", "1"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].split()[:4] == ["model", "import", "compile+step", "predict"]
    row = lines[3].split()
    assert row[0] == "13-64-64-1"
    cells = (float(cell) for cell in row[1:10])
    imported, cold, predict, new, new_predict, unpinned, unpinned_predict, warm, warm_predict = cells
    assert imported > 0
    assert 0 < warm < min(cold, new, unpinned)
    assert min(new_predict, unpinned_predict) > 0
    assert 0 < warm_predict <= predict
