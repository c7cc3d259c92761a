"""ember.nn: parameter naming, containers, Linear initialization, and the
errors raised while a model's forward is traced."""

import math
from pathlib import Path

import numpy as np
import pytest

import ember
from ember import nn, optim


class Encoder(nn.Module):
    def __init__(self) -> None:
        self.fc = nn.Linear(4, 3)
        self.act = nn.Tanh()

    def forward(self, x):
        return self.act(self.fc(x))


class AutoEncoder(nn.Module):
    def __init__(self) -> None:
        self.encoder = Encoder()
        self.decoder = nn.Linear(3, 4)

    def forward(self, x):
        return self.decoder(self.encoder(x))


class Tied(nn.Module):
    """Two layers sharing one weight matrix (as tied embeddings do)."""

    def __init__(self) -> None:
        self.first = nn.Linear(4, 4)
        self.second = nn.Linear(4, 4)
        self.second.weight = self.first.weight

    def forward(self, x):
        return self.second(ember.relu(self.first(x)))


# -- naming ------------------------------------------------------------------
def test_sequential_names_parameters_by_index(mlp):
    assert [name for name, _ in mlp.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert list(ember.compile(mlp).parameters) == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_nested_modules_name_parameters_by_attribute_path():
    model = AutoEncoder()
    names = ["encoder.fc.weight", "encoder.fc.bias", "decoder.weight", "decoder.bias"]
    assert [name for name, _ in model.named_parameters()] == names
    assert list(ember.compile(model).parameters) == names
    assert model.parameters() == [p for _, p in model.named_parameters()]


def test_nested_sequentials_join_indices():
    model = nn.Sequential(nn.Sequential(nn.Linear(2, 3), nn.ReLU()), nn.Linear(3, 1))
    assert [name for name, _ in model.named_parameters()] == ["0.0.weight", "0.0.bias", "1.weight", "1.bias"]


def test_a_shared_parameter_appears_once():
    model = Tied()
    assert [name for name, _ in model.named_parameters()] == ["first.weight", "first.bias", "second.bias"]
    prog = ember.compile(model, loss=nn.MSELoss(), optimizer=optim.SGD(lr=0.1))
    x = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    grads = prog.gradients(x, x)
    assert list(grads) == ["first.weight", "first.bias", "second.bias"]
    w, b1, b2 = (prog.parameters[k].astype(np.float64) for k in ("first.weight", "first.bias", "second.bias"))
    np.testing.assert_allclose(prog.predict(x), np.maximum(x @ w.T + b1, 0) @ w.T + b2, rtol=1e-5, atol=1e-6)


def test_reassigning_an_attribute_to_a_non_module_unregisters_it():
    model = AutoEncoder()
    model.decoder = None
    assert [name for name, _ in model.named_parameters()] == ["encoder.fc.weight", "encoder.fc.bias"]


def test_linear_without_bias_has_only_a_weight():
    layer = nn.Linear(5, 2, bias=False)
    assert layer.bias is None
    assert [name for name, _ in nn.Sequential(layer).named_parameters()] == ["0.weight"]


# -- containers --------------------------------------------------------------
def test_sequential_indexing_len_and_iteration():
    layers = [nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)]
    model = nn.Sequential(*layers)
    assert len(model) == 3
    assert model[0] is layers[0]
    assert model[-1] is layers[2]
    assert list(model) == layers
    assert list(model.modules()) == [model, *layers]
    with pytest.raises(IndexError):
        model[3]


def test_sequential_rejects_non_modules():
    with pytest.raises(ember.EmberError, match="argument 1 is a function"):
        nn.Sequential(nn.Linear(2, 2), lambda x: x)


def test_repr():
    model = nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Sequential(nn.LeakyReLU(0.2), nn.Linear(8, 2, bias=False)))
    assert repr(model) == (
        "Sequential(\n"
        "  (0): Linear(in_features=4, out_features=8, bias=True)\n"
        "  (1): GELU(approximate='none')\n"
        "  (2): Sequential(\n"
        "    (0): LeakyReLU(negative_slope=0.2)\n"
        "    (1): Linear(in_features=8, out_features=2, bias=False)\n"
        "  )\n"
        ")"
    )
    assert repr(nn.Parameter((2, 3))) == "Parameter(shape=(2, 3))"


# -- Linear ------------------------------------------------------------------
def initial(layer: nn.Linear, seed: int = 0) -> dict[str, np.ndarray]:
    """The layer's starting weight and bias in a float64 program."""
    prog = ember.compile(nn.Sequential(layer), dtype="float64", seed=seed)
    return {name.removeprefix("0."): value for name, value in prog.parameters.items()}


def test_linear_shapes_are_out_by_in():
    layer = nn.Linear(5, 3)
    assert layer.weight.shape == (3, 5)
    assert layer.bias.shape == (3,)
    assert {k: v.shape for k, v in initial(layer).items()} == {"weight": (3, 5), "bias": (3,)}


@pytest.mark.parametrize("features", [0, -1, 2.0, True])
def test_linear_needs_positive_integer_sizes(features):
    with pytest.raises(ember.ConfigError, match="in_features must be a positive integer"):
        nn.Linear(features, 3)


def test_linear_default_init_is_pytorchs_uniform():
    """Weight and bias both from U(-1/sqrt(in), 1/sqrt(in))."""
    fan_in, fan_out = 400, 500
    values = initial(nn.Linear(fan_in, fan_out))
    bound = 1 / math.sqrt(fan_in)
    for name, value in values.items():
        assert np.abs(value).max() <= bound, name
        assert np.abs(value).max() > 0.98 * bound, name
        assert abs(value.mean()) < 6 * bound / math.sqrt(3 * value.size), name  # 6 standard errors
    assert values["weight"].std() == pytest.approx(bound / math.sqrt(3), rel=0.01)


@pytest.mark.parametrize(
    ("init", "std"),
    [("normal", lambda fan_in, fan_out: 0.02), ("he", lambda fan_in, fan_out: math.sqrt(2 / fan_in))],
)
def test_linear_normal_inits(init, std):
    fan_in, fan_out = 400, 500
    values = initial(nn.Linear(fan_in, fan_out, init=init))
    expected = std(fan_in, fan_out)
    assert values["weight"].std() == pytest.approx(expected, rel=0.01)
    assert abs(values["weight"].mean()) < 0.01 * expected
    assert np.abs(values["weight"]).max() > 3 * expected  # a normal's tail, not a uniform
    np.testing.assert_array_equal(values["bias"], 0.0)


def test_linear_xavier_init():
    fan_in, fan_out = 400, 500
    values = initial(nn.Linear(fan_in, fan_out, init="xavier"))
    bound = math.sqrt(6 / (fan_in + fan_out))
    assert np.abs(values["weight"]).max() <= bound
    assert np.abs(values["weight"]).max() > 0.98 * bound
    assert values["weight"].std() == pytest.approx(bound / math.sqrt(3), rel=0.01)
    np.testing.assert_array_equal(values["bias"], 0.0)


def test_linear_init_by_callable():
    def ones(rng, shape, fan_in, fan_out):
        return np.full(shape, fan_in / fan_out)

    np.testing.assert_array_equal(initial(nn.Linear(6, 3, init=ones))["weight"], np.full((3, 6), 2.0))


def test_unknown_initializer():
    with pytest.raises(ember.ConfigError, match="unknown initializer 'glorious'"):
        nn.Linear(2, 2, init="glorious")


def test_init_depends_on_the_seed_only():
    assert np.array_equal(initial(nn.Linear(8, 8), seed=1)["weight"], initial(nn.Linear(8, 8), seed=1)["weight"])
    assert not np.array_equal(initial(nn.Linear(8, 8), seed=1)["weight"], initial(nn.Linear(8, 8), seed=2)["weight"])


class Scale(nn.Module):
    def __init__(self, data) -> None:
        self.w = nn.Parameter(data=data)

    def forward(self, x):
        return x @ self.w


def test_explicit_parameter_data_is_used_as_is():
    data = np.arange(6.0).reshape(3, 2) / 7
    for seed in (0, 1):
        params = ember.compile(Scale(data), input_shape=(3,), dtype="float64", seed=seed).parameters
        np.testing.assert_array_equal(params["w"], data)
    params32 = ember.compile(Scale(data), input_shape=(3,)).parameters
    np.testing.assert_array_equal(params32["w"], data.astype(np.float32))


def test_parameter_needs_a_shape():
    with pytest.raises(ember.ShapeError, match="needs a shape"):
        nn.Parameter()
    with pytest.raises(ember.ShapeError, match="needs a shape"):
        nn.Parameter((2, -1))


# -- tracing errors ----------------------------------------------------------
STRAY = nn.Parameter((3,))


class UsesStrayParameter(nn.Module):
    def __init__(self) -> None:
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x) + STRAY


class ReturnsTuple(nn.Module):
    def __init__(self) -> None:
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x), 1


class Branches(nn.Module):
    def __init__(self) -> None:
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        h = self.fc(x)
        if h.sum() > 0:  # <- truth value
            return h
        return -h


class BadMatmul(nn.Module):
    def __init__(self) -> None:
        self.fc = nn.Linear(4, 3)
        self.w = nn.Parameter((5, 2))

    def forward(self, x):
        h = self.fc(x)
        return h @ self.w  # <- shape error


class UsesString(nn.Module):
    def __init__(self) -> None:
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x) + "1"  # <- string


class NoForward(nn.Module):
    def __init__(self) -> None:
        self.fc = nn.Linear(4, 3)


def line_of(marker: str) -> int:
    """The line of this file that carries the comment `# <- marker`."""
    lines = Path(__file__).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.endswith(f"# <- {marker}"))


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize(
    ("model", "error", "words", "marker"),
    [
        (UsesStrayParameter, ember.EmberError, ["Parameter that is not an attribute of the model"], None),
        (
            ReturnsTuple,
            ember.EmberError,
            ["ReturnsTuple.forward must return a tensor or a tuple of tensors", "a int at 1"],
            None,
        ),
        (Branches, ember.EmberError, ["no truth value", "ember.where"], "truth value"),
        (BadMatmul, ember.ShapeError, ["matmul", "f32[B,3]", "f32[5,2]"], "shape error"),
        (UsesString, ember.EmberError, ["cannot use a str"], "string"),
        (NoForward, ember.EmberError, ["NoForward must define forward()"], None),
    ],
)
def test_tracing_errors_explain_themselves(model, error, words, marker, training):
    """Errors raised inside a user's forward name the file and line."""
    kwargs = {"loss": nn.MSELoss(), "optimizer": optim.SGD()} if training else {}
    with pytest.raises(error) as info:
        ember.compile(model(), **kwargs)
    message = str(info.value)
    for word in words:
        assert word in message
    if marker:
        assert f"{__file__}:{line_of(marker)} in forward" in message


def test_gelu_is_exact_by_default_as_pytorch():
    assert nn.GELU().approximate == "none"
    assert repr(nn.GELU(approximate="tanh")) == "GELU(approximate='tanh')"
    with pytest.raises(ember.ConfigError, match='approximate must be "none" or "tanh"'):
        nn.GELU(approximate="erf")


class Tower(nn.Module):
    """Blocks in a ModuleList and heads in a ModuleDict."""

    def __init__(self) -> None:
        self.blocks = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 4)])
        self.heads = nn.ModuleDict({"a": nn.Linear(4, 2), "b": nn.Linear(4, 2)})

    def forward(self, x):
        for block in self.blocks:
            x = ember.relu(block(x))
        return self.heads["a"](x) + self.heads["b"](x)


def test_module_list_appends_extends_inserts_and_indexes():
    layers = [nn.Linear(2, 2) for _ in range(4)]
    items = nn.ModuleList(layers[:1]).append(layers[1])
    items.extend(layers[2:3])
    items.insert(0, layers[3])
    assert list(items) == [layers[3], layers[0], layers[1], layers[2]]
    assert len(items) == 4
    assert items[-1] is layers[2]
    assert list(items[1:3]) == layers[:2]
    assert [name for name, _ in items.named_parameters()][:2] == ["0.weight", "0.bias"]
    items[1] = layers[2]
    assert items[1] is layers[2]
    with pytest.raises(ember.ConfigError, match=r"not an ember\.nn\.Module"):
        items.append("relu")
    with pytest.raises(IndexError):
        items[9]


def test_module_dict_keeps_insertion_order():
    heads = nn.ModuleDict({"b": nn.Linear(2, 1)})
    heads["a"] = nn.Linear(2, 1)
    heads.update([("c", nn.ReLU())])
    assert heads.keys() == ["b", "a", "c"]
    assert "a" in heads
    assert len(heads) == 3
    del heads["c"]
    assert [name for name, _ in heads.items()] == ["b", "a"]
    with pytest.raises(KeyError):
        heads["c"]
    with pytest.raises(ember.ConfigError, match="ModuleDict: a key must be"):
        heads["x.y"] = nn.ReLU()


def test_containers_name_parameters_and_modules_as_pytorch():
    model = Tower()
    names = [name for name, _ in model.named_parameters()]
    assert names == [f"{m}.{p}" for m in ("blocks.0", "blocks.1", "heads.a", "heads.b") for p in ("weight", "bias")]
    assert [name for name, _ in model.named_modules()] == [
        "",
        "blocks",
        "blocks.0",
        "blocks.1",
        "heads",
        "heads.a",
        "heads.b",
    ]
    prog = ember.compile(model)
    x = np.ones((3, 4), np.float32)
    p = {k: v.astype(np.float64) for k, v in prog.parameters.items()}
    h = x
    for i in range(2):
        h = np.maximum(h @ p[f"blocks.{i}.weight"].T + p[f"blocks.{i}.bias"], 0)
    expected = sum(h @ p[f"heads.{k}.weight"].T + p[f"heads.{k}.bias"] for k in "ab")
    np.testing.assert_allclose(prog.predict(x), expected, rtol=1e-5)


def test_named_parameters_lists_a_modules_own_parameters_before_its_childrens():
    class Scaled(nn.Module):
        def __init__(self) -> None:
            self.inner = nn.Linear(2, 2)
            self.scale = nn.Parameter((2,), init="zeros")

        def forward(self, x):
            return self.inner(x) * self.scale

    assert [name for name, _ in Scaled().named_parameters()] == ["scale", "inner.weight", "inner.bias"]


class Mismatched(nn.Module):
    def __init__(self) -> None:
        self.encoder = nn.Sequential(nn.Linear(4, 64), nn.ReLU())
        self.head = nn.Linear(128, 10)  # <- head defined

    def forward(self, x):
        return self.head(self.encoder(x))  # <- head called


def test_a_layer_error_names_the_layer_where_it_was_built_and_the_fix():
    with pytest.raises(ember.ShapeError) as info:
        ember.compile(Mismatched())
    message = str(info.value)
    here = Path(__file__).relative_to(Path.cwd()) if Path(__file__).is_relative_to(Path.cwd()) else Path(__file__)
    assert message.startswith(f"Linear 'head' ({here}:{line_of('head defined')}): expects 128 input features, got 64")
    assert f"{__file__}:{line_of('head called')} in forward" in message
    assert "make it Linear(64, 10)" in message


def test_a_layer_error_in_a_sequential_names_the_layer_by_its_index():
    with pytest.raises(
        ember.ShapeError, match=r"^Linear '2' \(\S+test_nn.py:\d+\): expects 128 input features, got 64"
    ):
        ember.compile(nn.Sequential(nn.Linear(4, 64), nn.ReLU(), nn.Linear(128, 10)))
