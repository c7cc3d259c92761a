"""The fuzzer's own tests, and a short deterministic slice of a campaign.

The generator, the forms, the tolerances and the shrinker are tested on
the reference interpreter and on fake backends (no native compile); the
slice compiles one case per form and one MLP natively."""

from __future__ import annotations

import dataclasses
import itertools
import os

import numpy as np
import pytest

from ember.ir import OPS, Builder, DType, Graph, RunResult, parse, print_graph, verify

from .campaign import load_case, run_campaign, save_case
from .cases import FORMS, Case, make_case
from .check import check
from .graphs import ProgramBuilder
from .mlps import check_mlp, random_mlp
from .shrink import shrink
from .tolerance import run


def reference_with(op: str, evaluate):
    """A fake backend: the reference interpreter with `op` computed by `evaluate`."""
    wrong = dataclasses.replace(OPS[op], evaluate=evaluate)

    def backend(graph: Graph):
        copy, _ = graph.clone()
        for node in copy.nodes:
            if node.op.name == op:
                node.op = wrong
        return lambda arguments: run(copy, arguments)

    return backend


def generated_programs(count: int) -> list[tuple[Graph, dict]]:
    found = []
    for seed in range(count):
        graph = Graph("fuzz")
        rng = np.random.default_rng(seed)
        builder = ProgramBuilder(Builder(graph), "p", rng, DType.float32 if seed % 2 else DType.float64, 5)
        graph.outputs.update(builder.build(10))
        found.append((graph, builder.arguments))
    return found


def test_generator_uses_every_op_and_builds_valid_graphs() -> None:
    """Every op of the table appears (a new op needs no change to the
    generator), every graph verifies, and the reference runs it to finite
    values."""
    seen = set()
    for graph, arguments in generated_programs(120):
        verify(graph)
        seen |= {node.op.name for node in graph.nodes}
        for name, value in run(graph, arguments).outputs.items():
            assert value.dtype.kind != "f" or np.all(np.isfinite(value)), name
    assert seen == set(OPS), f"never generated: {sorted(set(OPS) - seen)}"


@pytest.mark.parametrize("form", FORMS)
def test_forms_are_valid_graphs(form: str) -> None:
    for seed in range(3):
        case = make_case(seed, form, 4)
        verify(case.graph)
        assert set(case.programs) == {f"p{i}" for i in range(4)}
        if form != "forward" and case.graph.params:
            assert "loss" in case.graph.outputs
            assert (form == "train") == bool(case.graph.updates)


def test_case_programs_do_not_depend_on_their_neighbours() -> None:
    """Program i of a case is the same alone (`only=[i]`), so a failing
    program can be rebuilt by itself."""
    whole = make_case(5, "forward", 4)
    alone = make_case(5, "forward", 4, only=[2])
    for name, value in alone.arguments.items():
        np.testing.assert_array_equal(value, whole.arguments[name])
    assert set(alone.graph.outputs) == {k for k in whole.graph.outputs if k.startswith("p2.")}


def in_float64(graph: Graph):
    """A fake backend that computes a float32 graph in float64 and rounds
    each result once at the end."""
    wide = parse(print_graph(graph).replace("f32", "f64"))
    dtypes = {name: v.type.dtype.numpy for name, v in (*graph.outputs.items(), *graph.updates.items())}

    def runner(arguments):
        widened = {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in arguments.items()}
        result = run(wide, widened)
        narrow = lambda found: {k: v.astype(dtypes[k]) for k, v in found.items()}
        return RunResult(narrow(result.outputs), narrow(result.updates))

    return runner


@pytest.mark.parametrize("form", FORMS)
def test_tolerance_accepts_other_rounding(form: str) -> None:
    """Computing in float64 differs from the float32 reference by the
    reference's own rounding: within the tolerances."""
    case = next(c for c in (make_case(s, form, 4) for s in range(10)) if c.arguments["p0.a0"].dtype == np.float32)
    assert check(case, in_float64) == []


def test_one_ulp_off_in_the_last_op_is_within_tolerance() -> None:
    """Noise of the argument and of tanh may cancel in every noisy run; the
    floor still leaves room for tanh's own rounding, element by element."""
    graph = parse("graph g {\n  input %x: f64[4096]\n  %0: f64[4096] = tanh %x\n  output y = %0\n}")
    case = Case(graph, {"x": np.random.default_rng(0).uniform(-0.1, 0.1, 4096)})
    assert check(case, reference_with("tanh", lambda x: np.nextafter(np.tanh(x), np.inf))) == []


@pytest.mark.parametrize("op", ["exp", "sum", "matmul", "reshape"])
def test_a_wrong_op_is_a_mismatch(op: str) -> None:
    """Results off by 1e-3 (relative) in one op are caught."""
    wrong = lambda *args, **attrs: OPS[op].evaluate(*args, **attrs) * 1.001
    assert any(check(make_case(s, "gradient", 4), reference_with(op, wrong)) for s in range(10))


def test_shrink_keeps_only_the_wrong_op() -> None:
    """A case of 4 programs whose exp is wrong shrinks to the exp and the
    chain of ops from it to one result (cutting a node makes its value an
    input, so the ops between the exp and a result stay)."""
    backend = reference_with("exp", lambda x: np.exp(x) * (1 + 1e-3))
    case = next(c for c in (make_case(s, "forward", 4) for s in range(20)) if check(c, backend))
    assert len(case.graph.nodes) > 10
    small = shrink(case, check(case, backend), backend, seconds=60)
    nodes = small.graph.nodes
    assert nodes[0].op.name == "exp", [node.op.name for node in nodes]
    # What is left is one path from the exp to a result: how long depends on the
    # program drawn (and so on the op table), that it is a path does not.
    assert len(nodes) < len(case.graph.nodes) // 2, [node.op.name for node in nodes]
    assert all(before.output in after.inputs for before, after in itertools.pairwise(nodes))
    assert len(small.graph.outputs) + len(small.graph.updates) == 1
    assert check(small, backend)


def test_saved_case_replays(tmp_path) -> None:
    case = make_case(1, "forward", 3)
    loaded = load_case(save_case(case, tmp_path / "case.npz"))
    assert str(loaded.graph) == str(case.graph)
    assert check(loaded, reference_with("exp", OPS["exp"].evaluate)) == []


# -- the native slice --------------------------------------------------------------


@pytest.mark.parametrize("form", FORMS)
def test_native_matches_reference_on_random_programs(form: str) -> None:
    case = make_case(1000 + FORMS.index(form), form, 4)
    assert check(case) == []


def test_native_matches_reference_on_a_random_mlp() -> None:
    assert check_mlp(random_mlp(24)) == []  # a small one: Linear, Softmax, Linear; AdamW (amsgrad)


def test_campaign_counts_programs() -> None:
    fake = reference_with("exp", OPS["exp"].evaluate)
    tally = run_campaign(seed=3, programs=30, backend=fake, report=lambda line: None)
    assert tally.mismatches == 0
    assert tally.programs >= 30
    assert tally.summary() == f"checked {tally.programs} programs, 0 mismatches"


def dying_backend(graph: Graph):
    """A backend whose process dies, as on a crash in native code."""
    os._exit(3)


def test_campaign_reports_a_unit_that_kills_its_worker() -> None:
    lines = []
    tally = run_campaign(seed=3, programs=1, jobs=2, backend=dying_backend, report=lines.append)
    assert tally.units == 2
    assert tally.mismatches == 2
    assert sum("the process checking it died" in line for line in lines) == 2
    assert "python tests/fuzz.py --seed 3 --unit 0" in lines[0]
