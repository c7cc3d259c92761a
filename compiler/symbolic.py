"""Integer polynomials over shape symbols (such as the batch size `B`).

Buffer sizes, strides and offsets of a program that runs at any batch size
are polynomials like `128*B + 64`; the runtime evaluates them for the
actual `B`, and the code generator emits them as integer arithmetic."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

Monomial = tuple[str, ...]  # sorted symbol names; () is the constant term


@dataclass(frozen=True)
class Poly:
    """A polynomial with integer coefficients, immutable and hashable."""

    terms: tuple[tuple[Monomial, int], ...] = ()

    @staticmethod
    def of(value: int | str | Poly) -> Poly:
        """A constant, a symbol, or `value` itself."""
        if isinstance(value, Poly):
            return value
        if isinstance(value, str):
            return Poly((((value,), 1),))
        return Poly((((), int(value)),) if value else ())

    @staticmethod
    def _make(terms: Mapping[Monomial, int]) -> Poly:
        return Poly(tuple(sorted((m, c) for m, c in terms.items() if c)))

    def __add__(self, other: int | str | Poly) -> Poly:
        terms = dict(self.terms)
        for m, c in Poly.of(other).terms:
            terms[m] = terms.get(m, 0) + c
        return Poly._make(terms)

    __radd__ = __add__

    def __mul__(self, other: int | str | Poly) -> Poly:
        terms: dict[Monomial, int] = {}
        for m1, c1 in self.terms:
            for m2, c2 in Poly.of(other).terms:
                m = tuple(sorted(m1 + m2))
                terms[m] = terms.get(m, 0) + c1 * c2
        return Poly._make(terms)

    __rmul__ = __mul__

    @property
    def is_constant(self) -> bool:
        return all(m == () for m, _ in self.terms)

    @property
    def constant(self) -> int:
        """The value of a constant polynomial (raises on a symbolic one)."""
        if not self.is_constant:
            raise ValueError(f"{self} is not a constant")
        return self.terms[0][1] if self.terms else 0

    def evaluate(self, bindings: Mapping[str, int]) -> int:
        total = 0
        for m, c in self.terms:
            for s in m:
                c *= bindings[s]
            total += c
        return total

    def dominates(self, other: Poly) -> bool:
        """True when self >= other for every binding of symbols >= 1 (checked
        coefficient-wise, which is exact for the non-negative sizes used here)."""
        mine = dict(self.terms)
        return all(mine.get(m, 0) >= c for m, c in other.terms)

    def __str__(self) -> str:
        if not self.terms:
            return "0"
        parts = []
        for m, c in sorted(self.terms, key=lambda t: (-len(t[0]), t[0])):
            factors = ([str(c)] if c != 1 or not m else []) + list(m)
            parts.append("*".join(factors))
        return " + ".join(parts).replace("+ -", "- ")

    def __repr__(self) -> str:
        return f"Poly({self})"


def maximum(a: Poly, b: Poly) -> Poly:
    """A polynomial at least as large as both (coefficient-wise maximum)."""
    terms = dict(a.terms)
    for m, c in b.terms:
        terms[m] = max(terms.get(m, 0), c)
    return Poly._make(terms)


LARGE = 1009
"""The value `estimate` gives every symbol (a prime: no accidental equalities)."""


def estimate(size: Poly) -> int:
    """`size` with every symbol set to a large value: orders sizes as they
    compare at large batch sizes."""
    return size.evaluate(_AnyLarge())


class _AnyLarge(dict):
    def __missing__(self, key: str) -> int:
        return LARGE


def product(dims: Iterable[int | str | Poly]) -> Poly:
    result = Poly.of(1)
    for d in dims:
        result = result * Poly.of(d)
    return result


def row_major_strides(shape: Iterable[int | str]) -> tuple[Poly, ...]:
    """Element strides of a C-contiguous array of `shape`."""
    shape = list(shape)
    strides = []
    running = Poly.of(1)
    for d in reversed(shape):
        strides.append(running)
        running = running * Poly.of(d)
    return tuple(reversed(strides))
