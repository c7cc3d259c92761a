"""Cases: batches of random programs in one graph, in one of three forms.

Compiling a graph natively costs far more than running it, so a case packs
many independent programs into one graph (their arguments and outputs
named `p0.`, `p1.`, ...) and one compile checks them all. The form says
what the graph computes:

- `forward`: the programs' outputs;
- `gradient`: the outputs, a scalar loss (each float output times random
  weights, summed) and, by ember's autodiff, its gradient with respect to
  every param;
- `train`: the gradient form with a random optimizer's update lowered into
  the graph (`compiler.lower_optimizer`), run for TRAIN_STEPS steps from
  zero optimizer state, each step's params and state fed to the next.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from inputs import draw

from ember.compiler import SGD, Adam, AdamW, Optimizer, autodiff, lower_optimizer
from ember.compiler.optimizers import LEARNING_RATE, hyperparameter_inputs
from ember.ir import BATCH, Builder, DType, Graph, Value

from .graphs import ProgramBuilder, pick

FORMS = ("forward", "gradient", "train")
FLOATS = (DType.float32, DType.float64)
BATCHES = (0, 1, 1, 2, 3, 5, 8, 9, 16, 17, 33)
"""Sizes bound to B: no rows, 1, vector widths and their neighbours."""

MAX_NODES = 12
TRAIN_STEPS = 3
LOSS = "loss"


@dataclass
class Case:
    """A graph to run on both backends for `steps` steps, from `arguments`."""

    graph: Graph
    arguments: dict[str, np.ndarray]
    steps: int = 1
    form: str = "forward"
    programs: dict[str, int] = field(default_factory=dict)  # prefix -> nodes

    def describe(self) -> str:
        nodes = sum(self.programs.values())
        return f"{self.form} case of {len(self.programs)} programs ({nodes} nodes)"


def random_optimizer(rng: np.random.Generator) -> Optimizer:
    """SGD (plain, momentum, dampening, Nesterov, weight decay), Adam
    (amsgrad, weight decay) or AdamW with random hyperparameters."""
    kind = int(rng.integers(3))
    if kind == 0:
        momentum = pick(rng, [0.0, 0.5, 0.9])
        nesterov = momentum > 0 and rng.random() < 0.5
        dampening = 0.0 if nesterov else pick(rng, [0.0, 0.1])
        return SGD(
            lr=0.05, momentum=momentum, dampening=dampening, nesterov=nesterov, weight_decay=pick(rng, [0.0, 0.01])
        )
    cls = Adam if kind == 1 else AdamW
    return cls(
        lr=1e-2,
        betas=(pick(rng, [0.9, 0.8]), pick(rng, [0.999, 0.99])),
        eps=pick(rng, [1e-8, 1e-6]),
        weight_decay=pick(rng, [0.0, 0.01]),
        amsgrad=rng.random() < 0.5,
    )


def make_case(seed: int, form: str, programs: int, only: Sequence[int] | None = None) -> Case:
    """`programs` random programs of one float dtype in one graph, in `form`
    (see the module doc); `only` keeps some of them (by index), each as it
    is in the whole case: program i draws from seed (seed, i)."""
    rng = np.random.default_rng(seed)
    dtype = pick(rng, FLOATS)
    batch = pick(rng, BATCHES) if rng.random() < 0.7 else None
    optimizer = random_optimizer(rng)
    graph = Graph("fuzz")
    b = Builder(graph)
    case = Case(graph, {}, form=form)
    terms: list[Value] = []
    for i in range(programs) if only is None else only:
        program_rng = np.random.default_rng([seed, i])
        share = 0.7 if form != "forward" else 0.3
        builder = ProgramBuilder(b, f"p{i}", program_rng, dtype, batch, share)
        outputs = builder.build(int(program_rng.integers(1, MAX_NODES + 1)))
        graph.outputs.update(outputs)
        case.arguments.update(builder.arguments)
        case.programs[builder.prefix] = builder.nodes
        if form != "forward":
            terms += _loss_terms(case, b, program_rng, outputs, dtype, batch)
    if form == "forward" or not graph.params:
        return case
    graph.outputs[LOSS] = functools.reduce(b.add, terms) if terms else b.const(0.0, dtype)
    gradient = autodiff(graph, LOSS)
    _carry_outputs(graph, gradient)
    if form == "gradient":
        case.graph = gradient
        return case
    train = lower_optimizer(gradient, optimizer)
    case.graph, case.steps = train, TRAIN_STEPS
    for name, value in hyperparameter_inputs(optimizer).items():
        case.arguments[name] = np.asarray(value, dtype.numpy)
    case.arguments[LEARNING_RATE] = np.asarray(0.05, dtype.numpy)
    for s in train.state:
        case.arguments[s.name] = np.zeros(tuple(s.type.shape), dtype.numpy)  # params, so state, have fixed shapes
    return case


def _loss_terms(
    case: Case, b: Builder, rng: np.random.Generator, outputs: dict[str, Value], dtype: DType, batch: int | None
) -> list[Value]:
    """A program's share of the loss: per float output, sum(output * weights)
    in `dtype`, the weights a new input of random values."""
    terms = []
    for name, value in outputs.items():
        if not value.type.dtype.is_float:
            continue
        weights = case.graph.add_argument(f"{name}.weights", value.type, "input")
        shape = value.type.concrete_shape({BATCH: batch} if batch is not None else {})
        case.arguments[weights.name] = draw("real", shape, rng, value.type.dtype)
        term = b.sum(b.mul(value, weights), axes=list(range(value.type.rank)))
        terms.append(term if value.type.dtype is dtype else b.cast(term, dtype=dtype))
    return terms


def _carry_outputs(source: Graph, derived: Graph) -> None:
    """Give `derived` (autodiff's copy of `source`, whose forward nodes keep
    their positions) the outputs of `source` it dropped."""
    position = {node.output: i for i, node in enumerate(source.nodes)}
    for name, value in source.outputs.items():
        if name in derived.outputs:
            continue
        node = derived.nodes[position[value]]
        assert node.op is value.node.op, f"autodiff moved the node of output {name}"
        derived.outputs[name] = node.output
