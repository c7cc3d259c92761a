"""benchmarks/distributed.py runs under MPI: a row per rank count for a
small case (and one with the optimizer state sharded), with a scaling
efficiency and the state per rank, and the scaling model's row."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "distributed.py"
MPIEXEC = shutil.which("mpiexec") or shutil.which("mpiexec", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(MPIEXEC is None, reason='needs MPI: pip install -e ".[mpi]"')
def test_the_distributed_benchmark_prints_steps_and_scaling(tmp_path):
    command = [sys.executable, str(SCRIPT), "--cases", "R", "--steps", "50", "--rounds", "2"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if line.startswith("R ")]
    assert [row[1] for row in rows[:-1]] == ["1", "2", "2*"][: len(rows) - 1]
    assert float(rows[0][-2]) == 1.0  # one rank scales as itself
    assert all(float(row[2]) > 0 for row in rows[:-1])  # step ms
    if len(rows) == 4:  # with the state sharded, no rank holds more of it (R: SGD keeps none)
        assert float(rows[2][-1]) <= float(rows[1][-1])
    assert 0 < float(rows[-1][1]) <= 1  # the model's efficiency at 2 hosts
