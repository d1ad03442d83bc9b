"""The syntax tree of the CEL subset. Every node knows its source offset and depth."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Binary", "Call", "Conditional", "Ident", "Index", "ListLit", "Literal", "Logical",
    "MapLit", "Node", "Select", "Unary",
]


@dataclass(frozen=True, slots=True)
class Node:
    """Base of all nodes. ``depth`` is 1 for a leaf, 1 + the deepest child otherwise."""

    offset: int
    depth: int = field(default=1, kw_only=True)


@dataclass(frozen=True, slots=True)
class Literal(Node):
    value: Any


@dataclass(frozen=True, slots=True)
class Ident(Node):
    name: str


@dataclass(frozen=True, slots=True)
class Select(Node):
    """``operand.field``; ``offset`` is where the field name starts."""

    operand: Node
    field: str


@dataclass(frozen=True, slots=True)
class Index(Node):
    operand: Node
    index: Node


@dataclass(frozen=True, slots=True)
class Call(Node):
    """A function call ``name(args)`` or a method call ``target.name(args)``."""

    name: str
    target: Node | None
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Unary(Node):
    """``!x`` or ``-x``."""

    op: str
    operand: Node


@dataclass(frozen=True, slots=True)
class Binary(Node):
    """Arithmetic, comparison and ``in``: ``op`` is the operator text."""

    op: str
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Logical(Node):
    """A flattened chain of ``&&`` (op ``"&&"``) or ``||`` (op ``"||"``) operands."""

    op: str
    operands: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Conditional(Node):
    condition: Node
    then: Node
    otherwise: Node


@dataclass(frozen=True, slots=True)
class ListLit(Node):
    elements: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class MapLit(Node):
    entries: tuple[tuple[Node, Node], ...]
