"""Bad input to the public API raises an ember error whose message names
what was wrong, and never changes a program's parameters, optimizer state
or learning rate. Every test runs on each backend in `ember.program.BACKENDS`."""

from contextlib import contextmanager

import numpy as np
import pytest

import ember
from ember import nn, optim
from ember.program import BACKENDS


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


def trained(prog: ember.Program, x, y) -> ember.Program:
    """`prog` after one step, so that its optimizer state is not all zeros."""
    prog.train_step(x, y)
    return prog


@pytest.fixture
def classifier(backend, mlp, blobs) -> ember.Program:
    prog = ember.compile(mlp, loss=nn.CrossEntropyLoss(), optimizer=optim.Adam(lr=0.01), backend=backend)
    return trained(prog, *blobs)


@pytest.fixture
def regressor(backend, regression) -> ember.Program:
    model = nn.Sequential(nn.Linear(4, 2))
    prog = ember.compile(model, loss=nn.MSELoss(), optimizer=optim.SGD(lr=0.1, momentum=0.9), backend=backend)
    return trained(prog, *regression)


@pytest.fixture
def rejects(assert_same):
    """`with rejects(prog, Error, *words):` the block raises `Error`, an
    EmberError whose message contains every word, and leaves `prog` as it was."""

    @contextmanager
    def check(prog: ember.Program, error: type[ember.EmberError], *words: str):
        params, state, lr = prog.parameters, prog.optimizer_state, prog.lr
        with pytest.raises(error) as info:
            yield
        assert isinstance(info.value, ember.EmberError)
        for word in words:
            assert word in str(info.value), f"{word!r} not in {str(info.value)!r}"
        assert_same(prog.parameters, params)
        assert_same(prog.optimizer_state, state)
        assert prog.lr == lr

    return check


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (ember.ShapeError, ValueError),
        (ember.DTypeError, TypeError),
        (ember.InputError, ValueError),
        (ember.ConfigError, ValueError),
        (ember.ParseError, ValueError),
        (ember.CheckpointError, OSError),
    ],
)
def test_errors_are_also_the_natural_builtin_errors(error, builtin):
    assert issubclass(error, ember.EmberError)
    assert issubclass(error, builtin)


# -- training data -----------------------------------------------------------
def _label(y: np.ndarray, row: int, value: int) -> np.ndarray:
    y = y.copy()
    y[row] = value
    return y


BAD_CLASSIFIER_BATCHES = [
    pytest.param(lambda x, y: (x[:, :3], y), ember.ShapeError, ["x", "[60, 3]", "4"], id="feature-count"),
    pytest.param(lambda x, y: (x[0], y), ember.ShapeError, ["x", "got [4]"], id="1d-x"),
    pytest.param(lambda x, y: (x[:, :, None], y), ember.ShapeError, ["x", "[60, 4, 1]"], id="3d-x"),
    pytest.param(lambda x, y: (x, y[:59]), ember.ShapeError, ["y", "[60]", "[59]"], id="row-mismatch"),
    pytest.param(lambda x, y: (x[:0], y[:0]), ember.InputError, ["x", "0 rows"], id="no-rows"),
    pytest.param(lambda x, y: (x, y.astype(np.float64)), ember.DTypeError, ["y", "float64", "integers"], id="float-y"),
    pytest.param(lambda x, y: (x.astype(str), y), ember.DTypeError, ["x", "<U"], id="string-x"),
    pytest.param(lambda x, y: (x, y.astype(str)), ember.DTypeError, ["y", "<U"], id="string-y"),
    pytest.param(lambda x, y: (x.astype(object), y), ember.DTypeError, ["x", "object"], id="object-x"),
    pytest.param(lambda x, y: (x, y.astype(object)), ember.DTypeError, ["y", "object"], id="object-y"),
    pytest.param(lambda x, y: (x.astype(complex), y), ember.DTypeError, ["x", "complex"], id="complex-x"),
    pytest.param(lambda x, y: (x > 0, y), ember.DTypeError, ["x", "bool"], id="bool-x"),
    pytest.param(lambda x, y: ([[1.0] * 4, [1.0] * 3], y[:2]), ember.DTypeError, ["x"], id="ragged-x"),
    pytest.param(lambda x, y: (None, y), ember.DTypeError, ["x"], id="none-x"),
    pytest.param(lambda x, y: (x, _label(y, 5, -1)), ember.InputError, ["y[5] = -1", "[0, 3)"], id="negative-label"),
    pytest.param(lambda x, y: (x, _label(y, 7, 3)), ember.InputError, ["y[7] = 3", "[0, 3)"], id="label-too-big"),
]

TRAINING_CALLS = {
    "train_step": lambda prog, x, y: prog.train_step(x, y),
    "gradients": lambda prog, x, y: prog.gradients(x, y),
    "evaluate": lambda prog, x, y: prog.evaluate(x, y),
    "fit": lambda prog, x, y: prog.fit(x, y, epochs=1, progress=False),
}


@pytest.mark.parametrize("call", TRAINING_CALLS.values(), ids=TRAINING_CALLS.keys())
@pytest.mark.parametrize(("corrupt", "error", "words"), BAD_CLASSIFIER_BATCHES)
def test_bad_classification_batch(classifier, blobs, rejects, call, corrupt, error, words):
    x, y = corrupt(*blobs)
    with rejects(classifier, error, *words):
        call(classifier, x, y)


@pytest.mark.parametrize("call", TRAINING_CALLS.values(), ids=TRAINING_CALLS.keys())
@pytest.mark.parametrize(
    ("corrupt", "words"),
    [
        pytest.param(lambda y: y[:, :1] * np.ones((1, 3)), ["y", "[50, 2]", "[50, 3]"], id="too-many-columns"),
        pytest.param(lambda y: y[:, 0], ["y", "[50, 2]", "[50]"], id="vector"),
        pytest.param(lambda y: y[:, :, None], ["y", "[50, 2, 1]"], id="3d"),
        pytest.param(lambda y: y.T, ["y", "[2, 50]"], id="transposed"),
    ],
)
def test_wrong_target_shape_for_mse(regressor, regression, rejects, call, corrupt, words):
    x, y = regression
    with rejects(regressor, ember.ShapeError, *words):
        call(regressor, x, corrupt(y))


@pytest.mark.parametrize(
    ("x", "error", "words"),
    [
        pytest.param(np.zeros((5, 3)), ember.ShapeError, ["x", "[5, 3]"], id="feature-count"),
        pytest.param(np.zeros(4), ember.ShapeError, ["x", "[4]"], id="1d"),
        pytest.param(np.zeros((5, 4, 1)), ember.ShapeError, ["x", "[5, 4, 1]"], id="3d"),
        pytest.param(np.float32(1.0), ember.ShapeError, ["x", "scalar"], id="scalar"),
        pytest.param(np.full((5, 4), "a"), ember.DTypeError, ["x", "<U1"], id="strings"),
        pytest.param(np.zeros((5, 4), complex), ember.DTypeError, ["x", "complex128"], id="complex"),
        pytest.param([[1.0, 2.0], [3.0]], ember.DTypeError, ["x"], id="ragged"),
    ],
)
def test_bad_predict_input(classifier, rejects, x, error, words):
    with rejects(classifier, error, *words):
        classifier.predict(x)


# -- fit options -------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        pytest.param({"epochs": -1}, ["epochs", "-1"], id="negative-epochs"),
        pytest.param({"epochs": 1.5}, ["epochs", "1.5"], id="fractional-epochs"),
        pytest.param({"batch_size": 0}, ["batch_size", "0"], id="zero-batch-size"),
        pytest.param({"batch_size": -4}, ["batch_size", "-4"], id="negative-batch-size"),
        pytest.param({"batch_size": 2.0}, ["batch_size", "2.0"], id="float-batch-size"),
    ],
)
def test_bad_fit_options(classifier, blobs, rejects, kwargs, words):
    with rejects(classifier, ember.ConfigError, *words):
        classifier.fit(*blobs, progress=False, **kwargs)


@pytest.mark.parametrize(
    ("make", "error", "words"),
    [
        pytest.param(lambda x, y: x, ember.ConfigError, ["validation_data", "pair"], id="not-a-pair"),
        pytest.param(lambda x, y: (x, y, y), ember.ConfigError, ["validation_data", "pair"], id="triple"),
        pytest.param(lambda x, y: (x[:, :3], y), ember.ShapeError, ["validation x", "[60, 3]"], id="features"),
        pytest.param(lambda x, y: (x, y[:10]), ember.ShapeError, ["validation y", "[10]"], id="rows"),
        pytest.param(lambda x, y: (x, y + 3), ember.InputError, ["validation y", "[0, 3)"], id="labels"),
    ],
)
def test_bad_validation_data_is_rejected_before_training(classifier, blobs, rejects, make, error, words):
    with rejects(classifier, error, *words):
        classifier.fit(*blobs, epochs=2, validation_data=make(*blobs), progress=False)


# -- learning rates ----------------------------------------------------------
BAD_LRS = [
    pytest.param(-0.1, id="negative"),
    pytest.param(float("nan"), id="nan"),
    pytest.param(float("inf"), id="inf"),
    pytest.param("0.1", id="string"),
    pytest.param(None, id="none"),
]


@pytest.mark.parametrize(
    "lr",
    [
        *BAD_LRS,
        pytest.param(-(2**70), id="huge-negative-int"),
        pytest.param(2**1100, id="int-beyond-float64"),
        pytest.param(1e39, id="beyond-float32"),
        pytest.param(True, id="bool"),
        pytest.param(np.array(0.1), id="array"),
    ],
)
def test_bad_lr_on_a_program(classifier, rejects, lr):
    with rejects(classifier, ember.ConfigError, "learning rate", repr(lr)):
        classifier.lr = lr


def test_lr_finite_in_float64_is_accepted_by_a_float64_program(mlp):
    prog = ember.compile(mlp, loss=nn.MSELoss(), optimizer=optim.SGD(), dtype="float64", backend="reference")
    prog.lr = 1e39
    assert prog.lr == 1e39


@pytest.mark.parametrize("lr", BAD_LRS[:2] + BAD_LRS[3:])  # inf: see the next test
@pytest.mark.parametrize("make", [optim.SGD, optim.Adam, optim.AdamW])
def test_bad_lr_for_an_optimizer(make, lr):
    with pytest.raises(ember.ConfigError, match="learning rate"):
        make(lr=lr)


def test_infinite_optimizer_lr_is_rejected_at_compile(backend, mlp):
    with pytest.raises(ember.ConfigError, match="learning rate"):
        ember.compile(mlp, loss=nn.MSELoss(), optimizer=optim.SGD(lr=float("inf")), backend=backend)


# -- set_parameters ----------------------------------------------------------
def test_set_parameters_unknown_name(classifier, rejects):
    with rejects(classifier, ember.ConfigError, "unknown parameter 'fc.weight'", "0.weight, 0.bias"):
        classifier.set_parameters({**classifier.parameters, "fc.weight": np.zeros((8, 4))})


def test_set_parameters_wrong_shape(classifier, rejects):
    with rejects(classifier, ember.ShapeError, "parameter 0.weight", "[8, 4]", "[4, 8]"):
        classifier.set_parameters({**classifier.parameters, "0.weight": np.zeros((4, 8))})


def test_set_parameters_wrong_dtype(classifier, rejects):
    with rejects(classifier, ember.DTypeError, "parameter 0.bias", "<U"):
        classifier.set_parameters({**classifier.parameters, "0.bias": np.full(8, "x")})


def test_set_parameters_missing_name_when_strict(classifier, rejects):
    values = classifier.parameters
    del values["2.bias"]
    with rejects(classifier, ember.ConfigError, "missing parameter '2.bias'", "strict=False"):
        classifier.set_parameters(values)


@pytest.mark.parametrize("values", [[np.zeros((8, 4))], np.zeros(3), None, "0.weight"])
def test_set_parameters_needs_a_dict(classifier, rejects, values):
    with rejects(classifier, ember.ConfigError, "dict", type(values).__name__):
        classifier.set_parameters(values)


def test_set_parameters_writes_nothing_unless_all_values_are_valid(classifier, rejects):
    """A valid new 0.weight is not loaded when 0.bias, given after it, is bad."""
    new_weight = classifier.parameters["0.weight"] + 1
    with rejects(classifier, ember.ShapeError, "parameter 0.bias"):
        classifier.set_parameters({"0.weight": new_weight, "0.bias": np.zeros(9)}, strict=False)


# -- compile arguments -------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        pytest.param({"dtype": "int32"}, ["dtype", "'int32'"], id="int-dtype"),
        pytest.param({"dtype": "float16"}, ["dtype", "'float16'"], id="half-dtype"),
        pytest.param({"dtype": "double precision"}, ["dtype"], id="junk-dtype"),
        pytest.param({"batch_size": 0}, ["batch_size", "0"], id="zero-batch-size"),
        pytest.param({"batch_size": 2.5}, ["batch_size", "2.5"], id="float-batch-size"),
        pytest.param({"seed": -1}, ["seed", "-1"], id="negative-seed"),
        pytest.param({"seed": "0"}, ["seed", "'0'"], id="string-seed"),
        pytest.param({"loss": nn.MSELoss()}, ["loss=", "optimizer="], id="loss-without-optimizer"),
        pytest.param({"optimizer": optim.SGD()}, ["loss=", "optimizer="], id="optimizer-without-loss"),
        pytest.param({"loss": "mse", "optimizer": optim.SGD()}, ["loss", "str"], id="loss-not-a-loss"),
        pytest.param({"loss": nn.MSELoss(), "optimizer": "adam"}, ["optimizer", "'adam'"], id="not-an-optimizer"),
        pytest.param({"input_shape": (0,)}, ["input_shape"], id="empty-input-shape"),
    ],
)
def test_bad_compile_arguments(backend, mlp, kwargs, words):
    with pytest.raises(ember.ConfigError) as info:
        ember.compile(mlp, backend=backend, **kwargs)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize("model", [lambda x: x, nn.Linear, None, [nn.Linear(4, 2)]])
def test_compile_needs_a_module(backend, model):
    with pytest.raises(ember.ConfigError, match=r"expected an ember\.nn\.Module"):
        ember.compile(model, backend=backend)


def test_unknown_backend(mlp):
    with pytest.raises(ember.ConfigError, match="unknown backend 'gpu'; available: ") as info:
        ember.compile(mlp, backend="gpu")
    assert all(name in str(info.value) for name in BACKENDS)


# -- dumps, IR text, checkpoints ---------------------------------------------
@pytest.mark.parametrize("stage", ["fuse", "LLVM", "", None])
def test_unknown_stage(classifier, rejects, stage):
    with rejects(classifier, ember.ConfigError, f"unknown stage {stage!r}", ", ".join(ember.STAGES)):
        classifier.dump(stage)


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        pytest.param("", 1, ["empty"], id="empty"),
        pytest.param("garbage", 1, ["expected 'graph'", "garbage"], id="garbage"),
        pytest.param("graph g {\n  input %x: f32[B,4\n}\n", 2, ["expected"], id="unclosed-shape"),
        pytest.param("graph g {\n  input %x: f32[B]\n  %0: f32[B] = frobnicate %x\n}\n", 3, ["frobnicate"], id="op"),
        pytest.param("graph g {\n  input %x: f32[B]\n  output out = %nope\n}\n", 3, ["nope"], id="undefined"),
        pytest.param("graph g {\n  input %x: q32[B]\n}\n", 2, ["q32"], id="dtype"),
    ],
)
def test_malformed_ir_text(text, line, words):
    with pytest.raises(ember.ParseError) as info:
        ember.ir.parse(text)
    assert info.value.line == line
    assert str(info.value).startswith(f"{line}:")
    for word in words:
        assert word in str(info.value)


def test_load_missing_file(backend, tmp_path):
    path = tmp_path / "missing.npz"
    with pytest.raises(ember.CheckpointError, match="not found") as info:
        ember.load(path, backend=backend)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "write",
    [
        pytest.param(lambda f: f.write(b"not a checkpoint"), id="text"),
        pytest.param(lambda f: f.write(b"PK\x03\x04broken zip"), id="broken-zip"),
        pytest.param(lambda f: np.save(f, np.zeros(3)), id="npy"),
        pytest.param(lambda f: np.savez(f, weights=np.zeros(3)), id="other-npz"),
    ],
)
def test_load_a_file_that_is_not_a_checkpoint(backend, tmp_path, write):
    path = tmp_path / "file.npz"
    with path.open("wb") as f:
        write(f)
    with pytest.raises(ember.CheckpointError) as info:
        ember.load(path, backend=backend)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("replace", "problem"),
    [
        pytest.param("{transpose_b=" + "[" * 1500 + "]" * 1500 + "}", "not lists", id="nested-attribute"),
        pytest.param("{transpose_b=" + "9" * 5000 + "}", "more than 309 digits", id="long-integer"),
    ],
)
def test_load_a_checkpoint_with_pathological_ir(tmp_path, replace, problem):
    ember.compile(nn.Sequential(nn.Linear(3, 2))).save(tmp_path / "model.npz")
    with np.load(tmp_path / "model.npz") as data:
        entries = {k: data[k] for k in data.files}
    entries["ir/predict"] = np.array(str(entries["ir/predict"]).replace("{transpose_b=true}", replace))
    with open(tmp_path / "model.npz", "wb") as f:
        np.savez(f, **entries)
    with pytest.raises(ember.CheckpointError, match=f"IR text 'predict' is not a valid graph: 5:[0-9]+: .*{problem}"):
        ember.load(tmp_path / "model.npz")


def test_load_with_an_unknown_backend(classifier, tmp_path):
    classifier.save(tmp_path / "model.npz")
    with pytest.raises(ember.ConfigError, match="unknown backend 'gpu'"):
        ember.load(tmp_path / "model.npz", backend="gpu")
