"""Reverse-mode autodiff: fan-out, unbroadcasting, output naming, and whole
models' gradients against float64 central finite differences."""

import numpy as np
import pytest
from model_tables import ACTIVATIONS, LOSSES

import ember
from ember import nn, optim
from ember.compiler import autodiff, grad_name
from ember.ir import Builder, DType, Graph, IRError, TensorType, interpret, print_graph, verify

F64 = DType.float64
EPS = 1e-6


def new_graph(**arguments):
    """A graph with the given `name=(role, shape)` f64 arguments and its builder."""
    g = Graph("test")
    for name, (role, shape) in arguments.items():
        g.add_argument(name, TensorType(F64, shape), role)
    return g, Builder(g)


def gradients_of(graph, **arrays):
    """Run the autodiff of `graph` (verified first) and return its outputs."""
    return interpret(verify(autodiff(graph)), arrays).outputs


# -- the pass itself ----------------------------------------------------------
def test_fan_out_accumulates_cotangents(rng):
    # h = w * x feeds two uses, and w * w reads w twice in one node.
    g, b = new_graph(x=("input", (3,)), w=("param", (3,)))
    x, w = g.inputs[0], g.params[0]
    h = b.mul(w, x)
    total = b.add(b.add(b.sum(b.mul(h, h), axes=[0]), b.sum(h, axes=[0])), b.sum(b.mul(w, w), axes=[0]))
    g.outputs["loss"] = total
    xv, wv = rng.normal(size=3), rng.normal(size=3)
    out = gradients_of(g, x=xv, w=wv)
    np.testing.assert_allclose(out["w.grad"], 2 * wv * xv**2 + xv + 2 * wv, rtol=1e-14)


def test_bias_add_gradient_is_summed_over_the_broadcast_axes(rng):
    g, b = new_graph(x=("input", ("B", 3)), bias=("param", (3,)), row=("param", (1, 3)), scale=("param", ()))
    x, bias, row, scale = g.arguments
    g.outputs["loss"] = b.sum(b.tanh(b.mul(b.add(b.add(x, bias), row), scale)), axes=[0, 1])
    xv, bv, rv, sv = rng.normal(size=(5, 3)), rng.normal(size=3), rng.normal(size=(1, 3)), np.array(0.7)
    out = gradients_of(g, x=xv, bias=bv, row=rv, scale=sv)
    pre = xv + bv + rv
    dpre = (1 - np.tanh(pre * sv) ** 2) * sv
    assert out["bias.grad"].shape == (3,)
    assert out["row.grad"].shape == (1, 3)
    assert out["scale.grad"].shape == ()
    np.testing.assert_allclose(out["bias.grad"], dpre.sum(axis=0), rtol=1e-13)
    np.testing.assert_allclose(out["row.grad"], dpre.sum(axis=0, keepdims=True), rtol=1e-13)
    np.testing.assert_allclose(out["scale.grad"], np.sum((1 - np.tanh(pre * sv) ** 2) * pre), rtol=1e-13)


def test_param_the_loss_does_not_use_gets_zero_gradient(rng):
    g, b = new_graph(x=("input", ("B", 2)), used=("param", (2,)), unused=("param", (4, 2)), scalar=("param", ()))
    x, used, unused, _ = g.arguments
    g.outputs["loss"] = b.sum(b.mul(x, used), axes=[0, 1])
    g.outputs["side"] = b.exp(unused)  # computed, but not part of the loss
    out = gradients_of(g, x=rng.normal(size=(3, 2)), used=np.ones(2), unused=np.ones((4, 2)), scalar=np.array(2.0))
    np.testing.assert_array_equal(out["unused.grad"], np.zeros((4, 2)))
    np.testing.assert_array_equal(out["scalar.grad"], np.zeros(()))
    assert out["used.grad"].any()


@pytest.mark.parametrize(
    ("make_loss", "message"),
    [
        pytest.param(lambda b, v: b.exp(v), "scalar", id="vector"),
        pytest.param(lambda b, v: b.sum(b.exp(v), axes=[0], keepdims=True), "scalar", id="keepdims"),
        pytest.param(lambda b, v: b.size(v, axes=[0], dtype="i64"), "floating-point", id="integer"),
        pytest.param(lambda b, v: b.gt(b.sum(v, axes=[0]), 0.0), "floating-point", id="bool"),
    ],
)
def test_loss_must_be_a_float_scalar(make_loss, message):
    g, b = new_graph(w=("param", (3,)))
    g.outputs["loss"] = make_loss(b, g.params[0])
    with pytest.raises(IRError, match=message):
        autodiff(g)


def test_missing_loss_output_raises():
    g, b = new_graph(w=("param", (3,)))
    g.outputs["total"] = b.sum(g.params[0], axes=[0])
    with pytest.raises(IRError, match="loss"):
        autodiff(g)
    assert list(autodiff(g, loss="total").outputs) == ["total", "w.grad"]


def test_gradient_outputs_are_named_after_params_in_param_order():
    g, b = new_graph(x=("input", (2,)), zeta=("param", (2,)), alpha=("param", (2,)), **{"mid.w": ("param", ())})
    x, zeta, alpha, mid = g.arguments
    g.outputs["out"] = b.mul(x, alpha)
    g.outputs["loss"] = b.sum(b.mul(b.add(b.mul(x, mid), alpha), zeta), axes=[0])
    grads = autodiff(g)
    assert list(grads.outputs) == ["loss", "zeta.grad", "alpha.grad", "mid.w.grad"]
    assert [grad_name(p) for p in ("zeta", "mid.w")] == ["zeta.grad", "mid.w.grad"]
    for p in g.params:
        assert grads.outputs[grad_name(p.name)].type == p.type
    assert list(autodiff(g, wrt=["mid.w", "zeta"]).outputs) == ["loss", "mid.w.grad", "zeta.grad"]


def test_autodiff_leaves_its_input_graph_unchanged():
    g, b = new_graph(x=("input", ("B", 2)), w=("param", (2,)))
    g.outputs["loss"] = b.mean(b.mul(g.inputs[0], g.params[0]), axes=[0, 1])
    before = print_graph(g)
    autodiff(g)
    assert print_graph(g) == before


def central_differences(loss_of, params):
    """d(loss)/d(param) for each of `params` (name -> array) by float64 central
    differences of `loss_of(params) -> float`."""
    grads = {}
    for name, value in params.items():
        grad = np.zeros_like(value)
        for index in np.ndindex(value.shape):
            losses = []
            for delta in (EPS, -EPS):
                shifted = value.copy()
                shifted[index] += delta
                losses.append(float(loss_of({**params, name: shifted})))
            grad[index] = (losses[0] - losses[1]) / (2 * EPS)
        grads[name] = grad
    return grads


def test_gradients_through_layout_ops_and_reductions_match_finite_differences(rng):
    g, b = new_graph(x=("input", ("B", 4)), w=("param", (2, 3, 4)))
    x, w = g.arguments
    m = b.reshape(b.transpose(w, perm=[2, 0, 1]), shape=[4, 6])
    pooled = b.max(b.reshape(b.matmul(x, m), shape=["B", 2, 3]), axes=[2])
    g.outputs["loss"] = b.mean(b.mul(pooled, b.broadcast_to(b.sum(w, axes=[1, 2]), shape=["B", 2])), axes=[0, 1])
    xv, wv = rng.normal(size=(5, 4)), rng.normal(size=(2, 3, 4))
    numeric = central_differences(lambda p: interpret(g, {"x": xv, **p}).outputs["loss"], {"w": wv})
    np.testing.assert_allclose(gradients_of(g, x=xv, w=wv)["w.grad"], numeric["w"], rtol=1e-6, atol=1e-8)


# -- whole models against finite differences ----------------------------------
def check_gradients(model, loss, x, y):
    """Compile `model` in float64; its gradients must match central differences
    of the loss, evaluated through set_parameters + evaluate."""
    prog = ember.compile(model, loss=loss, optimizer=optim.SGD(lr=0.1), dtype="float64", backend="reference")
    analytic = prog.gradients(x, y)

    def loss_of(params):
        prog.set_parameters(params)
        return prog.evaluate(x, y)["loss"]

    numeric = central_differences(loss_of, prog.parameters)
    assert list(analytic) == list(prog.parameters)
    for name, value in numeric.items():
        np.testing.assert_allclose(analytic[name], value, rtol=1e-3, atol=1e-5, err_msg=name)
    return analytic


@pytest.mark.parametrize("loss_name", LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_mlp_gradients_match_finite_differences(activation, loss_name, make_batch):
    act = ACTIVATIONS[activation]
    model = nn.Sequential(nn.Linear(3, 5), act(), nn.Linear(5, 4), act(), nn.Linear(4, 3))
    loss = LOSSES[loss_name]()
    x, y = make_batch(loss, 3, 3, rows=6)
    grads = check_gradients(model, loss, 2 * x, y)
    assert all(np.abs(g).max() > 1e-6 for g in grads.values())  # every layer gets a real signal


class TwoBranch(nn.Module):
    """Two input layers read x; their activations mix before a bare-Parameter head."""

    def __init__(self):
        self.left = nn.Linear(4, 6)
        self.right = nn.Linear(4, 6, bias=False)
        self.head = nn.Parameter((6, 3))
        self.shift = nn.Parameter(data=np.array([0.1, -0.2, 0.3]))

    def forward(self, x):
        h = ember.relu(self.left(x)) + ember.tanh(self.right(x)) * ember.sigmoid(self.left(x))
        return h @ self.head + self.shift - 0.5 * ember.tanh(x @ self.right.weight.T) @ self.head


@pytest.mark.parametrize("loss", [nn.MSELoss(), nn.CrossEntropyLoss()], ids=["mse", "cross_entropy"])
def test_custom_module_gradients_match_finite_differences(loss, make_batch):
    x, y = make_batch(loss, 4, 3, rows=5)
    grads = check_gradients(TwoBranch(), loss, x, y)
    assert list(grads) == ["head", "shift", "left.weight", "left.bias", "right.weight"]  # PyTorch's order


def reference_loss(name, out, y):
    """The losses of LOSSES as PyTorch defines them, in NumPy: what the gradient checks differentiate."""
    reduce = np.sum if name.endswith("_sum") else np.mean
    if name.startswith("mse"):
        return reduce((out - y) ** 2)
    if name.startswith("bce"):
        return reduce(np.maximum(out, 0) - out * y + np.log1p(np.exp(-np.abs(out))))
    log_probs = out - out.max(axis=1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(axis=1, keepdims=True))
    nll = -log_probs[np.arange(len(y)), y]
    smoothing = 0.1 if name == "cross_entropy_smoothed" else 0.0
    return reduce((1 - smoothing) * nll - smoothing * log_probs.mean(axis=1))


@pytest.mark.parametrize("loss_name", LOSSES)
def test_losses_match_their_pytorch_definitions(loss_name, make_batch):
    loss = LOSSES[loss_name]()
    model = nn.Sequential(nn.Linear(3, 4))
    prog = ember.compile(model, loss=loss, optimizer=optim.SGD(), dtype="float64", backend="reference")
    x, y = make_batch(loss, 3, 4, rows=7)
    x *= 3
    expected = reference_loss(loss_name, prog.predict(x), y)
    np.testing.assert_allclose(prog.evaluate(x, y)["loss"], expected, rtol=1e-12)
    np.testing.assert_allclose(prog.train_step(x, y), expected, rtol=1e-12)
