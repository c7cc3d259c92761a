"""Arena: named views into one buffer, each 64-byte aligned, disjoint and contiguous."""

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from native_helpers import make_graph, native, tensor

from ember.runtime.arena import ALIGNMENT, Arena, aligned_array, aligned_empty, data_address
from ember.runtime.native import SMALL_OUTPUT_BYTES

SHAPES = {"0.weight": (3, 5), "0.bias": (3,), "step": (), "empty": (0, 4), "cube": (2, 3, 7)}

shape_dicts = st.dictionaries(
    st.text("abcdefgh.", min_size=1, max_size=6),
    st.lists(st.integers(0, 9), max_size=3).map(tuple),
    max_size=8,
)


def byte_range(view: np.ndarray) -> tuple[int, int]:
    return view.ctypes.data, view.ctypes.data + view.nbytes


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_views_have_the_given_names_shapes_and_dtype(dtype):
    arena = Arena(SHAPES, dtype)
    assert arena.names() == list(SHAPES)
    for name, shape in SHAPES.items():
        assert name in arena
        assert arena[name].shape == shape
        assert arena[name].dtype == dtype
    assert "missing" not in arena


@given(shapes=shape_dicts, dtype=st.sampled_from([np.float32, np.float64]))
def test_views_are_aligned_contiguous_disjoint_and_inside_the_buffer(shapes, dtype):
    arena = Arena(shapes, dtype)
    start, end = byte_range(arena.buffer)
    ranges = []
    for name in shapes:
        view = arena[name]
        assert view.ctypes.data % ALIGNMENT == 0, name
        assert view.flags.c_contiguous
        assert view.base is not None  # a view, not a copy
        lo, hi = byte_range(view)
        assert start <= lo <= hi <= end
        ranges.append((lo, hi))
    ranges.sort()
    assert all(a_hi <= b_lo for (_, a_hi), (b_lo, _) in itertools.pairwise(ranges))


def test_views_start_at_zero_and_write_through_to_the_buffer():
    arena = Arena(SHAPES, np.float32)
    assert not arena.buffer.any()
    for i, name in enumerate(SHAPES, 1):
        arena[name][...] = i
    for i, name in enumerate(SHAPES, 1):
        assert np.all(arena[name] == i), name
    assert arena.buffer.sum() == sum(i * int(np.prod(s)) for i, s in enumerate(SHAPES.values(), 1))


def test_views_are_in_order_and_padded_to_the_alignment():
    arena = Arena({"a": (3,), "b": (16,), "c": (17,)}, np.float32)  # 16 float32 per 64 bytes
    assert arena.offsets == {"a": 0, "b": 16, "c": 32}
    assert arena.size == 64


def test_copies_are_independent():
    arena = Arena(SHAPES, np.float64)
    copies = arena.copies()
    assert list(copies) == list(SHAPES)
    for name, copy in copies.items():
        copy[...] = 1
        assert not np.shares_memory(copy, arena[name])
    assert not arena.buffer.any()


@pytest.mark.parametrize("size", [0, 1, 7, 1000])
@pytest.mark.parametrize("alignment", [16, 64, 128])
def test_aligned_empty(size, alignment):
    for _ in range(8):  # fresh allocations land at different offsets
        array = aligned_empty(size, np.float32, alignment)
        assert array.shape == (size,)
        assert array.dtype == np.float32
        assert array.ctypes.data % alignment == 0


@pytest.mark.parametrize("shape", [(0,), (3, 0), (1,), (7, 5), (256, 1000), (2, 3, 4)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.bool_])
def test_aligned_array(shape, dtype):
    for _ in range(8):
        array, address = aligned_array(shape, dtype)
        assert array.shape == shape
        assert array.dtype == dtype
        assert array.flags.c_contiguous
        assert address == array.ctypes.data
        assert address % ALIGNMENT == 0


def test_native_outputs_are_aligned():
    """Outputs of a native program larger than SMALL_OUTPUT_BYTES start on a
    cache line (a matmul's stores of whole vectors then touch one line
    each); smaller ones are NumPy's own arrays, aligned for their dtype."""
    graph = make_graph("outputs", {"x": tensor("f32", ("B", 5))}, lambda b, v: {"y": b.add(v["x"], 1.0)})
    fn = native(graph)
    for batch in (1, 3, 1000, 5000):
        y = fn({"x": np.zeros((batch, 5), np.float32)}).outputs["y"]
        if y.nbytes > SMALL_OUTPUT_BYTES:
            assert y.ctypes.data % ALIGNMENT == 0, batch
        assert y.flags.aligned
        assert y.flags.c_contiguous
        np.testing.assert_array_equal(y, 1.0)


def test_data_address_is_numpys_address_of_the_first_element():
    """Read from the array object, checked against NumPy's own for views,
    0-d and empty arrays; a subclass is asked through NumPy."""
    base = np.arange(60, dtype=np.float64).reshape(6, 10)

    class Tagged(np.ndarray):
        pass

    arrays = [base, base[2:], base[:, 3:], base[::2, ::-1], base[1, 4:5], np.zeros(()), np.empty(0), base.view(Tagged)]
    for array in arrays:
        assert data_address(array) == array.__array_interface__["data"][0]
