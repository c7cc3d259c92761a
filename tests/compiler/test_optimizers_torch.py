"""Every optimizer against torch.optim itself: the same MLP, the same starting
parameters and batches, 10 steps of each in float64; the parameters agree to
1e-10. Also param groups, frozen params, and hyperparameters changed between
steps (which must not recompile)."""

import numpy as np
import pytest

import ember
from ember import nn, optim

torch = pytest.importorskip("torch")

STEPS = 10
TOLERANCE = 1e-10


@pytest.fixture(autouse=True)
def float64_torch():
    """PyTorch keeps scalar state (NAdam's mu_product, the steps) in the
    default dtype: float64, as ember's float64 program does."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


def mlp():
    return nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))


def torch_twin(prog):
    """A torch model with `prog`'s parameters, and its params by ember's names."""
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3)).double()
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in prog.state_dict().items()})
    return model, dict(model.named_parameters())


def batches(steps=STEPS, seed=0):
    """Batches whose inputs shrink step by step, so gradients shrink and
    AMSGrad's running maximum and Adamax's infinity norm differ from the moments."""
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(8, 4)) * 3.0 / step, rng.normal(size=(8, 3))) for step in range(1, steps + 1)]


def torch_step(model, opt, x, y):
    opt.zero_grad()
    loss = torch.nn.functional.mse_loss(model(torch.from_numpy(x)), torch.from_numpy(y))
    loss.backward()
    opt.step()


def assert_same_params(prog, named, step):
    for name, value in prog.parameters.items():
        np.testing.assert_allclose(
            value, named[name].detach().numpy(), rtol=0, atol=TOLERANCE, err_msg=f"{name} after step {step}"
        )


def compile_mlp(optimizer, model=None, backend="reference"):
    model = model or mlp()
    return ember.compile(model, loss=nn.MSELoss(), optimizer=optimizer, dtype="float64", backend=backend)


def run_both(prog, model, opt, steps=STEPS, between=None):
    for step, (x, y) in enumerate(batches(steps), start=1):
        if between:
            between(step, prog, opt)
        prog.train_step(x, y)
        torch_step(model, opt, x, y)
        assert_same_params(prog, dict(model.named_parameters()), step)


CASES = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.05}),
    ("SGD", {"lr": 0.1, "momentum": 0.8, "nesterov": True}),
    ("SGD", {"lr": 0.05, "momentum": 0.5, "maximize": True}),
    ("Adam", {"lr": 0.01}),
    ("Adam", {"lr": 0.02, "betas": (0.8, 0.95), "eps": 1e-6, "weight_decay": 0.1}),
    ("Adam", {"lr": 0.01, "betas": (0.9, 0.6), "amsgrad": True}),
    ("Adam", {"lr": 0.01, "maximize": True, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("AdamW", {"lr": 0.01}),
    ("AdamW", {"lr": 0.01, "betas": (0.9, 0.6), "weight_decay": 0.1, "amsgrad": True}),
    ("RMSprop", {}),
    ("RMSprop", {"lr": 0.01, "alpha": 0.9, "centered": True}),
    ("RMSprop", {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.1}),
    ("RMSprop", {"lr": 0.005, "momentum": 0.5, "centered": True, "maximize": True}),
    ("Adagrad", {}),
    ("Adagrad", {"lr": 0.05, "lr_decay": 0.1, "weight_decay": 0.1, "initial_accumulator_value": 0.5}),
    ("Adagrad", {"lr": 0.05, "eps": 1e-3, "maximize": True}),
    ("Adamax", {}),
    ("Adamax", {"lr": 0.01, "betas": (0.8, 0.9), "weight_decay": 0.1, "maximize": True}),
    ("NAdam", {}),
    ("NAdam", {"lr": 0.01, "momentum_decay": 0.01, "weight_decay": 0.1}),
    ("NAdam", {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("RAdam", {}),
    ("RAdam", {"lr": 0.01, "betas": (0.8, 0.9), "weight_decay": 0.1}),
    ("RAdam", {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True, "maximize": True}),
]


@pytest.mark.parametrize("backend", ["native", "reference"])
@pytest.mark.parametrize(("name", "settings"), CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_ten_steps_equal_torch_optim(name, settings, backend):
    prog = compile_mlp(getattr(optim, name)(**settings), backend=backend)
    model, _named = torch_twin(prog)
    run_both(prog, model, getattr(torch.optim, name)(model.parameters(), **settings))


@pytest.mark.parametrize("backend", ["native", "reference"])
@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop", "NAdam", "RAdam"])
def test_param_groups_with_their_own_lr_and_weight_decay(name, backend):
    """Groups by glob pattern and by name; 2.bias is in no group, so it is not trained."""
    extra = {"momentum": 0.9} if name in ("SGD", "RMSprop") else {}
    groups = [
        {"params": ["0.*"], "lr": 0.05, "weight_decay": 0.1},
        {"params": ["2.weight"], "lr": 0.01, **extra},
    ]
    prog = compile_mlp(getattr(optim, name)(groups, lr=0.02), backend=backend)
    assert [g["params"] for g in prog.param_groups] == [["0.weight", "0.bias"], ["2.weight"]]
    model, named = torch_twin(prog)
    torch_groups = [
        {"params": [named["0.weight"], named["0.bias"]], "lr": 0.05, "weight_decay": 0.1},
        {"params": [named["2.weight"]], "lr": 0.01, **extra},
    ]
    before = prog.parameters["2.bias"]
    run_both(prog, model, getattr(torch.optim, name)(torch_groups, lr=0.02))
    np.testing.assert_array_equal(prog.parameters["2.bias"], before)
    assert not any(k.startswith("2.bias.") for k in prog.optimizer_state)


def test_model_parameters_as_in_pytorch():
    """`optim.SGD(model.parameters(), lr=0.1)`: what every PyTorch user types."""
    model = mlp()
    prog = compile_mlp(optim.SGD(model.parameters(), lr=0.1, momentum=0.9), model)
    twin, _named = torch_twin(prog)
    run_both(prog, twin, torch.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9))
    assert prog.param_groups[0]["params"] == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_parameters_of_one_layer_and_named_parameters():
    model = mlp()
    prog = compile_mlp(optim.Adam(model[2].parameters(), lr=0.01), model)
    assert prog.param_groups[0]["params"] == ["2.weight", "2.bias"]
    prog = compile_mlp(optim.Adam(list(model.named_parameters())[:1], lr=0.01), model)
    assert prog.param_groups[0]["params"] == ["0.weight"]


def test_frozen_parameters_are_left_out():
    model = mlp()
    model[0].weight.requires_grad_(False)
    prog = compile_mlp(optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.1), model)
    assert prog.param_groups[0]["params"] == ["0.bias", "2.weight", "2.bias"]
    twin, named = torch_twin(prog)
    named["0.weight"].requires_grad_(False)
    run_both(
        prog, twin, torch.optim.AdamW([p for p in twin.parameters() if p.requires_grad], lr=0.01, weight_decay=0.1)
    )


def test_changing_hyperparameters_between_steps_matches_torch_and_never_recompiles():
    groups = [{"params": ["0.*"], "weight_decay": 0.01}, {"params": ["2.*"], "lr": 0.005}]
    prog = compile_mlp(optim.Adam(groups, lr=0.01), backend="native")
    model, named = torch_twin(prog)
    opt = torch.optim.Adam(
        [
            {"params": [named["0.weight"], named["0.bias"]], "weight_decay": 0.01},
            {"params": [named["2.weight"], named["2.bias"]], "lr": 0.005},
        ],
        lr=0.01,
    )
    seconds, cache, count = prog.pass_seconds, ember.cache_info(), prog.compile_count
    assert count > 0

    def change(step, prog, opt):
        changes = {
            3: (0, {"lr": 0.03}),
            4: (1, {"betas": (0.8, 0.99)}),
            6: (0, {"weight_decay": 0.2, "eps": 1e-4}),
            8: (1, {"lr": 0.0, "betas": (0.5, 0.9)}),
        }
        if step in changes:
            index, values = changes[step]
            prog.param_groups[index].update(values)
            opt.param_groups[index].update(values)
        if step == 9:
            prog.lr = 0.02
            for group in opt.param_groups:
                group["lr"] = 0.02

    run_both(prog, model, opt, between=change)
    assert prog.lr == 0.02
    assert [g["lr"] for g in prog.param_groups] == [0.02, 0.02]
    assert prog.param_groups[1]["betas"] == (0.5, 0.9)
    assert prog.compile_count == count
    assert prog.pass_seconds == seconds
    assert ember.cache_info() == cache


def test_a_weight_decay_compiled_as_zero_stays_zero():
    """A group without weight decay has no decay term in its update (the
    common case pays nothing for it), so turning it on needs a new compile."""
    prog = compile_mlp(optim.Adam(lr=0.01), backend="native")
    with pytest.raises(ember.ConfigError, match="weight_decay is compiled into the training step"):
        prog.param_groups[0]["weight_decay"] = 0.1
    assert prog.param_groups[0]["weight_decay"] == 0.0


@pytest.mark.parametrize("name", ["SGD", "RMSprop"])
def test_momentum_set_to_zero_later_matches_torch(name):
    settings = {"lr": 0.05, "momentum": 0.9}
    prog = compile_mlp(getattr(optim, name)(**settings))
    model, _ = torch_twin(prog)
    opt = getattr(torch.optim, name)(model.parameters(), **settings)

    def change(step, prog, opt):
        momentum = {4: 0.0, 7: 0.5}.get(step)
        if momentum is not None:
            prog.param_groups[0]["momentum"] = momentum
            opt.param_groups[0]["momentum"] = momentum

    run_both(prog, model, opt, between=change)


@pytest.mark.parametrize(
    ("optimizer", "key", "value", "message"),
    [
        (optim.SGD(lr=0.1, momentum=0.9, nesterov=True), "nesterov", False, "nesterov is compiled into the training"),
        (optim.SGD(lr=0.1), "momentum", 0.9, "momentum is compiled into the training step"),
        (optim.Adam(), "amsgrad", True, "amsgrad is compiled"),
        (optim.Adam(), "params", ["0.weight"], "params is compiled"),
        (optim.Adam(), "lr", -0.1, "invalid learning rate"),
        (optim.Adam(), "betas", (0.9, 1.0), "invalid beta at index 1"),
        (optim.Adam(), "eps", "1e-8", "invalid eps"),
        (optim.RMSprop(), "alpha", float("nan"), "invalid alpha"),
        (optim.Adam(), "lr", float("inf"), "invalid learning rate"),
        (optim.Adam(), "foo", 1.0, "has no hyperparameter 'foo'"),
    ],
)
def test_changes_that_would_need_compiling_are_refused(optimizer, key, value, message):
    prog = compile_mlp(optimizer)
    before = dict(prog.param_groups[0])
    with pytest.raises(ember.ConfigError, match=message):
        prog.param_groups[0][key] = value
    assert prog.param_groups[0] == before


def test_numpy_values_are_stored_as_python_floats(tmp_path):
    prog = compile_mlp(optim.Adam())
    prog.param_groups[0]["lr"] = np.float32(0.5)
    prog.param_groups[0]["betas"] = [np.float64(0.8), 0.9]
    assert type(prog.param_groups[0]["lr"]) is float
    assert prog.param_groups[0]["betas"] == (0.8, 0.9)
    prog.save(tmp_path / "a.npz")
    assert ember.load(tmp_path / "a.npz").param_groups == prog.param_groups


def test_param_group_keys_are_fixed():
    prog = compile_mlp(optim.SGD(lr=0.1))
    with pytest.raises(ember.ConfigError, match="keys are fixed"):
        del prog.param_groups[0]["lr"]
    with pytest.raises(ember.ConfigError, match="keys are fixed"):
        prog.param_groups[0].pop("lr")


def test_reassigning_the_optimizer_is_refused():
    prog = compile_mlp(optim.SGD(lr=0.1))
    with pytest.raises(ember.ConfigError, match="cannot be reassigned"):
        prog.optimizer = optim.Adam()
    assert isinstance(prog.optimizer, optim.SGD)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda m: optim.SGD(0.1), "pass the learning rate as lr=0.1"),
        (lambda m: optim.SGD([], lr=0.1), "empty parameter list"),
        (lambda m: optim.SGD({"0.weight"}, lr=0.1), "ordered collection"),
        (lambda m: optim.SGD([{"lr": 0.1}]), "has no 'params'"),
        (lambda m: optim.SGD([{"params": ["0.*"], "bogus": 1}]), "unknown hyperparameter 'bogus'"),
        (lambda m: optim.SGD([{"params": ["0.*"], "lr": -1.0}]), "group 0: invalid learning rate"),
        (lambda m: optim.Adagrad(lr_decay=-1), "invalid lr_decay"),
        (lambda m: optim.RMSprop(alpha=-1), "invalid alpha"),
        (lambda m: optim.NAdam(momentum_decay=-1), "invalid momentum_decay"),
    ],
)
def test_invalid_optimizers_raise_config_error(make, message):
    with pytest.raises(ember.ConfigError, match=message):
        make(mlp())


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (["*.gamma"], "'\\*.gamma' names no parameter"),
        ([{"params": ["0.*"]}, {"params": ["0.weight"]}], "more than one parameter group"),
    ],
)
def test_selections_that_do_not_fit_the_model_raise_config_error(params, message):
    with pytest.raises(ember.ConfigError, match=message):
        compile_mlp(optim.SGD(params, lr=0.1))


def test_a_parameter_of_another_model_is_refused():
    with pytest.raises(ember.ConfigError, match="not a parameter of the compiled model"):
        compile_mlp(optim.SGD(mlp().parameters(), lr=0.1))


def test_adagrad_and_nadam_state_start_as_pytorchs():
    prog = compile_mlp(optim.Adagrad(initial_accumulator_value=0.25))
    assert all((v == 0.25).all() for k, v in prog.optimizer_state.items() if k.endswith(".sum"))
    prog = compile_mlp(optim.NAdam([{"params": ["0.*"]}, {"params": ["2.*"]}]))
    state = prog.optimizer_state
    assert state["group0.mu_product"] == 1.0
    assert state["group1.mu_product"] == 1.0


def test_checkpoints_keep_param_groups_and_their_values(tmp_path):
    groups = [{"params": ["0.*"], "momentum": 0.9}, {"params": ["2.weight"], "lr": 0.01, "weight_decay": 0.05}]
    prog = compile_mlp(optim.SGD(groups, lr=0.1, nesterov=False))
    x, y = batches(1)[0]
    prog.train_step(x, y)
    prog.param_groups[0]["lr"] = 0.3
    prog.param_groups[1]["weight_decay"] = 0.1
    prog.save(tmp_path / "groups.npz")
    loaded = ember.load(tmp_path / "groups.npz")
    assert loaded.param_groups == prog.param_groups
    assert loaded.optimizer == prog.optimizer
    loaded.train_step(x, y)
    prog.train_step(x, y)
    for name, value in prog.parameters.items():
        np.testing.assert_array_equal(loaded.parameters[name], value)


def test_checkpoint_param_groups_are_validated(tmp_path):
    from ember.runtime.checkpoint import load_checkpoint, save_checkpoint

    prog = compile_mlp(optim.Adam([{"params": ["0.*"]}, {"params": ["2.*"], "lr": 0.01}]))
    prog.save(tmp_path / "a.npz")
    changes = [
        (lambda m: m["param_groups"].pop(), "'param_groups' must be a list of 2 objects"),
        (lambda m: m["param_groups"][1].update(lr="fast"), "'param_groups\\[1\\]'.*'lr' must be a finite number"),
        (lambda m: m["param_groups"][0].update(betas=[0.9, 1.5]), "'param_groups\\[0\\]'.*invalid beta at index 1"),
        (lambda m: m["param_groups"][0].update(amsgrad=True), "'param_groups\\[0\\]': amsgrad must be False"),
        (lambda m: m["optimizer"]["param_groups"][0].update(params=["9.weight"]), "setting 'optimizer'.*9.weight"),
        (lambda m: m["optimizer"]["param_groups"][0].update(params="0.weight"), "params must be a list of names"),
        (lambda m: m["optimizer"]["param_groups"][1].update(amsgrad=1), "'amsgrad' must be true or false"),
    ]
    for change, message in changes:
        checkpoint = load_checkpoint(tmp_path / "a.npz")
        change(checkpoint.meta)
        save_checkpoint(tmp_path / "b.npz", checkpoint)
        with pytest.raises(ember.CheckpointError, match=message):
            ember.load(tmp_path / "b.npz")


def test_checkpoints_without_param_groups_still_load(tmp_path):
    """Files written before param groups: one group of every param, setting
    `lr` for all, hyperparameters without the flags added since."""
    from ember.runtime.checkpoint import load_checkpoint, save_checkpoint

    prog = compile_mlp(optim.Adam(lr=0.01))
    prog.lr = 0.02
    prog.save(tmp_path / "a.npz")
    checkpoint = load_checkpoint(tmp_path / "a.npz")
    del checkpoint.meta["param_groups"], checkpoint.meta["optimizer"]["param_groups"]
    for flag in ("maximize", "decoupled_weight_decay"):
        del checkpoint.meta["optimizer"]["hyperparameters"][flag]
    save_checkpoint(tmp_path / "old.npz", checkpoint)
    loaded = ember.load(tmp_path / "old.npz")
    assert loaded.param_groups == prog.param_groups
    assert loaded.lr == 0.02


def test_a_program_with_param_groups_is_freed_without_the_cycle_collector():
    """No reference cycle through the param groups: an unused Program (and
    its native code) goes at once, as before they existed."""
    import gc
    import weakref

    prog = compile_mlp(optim.Adam([{"params": ["0.*"]}, {"params": ["2.*"]}]), backend="native")
    prog.param_groups[1]["lr"] = 0.5
    ref = weakref.ref(prog)
    gc.disable()
    try:
        del prog
        assert ref() is None
    finally:
        gc.enable()
