"""The `ember` command line, run in-process through `ember.cli.main`."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ember
from ember import cli
from ember.cli import SUFFIXES, load_model_file, main
from ember.compiler import PASS_NAMES
from ember.ir import parse, print_graph

CLASSIFIER = """
import numpy as np
from ember import nn, optim

model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
loss = nn.CrossEntropyLoss()
optimizer = optim.Adam(lr=0.05)
batch_size = 16

def data():
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 3, (3, 4))
    y = np.arange(90) % 3
    x = (centers[y] + rng.normal(0, 0.5, (90, 4))).astype(np.float32)
    return x[:60], y[:60], x[60:], y[60:]
"""

INFERENCE = """
from ember import nn
model = nn.Sequential(nn.Linear(4, 3), nn.Tanh())
"""


def write(tmp_path: Path, source: str, name: str = "model.py") -> str:
    path = tmp_path / name
    path.write_text(source)
    return str(path)


@pytest.fixture
def classifier(tmp_path) -> str:
    return write(tmp_path, CLASSIFIER)


@pytest.fixture
def inference(tmp_path) -> str:
    return write(tmp_path, INFERENCE, "inference.py")


def compile_file(path: str) -> ember.Program:
    """What `ember compile` compiles for a model file."""
    namespace = load_model_file(path)
    return ember.compile(namespace["model"], namespace.get("loss"), namespace.get("optimizer"))


def run_ok(capsys, *argv: str) -> str:
    assert main(list(argv)) == 0
    out, err = capsys.readouterr()
    assert "error" not in err
    return out


def run_error(capsys, *argv: str) -> str:
    """Run a failing command; return its one error line."""
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith("ember: error: ")
    assert err.count("\n") == 1
    assert "Traceback" not in err
    return err


def run_user_error(capsys, *argv: str) -> list[str]:
    """Run a command that fails in the user's code; return its error lines."""
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith("ember: error: ")
    assert "Traceback" not in err
    return err.splitlines()


def line_of(path: str, text: str) -> int:
    """The number of the first line of the file at `path` that contains `text`."""
    return next(n for n, line in enumerate(Path(path).read_text().splitlines(), 1) if text in line)


def without_times(text: str) -> str:
    return re.sub(r"\(\d+\.\d+ s\)", "", text)


# -- ember compile ---------------------------------------------------------------
def test_compile_prints_the_traced_graph_by_default(capsys, classifier):
    out = run_ok(capsys, "compile", classifier)
    assert out.startswith("graph model {\n")
    assert "matmul %x, %0.weight" in out
    assert print_graph(parse(out)) == out


@pytest.mark.parametrize("stage", ["graph", "autodiff", "train", "simplified"])
def test_emit_prints_the_stage_programs_dump(capsys, classifier, stage):
    out = run_ok(capsys, "compile", classifier, "--emit", stage)
    assert out == compile_file(classifier).dump(stage)


def test_emit_on_an_inference_only_model_file(capsys, inference):
    out = run_ok(capsys, "compile", inference, "--emit", "simplified")
    assert out.startswith("graph predict {\n")
    assert "tanh" in out
    assert "inference-only" in run_error(capsys, "compile", inference, "--emit", "train")


def test_model_file_settings_reach_compile(capsys, tmp_path):
    source = INFERENCE.replace("nn.Linear(4, 3), ", "") + "input_shape = (5,)\ndtype = 'float64'\n"
    out = run_ok(capsys, "compile", write(tmp_path, source))
    assert "input %x: f64[B,5]" in out


def test_model_file_example_inputs_reach_compile(capsys, tmp_path):
    source = INFERENCE.replace("nn.Linear(4, 3), ", "") + "example_inputs = ((8, 6), 'float32')\n"
    out = run_ok(capsys, "compile", write(tmp_path, source))
    assert "input %x: f32[B,6]" in out


def test_model_file_with_a_traced_module_subclass(capsys, tmp_path):
    source = """
import ember
from ember import nn

SCALE = 2.0

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(3, 5)

    def forward(self, x):
        return ember.tanh(self.hidden(x)) * SCALE

model = Net()
"""
    out = run_ok(capsys, "compile", write(tmp_path, source))
    assert "param %hidden.weight: f32[5,3]" in out
    assert "constant {value=2.0" in out


def test_unknown_stage_is_an_error(capsys, classifier):
    err = run_error(capsys, "compile", classifier, "--emit", "nope")
    assert "unknown stage 'nope'" in err
    assert "simplified" in err


def test_native_stage_without_native_backend_is_an_error(capsys, classifier):
    err = run_error(capsys, "compile", classifier, "--emit", "asm", "--backend", "reference")
    assert "native backend" in err


def test_native_stages_print(capsys, classifier):
    assert run_ok(capsys, "compile", classifier, "--emit", "kernels").startswith("program train_step(B)")


def test_dump_dir_writes_every_stage_to_numbered_files(capsys, classifier, tmp_path):
    out_dir = tmp_path / "dumps"
    out = run_ok(capsys, "compile", classifier, "--dump-dir", str(out_dir))
    stages = compile_file(classifier).stages
    assert stages[:4] == ["graph", "autodiff", "train", "simplified"]
    names = [f"{i:02d}-{stage}{SUFFIXES.get(stage, '.ir')}" for i, stage in enumerate(stages, 1)]
    assert sorted(p.name for p in out_dir.iterdir()) == names
    assert out.splitlines() == [f"wrote {out_dir / name}" for name in names]
    for name, stage in zip(names, stages, strict=True):
        assert (out_dir / name).read_text() == run_ok(capsys, "compile", classifier, "--emit", stage)


def test_dump_dir_of_an_inference_program(capsys, inference, tmp_path):
    run_ok(capsys, "compile", inference, "--dump-dir", str(tmp_path / "d"))
    names = sorted(p.name for p in (tmp_path / "d").iterdir())
    assert names[:2] == ["01-graph.ir", "02-simplified.ir"]
    assert len(names) == len(compile_file(inference).stages)


def test_dump_dir_that_is_a_file_is_an_error(capsys, classifier, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    run_error(capsys, "compile", classifier, "--dump-dir", str(blocker))


def test_print_after_prints_the_graph_after_that_pass(capsys, classifier):
    out = run_ok(capsys, "compile", classifier, "--print-after", "autodiff")
    autodiff = run_ok(capsys, "compile", classifier, "--emit", "autodiff")
    assert out == f"# after autodiff\n{autodiff}\n"


def test_print_after_repeats_for_every_run_and_every_pass(capsys, classifier):
    out = run_ok(capsys, "compile", classifier, "--print-after", "dce", "--print-after", "lower-optimizer")
    assert out.count("# after lower-optimizer\n") == 1
    # simplify runs dce on predict, train, gradients and evaluate, at least once each
    assert out.count("# after dce\n") >= 4
    for chunk in out.split("# after ")[1:]:
        text = chunk.split("\n", 1)[1]
        assert print_graph(parse(text)) == text.rstrip("\n") + "\n"


def test_print_after_with_emit_prints_both(capsys, classifier):
    out = run_ok(capsys, "compile", classifier, "--print-after", "autodiff", "--emit", "train")
    assert out.startswith("# after autodiff\n")
    assert out.endswith(run_ok(capsys, "compile", classifier, "--emit", "train"))


def test_unknown_pass_is_an_error(capsys, classifier):
    err = run_error(capsys, "compile", classifier, "--print-after", "inline")
    assert "unknown pass 'inline'" in err
    assert "autodiff" in err


def test_time_passes(capsys, classifier):
    out = run_ok(capsys, "compile", classifier, "--time-passes")
    timings = out.split("# compile time per pass\n")[1]
    for name in ("autodiff", "lower-optimizer", "simplify", "cse"):
        assert re.search(rf"^#\s+{name}\s+\d+\.\d\d ms$", timings, re.M), name


def test_list_stages_and_passes(capsys):
    stages = run_ok(capsys, "compile", "--list-stages").splitlines()
    assert [line.split()[0] for line in stages] == list(ember.STAGES)
    assert run_ok(capsys, "compile", "--list-passes").splitlines() == list(PASS_NAMES)


def test_compile_needs_a_model_file(capsys):
    assert "needs a MODEL.py" in run_error(capsys, "compile")


# -- errors in the model file --------------------------------------------------
def test_missing_model_file(capsys, tmp_path):
    assert "no such model file" in run_error(capsys, "compile", str(tmp_path / "absent.py"))


def test_model_file_without_model(capsys, tmp_path):
    path = write(tmp_path, "x = 1\n")
    assert "does not define `model`" in run_error(capsys, "compile", path)


def test_model_that_is_not_a_module(capsys, tmp_path):
    path = write(tmp_path, "model = [1, 2]\n")
    assert "must be an ember.nn.Module, got list" in run_error(capsys, "train", path)


def test_model_file_with_a_syntax_error(capsys, tmp_path):
    path = write(tmp_path, "from ember import nn\nmodel = nn.Sequential(\n")
    err = run_error(capsys, "compile", path)
    assert f"{path}:2: syntax error" in err


def test_ember_error_from_a_model_file_setting(capsys, tmp_path):
    path = write(tmp_path, INFERENCE + "dtype = 'int8'\n")
    assert "dtype must be" in run_error(capsys, "compile", path)


# -- exceptions in the user's code ------------------------------------------------
FORWARD_MODEL = """
import ember
from ember import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return ember.relu(self.fc(x)) / {divisor}


model = Net()
"""


def test_exception_while_loading_the_model_file(capsys, tmp_path):
    path = write(tmp_path, INFERENCE + "scale = 1 / 0\n")
    lines = run_user_error(capsys, "compile", path)
    assert lines == [f"ember: error: {path}:4: ZeroDivisionError: division by zero", "    scale = 1 / 0"]


def test_exception_in_data(capsys, tmp_path):
    path = write(tmp_path, CLASSIFIER.replace("rng = np.random", "raise KeyError('mnist')\n    rng = np.random"))
    lines = run_user_error(capsys, "train", path, "--no-progress")
    assert lines == [f"ember: error: {path}:{line_of(path, 'raise')}: KeyError: 'mnist'", "    raise KeyError('mnist')"]


def test_exception_in_forward_while_tracing(capsys, tmp_path):
    path = write(tmp_path, FORWARD_MODEL.format(divisor="self.missing"))
    lines = run_user_error(capsys, "compile", path)
    line = line_of(path, "self.missing")
    assert lines == [
        f"ember: error: {path}:{line}: AttributeError: 'Net' object has no attribute 'missing'",
        "    return ember.relu(self.fc(x)) / self.missing",
    ]


def test_exception_inside_a_library_the_user_calls(capsys, tmp_path):
    # NumPy raises in its own Python code; the error is the user's line.
    path = write(tmp_path, CLASSIFIER.replace("rng = np.random", "np.linspace(0, 1, -1)\n    rng = np.random"))
    lines = run_user_error(capsys, "train", path)
    message = "ValueError: Number of samples, -1, must be non-negative."
    assert lines == [f"ember: error: {path}:{line_of(path, 'linspace')}: {message}", "    np.linspace(0, 1, -1)"]


def test_os_error_in_the_users_code(capsys, tmp_path):
    path = write(tmp_path, CLASSIFIER.replace("rng = np.random", "np.load('absent.npy')\n    rng = np.random"))
    lines = run_user_error(capsys, "train", path)
    assert lines[0].startswith(f"ember: error: {path}:{line_of(path, 'absent.npy')}: FileNotFoundError: ")


def test_exception_in_a_module_the_model_file_imports(capsys, tmp_path, monkeypatch):
    write(tmp_path, "def scale():\n    return [][0]\n", "helpers_for_ember_test.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write(tmp_path, "from helpers_for_ember_test import scale\n" + INFERENCE + "factor = scale()\n")
    lines = run_user_error(capsys, "compile", path)
    helper = tmp_path / "helpers_for_ember_test.py"
    assert lines == [f"ember: error: {helper}:2: IndexError: list index out of range", "    return [][0]"]


def test_syntax_error_in_a_module_the_model_file_imports(capsys, tmp_path, monkeypatch):
    write(tmp_path, "def scale(:\n    pass\n", "broken_helpers_for_ember_test.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write(tmp_path, "import broken_helpers_for_ember_test\n" + INFERENCE)
    err = run_error(capsys, "compile", path)
    assert f"{tmp_path / 'broken_helpers_for_ember_test.py'}:1: syntax error" in err


@pytest.mark.parametrize("where", [["--traceback", "compile"], ["compile", "--traceback"]], ids=["before", "after"])
def test_traceback_option_shows_the_whole_traceback(capsys, tmp_path, where):
    path = write(tmp_path, FORWARD_MODEL.format(divisor="(1 // 0)"))
    assert main([*where, path]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):\n")
    assert f'File "{path}", line {line_of(path, "1 // 0")}, in forward' in err
    assert err.endswith("ZeroDivisionError: integer division or modulo by zero\n")


def test_traceback_option_with_an_ember_error(capsys, tmp_path):
    assert main(["--traceback", "compile", str(tmp_path / "absent.py")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):\n")
    assert err.endswith("ModelFileError: no such model file: " + str(tmp_path / "absent.py") + "\n")


def test_internal_error(capsys, classifier, monkeypatch):
    # A bug in ember (here: a function that became None) is not the user's error.
    monkeypatch.setattr(cli, "print_graph", None)
    assert main(["compile", classifier, "--print-after", "autodiff"]) == 3
    err = capsys.readouterr().err
    assert re.fullmatch(
        r"ember: internal error: TypeError: 'NoneType' object is not callable \(at \S+cli\.py:\d+\); "
        r"rerun with --traceback to see the whole traceback\n",
        err,
    )


def test_internal_error_while_tracing_names_the_users_line(capsys, tmp_path, monkeypatch):
    path = write(tmp_path, FORWARD_MODEL.format(divisor="2"))
    monkeypatch.setattr(ember.functional, "emit", None)
    assert main(["compile", path]) == 3
    err = capsys.readouterr().err
    where = rf"\(at \S+functional\.py:\d+, called from {re.escape(path)}:{line_of(path, 'relu')}\)"
    assert re.match(rf"ember: internal error: TypeError: 'NoneType' object is not callable {where}; rerun", err)
    assert err.count("\n") == 1
    assert main(["--traceback", "compile", path]) == 3
    assert "Traceback (most recent call last):" in capsys.readouterr().err


# -- ember train ---------------------------------------------------------------
def test_train_prints_a_line_per_epoch(capsys, classifier):
    out = run_ok(capsys, "train", classifier, "--epochs", "3", "--no-progress")
    lines = out.splitlines()
    assert lines[0].startswith("<ember.Program train with Adam")
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert [line.split()[1] for line in epochs] == ["1/3", "2/3", "3/3"]
    assert re.fullmatch(r"epoch 3/3  loss \S+  val_loss \S+  val_accuracy 1\.0000  \(\d+\.\d\d s\)", epochs[-1])
    losses = [float(line.split()[3]) for line in epochs]
    assert losses[-1] < losses[0]


def test_train_without_validation_data(capsys, tmp_path):
    path = write(tmp_path, CLASSIFIER.replace("return x[:60], y[:60], x[60:], y[60:]", "return x, y"))
    out = run_ok(capsys, "train", path, "--epochs", "1", "--no-progress")
    assert "epoch 1/1  loss" in out
    assert "val_" not in out


def test_train_lr_option_overrides_the_optimizer(capsys, classifier):
    out = run_ok(capsys, "train", classifier, "--epochs", "2", "--lr", "0", "--no-progress")
    losses = [float(line.split()[3]) for line in out.splitlines() if line.startswith("epoch ")]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)  # nothing moves


def test_train_seed_option(capsys, classifier):
    argv = ("train", classifier, "--epochs", "1", "--no-progress")
    first = without_times(run_ok(capsys, *argv, "--seed", "1"))
    assert without_times(run_ok(capsys, *argv, "--seed", "1")) == first
    assert without_times(run_ok(capsys, *argv, "--seed", "2")) != first


def test_train_save_and_batch_size(capsys, classifier, tmp_path):
    path = tmp_path / "trained.npz"
    out = run_ok(
        capsys, "train", classifier, "--epochs", "1", "--batch-size", "7", "--save", str(path), "--no-progress"
    )
    assert out.endswith(f"saved {path}\n")
    program = ember.load(path)
    assert program.is_training
    assert program.batch_size == 7


def test_train_progress_bar_goes_to_stderr(capsys, classifier):
    assert main(["train", classifier, "--epochs", "1"]) == 0
    assert "batch" in capsys.readouterr().err
    assert main(["train", classifier, "--epochs", "1", "--no-progress"]) == 0
    assert capsys.readouterr().err == ""


def test_train_unknown_backend(capsys, classifier):
    assert "unknown backend 'nope'" in run_error(capsys, "train", classifier, "--backend", "nope")


@pytest.mark.parametrize(
    ("save", "message"),
    [
        pytest.param("no/m.npz", "directory .*no does not exist", id="missing-directory"),
        pytest.param(".", r"cannot write checkpoint \.: it is a directory", id="directory"),
        pytest.param("", "the checkpoint path is empty", id="empty"),
    ],
)
def test_train_checks_the_save_path_before_training(capsys, classifier, tmp_path, monkeypatch, save, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(ember.Program, "fit", lambda *args, **kwargs: pytest.fail("trained before checking --save"))
    err = run_error(capsys, "train", classifier, "--epochs", "1", "--no-progress", "--save", save)
    assert re.search(message, err)


def test_train_needs_loss_and_optimizer(capsys, inference):
    assert "does not define `loss`" in run_error(capsys, "train", inference)


def test_train_needs_data(capsys, tmp_path):
    path = write(tmp_path, CLASSIFIER.replace("def data():", "def other():"))
    assert "does not define data()" in run_error(capsys, "train", path)


def test_train_data_must_return_two_or_four_arrays(capsys, tmp_path):
    path = write(tmp_path, CLASSIFIER.replace("return x[:60], y[:60], x[60:], y[60:]", "return x, y, x"))
    assert "data() must return (x, y) or (x, y, x_val, y_val), got 3 values" in run_error(capsys, "train", path)


def test_train_bad_data_is_an_ember_error(capsys, tmp_path):
    path = write(tmp_path, CLASSIFIER.replace("return x[:60], y[:60], x[60:], y[60:]", "return x, y + 5"))
    assert "not a class index" in run_error(capsys, "train", path, "--no-progress")


def test_interrupted_training(capsys, tmp_path):
    path = write(tmp_path, CLASSIFIER.replace("rng = np.random", "raise KeyboardInterrupt\n    rng = np.random"))
    assert main(["train", path]) == 130
    assert capsys.readouterr().err == "ember: interrupted\n"


def test_run_is_an_alias_of_train(capsys, classifier):
    assert "epoch 1/1" in run_ok(capsys, "run", classifier, "--epochs", "1", "--no-progress")


# -- ember export --------------------------------------------------------------
def test_export_a_model_file(capsys, classifier, tmp_path):
    out = run_ok(capsys, "export", classifier, "-o", str(tmp_path / "build"), "--name", "blobs")
    assert out.splitlines() == [f"wrote {tmp_path / 'build' / name}" for name in ("blobs.h", "blobs.o")]
    header = (tmp_path / "build" / "blobs.h").read_text()
    assert "int blobs_predict(const float *x, float *y, size_t n);" in header
    assert "blobs_train_step" not in header


def test_export_a_trained_checkpoint_for_training(capsys, classifier, tmp_path):
    checkpoint = tmp_path / "trained.npz"
    run_ok(capsys, "train", classifier, "--epochs", "1", "--save", str(checkpoint), "--no-progress")
    run_ok(capsys, "export", str(checkpoint), "-o", str(tmp_path), "--train", "--max-batch", "16")
    header = (tmp_path / "model.h").read_text()
    assert "#define MODEL_MAX_BATCH 16" in header
    assert "int model_train_step(void *ctx" in header


def test_export_errors_are_one_line(capsys, classifier, tmp_path):
    assert "C identifier" in run_error(capsys, "export", classifier, "-o", str(tmp_path), "--name", "a-b")
    assert "does not know the CPU" in run_error(capsys, "export", classifier, "-o", str(tmp_path), "--cpu", "z80")


# -- help ----------------------------------------------------------------------
def test_help_explains_the_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for text in ("compile", "train", "ember compile examples/models/mlp.py --emit train", "--traceback"):
        assert text in out


@pytest.mark.parametrize(
    ("command", "texts"),
    [
        ("compile", ["--emit", "--dump-dir", "--print-after", "--list-stages", "defines", "ember compile examples"]),
        ("train", ["--epochs", "--batch-size", "--lr", "--backend", "--seed", "--save", "--no-progress", "data()"]),
        ("compile", ["--traceback"]),
        ("train", ["--traceback"]),
    ],
)
def test_subcommand_help(capsys, command, texts):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for text in texts:
        assert text in out


def test_usage_errors_exit_with_status_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["frobnicate"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out == f"ember {ember.__version__}\n"


def test_python_m_ember_and_the_console_script():
    script = shutil.which("ember", path=str(Path(sys.executable).parent))
    assert script is not None, "the `ember` console script is not installed next to this Python"
    module = subprocess.run([sys.executable, "-m", "ember", "--help"], capture_output=True, text=True, check=True)
    console = subprocess.run([script, "--help"], capture_output=True, text=True, check=True)
    assert module.stdout.startswith("usage: ember ")
    assert console.stdout == module.stdout
    failed = subprocess.run([script, "compile", "absent.py"], capture_output=True, text=True, check=False)
    assert (failed.returncode, failed.stderr) == (2, "ember: error: no such model file: absent.py\n")


def test_the_console_script_reports_an_exception_in_the_model_file(tmp_path):
    script = shutil.which("ember", path=str(Path(sys.executable).parent))
    path = write(tmp_path, INFERENCE + "scale = 1 / 0\n")
    failed = subprocess.run([script, "train", path], capture_output=True, text=True, check=False)
    expected = f"ember: error: {path}:4: ZeroDivisionError: division by zero\n    scale = 1 / 0\n"
    assert (failed.returncode, failed.stdout, failed.stderr) == (2, "", expected)


def test_cache_info_and_clear(capsys, classifier, tmp_path, monkeypatch):
    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path))
    ember.clear_cache()  # compiled earlier in this process: through the disk cache now
    assert main(["compile", classifier]) == 0  # loads the training step: one entry at least
    capsys.readouterr()
    assert main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert f"directory  {tmp_path}" in out
    entries = int(re.search(r"entries\s+(\d+)", out).group(1))
    assert entries >= 1
    assert main(["cache", "clear"]) == 0
    assert f"removed {entries} entries" in capsys.readouterr().out
    assert not list(tmp_path.glob("*.emc"))
    monkeypatch.setenv("EMBER_CACHE", "0")
    assert main(["cache", "info"]) == 0
    assert "off" in capsys.readouterr().out
