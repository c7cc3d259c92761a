"""Layers: `Linear` and the activation modules."""

from __future__ import annotations

from .. import functional as F
from ..ir import ConfigError
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
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Embedding(Module):
    """A lookup table: `forward(indices)` returns the rows of `weight`
    [num_embeddings, embedding_dim] at integer indices of any shape, shaped
    [*indices.shape, embedding_dim] (PyTorch's nn.Embedding). The weight
    starts from N(0, 1) with the `padding_idx` row zeroed; that row gets no
    gradient. `max_norm`, `scale_grad_by_freq` and `sparse` are not
    supported (a ConfigError)."""

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
    ) -> None:
        for name, n in (("num_embeddings", num_embeddings), ("embedding_dim", embedding_dim)):
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                raise ConfigError(f"Embedding: {name} must be a positive integer, got {n!r}")
        F.check_embedding_options(max_norm, scale_grad_by_freq, sparse)
        if padding_idx is not None:
            padding_idx = F.padding_row(padding_idx, num_embeddings)
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.padding_idx = padding_idx
        self.weight = Parameter((num_embeddings, embedding_dim), init=_embedding_init(padding_idx))

    def forward(self, indices):
        return F.embedding(indices, self.weight, self.padding_idx)

    def extra_repr(self) -> str:
        padding = f", padding_idx={self.padding_idx}" if self.padding_idx is not None else ""
        return f"{self.num_embeddings}, {self.embedding_dim}{padding}"


def _embedding_init(padding_idx: int | None) -> Initializer:
    """N(0, 1), as PyTorch's nn.Embedding, with the padding row zeroed."""

    def init(rng, shape, fan_in, fan_out):
        weight = rng.normal(0.0, 1.0, shape)
        if padding_idx is not None:
            weight[padding_idx] = 0.0
        return weight

    return init


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
