"""Layers: `Linear` and the activation modules."""

from __future__ import annotations

from .. import functional as F
from ..ir import ConfigError, ShapeError
from ..tensor import user_location
from .init import Initializer
from .module import Module, Parameter


class Linear(Module):
    """`y = x @ weight.T + bias`.

    `weight` is stored `[out_features, in_features]` and `bias` `[out_features]`,
    as in PyTorch, so state dicts carry over unchanged. `init` picks the weight
    initializer: "default" (PyTorch's scheme; the bias then draws from
    U(-1/sqrt(in), 1/sqrt(in))), "normal", "xavier", "he" or a callable;
    with any scheme but the default, the bias starts at zero."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, init: str | Initializer = "default"):
        for name, n in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                raise ConfigError(f"Linear: {name} must be a positive integer, got {n!r}")
        self.in_features = in_features
        self.out_features = out_features
        self.weight = Parameter((out_features, in_features), init=init, fan_in=in_features, fan_out=out_features)
        if bias:
            bias_init = "default" if init in ("default", "pytorch") else "zeros"
            self.bias = Parameter((out_features,), init=bias_init, fan_in=in_features, fan_out=out_features)
        else:
            self.bias = None

    def forward(self, x):
        features = x.shape[-1] if x.ndim else None
        if isinstance(features, int) and features != self.in_features:
            raise ShapeError(
                f"expects {self.in_features} input features, got {features} (input {x._value().type}) "
                f"(at {user_location()}); make it Linear({features}, {self.out_features}) or change what feeds it"
            )
        return F.linear(x, self.weight, self.bias)

    def input_spec(self) -> tuple[tuple[int, ...], str | None]:
        return (self.in_features,), None

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class ReLU(Module):
    def forward(self, x):
        return F.relu(x)


class Sigmoid(Module):
    def forward(self, x):
        return F.sigmoid(x)


class Tanh(Module):
    def forward(self, x):
        return F.tanh(x)


class LeakyReLU(Module):
    def __init__(self, negative_slope: float = 0.01) -> None:
        self.negative_slope = negative_slope

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class GELU(Module):
    """GELU with the tanh approximation: the same function as
    torch.nn.GELU(approximate="tanh") (PyTorch's own default is the exact erf form)."""

    def __init__(self, approximate: str = "tanh") -> None:
        if approximate != "tanh":
            raise ConfigError(f'GELU: ember implements approximate="tanh" only, got {approximate!r}')
        self.approximate = approximate

    def forward(self, x):
        return F.gelu(x)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class Softmax(Module):
    def __init__(self, dim: int = -1) -> None:
        self.dim = dim

    def forward(self, x):
        return F.softmax(x, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Identity(Module):
    def forward(self, x):
        return x
