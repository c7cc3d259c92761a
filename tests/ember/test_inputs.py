"""The model's input type: inferred from the layer that first consumes the
input, or given by `example_inputs=` (integer inputs included) or
`input_shape=`."""

import numpy as np
import pytest

import ember
from ember import nn, optim


class HeadFirst(nn.Module):
    """Declares its last layer first: the input size is the body's."""

    def __init__(self) -> None:
        self.head = nn.Linear(8, 2)
        self.body = nn.Linear(5, 8)

    def forward(self, x):
        return self.head(ember.relu(self.body(x * 2.0)))


class Counts(nn.Module):
    """Takes integer counts and turns them into floats itself."""

    def __init__(self) -> None:
        self.fc = nn.Linear(3, 1)

    def forward(self, x):
        return self.fc(ember.cast(x, "float32"))


def test_the_input_size_comes_from_the_layer_that_first_consumes_it():
    prog = ember.compile(HeadFirst(), loss=nn.MSELoss(), optimizer=optim.SGD(lr=0.1))
    assert str(prog.input_type) == "f32[B,5]"
    x = np.ones((4, 5), np.float32)
    assert prog.predict(x).shape == (4, 2)
    prog.train_step(x, np.zeros((4, 2)))


def test_a_batchnorm_first_fixes_the_input_size():
    prog = ember.compile(nn.Sequential(nn.BatchNorm1d(6), nn.Linear(6, 2)))
    assert str(prog.input_type) == "f32[B,6]"


def test_without_a_layer_that_fixes_it_the_error_asks_for_example_inputs():
    with pytest.raises(ember.ConfigError, match=r"cannot tell the size of the model's input.*example_inputs="):
        ember.compile(nn.Sequential(nn.ReLU()))


@pytest.mark.parametrize(
    "example",
    [np.zeros((2, 7)), (np.zeros((2, 7), np.float32),), ((32, 7), "float32"), ((0, 7), np.float64)],
    ids=["array", "tuple-of-one", "shape-and-dtype", "numpy-dtype"],
)
def test_example_inputs_give_the_shape_and_float_inputs_take_the_programs_dtype(example):
    prog = ember.compile(nn.Sequential(nn.ReLU()), example_inputs=example)
    assert str(prog.input_type) == "f32[B,7]"


@pytest.mark.parametrize("backend", ["native", "reference"])
@pytest.mark.parametrize("dtype", ["int64", "int32"])
def test_integer_inputs(backend, dtype, tmp_path):
    prog = ember.compile(
        Counts(),
        loss=nn.MSELoss(),
        optimizer=optim.SGD(lr=0.01),
        example_inputs=((4, 3), dtype),
        backend=backend,
    )
    assert prog.input_type.dtype.name == dtype
    x = np.arange(12).reshape(4, 3)
    p = prog.parameters
    np.testing.assert_allclose(prog.predict(x), x @ p["fc.weight"].T + p["fc.bias"], rtol=1e-5)
    prog.train_step(x, np.ones((4, 1)))
    with pytest.raises(ember.DTypeError, match=rf"x must hold int values \({dtype}\), got dtype float64"):
        prog.predict(x.astype(np.float64))
    prog.save(tmp_path / "m.npz")
    np.testing.assert_array_equal(ember.load(tmp_path / "m.npz").predict(x), prog.predict(x))


def test_integers_that_do_not_fit_an_int32_input_are_rejected():
    prog = ember.compile(Counts(), example_inputs=((1, 3), "int32"))
    x = np.array([[1, 2, 2**40]])
    with pytest.raises(ember.InputError, match=r"x\[2\] = 1099511627776 does not fit the input's dtype int32"):
        prog.predict(x)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_shape": (3,), "example_inputs": np.zeros((1, 3))}, "not both"),
        ({"example_inputs": "x"}, "example_inputs must be an array or a"),
        ({"example_inputs": ((2, 3), "complex64")}, "an input must be float32, float64, int64, int32"),
        ({"example_inputs": ((), "float32")}, "the shape must start with the batch axis"),
        ({"example_inputs": ((2, 0), "float32")}, "sizes after the batch axis must be >= 1"),
    ],
)
def test_bad_example_inputs_are_named(kwargs, message):
    with pytest.raises(ember.ConfigError, match=message):
        ember.compile(Counts(), **kwargs)


def test_input_shape_still_works():
    assert str(ember.compile(nn.Sequential(nn.Tanh()), input_shape=(2, 3)).input_type) == "f32[B,2,3]"


def test_when_forward_mixes_the_input_with_fixed_sizes_first_a_layer_that_lets_it_trace_decides():
    class Centered(nn.Module):
        def __init__(self) -> None:
            self.fc = nn.Linear(3, 1)

        def forward(self, x):
            return self.fc(x - np.array([1.0, 2.0, 3.0]))

    assert str(ember.compile(Centered()).input_type) == "f32[B,3]"
