"""Permission expressions: ``owner | parent->read``, ``viewer & active - banned``.

Grammar, loosest binding first (all operators associate to the left)::

    expr   := inter ( '|' inter )*        union: either side grants
    inter  := excl  ( '&' excl )*         intersection: both sides grant
    excl   := atom  ( '-' atom )*         exclusion: left grants and right does not
    atom   := NAME '->' NAME              arrow: follow the relation, check the permission there
            | NAME                        a relation or permission of the same type
            | '(' expr ')'

``+`` is accepted as a synonym of ``|`` (the SpiceDB spelling).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final, TypeAlias

__all__ = [
    "Arrow",
    "Exclusion",
    "ExpressionSyntaxError",
    "Intersection",
    "Name",
    "PermissionExpr",
    "Union",
    "parse_permission",
]

MAX_EXPRESSION_LENGTH: Final = 2048
MAX_NESTING: Final = 32


class ExpressionSyntaxError(ValueError):
    """A permission expression that does not parse; ``offset`` is 0-based in the expression."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


@dataclass(frozen=True, slots=True)
class Name:
    """A relation or permission of the same type."""

    name: str
    offset: int = field(default=0, compare=False)

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class Arrow:
    """``relation->permission``: the permission on any object the relation points to."""

    relation: str
    permission: str
    offset: int = field(default=0, compare=False)

    def __str__(self) -> str:
        return f"{self.relation}->{self.permission}"


@dataclass(frozen=True, slots=True)
class Union:
    items: tuple[PermissionExpr, ...]

    def __str__(self) -> str:
        return " | ".join(_wrap(i, Union) for i in self.items)


@dataclass(frozen=True, slots=True)
class Intersection:
    items: tuple[PermissionExpr, ...]

    def __str__(self) -> str:
        return " & ".join(_wrap(i, Intersection) for i in self.items)


@dataclass(frozen=True, slots=True)
class Exclusion:
    base: PermissionExpr
    excluded: PermissionExpr

    def __str__(self) -> str:
        return f"{_wrap(self.base, Exclusion)} - {_wrap(self.excluded, None)}"


PermissionExpr: TypeAlias = Name | Arrow | Union | Intersection | Exclusion


def _wrap(e: PermissionExpr, parent: type | None) -> str:
    if isinstance(e, Name | Arrow) or type(e) is parent:
        return str(e)
    return f"({e})"


_TOKEN: Final = re.compile(r"\s*(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>->|[|+&\-()]))")


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    tokens: list[tuple[str, str, int]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            rest = text[pos:]
            if not rest.strip():
                break
            offset = pos + len(rest) - len(rest.lstrip())
            raise ExpressionSyntaxError(f"unexpected character {text[offset]!r}", offset)
        kind = "name" if m.group("name") else "op"
        tokens.append((kind, m.group(kind), m.start(kind)))
        pos = m.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, str, int]:
        tok = self.peek()
        if tok is None:
            raise ExpressionSyntaxError("unexpected end of expression", len(self.text))
        self.i += 1
        return tok

    def at_op(self, *ops: str) -> bool:
        tok = self.peek()
        return tok is not None and tok[0] == "op" and tok[1] in ops

    def parse(self) -> PermissionExpr:
        if not self.tokens:
            raise ExpressionSyntaxError("empty expression", 0)
        expr = self.union()
        tok = self.peek()
        if tok is not None:
            raise ExpressionSyntaxError(f"unexpected {tok[1]!r}", tok[2])
        return expr

    def union(self) -> PermissionExpr:
        items = [self.inter()]
        while self.at_op("|", "+"):
            self.take()
            items.append(self.inter())
        return items[0] if len(items) == 1 else Union(tuple(items))

    def inter(self) -> PermissionExpr:
        items = [self.excl()]
        while self.at_op("&"):
            self.take()
            items.append(self.excl())
        return items[0] if len(items) == 1 else Intersection(tuple(items))

    def excl(self) -> PermissionExpr:
        expr = self.atom()
        while self.at_op("-"):
            self.take()
            expr = Exclusion(expr, self.atom())
        return expr

    def atom(self) -> PermissionExpr:
        kind, value, offset = self.take()
        if kind == "op" and value == "(":
            self.depth += 1
            if self.depth > MAX_NESTING:
                raise ExpressionSyntaxError(f"nesting deeper than {MAX_NESTING}", offset)
            inner = self.union()
            if not self.at_op(")"):
                raise ExpressionSyntaxError("expected ')'", self._here())
            self.take()
            self.depth -= 1
            return inner
        if kind != "name":
            raise ExpressionSyntaxError(f"expected a relation or permission name, got {value!r}",
                                        offset)
        if self.at_op("->"):
            self.take()
            nkind, nvalue, noffset = self.take()
            if nkind != "name":
                raise ExpressionSyntaxError("expected a permission name after '->'", noffset)
            if self.at_op("->"):
                raise ExpressionSyntaxError(
                    "chained arrows are not supported: define a permission on the "
                    "intermediate type and arrow to it", self._here())
            return Arrow(value, nvalue, offset)
        return Name(value, offset)

    def _here(self) -> int:
        tok = self.peek()
        return tok[2] if tok is not None else len(self.text)


def parse_permission(text: str) -> PermissionExpr:
    """Parse a permission expression; raises :class:`ExpressionSyntaxError` with an offset."""
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise ExpressionSyntaxError(
            f"expression longer than {MAX_EXPRESSION_LENGTH} characters", MAX_EXPRESSION_LENGTH)
    return _Parser(text).parse()


def walk(expr: PermissionExpr) -> list[Name | Arrow]:
    """The leaves of an expression, left to right."""
    if isinstance(expr, Name | Arrow):
        return [expr]
    if isinstance(expr, Exclusion):
        return walk(expr.base) + walk(expr.excluded)
    out: list[Name | Arrow] = []
    for item in expr.items:
        out.extend(walk(item))
    return out
