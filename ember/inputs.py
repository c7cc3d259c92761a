"""The types of a model's inputs: given (`input_shape=`, `example_inputs=`)
or inferred from the layer that first consumes each input.

Inference traces `forward` with inputs whose feature sizes are placeholder
symbols. The first layer called with a tensor of a placeholder size (a
Linear, a BatchNorm1d, ...; see `Module.input_spec`) stops the trace and
reports the per-example shape and dtype it needs: that input's type. The
trace runs again until every input is known."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np

from .constants import ConstantPool
from .ir import BATCH, ConfigError, DType, EmberError, Graph, TensorType
from .nn.module import Module
from .tensor import InputNeeds, Tensor, tracing
from .trace import INPUT, add_model_arguments, model_mode, names

PLACEHOLDER = "F"
"""Input i's unknown feature size is the symbol `F{i}` in probe traces."""

INPUT_DTYPES = ("float32", "float64", "int64", "int32")
HINT = "pass example_inputs= (an array, or a (shape, dtype) pair, per input) or input_shape=(features,)"


def input_types(
    model: Module, dtype: DType, input_shape: Sequence[int] | int | None = None, example_inputs: Any = None
) -> list[TensorType]:
    """The inputs' types `dtype'[B, ...]`: from `input_shape` (one float
    input of the program's dtype), else from `example_inputs`, else inferred."""
    if input_shape is not None and example_inputs is not None:
        raise ConfigError("pass input_shape= or example_inputs=, not both")
    count = forward_arity(model)
    if input_shape is not None:
        if count not in (1, None):
            raise ConfigError(f"input_shape= describes one input, but forward takes {count}; {HINT}")
        return [TensorType(dtype, (BATCH, *_shape(input_shape)))]
    if example_inputs is not None:
        return [_example_type(e, dtype) for e in _examples(example_inputs, count)]
    return _inferred_types(model, dtype, count or 1)


def forward_arity(model: Module) -> int | None:
    """How many inputs `forward` takes (None when it takes `*inputs`)."""
    try:
        parameters = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):
        return None
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind == p.VAR_POSITIONAL for p in parameters):
        return None
    return len([p for p in positional if p.default is p.empty]) or None


def _shape(input_shape: Sequence[int] | int) -> tuple[int, ...]:
    shape = (input_shape,) if isinstance(input_shape, int) else tuple(input_shape)
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape):
        raise ConfigError(f"input_shape must be positive integers, got {input_shape!r}")
    return shape


def _examples(example: Any, count: int | None) -> list[Any]:
    """One example per input: a single example for a one-input forward, a
    tuple of them (one per input) otherwise."""
    if _is_example(example) and count in (1, None):
        return [example]
    if not isinstance(example, tuple | list) or not example:
        raise ConfigError(
            "example_inputs must be an array or a (shape, dtype) pair such as ((32, 4), 'float32'), "
            f"or a tuple of them (one per input), got {type(example).__name__}"
        )
    if count is not None and len(example) != count:
        raise ConfigError(f"forward takes {count} inputs but example_inputs has {len(example)}")
    return list(example)


def _is_example(value: Any) -> bool:
    return _is_shape_and_dtype(value) or (hasattr(value, "shape") and hasattr(value, "dtype"))


def _example_type(example: Any, dtype: DType) -> TensorType:
    """The type of an example input: an array (its first axis is the batch)
    or a `(shape, dtype)` pair."""
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


def _inferred_types(model: Module, dtype: DType, count: int) -> list[TensorType]:
    """Probe traces, one per input the previous ones left unknown; when
    forward mixes an input with fixed sizes before any layer sees it (so a
    probe cannot run), the first layer's need that lets forward trace."""
    placeholders = [f"{PLACEHOLDER}{i}" for i in range(count)]
    types: list[TensorType | None] = [None] * count
    while None in types:
        trial = [t or TensorType(dtype, (BATCH, p)) for t, p in zip(types, placeholders, strict=True)]
        unknown = frozenset(p for p, t in zip(placeholders, types, strict=True) if t is None)
        try:
            _trace_with(model, trial, dtype, probe=unknown)
        except InputNeeds as needs:
            types[placeholders.index(needs.placeholder)] = _spec_type(needs.spec, dtype)
            continue
        except EmberError as e:
            if count == 1:
                return [_fallback_type(model, dtype, e)]
            raise ConfigError(f"cannot tell the types of the model's inputs ({e}); {HINT}") from None
        missing = names(INPUT, count)[types.index(None)]
        raise ConfigError(f"cannot tell the size of the model's input {missing}: no layer of it fixes it; {HINT}")
    return types  # type: ignore[return-value]


def _fallback_type(model: Module, dtype: DType, error: EmberError) -> TensorType:
    for spec in dict.fromkeys(m.input_spec() for m in model.modules() if m.input_spec() is not None):
        candidate = _spec_type(spec, dtype)
        try:
            _trace_with(model, [candidate], dtype, probe=frozenset())
        except EmberError:
            continue
        return candidate
    raise ConfigError(f"cannot tell the size of the model's input ({error}); {HINT}") from None


def _spec_type(spec: tuple[tuple[int, ...], str | None], dtype: DType) -> TensorType:
    shape, needed = spec
    return TensorType(DType.parse(needed) if needed else dtype, (BATCH, *shape))


def _trace_with(model: Module, x_types: list[TensorType], dtype: DType, probe: frozenset[str]) -> None:
    """Trace forward in eval mode on inputs of `x_types` (a probe trace
    stops at the first layer that fixes a `probe` size)."""
    graph = Graph("probe")
    xs = [graph.add_argument(name, t) for name, t in zip(names(INPUT, len(x_types)), x_types, strict=True)]
    with model_mode(model, False), tracing(graph, probe=probe, constants=ConstantPool(dtype)) as trace:
        add_model_arguments(graph, trace, model, dtype)
        model(*(Tensor(x) for x in xs))
