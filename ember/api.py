"""`ember.compile` and `ember.load`: the two ways to get a Program."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .compiler import PASS_NAMES, Optimizer
from .constants import ConstantPool
from .inputs import input_type
from .ir import ConfigError
from .nn.losses import CrossEntropyLoss, Loss
from .nn.module import Module
from .program import DEFAULT_BACKEND, Program, parse_dtype
from .restore import program_from_checkpoint
from .runtime.checkpoint import load_checkpoint
from .state_dict import StateLayout
from .trace import trace_loss, trace_model


def compile(
    model: Module,
    loss: Loss | None = None,
    optimizer: Optimizer | None = None,
    *,
    batch_size: int = 32,
    dtype: str = "float32",
    seed: int = 0,
    backend: str = DEFAULT_BACKEND,
    input_shape: Sequence[int] | None = None,
    example_inputs: Any = None,
    check: bool = False,
    print_after: Sequence[str] = (),
) -> Program:
    """Compile `model` into a Program.

    With `loss` and `optimizer`, the program trains (`train_step`, `fit`,
    `gradients`, `evaluate`) as well as predicts; without them it only
    predicts. Parameters are initialized from `seed`. `batch_size` is the
    default minibatch size of `fit` (any batch size runs). `input_shape` is
    the shape of one float example; `example_inputs` an example input (an
    array whose first axis is the batch, or a `(shape, dtype)` pair such as
    `((32, 4), "int64")`) giving the input's shape and dtype. By default
    the layer that first consumes the input (a Linear, ...) fixes them. `check=True` verifies the IR after every pass.
    `print_after` names passes (see `ember.compiler.PASS_NAMES`) whose
    result graphs are kept in `Program.log.printed`."""
    if (loss is None) != (optimizer is None):
        raise ConfigError("pass both loss= and optimizer= to train, or neither for an inference-only program")
    if optimizer is not None and not isinstance(optimizer, Optimizer):
        raise ConfigError(f"optimizer must be an ember.optim optimizer such as optim.Adam(), got {optimizer!r}")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not isinstance(seed, int | np.integer) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
    if not isinstance(model, Module):
        raise ConfigError(f"expected an ember.nn.Module to compile, got {type(model).__name__}")
    unknown = [name for name in print_after if name not in PASS_NAMES]
    if unknown:
        raise ConfigError(f"unknown pass {unknown[0]!r}; passes are: {', '.join(PASS_NAMES)}")
    dt = parse_dtype(dtype)
    shape = input_type(model, dt, input_shape, example_inputs)
    rng = np.random.default_rng(seed)
    params = {name: p.initial_value(rng) for name, p in model.named_parameters()}
    buffers = {name: b.data for name, b in model.named_buffers()}
    constants = ConstantPool(dt)  # shared, so every graph takes the same constants
    predict_graph = trace_model(model, shape, dt, constants)
    loss_graph = evaluate_graph = loss_info = None
    if loss is not None:
        loss_graph = trace_loss(model, loss, shape, dt, training=True, constants=constants)
        evaluate_graph = trace_loss(model, loss, shape, dt, training=False, constants=constants)
        loss_info = _loss_info(loss, loss_graph)
    for graph in (predict_graph, loss_graph, evaluate_graph):
        if graph is not None:
            constants.complete(graph)  # constants only a later graph met
    buffers.update(constants.arrays)
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    return Program(
        predict_graph=predict_graph,
        params=params,
        buffers=buffers,
        evaluate_graph=evaluate_graph,
        frozen=frozen,
        state_layout=StateLayout.of_model(model),
        dtype=dt,
        batch_size=batch_size,
        seed=int(seed),
        backend=backend,
        loss_graph=loss_graph,
        optimizer=optimizer,
        loss_info=loss_info,
        check=check,
        print_after=print_after,
    )


def _loss_info(loss: Loss, loss_graph) -> dict[str, Any]:
    info: dict[str, Any] = {
        "name": type(loss).__name__,
        "reduction": loss.reduction,
        "classification": loss.classification,
    }
    if isinstance(loss, CrossEntropyLoss):
        info["num_classes"] = int(loss_graph.outputs["out"].type.shape[1])
    return info


def load(path: str | os.PathLike, backend: str | None = None) -> Program:
    """Read a Program written by `Program.save`: its IR is parsed and compiled
    again, and its parameters, optimizer state and settings restored. Every
    field of the file is checked first (a CheckpointError names what is wrong)."""
    return program_from_checkpoint(load_checkpoint(path), str(path), backend)
