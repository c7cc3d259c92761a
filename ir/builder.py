"""`Builder` appends nodes to a graph, running each op's type rule.

b = Builder(graph)
h = b.relu(b.add(b.matmul(x, w, transpose_b=True), bias))
scaled = b.mul(h, 0.5)          # numbers become constants of h's dtype
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .dtypes import DType
from .errors import IRError
from .graph import Graph, Value, check_symbols
from .opdef import OpDef
from .ops import OPS, get_op
from .types import TensorType

Operand = Value | float | int | bool


class Builder:
    """Appends type-checked nodes to the end of `graph`."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph

    def emit(self, op: str | OpDef, *operands: Operand, **attrs: Any) -> Value:
        """Append `op(*operands, **attrs)` and return its result.

        Python numbers among the operands become scalar constants of the
        dtype of the (non-bool, when there is one) tensor operands."""
        opdef = op if isinstance(op, OpDef) else get_op(op)
        if len(operands) != opdef.arity:
            raise IRError(f"op '{opdef.name}' takes {opdef.arity} inputs, got {len(operands)}")
        inputs = self._constants_for_numbers(opdef, operands)
        attrs = opdef.normalize_attrs(attrs)
        type = opdef.result_type([v.type for v in inputs], attrs)
        self._check_symbols(opdef, type, inputs)
        return self.graph.append(opdef, inputs, attrs, type)

    def const(self, value: float | int | bool, dtype: DType | str) -> Value:
        """A scalar constant."""
        return self.emit("constant", value=value, dtype=dtype)

    def _check_symbols(self, opdef: OpDef, type: TensorType, inputs: tuple[Value, ...]) -> None:
        """A symbol in the result that no input has (a broadcast to [B,4])
        must be a dimension of some argument of the graph."""
        if all(any(d in v.type.symbols for v in inputs) for d in type.symbols):
            return
        try:
            check_symbols(type, self.graph.bound_symbols())
        except IRError as e:
            raise IRError(f"op '{opdef.name}': {e}") from None

    def _constants_for_numbers(self, opdef: OpDef, operands: tuple[Operand, ...]) -> tuple[Value, ...]:
        tensors = [v for v in operands if isinstance(v, Value)]
        if len(tensors) == len(operands):
            return operands  # type: ignore[return-value]
        for v in operands:
            if not isinstance(v, Value | bool | int | float):
                raise IRError(f"op '{opdef.name}': operand {v!r} is neither a Value nor a number")
        numeric = [v.type.dtype for v in tensors if v.type.dtype is not DType.bool]
        if not numeric and not tensors:
            raise IRError(f"op '{opdef.name}': cannot tell the dtype of constants without a tensor operand")
        dtype = numeric[0] if numeric else DType.bool
        return tuple(v if isinstance(v, Value) else self.const(v, dtype) for v in operands)

    def __getattr__(self, name: str) -> Callable[..., Value]:
        if name in OPS:
            return lambda *operands, **attrs: self.emit(name, *operands, **attrs)
        raise AttributeError(f"{type(self).__name__} has no attribute or op named {name!r}")
