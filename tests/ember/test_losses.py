"""Every loss against PyTorch's: value and gradients in float64, on both
backends, for each reduction and option."""

from __future__ import annotations

import numpy as np
import pytest

import ember
from ember import nn, optim
from ember.ir import ConfigError, EmberError

torch = pytest.importorskip("torch")

ROWS, FEATURES, CLASSES = 7, 4, 3
WEIGHT = [0.5, 2.0, 1.5]


def _data(kind: str, rng: np.random.Generator) -> np.ndarray:
    """Targets of one kind for ROWS rows and CLASSES outputs."""
    if kind == "labels":
        return rng.integers(0, CLASSES, ROWS)
    if kind == "ignored":  # labels, two of them ignored (-100)
        y = rng.integers(0, CLASSES, ROWS)
        y[[1, 4]] = -100
        return y
    if kind == "ignored1":
        return np.array([0, 1, 2, 1, 0, 2, 1])
    if kind == "probabilities":
        p = rng.random((ROWS, CLASSES)) + 0.1
        return p / p.sum(axis=1, keepdims=True)
    if kind == "binary":
        return rng.integers(0, 2, (ROWS, CLASSES)).astype(np.float64)
    if kind == "log_probabilities":
        p = rng.random((ROWS, CLASSES)) + 0.1
        return np.log(p / p.sum(axis=1, keepdims=True))
    return rng.normal(size=(ROWS, CLASSES))


# (id, ember loss, torch loss, head after the Linear layer, target kind)
CASES = [
    ("l1", lambda r: nn.L1Loss(r), lambda r: torch.nn.L1Loss(reduction=r), None, "real"),
    ("mse", lambda r: nn.MSELoss(r), lambda r: torch.nn.MSELoss(reduction=r), None, "real"),
    ("smooth_l1", lambda r: nn.SmoothL1Loss(r, beta=0.7), lambda r: torch.nn.SmoothL1Loss(reduction=r, beta=0.7),
     None, "real"),
    ("smooth_l1_0", lambda r: nn.SmoothL1Loss(r, beta=0.0), lambda r: torch.nn.SmoothL1Loss(reduction=r, beta=0.0),
     None, "real"),
    ("huber", lambda r: nn.HuberLoss(r, delta=0.6), lambda r: torch.nn.HuberLoss(reduction=r, delta=0.6),
     None, "real"),
    ("nll", lambda r: nn.NLLLoss(reduction=r), lambda r: torch.nn.NLLLoss(reduction=r), "log_softmax", "labels"),
    ("nll_weight_ignore", lambda r: nn.NLLLoss(WEIGHT, reduction=r),
     lambda r: torch.nn.NLLLoss(torch.tensor(WEIGHT, dtype=torch.float64), reduction=r), "log_softmax", "ignored"),
    ("nll_ignore_1", lambda r: nn.NLLLoss(ignore_index=1, reduction=r),
     lambda r: torch.nn.NLLLoss(ignore_index=1, reduction=r), "log_softmax", "ignored1"),
    ("ce", lambda r: nn.CrossEntropyLoss(reduction=r), lambda r: torch.nn.CrossEntropyLoss(reduction=r),
     None, "labels"),
    ("ce_ignore_smooth", lambda r: nn.CrossEntropyLoss(reduction=r, label_smoothing=0.2),
     lambda r: torch.nn.CrossEntropyLoss(reduction=r, label_smoothing=0.2), None, "ignored"),
    ("ce_weight_ignore_smooth", lambda r: nn.CrossEntropyLoss(WEIGHT, reduction=r, label_smoothing=0.3),
     lambda r: torch.nn.CrossEntropyLoss(torch.tensor(WEIGHT, dtype=torch.float64), reduction=r,
                                         label_smoothing=0.3), None, "ignored"),
    ("ce_ignore_1_weight", lambda r: nn.CrossEntropyLoss(WEIGHT, ignore_index=1, reduction=r, label_smoothing=0.1),
     lambda r: torch.nn.CrossEntropyLoss(torch.tensor(WEIGHT, dtype=torch.float64), ignore_index=1, reduction=r,
                                         label_smoothing=0.1), None, "ignored1"),
    ("ce_probabilities", lambda r: nn.CrossEntropyLoss(WEIGHT, reduction=r, label_smoothing=0.1, probabilities=True),
     lambda r: torch.nn.CrossEntropyLoss(torch.tensor(WEIGHT, dtype=torch.float64), reduction=r,
                                         label_smoothing=0.1), None, "probabilities"),
    ("bce", lambda r: nn.BCELoss(WEIGHT, reduction=r),
     lambda r: torch.nn.BCELoss(torch.tensor(WEIGHT, dtype=torch.float64), reduction=r), "sigmoid", "binary"),
    ("bce_logits", lambda r: nn.BCEWithLogitsLoss(reduction=r), lambda r: torch.nn.BCEWithLogitsLoss(reduction=r),
     None, "binary"),
    ("bce_logits_pos_weight", lambda r: nn.BCEWithLogitsLoss(WEIGHT[::-1], reduction=r, pos_weight=WEIGHT),
     lambda r: torch.nn.BCEWithLogitsLoss(torch.tensor(WEIGHT[::-1], dtype=torch.float64), reduction=r,
                                          pos_weight=torch.tensor(WEIGHT, dtype=torch.float64)), None, "probabilities"),
    ("kl_div", lambda r: nn.KLDivLoss(r), lambda r: torch.nn.KLDivLoss(reduction=r), "log_softmax", "probabilities"),
    ("kl_div_log_target", lambda r: nn.KLDivLoss(r, log_target=True),
     lambda r: torch.nn.KLDivLoss(reduction=r, log_target=True), "log_softmax", "log_probabilities"),
]  # fmt: skip
HEADS = {None: [], "log_softmax": [nn.LogSoftmax(dim=1)], "sigmoid": [nn.Sigmoid()]}
TORCH_HEADS = {None: [], "log_softmax": [torch.nn.LogSoftmax(dim=1)], "sigmoid": [torch.nn.Sigmoid()]}


def _reductions(case_id: str) -> list[str]:
    return ["mean", "sum", "batchmean"] if case_id.startswith("kl_div") else ["mean", "sum"]


PARAMS = [
    pytest.param(case, reduction, backend, id=f"{case[0]}-{reduction}-{backend}")
    for case in CASES
    for reduction in _reductions(case[0])
    for backend in ("native", "reference")
]


def _torch_loss_and_grads(params, head, torch_loss, x, y):
    model = torch.nn.Sequential(torch.nn.Linear(FEATURES, CLASSES), *TORCH_HEADS[head]).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.from_numpy(params["0.weight"]))
        model[0].bias.copy_(torch.from_numpy(params["0.bias"]))
    loss = torch_loss(model(torch.from_numpy(x)), torch.from_numpy(y))
    loss.backward()
    return loss.item(), {"0.weight": model[0].weight.grad.numpy(), "0.bias": model[0].bias.grad.numpy()}


def _close(a, b) -> None:
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize(("case", "reduction", "backend"), PARAMS)
def test_loss_value_and_gradients_match_torch(case, reduction: str, backend: str) -> None:
    _, ours, theirs, head, kind = case
    rng = np.random.default_rng(3)
    x = rng.normal(size=(ROWS, FEATURES))
    y = _data(kind, rng)
    model = nn.Sequential(nn.Linear(FEATURES, CLASSES), *HEADS[head])
    prog = ember.compile(model, loss=ours(reduction), optimizer=optim.SGD(lr=0.1), dtype="float64", backend=backend)
    expected, grads = _torch_loss_and_grads(prog.parameters, head, theirs(reduction), x, y)
    _close(prog.evaluate(x, y)["loss"], expected)
    got = prog.gradients(x, y)
    for name, grad in grads.items():
        _close(got[name], grad)
    _close(prog.train_step(x, y), expected)


class PerSampleMean(nn.Loss):
    """A custom loss built on a built-in one's unreduced losses."""

    classification = True

    def __init__(self, inner: nn.Loss) -> None:
        super().__init__()
        self.inner = inner
        self.ignore_index = getattr(inner, "ignore_index", None)  # labels the input check lets through

    def target_type(self, prediction):
        return self.inner.target_type(prediction)

    def forward(self, prediction, target):
        return self.inner(prediction, target)


@pytest.mark.parametrize("case", [c for c in CASES if not c[0].startswith("kl")], ids=lambda c: c[0])
def test_reduction_none_gives_per_sample_losses(case) -> None:
    """reduction="none" inside a custom loss: ember averages what it returns,
    PyTorch's unreduced losses averaged."""
    _, ours, theirs, head, kind = case
    rng = np.random.default_rng(5)
    x = rng.normal(size=(ROWS, FEATURES))
    y = _data(kind, rng)
    model = nn.Sequential(nn.Linear(FEATURES, CLASSES), *HEADS[head])
    prog = ember.compile(model, loss=PerSampleMean(ours("none")), optimizer=optim.SGD(), dtype="float64")
    expected, grads = _torch_loss_and_grads(prog.parameters, head, lambda p, t: theirs("none")(p, t).mean(), x, y)
    _close(prog.evaluate(x, y)["loss"], expected)
    got = prog.gradients(x, y)
    for name, grad in grads.items():
        _close(got[name], grad)


def test_reduction_none_cannot_train_directly() -> None:
    with pytest.raises(EmberError, match="reduction='none'"):
        ember.compile(nn.Linear(4, 3), loss=nn.MSELoss("none"), optimizer=optim.SGD())


@pytest.mark.parametrize(
    "make",
    [
        lambda: nn.MSELoss("avg"),
        lambda: nn.KLDivLoss("max"),
        lambda: nn.CrossEntropyLoss(label_smoothing=1.5),
        lambda: nn.CrossEntropyLoss(ignore_index=1.5),
        lambda: nn.NLLLoss(weight=[[1.0]]),
        lambda: nn.HuberLoss(delta=0),
        lambda: nn.SmoothL1Loss(beta=-1),
        lambda: nn.BCEWithLogitsLoss(pos_weight=[np.nan]),
    ],
)
def test_bad_loss_options_are_config_errors(make) -> None:
    with pytest.raises(ConfigError):
        make()


def test_class_weight_of_the_wrong_length_names_the_classes() -> None:
    with pytest.raises(EmberError, match="weight has 2 values but the output has 3 classes"):
        ember.compile(nn.Linear(4, 3), loss=nn.CrossEntropyLoss(weight=[1, 2]), optimizer=optim.SGD())


def test_ignored_labels_pass_the_label_check_and_others_do_not() -> None:
    prog = ember.compile(nn.Linear(4, 3), loss=nn.CrossEntropyLoss(ignore_index=-1), optimizer=optim.SGD())
    x = np.ones((3, 4), np.float32)
    prog.evaluate(x, np.array([0, -1, 2]))
    with pytest.raises(EmberError, match=r"y\[1\] = -2 is not a class index"):
        prog.evaluate(x, np.array([0, -2, 2]))


def test_new_losses_survive_save_and_load(tmp_path) -> None:
    loss = nn.CrossEntropyLoss(WEIGHT, ignore_index=1, label_smoothing=0.1)
    prog = ember.compile(nn.Linear(4, 3), loss=loss, optimizer=optim.SGD(), dtype="float64")
    prog.save(tmp_path / "m.npz")
    back = ember.load(tmp_path / "m.npz")
    x, y = np.random.default_rng(0).normal(size=(5, 4)), np.array([0, 1, 2, 1, 0])
    assert back.loss_info == prog.loss_info
    assert back.evaluate(x, y) == prog.evaluate(x, y)


def test_kl_batchmean_adds_up_across_evaluate_chunks(monkeypatch) -> None:
    rng = np.random.default_rng(10)
    x, y = rng.normal(size=(20, FEATURES)), _data("probabilities", rng)[np.arange(20) % ROWS]
    model = nn.Sequential(nn.Linear(FEATURES, CLASSES), nn.LogSoftmax(dim=1))
    prog = ember.compile(model, loss=nn.KLDivLoss("batchmean"), optimizer=optim.SGD(), dtype="float64")
    whole = prog.evaluate(x, y)["loss"]
    monkeypatch.setattr(ember.program, "EVAL_CHUNK_ROWS", 6)
    assert prog.evaluate(x, y)["loss"] == pytest.approx(whole, rel=1e-12)


@pytest.mark.parametrize("weight", [None, WEIGHT])
def test_weighted_means_add_up_across_evaluate_chunks(monkeypatch, weight) -> None:
    """A class-weighted or ignoring mean over a large data set is the mean
    of the whole, not of the chunks' means."""
    rng = np.random.default_rng(9)
    x = rng.normal(size=(40, FEATURES))
    y = np.where(np.arange(40) < 30, -100, rng.integers(0, CLASSES, 40))  # ignored labels in the first chunks
    prog = ember.compile(nn.Linear(FEATURES, CLASSES), loss=nn.CrossEntropyLoss(weight), optimizer=optim.SGD(),
                         dtype="float64")  # fmt: skip
    whole = prog.evaluate(x, y)["loss"]
    monkeypatch.setattr(ember.program, "EVAL_CHUNK_ROWS", 8)
    assert prog.evaluate(x, y)["loss"] == pytest.approx(whole, rel=1e-12)
