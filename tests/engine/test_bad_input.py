"""Malformed requests deny with a reason; malformed writes raise; nothing crashes or allows."""

from __future__ import annotations

from typing import Any

import pytest

from agentauthz import Authorizer, Entity, InvalidInputError


@pytest.mark.parametrize(
    ("principal", "resource"),
    [
        ("user", "document:1"),
        ("user:", "document:1"),
        (":alice", "document:1"),
        ("user:*", "document:4"),
        ("user:alice#member", "document:1"),
        ("user:alice", "document:1#owner"),
        ("user:alice", "document:*"),
        (42, "document:1"),
        (None, "document:1"),
        ("user:alice", ["document", "1"]),
        ("user:" + "a" * 5000, "document:1"),
        ("user:alice", "document:" + "9" * 5000),
        ("nosuchtype:x", "document:1"),
        ("user:alice", "nosuchtype:1"),
        ("user:\x00", "document:1"),
    ],
)
def test_malformed_requests_deny_with_a_reason(authz: Authorizer, principal: Any,
                                               resource: Any) -> None:
    decision = authz.check(principal, "read", resource)
    assert not decision.allowed
    assert decision.reasons[0].kind in {"invalid_input", "unknown_type", "default_deny"}


@pytest.mark.parametrize("action", [None, 3, "", "read ", "READ", "x" * 10_000])
def test_odd_actions_deny(authz: Authorizer, action: Any) -> None:
    assert not authz.check("user:bob", action, "document:3").allowed


@pytest.mark.parametrize("context", ["tenant=acme", 3, ["a"], object()])
def test_non_mapping_context_denies(authz: Authorizer, context: Any) -> None:
    decision = authz.check("user:bob", "read", "document:3", context)
    assert not decision.allowed and decision.reasons[0].kind == "invalid_input"


def test_deeply_nested_and_huge_context_does_not_crash(authz: Authorizer) -> None:
    nested: dict[str, Any] = {}
    cur = nested
    for _ in range(5000):
        cur["x"] = {}
        cur = cur["x"]
    assert authz.check("user:bob", "read", "document:3", {"deep": nested}).allowed
    assert authz.check("user:bob", "read", "document:3",
                       {f"k{i}": i for i in range(100_000)}).allowed


@pytest.mark.parametrize(
    "relationship",
    [
        "document:1#nosuch@user:a",
        "document:1#owner@team:eng",
        "document:1#owner@user:*",
        "document:1#owner@team:eng#member",
        "nosuch:1#owner@user:a",
        "document:1#owner",
        "document:1owner@user:a",
        "document:1#owner@user:a b",
        "document:#owner@user:a",
        ("document:1", "owner"),
        ("document:1", "owner", 7),
        12,
    ],
)
def test_invalid_writes_raise_and_write_nothing(authz: Authorizer, relationship: Any) -> None:
    before = len(authz.store)
    with pytest.raises(InvalidInputError):
        authz.write(add=["document:99#owner@user:zed", relationship])
    assert len(authz.store) == before
    assert not authz.check("user:zed", "read", "document:99").allowed


def test_entity_parsing() -> None:
    assert Entity.parse("user:alice@example.com").id == "alice@example.com"
    assert Entity.parse("doc:a:b").id == "a:b"
    assert Entity.parse("user:a") == Entity("user", "a", {"x": 1})
    for bad in ("user", "user:", "9x:a", "user:a#b", "user:*", "user:a b"):
        with pytest.raises(InvalidInputError):
            Entity.parse(bad)
    with pytest.raises(InvalidInputError):
        Entity("user", 7)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        Entity("user", "a", {"id": "b"})


def test_attribute_writes_are_validated(authz: Authorizer) -> None:
    with pytest.raises(InvalidInputError):
        authz.set_attributes("nosuch:1", {"a": 1})
    with pytest.raises(InvalidInputError):
        authz.set_attributes("document:1", {"type": "x"})
    with pytest.raises(InvalidInputError):
        authz.set_attributes("document:1", ["a"])  # type: ignore[arg-type]
