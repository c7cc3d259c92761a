"""Read IR text (as `ir.print_graph` writes it) back into a `Graph`.

Every error is a `ParseError` whose message starts with `line:column` and
shows the offending line. Types written on node lines are checked against
the op's type rule, so a parsed graph is also verified.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .builder import Builder
from .dtypes import DType
from .errors import EmberError, ParseError
from .graph import ROLES, UPDATABLE_ROLES, Graph, Value
from .ops import get_op
from .types import Dim, TensorType

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<comment>\#.*)
  | (?P<ref>%[A-Za-z0-9_.]+)
  | (?P<number>(?:[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+](?:inf|nan))(?![A-Za-z0-9_.]))
  | (?P<word>[A-Za-z0-9_][A-Za-z0-9_.]*)
  | (?P<punct>[{}\[\],:=])
    """,
    re.VERBOSE | re.ASCII,
)
"""One token. ASCII only: digits and spaces of other scripts are unexpected
characters. No part of a number can match in two ways, so rejecting a long
run of digits that turns out to be a word takes linear time."""

MAX_INT_DIGITS = 309
"""Integers are at most 309 digits long: a longer one is at least 2**1024,
more than any attribute holds (a float constant's value included), and
Python's int() refuses very long ones."""


@dataclass(frozen=True, slots=True)
class Token:
    kind: str
    text: str
    column: int  # 1-based


class _Line:
    """The tokens of one source line, consumed left to right."""

    def __init__(self, text: str, number: int) -> None:
        self.text = text
        self.number = number
        self.tokens: list[Token] = []
        pos = 0
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if match is None:
                raise self.error(f"unexpected character {text[pos]!r}", pos + 1)
            if match.lastgroup not in ("space", "comment"):
                self.tokens.append(Token(match.lastgroup, match.group(), pos + 1))  # type: ignore[arg-type]
            pos = match.end()
        self.index = 0

    def error(self, message: str, column: int | None = None) -> ParseError:
        if column is None:
            column = self.peek().column if self.index < len(self.tokens) else len(self.text.rstrip()) + 1
        return ParseError(message, self.number, column, self.text)

    def peek(self) -> Token:
        return self.tokens[self.index]

    def at_end(self) -> bool:
        return self.index >= len(self.tokens)

    def next(self, kind: str, what: str, text: str | None = None) -> Token:
        if self.at_end():
            raise self.error(f"expected {what}, got end of line")
        token = self.peek()
        if token.kind != kind or (text is not None and token.text != text):
            raise self.error(f"expected {what}, got {token.text!r}")
        self.index += 1
        return token

    def accept(self, text: str) -> bool:
        if not self.at_end() and self.peek().kind == "punct" and self.peek().text == text:
            self.index += 1
            return True
        return False

    def expect_end(self) -> None:
        if not self.at_end():
            raise self.error(f"unexpected {self.peek().text!r} at end of line")

    def integer(self, token: Token) -> int:
        """The value of a number token without a fraction or exponent."""
        if len(token.text.lstrip("+-")) > MAX_INT_DIGITS:
            raise self.error(f"integer with more than {MAX_INT_DIGITS} digits", token.column)
        return int(token.text)


def parse(text: str) -> Graph:
    """Parse the IR text of one graph."""
    # Lines end at "\n" or "\r\n" only, as editors count them (splitlines
    # also breaks at form feeds and Unicode separators).
    sources = [source.removesuffix("\r") for source in text.split("\n")]
    lines = [line for number, source in enumerate(sources, start=1) if (line := _Line(source, number)).tokens]
    if not lines:
        raise ParseError("expected 'graph NAME {', got an empty text", 1, 1)
    return _GraphParser(lines).parse()


def parse_file(path: str | Path) -> Graph:
    """Parse a `.ir` file; errors name the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ParseError(f"cannot read {path}: {e.strerror}", 0, 0) from None
    try:
        return parse(_decode(data))
    except ParseError as e:
        e.args = (f"{path}:{e}",)
        raise


def _decode(data: bytes) -> str:
    """IR files are UTF-8 text; a ParseError points at the first byte that is not."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        start = data.rfind(b"\n", 0, e.start) + 1
        line = data.count(b"\n", 0, e.start) + 1
        column = len(data[start : e.start].decode("utf-8", "replace")) + 1
        raise ParseError(f"not UTF-8 text: byte {data[e.start]:#04x}", line, column) from None


class _GraphParser:
    def __init__(self, lines: list[_Line]) -> None:
        self.lines = lines
        self.values: dict[str, Value] = {}

    def parse(self) -> Graph:
        head = self.lines[0]
        head.next("word", "'graph'", "graph")
        name = head.next("word", "a graph name").text
        head.next("punct", "'{'", "{")
        head.expect_end()
        self.graph = Graph(name)
        self.builder = Builder(self.graph)
        for line in self.lines[1:]:
            if self.closed(line):
                if line is not self.lines[-1]:
                    nxt = self.lines[self.lines.index(line) + 1]
                    raise nxt.error("text after the end of the graph", 1)
                return self.graph
            self.statement(line)
        last = self.lines[-1]
        raise ParseError("graph is not closed with '}'", last.number, len(last.text) + 1, last.text)

    @staticmethod
    def closed(line: _Line) -> bool:
        if line.accept("}"):
            line.expect_end()
            return True
        return False

    def statement(self, line: _Line) -> None:
        first = line.peek()
        if first.kind == "word" and first.text in ROLES:
            self.argument(line)
        elif first.kind == "word" and first.text == "output":
            self.output(line)
        elif first.kind == "word" and first.text == "update":
            self.update(line)
        elif first.kind == "ref":
            self.node(line)
        else:
            raise line.error(f"expected an argument, node, output or update line, got {first.text!r}")
        line.expect_end()

    def argument(self, line: _Line) -> None:
        role = line.next("word", "a role").text
        token = line.next("ref", "an argument name like %x")
        name = token.text[1:]
        line.next("punct", "':'", ":")
        type = self.type(line)

        def declare() -> Value:
            try:
                return self.graph.add_argument(name, type, role)
            except EmberError as e:
                raise line.error(str(e), token.column) from None

        self.define(line, token, declare)

    def node(self, line: _Line) -> None:
        result = line.next("ref", "a result name like %0")
        line.next("punct", "':'", ":")
        type_column = line.peek().column if not line.at_end() else 0
        declared = self.type(line)
        line.next("punct", "'='", "=")
        op_token = line.next("word", "an op name")
        try:
            op = get_op(op_token.text)
        except EmberError as e:
            raise line.error(str(e), op_token.column) from None
        operands = []
        if not line.at_end() and line.peek().kind == "ref":
            operands.append(self.use(line))
            while line.accept(","):
                operands.append(self.use(line))
        attrs = self.attributes(line) if line.accept("{") else {}

        def build() -> Value:
            try:
                value = self.builder.emit(op, *operands, **attrs)
            except EmberError as e:
                raise line.error(str(e), op_token.column) from None
            if value.type != declared:
                raise line.error(f"declared type {declared} but '{op.name}' gives {value.type}", type_column)
            return value

        self.define(line, result, build)

    def output(self, line: _Line) -> None:
        line.next("word", "'output'")
        name = line.next("word", "an output name").text
        if name in self.graph.outputs:
            raise line.error(f"output {name} is defined twice", line.tokens[line.index - 1].column)
        line.next("punct", "'='", "=")
        self.graph.outputs[name] = self.use(line)

    def update(self, line: _Line) -> None:
        line.next("word", "'update'")
        target_token = line.next("ref", "a param, buffer or state name like %0.weight")
        target = self.values.get(target_token.text[1:])
        if target is None or target.role not in UPDATABLE_ROLES:
            raise line.error(f"{target_token.text} is not a param, buffer or state argument", target_token.column)
        if target.name in self.graph.updates:
            raise line.error(f"{target_token.text} is updated twice", target_token.column)
        line.next("punct", "'='", "=")
        column = line.peek().column if not line.at_end() else 0
        value = self.use(line)
        if value.type != target.type:
            raise line.error(f"update of {target_token.text}: {target.type} but the new value is {value.type}", column)
        self.graph.updates[target.name] = value  # type: ignore[index]

    def define(self, line: _Line, token: Token, make) -> None:
        name = token.text[1:]
        if name in self.values:
            raise line.error(f"{token.text} is defined twice", token.column)
        self.values[name] = make()

    def use(self, line: _Line) -> Value:
        token = line.next("ref", "a value like %3")
        try:
            return self.values[token.text[1:]]
        except KeyError:
            raise line.error(f"{token.text} is not defined (values must be defined before use)", token.column) from None

    def type(self, line: _Line) -> TensorType:
        token = line.next("word", "a type like f32[B,4]")
        try:
            dtype = DType.parse(token.text)
        except KeyError:
            raise line.error(
                f"unknown dtype {token.text!r} (expected f32, f64, i32, i64 or bool)", token.column
            ) from None
        line.next("punct", "'['", "[")
        dims: list[Dim] = []
        if not line.accept("]"):
            while True:
                dims.append(self.dim(line))
                if line.accept("]"):
                    break
                line.next("punct", "',' or ']'", ",")
        try:
            return TensorType(dtype, tuple(dims))
        except EmberError as e:
            raise line.error(str(e), token.column) from None

    def dim(self, line: _Line) -> Dim:
        token = line.peek() if not line.at_end() else None
        if token and token.kind == "number" and token.text.isdigit():
            line.index += 1
            return line.integer(token)
        if token and token.kind == "word" and token.text.isidentifier():
            line.index += 1
            return token.text
        raise line.error("expected a dimension (an integer >= 0 or a symbol such as B)")

    def attributes(self, line: _Line) -> dict[str, Any]:
        attrs: dict[str, Any] = {}
        if line.accept("}"):
            return attrs
        while True:
            name = line.next("word", "an attribute name")
            if name.text in attrs:
                raise line.error(f"attribute {name.text} is given twice", name.column)
            line.next("punct", "'='", "=")
            attrs[name.text] = self.attr_value(line)
            if line.accept("}"):
                return attrs
            line.next("punct", "',' or '}'", ",")

    def attr_value(self, line: _Line) -> Any:
        """A scalar, or a list of scalars: no attribute holds nested lists."""
        if not line.accept("["):
            return self.scalar(line)
        items: list[Any] = []
        if line.accept("]"):
            return ()
        while True:
            if not line.at_end() and line.peek().text == "[":
                raise line.error("attribute lists hold numbers and words, not lists")
            items.append(self.scalar(line))
            if line.accept("]"):
                return tuple(items)
            line.next("punct", "',' or ']'", ",")

    def scalar(self, line: _Line) -> Any:
        if line.at_end():
            raise line.error("expected an attribute value, got end of line")
        token = line.peek()
        line.index += 1
        if token.kind == "number":
            is_float = any(c in token.text for c in ".eE") or token.text.lstrip("+-") in ("inf", "nan")
            return float(token.text) if is_float else line.integer(token)
        if token.kind == "word":
            literals = {"true": True, "false": False, "inf": float("inf"), "nan": float("nan")}
            return literals.get(token.text, token.text)
        raise line.error(f"expected an attribute value, got {token.text!r}", token.column)
