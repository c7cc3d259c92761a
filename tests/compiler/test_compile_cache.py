"""The native pipeline's compile cache (compiler/native.py): compiled graphs
kept for reuse within a byte limit, least recently used dropped first."""

from dataclasses import dataclass

from ember.compiler.native import CompileCache


@dataclass
class Compiled:
    """Stands in for a CompiledGraph: only its size matters to the cache."""

    nbytes: int


def test_the_least_recently_used_graphs_go_first_beyond_the_limit() -> None:
    cache = CompileCache(limit_bytes=100)
    a, b, c = Compiled(40), Compiled(40), Compiled(40)
    cache.put("a", a)
    cache.put("b", b)
    assert cache.get("a") is a  # now b is the least recently used
    cache.put("c", c)
    assert cache.get("b") is None
    assert cache.get("a") is a
    assert cache.get("c") is c
    assert len(cache) == 2
    assert cache.nbytes == 80


def test_a_graph_that_grew_counts_at_its_new_size() -> None:
    """A compiled graph holds more once its assembly is dumped; the next put
    sees that."""
    cache = CompileCache(limit_bytes=100)
    first = Compiled(30)
    cache.put("first", first)
    first.nbytes = 90
    cache.put("second", Compiled(30))
    assert cache.get("first") is None
    assert len(cache) == 1


def test_a_graph_larger_than_the_limit_is_not_kept() -> None:
    cache = CompileCache(limit_bytes=100)
    cache.put("small", Compiled(10))
    cache.put("huge", Compiled(500))
    assert cache.get("huge") is None
    assert len(cache) == 0


def test_clear_empties_the_cache() -> None:
    cache = CompileCache(limit_bytes=100)
    cache.put("a", Compiled(10))
    cache.clear()
    assert len(cache) == 0
    assert cache.nbytes == 0
    assert cache.get("a") is None
