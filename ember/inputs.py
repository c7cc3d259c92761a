"""The type of a model's input: given (`input_shape=`, `example_inputs=`)
or inferred from the layer that first consumes it.

Inference traces `forward` once with an input whose feature size is a
placeholder symbol. The first layer called with a tensor of that size
(a Linear, a BatchNorm1d, ...; see `Module.input_spec`) stops the trace and
reports the per-example shape and dtype it needs: that is the input's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .constants import ConstantPool
from .ir import BATCH, ConfigError, DType, EmberError, Graph, TensorType
from .nn.module import Module
from .tensor import InputNeeds, Tensor, tracing
from .trace import add_model_arguments, model_mode

PLACEHOLDER = "F"
"""The symbol standing for the input's unknown feature size in the probe trace."""

INPUT_DTYPES = ("float32", "float64", "int64", "int32")


def input_type(
    model: Module, dtype: DType, input_shape: Sequence[int] | int | None = None, example_inputs: Any = None
) -> TensorType:
    """The input's type `dtype'[B, ...]`: from `input_shape` (float inputs of
    the program's dtype), else from `example_inputs`, else inferred."""
    if input_shape is not None and example_inputs is not None:
        raise ConfigError("pass input_shape= or example_inputs=, not both")
    if input_shape is not None:
        return TensorType(dtype, (BATCH, *_shape(input_shape)))
    if example_inputs is not None:
        return _example_type(example_inputs, dtype)
    return _inferred_type(model, dtype)


def _shape(input_shape: Sequence[int] | int) -> tuple[int, ...]:
    shape = (input_shape,) if isinstance(input_shape, int) else tuple(input_shape)
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape):
        raise ConfigError(f"input_shape must be positive integers, got {input_shape!r}")
    return shape


def _example_type(example: Any, dtype: DType) -> TensorType:
    """The type of an example input: an array (its first axis is the batch)
    or a `(shape, dtype)` pair; a tuple of one of them is the same."""
    if isinstance(example, tuple | list) and len(example) == 1:
        example = example[0]
    if _is_shape_and_dtype(example):
        shape, given_dtype = tuple(example[0]), example[1]
    elif hasattr(example, "shape") and hasattr(example, "dtype"):
        shape, given_dtype = tuple(example.shape), example.dtype
    else:
        raise ConfigError(
            "example_inputs must be an array or a (shape, dtype) pair such as ((32, 4), 'float32'), "
            f"got {type(example).__name__}"
        )
    if len(shape) < 1 or not all(isinstance(d, int | np.integer) and d >= 0 for d in shape):
        raise ConfigError(f"example_inputs: the shape must start with the batch axis, got {shape!r}")
    if any(d < 1 for d in shape[1:]):
        raise ConfigError(f"example_inputs: sizes after the batch axis must be >= 1, got {shape!r}")
    return TensorType(_input_dtype(given_dtype, dtype), (BATCH, *(int(d) for d in shape[1:])))


def _is_shape_and_dtype(value: Any) -> bool:
    return (
        isinstance(value, tuple | list)
        and len(value) == 2
        and isinstance(value[0], tuple | list)
        and isinstance(value[1], str | type | np.dtype | DType)
    )


def _input_dtype(given: Any, dtype: DType) -> DType:
    """Float inputs take the program's dtype; integer inputs stay int64 or int32."""
    try:
        parsed = DType.parse(np.dtype(given) if not isinstance(given, DType) else given)
    except (KeyError, TypeError):
        parsed = None
    if parsed is None or parsed.name not in INPUT_DTYPES:
        raise ConfigError(f"example_inputs: an input must be {', '.join(INPUT_DTYPES)}, got dtype {given!r}")
    return dtype if parsed.is_float else parsed


def _inferred_type(model: Module, dtype: DType) -> TensorType:
    """The probe trace's answer; when forward mixes the input with fixed
    sizes before any layer sees it (so the probe cannot run), the first
    layer's need that lets forward trace."""
    hint = "pass example_inputs=(x,) (an array, or a (shape, dtype) pair) or input_shape=(features,)"
    try:
        _trace_with(model, TensorType(dtype, (BATCH, PLACEHOLDER)), dtype, probe=True)
    except InputNeeds as needs:
        return _spec_type(needs.spec, dtype)
    except EmberError as e:
        for spec in dict.fromkeys(m.input_spec() for m in model.modules() if m.input_spec() is not None):
            candidate = _spec_type(spec, dtype)
            try:
                _trace_with(model, candidate, dtype, probe=False)
            except EmberError:
                continue
            return candidate
        raise ConfigError(f"cannot tell the size of the model's input ({e}); {hint}") from None
    raise ConfigError(f"cannot tell the size of the model's input: no layer of it fixes the input's size; {hint}")


def _spec_type(spec: tuple[tuple[int, ...], str | None], dtype: DType) -> TensorType:
    shape, needed = spec
    return TensorType(DType.parse(needed) if needed else dtype, (BATCH, *shape))


def _trace_with(model: Module, x_type: TensorType, dtype: DType, probe: bool) -> None:
    """Trace forward in eval mode on an input of `x_type` (a probe trace
    stops at the first layer that fixes a placeholder size)."""
    graph = Graph("probe")
    x = graph.add_argument("x", x_type)
    placeholders = frozenset({PLACEHOLDER}) if probe else frozenset()
    with model_mode(model, False), tracing(graph, probe=placeholders, constants=ConstantPool(dtype)) as trace:
        add_model_arguments(graph, trace, model, dtype)
        model(Tensor(x))
