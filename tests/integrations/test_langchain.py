"""The LangChain integration, driven through real ``create_agent`` loops and real tools.

A scripted chat model stands in for the LLM: it replays the turns it was given
(tool calls included) and ignores the tools it is bound to, so every test runs
offline and decides exactly the calls it wrote down.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolCall, ToolMessage
from langchain_core.messages.tool import tool_call
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import BaseTool, StructuredTool, tool
from pydantic import Field, PrivateAttr

from agentauthz import ApprovalRequired, Authorizer, ConfigurationError, enforce
from agentauthz.agents import Delegation
from agentauthz.agents.approvals import ApprovalRequest
from agentauthz.agents.guard import ToolCallRecord, ToolDenied, ToolGuard
from agentauthz.integrations.langchain import (
    WITHHELD,
    AgentAuthzMiddleware,
    GuardedTool,
    guard_langchain_tools,
)

POLICY = """
types:
  user: {}
  agent: {}
  team: {relations: {member: [user, agent]}}
  ticket:
    attributes: {classification: string}
    relations: {team: [team]}
    permissions: {read: team->member, write: team->member}
  document:
    relations: {team: [team], owner: [user]}
    permissions: {read: team->member}
    fields: {title: {}, email: {read: owner}}
  tool:
    relations: {user: [team#member]}
    permissions: {call: user}
agents:
  - id: agent:bot
    owner: user:alice
    purpose: answers support tickets
    tools: [read_ticket, aread_ticket, update_ticket, search, search_artifact, search_text,
            send_email, lookup, alookup, create_api_key, whoami, awhoami, explode]
tools:
  read_ticket: {action: read, resource: "ticket:{ticket_id}"}
  aread_ticket: {action: read, resource: "ticket:{ticket_id}"}
  update_ticket: {action: write, resource: "ticket:{ticket_id}", effect: write}
  search:
    result: {resource: "document:{id}", records: hits, fields: {email: email, title: title}}
  search_artifact:
    result: {resource: "document:{id}", records: hits, fields: {email: email, title: title}}
  search_text:
    result: {resource: "document:{id}", records: hits}
  send_email:
    effect: external
    constraints: {to: {pattern: ".*@acme\\\\.example"}}
  lookup: {}
  alookup: {}
  whoami: {}
  awhoami: {}
  explode: {}
  create_api_key: {hard_block: token_minting}
chains:
  - {id: no-exfiltration, effect: external, after_labels: [confidential]}
  - {id: step-up-first-write, effect: write, first: true, decision: approval_required}
  - {id: lookup-budget, tool: [lookup, alookup], max_calls: 2}
"""
TOOL_NAMES = ("search", "search_artifact", "search_text", "send_email", "lookup", "alookup",
              "whoami", "awhoami", "explode", "create_api_key", "delete_everything")
RELATIONSHIPS = [
    "team:t#member@user:alice", "team:t#member@agent:bot",
    "ticket:1#team@team:t", "ticket:2#team@team:t",
    "document:public#team@team:t", "document:mine#team@team:t", "document:mine#owner@user:alice",
    *(f"tool:{name}#user@team:t#member" for name in TOOL_NAMES),
]
SCOPE = [("read", "ticket:*"), ("write", "ticket:*"), ("read", "document:*"), ("call", "tool:*")]
AGENT, USER = "agent:bot", "user:alice"

calls: Counter[str] = Counter()
_calls_lock = threading.Lock()
principals: list[object] = []
threads: list[str] = []


def ran(name: str) -> None:
    with _calls_lock:
        calls[name] += 1


# --------------------------------------------------------------------------- tools
@tool
def read_ticket(ticket_id: str) -> dict[str, str]:
    """Read a support ticket."""
    ran("read_ticket")
    return {"id": ticket_id, "subject": "Refund please"}


@tool
async def aread_ticket(ticket_id: str) -> dict[str, str]:
    """Read a support ticket (async)."""
    await asyncio.sleep(0)
    ran("aread_ticket")
    return {"id": ticket_id, "subject": "Refund please"}


@tool
def update_ticket(ticket_id: str, status: str) -> str:
    """Change a ticket's status."""
    ran("update_ticket")
    return f"ticket {ticket_id} is {status}"


HITS = [{"id": "public", "title": "Reset guide", "email": "a@acme.example"},
        {"id": "mine", "title": "Alice's notes", "email": "alice@acme.example"},
        {"id": "elsewhere", "title": "Not ours", "email": "x@globex.example"}]


@tool
def search(query: str) -> dict[str, Any]:
    """Search the knowledge base."""
    ran("search")
    return {"hits": [dict(h) for h in HITS], "total": 3}


@tool(response_format="content_and_artifact")
def search_artifact(query: str) -> tuple[str, dict[str, Any]]:
    """Search the knowledge base, returning a summary and the raw hits."""
    ran("search_artifact")
    return "3 hits: Reset guide, Alice's notes, Not ours", {"hits": [dict(h) for h in HITS]}


@tool
def search_text(query: str) -> str:
    """Search the knowledge base, as prose."""
    ran("search_text")
    return "Found: Reset guide; Alice's notes; Not ours"


@tool
def send_email(to: str, body: str) -> str:
    """Send an email."""
    ran("send_email")
    return "sent"


@tool
def lookup(key: str) -> str:
    """Look a key up (budgeted)."""
    ran("lookup")
    return f"value of {key}"


@tool
async def alookup(key: str) -> str:
    """Look a key up (budgeted, async)."""
    await asyncio.sleep(0.01)
    ran("alookup")
    return f"value of {key}"


@tool
def whoami() -> str:
    """Say who is acting."""
    principals.append(enforce.current_principal())
    threads.append(threading.current_thread().name)
    ran("whoami")
    return "ok"


@tool
async def awhoami() -> str:
    """Say who is acting (async)."""
    principals.append(enforce.current_principal())
    ran("awhoami")
    return "ok"


@tool
def explode() -> str:
    """Always fails."""
    ran("explode")
    raise RuntimeError("boom")


@tool
def create_api_key(name: str) -> str:
    """Mint an API key."""
    ran("create_api_key")
    return "sk-live-123"


@tool
def delete_everything() -> str:
    """Delete every record."""
    ran("delete_everything")
    return "gone"


TOOLS: list[BaseTool] = [read_ticket, aread_ticket, update_ticket, search, search_artifact,
                         search_text, send_email, lookup, alookup, whoami, awhoami, explode,
                         create_api_key, delete_everything]


# --------------------------------------------------------------------------- the model
class ScriptedChatModel(BaseChatModel):
    """Replays ``turns`` in order, whatever it is asked; binding tools changes nothing."""

    turns: list[AIMessage]
    seen: list[list[BaseMessage]] = Field(default_factory=list)
    _next: int = PrivateAttr(default=0)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        self.seen.append(list(messages))
        if self._next < len(self.turns):
            turn = self.turns[self._next]
            self._next += 1
        else:
            turn = AIMessage(content="(the script is over)")
        return ChatResult(generations=[ChatGeneration(message=turn)])

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedChatModel:
        return self


def turn(*tool_calls: tuple[str, dict[str, Any]]) -> AIMessage:
    return AIMessage(content="", tool_calls=[
        tool_call(name=name, args=args, id=f"call-{i}-{name}") for i, (name, args) in
        enumerate(tool_calls)])


def script(*turns: AIMessage) -> ScriptedChatModel:
    return ScriptedChatModel(turns=[*turns, AIMessage(content="Done.")])


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(autouse=True)
def _fresh_counters() -> None:
    calls.clear()
    principals.clear()
    threads.clear()


@pytest.fixture
def authz() -> Authorizer:
    a = Authorizer(POLICY)
    a.write(add=RELATIONSHIPS)
    a.set_attributes("ticket:1", {"classification": "confidential"})
    a.set_attributes("ticket:2", {"classification": "internal"})
    return a


@pytest.fixture
def records() -> list[ToolCallRecord]:
    return []


@pytest.fixture
def guard(authz: Authorizer, records: list[ToolCallRecord]) -> ToolGuard:
    return authz.tool_guard(audit=records.append)


def agent_for(model: ScriptedChatModel, guard: ToolGuard | None = None, **options: Any) -> Any:
    middleware = AgentAuthzMiddleware(guard=guard, **options)
    return create_agent(model, TOOLS, middleware=[middleware])


def run(authz: Authorizer, agent: Any) -> list[ToolMessage]:
    with authz.acting_as(AGENT, on_behalf_of=USER), authz.task(scope=SCOPE, purpose="test"):
        out = agent.invoke({"messages": [("user", "help")]})
    return [m for m in out["messages"] if isinstance(m, ToolMessage)]


async def arun(authz: Authorizer, agent: Any, purpose: str = "test") -> list[ToolMessage]:
    with authz.acting_as(AGENT, on_behalf_of=USER), authz.task(scope=SCOPE, purpose=purpose):
        out = await agent.ainvoke({"messages": [("user", "help")]})
    return [m for m in out["messages"] if isinstance(m, ToolMessage)]


def is_denied(message: ToolMessage) -> bool:
    return message.status == "error" and str(message.content).startswith("DENIED: ")


# --------------------------------------------------------------------------- allowed
def test_an_allowed_call_runs_and_the_model_reads_its_result(
        authz: Authorizer, guard: ToolGuard, records: list[ToolCallRecord]) -> None:
    model = script(turn(("read_ticket", {"ticket_id": "1"})))
    [message] = run(authz, agent_for(model, guard))
    assert message.status == "success"
    assert json.loads(str(message.content)) == {"id": "1", "subject": "Refund please"}
    assert message.tool_call_id == "call-0-read_ticket" and message.name == "read_ticket"
    assert calls == {"read_ticket": 1}
    assert [(r.tool, r.decision.allowed, r.resource) for r in records] == [
        ("read_ticket", True, "ticket:1")]
    assert records[0].principal.startswith("agent:bot>user:alice@task:")
    assert model.seen[-1][-1] == message  # the result went back to the model


async def test_async_tools_run_under_ainvoke(authz: Authorizer, guard: ToolGuard) -> None:
    model = script(turn(("aread_ticket", {"ticket_id": "2"}), ("read_ticket", {"ticket_id": "2"})))
    messages = await arun(authz, agent_for(model, guard))
    assert [m.status for m in messages] == ["success", "success"]
    assert calls == {"aread_ticket": 1, "read_ticket": 1}


# --------------------------------------------------------------------------- denied
DENIALS = [
    pytest.param([("delete_everything", {})], "undeclared_tool", "delete_everything",
                 id="undeclared"),
    pytest.param([("create_api_key", {"name": "mine"})], "hard_block:token_minting",
                 "create_api_key", id="hard-block"),
    pytest.param([("send_email", {"to": "me@gmail.example", "body": "hi"})],
                 "argument_constraint", "send_email", id="argument-constraint"),
    pytest.param([("read_ticket", {"ticket_id": "1"}),
                  ("send_email", {"to": "boss@acme.example", "body": "the ticket says..."})],
                 "chain_rule", "send_email", id="chain-rule"),
    pytest.param([("read_ticket", {"ticket_id": "9"})], "agent_denied", "read_ticket",
                 id="policy"),
]


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(("steps", "kind", "tool_name"), DENIALS)
async def test_a_denied_call_is_an_error_message_and_the_tool_does_not_run(
        authz: Authorizer, guard: ToolGuard, records: list[ToolCallRecord], mode: str,
        steps: list[tuple[str, dict[str, Any]]], kind: str, tool_name: str) -> None:
    model = script(*(turn(step) for step in steps))
    agent = agent_for(model, guard)
    messages = run(authz, agent) if mode == "sync" else await arun(authz, agent)
    last = messages[-1]
    assert is_denied(last), last
    assert last.name == tool_name and last.tool_call_id == f"call-0-{tool_name}"
    assert calls[tool_name] == 0
    assert all(not is_denied(m) for m in messages[:-1])
    assert not records[-1].decision.allowed and records[-1].decision.reasons[0].kind == kind
    assert last.content == f"DENIED: {records[-1].decision.reasons[0].message}"


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_tool_name_the_model_invented_is_denied_not_a_crash(
        authz: Authorizer, guard: ToolGuard, records: list[ToolCallRecord], mode: str) -> None:
    model = script(turn(("grant_me_admin", {"user": "agent:bot"}), ("read_ticket",
                                                                     {"ticket_id": "2"})))
    agent = agent_for(model, guard)
    invented, real = run(authz, agent) if mode == "sync" else await arun(authz, agent)
    assert is_denied(invented) and invented.name == "grant_me_admin"
    assert "not a valid tool" not in str(invented.content)
    assert real.status == "success" and calls == {"read_ticket": 1}
    assert records[0].tool == "grant_me_admin" and not records[0].decision.allowed


def test_the_guard_sees_the_raw_arguments_before_validation(
        authz: Authorizer, guard: ToolGuard, records: list[ToolCallRecord]) -> None:
    # an extra argument the schema would drop still reaches the hard-block classifier
    model = script(turn(("update_ticket", {"ticket_id": "2", "status": "open",
                                           "grant_role": "admin", "user": "agent:bot"})))
    [message] = run(authz, agent_for(model, guard))
    assert is_denied(message) and "hard_block" in records[0].decision.reasons[0].kind
    assert calls["update_ticket"] == 0


def test_badly_typed_arguments_are_decided_then_rejected_by_langchain(
        authz: Authorizer, guard: ToolGuard, records: list[ToolCallRecord]) -> None:
    model = script(turn(("search", {"query": ["not", "a", "string"]})))
    [message] = run(authz, agent_for(model, guard))
    assert message.status == "error" and not is_denied(message)  # LangChain's validation error
    assert calls["search"] == 0
    assert [(r.tool, r.decision.allowed, r.withheld) for r in records] == [
        ("search", True, ("no result: the tool failed",))]


# --------------------------------------------------------------------------- concurrency
@pytest.mark.parametrize(("mode", "name"), [("sync", "lookup"), ("async", "alookup")])
async def test_parallel_calls_in_one_turn_cannot_overspend_a_budget(
        authz: Authorizer, guard: ToolGuard, records: list[ToolCallRecord], mode: str,
        name: str) -> None:
    model = script(turn(*((name, {"key": f"k{i}"}) for i in range(5))))
    agent = agent_for(model, guard)
    messages = run(authz, agent) if mode == "sync" else await arun(authz, agent)
    assert calls[name] == 2
    assert sorted(is_denied(m) for m in messages) == [False, False, True, True, True]
    denied = [m for m in messages if is_denied(m)]
    assert all("lookup-budget" in str(m.content) for m in denied)
    assert sum(r.decision.allowed for r in records) == 2


async def test_concurrent_tasks_keep_separate_ledgers(authz: Authorizer, guard: ToolGuard) -> None:
    def fresh() -> Any:
        return agent_for(script(turn(*(("alookup", {"key": f"k{i}"}) for i in range(3)))), guard)

    first, second = await asyncio.gather(arun(authz, fresh(), "first"),
                                         arun(authz, fresh(), "second"))
    assert calls["alookup"] == 4  # two per task: each task has its own budget
    for messages in (first, second):
        assert sorted(is_denied(m) for m in messages) == [False, False, True]


@pytest.mark.parametrize(("mode", "name"), [("sync", "whoami"), ("async", "awhoami"),
                                            ("async", "whoami")])
async def test_the_principal_reaches_tools_run_in_worker_threads_and_tasks(
        authz: Authorizer, guard: ToolGuard, records: list[ToolCallRecord], mode: str,
        name: str) -> None:
    model = script(turn(*((name, {}) for _ in range(3))))
    agent = agent_for(model, guard)
    messages = run(authz, agent) if mode == "sync" else await arun(authz, agent)
    assert [m.status for m in messages] == ["success"] * 3
    assert len(principals) == 3
    assert all(isinstance(p, Delegation) and p.agent == AGENT and p.on_behalf_of == USER
               and p.task is not None for p in principals)
    assert len({r.task for r in records}) == 1 and records[0].task is not None
    # a sync tool runs in a worker thread (a copy of the caller's context), an async one in
    # the caller's event loop
    assert all(t != threading.main_thread().name for t in threads)
    assert len(threads) == (0 if name == "awhoami" else 3)


# --------------------------------------------------------------------------- results
def test_a_json_result_is_filtered_before_the_model_reads_it(
        authz: Authorizer, guard: ToolGuard, records: list[ToolCallRecord]) -> None:
    [message] = run(authz, agent_for(script(turn(("search", {"query": "reset"}))), guard))
    result = json.loads(str(message.content))
    assert result == {"hits": [{"id": "public", "title": "Reset guide"},
                               {"id": "mine", "title": "Alice's notes"}], "total": 3}
    assert set(records[0].withheld) == {"record document:elsewhere",
                                        "document:public field email", "document:mine field email"}


def test_an_artifact_is_filtered_and_replaces_the_unfilterable_text(
        authz: Authorizer, guard: ToolGuard) -> None:
    [message] = run(authz, agent_for(script(turn(("search_artifact", {"query": "x"}))), guard))
    expected = {"hits": [{"id": "public", "title": "Reset guide"},
                         {"id": "mine", "title": "Alice's notes"}]}
    assert message.artifact == expected and json.loads(str(message.content)) == expected


def test_a_text_result_that_cannot_be_filtered_is_withheld(
        authz: Authorizer, guard: ToolGuard, records: list[ToolCallRecord]) -> None:
    [message] = run(authz, agent_for(script(turn(("search_text", {"query": "x"}))), guard))
    assert message.content == WITHHELD and "Not ours" not in str(message.content)
    assert calls["search_text"] == 1 and records[0].withheld


def test_a_failing_tool_is_audited_and_its_error_is_langchains(
        authz: Authorizer, guard: ToolGuard, records: list[ToolCallRecord]) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        run(authz, agent_for(script(turn(("explode", {}))), guard))
    assert calls["explode"] == 1
    assert [(r.tool, r.decision.allowed) for r in records] == [("explode", True)]


# --------------------------------------------------------------------------- step-up
def test_approval_required_is_denied_until_a_person_approves_the_same_call(
        authz: Authorizer, guard: ToolGuard) -> None:
    write = ("update_ticket", {"ticket_id": "2", "status": "solved"})
    model = script(turn(("read_ticket", {"ticket_id": "2"})), turn(write))
    agent = agent_for(model, guard)
    with authz.acting_as(AGENT, on_behalf_of=USER), authz.task(scope=SCOPE, purpose="t"):
        out = agent.invoke({"messages": [("user", "help")]})
        asked = [m for m in out["messages"] if isinstance(m, ToolMessage)][-1]
        assert is_denied(asked) and "must approve request apr-" in str(asked.content)
        assert calls["update_ticket"] == 0
        [pending] = authz.approvals.pending()
        authz.approvals.approve(pending.id, approver="user:carol")
        retry = script(turn(write))
        out = agent_for(retry, guard).invoke({"messages": [("user", "approved, go on")]})
    done = [m for m in out["messages"] if isinstance(m, ToolMessage)][-1]
    assert done.status == "success" and done.content == "ticket 2 is solved"
    assert calls["update_ticket"] == 1


@pytest.mark.parametrize("answer", [True, False])
async def test_an_approval_handler_decides_step_up_in_the_loop(
        authz: Authorizer, records: list[ToolCallRecord], answer: bool) -> None:
    asked: list[ApprovalRequest] = []

    async def approver(request: ApprovalRequest) -> bool:
        asked.append(request)
        return answer

    guard = authz.tool_guard(approval_handler=approver, audit=records.append)
    model = script(turn(("read_ticket", {"ticket_id": "2"})),
                   turn(("update_ticket", {"ticket_id": "2", "status": "solved"})))
    messages = await arun(authz, agent_for(model, guard))
    assert [r.tool for r in asked] == ["update_ticket"]
    assert is_denied(messages[-1]) is not answer
    assert calls["update_ticket"] == int(answer)


# --------------------------------------------------------------------------- failures
def test_a_failing_guard_denies(authz: Authorizer, guard: ToolGuard,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("the guard is broken")

    monkeypatch.setattr(guard, "begin", broken)
    [message] = run(authz, agent_for(script(turn(("read_ticket", {"ticket_id": "1"}))), guard))
    assert message.content == "DENIED: the guard could not decide (KeyError)"
    assert message.status == "error" and calls["read_ticket"] == 0


def test_without_a_principal_or_an_authorizer_every_call_is_denied(authz: Authorizer) -> None:
    agent: Any = create_agent(script(turn(("read_ticket", {"ticket_id": "1"}))), TOOLS,
                              middleware=[AgentAuthzMiddleware()])
    out = agent.invoke({"messages": [("user", "help")]})
    [message] = [m for m in out["messages"] if isinstance(m, ToolMessage)]
    assert is_denied(message) and "no authorizer is bound" in str(message.content)
    agent = create_agent(script(turn(("read_ticket", {"ticket_id": "1"}))), TOOLS,
                         middleware=[AgentAuthzMiddleware(authz)])
    out = agent.invoke({"messages": [("user", "help")]})
    [message] = [m for m in out["messages"] if isinstance(m, ToolMessage)]
    assert is_denied(message) and "no principal is acting" in str(message.content)
    assert calls["read_ticket"] == 0


def test_the_authorizer_bound_by_acting_as_is_used_when_none_is_given(authz: Authorizer) -> None:
    agent = create_agent(script(turn(("read_ticket", {"ticket_id": "2"}))), TOOLS,
                         middleware=[AgentAuthzMiddleware()])
    [message] = run(authz, agent)
    assert message.status == "success" and calls["read_ticket"] == 1


def test_on_deny_raise_stops_the_run(authz: Authorizer, guard: ToolGuard) -> None:
    agent = agent_for(script(turn(("create_api_key", {"name": "k"}))), guard, on_deny="raise")
    with pytest.raises(ToolDenied, match="DENIED: tool 'create_api_key' is declared"):
        run(authz, agent)
    write = ("update_ticket", {"ticket_id": "2", "status": "solved"})
    agent = agent_for(script(turn(("read_ticket", {"ticket_id": "2"})), turn(write)), guard,
                      on_deny="raise")
    with pytest.raises(ApprovalRequired) as info:
        run(authz, agent)
    assert info.value.request_id.startswith("apr-")
    assert calls == {"read_ticket": 1}


def test_the_middleware_checks_its_settings(authz: Authorizer) -> None:
    other = Authorizer(POLICY)
    with pytest.raises(ConfigurationError, match="another authorizer"):
        AgentAuthzMiddleware(authz, guard=other.guard)
    with pytest.raises(ConfigurationError, match="on_deny"):
        AgentAuthzMiddleware(authz, on_deny="ignore")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="needs an Authorizer"):
        AgentAuthzMiddleware("authz")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="must be a ToolGuard"):
        AgentAuthzMiddleware(guard=authz)  # type: ignore[arg-type]
    assert AgentAuthzMiddleware(guard=authz.guard).authz is authz


# --------------------------------------------------------------------------- guarded tools
def _lookup_kb(key: str) -> str:
    ran("structured")
    return f"value of {key}"


async def _alookup_kb(key: str) -> str:
    ran("structured")
    return f"value of {key}"


STRUCTURED = StructuredTool.from_function(func=_lookup_kb, coroutine=_alookup_kb, name="lookup",
                                          description="Look a key up in the knowledge base.")


@pytest.fixture
def guarded(authz: Authorizer, records: list[ToolCallRecord]) -> dict[str, BaseTool]:
    tools = guard_langchain_tools([read_ticket, aread_ticket, search, create_api_key,
                                   STRUCTURED], authz=authz, audit=records.append)
    return {t.name: t for t in tools}


def test_guarded_tools_look_like_the_tools_they_wrap(guarded: dict[str, BaseTool]) -> None:
    for original in (read_ticket, search, STRUCTURED):
        wrapped = guarded[original.name]
        assert isinstance(wrapped, GuardedTool) and wrapped.wrapped is original
        assert wrapped.description == original.description
        assert wrapped.tool_call_schema.model_json_schema() == \
            original.tool_call_schema.model_json_schema()  # type: ignore[union-attr]


async def test_guarded_tools_decide_invoke_and_ainvoke(
        authz: Authorizer, guarded: dict[str, BaseTool], records: list[ToolCallRecord]) -> None:
    with authz.acting_as(AGENT, on_behalf_of=USER), authz.task(scope=SCOPE, purpose="t"):
        assert guarded["read_ticket"].invoke({"ticket_id": "2"}) == {
            "id": "2", "subject": "Refund please"}
        assert await guarded["aread_ticket"].ainvoke({"ticket_id": "2"}) == {
            "id": "2", "subject": "Refund please"}
        assert guarded["lookup"].invoke("k1") == "value of k1"
        assert await guarded["lookup"].ainvoke({"key": "k2"}) == "value of k2"
        assert guarded["lookup"].invoke({"key": "k3"}).startswith("DENIED: chain rule "
                                                                 "'lookup-budget'")
        assert guarded["create_api_key"].invoke({"name": "x"}).startswith(
            "DENIED: tool 'create_api_key' is declared token_minting")
        assert (await guarded["aread_ticket"].ainvoke({"ticket_id": "9"})).startswith("DENIED:")
        assert guarded["search"].invoke({"query": "q"}) == {"hits": [
            {"id": "public", "title": "Reset guide"}, {"id": "mine", "title": "Alice's notes"}],
            "total": 3}
    assert calls == {"read_ticket": 1, "aread_ticket": 1, "structured": 2, "search": 1}
    assert [r.decision.allowed for r in records] == [True, True, True, True, False, False,
                                                     False, True]
    assert records[-1].withheld


async def test_guarded_tools_called_with_a_tool_call_answer_tool_messages(
        authz: Authorizer, guarded: dict[str, BaseTool]) -> None:
    def call(name: str, args: dict[str, Any]) -> ToolCall:
        return tool_call(name=name, args=args, id=f"id-{name}")

    with authz.acting_as(AGENT, on_behalf_of=USER), authz.task(scope=SCOPE, purpose="t"):
        ok = guarded["read_ticket"].invoke(call("read_ticket", {"ticket_id": "2"}))
        refused = await guarded["create_api_key"].ainvoke(call("create_api_key", {"name": "x"}))
        filtered = await guarded["search"].ainvoke(call("search", {"query": "q"}))
    assert isinstance(ok, ToolMessage) and ok.status == "success"
    assert isinstance(refused, ToolMessage) and is_denied(refused)
    assert refused.tool_call_id == "id-create_api_key" and refused.name == "create_api_key"
    assert isinstance(filtered, ToolMessage)
    assert len(json.loads(str(filtered.content))["hits"]) == 2
    assert calls == {"read_ticket": 1, "search": 1}


async def test_guarded_tools_run_in_a_create_agent_loop(authz: Authorizer,
                                                        guarded: dict[str, BaseTool]) -> None:
    model = script(turn(("read_ticket", {"ticket_id": "2"}), ("create_api_key", {"name": "x"}),
                        ("aread_ticket", {"ticket_id": "1"})))
    agent = create_agent(model, list(guarded.values()))
    messages = await arun(authz, agent)
    assert [is_denied(m) for m in messages] == [False, True, False]
    assert calls == {"read_ticket": 1, "aread_ticket": 1}


def test_guarded_tools_can_raise_instead(authz: Authorizer) -> None:
    [wrapped] = guard_langchain_tools([create_api_key], authz=authz, on_deny="raise")
    with authz.acting_as(AGENT, on_behalf_of=USER), pytest.raises(ToolDenied):
        wrapped.invoke({"name": "x"})
    assert calls["create_api_key"] == 0


def test_guard_langchain_tools_checks_what_it_is_given(authz: Authorizer) -> None:
    with pytest.raises(ConfigurationError, match="guard_tools"):
        guard_langchain_tools([_lookup_kb], authz=authz)  # type: ignore[list-item]
    [once] = guard_langchain_tools([read_ticket], authz=authz)
    with pytest.raises(ConfigurationError, match="guarded already"):
        guard_langchain_tools([once], authz=authz)
    with pytest.raises(ConfigurationError, match="on_deny"):
        guard_langchain_tools([read_ticket], authz=authz, on_deny="log")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- packaging
def test_without_langchain_the_module_imports_and_using_it_names_the_extra() -> None:
    code = (
        "import sys\n"
        "for name in ('langchain', 'langchain_core', 'langgraph'): sys.modules[name] = None\n"
        "import agentauthz.integrations.langchain as lc\n"
        "for use in (lambda: lc.AgentAuthzMiddleware(), "
        "lambda: lc.guard_langchain_tools([], authz=None)):\n"
        "    try:\n"
        "        use()\n"
        "    except ImportError as exc:\n"
        "        print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2
    assert all("pip install 'agentauthz[langchain]'" in line for line in lines)
