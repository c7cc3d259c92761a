"""The graph IR: a flat SSA list of nodes over typed tensor values.

A `Graph` has named arguments in four roles (runtime `inputs`, model
`params`, model `buffers` such as BatchNorm's running statistics, optimizer
`state`), a list of `nodes` in execution order, named `outputs`, and
`updates`: the new value of a param, buffer or state argument after one run
(applied in place by the backends). Buffers are never differentiated nor
given optimizer state. Each node has one result.
Intermediate values carry no names; the printer numbers them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import IRError
from .types import TensorType

if TYPE_CHECKING:
    from .opdef import OpDef

ROLES = ("input", "param", "buffer", "state")
UPDATABLE_ROLES = ("param", "buffer", "state")
"""The roles of arguments an update may target."""


class Value:
    """A tensor value: a graph argument (`node is None`) or a node's result."""

    __slots__ = ("name", "node", "role", "type")

    def __init__(
        self,
        type: TensorType,
        node: Node | None = None,
        name: str | None = None,
        role: str | None = None,
    ) -> None:
        self.type = type
        self.node = node
        self.name = name
        self.role = role

    def __repr__(self) -> str:
        what = f"%{self.name}" if self.name else (self.node.op.name if self.node else "?")
        return f"<Value {what}: {self.type}>"


@dataclass(eq=False, slots=True)
class Node:
    """One operation: `output = op(*inputs, **attrs)`."""

    op: OpDef
    inputs: tuple[Value, ...]
    attrs: Mapping[str, Any]
    output: Value = field(init=False)

    def __repr__(self) -> str:
        return f"<Node {self.op.name} -> {self.output.type}>"


class Graph:
    """A program in the graph IR. Build it with `ir.Builder`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.inputs: list[Value] = []
        self.params: list[Value] = []
        self.buffers: list[Value] = []
        self.state: list[Value] = []
        self.nodes: list[Node] = []
        self.outputs: dict[str, Value] = {}
        self.updates: dict[str, Value] = {}

    # -- arguments -----------------------------------------------------
    @property
    def arguments(self) -> list[Value]:
        """All arguments: inputs, then params, then buffers, then state."""
        return [*self.inputs, *self.params, *self.buffers, *self.state]

    def add_argument(self, name: str, type: TensorType, role: str = "input") -> Value:
        """Declare a named argument in one of the roles `input`, `param`, `buffer`, `state`."""
        if role not in ROLES:
            raise IRError(f"unknown argument role {role!r}; expected one of {ROLES}")
        check_name(name)
        if any(a.name == name for a in self.arguments):
            raise IRError(f"graph {self.name} already has an argument named %{name}")
        value = Value(type, name=name, role=role)
        {"input": self.inputs, "param": self.params, "buffer": self.buffers, "state": self.state}[role].append(value)
        return value

    def bound_symbols(self) -> set[str]:
        """The symbols of the arguments' shapes: the sizes known when the graph runs."""
        return {d for a in self.arguments for d in a.type.symbols}

    def argument(self, name: str) -> Value:
        for a in self.arguments:
            if a.name == name:
                return a
        raise IRError(f"graph {self.name} has no argument named %{name}")

    # -- nodes ---------------------------------------------------------
    def append(self, op: OpDef, inputs: tuple[Value, ...], attrs: Mapping[str, Any], type: TensorType) -> Value:
        """Append a node whose result has `type` (callers run the op's type
        rule; the verifier re-checks it). Return the result value."""
        node = Node(op, inputs, attrs)
        node.output = Value(type, node)
        self.nodes.append(node)
        return node.output

    def values(self) -> Iterator[Value]:
        """Arguments, then node results, in definition order."""
        yield from self.arguments
        for node in self.nodes:
            yield node.output

    def clone(self, name: str | None = None) -> tuple[Graph, dict[Value, Value]]:
        """A deep copy, and the map from this graph's values to the copy's."""
        copy = Graph(name or self.name)
        mapping: dict[Value, Value] = {}
        for a in self.arguments:
            mapping[a] = copy.add_argument(a.name, a.type, a.role)  # type: ignore[arg-type]
        for node in self.nodes:
            inputs = tuple(mapping[v] for v in node.inputs)
            mapping[node.output] = copy.append(node.op, inputs, node.attrs, node.output.type)
        copy.outputs = {k: mapping[v] for k, v in self.outputs.items()}
        copy.updates = {k: mapping[v] for k, v in self.updates.items()}
        return copy, mapping

    def __str__(self) -> str:
        from .printer import print_graph

        return print_graph(self)

    def __repr__(self) -> str:
        return f"<Graph {self.name}: {len(self.arguments)} arguments, {len(self.nodes)} nodes>"


def check_name(name: str) -> None:
    """Argument and output names: letters, digits, `_` and `.`, not all digits
    (numbers name intermediate values in IR text)."""
    if not name or name.isdigit() or not all(c.isalnum() or c in "_." for c in name) or not name.isascii():
        raise IRError(f"invalid name {name!r}: use letters, digits, '_' and '.', and not only digits")


def check_symbols(type: TensorType, bound: set[str]) -> None:
    """Raise IRError unless every symbol of `type` is in `bound`: sizes are
    bound from the arguments when a graph runs, so a symbol that no argument
    has is a size nobody knows."""
    for symbol in type.symbols:
        if symbol not in bound:
            raise IRError(f"symbol {symbol} of {type} is not a dimension of any argument, so its size is never known")
