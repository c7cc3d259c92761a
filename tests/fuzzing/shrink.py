"""Shrinking a failing case to a small graph that still fails.

A case that fails usually holds one small culprit among many programs.
`shrink` moves to the first step that differs (the reference's params and
state after the steps before become the arguments), then lets hypothesis
search for the fewest nodes and results to keep: every node left out is
cut, its result replaced by a new input holding the reference's values for
it, so the rest of the graph computes what it computed before. Hypothesis
shrinks each flag toward "cut" (or "drop"), keeping a change only if the
native results still differ.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from hypothesis import HealthCheck, Phase, find, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample

from ember.ir import Graph, Value

from .cases import Case
from .check import Backend, check, native
from .tolerance import Difference, run, values

MAX_EXAMPLES = 200
"""Cut sets hypothesis tries before it gives up finding one that fails."""


def shrink(case: Case, differences: Sequence[Difference], backend: Backend = native, seconds: float = 120.0) -> Case:
    """A smaller case with some of the `differences` of `case`; the case at
    the first step that differs when no smaller one fails within `seconds`.

    Besides nodes, hypothesis drops results, keeping at least one that
    differs (or whose presence makes another differ: an update that is
    right may still be the culprit when it is written in place too early)."""
    step = min(d.step for d in differences)
    single = _at_step(case, step)
    results = [*single.graph.outputs, *single.graph.updates]
    env = values(single.graph, single.arguments)
    nodes = len(single.graph.nodes)
    deadline = time.monotonic() + seconds

    def smaller(flags: Sequence[bool]) -> Case:
        kept = {name for name, keep in zip(results, flags[nodes:], strict=True) if keep}
        return cut(single, env, flags[:nodes], kept)

    answers: dict[tuple[bool, ...], bool] = {}

    def fails(flags: Sequence[bool]) -> bool:
        # Past the deadline every new try "passes", so hypothesis stops with the smallest
        # failure so far; remembered answers keep its replay of that failure consistent.
        key = tuple(flags)
        if key not in answers:
            answers[key] = time.monotonic() < deadline and any(flags[nodes:]) and bool(check(smaller(flags), backend))
        return answers[key]

    keep_mostly = st.integers(0, 3).map(lambda v: v > 0)  # shrinks toward 0: cut or drop
    size = nodes + len(results)
    options = settings(
        max_examples=MAX_EXAMPLES,
        database=None,
        deadline=None,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    try:
        return smaller(find(st.lists(keep_mostly, min_size=size, max_size=size), fails, settings=options))
    except NoSuchExample:
        return single


def _at_step(case: Case, step: int) -> Case:
    """Step `step` of `case` alone, run from the reference's params and state
    after the steps before it."""
    arguments = dict(case.arguments)
    for _ in range(step):
        arguments.update(run(case.graph, arguments).updates)
    return Case(case.graph, arguments, 1, case.form, dict(case.programs))


def cut(case: Case, env: dict[Value, np.ndarray], keep: Sequence[bool], results: set[str]) -> Case:
    """`case` (one step) computing only `results`, with node i replaced by a
    new input `cut<i>` holding its reference value `env[...]` wherever
    `keep[i]` is False."""
    source = case.graph
    nodes = source.nodes
    outputs = {k: v for k, v in source.outputs.items() if k in results}
    updates = {k: v for k, v in source.updates.items() if k in results}
    live = set(outputs.values()) | set(updates.values())
    needed = [False] * len(nodes)
    for i in reversed(range(len(nodes))):
        if nodes[i].output in live:
            needed[i] = True
            if keep[i]:
                live.update(nodes[i].inputs)
    graph = Graph(source.name)
    arguments: dict[str, np.ndarray] = {}
    mapping: dict[Value, Value] = {}
    for a in source.arguments:
        if a in live or a.name in updates:
            mapping[a] = graph.add_argument(a.name, a.type, a.role)  # type: ignore[arg-type]
            arguments[a.name] = case.arguments[a.name]  # type: ignore[index]
    for i, node in enumerate(nodes):
        if not needed[i]:
            continue
        if keep[i]:
            inputs = tuple(mapping[v] for v in node.inputs)
            mapping[node.output] = graph.append(node.op, inputs, node.attrs, node.output.type)
        else:
            mapping[node.output] = graph.add_argument(f"cut{i}", node.output.type, "input")
            arguments[f"cut{i}"] = env[node.output]
    graph.outputs = {k: mapping[v] for k, v in outputs.items()}
    graph.updates = {k: mapping[v] for k, v in updates.items()}
    return Case(graph, arguments, 1, case.form, dict(case.programs))
