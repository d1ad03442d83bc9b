"""The testing helpers without pytest: assertions that explain, and an authorizer that records."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import pytest

import agentauthz.testing
from agentauthz import Authorizer, ConfigurationError, NotFound, authorize
from agentauthz.audit import Auditor, MemorySink
from agentauthz.backends import BaseBackend, LocalBackend
from agentauthz.model import Decision, Outcome, Reason
from agentauthz.testing import RecordingAuthorizer, assert_allowed, assert_denied, local_backend

POLICY = """
types:
  user: {}
  agent: {}
  folder:
    relations: {viewer: [user, agent]}
    permissions: {read: viewer}
  document:
    relations: {owner: [user], parent: [folder]}
    permissions: {read: owner | parent->read, write: owner}
rules:
  - id: no-weekend-writes
    effect: forbid
    action: write
    when: has(context.weekend) && context.weekend
agents:
  - {id: agent:bot, owner: user:alice, purpose: summarises documents}
"""
DATA = {"relationships": ["document:1#owner@user:alice", "document:1#parent@folder:f",
                          "folder:f#viewer@agent:bot"]}


@pytest.fixture
def authz() -> RecordingAuthorizer:
    return RecordingAuthorizer(POLICY, data=DATA)


def test_assert_allowed_returns_the_decision(authz: RecordingAuthorizer) -> None:
    decision = assert_allowed(authz, "user:alice", "read", "document:1")
    assert decision.allowed and decision.reasons[0].kind == "permission"
    assert assert_denied(authz, "user:bob", "read", "document:1").outcome is Outcome.DENY


def test_a_failed_assert_allowed_shows_reasons_and_the_whole_tree(authz: RecordingAuthorizer) -> None:
    with pytest.raises(AssertionError) as info:
        assert_allowed(authz, "user:bob", "read", "document:1")
    text = str(info.value)
    assert text.startswith("expected allow, got deny: user:bob read document:1\n")
    assert "[default_deny] no relation path or permit rule grants 'read' on document" in text
    assert "✘ relation document:1#owner — direct subjects: user:alice" in text
    assert "✘ parent->read from document:1 — parent: folder:f" in text


def test_a_failed_assert_denied_shows_what_granted(authz: RecordingAuthorizer) -> None:
    with pytest.raises(AssertionError) as info:
        authz.assert_denied("user:alice", "write", "document:1", {"weekend": False})
    text = str(info.value)
    assert "expected deny, got allow: user:alice write document:1 context={'weekend': False}" in text
    assert ("✘ forbid rule 'no-weekend-writes' — condition `has(context.weekend) && "
            "context.weekend` is False") in text
    assert "✔ relation document:1#owner — user:alice is a direct subject" in text


def test_a_delegation_is_explained_branch_by_branch(authz: RecordingAuthorizer) -> None:
    with authz.task([("read", "document:*")], purpose="summarise", agent="agent:bot",
                    on_behalf_of="user:alice") as task:
        assert_allowed(authz, task.principal, "read", "document:1")
        with pytest.raises(AssertionError) as info:
            assert_allowed(authz, task.principal, "write", "document:1")
    text = str(info.value)
    assert "[out_of_task_scope]" in text
    assert "✘ task scope covers write document:1 — scope: read document:*" in text
    assert "agent agent:bot: DENY: agent:bot write document:1" in text
    assert "on behalf of user:alice: ALLOW: user:alice write document:1" in text


def test_an_agent_the_registry_stops_is_explained_with_the_registry(
        authz: RecordingAuthorizer) -> None:
    authz.agents.suspend("agent:bot", reason="incident 42")
    with pytest.raises(AssertionError) as info:
        assert_allowed(authz, "agent:bot", "read", "document:1")
    text = str(info.value)
    assert "    - [agent_suspended] agent 'agent:bot' is suspended (incident 42)" in text
    assert "✘ registry: agent:bot — agent 'agent:bot' is suspended (incident 42)" in text
    assert "✔ agent agent:bot: ALLOW: agent:bot read document:1" in text  # the policy alone allows


class _Remote(BaseBackend):
    name = "remote"

    def check(self, principal: Any, action: str, resource: Any, context: Any = None) -> Decision:
        return Decision(False, Outcome.DENY, (Reason("default_deny", "the remote says no"),), "v1")


def test_without_the_local_evaluator_the_reasons_must_do() -> None:
    with pytest.raises(AssertionError) as info:
        assert_allowed(Authorizer(backend=_Remote()), "user:a", "read", "document:1")
    assert "[default_deny] the remote says no" in str(info.value)
    assert "explanation: unavailable (only the local evaluator explains)" in str(info.value)


def test_decisions_record_what_the_code_asked_and_not_the_assertions(
        authz: RecordingAuthorizer) -> None:
    @authorize("read", resource=lambda doc_id: f"document:{doc_id}")
    def read(doc_id: str) -> str:
        return doc_id

    authz.check("user:alice", "read", "document:1", {"k": 1})
    asyncio.run(authz.acheck("user:bob", "write", "document:1"))
    with authz.acting_as("user:alice"):
        read("1")
    with pytest.raises(NotFound):
        authz.authorize("user:bob", "write", "document:1")
    authz.assert_allowed("user:alice", "read", "document:1")
    assert_denied(authz, "user:bob", "read", "document:1")
    asked = [(r.kind, r.principal_key, r.action, r.resource_key, r.allowed) for r in authz.decisions]
    assert asked == [
        ("check", "user:alice", "read", "document:1", True),
        ("check", "user:bob", "write", "document:1", False),
        ("check", "user:alice", "read", "document:1", True),
        ("check", "user:bob", "write", "document:1", False),
        ("check", "user:bob", "read", "document:1", False),  # authorize: may bob even read it?
    ]
    assert authz.decisions[0].context == {"k": 1}
    authz.clear_decisions()
    assert authz.decisions == []


def test_other_sinks_receive_the_records_too() -> None:
    sink = MemorySink()
    authz = RecordingAuthorizer(POLICY, audit=sink)
    authz.check("user:a", "read", "document:1")
    assert len(sink.records) == len(authz.decisions) == 1
    other = MemorySink()
    both = RecordingAuthorizer(POLICY, audit=[Auditor(sink), other])
    both.check("user:a", "read", "document:1")
    assert (len(sink), len(other), len(both.decisions)) == (2, 1, 1)
    with pytest.raises(ConfigurationError, match="emit"):
        RecordingAuthorizer(POLICY, audit=object())  # type: ignore[arg-type]


def test_the_local_backend_factory_loads_policy_and_data() -> None:
    backend = local_backend(Authorizer(POLICY).policy, DATA)
    assert isinstance(backend, LocalBackend)
    authz = Authorizer(backend=backend)
    assert authz.check("user:alice", "read", "document:1").allowed
    assert local_backend(authz.policy, None).check("user:alice", "read", "document:1").outcome \
        is Outcome.DENY


def test_all_is_sorted_and_complete() -> None:
    names = agentauthz.testing.__all__
    assert names == sorted(names, key=str.lower) or names == sorted(names)
    for name in names:
        assert hasattr(agentauthz.testing, name)


def test_the_testing_package_never_imports_pytest() -> None:
    code = ("import sys, agentauthz.testing, agentauthz.testing.cases; "
            "print('pytest' in sys.modules, '_pytest' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
