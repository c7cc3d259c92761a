"""Learning-rate schedules against torch.optim.lr_scheduler: the same
arguments give the same sequence of learning rates (to 1e-12), on
`prog.lr` and on per-group learning rates."""

import math

import numpy as np
import pytest

import ember
from ember import nn, optim
from ember.optim import lr_scheduler

STEPS = 100
BASE_LR = 0.1

# name -> (kwargs, or a function of the optimizer/program building the scheduler)
SCHEDULES = {
    "StepLR": dict(step_size=7, gamma=0.5),
    "MultiStepLR": dict(milestones=[10, 30, 30, 75], gamma=0.3),
    "ExponentialLR": dict(gamma=0.97),
    "CosineAnnealingLR": dict(T_max=30, eta_min=1e-3),
    "CosineAnnealingLR_long": dict(T_max=1000),
    "LinearLR": dict(start_factor=0.1, end_factor=0.9, total_iters=40),
    "ConstantLR": dict(factor=0.5, total_iters=20),
    "PolynomialLR": dict(total_iters=60, power=2.0),
    "OneCycleLR": dict(max_lr=0.5, total_steps=STEPS, cycle_momentum=False),
    "OneCycleLR_linear_3": dict(
        max_lr=0.5, epochs=11, steps_per_epoch=10, anneal_strategy="linear", three_phase=True, cycle_momentum=False
    ),
    "CosineAnnealingWarmRestarts": dict(T_0=10, T_mult=2, eta_min=1e-4),
    "CosineAnnealingWarmRestarts_1": dict(T_0=7),
    "LambdaLR": dict(lr_lambda=lambda epoch: 0.95**epoch / (1 + epoch % 3)),
    "MultiplicativeLR": dict(lr_lambda=lambda epoch: 0.9 if epoch % 2 else 1.01),
}


def _scheduler(module, name: str, opt, kwargs: dict):
    return getattr(module, name.split("_")[0])(opt, **kwargs)


def _program(lr: float = BASE_LR) -> ember.Program:
    model = nn.Sequential(nn.Linear(2, 1))
    return ember.compile(model, loss=nn.MSELoss(), optimizer=optim.SGD(lr=lr), dtype="float64")


class _GroupedProgram:
    """A stand-in for a program with parameter groups: what a schedule reads and writes."""

    is_training = True

    def __init__(self, lrs: list[float]) -> None:
        self.param_groups = [{"lr": lr, "momentum": 0.9} for lr in lrs]


def _torch_optimizer(torch, lrs: list[float]):
    groups = [{"params": [torch.zeros(1, requires_grad=True)], "lr": lr} for lr in lrs]
    return torch.optim.SGD(groups, lr=lrs[0], momentum=0.9)


def _torch_sequence(torch, build, lrs: list[float], metrics=None) -> list[list[float]]:
    opt = _torch_optimizer(torch, lrs)
    sched = build(torch.optim.lr_scheduler, opt)
    seq = [sched.get_last_lr()]
    for i in range(STEPS):
        opt.step()
        sched.step() if metrics is None else sched.step(metrics[i])
        seq.append(sched.get_last_lr())
    return seq


def _ember_sequence(prog, build, metrics=None, read=None) -> list[list[float]]:
    sched = build(lr_scheduler, prog)
    read = read or (lambda: [prog.lr])
    seq = [sched.get_last_lr()]
    assert seq[0] == read()
    for i in range(STEPS):
        sched.step() if metrics is None else sched.step(metrics[i])
        seq.append(sched.get_last_lr())
        assert seq[-1] == read()
    return seq


def _assert_same(got: list[list[float]], want: list[list[float]]) -> None:
    np.testing.assert_allclose(np.array(got), np.array(want, dtype=np.float64), rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedule_matches_torch(name):
    torch = pytest.importorskip("torch")
    kwargs = SCHEDULES[name]

    def build(module, opt):
        return _scheduler(module, name, opt, kwargs)

    _assert_same(_ember_sequence(_program(), build), _torch_sequence(torch, build, [BASE_LR]))


def _sequential(module, opt):
    warmup = module.LinearLR(opt, start_factor=0.01, total_iters=10)
    decay = module.CosineAnnealingLR(opt, T_max=50, eta_min=1e-4)
    steps = module.StepLR(opt, step_size=5, gamma=0.7)
    return module.SequentialLR(opt, schedulers=[warmup, decay, steps], milestones=[10, 60])


def _chained(module, opt):
    return module.ChainedScheduler([module.ExponentialLR(opt, gamma=0.98), module.StepLR(opt, step_size=9, gamma=0.5)])


@pytest.mark.parametrize("build", [_sequential, _chained], ids=["SequentialLR", "ChainedScheduler"])
def test_composite_schedules_match_torch(build):
    torch = pytest.importorskip("torch")
    _assert_same(_ember_sequence(_program(), build), _torch_sequence(torch, build, [BASE_LR]))


PLATEAU = [
    dict(patience=3, factor=0.5),
    dict(mode="max", patience=2, threshold=0.05, threshold_mode="abs", cooldown=4, min_lr=0.01),
    dict(patience=0, factor=0.3, threshold_mode="abs", eps=1e-3),
]


@pytest.mark.parametrize("kwargs", PLATEAU)
def test_reduce_on_plateau_matches_torch(kwargs):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    metrics = [float(1 / (1 + i) + rng.normal(0, 0.05)) for i in range(STEPS)]

    def build(module, opt):
        return module.ReduceLROnPlateau(opt, **kwargs)

    _assert_same(_ember_sequence(_program(), build, metrics), _torch_sequence(torch, build, [BASE_LR], metrics))


@pytest.mark.parametrize("name", ["CosineAnnealingLR", "OneCycleLR", "LambdaLR", "StepLR"])
def test_each_parameter_group_follows_its_own_base_lr(name):
    torch = pytest.importorskip("torch")
    kwargs = dict(SCHEDULES[name])
    if name == "OneCycleLR":
        kwargs.update(max_lr=[0.5, 0.05], cycle_momentum=True)
    lrs = [BASE_LR, 0.02]
    prog = _GroupedProgram(lrs)

    def build(module, opt):
        return _scheduler(module, name, opt, kwargs)

    got = _ember_sequence(prog, build, read=lambda: [g["lr"] for g in prog.param_groups])
    _assert_same(got, _torch_sequence(torch, build, lrs))


def test_one_cycle_cycles_the_momentum_of_each_group():
    torch = pytest.importorskip("torch")
    prog = _GroupedProgram([BASE_LR])
    opt = _torch_optimizer(torch, [BASE_LR])
    ours = lr_scheduler.OneCycleLR(prog, max_lr=1.0, total_steps=20)
    theirs = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=20)
    for _ in range(19):
        opt.step()
        ours.step()
        theirs.step()
        assert prog.param_groups[0]["momentum"] == pytest.approx(opt.param_groups[0]["momentum"], rel=1e-12)


def test_a_schedule_sets_the_lr_the_program_trains_with():
    prog = _program(lr=0.5)
    sched = lr_scheduler.StepLR(prog, step_size=1, gamma=0.5)
    x, y = np.ones((4, 2)), np.zeros((4, 1))
    before = prog.parameters
    grads = prog.gradients(x, y)
    sched.step()
    assert prog.lr == 0.25
    assert sched.get_last_lr() == [0.25]
    prog.train_step(x, y)
    for name, value in prog.parameters.items():
        np.testing.assert_allclose(value, before[name] - 0.25 * grads[name], rtol=1e-12)


def test_schedules_need_a_training_program():
    infer = ember.compile(nn.Sequential(nn.Linear(2, 1)))
    with pytest.raises(ember.EmberError, match="training Program"):
        lr_scheduler.StepLR(infer, step_size=3)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: lr_scheduler.LinearLR(p, start_factor=0), "start_factor"),
        (lambda p: lr_scheduler.ReduceLROnPlateau(p, factor=1.5), "factor"),
        (lambda p: lr_scheduler.ReduceLROnPlateau(p, mode="up"), "mode"),
        (lambda p: lr_scheduler.CosineAnnealingWarmRestarts(p, T_0=0), "T_0"),
        (lambda p: lr_scheduler.OneCycleLR(p, max_lr=1.0), "total_steps"),
        (lambda p: lr_scheduler.OneCycleLR(p, max_lr=1.0, total_steps=10), "cycle_momentum=False"),
        (lambda p: lr_scheduler.LambdaLR(p, lr_lambda=[math.exp, math.exp]), "lr_lambdas"),
        (lambda p: lr_scheduler.SequentialLR(p, [lr_scheduler.StepLR(p, 2)], milestones=[3]), "milestone"),
    ],
)
def test_bad_arguments_raise_config_errors(make, message):
    with pytest.raises(ember.EmberError, match=message):
        make(_program())


def test_one_cycle_refuses_to_step_past_its_end():
    sched = lr_scheduler.OneCycleLR(_program(), max_lr=1.0, total_steps=3, cycle_momentum=False)
    for _ in range(3):
        sched.step()
    with pytest.raises(ember.EmberError, match="total_steps"):
        sched.step()


def test_state_dict_resumes_the_sequence():
    prog = _program()
    sched = _sequential(lr_scheduler, prog)
    for _ in range(15):
        sched.step()
    state = sched.state_dict()
    expected = []
    for _ in range(10):
        sched.step()
        expected.append(prog.lr)
    prog2 = _program()
    resumed = _sequential(lr_scheduler, prog2)
    resumed.load_state_dict(state)
    prog2.lr = state["_last_lr"][0]
    got = []
    for _ in range(10):
        resumed.step()
        got.append(prog2.lr)
    assert got == expected


COMPILED = [
    "StepLR",
    "MultiStepLR",
    "ExponentialLR",
    "LinearLR",
    "ConstantLR",
    "PolynomialLR",
    "CosineAnnealingLR",
    "CosineAnnealingLR_long",
    "CosineAnnealingWarmRestarts",
    "CosineAnnealingWarmRestarts_1",
]


def _lrs_used_by_steps(prog: ember.Program, steps: int) -> list[float]:
    """The learning rate of each training step: from zero params, a step of
    SGD on y = w*x + b at x = y = 1 (MSE: gradient -2) leaves b = 2 * lr."""
    x, y = np.ones((1, 1)), np.ones((1, 1))
    zeros = {name: np.zeros_like(v) for name, v in prog.parameters.items()}
    lrs = []
    for _ in range(steps):
        prog.set_parameters(zeros)
        prog.train_step(x, y)
        lrs.append(float(prog.parameters["0.bias"][0]) / 2)
    return lrs


@pytest.mark.parametrize("backend", ["native", "reference"])
@pytest.mark.parametrize("name", COMPILED)
def test_compiled_schedule_gives_torch_lrs_without_python(name, backend):
    torch = pytest.importorskip("torch")
    kwargs = SCHEDULES[name]
    schedule = getattr(lr_scheduler, name.split("_")[0]).compiled(**kwargs)
    want = [lrs[0] for lrs in _torch_sequence(torch, lambda m, o: _scheduler(m, name, o, kwargs), [BASE_LR])]
    _assert_compiled_lrs(schedule, backend, want[:STEPS])


def _assert_compiled_lrs(schedule, backend: str, want: list[float]) -> None:
    prog = ember.compile(
        nn.Sequential(nn.Linear(1, 1)),
        loss=nn.MSELoss(),
        optimizer=optim.SGD(lr=BASE_LR),
        dtype="float64",
        backend=backend,
        lr_schedule=schedule,
    )
    np.testing.assert_allclose(_lrs_used_by_steps(prog, len(want)), want, rtol=1e-12, atol=1e-17)
    assert prog.lr == BASE_LR  # the base lr: still a runtime input


@pytest.mark.parametrize("backend", ["native", "reference"])
def test_compiled_warmup_then_cosine_gives_torch_lrs(backend):
    """SequentialLR of compiled schedules: each counts its steps from its milestone."""
    torch = pytest.importorskip("torch")
    compiled = lr_scheduler.SequentialLR.compiled(
        schedulers=[
            lr_scheduler.LinearLR.compiled(start_factor=0.01, total_iters=10),
            lr_scheduler.CosineAnnealingLR.compiled(T_max=50, eta_min=1e-4),
            lr_scheduler.StepLR.compiled(step_size=5, gamma=0.7),
        ],
        milestones=[10, 60],
    )
    want = [lrs[0] for lrs in _torch_sequence(torch, _sequential, [BASE_LR])]
    _assert_compiled_lrs(compiled, backend, want[:STEPS])


def test_compiled_cosine_needs_no_torch_to_be_right():
    """The closed form, checked without PyTorch: a half cosine from lr to eta_min over T_max steps."""
    schedule = lr_scheduler.CosineAnnealingLR.compiled(T_max=8, eta_min=0.01)
    want = [0.01 + (BASE_LR - 0.01) * (1 + math.cos(math.pi * t / 8)) / 2 for t in range(12)]
    _assert_compiled_lrs(schedule, "native", want)


def test_compiled_schedule_survives_save_and_load(tmp_path):
    schedule = lr_scheduler.MultiStepLR.compiled(milestones=[2, 4], gamma=0.5)
    prog = ember.compile(nn.Sequential(nn.Linear(1, 1)), nn.MSELoss(), optim.SGD(lr=1.0), lr_schedule=schedule)
    _lrs_used_by_steps(prog, 3)
    prog.save(tmp_path / "m.npz")
    loaded = ember.load(tmp_path / "m.npz")
    assert loaded.lr_schedule == schedule
    assert _lrs_used_by_steps(loaded, 3) == [0.5, 0.25, 0.25]  # steps 3, 4, 5: past milestone 2, then 4


def test_compiled_sequence_survives_save_and_load(tmp_path):
    schedule = lr_scheduler.SequentialLR.compiled(
        schedulers=[
            lr_scheduler.ConstantLR.compiled(factor=0.5, total_iters=2),
            lr_scheduler.ExponentialLR.compiled(gamma=0.5),
        ],
        milestones=[2],
    )
    prog = ember.compile(nn.Sequential(nn.Linear(1, 1)), nn.MSELoss(), optim.SGD(lr=1.0), lr_schedule=schedule)
    assert _lrs_used_by_steps(prog, 3) == [0.5, 0.5, 1.0]
    prog.save(tmp_path / "m.npz")
    loaded = ember.load(tmp_path / "m.npz")
    assert loaded.lr_schedule == schedule
    assert _lrs_used_by_steps(loaded, 2) == [0.5, 0.25]  # steps 3, 4 of the sequence: 1, 2 of ExponentialLR


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: lr_scheduler.OneCycleLR.compiled(max_lr=1.0, total_steps=10), "does not compile"),
        (lambda: lr_scheduler.SequentialLR.compiled(schedulers=[lr_scheduler.StepLR], milestones=[]), "compiled"),
        (
            lambda: lr_scheduler.SequentialLR.compiled(
                schedulers=[lr_scheduler.ExponentialLR.compiled(gamma=0.5)], milestones=[3]
            ),
            "one milestone fewer",
        ),
        (lambda: lr_scheduler.CosineAnnealingLR.compiled(T_max=0), "T_max must be an integer >= 1"),
        (lambda: lr_scheduler.CosineAnnealingWarmRestarts.compiled(T_0=4, T_mult=1.5), "T_mult must be an integer"),
        (lambda: lr_scheduler.StepLR.compiled(gamma=0.5), "step_size"),
        (lambda: lr_scheduler.StepLR.compiled(step_size=2, gama=0.5), "gama"),
        (lambda: lr_scheduler.ExponentialLR.compiled(gamma="0.5"), "finite number"),
    ],
)
def test_bad_compiled_schedules_raise_config_errors(make, message):
    with pytest.raises(ember.EmberError, match=message):
        make()


def test_stepping_a_schedule_never_recompiles():
    prog = _program()
    sched = lr_scheduler.OneCycleLR(prog, max_lr=1.0, total_steps=20, cycle_momentum=False)
    x, y = np.ones((4, 2)), np.zeros((4, 1))
    prog.train_step(x, y)
    before = ember.cache_info()
    for _ in range(19):
        prog.train_step(x, y)
        sched.step()
    assert ember.cache_info() == before
