"""The error hierarchy. Every error ember raises derives from `EmberError`."""

from __future__ import annotations


class EmberError(Exception):
    """Base class of every error ember raises."""


class ShapeError(EmberError, ValueError):
    """A tensor has the wrong shape or rank."""


class DTypeError(EmberError, TypeError):
    """A tensor has the wrong element type."""


class IRError(EmberError, ValueError):
    """An IR graph is malformed (raised by the builder and the verifier)."""


class VerifyError(IRError):
    """The verifier rejected a graph; the message shows the printed IR around
    the failing line, marked `>>`."""


SHOWN_COLUMNS = 100
"""A parse error shows at most this many characters of the line around the error."""


class ParseError(EmberError, ValueError):
    """IR text could not be parsed; the message starts with `line:column`,
    then shows the line (or, when it is long, the part around the column)."""

    def __init__(self, message: str, line: int, column: int, source_line: str = "") -> None:
        self.line = line
        self.column = column
        text = f"{line}:{column}: {message}"
        if source_line:
            shown, at = _excerpt(source_line, column)
            text += f"\n    {shown}\n    {' ' * (at - 1)}^"
        super().__init__(text)


def _excerpt(source_line: str, column: int) -> tuple[str, int]:
    """At most SHOWN_COLUMNS characters of `source_line` around `column`
    (with "..." where it is cut), and the column within them."""
    if len(source_line) <= SHOWN_COLUMNS:
        return source_line, column
    start = max(0, min(column - 1 - SHOWN_COLUMNS // 2, len(source_line) - SHOWN_COLUMNS))
    end = start + SHOWN_COLUMNS
    head = "..." if start > 0 else ""
    tail = "..." if end < len(source_line) else ""
    return head + source_line[start:end] + tail, column - start + len(head)


class ConfigError(EmberError, ValueError):
    """An invalid option or hyperparameter (a learning rate, a stage name...)."""


class InputError(EmberError, ValueError):
    """Bad values in user data: a label out of range, an empty batch..."""


class CheckpointError(EmberError, OSError):
    """A checkpoint file is missing, unreadable or not an ember checkpoint."""
