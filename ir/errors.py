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


class ParseError(EmberError, ValueError):
    """IR text could not be parsed; the message starts with `line:column`."""

    def __init__(self, message: str, line: int, column: int, source_line: str = "") -> None:
        self.line = line
        self.column = column
        text = f"{line}:{column}: {message}"
        if source_line:
            text += f"\n    {source_line}\n    {' ' * (column - 1)}^"
        super().__init__(text)


class ConfigError(EmberError, ValueError):
    """An invalid option or hyperparameter (a learning rate, a stage name...)."""


class InputError(EmberError, ValueError):
    """Bad values in user data: a label out of range, an empty batch..."""


class CheckpointError(EmberError, OSError):
    """A checkpoint file is missing, unreadable or not an ember checkpoint."""
