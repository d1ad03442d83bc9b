"""Every decision lands in the audit sinks, with the right principal chain, and no sink can
change or fail a decision."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from agentauthz import Authorizer, ConfigurationError, Forbidden, NotFound, authorize
from agentauthz.agents import Delegation
from agentauthz.agents.guard import ToolDenied, guarded_tool
from agentauthz.audit import MASK, Auditor, AuditRecord, JsonlFileSink, MemorySink, Redactor, verify
from agentauthz.backends import BaseBackend
from agentauthz.model import Decision, Outcome, Reason

POLICY = """
types:
  user: {}
  agent: {}
  team: {relations: {member: [user, agent]}}
  document:
    relations: {team: [team], owner: [user]}
    permissions: {read: team->member | owner, write: owner}
  ticket:
    relations: {team: [team]}
    permissions: {read: team->member}
  tool:
    relations: {user: [user, agent]}
    permissions: {call: user}
agents:
  - {id: agent:bot, owner: user:alice, purpose: answers tickets,
     tools: [read_ticket, search, rotate_password]}
tools:
  read_ticket: {action: read, resource: "ticket:{ticket_id}"}
  search:
    result: {resource: "document:{id}", records: hits}
  rotate_password: {hard_block: credential_change}
"""
DATA = {"relationships": ["team:t#member@user:alice", "team:t#member@agent:bot",
                          "document:1#team@team:t", "ticket:1#team@team:t",
                          "tool:search#user@user:alice", "tool:search#user@agent:bot"]}


def make(audit: Any = None, **options: Any) -> tuple[Authorizer, MemorySink]:
    sink = MemorySink()
    authz = Authorizer(POLICY, data=DATA, audit=sink if audit is None else audit, **options)
    return authz, sink


def only(sink: MemorySink) -> AuditRecord:
    records = sink.records
    assert len(records) == 1, records
    return records[0]


def test_check_emits_one_record_per_decision() -> None:
    authz, sink = make()
    allowed = authz.check("user:alice", "read", "document:1", {"tenant": "acme",
                                                                "api_key": "k-123"})
    record = only(sink)
    assert record.decision is allowed and record.kind == "check"
    data = record.to_dict()
    assert (data["principal"], data["action"], data["resource"]) == (
        "user:alice", "read", "document:1")
    assert data["context"] == {"tenant": "acme", "api_key": MASK}
    assert data["backend"] == "local" and data["policy_version"] == authz.policy_version
    assert data["latency_us"] > 0 and data["outcome"] == "allow"
    sink.clear()
    denied = authz.check("user:bob", "write", "document:1")
    assert not denied.allowed and only(sink).to_dict()["outcome"] == "deny"


def test_the_recorded_context_is_the_one_decided_on() -> None:
    authz, sink = make()
    context = {"tenant": "acme"}
    authz.check("user:alice", "read", "document:1", context)
    context["tenant"] = "globex"
    assert only(sink).to_dict()["context"] == {"tenant": "acme"}


async def test_acheck_emits_a_record() -> None:
    authz, sink = make()
    decision = await authz.acheck("user:alice", "read", "document:1")
    assert only(sink).decision is decision


def test_check_many_emits_a_record_each() -> None:
    authz, sink = make()
    authz.check_many([("user:alice", "read", "document:1"), ("user:bob", "read", "document:1")])
    assert [r.principal for r in sink.records] == ["user:alice", "user:bob"]


async def test_acheck_many_emits_a_record_each() -> None:
    authz, sink = make()
    await authz.acheck_many([("user:alice", "read", "document:1")])
    assert len(sink.records) == 1


def test_delegated_check_records_the_chain() -> None:
    authz, sink = make()
    decision = authz.check(Delegation("agent:bot", "user:alice"), "read", "document:1")
    record = only(sink)
    assert decision.allowed and record.decision is decision
    assert (record.agent, record.on_behalf_of, record.task) == ("agent:bot", "user:alice", None)
    assert record.to_dict()["principal"] == "agent:bot>user:alice"


def test_a_check_in_a_task_records_the_task() -> None:
    authz, sink = make()
    with authz.acting_as("agent:bot", on_behalf_of="user:alice"), \
            authz.task(scope=["read document:*"], purpose="answer a question") as task:
        assert task.check("read", "document:1").allowed
        assert not task.check("write", "document:1").allowed
    allowed, denied = sink.records
    for record in (allowed, denied):
        assert (record.agent, record.on_behalf_of, record.task) == (
            "agent:bot", "user:alice", task.task_id)
    assert denied.decision.reasons[0].kind == "out_of_task_scope"


def test_an_agent_alone_and_a_barred_agent_are_recorded() -> None:
    authz, sink = make()
    authz.check("agent:bot", "read", "document:1")
    authz.revoke(agent="agent:bot", reason="compromised")
    authz.check("agent:bot", "read", "document:1")
    ok, revoked = sink.records
    assert ok.allowed and ok.principal_key == "agent:bot"
    assert not revoked.allowed and revoked.decision.reasons[0].kind == "agent_revoked"


def test_authorize_decorator_is_audited() -> None:
    authz, sink = make()

    @authorize("read", "document:{doc_id}", authz=authz)
    def read(principal: str, doc_id: str) -> str:
        return doc_id

    with authz.acting_as("user:alice"):
        assert read("user:alice", "1") == "1"
    with authz.acting_as("user:bob"), pytest.raises((Forbidden, NotFound)):
        read("user:bob", "1")
    assert [(r.principal, r.allowed) for r in sink.records] == [
        ("user:alice", True), ("user:bob", False)]


def test_authorize_of_a_write_records_both_questions() -> None:
    authz, sink = make()
    with pytest.raises(NotFound):
        authz.authorize("user:bob", "write", "document:1")
    assert [r.action for r in sink.records] == ["write", "read"]  # the NotFound probe too


def test_tool_guard_calls_are_audited_with_redacted_arguments() -> None:
    auditor = Auditor(MemorySink(), redactor=Redactor(keep_arguments={"read_ticket":
                                                                      ["ticket_id"]}))
    authz, _ = make(auditor)
    sink = auditor.sinks[0]
    assert isinstance(sink, MemorySink)

    @guarded_tool("read_ticket", action="read", resource="ticket:{ticket_id}", authz=authz)
    def read_ticket(ticket_id: str, note: str = "") -> dict[str, str]:
        return {"id": ticket_id}

    with authz.acting_as("agent:bot", on_behalf_of="user:alice"):
        read_ticket("1", note="my password is hunter2")
    check, tool = sink.records
    assert check.kind == "check" and check.action == "read" and check.agent == "agent:bot"
    assert tool.kind == "tool" and tool.decision.allowed
    data = tool.to_dict()
    assert data["tool"] == "read_ticket" and data["resource"] == "ticket:1"
    assert data["arguments"] == {"ticket_id": "1", "note": MASK}
    assert (data["agent"], data["on_behalf_of"]) == ("agent:bot", "user:alice")
    assert data["withheld"] == []


def test_tool_guard_denials_and_withheld_results_are_audited() -> None:
    authz, sink = make()

    @guarded_tool("rotate_password", hard_block="credential_change", authz=authz)
    def rotate_password(user: str) -> str:
        return "rotated"

    @guarded_tool("search", result={"resource": "document:{id}", "records": "hits"},
                  authz=authz)
    def search(query: str) -> dict[str, Any]:
        return {"hits": [{"id": "1"}, {"id": "2"}]}

    with authz.acting_as("agent:bot", on_behalf_of="user:alice"):
        with pytest.raises(ToolDenied):
            rotate_password("user:alice")
        search("q")
    tools = [r for r in sink.records if r.kind == "tool"]
    blocked, searched = tools
    assert blocked.tool == "rotate_password" and not blocked.allowed
    assert blocked.decision.reasons[0].kind == "hard_block:credential_change"
    assert blocked.to_dict()["arguments"] == {"user": MASK}  # masked by default
    assert searched.allowed and searched.withheld == ("record document:2",)
    checks = [r.resource for r in sink.records if r.kind == "check"]
    assert "document:2" in checks  # the result filter's checks are decisions too


def test_a_tool_call_in_a_task_records_the_task() -> None:
    authz, sink = make()

    @guarded_tool("read_ticket", action="read", resource="ticket:{ticket_id}", authz=authz)
    def read_ticket(ticket_id: str) -> str:
        return ticket_id

    with authz.acting_as("agent:bot", on_behalf_of="user:alice"), \
            authz.task(scope=["read ticket:*"], purpose="triage") as task:
        read_ticket("1")
    tool = next(r for r in sink.records if r.kind == "tool")
    assert tool.task == task.task_id


def test_a_tool_that_fails_is_still_audited() -> None:
    authz, sink = make()

    @guarded_tool("read_ticket", action="read", resource="ticket:{ticket_id}", authz=authz)
    def read_ticket(ticket_id: str) -> str:
        raise ConnectionError("ticket service down")

    with authz.acting_as("agent:bot", on_behalf_of="user:alice"), \
            pytest.raises(ConnectionError):
        read_ticket("1")
    tool = next(r for r in sink.records if r.kind == "tool")
    assert tool.allowed and tool.withheld == ("no result: the tool raised ConnectionError",)


# ----------------------------------------------------------- isolation
class Broken:
    def __init__(self) -> None:
        self.calls = 0

    def emit(self, record: AuditRecord) -> None:
        self.calls += 1
        raise OSError("the log server is down")


def test_a_failing_sink_changes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    broken, kept = Broken(), MemorySink()
    auditor = Auditor([broken, kept])
    authz, _ = make(auditor)
    with caplog.at_level(logging.ERROR, "agentauthz.audit"):
        allowed = authz.check("user:alice", "read", "document:1")
        denied = authz.check("user:bob", "read", "document:1")
        authz.check("user:bob", "read", "document:1")
    assert allowed.allowed and not denied.allowed
    assert len(kept.records) == 3 and broken.calls == 3  # the other sinks still get records
    assert auditor.failed == 3 and auditor.failures == {repr(broken): 3}
    assert len(caplog.records) == 1  # logged once per interval, not per decision
    assert "the decision stands" in caplog.text and "log server is down" in caplog.text


def test_a_failing_auditor_never_fails_a_decision(caplog: pytest.LogCaptureFixture) -> None:
    class Exploding(Auditor):
        def decided(self, *args: Any) -> None:
            raise RuntimeError("bug")

        def tool_call(self, *args: Any) -> None:
            raise RuntimeError("bug")

    authz, _ = make(Exploding(MemorySink()))

    @guarded_tool("read_ticket", action="read", resource="ticket:{ticket_id}", authz=authz)
    def read_ticket(ticket_id: str) -> str:
        return ticket_id

    with caplog.at_level(logging.ERROR, "agentauthz"):
        assert not authz.check("user:bob", "read", "document:1").allowed
        assert authz.check("user:alice", "read", "document:1").allowed
        with authz.acting_as("agent:bot", on_behalf_of="user:alice"):
            assert read_ticket("1") == "1"
    assert "auditing a decision failed" in caplog.text
    assert "auditing a tool call failed" in caplog.text


def test_a_failing_backend_is_recorded_as_its_denial() -> None:
    class Down(BaseBackend):
        name = "remote-pdp"

        def check(self, principal: Any, action: str, resource: Any, context: Any = None
                  ) -> Decision:
            raise TimeoutError("no answer")

    sink = MemorySink()
    authz = Authorizer(backend=Down(), audit=sink)
    assert not authz.check("user:alice", "read", "document:1").allowed
    data = only(sink).to_dict()
    assert data["backend"] == "remote-pdp" and data["reasons"][0]["kind"] == "backend_error"


def test_cached_decisions_are_marked() -> None:
    class Slow(BaseBackend):
        name = "slow"

        def check(self, principal: Any, action: str, resource: Any, context: Any = None
                  ) -> Decision:
            return Decision(True, Outcome.ALLOW, (Reason("permit", "ok"),), "v1")

        def version(self) -> str:
            return "v1"

    sink = MemorySink()
    authz = Authorizer(backend=Slow(), cache=True, audit=sink)
    authz.check("user:alice", "read", "document:1")
    import time

    time.sleep(0.01)
    authz.check("user:alice", "read", "document:1")
    first, second = sink.records
    assert first.decision is second.decision
    assert not first.cached and second.cached


def test_to_a_chained_file(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlFileSink(path)
    authz, _ = make(sink)
    for principal in ("user:alice", "user:bob", Delegation("agent:bot", "user:alice")):
        authz.check(principal, "read", "document:1")
    authz.auditor.flush()  # type: ignore[union-attr]
    result = verify(path)
    assert result and result.records == 3
    authz.auditor.close()  # type: ignore[union-attr]


def test_the_file_names_the_id_the_caller_sees(tmp_path: Path) -> None:
    import json

    path = tmp_path / "audit.jsonl"
    with JsonlFileSink(path) as sink:
        authz, _ = make(sink)
        decision = authz.check("user:alice", "read", "document:1")
        sink.flush()  # rendered on the writer thread before the caller reads the id
        written = json.loads(path.read_text(encoding="utf-8"))
    assert written["id"] == decision.decision_id


# ------------------------------------------------------ configuration
def test_without_audit_the_hot_path_is_untouched() -> None:
    authz = Authorizer("types: {user: {}, document: {relations: {owner: [user]}}}")
    assert authz.auditor is None
    assert authz.check == authz.evaluator.check  # the evaluator, nothing in front


def test_arming_the_agent_layer_keeps_the_audit() -> None:
    authz, sink = make()
    authz.break_glass("user:bob", "read", "document:1", reason="incident 7",
                      approver="user:alice", ttl=60)
    assert authz.check("user:bob", "read", "document:1").allowed
    assert only(sink).decision.reasons[0].kind == "break_glass"


@pytest.mark.parametrize("audit", [42, [object()], "file.jsonl"])
def test_a_bad_audit_option_fails_at_construction(audit: Any) -> None:
    with pytest.raises(ConfigurationError, match="emit"):
        Authorizer(POLICY, audit=audit)
