"""Static type checks of conditions against the declared attribute types.

A condition that compares a declared ``string`` attribute with a number can
never be true (or always errors), which in a forbid rule means it always
denies and in a permit rule that it never grants: almost certainly a typo.
This pass finds such mistakes at load, where the types of attributes are
declared (``attributes:`` on a type, ``context:`` on the policy). Unknown
types (undeclared attributes, indexes, most calls) are never reported: the
check only speaks when it is sure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from agentauthz.policy.cel._ast import (
    Binary,
    Call,
    Conditional,
    Ident,
    ListLit,
    Literal,
    Logical,
    MapLit,
    Node,
    Select,
    Unary,
)

__all__ = ["TypeProblem", "check_condition"]

TypeProblem = tuple[str, int]
"""A message and the 0-based offset in the condition it points at."""

_NUMERIC: Final = frozenset({"int", "double"})
_ORDERED: Final = frozenset({"int", "double", "string", "bool", "timestamp", "duration", "bytes"})
_CALL_RESULTS: Final = {
    "size": "int", "int": "int", "double": "double", "string": "string",
    "timestamp": "timestamp", "duration": "duration", "has": "bool",
    "startsWith": "bool", "endsWith": "bool", "contains": "bool",
}
_STRING_METHODS: Final = frozenset({"startsWith", "endsWith", "contains"})


def _literal_type(value: object) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bytes):
        return "bytes"
    if value is None:
        return "null"
    return None


class _Checker:
    def __init__(self, declared: Mapping[str, Mapping[str, str] | None]) -> None:
        self.declared = declared
        self.problems: list[TypeProblem] = []

    def report(self, message: str, node: Node) -> None:
        self.problems.append((message, node.offset))

    def infer(self, node: Node) -> str | None:
        if isinstance(node, Literal):
            return _literal_type(node.value)
        if isinstance(node, ListLit):
            for element in node.elements:
                self.infer(element)
            return "list"
        if isinstance(node, MapLit):
            for key, value in node.entries:
                self.infer(key)
                self.infer(value)
            return "map"
        if isinstance(node, Select):
            if isinstance(node.operand, Ident):
                if node.operand.name in ("principal", "resource") and node.field in ("id", "type"):
                    return "string"
                attrs = self.declared.get(node.operand.name)
                if attrs is not None:
                    declared = attrs.get(node.field)
                    return None if declared in (None, "any") else declared
                return None
            self.infer(node.operand)
            return None
        if isinstance(node, Unary):
            kind = self.infer(node.operand)
            if node.op == "!":
                if kind not in (None, "bool"):
                    self.report(f"'!' needs a bool, got {kind}", node)
                return "bool"
            if kind is not None and kind not in _NUMERIC | {"duration"}:
                self.report(f"'-' needs a number, got {kind}", node)
            return kind
        if isinstance(node, Logical):
            for operand in node.operands:
                kind = self.infer(operand)
                if kind not in (None, "bool"):
                    self.report(f"'{node.op}' needs bool operands, got {kind}", operand)
            return "bool"
        if isinstance(node, Conditional):
            cond = self.infer(node.condition)
            if cond not in (None, "bool"):
                self.report(f"'?:' needs a bool condition, got {cond}", node.condition)
            a, b = self.infer(node.then), self.infer(node.otherwise)
            return a if a == b else None
        if isinstance(node, Binary):
            return self.binary(node)
        if isinstance(node, Call):
            target = self.infer(node.target) if node.target is not None else None
            arg_kinds = [None if node.name == "has" else self.infer(arg) for arg in node.args]
            if node.name in _STRING_METHODS and target not in (None, "string"):
                self.report(f"{node.name}() is a string method, called on {target}", node)
            if node.name == "size":
                sized = target if node.target is not None else (
                    arg_kinds[0] if arg_kinds else None)
                if sized is not None and sized not in ("string", "bytes", "list", "map"):
                    self.report(f"size() of {sized}", node)
            return _CALL_RESULTS.get(node.name)
        return None

    def binary(self, node: Binary) -> str | None:
        left, right = self.infer(node.left), self.infer(node.right)
        op = node.op
        if op == "in":
            if right is not None and right not in ("list", "map"):
                self.report(f"'in' needs a list or map on the right, got {right}", node.right)
            elif left is not None and isinstance(node.right, ListLit):
                kinds = {_literal_type(e.value) for e in node.right.elements
                         if isinstance(e, Literal)}
                if (len(kinds) == 1 and len(node.right.elements) == len(
                        [e for e in node.right.elements if isinstance(e, Literal)])):
                    (kind,) = kinds
                    if kind is not None and kind != left and not {kind, left} <= _NUMERIC:
                        self.report(f"a {left} is never in a list of {kind} values", node)
            return "bool"
        if left is None or right is None or "null" in (left, right):
            return "bool" if op in ("==", "!=", "<", "<=", ">", ">=") else None
        if op in ("==", "!="):
            if left != right and not {left, right} <= _NUMERIC:
                self.report(f"comparing {left} with {right}: never equal", node)
            return "bool"
        if op in ("<", "<=", ">", ">="):
            if not (left == right and left in _ORDERED) and not {left, right} <= _NUMERIC:
                self.report(f"cannot order {left} against {right}", node)
            return "bool"
        result = _arithmetic(op, left, right)
        if result is None:
            self.report(f"no '{op}' for {left} and {right}", node)
        return result


def _arithmetic(op: str, left: str, right: str) -> str | None:
    if left == right and left in _NUMERIC:
        return left
    if op == "+" and left == right and left in ("string", "bytes", "list", "duration"):
        return left
    if op == "-" and left == right == "duration":
        return "duration"
    if op in ("+", "-") and left == "timestamp" and right == "duration":
        return "timestamp"
    if op == "+" and left == "duration" and right == "timestamp":
        return "timestamp"
    if op == "-" and left == right == "timestamp":
        return "duration"
    return None


def check_condition(tree: Node, declared: Mapping[str, Mapping[str, str] | None]
                    ) -> list[TypeProblem]:
    """Type problems of a condition; ``declared`` maps variables to attribute types
    (``None`` where nothing is declared, so anything goes)."""
    checker = _Checker(declared)
    result = checker.infer(tree)
    if result is not None and result != "bool":
        checker.problems.append((f"a condition must be bool, this one is {result}", tree.offset))
    return checker.problems
