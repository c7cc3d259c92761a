"""The reference backend: runs a Program's graphs in the NumPy interpreter.

It keeps the same contract as the native backend (parameters and state
live in arenas and are updated in place after a successful step), so it is
the oracle for native code and the backend to debug with."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..ir import Graph, interpret
from .arena import Arena


class ReferenceExecutable:
    """Runs graphs by name against the model arena (params and buffers) and
    the optimizer state arena."""

    name = "reference"

    def __init__(
        self,
        graphs: Mapping[str, Graph],
        params: Arena,
        state: Arena,
        fixed: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        """`fixed`: inputs the owner keeps in arrays it writes in place
        between calls; every run reads them as they are, calls do not pass them."""
        self.graphs = graphs  # held: the owner may add graphs (a distributed step's halves)
        self.params = params
        self.state = state
        self.fixed = dict(fixed or {})
        self._bound: dict[str, tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = {}

    def use_state(self, state: Arena) -> None:
        """Run against optimizer state `state` from now on."""
        self.state = state

    def bind(
        self,
        graph: str,
        inputs: Mapping[str, np.ndarray] | None = None,
        outputs: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        """From now on graph `graph` reads `inputs` and writes `outputs` (by
        name) in these arrays, and runs neither take those inputs nor return
        those outputs (as the native backend's `bind`)."""
        self._bound[graph] = (dict(inputs or {}), dict(outputs or {}))

    def run(self, graph: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run graph `graph` on `inputs` (already validated) plus the current
        params and state; write its updates in place only after the whole
        graph has run; return its outputs (those bound copied into their
        arrays instead, as the native backend writes them there)."""
        g = self.graphs[graph]
        bound_inputs, bound_outputs = self._bound.get(graph, ({}, {}))
        arguments = dict(inputs) | bound_inputs
        arguments.update({a.name: self.fixed[a.name] for a in g.inputs if a.name in self.fixed})
        arguments.update({p.name: self.params[p.name] for p in [*g.params, *g.buffers]})
        arguments.update({s.name: self.state[s.name] for s in g.state})
        result = interpret(g, arguments)
        for name, value in result.updates.items():
            np.copyto(self.params[name] if name in self.params else self.state[name], value)
        # fresh arrays, as native code returns: an output may be an argument itself
        outputs = {name: np.array(value) for name, value in result.outputs.items()}
        for name, array in bound_outputs.items():
            np.copyto(array, outputs.pop(name))
        return outputs

    def release_memory(self) -> None:
        """Nothing to give back: the interpreter keeps no buffers between calls."""
