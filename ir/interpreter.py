"""The NumPy reference interpreter: runs a graph exactly as its ops' reference
semantics say. It is the oracle every compiled kernel is tested against."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import DTypeError, ShapeError
from .graph import Graph, Value
from .opdef import OpDef
from .types import TensorType, concrete_shape


@dataclass
class RunResult:
    """What one run of a graph produced: named outputs and the new values of
    updated params/state (not yet written anywhere)."""

    outputs: dict[str, np.ndarray]
    updates: dict[str, np.ndarray]


def bind_symbols(graph: Graph, arguments: Mapping[str, np.ndarray]) -> dict[str, int]:
    """Check each argument's dtype and shape against the graph and return the
    sizes of the symbolic dimensions (such as B)."""
    bindings: dict[str, int] = {}
    for arg in graph.arguments:
        if arg.name not in arguments:
            raise ShapeError(f"graph {graph.name}: missing argument %{arg.name}: {arg.type}")
        array = arguments[arg.name]
        if array.dtype != arg.type.dtype.numpy:
            raise DTypeError(f"argument %{arg.name} must be {arg.type.dtype.numpy}, got {array.dtype}")
        if array.ndim != arg.type.rank:
            raise ShapeError(f"argument %{arg.name} must have shape {arg.type}, got {array.shape}")
        for dim, size in zip(arg.type.shape, array.shape, strict=True):
            if isinstance(dim, str):
                dim_size = bindings.setdefault(dim, size)
                if dim_size != size:
                    raise ShapeError(
                        f"argument %{arg.name} has {dim}={size} but an earlier argument has {dim}={dim_size}"
                    )
            elif dim != size:
                raise ShapeError(f"argument %{arg.name} must have shape {arg.type}, got {array.shape}")
    return bindings


def evaluate(
    op: OpDef, attrs: Mapping[str, Any], inputs: Sequence[np.ndarray], out: TensorType, bindings: Mapping[str, int]
) -> np.ndarray:
    """One op applied to NumPy arrays, as `interpret` runs it: symbols in
    shape attributes bound, the result converted to `out`'s dtype and its
    shape checked. NumPy's floating-point warnings are the caller's to silence."""
    concrete = {
        a.name: concrete_shape(attrs[a.name], bindings) if a.kind == "shape" else attrs[a.name] for a in op.attrs
    }
    result = np.asarray(op.evaluate(*inputs, **concrete)).astype(out.dtype.numpy, copy=False)
    expected = out.concrete_shape(bindings)
    if result.shape != expected:
        raise ShapeError(f"'{op.name}' produced shape {result.shape}, expected {out} = {expected}")
    return result


def interpret(graph: Graph, arguments: Mapping[str, np.ndarray]) -> RunResult:
    """Run `graph` on NumPy arrays named like its arguments."""
    bindings = bind_symbols(graph, arguments)
    env: dict[Value, np.ndarray] = {a: arguments[a.name] for a in graph.arguments}  # type: ignore[index]
    with np.errstate(all="ignore"):
        for node in graph.nodes:
            inputs = [env[v] for v in node.inputs]
            env[node.output] = evaluate(node.op, node.attrs, inputs, node.output.type, bindings)
    return RunResult(
        outputs={k: env[v] for k, v in graph.outputs.items()},
        updates={k: env[v] for k, v in graph.updates.items()},
    )
