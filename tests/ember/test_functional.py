"""The functional and Tensor API in traced models: NumPy's and PyTorch's
spellings, reductions, clamping, reshaping, and the errors they raise."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import ember
from ember import functional as F
from ember import nn

BACKENDS = ["native", "reference"]


class Forward(nn.Module):
    """A model whose forward is `fn`."""

    def __init__(self, fn) -> None:
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def run(fn, x: np.ndarray, backend: str = "reference") -> np.ndarray:
    """`fn` traced on inputs shaped like `x` (float64), run on `x`."""
    prog = ember.compile(Forward(fn), input_shape=x.shape[1:], dtype="float64", backend=backend)
    return prog.predict(x)


def line_of(marker: str) -> int:
    """The line of this file that holds `marker` (in a comment)."""
    lines = inspect.getsource(inspect.getmodule(line_of)).splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.rstrip().endswith(f"# {marker}"))


@pytest.fixture
def x() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(5, 3, 4))


# -- defects -------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_reshape_with_minus_one_beside_the_batch_axis(x, backend):
    """reshape's -1 used ember's own max (a reduction) instead of Python's."""
    out = run(lambda t: F.reshape(t, (t.shape[0], -1)), x, backend)
    np.testing.assert_array_equal(out, x.reshape(5, 12))


@pytest.mark.parametrize("backend", BACKENDS)
def test_where_with_number_branches_has_the_model_dtype(backend):
    """Both branches Python numbers: constants of the model's float dtype, not the condition's bool."""
    x = np.array([[-1.0, 1.0]])
    for dtype in ("float32", "float64"):
        prog = ember.compile(Forward(lambda t: ember.where(t > 0, 2.0, -3.0)), input_shape=(2,), dtype=dtype)
        out = prog.predict(x.astype(dtype))
        assert out.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(out, [[-3.0, 2.0]])
    np.testing.assert_array_equal(run(lambda t: ember.where(t > 0, t, 0.5), x, backend), [[0.5, 1.0]])


def test_a_repeated_axis_is_an_error_naming_the_line(x):
    with pytest.raises(ember.ShapeError, match=r"axes \[1, 1\] name an axis .* twice") as info:
        run(lambda t: F.sum(t, axis=(1, 1)), x)  # repeated axis
    assert f"{__file__}:{line_of('repeated axis')}" in str(info.value)
    with pytest.raises(ember.ShapeError, match=r"axes \[2, -1\]"):
        run(lambda t: t.mean(dim=(2, -1)), x)


def test_functional_names_shadow_no_builtin_inside_the_module():
    """Python's max, min, sum, abs and pow stay reachable for ember's own code."""
    assert F.builtins.max(1, 2) == 2
    for name in ("abs", "max", "min", "pow", "sum"):
        assert getattr(F, name).__module__ == "ember.functional"


# -- reductions: NumPy's and PyTorch's spellings ---------------------------------
REDUCTIONS = {
    "sum": np.sum,
    "mean": np.mean,
    "max": np.max,
    "min": np.min,
    "amax": np.max,
    "amin": np.min,
    "var": lambda a, axis, keepdims: np.var(a, axis=axis, keepdims=keepdims, ddof=1),
    "std": lambda a, axis, keepdims: np.std(a, axis=axis, keepdims=keepdims, ddof=1),
}


@pytest.mark.parametrize("keep", [False, True])
@pytest.mark.parametrize("axes", [1, (1, 2), -1])
@pytest.mark.parametrize("name", REDUCTIONS)
def test_reductions_take_dim_and_axis(x, name, axes, keep):
    expected = REDUCTIONS[name](x, axis=axes, keepdims=keep)
    spellings = [
        lambda t: getattr(F, name)(t, axis=axes, keepdims=keep),
        lambda t: getattr(F, name)(t, dim=axes, keepdim=keep),
        lambda t: getattr(F, name)(t, axes, keepdims=keep),
        lambda t: getattr(t, name)(dim=axes, keepdim=keep),
        lambda t: getattr(t, name)(axes, keepdims=keep),
    ]
    for spell in spellings:
        np.testing.assert_allclose(run(spell, x), expected, rtol=1e-12)


def test_var_and_std_corrections(x):
    for kwargs, ddof in [({"unbiased": False}, 0), ({"correction": 0}, 0), ({"correction": 2}, 2), ({}, 1)]:
        np.testing.assert_allclose(run(lambda t, k=kwargs: F.var(t, dim=2, **k), x), np.var(x, 2, ddof=ddof))
        np.testing.assert_allclose(run(lambda t, k=kwargs: t.std(2, **k), x), np.std(x, 2, ddof=ddof))
    for backend in BACKENDS:  # over the batch axis: N is known when the program runs
        np.testing.assert_allclose(run(lambda t: t.var(0), x, backend), np.var(x, 0, ddof=1), rtol=1e-12)
    with pytest.raises(ember.ConfigError, match="unbiased= or correction="):
        run(lambda t: F.var(t, 1, unbiased=True, correction=1), x)


def test_var_of_one_element_is_nan_as_pytorch():
    out = run(lambda t: t.var(dim=1), np.ones((2, 1)))
    assert np.isnan(out).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_min_over_the_batch_and_of_integers(backend):
    x = np.array([[3.0, -1.0], [-2.0, 5.0], [0.5, 0.5]])
    np.testing.assert_array_equal(run(lambda t: F.min(t, 0, keepdims=True), x, backend), [[-2.0, -1.0]])
    integer_min = lambda t: F.cast(F.min(F.cast(t, "i32"), dim=1), "f64")
    np.testing.assert_array_equal(run(integer_min, x, backend), [-1, -2, 0])


def test_both_spellings_at_once_is_an_error(x):
    with pytest.raises(ember.ConfigError, match="axis= or dim="):
        run(lambda t: F.sum(t, axis=1, dim=1), x)
    with pytest.raises(ember.ConfigError, match="keepdims= or keepdim="):
        run(lambda t: t.mean(1, keepdims=True, keepdim=True), x)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_takes_dim(x, name):
    expected = run(lambda t: getattr(F, name)(t, axis=1), x)
    for spell in (
        lambda t: getattr(F, name)(t, dim=1),
        lambda t: getattr(t, name)(1),
        lambda t: getattr(t, name)(dim=1),
    ):
        np.testing.assert_array_equal(run(spell, x), expected)


# -- elementwise methods and clamping ---------------------------------------------
METHODS = {
    "exp": (lambda t: t.exp(), np.exp),
    "expm1": (lambda t: t.expm1(), np.expm1),
    "log": (lambda t: (t.abs() + 1).log(), lambda a: np.log(np.abs(a) + 1)),
    "log1p": (lambda t: t.abs().log1p(), lambda a: np.log1p(np.abs(a))),
    "sqrt": (lambda t: (t.abs() + 1).sqrt(), lambda a: np.sqrt(np.abs(a) + 1)),
    "abs": (lambda t: t.abs(), np.abs),
    "neg": (lambda t: t.neg(), np.negative),
    "sigmoid": (lambda t: t.sigmoid(), lambda a: 1 / (1 + np.exp(-a))),
    "tanh": (lambda t: t.tanh(), np.tanh),
    "relu": (lambda t: t.relu(), lambda a: np.maximum(a, 0)),
    "pow": (lambda t: t.abs().pow(1.5), lambda a: np.abs(a) ** 1.5),
}


@pytest.mark.parametrize("method", METHODS)
def test_elementwise_methods(x, method):
    traced, expected = METHODS[method]
    np.testing.assert_allclose(run(traced, x), expected(x), rtol=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
def test_clamp(backend):
    x = np.array([[-2.0, -1.0, 0.0, 1.0, 2.0, np.nan]])
    np.testing.assert_array_equal(run(lambda t: F.clamp(t, -1.0, 1.0), x, backend), [[-1, -1, 0, 1, 1, np.nan]])
    np.testing.assert_array_equal(run(lambda t: t.clamp(min=0.0), x, backend), [[0, 0, 0, 1, 2, np.nan]])
    np.testing.assert_array_equal(run(lambda t: t.clip(max=0.5), x, backend), [[-2, -1, 0, 0.5, 0.5, np.nan]])
    np.testing.assert_array_equal(run(lambda t: F.clip(t, 1.0, 0.0), x, backend), [[0, 0, 0, 0, 0, np.nan]])
    with pytest.raises(ember.ConfigError, match="clamp needs min or max"):
        run(lambda t: F.clamp(t), x)


# -- reshaping ---------------------------------------------------------------------
def test_view_reshape_flatten(x):
    np.testing.assert_array_equal(run(lambda t: t.view(-1, 2, 6), x), x.reshape(-1, 2, 6))
    np.testing.assert_array_equal(run(lambda t: t.reshape((t.shape[0], 12)), x), x.reshape(5, 12))
    np.testing.assert_array_equal(run(lambda t: t.flatten(1), x), x.reshape(5, 12))
    np.testing.assert_array_equal(run(lambda t: t.flatten(start_dim=1, end_dim=1), x), x)
    np.testing.assert_array_equal(run(lambda t: F.flatten(t.view(-1, 3, 2, 2), 2, -1), x), x)
    np.testing.assert_array_equal(run(nn.Flatten(), x), x.reshape(5, 12))
    assert repr(nn.Flatten()) == "Flatten(start_dim=1, end_dim=-1)"


def test_flatten_of_the_batch_axis_is_refused(x):
    with pytest.raises(ember.ShapeError, match="symbolic size B merges only with axes of size 1"):
        run(lambda t: t.flatten(), x)
    np.testing.assert_array_equal(run(lambda t: t.unsqueeze(1).flatten(0, 1), x), x)


def test_unsqueeze_and_squeeze(x):
    np.testing.assert_array_equal(run(lambda t: t.unsqueeze(1), x), x[:, None])
    np.testing.assert_array_equal(run(lambda t: t.unsqueeze(-1), x), x[..., None])
    np.testing.assert_array_equal(run(lambda t: t.unsqueeze(1).unsqueeze(-1).squeeze(), x), x)
    np.testing.assert_array_equal(run(lambda t: t.unsqueeze(2).squeeze(2), x), x)
    np.testing.assert_array_equal(run(lambda t: t.squeeze(1), x), x)  # axis 1 has size 3: kept
    # the batch axis is never squeezed, even when B is 1 at run time
    assert run(lambda t: t.squeeze(), x[:1]).shape == (1, 3, 4)
    with pytest.raises(ember.ShapeError, match="unsqueeze: dim 4 is out of range"):
        run(lambda t: t.unsqueeze(4), x)


@pytest.mark.parametrize("name", ["relu", "relu6", "hardtanh", "leaky_relu", "elu", "silu", "mish", "hardswish"])
def test_inplace_is_accepted_and_changes_nothing(x, name):
    """PyTorch code passes inplace=True; a traced tensor has no storage to reuse."""
    fn = getattr(F, name)
    np.testing.assert_array_equal(run(lambda t: fn(t, inplace=True), x), run(fn, x))


@pytest.mark.parametrize("backend", BACKENDS)
def test_prelu_weights_apply_along_axis_1(x, backend):
    """One slope per channel of [B, C, L], as torch.nn.PReLU(C)."""
    prelu = nn.PReLU(3, init=0.1)
    prog = ember.compile(prelu, input_shape=x.shape[1:], dtype="float64", backend=backend)
    slopes = np.array([0.1, -0.5, 2.0])
    prog.set_parameters({"weight": slopes})
    expected = np.where(x > 0, x, x * slopes[:, None])
    np.testing.assert_array_equal(prog.predict(x), expected)
    assert repr(prelu) == "PReLU(num_parameters=3)"


def test_prelu_weights_must_fit_the_channels(x):
    with pytest.raises(ember.ShapeError, match=r"prelu: weight of shape \[4\] does not fit input") as info:
        ember.compile(nn.PReLU(4), input_shape=x.shape[1:])  # four slopes, three channels
    assert "(at " in str(info.value)
