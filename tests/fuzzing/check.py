"""Running a case on the native backend and on the reference interpreter,
and comparing every output and update of every step."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from ember.compiler import simplify
from ember.ir import Graph, RunResult
from ember.runtime.native import GraphFunction

from .cases import Case
from .tolerance import NOISY_RUNS, Difference, compare, error_model, results, run, scales, tolerances

Runner = Callable[[Mapping[str, np.ndarray]], RunResult]
Backend = Callable[[Graph], Runner]
"""Compiles a graph into something called like `ir.interpret`."""


def native(graph: Graph) -> Runner:
    """The graph simplified as `ember.compile` does, then compiled natively."""
    return GraphFunction(simplify(graph.clone()[0]))


def trajectory(step: Runner, case: Case) -> list[dict[str, np.ndarray]]:
    """The results of `case.steps` runs, each run's updates fed to the next."""
    arguments = dict(case.arguments)
    found = []
    for _ in range(case.steps):
        result = step(arguments)
        arguments.update(result.updates)
        found.append(results(result))
    return found


def check(case: Case, backend: Backend = native, seed: int = 0) -> list[Difference]:
    """Differences between `backend` and the reference on `case`; an error
    raised by either on the (valid) graph is one too."""
    try:
        exact = trajectory(lambda args: run(case.graph, args), case)
        model = error_model(case.graph)
        floors = []

        def centre_step(args):
            floors.append(results(scales(model, args)))
            return run(model, args)

        centre = trajectory(centre_step, case)
        noise = np.random.default_rng(seed)
        noisy = [trajectory(lambda args: run(model, args, noise), case) for _ in range(NOISY_RUNS)]
    except Exception as e:
        return [Difference("reference", f"raised {type(e).__name__}: {e}")]
    try:
        actual = trajectory(backend(case.graph), case)
    except Exception as e:
        return [Difference("native", f"raised {type(e).__name__}: {e}")]
    found = []
    for step, (a, x) in enumerate(zip(actual, exact, strict=True)):
        limits = tolerances(centre[step], [n[step] for n in noisy], floors[step])
        for difference in compare(a, x, limits):
            difference.step = step
            found.append(difference)
    return found
