"""`ember.compile` and `ember.load`: the two ways to get a Program."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .compiler import PASS_NAMES, Optimizer
from .compiler.clipping import GradientClipping
from .compiler.schedules import StepSchedule
from .constants import ConstantPool
from .inputs import input_types
from .ir import ConfigError
from .nn.losses import Loss, loss_info_of
from .nn.module import Module
from .program import DEFAULT_BACKEND, Program, parse_dtype
from .restore import program_from_checkpoint
from .runtime.checkpoint import load_checkpoint
from .state_dict import StateLayout
from .trace import trace_loss, trace_model


def compile(
    model: Module,
    loss: Loss | Sequence[Loss] | None = None,
    optimizer: Optimizer | None = None,
    *,
    batch_size: int = 32,
    dtype: str = "float32",
    seed: int = 0,
    backend: str = DEFAULT_BACKEND,
    input_shape: Sequence[int] | None = None,
    example_inputs: Any = None,
    loss_weights: Sequence[float] | None = None,
    check: bool = False,
    print_after: Sequence[str] = (),
    clip_grad_norm: float | None = None,
    clip_grad_value: float | None = None,
    lr_schedule: StepSchedule | None = None,
) -> Program:
    """Compile `model` into a Program.

    With `loss` and `optimizer`, the program trains (`train_step`, `fit`,
    `gradients`, `evaluate`) as well as predicts; without them it only
    predicts. A forward returning a tuple of outputs takes a list of
    losses, one per output (the training loss is their sum, weighted by
    `loss_weights`). Parameters are initialized from `seed`. `batch_size`
    is the default minibatch size of `fit` (any batch size runs).

    The inputs' shapes and dtypes come from the layer that first consumes
    each input (a Linear, ...), else from `example_inputs`: an array whose
    first axis is the batch, or a `(shape, dtype)` pair such as
    `((32, 4), "int64")`, or a tuple of them for a forward of several
    inputs. `input_shape` is the shape of one float example of a
    one-input model. `check=True` verifies the IR after every pass.
    `print_after` names passes (see `ember.compiler.PASS_NAMES`) whose
    result graphs are kept in `Program.log.printed`.

    `clip_grad_norm=max_norm` clips the gradients in the training step as
    `torch.nn.utils.clip_grad_norm_(params, max_norm)` before
    `optimizer.step()` (all trainable gradients scaled together so that
    their L2 norm is at most max_norm); `clip_grad_value=v` clamps each
    gradient element to [-v, v] as `clip_grad_value_` (given both, values
    are clamped first).

    `lr_schedule` computes the learning rate inside the step from the
    optimizer's step count, so `fit` needs no Python per step:
    `lr_schedule=lr_scheduler.StepLR.compiled(step_size=100, gamma=0.5)`
    gives the learning rates of PyTorch's StepLR stepped after every
    optimizer step, with `prog.lr` as the base lr."""
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
    clipping = GradientClipping(max_norm=clip_grad_norm, value=clip_grad_value)
    if lr_schedule is not None and not isinstance(lr_schedule, StepSchedule):
        raise ConfigError(
            f"lr_schedule must be a schedule such as lr_scheduler.StepLR.compiled(step_size=10), got {lr_schedule!r}"
        )
    if (clipping or lr_schedule) and optimizer is None:
        raise ConfigError(
            "clip_grad_norm=, clip_grad_value= and lr_schedule= change the training step: pass loss= and optimizer= too"
        )
    dt = parse_dtype(dtype)
    shape = input_types(model, dt, input_shape, example_inputs)
    if isinstance(loss, list | tuple) and len(loss) == 1 and loss_weights is None:
        loss = loss[0]  # one loss in a list is that loss
    weights = _loss_weights(loss, loss_weights)
    rng = np.random.default_rng(seed)
    params = {name: p.initial_value(rng) for name, p in model.named_parameters()}
    buffers = {name: b.data for name, b in model.named_buffers()}
    constants = ConstantPool(dt)  # shared, so every graph takes the same constants
    predict_graph = trace_model(model, shape, dt, constants)
    loss_graph = evaluate_graph = loss_info = None
    if loss is not None:
        loss_graph = trace_loss(model, loss, shape, dt, True, constants, weights)
        evaluate_graph = trace_loss(model, loss, shape, dt, False, constants, weights)
        loss_info = _loss_info(loss, loss_graph, weights)
    for graph in (predict_graph, loss_graph, evaluate_graph):
        if graph is not None:
            constants.complete(graph)  # constants only a later graph met
    buffers.update(constants.arrays)
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    if optimizer is not None:
        identities = {id(p): name for name, p in model.named_parameters()}
        optimizer = optimizer.resolve(list(params), frozen, identities)
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
        clipping=clipping or None,
        lr_schedule=lr_schedule,
    )


def _loss_weights(loss: Any, weights: Sequence[float] | None) -> list[float] | None:
    """`loss_weights`, checked: one finite number per loss of a list of losses."""
    if weights is None:
        return None
    if not isinstance(loss, list | tuple) or len(loss) < 2:
        raise ConfigError("loss_weights= weighs the losses of a list loss=[...] of two or more, one per output")
    if not isinstance(weights, list | tuple) or len(weights) != len(loss):
        raise ConfigError(f"loss_weights must be a list of {len(loss)} numbers (one per loss), got {weights!r}")
    for w in weights:
        if not isinstance(w, numbers.Real) or isinstance(w, bool) or not math.isfinite(w):
            raise ConfigError(f"loss_weights must be finite numbers, got {w!r}")
    return [float(w) for w in weights]


def _loss_info(loss: Loss | Sequence[Loss], loss_graph, weights: list[float] | None) -> dict[str, Any]:
    """What a Program (and its checkpoint) records of its losses: one loss's
    info, or for several `{"losses": [info, ...], "weights": [...]}`."""
    if not isinstance(loss, list | tuple):
        return _one_loss_info(loss, loss_graph.outputs["out"], loss_graph.argument("y"))
    outs = [loss_graph.outputs[f"out{i}"] for i in range(len(loss))]
    targets = [loss_graph.argument(f"y{i}") for i in range(len(loss))]
    return {
        "losses": [_one_loss_info(*item) for item in zip(loss, outs, targets, strict=True)],
        "weights": weights or [1.0] * len(loss),
    }


def _one_loss_info(loss: Loss, out, target) -> dict[str, Any]:
    """What metrics and input checks need to know of a loss; JSON, kept by checkpoints."""
    return loss_info_of(type(loss).__name__, loss, out.type, target.type)


def load(path: str | os.PathLike, backend: str | None = None) -> Program:
    """Read a Program written by `Program.save`: its IR is parsed and compiled
    again, and its parameters, optimizer state and settings restored. Every
    field of the file is checked first (a CheckpointError names what is wrong)."""
    return program_from_checkpoint(load_checkpoint(path), str(path), backend)
