"""Recursive-descent (precedence-climbing) parser for the CEL subset.

Grammar (from the CEL language definition, minus message construction)::

    Expr           = ConditionalOr ["?" ConditionalOr ":" Expr]
    ConditionalOr  = [ConditionalOr "||"] ConditionalAnd
    ConditionalAnd = [ConditionalAnd "&&"] Relation
    Relation       = [Relation Relop] Addition          Relop = < <= >= > == != in
    Addition       = [Addition ("+" | "-")] Multiplication
    Multiplication = [Multiplication ("*" | "/" | "%")] Unary
    Unary          = Member | "!" {"!"} Member | "-" {"-"} Member
    Member         = Primary | Member "." IDENT ["(" [ExprList] ")"] | Member "[" Expr "]"
    Primary        = IDENT ["(" [ExprList] ")"] | "(" Expr ")" | "[" [ExprList] [","] "]"
                   | "{" [MapInits] [","] "}" | ["-"] NUMBER | LITERAL

Recursion happens only where the text nests (parentheses, brackets, call
arguments, the branches of ``?:``) and is bounded by ``max_depth``; the tree
depth is bounded by the same limit, so nothing downstream can overflow the
Python stack.
"""

from __future__ import annotations

from agentauthz.policy.cel import _lexer as lx
from agentauthz.policy.cel._ast import (
    Binary,
    Call,
    Conditional,
    Ident,
    Index,
    ListLit,
    Literal,
    Logical,
    MapLit,
    Node,
    Select,
    Unary,
)
from agentauthz.policy.cel._errors import CelSyntaxError

__all__ = ["INT64_MAX", "INT64_MIN", "parse"]

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1

_BINARY_PRECEDENCE = {
    "||": 1,
    "&&": 2,
    "==": 3, "!=": 3, "<": 3, "<=": 3, ">": 3, ">=": 3, "in": 3,
    "+": 4, "-": 4,
    "*": 5, "/": 5, "%": 5,
}
_LITERAL_WORDS = {"true": True, "false": False, "null": None}


def parse(source: str, *, max_depth: int) -> Node:
    """Parse ``source`` into a tree no deeper than ``max_depth``.

    Raises :class:`CelSyntaxError` on any syntax error.
    """
    return _Parser(source, lx.tokenize(source), max_depth).parse()


class _Parser:
    def __init__(self, source: str, tokens: list[lx.Token], max_depth: int) -> None:
        self.source = source
        self.tokens = tokens
        self.pos = 0
        self.max_depth = max_depth
        self.nesting = 0

    # -- helpers ---------------------------------------------------------------

    def error(self, message: str, offset: int) -> CelSyntaxError:
        return CelSyntaxError(message, self.source, offset)

    def peek(self) -> lx.Token:
        return self.tokens[self.pos]

    def at_op(self, op: str) -> bool:
        token = self.tokens[self.pos]
        return token.kind == lx.OP and token.value == op

    def advance(self) -> lx.Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def expect(self, op: str, context: str) -> lx.Token:
        token = self.peek()
        if token.kind != lx.OP or token.value != op:
            raise self.error(f"expected {op!r} {context}, found {self.describe(token)}",
                             token.offset)
        return self.advance()

    def describe(self, token: lx.Token) -> str:
        if token.kind == lx.EOF:
            return "end of input"
        return repr(self.source[token.offset:token.end])

    def node(self, node: Node) -> Node:
        if node.depth > self.max_depth:
            raise self.error(f"expression nested too deeply (limit {self.max_depth})",
                             node.offset)
        return node

    def enter(self, offset: int) -> None:
        self.nesting += 1
        if self.nesting > self.max_depth:
            raise self.error(f"expression nested too deeply (limit {self.max_depth})", offset)

    # -- grammar ---------------------------------------------------------------

    def parse(self) -> Node:
        token = self.peek()
        if token.kind == lx.EOF:
            raise self.error("empty condition", 0)
        expr = self.expr()
        token = self.peek()
        if token.kind != lx.EOF:
            raise self.error(f"unexpected {self.describe(token)} after a complete expression",
                             token.offset)
        return expr

    def expr(self) -> Node:
        self.enter(self.peek().offset)
        condition = self.binary(1)
        if self.at_op("?"):
            self.advance()
            then = self.binary(1)
            self.expect(":", "in a conditional (c ? a : b)")
            otherwise = self.expr()
            depth = 1 + max(condition.depth, then.depth, otherwise.depth)
            condition = self.node(Conditional(condition.offset, condition, then, otherwise,
                                              depth=depth))
        self.nesting -= 1
        return condition

    def binary(self, min_precedence: int) -> Node:
        left = self.unary()
        while True:
            token = self.peek()
            if token.kind == lx.OP:
                op = token.value
            elif token.kind == lx.IDENT and token.value == "in":
                op = "in"
            else:
                break
            precedence = _BINARY_PRECEDENCE.get(op)
            if precedence is None or precedence < min_precedence:
                break
            self.advance()
            right = self.binary(precedence + 1)
            if op in ("&&", "||"):
                operands = [*self.flatten(op, left), *self.flatten(op, right)]
                depth = 1 + max(o.depth for o in operands)
                left = self.node(Logical(left.offset, op, tuple(operands), depth=depth))
            else:
                depth = 1 + max(left.depth, right.depth)
                left = self.node(Binary(token.offset, op, left, right, depth=depth))
        return left

    @staticmethod
    def flatten(op: str, node: Node) -> tuple[Node, ...]:
        if isinstance(node, Logical) and node.op == op:
            return node.operands
        return (node,)

    def unary(self) -> Node:
        token = self.peek()
        if token.kind != lx.OP or token.value not in ("!", "-"):
            return self.member()
        op = token.value
        ops: list[lx.Token] = []
        while self.at_op(op):
            ops.append(self.advance())
        if op == "-" and self.peek().kind in (lx.INT, lx.DOUBLE):
            # "-" directly before a number is the literal's sign (so that
            # -9223372036854775808 is representable); any further "-" negate.
            sign = ops.pop()
            operand = self.member(negative_literal=sign)
        elif self.at_op("-") and self.tokens[self.pos + 1].kind in (lx.INT, lx.DOUBLE):
            operand = self.member(negative_literal=self.advance())  # !-1: a signed literal
        elif self.peek().kind == lx.OP and self.peek().value in ("!", "-"):
            raise self.error(f"{self.describe(self.peek())} cannot follow {op!r} "
                             "without parentheses", self.peek().offset)
        else:
            operand = self.member()
        for sign_token in reversed(ops):
            operand = self.node(Unary(sign_token.offset, op, operand, depth=operand.depth + 1))
        return operand

    def member(self, negative_literal: lx.Token | None = None) -> Node:
        node = self.primary(negative_literal)
        while True:
            token = self.peek()
            if token.kind != lx.OP:
                return node
            if token.value == ".":
                self.advance()
                name_token = self.peek()
                if name_token.kind != lx.IDENT or name_token.value in ("true", "false", "null",
                                                                        "in"):
                    raise self.error(f"expected a field name after '.', found "
                                     f"{self.describe(name_token)}", name_token.offset)
                self.advance()
                if self.at_op("("):
                    args = self.arguments(name_token.value)
                    depth = 1 + max(a.depth for a in (node, *args))
                    node = self.node(Call(name_token.offset, name_token.value, node, args,
                                          depth=depth))
                else:
                    node = self.node(Select(name_token.offset, node, name_token.value,
                                            depth=node.depth + 1))
            elif token.value == "[":
                self.advance()
                index = self.expr()
                self.expect("]", "to close the index")
                depth = 1 + max(node.depth, index.depth)
                node = self.node(Index(token.offset, node, index, depth=depth))
            elif token.value == "{":
                raise self.error("message construction (Type{field: value}) is not supported",
                                 token.offset)
            else:
                return node

    def arguments(self, name: str) -> tuple[Node, ...]:
        self.expect("(", "")
        args: list[Node] = []
        if not self.at_op(")"):
            while True:
                args.append(self.expr())
                if not self.at_op(","):
                    break
                self.advance()
        token = self.peek()
        if not self.at_op(")"):
            raise self.error(f"expected ',' or ')' in the arguments of {name}(), found "
                             f"{self.describe(token)}", token.offset)
        self.advance()
        return tuple(args)

    def primary(self, negative_literal: lx.Token | None = None) -> Node:
        token = self.advance()
        kind = token.kind
        if negative_literal is not None:
            # unary() only passes a sign when a number follows.
            value = -token.value
            if kind == lx.INT and value < INT64_MIN:
                raise self.error("integer literal out of range", negative_literal.offset)
            return Literal(negative_literal.offset, value)
        if kind == lx.INT:
            if token.value > INT64_MAX:
                raise self.error("integer literal out of range", token.offset)
            return Literal(token.offset, token.value)
        if kind in (lx.DOUBLE, lx.STRING, lx.BYTES):
            return Literal(token.offset, token.value)
        if kind == lx.IDENT:
            name = token.value
            if name in _LITERAL_WORDS:
                return Literal(token.offset, _LITERAL_WORDS[name])
            if name == "in" or name in lx.RESERVED:
                raise self.error(f"{name!r} is a reserved word", token.offset)
            if self.at_op("("):
                args = self.arguments(name)
                depth = 1 + max((a.depth for a in args), default=0)
                return self.node(Call(token.offset, name, None, args, depth=depth))
            return Ident(token.offset, name)
        if kind == lx.OP:
            op = token.value
            if op == "(":
                inner = self.expr()
                self.expect(")", "to close the parenthesis")
                return inner
            if op == "[":
                return self.list_literal(token)
            if op == "{":
                return self.map_literal(token)
            if op == "." and self.peek().kind == lx.IDENT:
                raise self.error("leading '.' (root-scope names) is not supported",
                                 token.offset)
        if kind == lx.EOF:
            raise self.error("unexpected end of input", token.offset)
        raise self.error(f"unexpected {self.describe(token)}", token.offset)

    def list_literal(self, open_token: lx.Token) -> Node:
        elements: list[Node] = []
        while not self.at_op("]"):
            elements.append(self.expr())
            if self.at_op(","):
                self.advance()
                continue
            if not self.at_op("]"):
                token = self.peek()
                raise self.error(f"expected ',' or ']' in a list, found {self.describe(token)}",
                                 token.offset)
        self.advance()
        depth = 1 + max((e.depth for e in elements), default=0)
        return self.node(ListLit(open_token.offset, tuple(elements), depth=depth))

    def map_literal(self, open_token: lx.Token) -> Node:
        entries: list[tuple[Node, Node]] = []
        while not self.at_op("}"):
            key = self.expr()
            self.expect(":", "between a map key and its value")
            value = self.expr()
            entries.append((key, value))
            if self.at_op(","):
                self.advance()
                continue
            if not self.at_op("}"):
                token = self.peek()
                raise self.error(f"expected ',' or '}}' in a map, found {self.describe(token)}",
                                 token.offset)
        self.advance()
        depth = 1 + max((max(k.depth, v.depth) for k, v in entries), default=0)
        return self.node(MapLit(open_token.offset, tuple(entries), depth=depth))
