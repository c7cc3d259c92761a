"""Strided views: how a kernel reads a stored tensor at its own indices.

Layout ops (those whose entry has a `view` rule: broadcast_to, transpose,
reshape) and implicit broadcasting never move data in compiled code: they
compose into a `View`, a base tensor plus one stride per index of the
reader (0 where it broadcasts)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..ir import Node, Value
from ..ir.types import Dim
from .symbolic import Poly, estimate, product, row_major_strides


@dataclass(frozen=True)
class View:
    """`base[offset + sum(index[k] * strides[k])]`, seen with `shape`."""

    base: Value
    shape: tuple[Dim, ...]
    strides: tuple[Poly, ...]
    offset: Poly = field(default_factory=Poly)

    @staticmethod
    def of(value: Value) -> View:
        """The whole of a stored value, in its own row-major layout."""
        return View(value, value.type.shape, row_major_strides(value.type.shape))

    def broadcast(self, shape: Sequence[Dim]) -> View:
        """NumPy broadcasting to `shape` (new leading axes and size-1 axes get stride 0)."""
        shape = tuple(shape)
        lead = len(shape) - len(self.shape)
        strides = [Poly()] * lead
        for have, want, stride in zip(self.shape, shape[lead:], self.strides, strict=True):
            strides.append(Poly() if have == 1 and want != 1 else stride)
        return View(self.base, shape, tuple(strides), self.offset)

    def transpose(self, perm: Sequence[int]) -> View:
        return View(self.base, tuple(self.shape[p] for p in perm), tuple(self.strides[p] for p in perm), self.offset)

    def slice(self, starts: Sequence[int], steps: Sequence[int], shape: Sequence[Dim]) -> View:
        """`shape[k]` elements from `starts[k]` by `steps[k]` along each axis:
        the offset moves to the first element and each stride scales by its step."""
        offset = self.offset
        for start, stride in zip(starts, self.strides, strict=True):
            offset = offset + stride * start
        strides = tuple(stride * step for stride, step in zip(self.strides, steps, strict=True))
        return View(self.base, tuple(shape), strides, offset)

    def unreduce(self, domain: Sequence[Dim], axes: Sequence[int]) -> View:
        """A reduction's result over `axes` seen from its input's `domain`:
        every index along a reduced axis lands on the same element (stride 0).
        The result may keep the reduced axes (size 1) or not."""
        reduced = {a % len(domain) for a in axes}
        kept = iter(s for k, s in enumerate(self.strides) if len(self.shape) != len(domain) or k not in reduced)
        strides = tuple(Poly() if k in reduced else next(kept) for k in range(len(domain)))
        return View(self.base, tuple(domain), strides, self.offset)

    def reshape(self, shape: Sequence[Dim]) -> View | None:
        """The same elements in row-major order with a new shape, or None when
        that needs a copy (the view's elements are not laid out compatibly).

        Non-unit dims of the old and new shapes are matched in groups of equal
        element count; each old group must be contiguous in memory. A tensor
        with a static dimension of 0 has no elements to lay out: any shape
        of it is a view."""
        if 0 in self.shape:
            return View(self.base, tuple(shape), row_major_strides(shape), self.offset)
        old = [(Poly.of(d), s) for d, s in zip(self.shape, self.strides, strict=True) if d != 1]
        new = [k for k, d in enumerate(shape) if d != 1]
        strides = [Poly()] * len(shape)
        i = j = 0
        while i < len(old) and j < len(new):
            old_group, new_group = [old[i]], [new[j]]
            i, j = i + 1, j + 1
            while (size := product(d for d, _ in old_group)) != (want := product(shape[k] for k in new_group)):
                if estimate(size) < estimate(want) and i < len(old):
                    old_group.append(old[i])
                    i += 1
                elif estimate(want) < estimate(size) and j < len(new):
                    new_group.append(new[j])
                    j += 1
                else:
                    return None
            if any(s0 != s1 * d1 for (_, s0), (d1, s1) in itertools.pairwise(old_group)):
                return None
            running = old_group[-1][1]
            for k in reversed(new_group):
                strides[k] = running
                running = running * Poly.of(shape[k])
        if i < len(old) or j < len(new):
            return None
        return View(self.base, tuple(shape), tuple(strides), self.offset)


def is_layout(value: Value) -> bool:
    """Is `value` computed by a layout op (one whose entry has a view rule)?"""
    return value.node is not None and value.node.op.view is not None


def layout_view(value: Value, is_base: Callable[[Value], bool]) -> View | None:
    """`value` as a view of the first value under it (through layout nodes)
    for which `is_base` holds; None when a reshape on the way needs a copy."""
    if not is_layout(value) or is_base(value):
        return View.of(value)
    node = value.node
    inner = layout_view(node.inputs[0], is_base)
    if inner is None:
        return None
    return node.op.view(inner, **node.attrs)


def accumulate_view(node: Node, domain: Sequence[Dim]) -> View:
    """Where a reduction or scatter `node` iterating over `domain` accumulates
    each index in its result (by the op's `accumulate` rule)."""
    return node.op.accumulate(View.of(node.output), tuple(domain), **node.attrs)


def read_view(value: Value, shape: Sequence[Dim], is_base: Callable[[Value], bool]) -> View:
    """How a reader iterating over `shape` sees `value` (implicit broadcasting included)."""
    view = layout_view(value, is_base)
    if view is None:
        raise AssertionError(f"{value} has no view; fusion should have stored a copy")
    return view if tuple(view.shape) == tuple(shape) else view.broadcast(shape)
