"""ember's graph IR: types, the op table, graphs, and the tools around them
(builder, verifier, printer, parser, reference interpreter, graph views).
This layer imports nothing else of ember's."""

from .builder import Builder
from .dtypes import DType
from .errors import (
    CheckpointError,
    ConfigError,
    DTypeError,
    EmberError,
    InputError,
    IRError,
    ParseError,
    ShapeError,
    VerifyError,
)
from .graph import ROLES, Graph, Node, Value
from .interpreter import RunResult, interpret
from .opdef import Attr, OpDef
from .ops import OPS, get_op
from .parser import parse, parse_file
from .printer import print_graph
from .types import BATCH, TensorType, broadcast_shapes
from .verifier import verify
from .views import to_dot, to_networkx

__all__ = [
    "BATCH",
    "OPS",
    "ROLES",
    "Attr",
    "Builder",
    "CheckpointError",
    "ConfigError",
    "DType",
    "DTypeError",
    "EmberError",
    "Graph",
    "IRError",
    "InputError",
    "Node",
    "OpDef",
    "ParseError",
    "RunResult",
    "ShapeError",
    "TensorType",
    "Value",
    "VerifyError",
    "broadcast_shapes",
    "get_op",
    "interpret",
    "parse",
    "parse_file",
    "print_graph",
    "to_dot",
    "to_networkx",
    "verify",
]
