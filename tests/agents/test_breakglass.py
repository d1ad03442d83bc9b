from __future__ import annotations

import logging

import pytest

from agentauthz import Authorizer, InvalidInputError
from agentauthz.agents import BreakGlass, Delegation

REASON = "prod incident 99: on-call must read the runbook"


def test_break_glass_opens_exactly_one_request(authz: Authorizer,
                                               caplog: pytest.LogCaptureFixture) -> None:
    assert not authz.check("user:bob", "read", "document:secret").allowed
    with caplog.at_level(logging.WARNING, logger="agentauthz.breakglass"):
        grant = authz.break_glass("user:bob", "read", "document:secret", reason=REASON,
                                  approver="user:carol", ttl=600)
        decision = authz.check("user:bob", "read", "document:secret")
    assert decision.allowed
    assert decision.reasons[0].kind == "break_glass"
    assert grant.id in decision.reasons[0].message and "user:carol" in decision.reasons[0].message
    assert "BREAK-GLASS granted" in caplog.text and "BREAK-GLASS used" in caplog.text
    assert not authz.check("user:bob", "write", "document:secret").allowed
    assert not authz.check("user:bob", "read", "document:a").allowed
    assert not authz.check("user:dave", "read", "document:secret").allowed
    assert authz.list_resources("user:bob", "read", "document") == {"document:secret"}
    assert authz.list_actions("user:bob", "document:secret") == {"read"}
    assert authz.break_glass_grants() == [grant]


def test_break_glass_for_an_agent_branch(authz: Authorizer) -> None:
    d = Delegation("agent:helper", "user:alice")
    assert not authz.check(d, "read", "document:secret").allowed
    authz.break_glass("agent:helper", "read", "document:secret", reason=REASON,
                      approver="user:alice", ttl=60)
    decision = authz.check(d, "read", "document:secret")
    assert decision.allowed
    assert "break_glass" in [r.kind for r in decision.reasons]
    assert "document:secret" in authz.list_resources(d, "read", "document")


def test_break_glass_does_not_open_suspended_agents(authz: Authorizer) -> None:
    authz.break_glass("agent:sleepy", "read", "document:a", reason=REASON,
                      approver="user:alice", ttl=60)
    assert not authz.check("agent:sleepy", "read", "document:a").allowed


def test_break_glass_expires_and_can_be_ended(authz: Authorizer) -> None:
    now = [1000.0]
    glass = BreakGlass(clock=lambda: now[0])
    grant = glass.grant("user:bob", "read", "document:x", reason=REASON, approver="user:c", ttl=5)
    assert glass.match("user:bob", "read", "document:x") == grant
    now[0] += 5
    assert glass.match("user:bob", "read", "document:x") is None
    assert glass.active() == []
    grant = authz.break_glass("user:bob", "read", "document:secret", reason=REASON,
                              approver="user:carol", ttl=60)
    authz.revoke(break_glass=grant.id)
    assert not authz.check("user:bob", "read", "document:secret").allowed
    with pytest.raises(InvalidInputError):
        authz.revoke(break_glass=grant.id)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"reason": "", "approver": "user:carol", "ttl": 60}, "reason"),
    ({"reason": "because", "approver": "user:carol", "ttl": 60}, "reason"),
    ({"reason": REASON, "approver": "user:bob", "ttl": 60}, "own principal"),
    ({"reason": REASON, "approver": "carol", "ttl": 60}, "approver"),
    ({"reason": REASON, "approver": "user:carol", "ttl": 0}, "ttl"),
    ({"reason": REASON, "approver": "user:carol", "ttl": 10 * 24 * 3600}, "never standing"),
])
def test_break_glass_needs_every_field(authz: Authorizer, kwargs: dict[str, object],
                                       match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        authz.break_glass("user:bob", "read", "document:secret", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("principal", "action", "resource"), [
    ("user:*", "read", "document:secret"),
    ("user:bob", "*", "document:secret"),
    ("user:bob", "read", "document:*"),
    ("team:support#member", "read", "document:secret"),
])
def test_break_glass_is_narrow(authz: Authorizer, principal: str, action: str,
                               resource: str) -> None:
    with pytest.raises(InvalidInputError):
        authz.break_glass(principal, action, resource, reason=REASON, approver="user:carol",
                          ttl=60)


def test_cached_break_glass_allow_ends_with_the_grant() -> None:
    from .conftest import DATA, POLICY

    authz = Authorizer(POLICY, data=DATA, cache=True)
    grant = authz.break_glass("user:bob", "read", "document:secret", reason=REASON,
                              approver="user:carol", ttl=60)
    assert authz.check("user:bob", "read", "document:secret").allowed
    assert authz.check("user:bob", "read", "document:secret").allowed
    authz.revoke(break_glass=grant.id)
    assert not authz.check("user:bob", "read", "document:secret").allowed
