"""Golden dumps of a reference MLP: the compiler prints exactly the checked-in
IR, that IR parses back to the same text, and the parsed graphs compute what
the compiled program computes."""

from __future__ import annotations

import difflib

import numpy as np
import pytest

import ember
from ember import ir
from ember.compiler import grad_name
from ember.compiler.optimizers import hyperparameter_inputs

from .regenerate import STAGES, golden_path, reference_program

REGENERATE = "python tests/golden/regenerate.py"


@pytest.fixture(scope="module")
def program() -> ember.Program:
    return reference_program()


def batch() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((5, 4)).astype(np.float32), rng.integers(0, 3, size=5)


@pytest.mark.parametrize("stage", STAGES)
def test_dump_matches_golden_file(program, stage):
    path = golden_path(stage)
    expected, actual = path.read_text(), program.dump(stage)
    if actual != expected:
        diff = difflib.unified_diff(
            expected.splitlines(keepends=True), actual.splitlines(keepends=True), path.name, f"dump({stage!r})"
        )
        pytest.fail(
            f"Program.dump({stage!r}) differs from {path}.\n"
            f"If the change is intended, run `{REGENERATE}` from the repository root and review the diff.\n"
            + "".join(diff)
        )


@pytest.mark.parametrize("stage", STAGES)
def test_golden_file_round_trips(stage):
    text = golden_path(stage).read_text()
    assert ir.print_graph(ir.parse(text)) == text


def program_results(program: ember.Program, stage: str, x, y) -> tuple[dict, dict]:
    """The outputs and updates the program's own `stage` graph stands for,
    computed through the public Program API."""
    if stage in ("train", "simplified"):
        loss = program.train_step(x, y)
        return {"loss": loss}, {**program.parameters, **program.optimizer_state}
    outputs = {"loss": program.evaluate(x, y)["loss"]}
    if stage == "graph":
        outputs["out"] = program.predict(x)
    else:
        outputs.update({grad_name(name): g for name, g in program.gradients(x, y).items()})
    return outputs, {}


@pytest.mark.parametrize("stage", STAGES)
def test_parsed_golden_graph_computes_what_the_program_computes(stage):
    graph = ir.verify(ir.parse(golden_path(stage).read_text()))
    program = reference_program()
    x, y = batch()
    values = {"x": x, "y": y, "sample_weight": np.ones(len(x), np.float32)}
    values.update({k: np.asarray(v, np.float32) for k, v in hyperparameter_inputs(program.optimizer).items()})
    values.update(program.parameters, **program.optimizer_state)
    result = ir.interpret(graph, {a.name: values[a.name] for a in graph.arguments})

    outputs, updates = program_results(program, stage, x, y)
    assert result.outputs.keys() == outputs.keys()
    assert result.updates.keys() == updates.keys()
    for name, want in [*outputs.items(), *updates.items()]:
        got = result.outputs[name] if name in outputs else result.updates[name]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7, err_msg=f"{stage}: {name}")
