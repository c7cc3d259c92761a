"""Generated calls to the public API, and the contract every one must keep.

Hypothesis draws calls to a Program's methods (predict, train_step,
gradients, evaluate, fit, set_parameters, the learning rate, save, load,
dump) with arguments of every kind a user can pass: arrays of any rank,
size, dtype and memory layout, NaN and infinities, out-of-range labels,
lists, scalars and unrelated objects, parameter dicts, learning rates and
paths. Each call must either return what the method documents or raise an
`ember.EmberError`; after a rejected call the program's parameters,
optimizer state and learning rate are bit for bit what they were.

Run a campaign (in its own process, so a crash in native code is seen as a
negative exit status, not survived):

    python tests/fuzz.py --api 10000 --backend native

It prints `checked N calls (R rejected), 0 contract violations`, and exits
with status 1 and Hypothesis's shrunk example on the first violation."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

import ember
from ember import nn, optim

FEATURES, CLASSES, OUTPUTS = 4, 3, 2
"""The programs under test: 4 features in; 3 classes or 2 regression outputs out."""

DIMENSIONS = (0, 1, 2, 3, 4, 5, 7, 8, 16, 17)
"""Sizes drawn for array dimensions: empty, around the shapes the programs
expect, and around the vector widths."""

DTYPES = (
    "float16",
    "float32",
    "float64",
    "longdouble",
    ">f4",
    ">f8",
    "int8",
    "int32",
    "int64",
    ">i8",
    "uint8",
    "uint64",
    "bool",
    "complex64",
    "complex128",
    "U3",
    "S3",
    "object",
    "datetime64[s]",
    "timedelta64[s]",
    "V8",
    [("a", "f4"), ("b", "i4")],
)
"""Every kind of dtype NumPy has, native and byte-swapped."""

SPECIAL_VALUES = (np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45, 3.5e38, 1e300, -1e300, 2.0**62, -(2.0**63), -1, CLASSES)
"""Values that break careless numeric code: NaN, infinities, denormals,
numbers that overflow float32 or int64, and labels just out of range."""


class Junk:
    """An object that is not array-like."""

    def __repr__(self) -> str:
        return "Junk()"


class BrokenArray:
    """An object whose array conversion raises."""

    def __array__(self, dtype=None, copy=None):
        raise RuntimeError("this object refuses to become an array")

    def __repr__(self) -> str:
        return "BrokenArray()"


class LyingLength:
    """A sequence whose length disagrees with its items."""

    def __len__(self) -> int:
        return 3

    def __getitem__(self, index: int) -> float:
        if index >= 1:
            raise IndexError(index)
        return 1.0

    def __repr__(self) -> str:
        return "LyingLength()"


# -- values ------------------------------------------------------------------
# Plain functions of Hypothesis's `draw`, not nested strategies: building a
# strategy per example cost more than the calls themselves.
Draw = Callable[[st.SearchStrategy], Any]


def draw_array(draw: Draw, shape: tuple[int, ...] | None = None, kinds: str = "f") -> np.ndarray:
    """An array of a drawn (or given) shape, in a drawn dtype and memory layout,
    sometimes holding special values. `kinds` biases the dtype ('f' float,
    'i' integer labels) while every other dtype stays possible."""
    if shape is None:
        shape = tuple(draw(DIMENSION) for _ in range(draw(RANK)))
    dtype = np.dtype(draw(ANY_DTYPE if draw(UNUSUAL) else LIKELY_DTYPES[kinds]))
    rng = np.random.default_rng(draw(SEED))
    values = rng.normal(0, 2, shape) if kinds == "f" else rng.integers(0, CLASSES, shape)
    if values.size and draw(UNUSUAL):
        values = values.astype(np.float64)
        values.flat[draw(st.integers(0, values.size - 1))] = draw(SPECIAL)
    with np.errstate(all="ignore"):
        try:
            array = values.astype(dtype)
        except (TypeError, ValueError):
            array = np.zeros(shape, dtype)
    return with_layout(array, draw(LAYOUT))


def with_layout(array: np.ndarray, layout: str) -> np.ndarray:
    """The values of `array` in an unusual memory layout: Fortran order, a
    strided view, a misaligned copy, read-only, or broadcast ('C': as it is)."""
    if layout == "F":
        return np.asfortranarray(array)
    if layout == "strided" and array.ndim:
        return np.repeat(array, 2, axis=0)[::2]
    if layout == "misaligned" and array.dtype.itemsize > 1 and array.dtype.kind in "biufc":
        raw = np.zeros(array.nbytes + 1, np.uint8)
        view = raw[1:].view(array.dtype).reshape(array.shape)
        view[...] = array
        return view
    if layout == "readonly":
        array = array.copy()
        array.flags.writeable = False
        return array
    if layout == "broadcast" and array.ndim and array.shape[0]:
        return np.broadcast_to(array[:1], array.shape)
    return array


RANK = st.integers(0, 3)
DIMENSION = st.sampled_from(DIMENSIONS)
ROWS = st.sampled_from([0, 1, 2, 7, 16, 33])
SEED = st.integers(0, 2**32 - 1)
SPECIAL = st.sampled_from(SPECIAL_VALUES)
LIKELY_DTYPES = {"f": st.sampled_from(["float32", "float64"]), "i": st.sampled_from(["int64", "int32"])}
ANY_DTYPE = st.sampled_from(DTYPES)
UNUSUAL = st.integers(0, 3).map(lambda n: n == 0)
"""True one time in four: an unusual dtype, a special value."""
LAYOUT = st.sampled_from(["C"] * 6 + ["F", "strided", "misaligned", "readonly", "broadcast"])
OTHERS = st.sampled_from([None, "x", b"x", 1, 2.5, True, {}, Junk(), BrokenArray(), LyingLength()]) | st.lists(
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=5), max_size=4
)
"""Things that are not arrays at all, or barely."""

VALUE_KIND = st.sampled_from(["right", "right", "right", "any array", "other"])


def draw_value(draw: Draw, right_shape: tuple[int, ...], kinds: str = "f") -> Any:
    """Mostly an array of `right_shape`, else any array, else anything."""
    kind = draw(VALUE_KIND)
    if kind == "right":
        return draw_array(draw, right_shape, kinds)
    return draw_array(draw, None, kinds) if kind == "any array" else draw(OTHERS)


def draw_batch(draw: Draw, program: str) -> tuple[Any, Any]:
    """(x, y) for a program: mostly matching rows, sometimes not."""
    rows = draw(ROWS)
    y_rows = rows if draw(st.booleans()) else draw(ROWS)
    x = draw_value(draw, (rows, FEATURES))
    if program == "regressor":
        return x, draw_value(draw, (y_rows, OUTPUTS))
    return x, draw_value(draw, (y_rows,), kinds="i")


# -- calls -------------------------------------------------------------------
@dataclass
class Call:
    """One call to the public API, readable in a failure report."""

    method: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        def show(value: Any) -> str:
            if isinstance(value, np.ndarray):
                flags = "" if value.flags.c_contiguous else " non-contiguous"
                return f"array({list(value.shape)}, {value.dtype}{flags})"
            return repr(value)

        parts = [show(a) for a in self.args] + [f"{k}={show(v)}" for k, v in self.kwargs.items()]
        return f"{self.method}({', '.join(parts)})"


EPOCHS = st.sampled_from([-1, 0, 1, 2, 1.5, "1", None, True])
BATCH_SIZES = st.sampled_from([None, -1, 0, 1, 7, 10**12, 2.0, "8", True])
ODD_VALIDATION = st.sampled_from([None, (), "xy", [1, 2, 3]])
LEARNING_RATES = (
    st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(-(2**70), 2**70)
    | st.sampled_from([None, "0.1", True, np.float32(0.1), np.float64("nan"), np.array(0.1), [0.1], 1e39])
)
STAGE_NAMES = st.sampled_from([*ember.STAGES, "", "FUSED", "llvm ", None, 3])
PATHS = st.sampled_from(
    [
        "model.npz",
        "sub/model.npz",
        "missing/dir/model.npz",
        "",
        ".",
        "sub",
        "a\0b.npz",
        "x" * 300 + ".npz",
        None,
        3,
        b"model.npz",
        Junk(),
        "fifo",
        "link-to-fifo",
        "link-to-model.npz",
        "dangling-link.npz",
        "not-a-checkpoint.npz",
    ]
)
"""Paths for save and load, taken in a scratch directory that holds a
directory, a FIFO and symlinks (never a real device: a save that replaced
/dev/null would break the machine, not just fail a test)."""

EXTRA_NAMES = st.sampled_from(["extra", "0.weight.exp_avg", "", "3.weight"])
METHODS = st.sampled_from(
    ["predict", "train_step", "gradients", "evaluate", "fit", "set_parameters", "set_lr", "dump", "save", "load"]
)


@st.composite
def calls(draw: Draw, program: str, shapes: dict[str, tuple[int, ...]]) -> Call:
    """A call to one of the methods of `program` ('classifier', 'regressor'
    or 'inference', whose parameters have `shapes`)."""
    method = draw(METHODS)
    batch_kind = "classifier" if program == "inference" else program
    if method == "predict":
        return Call(method, (draw_value(draw, (draw(ROWS), FEATURES)),))
    if method in ("train_step", "gradients", "evaluate"):
        return Call(method, draw_batch(draw, batch_kind))
    if method == "fit":
        validation = draw_batch(draw, batch_kind) if draw(st.booleans()) else draw(ODD_VALIDATION)
        options = {"epochs": draw(EPOCHS), "batch_size": draw(BATCH_SIZES), "shuffle": draw(st.booleans())}
        return Call(method, draw_batch(draw, batch_kind), {**options, "validation_data": validation})
    if method == "set_parameters":
        given = {name: draw_value(draw, shape) for name, shape in shapes.items() if draw(st.booleans())}
        if draw(st.booleans()):
            given[draw(EXTRA_NAMES)] = np.zeros(2)
        values = given if draw(st.integers(0, 9)) else draw(OTHERS)
        return Call(method, (values,), {"strict": draw(st.booleans())})
    if method == "set_lr":
        return Call(method, (draw(LEARNING_RATES),))
    if method == "dump":
        return Call(method, (draw(STAGE_NAMES),))
    return Call(method, (draw(PATHS),))


# -- the contract --------------------------------------------------------------
def make_program(kind: str, backend: str) -> ember.Program:
    if kind == "classifier":
        model = nn.Sequential(nn.Linear(FEATURES, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, CLASSES))
        return ember.compile(model, loss=nn.CrossEntropyLoss(), optimizer=optim.Adam(lr=0.01), backend=backend)
    if kind == "regressor":
        model = nn.Sequential(nn.Linear(FEATURES, 5), nn.Tanh(), nn.Linear(5, OUTPUTS))
        return ember.compile(model, loss=nn.MSELoss(), optimizer=optim.SGD(lr=0.01, momentum=0.9), backend=backend)
    model = nn.Sequential(nn.Linear(FEATURES, 8), nn.Sigmoid(), nn.Linear(8, CLASSES))
    return ember.compile(model, backend=backend)


@dataclass
class Snapshot:
    """A program's parameters, optimizer state, learning rate and the step
    counter of its random numbers, exactly."""

    params: dict[str, bytes]
    state: dict[str, bytes]
    lr: float
    rng_step: int

    @staticmethod
    def of(prog: ember.Program) -> Snapshot:
        return Snapshot(
            {k: v.tobytes() for k, v in prog.parameters.items()},
            {k: v.tobytes() for k, v in prog.optimizer_state.items()},
            prog.lr,
            prog.rng_step,
        )


class Checker:
    """Runs calls on one program and checks each against the contract."""

    def __init__(self, kind: str, backend: str, directory: Path) -> None:
        self.kind = kind
        self.prog = make_program(kind, backend)
        self.initial = self.prog.parameters, self.prog.optimizer_state, self.prog.lr
        self.directory = directory
        (directory / "sub").mkdir(parents=True, exist_ok=True)
        (directory / "not-a-checkpoint.npz").write_bytes(b"PK\x03\x04 not really a zip")
        self.prog.save(directory / "model.npz")
        os.mkfifo(directory / "fifo")
        (directory / "link-to-fifo").symlink_to("fifo")
        (directory / "link-to-model.npz").symlink_to("model.npz")
        (directory / "dangling-link.npz").symlink_to("gone/model.npz")
        self.calls = 0
        self.rejected = 0

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: value.shape for name, value in self.prog.parameters.items()}

    def check(self, call: Call) -> None:
        """Make `call`; an EmberError leaves the program untouched, anything
        else returns the documented result. Then restore the program."""
        before = Snapshot.of(self.prog)
        self.calls += 1
        try:
            result = self.invoke(call)
        except ember.EmberError:
            self.rejected += 1
            after = Snapshot.of(self.prog)
            assert after == before, f"{call!r} was rejected but changed the program"
        except Exception as e:
            raise AssertionError(f"{call!r} raised {type(e).__name__}, not an EmberError: {e}") from e
        else:
            self.check_result(call, result)
        finally:
            self.restore()

    def invoke(self, call: Call) -> Any:
        prog = self.prog
        if call.method == "set_lr":
            prog.lr = call.args[0]
            return prog.lr
        if call.method in ("save", "load"):
            path = call.args[0]
            if isinstance(path, str) and path:
                path = str(self.directory / path)
            return prog.save(path) if call.method == "save" else ember.load(path, backend=prog.backend)
        method = getattr(prog, call.method)
        if call.method == "fit":
            return method(*call.args, progress=False, **call.kwargs)
        return method(*call.args, **call.kwargs)

    def check_result(self, call: Call, result: Any) -> None:
        """The documented result of each method, checked loosely on values."""
        prog, method = self.prog, call.method
        if method == "predict":
            assert isinstance(result, np.ndarray), call
            assert result.dtype == prog.dtype.numpy, call
            assert result.shape[:1] == (len(call.args[0]),), call
        elif method == "train_step":
            assert isinstance(result, float), call
        elif method == "gradients":
            assert {k: v.shape for k, v in result.items()} == self.shapes(), call
        elif method == "evaluate":
            assert isinstance(result["loss"], float), call
        elif method == "fit":
            assert len(result["loss"]) == call.kwargs["epochs"], call
        elif method == "set_lr":
            assert result == float(call.args[0]), call
        elif method == "dump":
            assert isinstance(result, str), call
            assert result, call
        elif method == "load":
            assert isinstance(result, ember.Program), call
        elif method == "set_parameters":
            now = prog.parameters
            for name, value in call.args[0].items():
                with np.errstate(over="ignore"):  # as set_parameters converts: 1e300 is inf in float32
                    expected = np.asarray(value, dtype=prog.dtype.numpy).reshape(now[name].shape)
                np.testing.assert_array_equal(now[name], expected, err_msg=f"{call!r}: {name}")

    def restore(self) -> None:
        """Put back the starting parameters, optimizer state and learning rate,
        straight into the arenas (the public setters are what is under test)."""
        params, state, lr = self.initial
        for arena, values in ((self.prog._params, params), (self.prog._state, state)):
            for name, value in values.items():
                np.copyto(arena[name], value)
        self.prog._lr = lr


def campaign(checker: Checker, count: int, random_seed: int) -> None:
    """Check `count` drawn calls on `checker`'s program; raise on the first
    violation (after Hypothesis has shrunk it)."""

    @seed(random_seed)
    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    @given(call=calls(checker.kind, checker.shapes()))
    def run(call: Call) -> None:
        checker.check(call)

    run()


@dataclass
class Tally:
    """What a campaign of calls found."""

    calls: int = 0
    rejected: int = 0
    violations: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return f"checked {self.calls} calls ({self.rejected} rejected), {len(self.violations)} contract violations"


PROGRAM_KINDS = ("classifier", "regressor", "inference")


def check_calls(total: int, backend: str, seed: int) -> Tally:
    """Check about `total` drawn calls, shared among a classifier, a regressor
    and an inference-only program; stop at the first violation (shrunk)."""
    tally = Tally()
    with tempfile.TemporaryDirectory() as scratch:
        for kind in PROGRAM_KINDS:
            checker = Checker(kind, backend, Path(scratch) / kind)
            try:
                campaign(checker, -(-total // len(PROGRAM_KINDS)), seed)
            except (AssertionError, ExceptionGroup) as e:
                found = e.exceptions if isinstance(e, ExceptionGroup) else [e]
                tally.violations += [f"{kind}: {violation}" for violation in found]
            tally.calls += checker.calls
            tally.rejected += checker.rejected
            if tally.violations:
                break
    return tally
