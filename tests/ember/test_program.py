"""The Program API: training, prediction, gradients, parameters, fit,
evaluate, checkpoints and dumps, checked against NumPy written here."""

import itertools

import numpy as np
import pytest

import ember
from ember import nn, optim

FEATURES, CLASSES = 4, 3  # of the `mlp` and `blobs` fixtures


def numpy_forward(params: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The `mlp` fixture in float64 NumPy: y = x @ W.T + b, W stored [out, in]."""
    p = {k: v.astype(np.float64) for k, v in params.items()}
    h = np.maximum(x @ p["0.weight"].T + p["0.bias"], 0.0)
    return h @ p["2.weight"].T + p["2.bias"]


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def regressor(dtype: str = "float32", lr: float = 0.1, seed: int = 0) -> ember.Program:
    """A single Linear(4, 2) trained with MSE and plain SGD."""
    model = nn.Sequential(nn.Linear(FEATURES, 2))
    return ember.compile(model, loss=nn.MSELoss(), optimizer=optim.SGD(lr=lr), dtype=dtype, seed=seed)


# -- train_step, predict, gradients ------------------------------------------
def test_train_step_returns_a_float_and_the_loss_decreases(classifier, blobs):
    losses = [classifier.train_step(*blobs) for _ in range(20)]
    assert all(type(loss) is float for loss in losses)
    assert losses[-1] < 0.1 * losses[0]
    assert all(b < a for a, b in itertools.pairwise(losses))


@pytest.mark.parametrize("rows", [1, 7, 10_000])
def test_predict_matches_a_numpy_forward_pass(classifier, blobs, rows):
    classifier.train_step(*blobs)  # move away from the initial values
    x = np.random.default_rng(rows).normal(size=(rows, FEATURES)).astype(np.float32)
    out = classifier.predict(x)
    assert out.shape == (rows, CLASSES)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, numpy_forward(classifier.parameters, x), rtol=1e-5, atol=1e-5)


def test_predict_accepts_lists_and_float64(classifier, blobs):
    x = blobs[0][:5]
    expected = classifier.predict(x)
    np.testing.assert_array_equal(classifier.predict(x.astype(np.float64)), expected)
    np.testing.assert_array_equal(classifier.predict(x.tolist()), expected)


def test_gradients_name_every_parameter_and_change_nothing(classifier, blobs, assert_same):
    classifier.train_step(*blobs)
    params, state = classifier.parameters, classifier.optimizer_state
    grads = classifier.gradients(*blobs)
    assert list(grads) == list(params)
    for name, g in grads.items():
        assert g.shape == params[name].shape
        assert g.dtype == np.float32
        assert np.any(g != 0), name
    assert_same(classifier.parameters, params)
    assert_same(classifier.optimizer_state, state)


def test_gradients_of_mse_match_the_formula(regression):
    x, y = (a.astype(np.float64) for a in regression)
    prog = regressor("float64")
    w, b = prog.parameters["0.weight"], prog.parameters["0.bias"]
    dpred = 2 * (x @ w.T + b - y) / y.size  # d mean((pred - y)^2) / d pred
    grads = prog.gradients(x, y)
    np.testing.assert_allclose(grads["0.weight"], dpred.T @ x, rtol=1e-12)
    np.testing.assert_allclose(grads["0.bias"], dpred.sum(axis=0), rtol=1e-12)


def test_sgd_step_subtracts_lr_times_gradient(regression):
    prog = regressor(lr=0.1)
    before, grads = prog.parameters, prog.gradients(*regression)
    prog.train_step(*regression)
    for name, value in prog.parameters.items():
        np.testing.assert_allclose(value, before[name] - 0.1 * grads[name], rtol=1e-6, atol=1e-7)


def test_lr_is_a_runtime_input(regression):
    prog = regressor(lr=0.1)
    before = prog.parameters
    prog.lr = 0.0
    prog.train_step(*regression)
    for name, value in prog.parameters.items():
        np.testing.assert_array_equal(value, before[name])
    assert prog.optimizer_state["step"] == 1
    prog.lr = 0.5
    prog.train_step(*regression)
    assert not np.array_equal(prog.parameters["0.weight"], before["0.weight"])


# -- parameters --------------------------------------------------------------
def test_parameters_and_state_are_copies(classifier, blobs):
    classifier.train_step(*blobs)
    params, state = classifier.parameters, classifier.optimizer_state
    for value in (*params.values(), *state.values()):
        value[...] = 99.0
    assert not any(np.any(v == 99.0) for v in classifier.parameters.values())
    assert not any(np.any(v == 99.0) for v in classifier.optimizer_state.values())


def test_parameter_names_shapes_and_dtypes(classifier):
    params = classifier.parameters
    assert {k: v.shape for k, v in params.items()} == {
        "0.weight": (8, FEATURES),
        "0.bias": (8,),
        "2.weight": (CLASSES, 8),
        "2.bias": (CLASSES,),
    }
    assert all(v.dtype == np.float32 for v in params.values())


def test_set_parameters_loads_values(classifier, mlp, blobs, assert_same):
    other = ember.compile(mlp, loss=nn.CrossEntropyLoss(), optimizer=optim.Adam(), seed=7)
    classifier.set_parameters(other.parameters)
    assert_same(classifier.parameters, other.parameters)
    np.testing.assert_array_equal(classifier.predict(blobs[0]), other.predict(blobs[0]))


def test_set_parameters_converts_and_accepts_subsets(classifier):
    bias = [1, 2, 3]  # ints, as a list
    classifier.set_parameters({"2.bias": bias}, strict=False)
    np.testing.assert_array_equal(classifier.parameters["2.bias"], np.array(bias, np.float32))


def test_inference_program_predicts_like_the_trained_one(mlp, blobs):
    trained = ember.compile(mlp, loss=nn.CrossEntropyLoss(), optimizer=optim.Adam(lr=0.05))
    for _ in range(5):
        trained.train_step(*blobs)
    infer = ember.compile(mlp)
    infer.set_parameters(trained.parameters)
    np.testing.assert_array_equal(infer.predict(blobs[0]), trained.predict(blobs[0]))


# -- fit ---------------------------------------------------------------------
def test_fit_history_with_validation(classifier, blobs):
    x, y = blobs
    history = classifier.fit(x[:40], y[:40], epochs=3, validation_data=(x[40:], y[40:]), progress=False)
    assert set(history) == {"loss", "lr", "seconds", "val_loss", "val_accuracy"}
    assert all(len(v) == 3 and all(type(f) is float for f in v) for v in history.values())
    assert all(s > 0 for s in history["seconds"])
    assert history["loss"][-1] < history["loss"][0]
    assert all(0.0 <= a <= 1.0 for a in history["val_accuracy"])
    assert history["val_loss"][-1] == classifier.evaluate(x[40:], y[40:])["loss"]
    assert history["val_accuracy"][-1] == classifier.evaluate(x[40:], y[40:])["accuracy"]


def test_fit_history_without_validation(classifier, blobs):
    history = classifier.fit(*blobs, epochs=2, progress=False)
    assert set(history) == {"loss", "lr", "seconds"}
    assert len(history["loss"]) == 2


def test_fit_history_for_a_regression_has_no_accuracy(regression):
    history = regressor().fit(*regression, epochs=2, validation_data=regression, progress=False)
    assert set(history) == {"loss", "lr", "seconds", "val_loss"}


def test_fit_zero_epochs_changes_nothing(classifier, blobs, assert_same):
    before = classifier.parameters
    history = classifier.fit(*blobs, epochs=0, progress=False)
    assert history == {"loss": [], "seconds": []}
    assert_same(classifier.parameters, before)


@pytest.mark.parametrize(
    ("drop_last", "slices"),
    [(False, [(0, 3), (3, 6), (6, 9), (9, 10)]), (True, [(0, 3), (3, 6), (6, 9)])],
)
def test_fit_in_order_equals_train_steps(regression, assert_same, drop_last, slices):
    """10 rows in batches of 3: the last batch has 1 row, or is dropped."""
    x, y = regression[0][:10], regression[1][:10]
    fitted, stepped = regressor(), regressor()
    history = fitted.fit(x, y, epochs=1, batch_size=3, shuffle=False, drop_last=drop_last, progress=False)
    losses = [stepped.train_step(x[a:b], y[a:b]) for a, b in slices]
    assert_same(fitted.parameters, stepped.parameters)
    assert fitted.optimizer_state["step"] == len(slices)
    rows = [b - a for a, b in slices]
    assert history["loss"][0] == pytest.approx(np.average(losses, weights=rows), rel=1e-6)


@pytest.mark.parametrize(
    ("batch_size", "drop_last", "steps"), [(16, False, 4), (16, True, 3), (50, True, 1), (64, True, 0)]
)
def test_fit_takes_one_step_per_batch(regression, batch_size, drop_last, steps):
    prog = regressor()
    prog.fit(*regression, epochs=2, batch_size=batch_size, drop_last=drop_last, progress=False)
    assert prog.optimizer_state["step"] == 2 * steps


def test_fit_uses_the_compiled_batch_size(mlp, blobs):
    prog = ember.compile(mlp, loss=nn.CrossEntropyLoss(), optimizer=optim.SGD(lr=0.1), batch_size=25)
    prog.fit(*blobs, epochs=1, progress=False)  # 60 rows: 25 + 25 + 10
    assert prog.optimizer_state["step"] == 3


def test_fit_shows_progress_only_when_asked(classifier, blobs, capsys):
    classifier.fit(*blobs, epochs=1, progress=False)
    assert capsys.readouterr().err == ""
    classifier.fit(*blobs, epochs=2)
    assert "epoch 2/2" in capsys.readouterr().err


# -- determinism -------------------------------------------------------------
def test_same_seed_gives_identical_training_runs(make_mlp, blobs, assert_same):
    def run():
        prog = ember.compile(make_mlp(), loss=nn.CrossEntropyLoss(), optimizer=optim.Adam(lr=0.01), seed=3)
        history = prog.fit(*blobs, epochs=3, batch_size=7, progress=False)
        return prog, history

    (a, history_a), (b, history_b) = run(), run()
    assert history_a["loss"] == history_b["loss"]
    assert_same(a.parameters, b.parameters)
    assert_same(a.optimizer_state, b.optimizer_state)


def test_different_seeds_give_different_initial_weights(mlp):
    a, b = ember.compile(mlp, seed=0).parameters, ember.compile(mlp, seed=1).parameters
    for name in a:
        assert not np.array_equal(a[name], b[name]), name


def test_shuffling_depends_on_the_seed(regression):
    a, b = regressor(seed=0), regressor(seed=1)
    b.set_parameters(a.parameters)
    a.fit(*regression, epochs=1, batch_size=8, progress=False)
    b.fit(*regression, epochs=1, batch_size=8, progress=False)
    assert not np.array_equal(a.parameters["0.weight"], b.parameters["0.weight"])


# -- evaluate ----------------------------------------------------------------
def test_evaluate_cross_entropy(classifier, blobs):
    """10 000 rows: more than one evaluation chunk."""
    classifier.train_step(*blobs)
    rng = np.random.default_rng(2)
    x = rng.normal(0, 3, (10_000, FEATURES)).astype(np.float32)
    y = rng.integers(0, CLASSES, 10_000)
    metrics = classifier.evaluate(x, y)
    logits = numpy_forward(classifier.parameters, x)
    assert set(metrics) == {"loss", "accuracy"}
    assert metrics["loss"] == pytest.approx(-log_softmax(logits)[np.arange(len(y)), y].mean(), rel=1e-5)
    expected_accuracy = np.mean(classifier.predict(x).argmax(axis=1) == y)
    assert 0.1 < expected_accuracy < 0.9
    assert metrics["accuracy"] == pytest.approx(expected_accuracy, abs=1e-12)


def test_evaluate_with_sum_reduction_adds_every_chunk(mlp):
    prog = ember.compile(mlp, loss=nn.CrossEntropyLoss(reduction="sum"), optimizer=optim.SGD(lr=0.01))
    rng = np.random.default_rng(3)
    x = rng.normal(size=(10_000, FEATURES)).astype(np.float32)
    y = rng.integers(0, CLASSES, 10_000)
    logits = numpy_forward(prog.parameters, x)
    expected = -log_softmax(logits)[np.arange(len(y)), y].sum()
    assert prog.evaluate(x, y)["loss"] == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("column", [False, True])
def test_evaluate_bce_with_logits(column):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(200, FEATURES)).astype(np.float32)
    y = (rng.random(200) < 0.5).astype(np.float32)
    prog = ember.compile(nn.Sequential(nn.Linear(FEATURES, 1)), loss=nn.BCEWithLogitsLoss(), optimizer=optim.SGD())
    metrics = prog.evaluate(x, y[:, None] if column else y)
    z = prog.predict(x)[:, 0].astype(np.float64)
    expected_loss = np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z))))
    assert metrics["loss"] == pytest.approx(expected_loss, rel=1e-5)
    assert metrics["accuracy"] == pytest.approx(np.mean((z > 0) == (y > 0.5)), abs=1e-12)


def test_evaluate_mse_has_no_accuracy(regression):
    prog = regressor()
    x, y = regression
    metrics = prog.evaluate(x, y)
    w, b = prog.parameters["0.weight"], prog.parameters["0.bias"]
    assert set(metrics) == {"loss"}
    assert metrics["loss"] == pytest.approx(np.mean((x @ w.T + b - y) ** 2), rel=1e-5)


# -- checkpoints -------------------------------------------------------------
def test_save_load_round_trip(classifier, blobs, tmp_path, assert_same):
    for _ in range(3):
        classifier.train_step(*blobs)
    classifier.lr = 0.01
    path = tmp_path / "model.npz"
    classifier.save(path)
    loaded = ember.load(path)
    assert_same(loaded.parameters, classifier.parameters)
    assert_same(loaded.optimizer_state, classifier.optimizer_state)
    assert loaded.lr == 0.01
    assert loaded.optimizer == classifier.optimizer
    assert (loaded.dtype, loaded.batch_size, loaded.seed, loaded.backend) == (
        ember.ir.DType.float32,
        16,
        0,
        ember.program.DEFAULT_BACKEND,
    )
    np.testing.assert_array_equal(loaded.predict(blobs[0]), classifier.predict(blobs[0]))


def test_training_continues_identically_after_load(classifier, blobs, tmp_path, assert_same):
    x, y = blobs
    classifier.train_step(x, y)
    classifier.save(tmp_path / "model.npz")
    loaded = ember.load(tmp_path / "model.npz")
    for start in range(0, 60, 20):
        assert loaded.train_step(x[start : start + 20], y[start : start + 20]) == classifier.train_step(
            x[start : start + 20], y[start : start + 20]
        )
    assert_same(loaded.parameters, classifier.parameters)
    assert_same(loaded.optimizer_state, classifier.optimizer_state)


def test_save_writes_exactly_the_given_path(classifier, tmp_path):
    path = tmp_path / "weights.ckpt"
    classifier.save(str(path))
    assert [p.name for p in tmp_path.iterdir()] == ["weights.ckpt"]
    assert ember.load(str(path)).is_training


def test_inference_and_float64_programs_round_trip(mlp, blobs, tmp_path, assert_same):
    infer = ember.compile(mlp, dtype="float64", seed=5)
    infer.save(tmp_path / "infer.npz")
    loaded = ember.load(tmp_path / "infer.npz")
    assert not loaded.is_training
    assert loaded.dtype == ember.ir.DType.float64
    assert_same(loaded.parameters, infer.parameters)
    np.testing.assert_array_equal(loaded.predict(blobs[0]), infer.predict(blobs[0]))


# -- program kinds -----------------------------------------------------------
def test_inference_only_program(mlp, blobs):
    infer = ember.compile(mlp)
    assert not infer.is_training
    assert infer.optimizer_state == {}
    assert infer.stages == ["graph", "simplified", *ember.STAGES[len(GRAPH_STAGES) :]]
    assert infer.dump("fused").startswith("fused predict: ")
    assert infer.predict(blobs[0]).shape == (60, CLASSES)
    for call in (infer.train_step, infer.gradients, infer.evaluate, infer.fit):
        with pytest.raises(ember.ConfigError, match=f"{call.__name__} needs a program compiled with loss="):
            call(*blobs)


def test_float64_program(regression):
    x, y = regression
    prog = regressor("float64")
    assert all(v.dtype == np.float64 for v in prog.parameters.values())
    assert all(v.dtype == np.float64 for v in prog.gradients(x, y).values())
    out = prog.predict(x)  # float32 input is converted up
    assert out.dtype == np.float64
    w, b = prog.parameters["0.weight"], prog.parameters["0.bias"]
    np.testing.assert_allclose(out, x.astype(np.float64) @ w.T + b, rtol=1e-13)
    losses = [prog.train_step(x, y) for _ in range(10)]
    assert losses[-1] < losses[0]


# -- dumps and repr ----------------------------------------------------------
GRAPH_STAGES = ("graph", "autodiff", "train", "simplified")


def test_dump_every_available_stage(classifier):
    assert list(classifier.stages) == list(ember.STAGES)
    assert classifier.dump() == classifier.dump("graph")
    for stage in GRAPH_STAGES:
        text = classifier.dump(stage)
        assert text.startswith("graph ")
        assert ember.ir.print_graph(ember.ir.parse(text)) == text, stage
    assert classifier.dump("fused").startswith("fused train_step: ")
    assert classifier.dump("kernels").startswith("program train_step(B)")
    assert "define void @train_step(ptr" in classifier.dump("llvm").replace('"', "")
    assert "train_step" in classifier.dump("asm")


def test_native_stages_need_the_native_backend(mlp):
    prog = ember.compile(mlp, loss=nn.CrossEntropyLoss(), optimizer=optim.Adam(), backend="reference")
    assert prog.stages == list(GRAPH_STAGES)
    for stage in ember.STAGES[len(GRAPH_STAGES) :]:
        with pytest.raises(ember.ConfigError, match=f"stage '{stage}'.*native backend") as info:
            prog.dump(stage)
        assert "available stages: graph, autodiff, train, simplified" in str(info.value)


def test_dump_stages_contain_their_work(classifier):
    assert "adam" not in classifier.dump("graph").lower()
    assert "exp_avg" in classifier.dump("train")
    assert "exp_avg" not in classifier.dump("autodiff")
    assert "0.weight.grad" in classifier.dump("autodiff")


def test_repr(classifier, mlp):
    text = repr(classifier)
    assert text.startswith("<ember.Program train with Adam(lr=0.05")
    assert "4 params (67 values)" in text
    assert f"{ember.program.DEFAULT_BACKEND} backend" in text
    assert repr(ember.compile(mlp)).startswith("<ember.Program inference: 4 params")
