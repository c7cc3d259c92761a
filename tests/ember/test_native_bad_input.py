"""Bad input never reaches native code.

The public API's bad-input tests (test_bad_input.py) run again for the
native backend in a subprocess, so that a crash in native code fails a
test instead of killing the test run. Then the native runtime's own last
guard, `NativeExecutable._bind`, is called directly with arrays that the
Program layer would never pass on: it must refuse them with an ember error
and leave the parameters and optimizer state untouched."""

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

import ember
from ember import nn, optim
from ember.compiler.optimizers import LEARNING_RATE
from ember.runtime.native import NativeExecutable
from ember.trace import INPUT, PREDICTION, TARGET

ROOT = Path(__file__).resolve().parents[2]
BAD_INPUT_TESTS = Path(__file__).resolve().with_name("test_bad_input.py")
FEATURES, CLASSES, ROWS = 4, 3, 6


def run_pytest(*args: str, junit: Path) -> tuple[subprocess.CompletedProcess, list[ET.Element]]:
    """Run pytest in a fresh interpreter; return the process and its test cases."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", *args]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600, check=False)
    cases = list(ET.parse(junit).getroot().iter("testcase")) if junit.exists() else []
    return result, cases


def outcome(case: ET.Element) -> str:
    for tag in ("failure", "error", "skipped"):
        if case.find(tag) is not None:
            return tag
    return "passed"


def describe(result: subprocess.CompletedProcess) -> str:
    return f"pytest exited with {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


@pytest.mark.slow
def test_the_public_bad_input_tests_pass_on_the_native_backend(tmp_path):
    result, cases = run_pytest(str(BAD_INPUT_TESTS), "-k", "native", junit=tmp_path / "native.xml")
    assert result.returncode == 0, describe(result)  # a crash in native code is a negative return code
    names = [case.get("name") for case in cases]
    assert len(cases) >= 100, names  # every kind of bad input, for every entry point
    assert all("native" in name for name in names), names
    assert [n for n, c in zip(names, cases, strict=True) if outcome(c) != "passed"] == []
    for kind in ("test_bad_classification_batch", "test_bad_predict_input", "test_set_parameters_wrong_shape"):
        assert any(name.startswith(kind) for name in names), kind


def test_a_crash_in_the_subprocess_fails_the_check(tmp_path):
    """The check above can fail: a segfault is reported, not survived silently."""
    crashing = tmp_path / "test_crash.py"
    crashing.write_text("import ctypes\n\n\ndef test_native():\n    ctypes.string_at(0)\n")
    result, cases = run_pytest(str(crashing), "-k", "native", junit=tmp_path / "crash.xml")
    assert result.returncode != 0
    assert cases == []  # the run died before writing its report


# -- the last guard: NativeExecutable._bind ------------------------------------
@pytest.fixture(scope="module")
def program() -> ember.Program:
    model = nn.Sequential(nn.Linear(FEATURES, 8), nn.ReLU(), nn.Linear(8, CLASSES))
    prog = ember.compile(model, loss=nn.CrossEntropyLoss(), optimizer=optim.Adam(lr=0.01))
    assert prog.backend == "native"
    return prog


def good_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        INPUT: rng.normal(size=(ROWS, FEATURES)).astype(np.float32),
        TARGET: rng.integers(0, CLASSES, size=ROWS),
        "sample_weight": np.ones(ROWS, np.float32),
    }


def misaligned(array: np.ndarray) -> np.ndarray:
    """A copy of `array` whose data starts one byte past an aligned address."""
    raw = np.zeros(array.nbytes + 1, np.uint8)
    out = raw[1:].view(array.dtype).reshape(array.shape)
    out[...] = array
    assert not out.flags.aligned
    return out


def byte_aligned_only(array: np.ndarray, offset: int) -> np.ndarray:
    """A copy of `array` aligned for its dtype, `offset` bytes past a 64-byte boundary."""
    raw = np.zeros(array.nbytes + 128, np.uint8)
    start = -raw.ctypes.data % 64 + offset
    out = raw[start : start + array.nbytes].view(array.dtype).reshape(array.shape)
    out[...] = array
    assert out.flags.aligned
    assert out.flags.c_contiguous
    return out


BAD_ARRAYS = [
    pytest.param(INPUT, lambda x: x.astype(np.float64), ember.DTypeError, id="x-float64"),
    pytest.param(INPUT, lambda x: x.astype(">f4"), ember.DTypeError, id="x-big-endian"),
    pytest.param(INPUT, lambda x: x.astype(np.float16), ember.DTypeError, id="x-float16"),
    pytest.param(INPUT, lambda x: np.asfortranarray(x), ember.ShapeError, id="x-fortran-order"),
    pytest.param(INPUT, lambda x: np.repeat(x, 2, axis=1)[:, ::2], ember.ShapeError, id="x-strided"),
    pytest.param(INPUT, lambda x: np.broadcast_to(x[:1], x.shape), ember.ShapeError, id="x-broadcast"),
    pytest.param(INPUT, misaligned, ember.ShapeError, id="x-misaligned"),
    pytest.param(INPUT, lambda x: x[:, :3].copy(), ember.ShapeError, id="x-feature-count"),
    pytest.param(INPUT, lambda x: x[:, :, None].copy(), ember.ShapeError, id="x-rank"),
    pytest.param(TARGET, lambda y: y.astype(np.int32), ember.DTypeError, id="y-int32"),
    pytest.param(TARGET, lambda y: y.astype(np.float32), ember.DTypeError, id="y-float32"),
    pytest.param(TARGET, misaligned, ember.ShapeError, id="y-misaligned"),
    pytest.param(TARGET, lambda y: y[::-1], ember.ShapeError, id="y-reversed"),
    pytest.param(TARGET, lambda y: y[:-1].copy(), ember.ShapeError, id="y-row-mismatch"),
]


@pytest.mark.parametrize(("name", "corrupt", "error"), BAD_ARRAYS)
def test_the_native_train_step_refuses_arrays_the_program_would_not_pass(program, name, corrupt, error):
    inputs = good_inputs()
    inputs[name] = corrupt(inputs[name])
    params, state = program.parameters, program.optimizer_state
    with pytest.raises(error) as info:
        program._exec.run("train", inputs)
    assert isinstance(info.value, ember.EmberError)
    message = str(info.value)
    assert "native train_step" in message
    assert f"input {name}" in message
    for before, after in ((params, program.parameters), (state, program.optimizer_state)):
        for key, value in before.items():
            np.testing.assert_array_equal(after[key], value, err_msg=key)


@pytest.mark.parametrize(
    ("corrupt", "error"),
    [
        pytest.param(lambda lr: lr.reshape(1), ember.ShapeError, id="lr-vector"),
        pytest.param(lambda lr: lr.astype(np.float64), ember.DTypeError, id="lr-float64"),
        pytest.param(misaligned, ember.ShapeError, id="lr-misaligned"),
    ],
)
def test_fixed_inputs_are_checked_once_when_an_entry_is_made(program, corrupt, error):
    """Hyperparameters are bound once, not passed by each call: the guard
    checks them when the entry is made, before native code can read them."""
    fixed = {LEARNING_RATE: corrupt(np.asarray(0.01, np.float32))}
    with pytest.raises(error, match=rf"native train_step: fixed input {LEARNING_RATE}\b"):
        NativeExecutable(program._native, program._params, program._state, fixed=fixed)  # makes its train entry


@pytest.mark.parametrize(("name", "corrupt", "error"), [p for p in BAD_ARRAYS if p.values[0] == INPUT])
def test_native_predict_refuses_arrays_the_program_would_not_pass(program, name, corrupt, error):
    with pytest.raises(error, match=rf"native predict: input {name}\b"):
        program._exec.run("predict", {INPUT: corrupt(good_inputs()[INPUT])})


def test_the_guard_passes_valid_arrays_to_native_code(program):
    """The same calls with good arrays run (the refusals above come from the guard)."""
    inputs = good_inputs()
    expected = program.predict(inputs[INPUT])
    np.testing.assert_array_equal(program._exec.run("predict", {INPUT: inputs[INPUT]})[PREDICTION], expected)


@pytest.mark.parametrize("offset", [4, 8, 16, 36])
def test_inputs_need_only_their_dtype_alignment(program, offset):
    """Arrays from other libraries are aligned to their element size, not to a
    vector register: native code must read them correctly."""
    x = good_inputs()[INPUT]
    expected = program.predict(x)
    np.testing.assert_array_equal(
        program._exec.run("predict", {INPUT: byte_aligned_only(x, offset)})[PREDICTION], expected
    )


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(np.asfortranarray, id="fortran-order"),
        pytest.param(lambda x: np.repeat(x, 2, axis=1)[:, ::2], id="strided"),
        pytest.param(misaligned, id="misaligned"),
        pytest.param(lambda x: x.astype(">f4"), id="big-endian"),
        pytest.param(lambda x: x.astype(np.float64), id="float64"),
    ],
)
def test_the_program_layer_makes_such_arrays_safe(program, make):
    """What the guard refuses, the public API converts: same prediction."""
    x = good_inputs()[INPUT]
    np.testing.assert_array_equal(program.predict(make(x)), program.predict(x))
