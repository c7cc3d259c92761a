"""Check that a graph is well formed.

Generic checks first (values defined once and before use, outputs and
updates refer to the graph's values, every symbolic dimension is one an
argument binds), then each node against its op's own attribute and type
rules. A failure raises `VerifyError` showing the printed IR around the
failing line."""

from __future__ import annotations

from .errors import EmberError, IRError, VerifyError
from .graph import UPDATABLE_ROLES, Graph, Node, check_name, check_symbols
from .ops import OPS
from .printer import format_attr, graph_lines

CONTEXT_LINES = 5


def verify(graph: Graph) -> Graph:
    """Return `graph` unchanged if it is well formed; raise `VerifyError` otherwise."""
    defined = set()
    names = set()
    symbols = graph.bound_symbols()
    for arg in graph.arguments:
        if arg.name in names:
            _fail(graph, f"argument %{arg.name} is declared twice", arg_index=len(names))
        names.add(arg.name)
        defined.add(arg)
    for index, node in enumerate(graph.nodes):
        problem = _check_node(node, defined, symbols)
        if problem:
            _fail(graph, problem, node_index=index)
        defined.add(node.output)
    for index, (name, value) in enumerate(graph.outputs.items()):
        try:
            check_name(name)
        except IRError as e:
            _fail(graph, f"output {name!r}: {e}", tail_index=index)
        if value not in defined:
            _fail(graph, f"output {name} refers to a value that is not in the graph", tail_index=index)
    targets = {a.name: a for a in graph.arguments if a.role in UPDATABLE_ROLES}
    for index, (name, value) in enumerate(graph.updates.items(), start=len(graph.outputs)):
        if name not in targets:
            _fail(graph, f"update of %{name}: the graph has no param, buffer or state with that name", tail_index=index)
        if value not in defined:
            _fail(graph, f"update of %{name} refers to a value that is not in the graph", tail_index=index)
        if value.type != targets[name].type:
            _fail(
                graph,
                f"update of %{name}: the argument is {targets[name].type} but the new value is {value.type}",
                tail_index=index,
            )
    return graph


def _check_node(node: Node, defined: set, symbols: set[str]) -> str | None:
    op = node.op
    if OPS.get(op.name) is not op:
        return f"op '{op.name}' is not in the op table"
    if node.output.node is not node or node.output in defined:
        return "the result of this node is defined more than once"
    if len(node.inputs) != op.arity:
        return f"op '{op.name}' takes {op.arity} inputs, got {len(node.inputs)}"
    for i, value in enumerate(node.inputs):
        if value not in defined:
            return f"input {i} of '{op.name}' is not defined before this node"
    try:
        canonical = op.normalize_attrs(node.attrs)
        # `==` misses values of another type (1 for 1.0 or True, NumPy scalars), so compare printed forms too.
        printed = {k: format_attr(v) for k, v in node.attrs.items()}
        if canonical != dict(node.attrs) or printed != {k: format_attr(v) for k, v in canonical.items()}:
            return f"attributes of '{op.name}' are not in canonical form: {dict(node.attrs)}"
        expected = op.result_type([v.type for v in node.inputs], node.attrs)
        if expected != node.output.type:
            return f"'{op.name}' gives {expected} but the node says {node.output.type}"
        check_symbols(expected, symbols)
    except EmberError as e:
        return str(e)
    return None


def _fail(
    graph: Graph,
    message: str,
    node_index: int | None = None,
    arg_index: int | None = None,
    tail_index: int = 0,
) -> None:
    """Raise VerifyError; the failing line is an argument, a node, or (`tail_index`)
    an output or update line, counted from the first output line."""
    lines = graph_lines(graph)
    if node_index is not None:
        at = 1 + len(graph.arguments) + node_index
    elif arg_index is not None:
        at = 1 + arg_index
    else:
        at = 1 + len(graph.arguments) + len(graph.nodes) + tail_index
    lo, hi = max(0, at - CONTEXT_LINES), min(len(lines), at + CONTEXT_LINES + 1)
    shown = [(">> " if i == at else "   ") + lines[i] for i in range(lo, hi)]
    message = f"line {at + 1}: {message}"
    raise VerifyError(f"invalid graph {graph.name}: {message}\n" + "\n".join(shown))
