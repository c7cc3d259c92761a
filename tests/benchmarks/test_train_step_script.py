"""benchmarks/train_step.py runs: one quick case against NumPy prints a row
per step kind with ember's time, its GFLOP/s and its ratio to the peer
(the speed itself is the benchmark's business, never asserted here)."""

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "train_step.py"


def test_the_training_step_benchmark_prints_its_table(tmp_path):
    command = [sys.executable, str(SCRIPT), "--quick", "--cases", "R", "--peers", "numpy", "--threads", "1"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("threads=1 (pinned to CPU ")
    assert lines[1].split()[:4] == ["case", "what", "layers,", "batch,"]
    rows = [line.split() for line in lines[3:]]
    assert [row[:2] for row in rows] == [["R", "train"], ["R", "predict"]]
    for row in rows:
        ember_us, numpy_us, gflops, best, ratio = row[-5:]
        assert best == "numpy"
        assert abs(float(ratio) - float(ember_us) / float(numpy_us)) < 0.01
        assert float(gflops) > 0
    assert re.search(r"13-64-64-1 b32 MSE/SGD", result.stdout)
