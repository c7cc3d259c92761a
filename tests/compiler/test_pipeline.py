"""Pass pipelines: verification after every pass, per-pass timing, and the
graphs kept for each stage."""

import importlib

import numpy as np
import pytest

import ember
from ember import nn, optim
from ember.compiler import PASS_NAMES, Pass, PassLog, autodiff, build_training, run_passes
from ember.compiler.simplify import SIMPLIFY_PASSES
from ember.ir import DType, IRError, parse, verify
from ember.trace import trace_loss

pipeline = importlib.import_module("ember.compiler.pipeline")
TRAINING_STAGES = ["graph", "autodiff", "train", "simplified"]
TRAINING_PASSES = {"autodiff", "lower-optimizer", "simplify", *SIMPLIFY_PASSES}


def mlp():
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def compile_training(**options):
    model, loss, optimizer = mlp(), nn.CrossEntropyLoss(), optim.Adam(lr=0.01)
    return ember.compile(model, loss=loss, optimizer=optimizer, dtype="float64", backend="reference", **options)


def loss_graph():
    return trace_loss(mlp(), nn.MSELoss(), (4,), DType.float64)


def broken(graph):
    """A copy of `graph` with its nodes in reverse order: values used before they are defined."""
    graph, _ = graph.clone()
    graph.nodes.reverse()
    return graph


# -- verification after every pass --------------------------------------------
@pytest.fixture
def events(monkeypatch):
    """The names of passes as they return a graph, and "verify" whenever the pipeline verifies one."""
    log = []

    def recording(name, run):
        def wrapper(*args):
            graph = run(*args)
            log.append(name)
            return graph

        return wrapper

    def spy(graph):
        log.append("verify")
        return verify(graph)

    monkeypatch.setattr(pipeline, "verify", spy)
    for name in ("autodiff", "lower_optimizer"):
        monkeypatch.setattr(pipeline, name, recording(name, getattr(pipeline, name)))
    for name, run in list(SIMPLIFY_PASSES.items()):
        monkeypatch.setitem(SIMPLIFY_PASSES, name, recording(name, run))
    return log


def test_check_verifies_the_result_of_every_pass(events):
    compile_training(check=True)
    assert {"autodiff", "lower_optimizer", *SIMPLIFY_PASSES} <= set(events)
    for i, event in enumerate(events):
        if event != "verify":
            assert events[i + 1] == "verify", f"the result of {event} (event {i}) was not verified"


def test_without_check_nothing_is_verified(events):
    compile_training()
    assert "autodiff" in events
    assert "verify" not in events


@pytest.mark.parametrize("name", ["autodiff", "lower_optimizer", *SIMPLIFY_PASSES])
def test_check_catches_a_broken_pass_inside_compile(name, monkeypatch):
    if name in SIMPLIFY_PASSES:
        run = SIMPLIFY_PASSES[name]
        monkeypatch.setitem(SIMPLIFY_PASSES, name, lambda g: broken(run(g)))
    else:
        run = getattr(pipeline, name)
        monkeypatch.setattr(pipeline, name, lambda *args: broken(run(*args)))
    with pytest.raises(IRError, match="not defined before this node"):
        compile_training(check=True)


def test_broken_pass_in_custom_list_raises_ir_error():
    passes = [
        Pass("autodiff", lambda g, log: autodiff(g)),
        Pass("break-order", lambda g, log: broken(g)),
        Pass("never-runs", lambda g, log: pytest.fail("ran after a broken pass")),
    ]
    log = PassLog(check=True)
    with pytest.raises(IRError, match="not defined before this node") as error:
        run_passes(loss_graph(), passes, log)
    assert ">> " in str(error.value)  # the failing line, shown in its context
    assert list(log.seconds) == ["autodiff", "break-order"]


def test_without_check_a_broken_pass_goes_unnoticed():
    log = PassLog()
    result = run_passes(loss_graph(), [Pass("break-order", lambda g, log: broken(g))], log)
    with pytest.raises(IRError):
        verify(result)
    assert list(log.seconds) == ["break-order"]


def test_compile_with_check_trains():
    prog = compile_training(check=True)
    x = np.random.default_rng(0).normal(size=(6, 4))
    y = np.arange(6) % 3
    assert np.isfinite(prog.train_step(x, y))


# -- timing and printing ------------------------------------------------------
def test_pass_seconds_has_an_entry_for_each_pass():
    seconds = compile_training().pass_seconds
    assert {"autodiff", "lower-optimizer", "simplify", "fold-constants", "algebraic", "cse", "dce"} <= set(seconds)
    assert set(seconds) <= set(PASS_NAMES)  # every timed pass is one `print_after` accepts
    assert all(isinstance(s, float) and s >= 0 for s in seconds.values())
    inner = sum(seconds[name] for name in SIMPLIFY_PASSES)
    assert seconds["simplify"] >= inner  # the driver's time includes its passes'


def test_inference_program_times_only_simplification():
    seconds = ember.compile(mlp(), backend="reference").pass_seconds
    assert {"simplify", *SIMPLIFY_PASSES} <= set(seconds)
    assert not {"autodiff", "lower-optimizer"} & set(seconds)


def test_run_passes_records_seconds_and_graphs_to_print():
    log = PassLog(print_after={"cse", "lower-optimizer"})
    build_training(loss_graph(), optim.SGD(lr=0.1), log)
    assert set(log.seconds) == TRAINING_PASSES
    printed = [name for name, _ in log.printed]
    assert printed.count("lower-optimizer") == 1
    assert printed.count("cse") >= 3  # once per simplify round, for each of three graphs
    assert set(printed) == {"cse", "lower-optimizer"}
    assert "state %step" in str(dict(log.printed)["lower-optimizer"])


def test_compile_keeps_graphs_after_the_passes_named_in_print_after():
    prog = compile_training(print_after=["autodiff", "dce"])
    printed = [name for name, _ in prog.log.printed]
    assert printed.count("autodiff") == 1
    assert "dce" in printed
    assert set(printed) == {"autodiff", "dce"}
    with pytest.raises(ember.ConfigError, match="no-such-pass"):
        compile_training(print_after=["no-such-pass"])


# -- stage graphs -------------------------------------------------------------
def test_training_stages_exist_and_parse():
    prog = compile_training()
    assert prog.stages[:4] == TRAINING_STAGES
    graphs = {stage: parse(prog.dump(stage)) for stage in TRAINING_STAGES}
    for stage, graph in graphs.items():
        verify(graph)
        assert prog.dump(stage) == str(graph), stage  # print -> parse -> print is stable
    assert list(graphs["graph"].outputs) == ["loss", "out"]
    assert list(graphs["autodiff"].outputs) == ["loss", "0.weight.grad", "0.bias.grad", "2.weight.grad", "2.bias.grad"]
    for stage in ("train", "simplified"):
        train = graphs[stage]
        assert [a.name for a in train.inputs] == [
            "x",
            "y",
            "sample_weight",
            "lr",
            "beta1",
            "beta2",
            "eps",
            "weight_decay",
        ]
        assert list(train.outputs) == ["loss"]
        assert set(train.updates) == {a.name for a in [*train.params, *train.state]}
        assert "step" in train.updates
    assert len(graphs["simplified"].nodes) < len(graphs["train"].nodes)


def test_build_training_returns_runnable_graphs():
    graphs = build_training(loss_graph(), optim.SGD(lr=0.1, momentum=0.9))
    assert list(graphs.stages) == TRAINING_STAGES
    assert graphs.train is graphs.stages["simplified"]
    assert list(graphs.gradients.outputs) == ["loss", "0.weight.grad", "0.bias.grad", "2.weight.grad", "2.bias.grad"]
    assert graphs.gradients.updates == {}
    assert list(graphs.evaluate.outputs) == ["loss", "out"]
    assert graphs.evaluate.updates == {}
    for graph in (graphs.train, graphs.gradients, graphs.evaluate):
        verify(graph)


def test_inference_program_has_only_graph_and_simplified_stages():
    prog = ember.compile(mlp(), backend="reference")
    assert prog.stages[:2] == ["graph", "simplified"]
    assert "output out" in prog.dump("simplified")
    for stage in ("autodiff", "train"):
        assert stage not in prog.stages
        with pytest.raises(ember.ConfigError, match="inference-only"):
            prog.dump(stage)


def test_unknown_stage_raises_config_error():
    with pytest.raises(ember.ConfigError, match="unknown stage"):
        compile_training().dump("no-such-stage")
