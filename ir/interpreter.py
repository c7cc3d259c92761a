"""The NumPy reference interpreter: runs a graph exactly as its ops' reference
semantics say. It is the oracle every compiled kernel is tested against."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .errors import DTypeError, ShapeError
from .graph import Graph, Value
from .types import concrete_shape


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


def interpret(graph: Graph, arguments: Mapping[str, np.ndarray]) -> RunResult:
    """Run `graph` on NumPy arrays named like its arguments."""
    bindings = bind_symbols(graph, arguments)
    env: dict[Value, np.ndarray] = {a: arguments[a.name] for a in graph.arguments}  # type: ignore[index]
    with np.errstate(all="ignore"):
        for node in graph.nodes:
            attrs = {
                a.name: concrete_shape(node.attrs[a.name], bindings) if a.kind == "shape" else node.attrs[a.name]
                for a in node.op.attrs
            }
            result = np.asarray(node.op.evaluate(*(env[v] for v in node.inputs), **attrs))
            out = node.output.type
            result = result.astype(out.dtype.numpy, copy=False)
            expected = out.concrete_shape(bindings)
            if result.shape != expected:
                raise ShapeError(f"'{node.op.name}' produced shape {result.shape}, expected {out} = {expected}")
            env[node.output] = result
    return RunResult(
        outputs={k: env[v] for k, v in graph.outputs.items()},
        updates={k: env[v] for k, v in graph.updates.items()},
    )
