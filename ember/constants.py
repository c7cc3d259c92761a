"""NumPy arrays used in a model's forward, as constants of its graphs.

An array met while tracing becomes an anonymous, non-persistent buffer
named `_constant.N`: a graph argument whose value lives in the program's
model arena, so it is saved and restored with checkpoints like any buffer
and never differentiated. Arrays with equal contents share one constant,
and every graph traced from one model takes the same constants in the same
order (a graph that does not use one still declares it), so the graphs of
all modes agree on their arguments."""

from __future__ import annotations

from typing import Any

import numpy as np

from .ir import DType, DTypeError, Graph, TensorType, Value

PREFIX = "_constant."


class ConstantPool:
    """The constants of the graphs traced from one model, in program `dtype`."""

    def __init__(self, dtype: DType) -> None:
        self.dtype = dtype
        self.arrays: dict[str, np.ndarray] = {}
        self._by_content: dict[tuple, str] = {}

    def value(self, array: Any, graph: Graph) -> Value:
        """The argument of `graph` standing for `array`, declared on first use."""
        data = np.asarray(array)
        if data.dtype.kind not in "biuf":
            raise DTypeError(f"a NumPy array used in forward must hold numbers, got dtype {data.dtype}")
        data = data.astype(np.float64)
        key = (data.shape, data.tobytes())
        name = self._by_content.get(key)
        if name is None:
            name = self._by_content[key] = f"{PREFIX}{len(self.arrays)}"
            self.arrays[name] = data
        return self._argument(graph, name)

    def _argument(self, graph: Graph, name: str) -> Value:
        for b in graph.buffers:
            if b.name == name:
                return b
        return graph.add_argument(name, TensorType(self.dtype, self.arrays[name].shape), "buffer")

    def complete(self, graph: Graph) -> None:
        """Give `graph` every constant, after the model's own buffers and in pool order."""
        constants = [self._argument(graph, name) for name in self.arrays]
        graph.buffers = [b for b in graph.buffers if not b.name.startswith(PREFIX)] + constants  # type: ignore[union-attr]
