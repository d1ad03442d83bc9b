from __future__ import annotations

import pytest

from agentauthz.policy.expressions import (
    Arrow,
    Exclusion,
    ExpressionSyntaxError,
    Intersection,
    Name,
    Union,
    parse_permission,
)


def test_precedence_and_round_trip() -> None:
    e = parse_permission("a | b & c - d | x->y")
    assert isinstance(e, Union)
    assert isinstance(e.items[1], Intersection)
    assert isinstance(e.items[1].items[1], Exclusion)
    assert isinstance(e.items[2], Arrow)
    assert str(e) == "a | (b & (c - d)) | x->y"
    assert parse_permission(str(e)) == e
    assert parse_permission("(a | b) - c") == Exclusion(Union((Name("a", 1), Name("b", 5))),
                                                        Name("c", 10))
    assert parse_permission("a + b") == parse_permission("a | b")


@pytest.mark.parametrize(
    ("text", "offset"),
    [("", 0), ("a |", 3), ("a b", 2), ("(a", 2), ("a->", 3), ("a->b->c", 4), ("a $ b", 2),
     ("->a", 0), ("a)", 1)],
)
def test_syntax_errors_have_offsets(text: str, offset: int) -> None:
    with pytest.raises(ExpressionSyntaxError) as info:
        parse_permission(text)
    assert info.value.offset == offset


def test_limits() -> None:
    with pytest.raises(ExpressionSyntaxError, match="longer"):
        parse_permission("a | " * 1000 + "a")
    with pytest.raises(ExpressionSyntaxError, match="nesting"):
        parse_permission("(" * 40 + "a" + ")" * 40)
