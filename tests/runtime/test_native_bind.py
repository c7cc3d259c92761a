"""Inputs and outputs bound to an entry (NativeExecutable.bind and the
reference backend's twin): read and written where the owner keeps them,
checked once, never passed or returned by a call."""

import numpy as np
import pytest

import ember
from ember import nn, optim
from ember.ir import DTypeError, ShapeError


def split_step(backend: str) -> ember.Program:
    """A program whose distributed step's halves (backward, apply) are built."""
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    prog = ember.compile(model, nn.CrossEntropyLoss(), optim.SGD(lr=0.1), dtype="float64", backend=backend, seed=2)
    prog._add_split_step()
    return prog


def batch(prog: ember.Program) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return prog._check_batch(rng.standard_normal((5, 6)), rng.integers(0, 3, 5))


def buffers(prog: ember.Program, graph: str, kind: str) -> dict[str, np.ndarray]:
    graph = prog._graphs[graph]
    values = graph.outputs.items() if kind == "outputs" else ((a.name, a) for a in graph.inputs)
    return {name: np.full(value.type.shape, np.nan) for name, value in values}


@pytest.mark.parametrize("backend", ["native", "reference"])
def test_bound_outputs_are_written_in_place_and_bound_inputs_read_there(backend):
    bound, free = split_step(backend), split_step(backend)
    written = buffers(bound, "backward", "outputs")
    bound._exec.bind("backward", outputs=written)
    assert bound._exec.run("backward", batch(bound)) == {}
    expected = free._exec.run("backward", batch(free))
    assert expected.keys() == written.keys()
    for name, value in expected.items():
        np.testing.assert_array_equal(written[name], value, err_msg=name)

    bound._exec.bind("apply", inputs=written)
    loss = bound._exec.run("apply", {})
    assert loss.keys() == {"loss"}
    assert float(loss["loss"]) == float(free._exec.run("apply", expected)["loss"])
    for name, value in free.parameters.items():
        np.testing.assert_array_equal(bound.parameters[name], value, err_msg=name)


def test_a_bound_array_is_checked_when_the_entry_is_made():
    prog = split_step("native")
    written = buffers(prog, "backward", "outputs")
    name = next(name for name in written if name != "loss")
    shape = written[name].shape
    read_only = np.zeros(shape)
    read_only.flags.writeable = False
    for wrong, error, message in [
        (np.zeros(3), ShapeError, "has shape"),
        (np.zeros(shape, np.float32), DTypeError, "is float32"),
        (np.zeros(shape[::-1]).T, ShapeError, "must be a C-contiguous, writeable"),
        (read_only, ShapeError, "must be a C-contiguous, writeable"),
        ([0.0] * shape[0], DTypeError, "is list"),
    ]:
        prog._exec.bind("backward", outputs=written | {name: wrong})
        with pytest.raises(error, match=rf"native backward: output {name} {message}"):
            prog._exec.run("backward", batch(prog))
    prog._exec.bind("backward", outputs=written)
    assert prog._exec.run("backward", batch(prog)) == {}
    assert not np.isnan(written[name]).any()
