"""Random MLPs through the public API, on both backends.

`random_mlp(seed)` draws an `nn.Sequential` of 1 to 4 Linear layers (widths
from 1 to 300, odd sizes and neighbours of vector widths among them, with
or without bias, every initializer), an activation or none after each
(every activation module of `ember.nn`), sometimes a Dropout, a loss (every loss, both
reductions, label smoothing), an optimizer (`cases.random_optimizer`), a
dtype and batch sizes (1 and sizes that are not multiples of the vector
width). `check_mlp` compiles it with `ember.compile` on the native and the
reference backend from the same seed and compares predict, gradients, and
the loss, parameters and optimizer state over TRAIN_STEPS train steps, with
the tolerances of `tolerance.py` measured on the training graphs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import ember
from ember import nn
from ember.compiler import Optimizer, build_training, grad_name
from ember.compiler.optimizers import hyperparameter_inputs
from ember.ir import Graph, parse
from ember.tensor import RNG_SEED, RNG_STEP

from .cases import FLOATS, TRAIN_STEPS, random_optimizer
from .graphs import pick
from .tolerance import NOISY_RUNS, Difference, Results, compare, error_model, run, scales, tolerances

WIDTHS = (1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 127, 129, 255, 256, 300)
ROWS = (1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 33, 64)
INITS = ("default", "normal", "xavier", "he")

ACTIVATIONS: list[Callable[[np.random.Generator], nn.Module]] = [
    lambda rng: nn.ReLU(),
    lambda rng: nn.Sigmoid(),
    lambda rng: nn.Tanh(),
    lambda rng: nn.LeakyReLU(pick(rng, [0.01, 0.2])),
    lambda rng: nn.GELU(pick(rng, ["none", "tanh"])),
    lambda rng: nn.Softmax(pick(rng, [-1, 1, 0])),
    lambda rng: nn.Identity(),
    lambda rng: nn.SiLU(),
    lambda rng: nn.Mish(),
    lambda rng: nn.ELU(pick(rng, [1.0, 0.3])),
    lambda rng: nn.Softplus(pick(rng, [1.0, 2.0]), pick(rng, [20.0, 1.0])),
    lambda rng: nn.Hardswish(),
    lambda rng: nn.Hardsigmoid(),
    lambda rng: nn.ReLU6(),
    lambda rng: nn.Hardtanh(pick(rng, [-1.0, -0.5]), pick(rng, [1.0, 2.0])),
    lambda rng: nn.Softsign(),
    lambda rng: nn.LogSoftmax(pick(rng, [-1, 1])),
    lambda rng: nn.PReLU(),
]
LOSSES: list[Callable[[np.random.Generator, int], nn.Loss]] = [  # given the number of outputs
    lambda rng, n: nn.MSELoss(pick(rng, ["mean", "sum"])),
    lambda rng, n: nn.CrossEntropyLoss(pick(rng, ["mean", "sum"]), label_smoothing=pick(rng, [0.0, 0.1])),
    lambda rng, n: nn.BCEWithLogitsLoss(pick(rng, ["mean", "sum"])),
    lambda rng, n: nn.L1Loss(pick(rng, ["mean", "sum"])),
    lambda rng, n: nn.HuberLoss(pick(rng, ["mean", "sum"]), delta=pick(rng, [0.5, 1.0, 2.0])),
    lambda rng, n: nn.SmoothL1Loss(pick(rng, ["mean", "sum"]), beta=pick(rng, [0.0, 0.5, 1.0])),
    lambda rng, n: nn.CrossEntropyLoss(rng.uniform(0.1, 2.0, n), label_smoothing=pick(rng, [0.0, 0.1])),
]


@dataclass
class MLP:
    """A model with everything `ember.compile` needs, and its data."""

    seed: int
    model: nn.Sequential
    loss: nn.Loss
    optimizer: Optimizer
    dtype: str
    x: np.ndarray  # a training batch
    y: np.ndarray
    x_predict: np.ndarray  # rows to predict (another count), with targets
    y_predict: np.ndarray

    def describe(self) -> str:
        layers = ", ".join(repr(m) for m in self.model)
        return f"{layers}; {self.loss!r}; {self.optimizer!r}; {self.dtype}, {len(self.x)} rows"


def random_mlp(seed: int) -> MLP:
    rng = np.random.default_rng(seed)
    widths = [_width(rng) for _ in range(int(rng.integers(2, 6)))]
    layers: list[nn.Module] = []
    for i in range(len(widths) - 1):
        layers.append(nn.Linear(widths[i], widths[i + 1], bias=rng.random() < 0.8, init=pick(rng, INITS)))
        if rng.random() < 0.8:
            layers.append(pick(rng, ACTIVATIONS)(rng))
        if rng.random() < 0.25:
            layers.append(nn.Dropout(pick(rng, [0.1, 0.5])))
    loss = pick(rng, LOSSES)(rng, widths[-1])
    dtype = pick(rng, FLOATS).numpy
    rows, predict_rows = pick(rng, ROWS), pick(rng, ROWS)
    x = rng.standard_normal((rows, widths[0])).astype(dtype)
    x_predict = rng.standard_normal((predict_rows, widths[0])).astype(dtype)
    return MLP(
        seed,
        nn.Sequential(*layers),
        loss,
        random_optimizer(rng),
        dtype.name,
        x,
        _targets(loss, rows, widths[-1], rng, dtype),
        x_predict,
        _targets(loss, predict_rows, widths[-1], rng, dtype),
    )


def _width(rng: np.random.Generator) -> int:
    return pick(rng, WIDTHS) if rng.random() < 0.7 else int(rng.integers(1, 301))


def _targets(loss: nn.Loss, rows: int, outputs: int, rng: np.random.Generator, dtype: np.dtype) -> np.ndarray:
    if isinstance(loss, nn.CrossEntropyLoss):
        labels = rng.integers(0, outputs, rows)
        if loss.weight is not None:  # some labels ignored
            labels[rng.random(rows) < 0.2] = loss.ignore_index
        return labels
    if isinstance(loss, nn.BCEWithLogitsLoss):
        return rng.uniform(0, 1, (rows, outputs)).astype(dtype)
    return rng.standard_normal((rows, outputs)).astype(dtype)


def check_mlp(mlp: MLP, seed: int = 0) -> list[Difference]:
    """Differences between the native and the reference Program of `mlp`;
    an error raised by the native one is one too."""
    options = {"loss": mlp.loss, "optimizer": mlp.optimizer, "dtype": mlp.dtype, "seed": mlp.seed}
    reference = ember.compile(mlp.model, backend="reference", **options)
    try:
        native = ember.compile(mlp.model, backend="native", **options)
        return _compare(native, reference, mlp, np.random.default_rng(seed))
    except Exception as e:  # a valid model that does not compile or run natively is a bug to report
        return [Difference("native", f"raised {type(e).__name__}: {e}")]


def _compare(native: ember.Program, reference: ember.Program, mlp: MLP, noise: np.random.Generator) -> list[Difference]:
    """predict, gradients, then TRAIN_STEPS train steps: their results must
    match within the spread of noisy runs of the training graphs."""
    graphs = build_training(parse(reference.dump("graph")), mlp.optimizer)
    params = reference.parameters
    constants = reference.buffers  # arrays the model uses, such as a loss's class weights
    found = compare(native.parameters, params, dict.fromkeys(params))  # the same initial values
    data = {"x": mlp.x, "y": mlp.y, "sample_weight": np.ones(len(mlp.x), mlp.x.dtype)}
    seed = np.asarray(np.uint64(mlp.seed % 2**64).astype(np.int64))
    at_step = lambda step: {RNG_SEED: seed, RNG_STEP: np.asarray(step, np.int64)}  # the programs' dropout masks

    def check(step: int, actual: Results, exact: Results, graph: Graph, arguments: list[dict], results_of) -> None:
        """Compare `actual` with `exact`, within the spread of noisy runs of
        `graph` (its error model) from `arguments` (one dict per run, the
        first for the exact run, each updated after its run)."""
        model = error_model(graph)
        floors = results_of(scales(model, arguments[0]))
        runs = []
        for i, args in enumerate(arguments):
            result = run(model, args, noise if i else None)
            args.update(result.updates)
            runs.append(results_of(result))
        for difference in compare(actual, exact, tolerances(runs[0], runs[1:], floors)):
            difference.step = step
            found.append(difference)

    weights = {"sample_weight": np.ones(len(mlp.x_predict), mlp.x_predict.dtype)}
    predict_args = {"x": mlp.x_predict, "y": mlp.y_predict, **weights, **params, **constants, **at_step(0)}
    check(
        0,
        {"predict": native.predict(mlp.x_predict)},
        {"predict": reference.predict(mlp.x_predict)},
        reference._graphs["predict"],  # in eval mode, as predict runs: no dropout
        [dict(predict_args) for _ in range(NOISY_RUNS + 1)],
        lambda r: {"predict": r.outputs["out"]},
    )
    names = {grad_name(name): name for name in params}
    check(
        0,
        native.gradients(mlp.x, mlp.y),
        reference.gradients(mlp.x, mlp.y),
        graphs.gradients,
        [{**data, **params, **constants, **at_step(0)} for _ in range(NOISY_RUNS + 1)],
        lambda r: {names[k]: v for k, v in r.outputs.items() if k in names},
    )
    hyper = {k: np.asarray(v, mlp.dtype) for k, v in hyperparameter_inputs(reference.optimizer).items()}
    trajectories = [
        {**data, **hyper, **params, **constants, **reference.optimizer_state} for _ in range(NOISY_RUNS + 1)
    ]
    for step in range(TRAIN_STEPS):
        for arguments in trajectories:
            arguments.update(at_step(step + 1))  # gradients() drew with step 0
        check(
            step,
            _after_step(native, mlp),
            _after_step(reference, mlp),
            graphs.train,
            trajectories,
            lambda r: {"loss": r.outputs["loss"], **r.updates},
        )
    return found


def _after_step(program: ember.Program, mlp: MLP) -> Results:
    """One train step's loss, and the parameters and optimizer state after it."""
    loss = np.asarray(program.train_step(mlp.x, mlp.y), mlp.dtype)
    return {"loss": loss, **program.parameters, **program.optimizer_state}
