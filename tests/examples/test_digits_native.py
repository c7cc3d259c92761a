"""examples/train_digits.py on the native backend (its default): the issue's
settings (64-128-10 MLP, Adam 1e-3, batch 32, 20 epochs) reach 97% test
accuracy, and every epoch reports its time."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "train_digits.py"
EPOCH_LINE = re.compile(r"^epoch\s+(\d+)\s+loss (\d+\.\d+)\s+(\d+\.\d+) ms$", re.M)

pytest.importorskip("sklearn")


def test_train_digits_reaches_97_percent_natively(tmp_path):
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--epochs", "20", "--seed", "0", "--no-progress"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    program = out.splitlines()[0]
    assert program.endswith("native backend>"), program  # the default backend
    assert "Adam(lr=0.001," in program
    assert "(9,610 values)" in program  # 64*128 + 128 + 128*10 + 10: the 64-128-10 MLP

    epochs = EPOCH_LINE.findall(out)
    assert [int(e) for e, _, _ in epochs] == list(range(1, 21)), out
    losses = [float(loss) for _, loss, _ in epochs]
    assert losses[-1] < losses[0] / 5
    milliseconds = [float(ms) for _, _, ms in epochs]
    assert all(ms > 0 for ms in milliseconds)

    match = re.search(r"^test loss (\d+\.\d+)\s+test accuracy (\d+\.\d+)$", out, re.M)
    assert match, out
    accuracy = float(match.group(2))
    print(f"digits, native: test accuracy {accuracy:.4f}, {sum(milliseconds) / len(milliseconds):.1f} ms per epoch")
    assert accuracy >= 0.97, out
