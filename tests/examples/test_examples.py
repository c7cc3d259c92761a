"""The scripts in examples/ run as a newcomer runs them, and do what they say."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ember
from ember.cli import main
from ember.ir import parse, print_graph

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

pytest.importorskip("sklearn")


def run_example(name: str, *args: str, cwd: Path) -> str:
    """Run `python examples/NAME args...`; return its stdout."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, check=False, cwd=cwd
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def number_after(label: str, text: str) -> float:
    match = re.search(rf"{label}\s+(-?\d+\.\d+)", text)
    assert match, f"no {label!r} in:\n{text}"
    return float(match.group(1))


def test_train_digits_reaches_95_percent(tmp_path):
    out = run_example(
        "train_digits.py", "--epochs", "20", "--seed", "0", "--backend", "reference", "--no-progress", cwd=tmp_path
    )
    epochs = re.findall(r"^epoch\s+(\d+)\s+loss (\S+)\s+\d+\.\d ms$", out, re.M)
    assert [int(e) for e, _ in epochs] == list(range(1, 21))
    assert float(epochs[-1][1]) < float(epochs[0][1]) / 5
    assert number_after("test accuracy", out) >= 0.95


def test_regression_diabetes_beats_the_mean(tmp_path):
    out = run_example("regression_diabetes.py", "--epochs", "30", cwd=tmp_path)
    mlp, baseline = out.splitlines()[-2:]
    assert mlp.startswith("MLP")
    assert baseline.startswith("constant mean")
    assert number_after("RMSE", mlp) < 0.9 * number_after("RMSE", baseline)
    assert number_after("R\\^2", mlp) > 0.2
    assert abs(number_after("R\\^2", baseline)) < 0.05


def test_inspect_ir_prints_every_stage_and_the_pass_times(tmp_path):
    out = run_example("inspect_ir.py", cwd=tmp_path)
    sections = re.split(r"^==== (.+?) =+$", out, flags=re.M)[1:]
    titles, bodies = sections[0::2], sections[1::2]
    graph_ir = ["graph", "autodiff", "train", "simplified"]
    assert titles[:4] == graph_ir
    assert titles[4:-1] == [s for s in ember.STAGES[4:] if s in titles]  # later stages, in order
    assert titles[-1] == "compile time per pass"
    for body in bodies[:4]:
        text = body.strip("\n") + "\n"
        assert print_graph(parse(text)) == text
    for name in ("autodiff", "lower-optimizer", "simplify"):
        assert re.search(rf"^{name}\s+\d+\.\d\d ms$", bodies[-1], re.M), name


def test_the_cli_model_file_compiles(capsys):
    assert main(["compile", str(EXAMPLES / "models" / "mlp.py"), "--emit", "train"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("graph train {\n")
    assert "state %0.weight.exp_avg: f32[128,64]" in out


def test_the_cli_model_file_trains(capsys, tmp_path):
    saved = tmp_path / "mlp.npz"
    argv = ["train", str(EXAMPLES / "models" / "mlp.py"), "--epochs", "5", "--no-progress", "--save", str(saved)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "epoch 5/5" in out
    assert number_after("val_accuracy", out.splitlines()[-2]) > 0.9
    assert ember.load(saved).parameters["0.weight"].shape == (128, 64)


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="needs a C compiler")
def test_export_digits_runs_the_model_in_c(tmp_path):
    out = run_example("export_digits.py", str(tmp_path / "build"), "--epochs", "5", cwd=tmp_path)
    python = number_after("trained in Python: accuracy", out)
    assert python > 0.9
    assert number_after("exported model: accuracy", out) == python  # the same model, run from C
    tuned = [float(a) for a in re.findall(r"fine-tuning epoch \d: loss \S+, accuracy (\S+)", out)]
    assert len(tuned) == 3
    assert tuned[-1] >= python


def test_the_readme_shows_the_c_example_as_it_is():
    readme = (EXAMPLES.parent / "README.md").read_text()
    assert "```c\n" + (EXAMPLES / "c" / "digits.c").read_text() + "```" in readme


MPIEXEC = shutil.which("mpiexec") or shutil.which("mpiexec", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(MPIEXEC is None, reason='needs MPI: pip install -e ".[mpi]"')
def test_train_digits_distributed_on_two_processes(tmp_path):
    command = [MPIEXEC, "-n", "2", sys.executable, str(EXAMPLES / "train_digits.py"), "--distributed"]
    result = subprocess.run([*command, "--no-progress", "--epochs", "20"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("test accuracy") == 1  # rank 0 reports
    assert number_after("test accuracy", result.stdout) > 0.95
