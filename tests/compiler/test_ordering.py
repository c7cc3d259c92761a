"""The deterministic topological order (compiler/ordering.py) is networkx's
lexicographical topological sort, cycles included."""

import networkx as nx
from hypothesis import given, settings
from hypothesis import strategies as st

from ember.compiler.ordering import ordered


def networkx_order(items, depends, rank):
    graph = nx.DiGraph()
    graph.add_nodes_from(items)
    graph.add_edges_from((d, item) for item, deps in depends.items() for d in deps)
    try:
        return list(nx.lexicographical_topological_sort(graph, key=rank))
    except nx.NetworkXUnfeasible:
        return None


@st.composite
def dependency_graphs(draw):
    """Items 0..n-1 in any order, each depending on a few nodes (some outside
    the items, some itself, so cycles occur), and a rank with ties."""
    n = draw(st.integers(0, 12))
    items = draw(st.permutations(list(range(n))))
    nodes = st.integers(0, n + 1)
    depends = {item: draw(st.lists(nodes, max_size=3)) for item in items}
    ranks = draw(st.lists(st.integers(0, 4), min_size=n + 2, max_size=n + 2))
    return items, depends, ranks


@settings(max_examples=500, deadline=None)
@given(dependency_graphs())
def test_the_order_is_networkx_lexicographical_topological_sort(case):
    items, depends, ranks = case
    assert ordered(items, depends, ranks.__getitem__) == networkx_order(items, depends, ranks.__getitem__)


def test_a_cycle_gives_none():
    assert ordered([1, 2], {1: [2], 2: [1]}, lambda node: node) is None
    assert ordered([1, 2], {2: [1]}, lambda node: -node) == [1, 2]
