"""Random valid graphs drawn from the op table.

A `ProgramBuilder` appends one random program to a graph: op after op, it
picks an op from `ir.OPS`, operands (earlier results, mostly the latest
ones so that ops chain into fusable sequences, or new arguments), and
attributes (from each attribute's `examples`), keeps the choice if the op's
type rule accepts it, and runs the op's reference semantics at once on the
program's argument values. The values decide what is valid next:

- an operand must lie in the op's input domain (`OpDef.domains`), with a
  margin: `positive` values are >= MARGIN, `nonzero` ones at least MARGIN
  away from 0;
- every result is finite and at most LIMIT in magnitude, so that no
  backend's rounding can push a value over an overflow threshold;
- ops without a gradient rule and ops with non-float results (comparisons,
  `sign`, casts to integers) are discontinuous: a correct backend that
  rounds differently could flip their result. They take float operands only
  from exact values: arguments, and layout ops of arguments.

Nothing here names an op: a new op with domains and attribute `examples`
is generated as soon as it is in the op table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from inputs import draw

from ember.ir import BATCH, OPS, Builder, DType, EmberError, OpDef, TensorType, Value
from ember.ir.interpreter import evaluate

SIZES = (1, 2, 3, 4, 5, 7, 8, 9, 13, 16, 17, 31, 33)
"""Fixed dimensions: 1, multiples of 8 and 16, and sizes around them (vector tails)."""

SCALES = (0.01, 0.1, 1.0, 1.0, 1.0, 1.0, 1.0, 10.0, 100.0)
"""Factors of new real float arguments (whose drawn magnitudes lie in [0.25, 2])."""

MAX_RANK = 3
"""The largest rank of a new argument (layout ops may add one more axis)."""

MARGIN = 0.01
LIMIT = 1e4
INT_LIMIT = 1e6

KIND_WEIGHTS = {"elementwise": 4.0, "source": 0.5}
"""How often each op kind is picked relative to the others (default 1):
elementwise ops make the chains that fusion works on; sources (constants,
sizes, one-hot encodings) start new ones."""

DEFAULT_EXAMPLES = {
    "bool": (False, True),
    "int": (1, 2, 3, 5),
    "float": (0.01, 0.1, -0.5, 2.0),
    "scalar": (0, 1, -1, 0.5, 2.5, -3.0, True, False),
    "dtype": tuple(DType),
}
"""Values of attributes that declare no `examples`, by kind."""

ATTEMPTS = 40
"""Random tries at one valid node before the program stops growing."""

FIRST_TRIES = 3
"""First operands one try considers."""


@dataclass
class Entry:
    """A value a program may use as an operand, with its reference values."""

    value: Value
    array: np.ndarray
    exact: bool  # the same in every correct backend: an argument or a layout op of arguments


@dataclass
class Fresh:
    """A new argument proposed as an operand: added to the graph only if the node is kept."""

    type: TensorType
    array: np.ndarray


Operand = Entry | Fresh


def pick(rng: np.random.Generator, items: Sequence):
    """One element of `items`, uniformly."""
    return items[int(rng.integers(len(items)))]


def in_domain(domain: str, array: np.ndarray) -> bool:
    """Whether every element of `array` lies in `domain`, MARGIN away from its edge."""
    if domain == "positive":
        return bool(np.all(array >= MARGIN))
    if domain == "nonzero":
        return bool(np.all(np.abs(array) >= MARGIN))
    return True


def acceptable(array: np.ndarray) -> bool:
    """A result the program may keep: finite and of moderate magnitude."""
    if array.dtype.kind == "f":
        return bool(np.all(np.isfinite(array)) and np.all(np.abs(array) <= LIMIT))
    if array.dtype.kind in "iu":
        return bool(np.all(np.abs(array) <= INT_LIMIT))
    return True


def ops_by_kind() -> dict[str, list[OpDef]]:
    """The op table grouped by kind (elementwise, reduction, layout, ...)."""
    kinds: dict[str, list[OpDef]] = {}
    for op in OPS.values():
        kinds.setdefault(op.kind, []).append(op)
    return kinds


class ProgramBuilder:
    """Appends one random program to the graph behind `builder`.

    Argument and output names start with `prefix`. `dtype` is the float type
    of the arguments; `batch` the size bound to the symbol B (None: the
    program has fixed shapes only); `param_share` the chance that a new float
    argument of a fixed shape is a param rather than an input."""

    def __init__(
        self,
        builder: Builder,
        prefix: str,
        rng: np.random.Generator,
        dtype: DType,
        batch: int | None,
        param_share: float = 0.5,
    ) -> None:
        self.b = builder
        self.prefix = prefix
        self.rng = rng
        self.dtype = dtype
        self.bindings = {BATCH: batch} if batch is not None else {}
        self.param_share = param_share
        palette = list(rng.choice(SIZES, size=3, replace=False).tolist())
        self.palette: list[int | str] = [*palette, BATCH] if batch is not None else palette
        self.pool: list[Entry] = []
        self.arguments: dict[str, np.ndarray] = {}
        self.nodes = 0
        self._kinds = list(ops_by_kind().values())
        weights = np.array([KIND_WEIGHTS.get(ops[0].kind, 1.0) for ops in self._kinds])
        self._kind_weights = weights / weights.sum()

    # -- the program ------------------------------------------------------------------
    def build(self, nodes: int) -> dict[str, Value]:
        """Grow the program by up to `nodes` nodes; return its outputs by name:
        every result nothing uses, and some others. The first argument has
        the batch axis, when the program has one, so that B is bound."""
        shape = tuple(pick(self.rng, self.palette) for _ in range(int(self.rng.integers(1, MAX_RANK + 1))))
        if self.bindings and BATCH not in shape:
            shape = (BATCH, *shape[1:])
        self._materialize(self._fresh("real", self.dtype, shape))
        for _ in range(nodes):
            if not self.grow():
                break
        used = {v for e in self.pool if e.value.node is not None for v in e.value.node.inputs}
        results = [e.value for e in self.pool if e.value.node is not None]
        chosen = [v for v in results if v not in used or self.rng.random() < 0.2]
        return {f"{self.prefix}.o{i}": v for i, v in enumerate(chosen)}

    def grow(self) -> bool:
        """Append one valid node; False if no try succeeded."""
        for _ in range(ATTEMPTS):
            op = pick(self.rng, self._kinds[self.rng.choice(len(self._kinds), p=self._kind_weights)])
            node = self._propose(op)
            if node is not None:
                operands, attrs, out, result = node
                inputs = [self._materialize(o) for o in operands]
                value = self.b.emit(op, *inputs, **attrs)
                exact = op.kind == "layout" and all(_exact(o) for o in operands)
                self.pool.append(Entry(value, result, exact or not out.dtype.is_float))
                self.nodes += 1
                return True
        return False

    def _propose(self, op: OpDef):
        """Operands and attributes for `op` that its rules accept, with the
        result's type and values; None when this try fails. The first operand
        is one of a few candidates, attributes are drawn from their examples
        for it, and each further operand is the first of a few candidates
        that the type rule accepts."""
        numeric = self._numeric_dtype()
        domains = op.domains or ("any",) * op.arity
        firsts = self._first_operands(domains[0], numeric) if op.arity else [None]
        for first in firsts[:FIRST_TRIES]:
            operands: list[Operand] = [first] if first is not None else []
            attrs = self._attributes(op, [_type(o) for o in operands])
            for position in range(1, op.arity):
                if attrs is None:
                    break
                operand = self._next_operand(op, attrs, operands, domains[position], numeric)
                if operand is None:
                    break
                operands.append(operand)
            if attrs is None or len(operands) < op.arity:
                continue
            types = [_type(o) for o in operands]
            out = _infer(op, types, attrs)
            if out is None:
                continue
            discontinuous = op.vjp is None or not out.dtype.is_float
            if discontinuous and any(t.dtype.is_float and not _exact(o) for t, o in zip(types, operands, strict=True)):
                continue
            with np.errstate(all="ignore"):
                result = evaluate(op, attrs, [o.array for o in operands], out, self.bindings)
            if acceptable(result):
                return operands, attrs, out, result
        return None

    def _numeric_dtype(self) -> DType:
        """The dtype of the operands without a domain of their own: mostly
        the latest result's (to continue its chain) or the program's float
        type, sometimes an integer type or bool."""
        chance = self.rng.random()
        if chance < 0.5 and self.nodes:
            return self.pool[-1].value.type.dtype
        if chance < 0.85:
            return self.dtype
        return pick(self.rng, [DType.int32, DType.int64, DType.bool])

    def _attributes(self, op: OpDef, types: list[TensorType]) -> dict | None:
        attrs = {}
        for attr in op.attrs:
            values = attr.examples(types) if attr.examples else DEFAULT_EXAMPLES.get(attr.kind, ())
            values = [v for v in values if self._bound(v)]
            if not values:
                return None
            attrs[attr.name] = pick(self.rng, values)
        try:
            return op.normalize_attrs(attrs)
        except EmberError:
            return None

    # -- operands ---------------------------------------------------------------------
    def _operand_dtype(self, domain: str, numeric: DType) -> DType:
        if domain == "bool":
            return DType.bool
        if domain == "label":
            return pick(self.rng, [DType.int32, DType.int64])
        if domain == "seed":
            return DType.int64
        return numeric

    def _candidates(self, domain: str, dtype: DType) -> list[Entry]:
        """Earlier values of `dtype` that lie in the operand's domain."""
        return [e for e in self.pool if e.value.type.dtype is dtype and in_domain(domain, e.array)]

    def _first_operands(self, domain: str, numeric: DType) -> list[Operand]:
        """Candidates for the first operand, best first: mostly the latest
        results (a chain), else earlier values, and a new argument of a
        random shape."""
        dtype = self._operand_dtype(domain, numeric)
        existing = self._candidates(domain, dtype)
        latest = [e for e in existing if e.value.node is not None][-2:][::-1]
        earlier = [existing[int(i)] for i in self.rng.permutation(len(existing))]
        rank = 0 if domain == "seed" else int(self.rng.integers(MAX_RANK + 1))
        fresh = self._fresh(domain, dtype, tuple(pick(self.rng, self.palette) for _ in range(rank)))
        if self.rng.random() < 0.15 or not existing:
            return [fresh, *latest, *earlier]
        return [*latest, *earlier, fresh] if self.rng.random() < 0.75 else [*earlier, fresh]

    def _next_operand(self, op: OpDef, attrs: dict, operands: list[Operand], domain: str, numeric: DType):
        """The first candidate the type rule accepts after `operands` (the
        positions after it filled with the candidate itself): earlier values
        and new arguments of shapes related to the first operand's."""
        dtype = self._operand_dtype(domain, numeric)
        proposals: list[Entry | tuple] = [
            *self._candidates(domain, dtype),
            *self._related_shapes(_type(operands[0]).shape),
        ]
        known = [_type(o) for o in operands]
        for i in self.rng.permutation(len(proposals)):
            candidate = proposals[int(i)]
            type = candidate.value.type if isinstance(candidate, Entry) else TensorType(dtype, candidate)
            if _infer(op, [*known, *[type] * (op.arity - len(known))], attrs) is not None:
                return candidate if isinstance(candidate, Entry) else self._fresh(domain, dtype, candidate)
        return None

    def _fresh(self, domain: str, dtype: DType, shape: tuple) -> Fresh:
        """A new argument of values drawn from `domain`; real floats are
        sometimes scaled by a power of ten, for a wider range of magnitudes."""
        concrete = tuple(self.bindings[d] if isinstance(d, str) else d for d in shape)
        values = draw("real" if domain == "any" else domain, concrete, self.rng, dtype)
        if dtype.is_float and domain in ("real", "any"):
            values = (values * pick(self.rng, SCALES)).astype(dtype.numpy)
        return Fresh(TensorType(dtype, shape), values)

    def _related_shapes(self, first: tuple) -> list[tuple]:
        """Shapes likely to combine with `first`: itself, with some axes of
        size 1, its suffixes, a scalar, its first or last axis beside a
        palette size, random shapes of its and the palette's sizes."""
        shapes = [first, tuple(1 if self.rng.random() < 0.5 else d for d in first), ()]
        shapes += [first[i:] for i in range(1, len(first))]
        for d in first[:1] + first[-1:]:
            size = pick(self.rng, self.palette)
            shapes += [(d, size), (size, d)]
        alphabet = [*first, *self.palette, 1]
        for _ in range(3):
            rank = int(self.rng.integers(1, MAX_RANK + 1))
            shapes.append(tuple(pick(self.rng, alphabet) for _ in range(rank)))
        return shapes

    def _materialize(self, operand: Operand) -> Value:
        if isinstance(operand, Entry):
            return operand.value
        name = f"{self.prefix}.a{len(self.arguments)}"
        is_param = operand.type.dtype is self.dtype and operand.type.is_static and self.rng.random() < self.param_share
        value = self.b.graph.add_argument(name, operand.type, "param" if is_param else "input")
        self.arguments[name] = operand.array
        self.pool.append(Entry(value, operand.array, exact=True))
        return value

    def _bound(self, value) -> bool:
        """An attribute value mentions only symbols this program binds."""
        if isinstance(value, tuple):
            return all(not isinstance(d, str) or d in self.bindings for d in value)
        return True


def _type(operand: Operand) -> TensorType:
    return operand.value.type if isinstance(operand, Entry) else operand.type


def _infer(op: OpDef, types: list[TensorType], attrs: dict) -> TensorType | None:
    try:
        return op.infer(types, attrs)
    except (EmberError, ValueError, TypeError, IndexError):
        return None


def _exact(operand: Operand) -> bool:
    return isinstance(operand, Fresh) or operand.exact
