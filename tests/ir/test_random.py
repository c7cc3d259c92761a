"""Random numbers (ir/ops/random.py): Philox4x32-10 against the known-answer
vectors of Random123, and `random_uniform` against a scalar Philox written
here on Python integers."""

from __future__ import annotations

import numpy as np
import pytest

from ember.ir import Builder, DType, DTypeError, Graph, IRError, ShapeError, TensorType, interpret
from ember.ir.ops.random import philox4x32

MASK = 0xFFFFFFFF

KAT = [
    # Random123 tests/kat_vectors, "philox4x32 10": counter[4], key[2] -> output[4]
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((MASK, MASK, MASK, MASK), (MASK, MASK), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


@pytest.mark.parametrize(("counter", "key", "expected"), KAT)
def test_philox_known_answers(counter, key, expected) -> None:
    assert tuple(int(w) for w in philox4x32(counter, key)) == expected


def scalar_philox(counter: tuple[int, ...], key: tuple[int, int]) -> tuple[int, ...]:
    """Philox4x32-10 on Python integers, one block (the paper's definition)."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for round_ in range(10):
        if round_:
            k0, k1 = (k0 + 0x9E3779B9) & MASK, (k1 + 0xBB67AE85) & MASK
        p0, p1 = 0xD2511F53 * c0, 0xCD9E8D57 * c2
        c0, c1, c2, c3 = (p1 >> 32) ^ c1 ^ k0, p1 & MASK, (p0 >> 32) ^ c3 ^ k1, p0 & MASK
    return c0, c1, c2, c3


@pytest.mark.parametrize("counter", [c for c, _, _ in KAT])
def test_scalar_philox_is_the_vectorized_one(counter) -> None:
    key = (0x12345678, 0x9ABCDEF0)
    assert scalar_philox(counter, key) == tuple(int(w) for w in philox4x32(counter, key))


def uniform(seed: int, step: int, shape, dtype: str, stream: int) -> np.ndarray:
    graph = Graph("random")
    s = graph.add_argument("seed", TensorType(DType.int64, ()))
    c = graph.add_argument("step", TensorType(DType.int64, ()))
    graph.outputs["u"] = Builder(graph).random_uniform(s, c, shape=shape, dtype=dtype, stream=stream)
    arguments = {"seed": np.asarray(seed, np.int64), "step": np.asarray(step, np.int64)}
    return interpret(graph, arguments).outputs["u"]


@pytest.mark.parametrize(("seed", "step", "stream"), [(0, 0, 0), (2**40 + 3, 7, 1), (-1, 2**33 + 5, 2**32 - 1)])
@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_each_element_is_philox_of_its_index(seed: int, step: int, stream: int, dtype: str) -> None:
    """Element i: counter (i low, i high, step low, stream), key (seed low, seed high)."""
    u = uniform(seed, step, (3, 5), dtype, stream)
    assert u.dtype == DType.parse(dtype).numpy
    seed_bits = seed & (2**64 - 1)
    key = (seed_bits & MASK, seed_bits >> 32)
    for i, value in enumerate(u.ravel()):
        words = scalar_philox((i, 0, step & MASK, stream), key)
        if dtype == "f32":
            expected = (words[0] >> 8) / 2**24
        else:
            expected = ((words[0] >> 5) * 2**26 + (words[1] >> 6)) / 2**53
        assert value == expected


def test_values_lie_in_the_unit_interval_and_look_uniform() -> None:
    for dtype in ("f32", "f64"):
        u = uniform(3, 0, (100_000,), dtype, 0)
        assert u.min() >= 0
        assert u.max() < 1
        counts, _ = np.histogram(u, bins=10, range=(0, 1))
        assert np.all(np.abs(counts - 10_000) < 4 * np.sqrt(100_000 * 0.1 * 0.9))  # 4 standard deviations


def test_seed_step_and_stream_each_change_every_value() -> None:
    base = uniform(1, 2, (64,), "f32", 3)
    np.testing.assert_array_equal(base, uniform(1, 2, (64,), "f32", 3))
    for other in (uniform(2, 2, (64,), "f32", 3), uniform(1, 3, (64,), "f32", 3), uniform(1, 2, (64,), "f32", 4)):
        assert np.mean(other == base) < 0.05


def test_the_shape_does_not_change_the_values() -> None:
    """The flat row-major index keys each element: a reshape keeps the values."""
    np.testing.assert_array_equal(uniform(5, 1, (4, 6), "f64", 0).ravel(), uniform(5, 1, (24,), "f64", 0))


def build(types: list[TensorType], **attrs):
    graph = Graph("rule")
    args = [graph.add_argument(f"x{i}", t) for i, t in enumerate(types)]
    return Builder(graph).emit("random_uniform", *args, **attrs)


I64 = TensorType(DType.int64, ())


@pytest.mark.parametrize(
    ("types", "attrs", "error", "message"),
    [
        ([TensorType(DType.int32, ()), I64], {}, DTypeError, "scalar i64 seed"),
        ([I64, TensorType(DType.int64, (2,))], {}, DTypeError, "scalar i64 step"),
        ([I64, I64], {"dtype": "i64"}, DTypeError, "makes floats"),
        ([I64, I64], {"stream": -1}, IRError, "stream must be in"),
        ([I64, I64], {"stream": 2**32}, IRError, "stream must be in"),
        ([I64, I64], {"shape": ()}, ShapeError, "rank >= 1"),
    ],
)
def test_type_rule_rejects(types, attrs, error, message: str) -> None:
    attrs = {"shape": (3,), "dtype": "f32", **attrs}
    with pytest.raises(error, match=message):
        build(types, **attrs)
