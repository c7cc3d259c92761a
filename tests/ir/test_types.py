"""Element types, tensor types, symbolic broadcasting and axis normalization."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ember.ir import BATCH, DType, ShapeError, TensorType, broadcast_shapes
from ember.ir.types import concrete_shape, normalize_axes, num_elements

# -- DType -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("f32", DType.float32),
        ("float64", DType.float64),
        ("i32", DType.int32),
        ("int64", DType.int64),
        ("bool", DType.bool),
        (DType.float32, DType.float32),
        (np.float64, DType.float64),
        (np.dtype("int32"), DType.int32),
        (np.bool_, DType.bool),
        (bool, DType.bool),
    ],
)
def test_dtype_parse(name, expected: DType) -> None:
    assert DType.parse(name) is expected


@pytest.mark.parametrize(
    "name",
    # np.dtype reads a pair as (base, view): ("i4", "f4") would be int32, ("i4", -1) raises ValueError
    ["f16", "float", "F32", "", None, np.float16, np.complex128, np.uint8, ("i4", "f4"), ("i4", -1), 3],
)
def test_dtype_parse_rejects_other_types(name) -> None:
    with pytest.raises(KeyError):
        DType.parse(name)


@pytest.mark.parametrize("dtype", list(DType))
def test_dtype_properties_agree_with_numpy(dtype: DType) -> None:
    assert DType.parse(str(dtype)) is dtype
    assert DType.parse(dtype.numpy) is dtype
    assert dtype.itemsize == dtype.numpy.itemsize
    assert dtype.is_float == (dtype.numpy.kind == "f")
    assert dtype.is_int == (dtype.numpy.kind == "i")


def test_dtype_str_is_the_short_name() -> None:
    assert [str(d) for d in DType] == ["f32", "f64", "i32", "i64", "bool"]


# -- TensorType --------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_", "text"),
    [
        (TensorType(DType.float32, ("B", 64)), "f32[B,64]"),
        (TensorType(DType.int64, ("B",)), "i64[B]"),
        (TensorType(DType.float32, ()), "f32[]"),
        (TensorType(DType.bool, (0, 3)), "bool[0,3]"),
    ],
)
def test_tensor_type_str(type_: TensorType, text: str) -> None:
    assert str(type_) == text


@pytest.mark.parametrize("dim", [-1, 2.0, True, "1B", "", "a-b", None, "\u03b2"])
def test_tensor_type_rejects_invalid_dims(dim) -> None:
    with pytest.raises(ShapeError, match="invalid dimension"):
        TensorType(DType.float32, (3, dim))


@pytest.mark.parametrize("shape", [(2**49,), (2**24, 2**25), ("B", 2**30, 2**30), (0, 2**40, 2**40)])
def test_tensor_type_rejects_more_elements_than_memory_holds(shape) -> None:
    # Zero dims do not help: the strides of the other axes would still overflow.
    with pytest.raises(ShapeError, match=r"too large: its dimensions multiply to more than 2\*\*48"):
        TensorType(DType.float32, shape)
    assert TensorType(DType.float32, ("B", 2**24, 2**24)).symbols == ("B",)


def test_tensor_type_properties() -> None:
    t = TensorType(DType.float32, (BATCH, 3, 4))
    assert t.rank == 3
    assert not t.is_static
    assert t.with_shape([3, 4]).is_static
    assert t.with_shape([3, 4]) == TensorType(DType.float32, (3, 4))
    assert t.with_dtype(DType.float64) == TensorType(DType.float64, ("B", 3, 4))
    assert t.concrete_shape({"B": 5}) == (5, 3, 4)
    assert TensorType(DType.float32, ()).rank == 0


def test_tensor_types_are_values() -> None:
    a = TensorType(DType.float32, ("B", 3))
    assert a == TensorType(DType.parse("f32"), ("B", 3))
    assert a != TensorType(DType.float64, ("B", 3))
    assert len({a, TensorType(DType.float32, ("B", 3))}) == 1
    with pytest.raises(AttributeError):
        a.shape = (3,)  # type: ignore[misc]


def test_concrete_shape_needs_every_symbol() -> None:
    assert concrete_shape(("B", 2, "T"), {"B": 4, "T": 7}) == (4, 2, 7)
    with pytest.raises(ShapeError, match="dimension T"):
        concrete_shape(("B", "T"), {"B": 4})


def test_num_elements() -> None:
    assert num_elements((3, 4)) == 12
    assert num_elements(()) == 1
    assert num_elements(("B", 4)) is None


# -- broadcast_shapes ----------------------------------------------------------


@pytest.mark.parametrize(
    ("shapes", "expected"),
    [
        ([(3, 4), (4,)], (3, 4)),
        ([(3, 1), (1, 4)], (3, 4)),
        ([(), (2, 3)], (2, 3)),
        ([(2, 1, 4), (3, 1), (4,)], (2, 3, 4)),
        ([(0, 4), (1, 4)], (0, 4)),
        ([], ()),
        ([("B", 1), (1, 4)], ("B", 4)),
        ([("B", 4), (4,)], ("B", 4)),
        ([("B",), ("B",)], ("B",)),
        ([(1,), ("B",)], ("B",)),
        ([("B", 1, 3), ("T", 1)], ("B", "T", 3)),
    ],
)
def test_broadcast_shapes(shapes, expected) -> None:
    assert broadcast_shapes(*shapes) == expected


@pytest.mark.parametrize(
    "shapes",
    [[(3,), (4,)], [(2, 3), (3, 2)], [("B",), (5,)], [(5, 3), ("B", 3)], [("B",), ("T",)], [(0,), (2,)]],
)
def test_broadcast_shapes_rejects_mismatches(shapes) -> None:
    with pytest.raises(ShapeError, match="cannot be broadcast"):
        broadcast_shapes(*shapes)


int_shapes = st.lists(st.integers(1, 3), max_size=4).map(tuple)


@given(st.lists(int_shapes, min_size=1, max_size=3))
def test_broadcast_shapes_agrees_with_numpy(shapes: list[tuple[int, ...]]) -> None:
    try:
        expected = np.broadcast_shapes(*shapes)
    except ValueError:
        with pytest.raises(ShapeError):
            broadcast_shapes(*shapes)
    else:
        assert broadcast_shapes(*shapes) == expected


# -- normalize_axes ------------------------------------------------------------


@pytest.mark.parametrize(
    ("axes", "rank", "expected"),
    [
        ([-1], 3, (2,)),
        ([2, 0], 3, (0, 2)),
        ([0, -2], 3, (0, 1)),
        ([], 0, ()),
        ([], 2, ()),
        (range(4), 4, (0, 1, 2, 3)),
    ],
)
def test_normalize_axes(axes, rank: int, expected: tuple[int, ...]) -> None:
    assert normalize_axes(axes, rank) == expected


@pytest.mark.parametrize(("axes", "rank"), [([3], 3), ([-4], 3), ([0], 0), ([0, 5], 2)])
def test_normalize_axes_rejects_out_of_range(axes, rank: int) -> None:
    with pytest.raises(ShapeError, match=f"out of range for a tensor of rank {rank}"):
        normalize_axes(axes, rank)


@pytest.mark.parametrize(("axes", "rank", "axis"), [([1, 1], 2, 1), ([0, -3], 3, 0), ([2, 0, -1], 3, 2)])
def test_normalize_axes_rejects_an_axis_given_twice(axes, rank: int, axis: int) -> None:
    # NumPy raises on these, so the reference interpreter could not run them.
    with pytest.raises(ShapeError, match=rf"axes \[.*\] name axis {axis} twice"):
        normalize_axes(axes, rank)
