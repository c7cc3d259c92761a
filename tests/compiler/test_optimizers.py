"""Optimizer lowering: SGD, Adam and AdamW trajectories match PyTorch's update
formulas, written out below in NumPy after torch.optim's single-tensor code
paths (`_single_tensor_sgd`, `_single_tensor_adam`)."""

import math

import numpy as np
import pytest

import ember
from ember import nn, optim

STEPS = 6
TOLERANCE = 1e-10


def sgd(param, grad, state, *, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    """torch.optim.SGD on one param; `state` holds its momentum_buffer."""
    if weight_decay != 0:
        grad = grad + weight_decay * param
    if momentum != 0:
        buf = state.get("momentum_buffer")  # None before the first step: it starts as the gradient itself
        buf = grad.copy() if buf is None else buf * momentum + (1 - dampening) * grad
        state["momentum_buffer"] = buf
        grad = grad + momentum * buf if nesterov else buf
    return param - lr * grad


def adam(param, grad, state, *, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):
    """torch.optim.Adam on one param; `state` holds step, exp_avg, exp_avg_sq and max_exp_avg_sq."""
    beta1, beta2 = betas
    state["step"] = step = state.get("step", 0) + 1
    if weight_decay != 0:
        grad = grad + weight_decay * param
    exp_avg = state.get("exp_avg", np.zeros_like(param))
    exp_avg_sq = state.get("exp_avg_sq", np.zeros_like(param))
    exp_avg = state["exp_avg"] = exp_avg + (1 - beta1) * (grad - exp_avg)  # exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq = state["exp_avg_sq"] = exp_avg_sq * beta2 + (1 - beta2) * grad * grad
    bias_correction1 = 1 - beta1**step
    bias_correction2 = 1 - beta2**step
    step_size = lr / bias_correction1
    bias_correction2_sqrt = math.sqrt(bias_correction2)
    if amsgrad:
        max_exp_avg_sq = state["max_exp_avg_sq"] = np.maximum(state.get("max_exp_avg_sq", 0.0), exp_avg_sq)
        denom = np.sqrt(max_exp_avg_sq) / bias_correction2_sqrt + eps
    else:
        denom = np.sqrt(exp_avg_sq) / bias_correction2_sqrt + eps
    return param - step_size * (exp_avg / denom)  # param.addcdiv_(exp_avg, denom, value=-step_size)


def adamw(param, grad, state, *, lr, weight_decay=1e-2, **adam_options):
    """torch.optim.AdamW on one param: decay the param, then an Adam step without L2 decay."""
    param = param * (1 - lr * weight_decay)
    return adam(param, grad, state, lr=lr, **adam_options)


CASES = [
    pytest.param(optim.SGD, sgd, {"lr": 0.1}, id="sgd"),
    pytest.param(optim.SGD, sgd, {"lr": 0.1, "momentum": 0.9}, id="sgd-momentum"),
    pytest.param(optim.SGD, sgd, {"lr": 0.1, "momentum": 0.9, "dampening": 0.3}, id="sgd-dampening"),
    pytest.param(optim.SGD, sgd, {"lr": 0.1, "momentum": 0.8, "nesterov": True}, id="sgd-nesterov"),
    pytest.param(optim.SGD, sgd, {"lr": 0.1, "weight_decay": 0.05}, id="sgd-weight-decay"),
    pytest.param(
        optim.SGD, sgd, {"lr": 0.05, "momentum": 0.7, "dampening": 0.2, "weight_decay": 0.1}, id="sgd-everything"
    ),
    pytest.param(optim.Adam, adam, {"lr": 0.01}, id="adam"),
    pytest.param(optim.Adam, adam, {"lr": 0.02, "betas": (0.8, 0.95), "eps": 1e-6}, id="adam-betas-eps"),
    pytest.param(optim.Adam, adam, {"lr": 0.01, "weight_decay": 0.1}, id="adam-weight-decay"),
    pytest.param(optim.Adam, adam, {"lr": 0.01, "betas": (0.9, 0.6), "amsgrad": True}, id="adam-amsgrad"),
    pytest.param(
        optim.Adam, adam, {"lr": 0.01, "betas": (0.9, 0.6), "weight_decay": 0.1, "amsgrad": True}, id="adam-ams-wd"
    ),
    pytest.param(optim.AdamW, adamw, {"lr": 0.01}, id="adamw"),
    pytest.param(optim.AdamW, adamw, {"lr": 0.02, "weight_decay": 0.3, "betas": (0.85, 0.99)}, id="adamw-decay"),
    pytest.param(
        optim.AdamW, adamw, {"lr": 0.01, "betas": (0.9, 0.6), "weight_decay": 0.1, "amsgrad": True}, id="adamw-amsgrad"
    ),
]


def compile_mlp(optimizer):
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))
    return ember.compile(model, loss=nn.MSELoss(), optimizer=optimizer, dtype="float64", backend="reference")


def shrinking_batches(make_batch, steps=STEPS):
    """Batches whose inputs shrink step by step, so gradients shrink too and
    AMSGrad's running maximum differs from the second moment."""
    batches = [make_batch(nn.MSELoss(), 4, 3) for _ in range(steps)]
    return [(x * 3.0 / step, y) for step, (x, y) in enumerate(batches, start=1)]


def check_trajectory(prog, reference, hyperparameters, batches, lrs):
    """Step `prog` and `reference` side by side from the same parameters; after
    every step compare parameters and all optimizer state, by name."""
    params = prog.parameters
    states = {name: {} for name in params}
    for step, ((x, y), lr) in enumerate(zip(batches, lrs, strict=True), start=1):
        prog.lr = lr
        grads = prog.gradients(x, y)
        options = {**hyperparameters, "lr": lr}
        params = {name: reference(params[name], grads[name], states[name], **options) for name in params}
        prog.train_step(x, y)

        got_params, got_state = prog.parameters, prog.optimizer_state
        assert list(got_params) == list(params)
        for name, value in params.items():
            np.testing.assert_allclose(got_params[name], value, rtol=0, atol=TOLERANCE, err_msg=f"{name} @ {step}")
        expected_state = {f"{name}.{slot}": v for name, s in states.items() for slot, v in s.items() if slot != "step"}
        assert set(got_state) == {"step", *expected_state}
        assert got_state["step"] == step
        for key, value in expected_state.items():
            np.testing.assert_allclose(got_state[key], value, rtol=0, atol=TOLERANCE, err_msg=f"{key} @ {step}")


@pytest.mark.parametrize(("optimizer", "reference", "hyperparameters"), CASES)
def test_trajectory_matches_pytorch_formulas(optimizer, reference, hyperparameters, make_batch):
    prog = compile_mlp(optimizer(**hyperparameters))
    lr = hyperparameters["lr"]
    check_trajectory(prog, reference, hyperparameters, shrinking_batches(make_batch), [lr] * STEPS)


def test_amsgrad_cases_exercise_the_running_maximum(make_batch):
    """Guards the amsgrad cases above: with these batches AMSGrad's state
    and trajectory really differ from plain Adam's."""
    batches = shrinking_batches(make_batch)
    runs = {}
    for amsgrad in (False, True):
        prog = compile_mlp(optim.Adam(lr=0.01, betas=(0.9, 0.6), amsgrad=amsgrad))
        for x, y in batches:
            prog.train_step(x, y)
        runs[amsgrad] = prog
    state = runs[True].optimizer_state
    assert not np.allclose(state["0.weight.max_exp_avg_sq"], state["0.weight.exp_avg_sq"])
    assert not np.allclose(runs[True].parameters["0.weight"], runs[False].parameters["0.weight"])


@pytest.mark.parametrize(
    ("optimizer", "reference", "hyperparameters"),
    [
        pytest.param(optim.SGD, sgd, {"lr": 0.1, "momentum": 0.9}, id="sgd-momentum"),
        pytest.param(optim.Adam, adam, {"lr": 0.01}, id="adam"),
        pytest.param(optim.AdamW, adamw, {"lr": 0.01, "weight_decay": 0.2}, id="adamw"),
    ],
)
def test_changing_lr_between_steps_takes_effect_without_recompiling(optimizer, reference, hyperparameters, make_batch):
    prog = compile_mlp(optimizer(**hyperparameters))
    assert prog.lr == hyperparameters["lr"]
    compile_times = prog.pass_seconds
    lrs = [0.1, 0.1, 0.01, 0.0, 0.05, 0.2]
    check_trajectory(prog, reference, hyperparameters, shrinking_batches(make_batch), lrs)
    assert prog.pass_seconds == compile_times  # no pass ran again


def test_zero_lr_leaves_parameters_unchanged(make_batch):
    prog = compile_mlp(optim.AdamW(lr=0.1, weight_decay=0.5))
    before = prog.parameters
    prog.lr = 0.0
    prog.train_step(*make_batch(nn.MSELoss(), 4, 3))
    for name, value in prog.parameters.items():
        np.testing.assert_array_equal(value, before[name])
    assert prog.optimizer_state["step"] == 1


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: optim.SGD(lr=-0.1), id="sgd-negative-lr"),
        pytest.param(lambda: optim.SGD(lr=0.1, momentum=-0.5), id="sgd-negative-momentum"),
        pytest.param(lambda: optim.SGD(lr=0.1, weight_decay=-1.0), id="sgd-negative-weight-decay"),
        pytest.param(lambda: optim.SGD(lr=0.1, nesterov=True), id="nesterov-without-momentum"),
        pytest.param(lambda: optim.SGD(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), id="nesterov-dampening"),
        pytest.param(lambda: optim.Adam(lr=-1e-3), id="adam-negative-lr"),
        pytest.param(lambda: optim.Adam(betas=(1.0, 0.999)), id="adam-beta1-one"),
        pytest.param(lambda: optim.Adam(betas=(0.9, 1.0)), id="adam-beta2-one"),
        pytest.param(lambda: optim.Adam(betas=(-0.1, 0.999)), id="adam-negative-beta"),
        pytest.param(lambda: optim.Adam(betas=(0.9,)), id="adam-one-beta"),
        pytest.param(lambda: optim.Adam(eps=-1e-8), id="adam-negative-eps"),
        pytest.param(lambda: optim.Adam(weight_decay=-0.1), id="adam-negative-weight-decay"),
        pytest.param(lambda: optim.AdamW(lr=-1.0), id="adamw-negative-lr"),
        pytest.param(lambda: optim.AdamW(betas=(0.9, 1.5)), id="adamw-beta2-above-one"),
    ],
)
def test_invalid_hyperparameters_raise_config_error(make):
    with pytest.raises(ember.ConfigError):
        make()


@pytest.mark.parametrize("lr", [-0.1, float("nan"), float("inf"), "0.1"])
def test_invalid_runtime_lr_raises_config_error(lr):
    prog = compile_mlp(optim.SGD(lr=0.1))
    with pytest.raises(ember.ConfigError):
        prog.lr = lr
    assert prog.lr == 0.1


def test_hyperparameter_defaults_are_pytorchs():
    assert optim.SGD() == optim.SGD(lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False)
    assert optim.Adam() == optim.Adam(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False)
    assert optim.AdamW().weight_decay == 1e-2


@pytest.mark.parametrize(
    ("optimizer", "slots"),
    [
        (optim.SGD(lr=0.1), []),
        (optim.SGD(lr=0.1, momentum=0.5), ["momentum_buffer"]),
        (optim.Adam(), ["exp_avg", "exp_avg_sq"]),
        (optim.AdamW(amsgrad=True), ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]),
    ],
)
def test_state_starts_at_zero_with_pytorch_names(optimizer, slots):
    prog = compile_mlp(optimizer)
    state = prog.optimizer_state
    expected = ["step"] + [f"{p}.{slot}" for p in ("0.weight", "0.bias", "2.weight", "2.bias") for slot in slots]
    assert sorted(state) == sorted(expected)
    params = prog.parameters
    for name, value in state.items():
        assert not value.any(), name
        if name != "step":
            assert value.shape == params[name.rsplit(".", 1)[0]].shape, name
