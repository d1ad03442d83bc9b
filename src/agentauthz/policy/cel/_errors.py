"""The two errors of the CEL subset: one for compiling, one for evaluating."""

from __future__ import annotations

from agentauthz.errors import ConditionError, InvalidInputError

__all__ = ["CelEvalError", "CelSyntaxError", "line_column"]


def line_column(source: str, offset: int) -> tuple[int, int]:
    """The 1-based (line, column) of a 0-based character ``offset`` in ``source``.

    Lines are separated by ``\\n``; columns count characters (code points), not
    bytes. An offset past the end is clamped to the end of the source.
    """
    offset = max(0, min(offset, len(source)))
    line = source.count("\n", 0, offset) + 1
    column = offset - (source.rfind("\n", 0, offset) + 1) + 1
    return line, column


class CelSyntaxError(InvalidInputError):
    """A condition that cannot be compiled.

    Raised by :func:`compile_condition` for malformed text, a name that is not a
    declared variable, an unknown or unsupported function (``matches`` among
    them), a wrong number of arguments, or text beyond the size and nesting
    limits. ``message`` says what is wrong without the position; ``offset`` is
    the 0-based character offset in ``source`` where the problem was found,
    and ``line``/``column`` are the same position, 1-based.
    """

    def __init__(self, message: str, source: str, offset: int) -> None:
        self.message = message
        self.source = source
        self.offset = max(0, min(offset, len(source)))
        self.line, self.column = line_column(source, self.offset)
        super().__init__(f"{message} (line {self.line}, column {self.column})")


class CelEvalError(ConditionError):
    """A condition that could not be evaluated against an activation.

    Every evaluation failure surfaces as this error and nothing else: a missing
    key or variable, operands of types an operator does not accept, int
    overflow, division by zero, a value out of range. ``message`` is a short
    description such as ``"no such key: 'tenant'"``.
    """

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)
