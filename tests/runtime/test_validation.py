"""check_array, check_labels and check_rows: what user arrays are converted
to, and what is refused with an error naming the argument."""

import numpy as np
import pytest

import ember
from ember.ir import BATCH, DType, TensorType
from ember.runtime.validation import check_array, check_labels, check_rows

FEATURES = TensorType(DType.float32, (BATCH, 3))
COLUMN = TensorType(DType.float32, (BATCH, 1))
LABELS = TensorType(DType.int64, (BATCH,))
MATRIX = TensorType(DType.float64, (2, 3))


def assert_ready(array: np.ndarray, dtype) -> None:
    """The array is what a backend may receive."""
    assert array.dtype == dtype
    assert array.flags.c_contiguous
    assert array.flags.aligned


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16, np.int8, np.int32, np.int64, np.uint16])
def test_floats_and_ints_become_the_program_dtype(dtype):
    value = np.arange(12).reshape(4, 3).astype(dtype)
    out = check_array("x", value, FEATURES)
    assert_ready(out, np.float32)
    np.testing.assert_array_equal(out, np.arange(12, dtype=np.float32).reshape(4, 3))


def test_float64_is_rounded_to_float32():
    value = np.array([[0.1, 1 / 3, 1e-50]])
    out = check_array("x", value, FEATURES)
    np.testing.assert_array_equal(out, value.astype(np.float32))


def test_float32_stays_float64_when_the_program_is_float64():
    out = check_array("w", np.ones((2, 3), np.float32), MATRIX)
    assert_ready(out, np.float64)


@pytest.mark.parametrize("layout", ["strided", "fortran", "list"])
def test_lists_and_non_contiguous_arrays_are_made_contiguous(layout):
    expected = np.arange(24.0).reshape(4, 6)[:, ::2]
    value = {"strided": expected, "fortran": np.asfortranarray(expected), "list": expected.tolist()}[layout]
    out = check_array("x", value, FEATURES)
    assert_ready(out, np.float32)
    np.testing.assert_array_equal(out, expected)


def test_the_input_array_is_never_modified():
    value = np.arange(6.0).reshape(2, 3)
    out = check_array("x", value, FEATURES)
    out[...] = -1
    np.testing.assert_array_equal(value, np.arange(6.0).reshape(2, 3))


@pytest.mark.parametrize("value", [np.arange(5.0), np.arange(5.0).reshape(5, 1), [0, 1, 2, 3, 4]])
def test_a_column_target_accepts_a_vector(value):
    out = check_array("y", value, COLUMN, rows=5)
    assert out.shape == (5, 1)
    assert_ready(out, np.float32)
    np.testing.assert_array_equal(out[:, 0], np.arange(5.0))


def test_labels_accept_any_integer_type():
    for dtype in (np.int8, np.uint8, np.int32, np.int64):
        out = check_array("y", np.array([0, 2, 1], dtype), LABELS, rows=3)
        assert_ready(out, np.int64)


def test_rows_pins_the_batch_dimension():
    assert check_array("y", np.zeros(4, np.int64), LABELS, rows=4).shape == (4,)
    with pytest.raises(ember.ShapeError, match=r"y must have shape \[5\], got \[4\]"):
        check_array("y", np.zeros(4, np.int64), LABELS, rows=5)


@pytest.mark.parametrize(
    ("value", "expected", "message"),
    [
        (np.zeros((4, 2)), FEATURES, r"x must have shape \['N', 3\], got \[4, 2\]"),
        (np.zeros(3), FEATURES, r"x must have shape \['N', 3\], got \[3\]"),
        (np.zeros((4, 3, 1)), FEATURES, r"got \[4, 3, 1\]"),
        (np.float32(1), FEATURES, "got a scalar"),
        (np.zeros((4, 2)), COLUMN, r"x must have shape \['N', 1\], got \[4, 2\]"),
        (np.zeros((3, 2)), MATRIX, r"x must have shape \[2, 3\], got \[3, 2\]"),
    ],
)
def test_wrong_shapes(value, expected, message):
    with pytest.raises(ember.ShapeError, match=message):
        check_array("x", value, expected)


@pytest.mark.parametrize(
    ("value", "expected", "message"),
    [
        (np.zeros((2, 3), complex), FEATURES, "x must hold float values .float32., got dtype complex128"),
        (np.full((2, 3), "1.0"), FEATURES, "got dtype <U3"),
        (np.zeros((2, 3), object), FEATURES, "got dtype object"),
        (np.zeros((2, 3), bool), FEATURES, "got dtype bool"),
        (np.zeros(2, "datetime64[s]"), LABELS, "got dtype datetime64"),
        (
            np.array([0.0, 1.0]),
            LABELS,
            r"int values .int64., got dtype float64 \(class labels must be integers",
        ),
        (np.array([True, False]), LABELS, "got dtype bool"),
        ([[1.0, 2.0, 3.0], [1.0]], FEATURES, "x must be an array of numbers, got list"),
        ({"a": 1}, FEATURES, "got dtype object"),
        (None, FEATURES, "got dtype object"),
    ],
)
def test_wrong_dtypes(value, expected, message):
    with pytest.raises(ember.DTypeError, match=message):
        check_array("x", value, expected)


def test_an_object_whose_conversion_fails_is_a_dtype_error():
    class Broken:
        def __array__(self, dtype=None, copy=None):
            raise RuntimeError("no numbers here")

    with pytest.raises(ember.DTypeError, match="x must be an array of numbers, got Broken: no numbers here"):
        check_array("x", Broken(), FEATURES)


def test_labels_in_range_pass():
    check_labels("y", np.array([0, 1, 2, 2, 0]), 3)
    check_labels("y", np.zeros(0, np.int64), 3)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([0, 1, -1, 2], r"y\[2\] = -1 is not a class index in \[0, 3\) \(1 labels out of range\)"),
        ([0, 3, 1, 7], r"y\[1\] = 3 is not a class index in \[0, 3\) \(2 labels out of range\)"),
        ([np.iinfo(np.int64).min], r"y\[0\] = -9223372036854775808 "),
    ],
)
def test_labels_out_of_range(labels, message):
    with pytest.raises(ember.InputError, match=message):
        check_labels("y", np.array(labels, np.int64), 3)


def test_check_rows():
    assert check_rows("x", np.zeros((5, 2))) == 5
    assert check_rows("x", np.zeros((0, 2)), minimum=0) == 0
    with pytest.raises(ember.InputError, match="x has 0 rows; at least 1 needed"):
        check_rows("x", np.zeros((0, 2)))
    with pytest.raises(ember.InputError, match="x has 3 rows; at least 4 needed"):
        check_rows("x", np.zeros((3, 2)), minimum=4)
