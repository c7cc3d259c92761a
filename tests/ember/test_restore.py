"""`ember.load` trusts nothing in a checkpoint: every setting, graph,
parameter and optimizer-state entry is checked, and each mismatch is a
CheckpointError naming the field and what was expected."""

import json
from collections.abc import Callable

import numpy as np
import pytest

import ember
from ember import nn, optim
from ember.runtime import checkpoint
from ember.runtime.checkpoint import FORMAT

Change = Callable[[dict, dict], None]
"""Edits a checkpoint in place: (settings, npz entries other than meta)."""


def read_entries(path) -> tuple[dict, dict]:
    with np.load(path) as data:
        entries = {k: data[k] for k in data.files}
    return json.loads(str(entries.pop("meta"))), entries


def write_entries(path, meta: dict, entries: dict) -> None:
    with open(path, "wb") as f:
        np.savez(f, meta=np.array(json.dumps(meta)), **entries)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[dict, dict]:
    """The settings and entries of a trained classifier's checkpoint."""
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    prog = ember.compile(model, loss=nn.CrossEntropyLoss(), optimizer=optim.Adam(lr=0.05), backend="reference")
    prog.train_step(np.ones((5, 4)), np.arange(5) % 3)
    path = tmp_path_factory.mktemp("saved") / "model.npz"
    prog.save(path)
    return read_entries(path)


def load_changed(saved, tmp_path, change: Change) -> ember.Program:
    meta, entries = json.loads(json.dumps(saved[0])), dict(saved[1])
    change(meta, entries)
    path = tmp_path / "changed.npz"
    write_entries(path, meta, entries)
    return ember.load(path, backend="reference")


def check_rejected(saved, tmp_path, change: Change, message: str) -> None:
    with pytest.raises(ember.CheckpointError, match=message) as info:
        load_changed(saved, tmp_path, change)
    assert str(info.value).startswith(f"checkpoint {tmp_path / 'changed.npz'}: ")


# -- the edits -----------------------------------------------------------------
def setting(name: str, value) -> Change:
    def change(meta, entries):
        meta[name] = value

    return change


def without_setting(name: str) -> Change:
    return lambda meta, entries: meta.pop(name)


def nested(path: str, value) -> Change:
    """Set (or, for value `...`, delete) the setting at a dotted `path`."""
    *parents, last = path.split(".")

    def change(meta, entries):
        node = meta
        for key in parents:
            node = node[key]
        if value is ...:
            del node[last]
        else:
            node[last] = value

    return change


def entry(key: str, value) -> Change:
    """Set (or, for value None, delete) one npz entry."""

    def change(meta, entries):
        if value is None:
            del entries[key]
        else:
            entries[key] = value

    return change


def ir_edit(name: str, old: str, new: str) -> Change:
    def change(meta, entries):
        text = str(entries[f"ir/{name}"])
        assert old in text
        entries[f"ir/{name}"] = np.array(text.replace(old, new))

    return change


SETTINGS = ["dtype", "batch_size", "seed", "backend", "lr", "loss", "optimizer", "rng"]

INVALID_SETTINGS = [
    *[pytest.param(without_setting(name), f"setting '{name}' is missing", id=f"no-{name}") for name in SETTINGS],
    pytest.param(setting("epochs", 3), "unknown setting 'epochs'", id="unknown"),
    pytest.param(setting("batch_size", "x"), "setting 'batch_size' must be an integer >= 1, got 'x'", id="batch-str"),
    pytest.param(setting("batch_size", 0), "'batch_size' must be an integer >= 1, got 0", id="batch-0"),
    pytest.param(setting("batch_size", True), "'batch_size' must be an integer >= 1, got True", id="batch-bool"),
    pytest.param(setting("batch_size", 16.0), "'batch_size' must be an integer >= 1, got 16.0", id="batch-float"),
    pytest.param(setting("seed", -1), "setting 'seed' must be an integer >= 0, got -1", id="seed-negative"),
    pytest.param(setting("seed", "0"), "setting 'seed' must be an integer >= 0, got '0'", id="seed-str"),
    pytest.param(setting("dtype", "int32"), "setting 'dtype' must be 'float32' or 'float64', got 'int32'", id="dtype"),
    pytest.param(setting("dtype", "f32"), "setting 'dtype' must be 'float32' or 'float64'", id="dtype-short"),
    pytest.param(setting("dtype", "float64"), r"input x must be f64\[B,...\]", id="dtype-not-the-graphs"),
    pytest.param(setting("backend", "gpu"), "setting 'backend' must be one of native, reference", id="backend"),
    pytest.param(setting("lr", "x"), "setting 'lr' must be a finite float32 number >= 0, got 'x'", id="lr-str"),
    pytest.param(setting("lr", -0.1), "setting 'lr' must be a finite float32 number >= 0, got -0.1", id="lr-negative"),
    pytest.param(setting("lr", float("nan")), "'lr' must be a finite float32 number >= 0, got nan", id="lr-nan"),
    pytest.param(setting("lr", float("inf")), "'lr' must be a finite float32 number >= 0, got inf", id="lr-inf"),
    pytest.param(setting("lr", None), "setting 'lr' must be a finite float32 number >= 0, got None", id="lr-null"),
    pytest.param(setting("lr", 1e39), r"'lr' must be a finite float32 number >= 0, got 1e\+39", id="lr-float32-inf"),
    pytest.param(setting("lr", 10**400), "'lr' must be a finite float32 number >= 0, got 1000", id="lr-huge-int"),
    pytest.param(setting("loss", "x"), "setting 'loss' must be an object, got 'x'", id="loss-str"),
    pytest.param(setting("loss", {}), "setting 'loss' must hold the loss's 'name', got {}", id="loss-empty"),
    pytest.param(nested("loss.name", ["MSELoss"]), r"must hold the loss's 'name', got .*\['MSELoss'\]", id="loss-list"),
    pytest.param(nested("loss.decision", "vote"), "'decision' of argmax, logits, probabilities", id="decision"),
    pytest.param(nested("loss.ignore_index", 1.5), "must have an integer 'ignore_index', got 1.5", id="ignore-index"),
    pytest.param(nested("loss.num_classes", 5), "'num_classes': 3,.*got .*'num_classes': 5,", id="num-classes"),
    pytest.param(nested("loss.num_classes", 0), "'num_classes': 3,.*got .*'num_classes': 0,", id="num-classes-0"),
    pytest.param(nested("loss.num_classes", 3.0), r"got .*'num_classes': 3\.0,", id="num-classes-float"),
    pytest.param(nested("loss.num_classes", ...), "'class_weight': None} for graph 'model'", id="no-num-classes"),
    pytest.param(nested("loss.reduction", "none"), "'mean', 'sum' or 'batchmean', got 'none'", id="reduction"),
    pytest.param(nested("loss.classification", 1), "must have 'classification' true or false, got 1", id="class"),
    pytest.param(nested("loss.weights", [1, 2, 3]), "setting 'loss' must be .* got .*'weights'", id="loss-extra"),
    pytest.param(setting("optimizer", None), "setting 'optimizer' must name an optimizer", id="no-optimizer"),
    pytest.param(setting("optimizer", "Adam"), "setting 'optimizer' must be null or", id="optimizer-str"),
    pytest.param(nested("optimizer.name", "Adadelta"), "'name': one of SGD, Adam, AdamW", id="optimizer-unknown"),
    pytest.param(nested("optimizer.name", ["Adam"]), "'name': one of SGD, Adam, AdamW", id="optimizer-list"),
    pytest.param(nested("optimizer.momentum", 0.9), "setting 'optimizer' must be null or", id="optimizer-extra"),
    pytest.param(
        nested("optimizer.hyperparameters.eps", ...),
        "hyperparameters of Adam must be exactly lr, betas, eps, weight_decay, amsgrad",
        id="no-hyperparameter",
    ),
    pytest.param(nested("optimizer.hyperparameters.foo", 1), "must be exactly lr, betas", id="hyperparameter-extra"),
    pytest.param(
        nested("optimizer.hyperparameters.lr", "0.1"),
        "Adam hyperparameter 'lr' must be a finite number, got '0.1'",
        id="hyperparameter-str",
    ),
    pytest.param(
        nested("optimizer.hyperparameters.eps", float("nan")), "'eps' must be a finite number, got nan", id="eps-nan"
    ),
    pytest.param(
        nested("optimizer.hyperparameters.eps", 10**400), "'eps' must be a finite number, got 1000", id="eps-huge-int"
    ),
    pytest.param(
        nested("optimizer.hyperparameters.betas", [0.9]), "'betas' must be a list of 2 finite numbers", id="betas"
    ),
    pytest.param(
        nested("optimizer.hyperparameters.amsgrad", 0), "'amsgrad' must be true or false, got 0", id="amsgrad-int"
    ),
    pytest.param(
        nested("optimizer.hyperparameters.betas", [0.9, 2.0]),
        "setting 'optimizer': Adam: invalid beta at index 1: 2.0",
        id="betas-out-of-range",
    ),
    pytest.param(setting("frozen", "0.weight"), "setting 'frozen' must be a list of distinct param", id="frozen-str"),
    pytest.param(setting("frozen", ["0.weight"] * 2), "'frozen' must be a list of distinct", id="frozen-twice"),
    pytest.param(setting("frozen", ["1.weight"]), "'frozen' names '1.weight', which is not a param", id="frozen-name"),
    pytest.param(setting("state_dict", [["0.weight"]]), "'state_dict' must be a list of distinct", id="layout-pair"),
    pytest.param(
        setting("state_dict", [["0.weight", "float16"]]), "'state_dict' must be a list of distinct", id="layout-dtype"
    ),
    pytest.param(
        setting("state_dict", [["0.weight", "int64"]]), "gives param '0.weight' an integer dtype", id="layout-int-param"
    ),
    pytest.param(setting("state_dict", [["x", None]]), "names 'x', which is no param or buffer", id="layout-unknown"),
    pytest.param(setting("state_dict", []), "must name every param; '0.weight' is missing", id="layout-missing"),
    pytest.param(setting("rng", None), "setting 'rng' must be the state of a NumPy PCG64 generator", id="rng-null"),
    pytest.param(nested("rng.bit_generator", "MT19937"), "'rng' must be the state of a NumPy PCG64", id="rng-kind"),
    pytest.param(nested("rng.state.inc", ...), "'rng' must be the state of a NumPy PCG64", id="rng-no-inc"),
    pytest.param(nested("rng.state.inc", 2), "'rng' must be the state of a NumPy PCG64", id="rng-even-inc"),
    pytest.param(nested("rng.state.state", -1), "'rng' must be the state of a NumPy PCG64", id="rng-negative"),
    pytest.param(nested("rng.state.state", 2**128), "'rng' must be the state of a NumPy PCG64", id="rng-too-big"),
    pytest.param(nested("rng.has_uint32", 2), "'rng' must be the state of a NumPy PCG64", id="rng-has-uint32"),
    pytest.param(nested("rng.uinteger", 2**32), "'rng' must be the state of a NumPy PCG64", id="rng-uinteger"),
]


@pytest.mark.parametrize(("change", "message"), INVALID_SETTINGS)
def test_invalid_settings(saved, tmp_path, change, message):
    check_rejected(saved, tmp_path, change, message)


@pytest.mark.parametrize("name", ["frozen", "state_dict"])
def test_settings_older_checkpoints_lack_take_their_defaults(saved, tmp_path, name):
    prog = load_changed(saved, tmp_path, without_setting(name))
    assert prog.frozen == ()
    assert list(prog.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_an_adamw_checkpoint_older_than_its_flag_loads_as_adamw(tmp_path):
    """AdamW checkpoints written before `decoupled_weight_decay` existed lack
    it: it takes AdamW's value (True), not Adam's, so the step stays AdamW's."""
    model = nn.Sequential(nn.Linear(4, 3))
    prog = ember.compile(model, loss=nn.MSELoss(), optimizer=optim.AdamW(lr=0.1, weight_decay=0.5), backend="reference")
    path = tmp_path / "adamw.npz"
    prog.save(path)
    meta, entries = read_entries(path)
    for where in (meta["optimizer"]["hyperparameters"], *meta["optimizer"]["param_groups"]):
        where.pop("decoupled_weight_decay", None)
    write_entries(path, meta, entries)
    loaded = ember.load(path, backend="reference")
    assert loaded.optimizer.param_groups[0]["decoupled_weight_decay"] is True
    x, y = np.ones((2, 4)), np.zeros((2, 3))
    prog.train_step(x, y)
    loaded.train_step(x, y)
    for name, value in prog.parameters.items():
        np.testing.assert_array_equal(loaded.parameters[name], value, err_msg=name)


INVALID_GRAPHS = [
    pytest.param(entry("ir/predict", None), "IR text 'predict' is missing", id="no-predict"),
    pytest.param(entry("ir/loss", np.array("graph loss {\n}\n")), "unknown IR text 'loss'", id="unknown-text"),
    pytest.param(
        ir_edit("predict", "relu %1", "frobnicate %1"),
        "IR text 'predict' is not a valid graph: 9:.*frobnicate",
        id="predict-does-not-parse",
    ),
    pytest.param(
        ir_edit("predict", "relu %1", "tanh %1"),
        r"graph 'predict' does not compute the forward pass of graph 'evaluate': line 9 of that forward pass is "
        r"'%2: f32\[B,8\] = relu %1', got '%2: f32\[B,8\] = tanh %1'",
        id="predict-disagrees",
    ),
    pytest.param(
        ir_edit("evaluate", "relu %1", "sigmoid %1"),
        "graph 'predict' does not compute the forward pass of graph 'evaluate'",
        id="evaluate-disagrees",
    ),
    pytest.param(
        ir_edit("predict", "param %2.bias: f32[3]", "param %2.bias: f32[3]\n  param %scale: f32[3]"),
        "graph 'model' must take the params and buffers of graph 'predict': argument 5 of them is '[(]nothing[)]', "
        r"expected 'param %scale: f32\[3\]'",
        id="predict-has-another-param",
    ),
    pytest.param(
        ir_edit("evaluate", "param %2.bias: f32[3]", "buffer %2.bias: f32[3]"),
        r"graph 'evaluate' must take the params and buffers of graph 'predict': argument 4 of them is "
        r"'buffer %2.bias: f32\[3\]', expected 'param %2.bias: f32\[3\]'",
        id="evaluate-param-as-buffer",
    ),
    pytest.param(
        entry("ir/model", None),
        "IR text 'evaluate' needs IR text 'model'",
        id="evaluate-without-model",
    ),
    pytest.param(
        ir_edit("evaluate", "output out = %4", "output out = %4\n  update %0.bias = %0.bias"),
        "graph 'evaluate' must not update %0.bias: only graph 'model' updates, and only buffers",
        id="evaluate-updates",
    ),
    pytest.param(
        ir_edit("model", "output out = %4", "output out = %4\n  update %0.bias = %0.bias"),
        "graph 'model' must not update %0.bias",
        id="model-updates-a-param",
    ),
    pytest.param(
        ir_edit("predict", "graph predict", "graph forward"),
        "IR text 'predict' must hold graph 'predict', got graph 'forward'",
        id="graph-name",
    ),
    pytest.param(
        ir_edit("predict", "output out = %4", "output out = %4\n  output hidden = %2"),
        "graph 'predict' must have outputs out0, out1, got out, hidden",
        id="extra-output",
    ),
    pytest.param(
        ir_edit("predict", "input %x: f32[B,4]", "input %x: f32[B,4]\n  input %mask: f32[B,4]"),
        "graph 'predict' must have inputs x0, x1, got x, mask",
        id="extra-input",
    ),
    pytest.param(
        ir_edit("model", "output loss = %16", "output loss = %14"),
        r"graph 'model' must output a scalar f32 loss, got f32\[B\]",
        id="loss-not-scalar",
    ),
    pytest.param(
        ir_edit("predict", "input %x: f32[B,4]", "input %x: f32[B,4]\n  state %step: f32[]"),
        "graph 'predict' must have no optimizer state",
        id="state",
    ),
]


@pytest.mark.parametrize(("change", "message"), INVALID_GRAPHS)
def test_invalid_graphs(saved, tmp_path, change, message):
    check_rejected(saved, tmp_path, change, message)


def shape_message(what: str, name: str, shape: tuple, got_dtype: str, got_shape: tuple) -> str:
    expected = f"must be a float32 array of shape {shape}, got a {got_dtype} array of shape {got_shape}"
    return f"{what} '{name}' " + expected.replace("(", r"\(").replace(")", r"\)")


INVALID_ARRAYS = [
    pytest.param(
        entry("param/0.weight", np.float32(0.5)),
        shape_message("parameter", "0.weight", (8, 4), "float32", ()),
        id="scalar-weight",
    ),
    pytest.param(
        entry("param/0.weight", np.ones(4, np.float32)),
        shape_message("parameter", "0.weight", (8, 4), "float32", (4,)),
        id="row-weight",
    ),
    pytest.param(
        entry("param/0.weight", np.ones((4, 8), np.float32)),
        shape_message("parameter", "0.weight", (8, 4), "float32", (4, 8)),
        id="transposed-weight",
    ),
    pytest.param(
        entry("param/2.bias", np.ones(3, np.float64)),
        shape_message("parameter", "2.bias", (3,), "float64", (3,)),
        id="float64-bias",
    ),
    pytest.param(
        entry("param/2.bias", np.ones(3, np.int32)),
        shape_message("parameter", "2.bias", (3,), "int32", (3,)),
        id="int-bias",
    ),
    pytest.param(
        entry("param/2.bias", np.ones(3, ">f4")),
        shape_message("parameter", "2.bias", (3,), ">f4", (3,)),
        id="big-endian-bias",
    ),
    pytest.param(entry("param/0.bias", None), "parameter '0.bias' is missing", id="no-param"),
    pytest.param(
        entry("param/1.weight", np.ones((8, 8), np.float32)),
        "unknown parameter '1.weight'; expected 0.weight, 0.bias, 2.weight, 2.bias",
        id="unknown-param",
    ),
    pytest.param(entry("state/0.weight.exp_avg", None), "optimizer state '0.weight.exp_avg' is missing", id="no-state"),
    pytest.param(entry("state/step", None), "optimizer state 'step' is missing", id="no-step"),
    pytest.param(
        entry("state/2.bias.exp_avg_sq", np.ones(1, np.float32)),
        shape_message("optimizer state", "2.bias.exp_avg_sq", (3,), "float32", (1,)),
        id="state-shape",
    ),
    pytest.param(
        entry("state/0.weight.momentum_buffer", np.ones((8, 4), np.float32)),
        "unknown optimizer state '0.weight.momentum_buffer'",
        id="unknown-state",
    ),
    pytest.param(
        entry("state/step", np.float32(-1)), "optimizer state 'step' must be a whole number >= 0, got -1", id="step<0"
    ),
    pytest.param(
        entry("state/step", np.float32(1.5)), "optimizer state 'step' must be a whole number >= 0, got 1.5", id="step"
    ),
    pytest.param(
        entry("state/step", np.float32("nan")), "optimizer state 'step' must be a whole number >= 0", id="step-nan"
    ),
]


@pytest.mark.parametrize(("change", "message"), INVALID_ARRAYS)
def test_invalid_arrays(saved, tmp_path, change, message):
    check_rejected(saved, tmp_path, change, message)


def test_an_unchanged_checkpoint_loads(saved, tmp_path):
    prog = load_changed(saved, tmp_path, lambda meta, entries: None)
    for name, value in prog.parameters.items():
        np.testing.assert_array_equal(value, saved[1][f"param/{name}"])


def test_an_inference_program_has_no_loss_or_optimizer(tmp_path):
    path = tmp_path / "infer.npz"
    ember.compile(nn.Sequential(nn.Linear(4, 3)), backend="reference").save(path)
    meta, entries = read_entries(path)
    train_meta, _ = read_entries(path)
    train_meta["optimizer"] = {"name": "SGD", "hyperparameters": optim.SGD().hyperparameters()}
    cases = [
        ({**meta, "optimizer": train_meta["optimizer"]}, entries, "an inference program .* optimizer null and loss"),
        ({**meta, "loss": {"name": "MSELoss"}}, entries, "an inference program .* optimizer null and loss"),
        (meta, {**entries, "state/step": np.float32(0)}, "unknown optimizer state 'step'; expected none"),
    ]
    for changed_meta, changed_entries, message in cases:
        write_entries(path, changed_meta, changed_entries)
        with pytest.raises(ember.CheckpointError, match=message):
            ember.load(path)


TRAINING_SETUPS = [
    pytest.param(nn.MSELoss(), optim.SGD(lr=0.1, momentum=0.9, nesterov=True), 2, id="mse-sgd-nesterov"),
    pytest.param(nn.MSELoss(reduction="sum"), optim.SGD(lr=0.1, momentum=0.5, dampening=0.1), 2, id="mse-sum"),
    pytest.param(nn.CrossEntropyLoss(label_smoothing=0.1), optim.AdamW(lr=0.01), 3, id="ce-smoothing-adamw"),
    pytest.param(nn.CrossEntropyLoss(reduction="sum"), optim.Adam(amsgrad=True), 3, id="ce-sum-amsgrad"),
    pytest.param(nn.BCEWithLogitsLoss(), optim.Adam(betas=(0.5, 0.9), weight_decay=0.1), 1, id="bce-adam"),
]


@pytest.mark.parametrize(("loss", "optimizer", "outputs"), TRAINING_SETUPS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_valid_checkpoint_loads_exactly(tmp_path, assert_same, loss, optimizer, outputs, dtype):
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, outputs))
    prog = ember.compile(model, loss=loss, optimizer=optimizer, dtype=dtype, seed=3, backend="reference")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 4))
    y = rng.integers(0, outputs, 6) if isinstance(loss, nn.CrossEntropyLoss) else rng.random((6, outputs))
    prog.fit(x, y, epochs=2, batch_size=4, progress=False)
    prog.save(tmp_path / "m.npz")
    loaded = ember.load(tmp_path / "m.npz")
    assert_same(loaded.parameters, prog.parameters)
    assert_same(loaded.optimizer_state, prog.optimizer_state)
    assert (loaded.optimizer, loaded.loss_info, loaded.lr) == (prog.optimizer, prog.loss_info, prog.lr)
    assert loaded.train_step(x, y) == prog.train_step(x, y)


def test_a_version_1_checkpoint_shuffles_from_its_seed(tmp_path, regression, assert_same):
    """Version 1 had no RNG state: its fit shuffles as a program just compiled with its seed."""
    prog = ember.compile(nn.Sequential(nn.Linear(4, 2)), loss=nn.MSELoss(), optimizer=optim.SGD(lr=0.1), seed=5)
    path = tmp_path / "v1.npz"
    prog.save(path)
    meta, entries = read_entries(path)
    assert meta["format"] == FORMAT
    del meta["rng"]
    write_entries(path, {**meta, "version": 1}, entries)
    loaded = ember.load(path)
    for p in (prog, loaded):
        p.fit(*regression, epochs=1, batch_size=8, progress=False)
    assert_same(loaded.parameters, prog.parameters)
    write_entries(path, {**meta, "version": 1, "rng": None}, entries)
    with pytest.raises(ember.CheckpointError, match="unknown setting 'rng'"):
        ember.load(path)


def gelu_classifier(approximate: str) -> ember.Program:
    model = nn.Sequential(nn.Linear(4, 8), nn.GELU(approximate=approximate), nn.Linear(8, 3))
    return ember.compile(model, loss=nn.CrossEntropyLoss(), optimizer=optim.SGD(lr=0.1), dtype="float64")


@pytest.fixture
def writes_version_3(monkeypatch):
    """The checkpoint module as it is once the format is version 3."""
    monkeypatch.setattr(checkpoint, "VERSION", 3)
    monkeypatch.setattr(checkpoint, "READABLE_VERSIONS", (1, 2, 3))


def test_gelu_of_a_version_2_checkpoint_is_the_tanh_form(tmp_path, writes_version_3):
    """Before version 3, op gelu was the tanh approximation (now gelu_tanh)."""
    prog = gelu_classifier("tanh")
    path = tmp_path / "v2.npz"
    prog.save(path)
    meta, entries = read_entries(path)
    for key in ("ir/predict", "ir/model"):
        text = str(entries[key])
        assert " = gelu_tanh " in text
        entries[key] = np.array(text.replace(" = gelu_tanh ", " = gelu "))  # as version 2 wrote it
    write_entries(path, {**meta, "version": 2}, entries)
    loaded = ember.load(path)
    assert " = gelu_tanh " in loaded.dump("graph")
    x = np.linspace(-3, 3, 20).reshape(5, 4)
    np.testing.assert_array_equal(loaded.predict(x), prog.predict(x))
    assert np.abs(gelu_classifier("none").predict(x) - prog.predict(x)).max() > 0


@pytest.mark.parametrize("version_3", [False, True])
def test_exact_gelu_survives_a_checkpoint(tmp_path, monkeypatch, version_3):
    """In files of version 3, and in those this ember writes while its format is still version 2."""
    if version_3:
        monkeypatch.setattr(checkpoint, "VERSION", 3)
        monkeypatch.setattr(checkpoint, "READABLE_VERSIONS", (1, 2, 3))
    prog = gelu_classifier("none")
    prog.save(tmp_path / "m.npz")
    assert read_entries(tmp_path / "m.npz")[0]["version"] == checkpoint.VERSION
    loaded = ember.load(tmp_path / "m.npz")
    assert " = gelu " in loaded.dump("graph")
    x = np.linspace(-3, 3, 20).reshape(5, 4)
    np.testing.assert_array_equal(loaded.predict(x), prog.predict(x))
