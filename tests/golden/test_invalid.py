"""Each file in invalid/ holds IR the parser must reject, and starts with
`# error: LINE:COL: TEXT`, the diagnostic it must produce."""

from __future__ import annotations

from pathlib import Path

import pytest

from ember import ir

INVALID = sorted((Path(__file__).parent / "invalid").glob("*.ir"))
PREFIX = "# error: "
REQUIRED = {
    "unknown_op",
    "undefined_value",
    "value_defined_twice",
    "bad_type_syntax",
    "unknown_dtype",
    "declared_type_mismatch",
    "wrong_operand_count",
    "unknown_attribute",
    "bad_attribute_value",
    "update_non_param",
    "update_type_mismatch",
    "missing_closing_brace",
    "text_after_graph",
    "unexpected_character",
    "empty_file",
    "nested_attribute_list",
    "axis_given_twice",
    "constant_out_of_range",
    "unbound_symbol",
}
"""Diagnostics that must each keep a file (others may be added freely)."""


def test_every_required_diagnostic_has_a_file():
    assert {p.stem for p in INVALID} >= REQUIRED


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_ir_gives_its_diagnostic(path):
    text = path.read_text()
    header = text.splitlines()[0]
    assert header.startswith(PREFIX), f"{path.name} must start with '{PREFIX}LINE:COL: TEXT'"
    expected = header.removeprefix(PREFIX)
    position = expected.split(": ")[0]
    line, column = map(int, position.split(":"))

    with pytest.raises(ir.ParseError) as info:
        ir.parse(text)
    message = str(info.value)
    first, *shown = message.splitlines()
    assert first.startswith(f"{position}: ")
    assert expected in first
    assert (info.value.line, info.value.column) == (line, column)
    source = text.splitlines()[line - 1]
    if not source.startswith("#"):  # an empty text has no line to show
        assert shown == ["    " + source, "    " + " " * (column - 1) + "^"]
