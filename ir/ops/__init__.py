"""The op table: every op ember knows, one `OpDef` entry each."""

from __future__ import annotations

from ..errors import IRError
from ..opdef import OpDef
from . import collective, elementwise, layout, linalg, random, reduction, rows, source

TABLES = (elementwise, reduction, layout, linalg, source, rows, random, collective)
OPS: dict[str, OpDef] = {op.name: op for table in TABLES for op in table.OPS}


def get_op(name: str) -> OpDef:
    """The op named `name`; an `IRError` that lists close names otherwise."""
    try:
        return OPS[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, OPS, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise IRError(f"unknown op '{name}'{hint}") from None


__all__ = ["OPS", "get_op"]
