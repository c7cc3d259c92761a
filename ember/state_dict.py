"""State dicts: a Program's parameters and persistent buffers under
PyTorch's names, given out and loaded back as PyTorch does.

A `StateLayout` lists the state dict's entries in PyTorch's order (each
module's parameters, then its persistent buffers, then its children's) with
the dtype each entry is given out in: the program's float dtype, or an
integer dtype for integer buffers such as `num_batches_tracked` (int64),
which programs hold as floats."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from .ir import DType, DTypeError, InputError, ShapeError
from .nn.module import Module

INTEGER_DTYPES = ("int64", "int32", "int16", "int8", "uint8", "bool")


class IncompatibleKeys(NamedTuple):
    """What `load_state_dict` returns, as PyTorch's NamedTuple of the same name."""

    missing_keys: list[str]
    unexpected_keys: list[str]


@dataclass(frozen=True)
class StateLayout:
    """The entries of a state dict: (name, integer dtype or None for the
    program's float dtype), in order."""

    entries: tuple[tuple[str, str | None], ...]

    @staticmethod
    def of_model(model: Module) -> StateLayout:
        buffers = dict(model.named_buffers())
        entries = []
        for name in model.state_names():
            data = buffers[name].data if name in buffers else None
            integer = data is not None and data.dtype.kind in "biu"
            entries.append((name, data.dtype.name if integer else None))
        return StateLayout(tuple(entries))

    @staticmethod
    def default(names: Sequence[str]) -> StateLayout:
        """Every name in the program's dtype (checkpoints without a layout)."""
        return StateLayout(tuple((name, None) for name in names))

    def to_json(self) -> list[list[str | None]]:
        return [[name, dtype] for name, dtype in self.entries]

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.entries]


def give_out(layout: StateLayout, values: Mapping[str, np.ndarray]) -> OrderedDict[str, np.ndarray]:
    """The state dict of `values` (copies of the program's arrays by name)."""
    result: OrderedDict[str, np.ndarray] = OrderedDict()
    for name, dtype in layout.entries:
        value = values[name]
        result[name] = np.asarray(np.rint(value)).astype(dtype) if dtype else value  # rint of 0-d gives a scalar
    return result


def check_state_dict(
    layout: StateLayout, shapes: Mapping[str, tuple[int, ...]], dtype: DType, given: Any, strict: bool
) -> tuple[dict[str, np.ndarray], IncompatibleKeys]:
    """The arrays of `given` (any mapping of name -> array-like, such as a
    PyTorch state dict) to write, each in the program's dtype, and the
    missing and unexpected keys. Raises before anything is written when a
    key is missing or unexpected under `strict`, or an array does not fit."""
    if not isinstance(given, Mapping):
        raise DTypeError(f"load_state_dict needs a mapping of name -> array, got {type(given).__name__}")
    names = layout.names
    missing = [name for name in names if name not in given]
    unexpected = [str(key) for key in given if key not in names]
    if strict and (missing or unexpected):
        parts = []
        if missing:
            parts.append(f"missing keys {', '.join(map(repr, missing))}")
        if unexpected:
            parts.append(f"unexpected keys {', '.join(map(repr, unexpected))}")
        raise InputError(f"load_state_dict: {' and '.join(parts)} (pass strict=False to load the matching keys)")
    integer = dict(layout.entries)
    arrays = {name: _checked(name, given[name], shapes[name], integer[name], dtype) for name in names if name in given}
    return arrays, IncompatibleKeys(missing, unexpected)


def _checked(name: str, value: Any, shape: tuple[int, ...], integer: str | None, dtype: DType) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch.Tensor, which may require grad
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except Exception as e:  # ragged lists, broken __array__ ...
        raise DTypeError(f"state_dict[{name!r}] must be an array of numbers, got {type(value).__name__}: {e}") from None
    kinds = "biu" if integer else "biuf"
    if array.dtype.kind not in kinds:
        want = f"integers ({integer})" if integer else "numbers"
        raise DTypeError(f"state_dict[{name!r}] must hold {want}, got dtype {array.dtype}")
    if array.shape != tuple(shape):
        raise ShapeError(f"state_dict[{name!r}] must have shape {list(shape)}, got {list(array.shape)}")
    with np.errstate(over="ignore"):
        return array.astype(dtype.numpy)
