"""Deterministic topological order (networkx), shared by fusion and scheduling."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import TypeVar

import networkx as nx

T = TypeVar("T", bound=Hashable)


def ordered(items: Iterable[T], depends: Mapping[T, Iterable[T]], rank: Callable[[T], int]) -> list[T] | None:
    """`items` with each after everything it depends on, ties broken by
    `rank` (so dumps are stable); None when the dependencies have a cycle."""
    graph = nx.DiGraph()
    graph.add_nodes_from(items)
    graph.add_edges_from((d, item) for item, deps in depends.items() for d in deps)
    try:
        return list(nx.lexicographical_topological_sort(graph, key=rank))
    except nx.NetworkXUnfeasible:
        return None
