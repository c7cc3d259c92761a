"""Deterministic topological order, shared by fusion and scheduling.

Kahn's algorithm with a heap, as networkx's lexicographical_topological_sort
(same order: smallest rank first, ties by first appearance), written out
because importing networkx takes ~130 ms, more than a whole compile that
finds its machine code in the cache."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import TypeVar

T = TypeVar("T", bound=Hashable)


def ordered(items: Iterable[T], depends: Mapping[T, Iterable[T]], rank: Callable[[T], int]) -> list[T] | None:
    """`items` with each after everything it depends on, ties broken by
    `rank` (so dumps are stable); None when the dependencies have a cycle."""
    index: dict[T, int] = {}  # every node, in order of first appearance
    for item in items:
        index.setdefault(item, len(index))
    edges = dict.fromkeys((d, item) for item, deps in depends.items() for d in deps)  # once each, in order
    for d, item in edges:
        index.setdefault(item, len(index))
        index.setdefault(d, len(index))
    dependents: dict[T, list[T]] = {node: [] for node in index}
    waiting = dict.fromkeys(index, 0)
    for d, item in edges:
        dependents[d].append(item)
        waiting[item] += 1
    ready = [(rank(node), index[node], node) for node, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    result = []
    while ready:
        _, _, node = heapq.heappop(ready)
        result.append(node)
        for item in dependents[node]:
            waiting[item] -= 1
            if waiting[item] == 0:
                heapq.heappush(ready, (rank(item), index[item], item))
    return result if len(result) == len(index) else None
