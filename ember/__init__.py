"""ember: a compiler for neural-network training.

import ember
from ember import nn, optim

model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
prog = ember.compile(model, loss=nn.CrossEntropyLoss(), optimizer=optim.Adam(lr=1e-3))
prog.fit(x, y, epochs=5)
print(prog.dump("train"))
"""

from . import nn, optim
from .api import compile, load
from .functional import (
    abs,
    broadcast_to,
    cast,
    dropout,
    equal,
    exp,
    gelu,
    leaky_relu,
    linear,
    log,
    log_softmax,
    matmul,
    max,
    maximum,
    mean,
    minimum,
    not_equal,
    one_hot,
    relu,
    reshape,
    rsqrt,
    sigmoid,
    softmax,
    sqrt,
    sum,
    tanh,
    transpose,
    where,
)
from .ir import (
    CheckpointError,
    ConfigError,
    DTypeError,
    EmberError,
    InputError,
    IRError,
    ParseError,
    ShapeError,
    VerifyError,
)
from .program import STAGES, Program
from .runtime.caches import CacheInfo, cache_info, clear_cache
from .runtime.threads import get_num_threads, set_num_threads
from .tensor import Tensor

__version__ = "0.1.0"

__all__ = [
    "STAGES",
    "CacheInfo",
    "CheckpointError",
    "ConfigError",
    "DTypeError",
    "EmberError",
    "IRError",
    "InputError",
    "ParseError",
    "Program",
    "ShapeError",
    "Tensor",
    "VerifyError",
    "abs",
    "broadcast_to",
    "cache_info",
    "cast",
    "clear_cache",
    "compile",
    "dropout",
    "equal",
    "exp",
    "gelu",
    "get_num_threads",
    "leaky_relu",
    "linear",
    "load",
    "log",
    "log_softmax",
    "matmul",
    "max",
    "maximum",
    "mean",
    "minimum",
    "nn",
    "not_equal",
    "one_hot",
    "optim",
    "relu",
    "reshape",
    "rsqrt",
    "set_num_threads",
    "sigmoid",
    "softmax",
    "sqrt",
    "sum",
    "tanh",
    "transpose",
    "where",
]
