"""Simplification passes: common-subexpression elimination, constant
folding, algebraic identities, dead-code elimination. `simplify` runs them
to a fixed point."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

from ..ir import Builder, Graph, Node, Value
from ..ir.printer import format_attr
from .rewrite import dce, rewrite

MAX_ROUNDS = 10


def cse(graph: Graph) -> Graph:
    """Merge nodes that apply the same op with the same attributes to the same inputs."""
    seen: dict[tuple, Value] = {}

    def rule(b: Builder, node: Node) -> Value | None:
        inputs = [id(v) for v in node.inputs]
        if node.op.commutative:
            inputs.sort()
        key = (node.op.name, tuple(inputs), tuple(format_attr(node.attrs[a.name]) for a in node.op.attrs))
        if key in seen:
            return seen[key]
        seen[key] = node.output
        return None

    return rewrite(graph, rule)


def _constant_value(value: Value) -> float | int | bool | None:
    node = value.node
    return node.attrs["value"] if node is not None and node.op.name == "constant" else None


def fold_constants(graph: Graph) -> Graph:
    """Evaluate nodes whose inputs are all scalar constants, and sizes of
    static axes. A collective's value depends on the other processes: never folded."""

    def rule(b: Builder, node: Node) -> Value | None:
        out = node.output.type
        dims = node.op.counts(node.inputs[0].type.shape, **node.attrs) if node.op.counts is not None else None
        if dims is not None and all(isinstance(d, int) for d in dims):
            return b.const(math.prod(dims), out.dtype)
        if (
            node.op.arity == 0
            or node.op.kind == "collective"
            or out.rank != 0
            or any(_constant_value(v) is None for v in node.inputs)
        ):
            return None
        args = [np.asarray(_constant_value(v), v.type.dtype.numpy) for v in node.inputs]
        with np.errstate(all="ignore"):
            result = np.asarray(node.op.evaluate(*args, **node.attrs)).astype(out.dtype.numpy)
        return b.const(result.item(), out.dtype)

    return rewrite(graph, rule)


def _is(value: Value, number: float) -> bool:
    c = _constant_value(value)
    return c is not None and not isinstance(c, bool) and c == number


def _same_type(candidate: Value, node: Node) -> Value | None:
    """`candidate` replaces `node` only where it has exactly the node's type."""
    return candidate if candidate.type == node.output.type else None


def algebraic(graph: Graph) -> Graph:
    """Identities that remove work without changing any result."""

    def rule(b: Builder, node: Node) -> Value | None:
        op, ins = node.op.name, node.inputs
        x = ins[0] if ins else None
        if op in ("add", "sub") and _is(ins[1], 0):  # x + 0 -> x, x - 0 -> x
            return _same_type(ins[0], node)
        if op == "add" and _is(ins[0], 0):  # 0 + x -> x
            return _same_type(ins[1], node)
        if op in ("mul", "div", "pow") and _is(ins[1], 1):  # x * 1, x / 1, x ** 1 -> x
            return _same_type(ins[0], node)
        if op == "mul" and _is(ins[0], 1):  # 1 * x -> x
            return _same_type(ins[1], node)
        if op == "mul" and _is(ins[1], -1):  # x * -1 -> -x
            return _same_type(b.neg(ins[0]), node)
        if op == "pow" and _is(ins[1], 2):  # x ** 2 -> x * x
            return _same_type(b.mul(ins[0], ins[0]), node)
        if op == "select" and ins[1] is ins[2]:  # where(c, x, x) -> x
            return _same_type(ins[1], node)
        if op == "neg" and x.node is not None and x.node.op.name == "neg":  # -(-x) -> x
            return x.node.inputs[0]
        if op in ("reshape", "broadcast_to", "cast") and x.type == node.output.type:  # no-op layout or cast
            return x
        if op in ("slice", "pad") and x.type == node.output.type and set(node.attrs["steps"]) <= {1}:  # whole
            return x
        if op == "transpose" and list(node.attrs["perm"]) == list(range(x.type.rank)):  # identity perm
            return x
        if op == "transpose" and x.node is not None and x.node.op.name == "transpose":  # fold transposes
            inner = x.node.attrs["perm"]
            return b.transpose(x.node.inputs[0], perm=[inner[p] for p in node.attrs["perm"]])
        if op == "reshape" and x.node is not None and x.node.op.name == "reshape":  # reshape(reshape(x))
            return b.reshape(x.node.inputs[0], shape=node.attrs["shape"])
        return None

    return rewrite(graph, rule)


SIMPLIFY_PASSES = {"fold-constants": fold_constants, "algebraic": algebraic, "cse": cse, "dce": dce}


def simplify(graph: Graph, observe: Callable[[str, Graph, float], None] | None = None) -> Graph:
    """Run constant folding, algebraic identities, CSE and DCE until nothing
    changes. `observe(pass_name, graph, seconds)` sees the graph after each."""
    signature = structure(graph)
    for _ in range(MAX_ROUNDS):
        for name, simplify_pass in SIMPLIFY_PASSES.items():
            start = time.perf_counter()
            graph = simplify_pass(graph)
            if observe is not None:
                observe(name, graph, time.perf_counter() - start)
        new_signature = structure(graph)
        if new_signature == signature:
            break
        signature = new_signature
    return graph


def structure(graph: Graph) -> tuple:
    """What the graph computes, comparable between graphs: each node's op,
    attributes and inputs (by position), and where the results come from.
    Equal exactly when the printed graphs are (types follow from these),
    at a fraction of the cost of printing."""
    position: dict[Value, int] = {a: i for i, a in enumerate(graph.arguments)}
    nodes = []
    for node in graph.nodes:
        attrs = tuple((k, v.hex() if isinstance(v, float) else v) for k, v in node.attrs.items())  # nan == nan
        nodes.append((node.op.name, tuple(position[v] for v in node.inputs), attrs))
        position[node.output] = len(position)
    arguments = tuple((a.name, a.type, a.role) for a in graph.arguments)
    results = (
        tuple((k, position[v]) for k, v in graph.outputs.items()),
        tuple((k, position[v]) for k, v in graph.updates.items()),
    )
    return arguments, tuple(nodes), results
