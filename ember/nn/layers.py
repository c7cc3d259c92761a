"""Layers: `Linear`, `Embedding`, `LayerNorm`, `Dropout` and the activation modules."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

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

    def input_spec(self) -> tuple[tuple[int, ...], str | None]:
        """As a model's first layer: one int64 index per example (pass
        `example_inputs=` for several per example)."""
        return (), "int64"

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


def _inplace(inplace: bool, first: bool = False) -> str:
    """PyTorch's extra_repr part for `inplace` (accepted, and ignored: traced
    tensors have no storage to modify)."""
    if not inplace:
        return ""
    return "inplace=True" if first else ", inplace=True"


class LayerNorm(Module):
    """Layer normalization over the last `len(normalized_shape)` axes, as
    torch.nn.LayerNorm: `weight` starts at ones and `bias` at zeros (both of
    shape `normalized_shape`), present when `elementwise_affine` (`bias` also
    needs `bias=True`)."""

    def __init__(
        self,
        normalized_shape: int | Sequence[int],
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
    ) -> None:
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        if not shape or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
            raise ConfigError(f"LayerNorm: normalized_shape must be positive integers, got {normalized_shape!r}")
        if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not eps >= 0:
            raise ConfigError(f"LayerNorm: eps must be a non-negative number, got {eps!r}")
        self.normalized_shape = shape
        self.eps = float(eps)
        self.elementwise_affine = elementwise_affine
        self.weight = Parameter(shape, init="ones") if elementwise_affine else None
        self.bias = Parameter(shape, init="zeros") if elementwise_affine and bias else None

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        shape = self.normalized_shape
        return f"{shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class ReLU(Module):
    """max(x, 0), elementwise (torch.nn.ReLU)."""

    def __init__(self, inplace: bool = False) -> None:
        self.inplace = inplace

    def forward(self, x):
        return F.relu(x)

    def extra_repr(self) -> str:
        return _inplace(self.inplace, first=True)


class Sigmoid(Module):
    """1 / (1 + e**-x), elementwise (torch.nn.Sigmoid)."""

    def forward(self, x):
        return F.sigmoid(x)


class Tanh(Module):
    """Hyperbolic tangent, elementwise (torch.nn.Tanh)."""

    def forward(self, x):
        return F.tanh(x)


class LeakyReLU(Module):
    """x where x > 0, else negative_slope * x (torch.nn.LeakyReLU)."""

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False) -> None:
        self.negative_slope = negative_slope
        self.inplace = inplace

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}{_inplace(self.inplace)}"


class GELU(Module):
    """GELU as torch.nn.GELU: exact, 0.5x(1 + erf(x / sqrt(2))), by default;
    approximate="tanh" for 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3)))."""

    def __init__(self, approximate: str = "none") -> None:
        if approximate not in ("none", "tanh"):
            raise ConfigError(f'GELU: approximate must be "none" or "tanh", got {approximate!r}')
        self.approximate = approximate

    def forward(self, x):
        return F.gelu(x, self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class SiLU(Module):
    """x * sigmoid(x)."""

    def __init__(self, inplace: bool = False) -> None:
        self.inplace = inplace

    def forward(self, x):
        return F.silu(x)

    def extra_repr(self) -> str:
        return _inplace(self.inplace, first=True)


class Mish(Module):
    """x * tanh(softplus(x))."""

    def __init__(self, inplace: bool = False) -> None:
        self.inplace = inplace

    def forward(self, x):
        return F.mish(x)

    def extra_repr(self) -> str:
        return _inplace(self.inplace, first=True)


class ELU(Module):
    """x where x > 0, else alpha * (e**x - 1)."""

    def __init__(self, alpha: float = 1.0, inplace: bool = False) -> None:
        self.alpha = alpha
        self.inplace = inplace

    def forward(self, x):
        return F.elu(x, self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}{_inplace(self.inplace)}"


class Softplus(Module):
    """log(1 + e**(beta x)) / beta, and x where beta x > threshold."""

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        self.beta = beta
        self.threshold = threshold

    def forward(self, x):
        return F.softplus(x, self.beta, self.threshold)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"


class Hardswish(Module):
    """x * relu6(x + 3) / 6."""

    def __init__(self, inplace: bool = False) -> None:
        self.inplace = inplace

    def forward(self, x):
        return F.hardswish(x)

    def extra_repr(self) -> str:
        return _inplace(self.inplace, first=True)


class Hardsigmoid(Module):
    """relu6(x + 3) / 6."""

    def __init__(self, inplace: bool = False) -> None:
        self.inplace = inplace

    def forward(self, x):
        return F.hardsigmoid(x)

    def extra_repr(self) -> str:
        return _inplace(self.inplace, first=True)


class Hardtanh(Module):
    """`x` limited to [min_val, max_val] (gradient 0 at the ends, as PyTorch)."""

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> None:
        if not max_val > min_val:
            raise ConfigError(f"Hardtanh: max_val must be above min_val, got min_val={min_val}, max_val={max_val}")
        self.min_val = min_val
        self.max_val = max_val
        self.inplace = inplace

    def forward(self, x):
        return F.hardtanh(x, self.min_val, self.max_val)

    def extra_repr(self) -> str:
        return f"min_val={self.min_val}, max_val={self.max_val}{_inplace(self.inplace)}"


class ReLU6(Hardtanh):
    """min(max(x, 0), 6)."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__(0.0, 6.0, inplace)

    def extra_repr(self) -> str:
        return _inplace(self.inplace, first=True)


class Softsign(Module):
    """x / (1 + |x|)."""

    def forward(self, x):
        return F.softsign(x)


class PReLU(Module):
    """x where x > 0, else weight * x, with a learnable `weight` of shape
    [num_parameters]: one slope for all channels, or one per channel (axis 1)."""

    def __init__(self, num_parameters: int = 1, init: float = 0.25) -> None:
        if not isinstance(num_parameters, int) or isinstance(num_parameters, bool) or num_parameters < 1:
            raise ConfigError(f"PReLU: num_parameters must be a positive integer, got {num_parameters!r}")
        self.num_parameters = num_parameters
        self.weight = Parameter((num_parameters,), init=lambda rng, shape, fan_in, fan_out: np.full(shape, init))

    def forward(self, x):
        return F.prelu(x, self.weight)

    def extra_repr(self) -> str:
        return f"num_parameters={self.num_parameters}"


class Softmax(Module):
    """exp(x) / sum(exp(x)) along `dim`, computed stably (torch.nn.Softmax)."""

    def __init__(self, dim: int = -1) -> None:
        self.dim = dim

    def forward(self, x):
        return F.softmax(x, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Module):
    """log(softmax(x)) along `dim`, computed stably. Without `dim`, as
    PyTorch's legacy choice: axis 0 for inputs of rank 0, 1 or 3, else axis 1."""

    def __init__(self, dim: int | None = None) -> None:
        self.dim = dim

    def forward(self, x):
        dim = self.dim if self.dim is not None else (0 if x.ndim in (0, 1, 3) else 1)
        return F.log_softmax(x, dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Flatten(Module):
    """Axes start_dim..end_dim merged into one (by default all but the batch axis)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, x):
        return F.flatten(x, self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Dropout(Module):
    """Zero each element with probability `p` and scale the others by
    1/(1-p) in training; the identity in eval mode (see `F.dropout`)."""

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        F.dropout_probability(p)
        self.p = p  # as given, as PyTorch keeps it
        self.inplace = inplace  # accepted for PyTorch's signature; ember never writes a tensor in place

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


class Identity(Module):
    """Its input, unchanged (torch.nn.Identity)."""

    def forward(self, x):
        return x
