"""Pass pipelines: named graph-to-graph passes run in order, each timed, and
optionally verified and kept for printing after it runs.

`build_training` turns a traced loss graph into every graph a training
Program needs; each intermediate graph is kept under its stage name so
`Program.dump(stage)` can show it."""

from __future__ import annotations

import time
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass, field

from ..ir import Graph, verify
from .autodiff import GRAD_SUFFIX, autodiff, grad_name
from .clipping import GradientClipping, clip_gradients
from .optimizers import Optimizer, lower_optimizer
from .schedules import StepSchedule, schedule_lr
from .simplify import SIMPLIFY_PASSES, simplify

PassFn = Callable[[Graph], Graph]


@dataclass
class PassLog:
    """What running passes recorded: total seconds and runs per pass name,
    and the graphs after each run of the passes named in `print_after`."""

    print_after: Container[str] = ()
    check: bool = False
    seconds: dict[str, float] = field(default_factory=dict)
    runs: dict[str, int] = field(default_factory=dict)
    printed: list[tuple[str, Graph]] = field(default_factory=list)

    def count(self, name: str, seconds: float) -> None:
        """One more run of pass `name`, which took `seconds`."""
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        self.runs[name] = self.runs.get(name, 0) + 1

    def record(self, name: str, graph: Graph, seconds: float) -> None:
        self.count(name, seconds)
        if self.check:
            verify(graph)
        if name in self.print_after:
            self.printed.append((name, graph))


@dataclass(frozen=True)
class Pass:
    """A named graph-to-graph function. `stage` names the dump of its result.
    `run` may take the log, to report passes it runs inside itself."""

    name: str
    run: Callable[[Graph, PassLog], Graph]
    stage: str | None = None


def run_passes(graph: Graph, passes: list[Pass], log: PassLog, stages: dict[str, Graph] | None = None) -> Graph:
    """Run `passes` in order, recording each in `log`."""
    for p in passes:
        start = time.perf_counter()
        graph = p.run(graph, log)
        log.record(p.name, graph, time.perf_counter() - start)
        if stages is not None and p.stage:
            stages[p.stage] = graph
    return graph


def simplify_pass(name: str) -> Pass:
    """The simplify pass, writing its result under the graph name `name`."""

    def run(graph: Graph, log: PassLog) -> Graph:
        return simplify(graph, observe=log.record).clone(name)[0]

    return Pass("simplify", run, stage="simplified")


def training_passes(
    optimizer: Optimizer,
    wrt: Sequence[str] | None = None,
    clipping: GradientClipping | None = None,
    lr_schedule: StepSchedule | None = None,
) -> list[Pass]:
    """The passes from a traced loss graph to the simplified training graph;
    `wrt` names the params that train (default: all). With `clipping`, the
    gradients are clipped (one global step over all of them) before any
    update; with `lr_schedule`, the step computes its learning rate."""
    return [
        Pass("autodiff", lambda g, log: _trained_only(autodiff(g), wrt), stage="autodiff"),
        *update_passes(optimizer, clipping, lr_schedule, "train"),
    ]


PASS_NAMES = ("autodiff", "clip-gradients", "lower-optimizer", "schedule-lr", "simplify", *SIMPLIFY_PASSES)
"""Every pass name `--print-after` accepts."""


@dataclass
class TrainingGraphs:
    """Every graph of a training Program, by stage name, plus the runnable ones."""

    stages: dict[str, Graph]
    train: Graph
    gradients: Graph
    evaluate: Graph


def build_training(
    loss_graph: Graph,
    optimizer: Optimizer,
    log: PassLog | None = None,
    evaluate_graph: Graph | None = None,
    wrt: Sequence[str] | None = None,
    clipping: GradientClipping | None = None,
    lr_schedule: StepSchedule | None = None,
) -> TrainingGraphs:
    """From a graph with outputs `loss` and `out` (traced in training mode;
    its updates set buffers), build the training step (`train`), the
    gradient computation (`gradients`: no update, not even of buffers) and
    the evaluation (`evaluate`: loss and predictions of `evaluate_graph`,
    the loss graph traced in eval mode; default `loss_graph`). `wrt` names
    the params that train (default: all); the others get no gradient,
    update or optimizer state. `clipping` clips the gradients of the
    training step (`gradients` returns them unclipped, as backward does);
    `lr_schedule` computes the step's learning rate from its step count."""
    log = log if log is not None else PassLog()
    stages = {"graph": loss_graph}
    train = run_passes(loss_graph, training_passes(optimizer, wrt, clipping, lr_schedule), log, stages)
    gradients = run_passes(_without_updates(stages["autodiff"]), [simplify_pass("gradients")], log)
    evaluate = run_passes(_without_updates(evaluate_graph or loss_graph), [simplify_pass("evaluate")], log)
    return TrainingGraphs(stages, train, gradients, evaluate)


def build_split_step(
    autodiff_graph: Graph,
    optimizer: Optimizer,
    log: PassLog,
    clipping: GradientClipping | None = None,
    lr_schedule: StepSchedule | None = None,
) -> tuple[Graph, Graph]:
    """The training step in two halves, for a data-parallel step that
    averages the gradients across processes between them: `backward` (the
    loss, the gradients and the buffer updates of `autodiff_graph`, the
    autodiff stage of `build_training`) and `apply` (gradients given as
    inputs `NAME.grad`, then clipping, the optimizer and the schedule)."""
    backward = run_passes(_loss_and_gradients(autodiff_graph), [simplify_pass("backward")], log)
    apply = run_passes(gradient_inputs(autodiff_graph), update_passes(optimizer, clipping, lr_schedule, "apply"), log)
    return backward, apply


def build_sharded_apply(
    autodiff_graph: Graph,
    optimizer: Optimizer,
    updated: Sequence[str],
    log: PassLog,
    clipping: GradientClipping | None = None,
    lr_schedule: StepSchedule | None = None,
) -> Graph:
    """The apply half of a step whose optimizer state is sharded over the
    processes (ZeRO stage 1): every gradient is an input (clipping takes
    the norm of them all), but only the params in `updated` are updated, so
    the graph holds only their optimizer state (and the groups' scalars)."""
    passes = update_passes(optimizer, clipping, lr_schedule, "apply", updated)
    return run_passes(gradient_inputs(autodiff_graph), passes, log)


def _loss_and_gradients(autodiff_graph: Graph) -> Graph:
    """The autodiff graph (buffer updates included) with only the outputs
    the update needs: the loss and the gradients."""
    graph, _ = autodiff_graph.clone("backward")
    graph.outputs = {k: v for k, v in graph.outputs.items() if k == "loss" or k.endswith(GRAD_SUFFIX)}
    return graph


def update_passes(
    optimizer: Optimizer,
    clipping: GradientClipping | None,
    lr_schedule: StepSchedule | None,
    name: str,
    updated: Sequence[str] | None = None,
) -> list[Pass]:
    """The passes of the training step after autodiff: clipping, the
    optimizer (of the params in `updated`, default all that have a
    gradient), the schedule, then simplify, which names the graph `name`.
    The optimizer's result is the "train" stage, or the schedule's, which
    rewrites the optimizer's lr."""
    return [
        *([Pass("clip-gradients", lambda g, log: clip_gradients(g, clipping))] if clipping else []),
        *([Pass("shard-update", lambda g, log: _trained_only(g, updated))] if updated is not None else []),
        Pass("lower-optimizer", lambda g, log: lower_optimizer(g, optimizer), stage="train"),
        *([Pass("schedule-lr", lambda g, log: schedule_lr(g, lr_schedule), stage="train")] if lr_schedule else []),
        simplify_pass(name),
    ]


def gradient_inputs(autodiff_graph: Graph) -> Graph:
    """A graph whose gradients come from outside (a data-parallel step
    averages them across processes first): inputs `NAME.grad` and `loss`,
    passed through as the outputs autodiff gives, for each trained param."""
    graph = Graph("apply")
    graph.outputs["loss"] = graph.add_argument("loss", autodiff_graph.outputs["loss"].type)
    for param in autodiff_graph.params:
        name = grad_name(param.name)
        if name in autodiff_graph.outputs:
            graph.add_argument(param.name, param.type, "param")
            graph.outputs[name] = graph.add_argument(name, param.type)
    return graph


def _trained_only(graph: Graph, wrt: Sequence[str] | None) -> Graph:
    """`graph` without the gradient outputs of params not in `wrt` (frozen
    params): the optimizer then leaves them alone, and simplify drops the
    work that only they needed."""
    if wrt is not None:
        frozen = {grad_name(p.name) for p in graph.params if p.name not in wrt}
        graph.outputs = {k: v for k, v in graph.outputs.items() if k not in frozen}
    return graph


def _without_updates(graph: Graph) -> Graph:
    copy, _ = graph.clone()
    copy.updates = {}
    return copy


def build_inference(graph: Graph, log: PassLog | None = None) -> dict[str, Graph]:
    """The stages of an inference-only program: the traced graph and its simplified form."""
    log = log if log is not None else PassLog()
    stages = {"graph": graph}
    run_passes(graph, [simplify_pass("predict")], log, stages)
    return stages
