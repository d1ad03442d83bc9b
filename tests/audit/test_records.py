from __future__ import annotations

import json
import time

import pytest

from agentauthz.agents import Delegation
from agentauthz.audit import MASK, AuditRecord, Redactor
from agentauthz.model import Entity, Outcome

from .conftest import MakeRecord


def test_a_record_is_immutable(make_record: MakeRecord) -> None:
    record = make_record()
    with pytest.raises(AttributeError):
        record.action = "write"  # type: ignore[misc]


def test_plain_principal(make_record: MakeRecord) -> None:
    record = make_record(Entity("user", "alice"), resource=Entity("document", "1"))
    data = record.to_dict()
    assert (data["principal"], data["agent"], data["on_behalf_of"], data["task"]) == (
        "user:alice", None, None, None)
    assert data["resource"] == "document:1"
    assert data["outcome"] == "allow" and data["allowed"] is True
    assert data["reasons"] == [{"kind": "permission", "message": "document.read = owner",
                                "rule": None}]
    assert data["policy_version"] == "sha256:test" and data["backend"] == "local"
    assert data["latency_us"] == 2.5 and data["kind"] == "check" and data["cached"] is False
    assert data["time"].endswith("Z") and data["id"] == record.decision_id
    json.dumps(data)


def test_delegation_gives_the_principal_chain(make_record: MakeRecord,
                                              delegation: Delegation) -> None:
    record = make_record(delegation)
    assert (record.agent, record.on_behalf_of, record.task) == ("agent:bot", "user:alice", None)
    assert record.to_dict()["principal"] == "agent:bot>user:alice"


def test_a_delegation_in_a_task_names_the_task() -> None:
    from agentauthz import Authorizer

    authz = Authorizer("types: {user: {}, agent: {}, document: {}}\nagents:\n"
                       "  - {id: agent:bot, owner: user:alice, purpose: tests}\n")
    task = authz.task(scope=["read document:*"], purpose="t", agent="agent:bot",
                      on_behalf_of="user:alice")
    decision = authz.check(task.principal, "read", "document:1")
    record = AuditRecord("check", decision, task.principal, "read", "document:1", None, "local",
                         time.time(), 0.0)
    assert record.task == task.task_id
    assert record.to_dict()["task"] == task.task_id


def test_context_is_redacted_when_rendered(make_record: MakeRecord) -> None:
    record = make_record(context={"tenant": "acme", "password": "hunter2"})
    assert record.context == {"tenant": "acme", "password": "hunter2"}  # kept raw, in memory
    assert record.to_dict()["context"] == {"tenant": "acme", "password": MASK}


def test_tool_record_fields(make_record: MakeRecord) -> None:
    record = make_record("agent:bot", "read", "ticket:1", kind="tool", tool="read_ticket",
                         arguments={"ticket_id": "1", "q": "x"}, withheld=("record ticket:2",),
                         redactor=Redactor(keep_arguments={"read_ticket": ["ticket_id"]}))
    data = record.to_dict()
    assert data["tool"] == "read_ticket"
    assert data["arguments"] == {"ticket_id": "1", "q": MASK}
    assert data["withheld"] == ["record ticket:2"]
    assert "tool read_ticket" in repr(record)


def test_cached_decision_is_marked(make_record: MakeRecord) -> None:
    later = make_record(at=time.time() + 5)
    assert later.cached and later.to_dict()["cached"] is True


def test_unusual_inputs_still_render(make_record: MakeRecord) -> None:
    data = make_record(None, "read", 42, context={"x": object()}, allowed=False,
                       outcome=Outcome.DENY).to_dict()
    assert data["principal"] == "(none)" and data["resource"] == "42"
    json.dumps(data)
