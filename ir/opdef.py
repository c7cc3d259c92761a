"""How an op is declared: `OpDef` holds everything about one op.

Each op is one `OpDef` entry in one of the `ir/ops/*.py` tables: its name,
arity, attributes, type rule, NumPy reference semantics, gradient (VJP)
rule and the input domains that tests and fuzzers draw from.
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .dtypes import DType
from .errors import EmberError, IRError
from .types import TensorType, is_symbol

if TYPE_CHECKING:
    from .builder import Builder
    from .graph import Node, Value

REQUIRED = object()
"""Default of an attribute that must be given."""

ATTR_KINDS = ("int", "float", "bool", "scalar", "ints", "shape", "dtype")


@dataclass(frozen=True, slots=True)
class Attr:
    """An attribute of an op: its name, kind (one of `ATTR_KINDS`) and default.

    `examples(input_types)` returns values of the attribute that the op's
    type rule accepts for inputs of those types (see `ir/ops/examples.py`),
    so that program generators can use the op without knowing it. Without
    it, generators draw from a few values of the kind (both booleans, every
    dtype, small numbers)."""

    name: str
    kind: str
    default: Any = REQUIRED
    examples: Callable[[Sequence[TensorType]], Sequence[Any]] | None = None

    def normalize(self, op: str, value: Any) -> Any:
        """Check `value` and convert it to the canonical Python form."""
        bad = IRError(f"op '{op}': attribute {self.name} must be {_KIND_DOC[self.kind]}, got {reprlib.repr(value)}")
        if self.kind == "dtype":
            try:
                return DType.parse(value)
            except (KeyError, TypeError):
                raise bad from None
        if self.kind == "bool":
            if isinstance(value, bool | np.bool_):
                return bool(value)
            raise bad
        if self.kind == "int":
            if _is_int(value):
                return int(value)
            raise bad
        if self.kind == "float":
            if _is_int(value) or isinstance(value, float | np.floating):
                return float(value)
            raise bad
        if self.kind == "scalar":
            if isinstance(value, bool | np.bool_):
                return bool(value)
            if _is_int(value):
                return int(value)
            if isinstance(value, float | np.floating):
                return float(value)
            raise bad
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise bad
        if self.kind == "ints" and all(_is_int(v) for v in value):
            return tuple(int(v) for v in value)
        if self.kind == "shape" and all(_is_dim(v) for v in value):
            return tuple(v if isinstance(v, str) else int(v) for v in value)
        raise bad


_KIND_DOC = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "scalar": "a number or boolean",
    "ints": "a list of integers",
    "shape": "a list of dimensions (integers >= 0 or symbols such as B)",
    "dtype": "an element type (f32, f64, i32, i64, bool)",
}


def _is_int(v: Any) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_)


def _is_dim(v: Any) -> bool:
    return (_is_int(v) and v >= 0) or is_symbol(v)


InferRule = Callable[[Sequence[TensorType], Mapping[str, Any]], TensorType]
"""(input types, attributes) -> result type; raises ShapeError/DTypeError."""

VJPRule = Callable[["Builder", "Node", "Value", Sequence[bool]], Sequence["Value | None"]]
"""(builder, node, cotangent of the result, which inputs need a gradient)
-> one cotangent per input (None where not needed). A cotangent may have the
result's broadcast shape: autodiff sums it down to the input's shape."""


@dataclass(frozen=True, eq=False)
class OpDef:
    """One op, declared once.

    `evaluate(*arrays, **attrs)` is the NumPy reference semantics; symbols in
    `shape` attributes are already replaced by their sizes when it is called.
    `vjp` is None for ops that have no gradient (comparisons, constants...).
    `domains` names, per input, the values the op is meant for
    (`real`, `positive`, `nonzero`, `bool`, `label`, `any`, and `seed`: a
    scalar int64 of any value, such as a random seed or a step counter).

    `emit(m, *operands, **attrs)` is the native code rule of an elementwise
    op: it computes the result from operand values with the methods of
    `compiler.codegen.vecmath.Math` (add, exp, select, compare, ...), at
    whatever vector width the kernel runs. For a reduction, `emit(m, acc, x)`
    combines two partial results and `identity` starts the accumulation.

    What the compiler needs to know beyond that is declared here too, so
    that adding an op touches its entry and its tests only:

    - `view(v, **attrs)` (layout ops): the strided view of the result, given
      a view `v` of the input (`compiler.views.View`: its `broadcast`,
      `transpose`, `reshape`, `slice` methods), or None when the result
      needs a copy;
    - `accumulate(v, domain, **attrs)` (reductions and scatters): where each
      index of the input's `domain` accumulates in the result, given the
      whole result as a view `v` (stride 0 along reduced axes; a pad's
      strided part of its result);
    - `lower(b, node)`: a replacement value built from other ops, for ops the
      native backend computes through their decomposition (mean, softmax);
    - `uses_index`: `emit` reads the loop index (`m.index(axis, dtype)`), so
      its kernel keeps the domain's last axis as its innermost loop;
    - `leading_inputs`: the inputs that are read at the leading indices of
      the domain, whose last axis the result adds (one_hot's labels, the
      indices of gather and scatter_add);
    - `rows`: "gather" for an op that reads rows of its input 0, a table
      [rows, columns], at the indices of input 1 (`emit(m, row, indices)`
      gets `row(indices)`, the current columns of a row, for input 0);
      "scatter" for one that accumulates its input 0 into the rows of its
      result named by input 1 (its `emit(m, acc, x, indices, **attrs)` also
      gets the indices);
    - `counts(shape, **attrs)`: for an op whose value is a number of elements
      of its input (size), the dims to multiply; such a node reads its
      input's shape, never its data;
    - `element_index`: the op's value at an element depends on that
      element's flat row-major index (its `emit` calls `m.flat_index()`): its
      values are a function of the index and its scalar inputs, so kernels
      recompute them where they are read instead of storing them."""

    name: str
    arity: int
    infer: InferRule
    evaluate: Callable[..., np.ndarray]
    vjp: VJPRule | None
    kind: str
    attrs: tuple[Attr, ...] = ()
    domains: tuple[str, ...] = ()
    doc: str = ""
    commutative: bool = False
    emit: Callable[..., Any] | None = None
    identity: float | None = None
    view: Callable[..., Any] | None = None
    accumulate: Callable[..., Any] | None = None
    lower: Callable[[Builder, Node], Value] | None = None
    uses_index: bool = False
    leading_inputs: tuple[int, ...] = ()
    rows: str | None = None
    counts: Callable[..., Sequence[Any]] | None = None
    element_index: bool = False
    attr_index: dict[str, Attr] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "attr_index", {a.name: a for a in self.attrs})

    def normalize_attrs(self, attrs: Mapping[str, Any]) -> dict[str, Any]:
        """Fill defaults, convert values, and reject unknown or missing attributes."""
        unknown = set(attrs) - set(self.attr_index)
        if unknown:
            raise IRError(f"op '{self.name}' has no attribute {sorted(unknown)[0]}")
        out = {}
        for a in self.attrs:
            if a.name in attrs:
                out[a.name] = a.normalize(self.name, attrs[a.name])
            elif a.default is REQUIRED:
                raise IRError(f"op '{self.name}' needs attribute {a.name}")
            else:
                out[a.name] = a.default
        return out

    def result_type(self, types: Sequence[TensorType], attrs: Mapping[str, Any]) -> TensorType:
        """The result type by the op's type rule, for normalized `attrs`.
        Errors name the op; a rule that trips over odd input (an IndexError...)
        still raises an ember error."""
        try:
            return self.infer(types, attrs)
        except EmberError as e:
            if f"'{self.name}'" not in str(e):  # shared rules (broadcasting, axes) do not know the op
                e.args = (f"op '{self.name}': {e}",)
            raise
        except (ValueError, TypeError, IndexError) as e:
            raise IRError(f"op '{self.name}': {e}") from e

    def __repr__(self) -> str:
        return f"<OpDef {self.name}>"
