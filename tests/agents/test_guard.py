from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from typing import Any

import pytest

from agentauthz import ApprovalRequired, Authorizer, ConfigurationError, InvalidInputError, PolicyError
from agentauthz.agents.approvals import ApprovalRequest
from agentauthz.agents.guard import ToolCallRecord, ToolDenied, guard_tools, guarded_tool
from agentauthz.agents.tools import ToolSpec

POLICY = """
types:
  user: {attributes: {tenant: string}}
  agent: {}
  team: {relations: {member: [user, agent]}}
  ticket:
    attributes: {tenant: string}
    relations: {team: [team]}
    permissions: {read: team->member, write: team->member}
  document:
    attributes: {classification: string, tenant: string}
    relations: {team: [team]}
    permissions: {read: team->member, export: team->member}
    fields: {title: {}, email: {read: team->member - team->member}}
  tool:
    relations: {user: [user, agent, team#member]}
    permissions: {call: user}
agents:
  - id: agent:bot
    owner: user:alice
    purpose: answers support tickets
    tools: [read_ticket, update_ticket, export_doc, search, send_email, fetch, set_priority,
            add_member, update_team, read_doc, rotate_password, create_api_key]
  - {id: agent:other, owner: user:alice, purpose: a second agent, tools: [read_ticket, search]}
tools:
  read_ticket: {action: read, resource: "ticket:{ticket_id}"}
  read_doc: {action: read, resource: "document:{doc_id}"}
  update_ticket: {action: write, resource: "ticket:{ticket_id}", effect: write}
  export_doc: {action: export, resource: "document:{doc_id}", effect: external}
  search:
    result: {resource: "document:{id}", records: hits, fields: {email: email, title: title}}
  send_email:
    effect: external
    constraints: {to: {pattern: ".*@acme\\\\.example"}}
  fetch:
    effect: external
    constraints: {url: {hosts: [docs.acme.example, .wiki.acme.example]}}
  set_priority:
    action: write
    resource: "ticket:{ticket_id}"
    effect: write
    constraints: {priority: {one_of: [low, normal, high]}, minutes: {min: 0, max: 60}}
  update_team: {action: call, effect: write}
  rotate_password: {hard_block: credential_change}
chains:
  - {id: no-exfiltration, effect: external, after_labels: [confidential, restricted]}
  - {id: step-up-first-write, effect: write, first: true, decision: approval_required}
  - {id: search-budget, tool: search, max_calls: 2}
  - {id: one-tenant, tool: [read_ticket, update_ticket], same_attribute: tenant}
"""

RELS = [
    "team:t#member@user:alice", "team:t#member@agent:bot", "team:t#member@agent:other",
    "ticket:1#team@team:t", "ticket:2#team@team:t", "ticket:9#team@team:t",
    "document:public#team@team:t", "document:secret#team@team:t",
    *(f"tool:{name}#user@team:t#member" for name in (
        "search", "send_email", "fetch", "update_team", "add_member", "rotate_password",
        "create_api_key", "run_shell")),
]
ATTRS = {
    "document:public": {"classification": "public", "tenant": "acme"},
    "document:secret": {"classification": "confidential", "tenant": "acme"},
    "ticket:1": {"tenant": "acme"}, "ticket:2": {"tenant": "acme"},
    "ticket:9": {"tenant": "globex"},
}

calls: Counter[str] = Counter()


def read_ticket(ticket_id: str) -> dict[str, str]:
    calls["read_ticket"] += 1
    return {"id": ticket_id}


def read_doc(doc_id: str) -> str:
    calls["read_doc"] += 1
    return doc_id


def update_ticket(ticket_id: str, text: str = "") -> str:
    calls["update_ticket"] += 1
    return "updated"


def export_doc(doc_id: str, to: str = "x@acme.example") -> str:
    calls["export_doc"] += 1
    return "exported"


def search(query: str) -> dict[str, Any]:
    calls["search"] += 1
    return {"hits": [{"id": "public", "title": "Reset guide", "email": "a@acme.example"},
                     {"id": "secret", "title": "Payroll", "email": "b@acme.example"},
                     {"id": "elsewhere", "title": "Not ours"}], "total": 3}


def send_email(to: str, body: str) -> str:
    calls["send_email"] += 1
    return "sent"


def fetch(url: str) -> str:
    calls["fetch"] += 1
    return "page"


def set_priority(ticket_id: str, priority: str, minutes: int = 0) -> str:
    calls["set_priority"] += 1
    return "ok"


def create_api_key(name: str) -> str:
    calls["create_api_key"] += 1
    return "sk-live"


def rotate_password(account: str) -> str:
    calls["rotate_password"] += 1
    return "rotated"


def add_member(team: str, user: str) -> str:
    calls["add_member"] += 1
    return "added"


def update_team(team: str, members: list[str]) -> str:
    calls["update_team"] += 1
    return "updated"


TOOLS = [read_ticket, read_doc, update_ticket, export_doc, search, send_email, fetch,
         set_priority, create_api_key, rotate_password, add_member, update_team]


@pytest.fixture(autouse=True)
def _reset() -> None:
    calls.clear()


@pytest.fixture
def authz() -> Authorizer:
    return Authorizer(POLICY, data={"relationships": RELS, "attributes": ATTRS})


@pytest.fixture
def audit() -> list[ToolCallRecord]:
    return []


def tools_for(authz: Authorizer, audit: list[ToolCallRecord] | None = None,
              **options: Any) -> dict[str, Any]:
    if audit is not None:
        options["audit"] = audit.append
    return {t.__name__: t for t in guard_tools(TOOLS, authz=authz, **options)}


def kinds(exc: pytest.ExceptionInfo[ToolDenied]) -> list[str]:
    assert exc.value.decision is not None
    return [r.kind for r in exc.value.decision.reasons]


def test_allowed_call_runs_and_is_recorded(authz: Authorizer,
                                           audit: list[ToolCallRecord]) -> None:
    t = tools_for(authz, audit)
    with authz.acting_as("agent:bot", on_behalf_of="user:alice"):
        assert t["read_ticket"](ticket_id="1") == {"id": "1"}
    assert calls["read_ticket"] == 1
    assert audit[0].decision.allowed and audit[0].resource == "ticket:1"
    assert authz.agents.usage("agent:bot").tools == {"read_ticket": 1}  # type: ignore[union-attr]


def test_policy_denial_does_not_call_the_tool(authz: Authorizer) -> None:
    authz.remove("ticket:2#team@team:t")
    t = tools_for(authz)
    with authz.acting_as("agent:bot", on_behalf_of="user:alice"), \
            pytest.raises(ToolDenied) as info:
        t["read_ticket"](ticket_id="2")
    assert calls["read_ticket"] == 0
    assert str(info.value).startswith("DENIED: ")


def test_on_deny_message_returns_text_for_the_model(authz: Authorizer) -> None:
    t = tools_for(authz, on_deny="message")
    with authz.acting_as("agent:bot", on_behalf_of="user:alice"):
        out = t["create_api_key"](name="mine")
    assert out.startswith("DENIED: ") and "token_minting" in out
    assert calls["create_api_key"] == 0


def test_no_principal_is_denied(authz: Authorizer) -> None:
    with pytest.raises(ToolDenied, match="no principal"):
        tools_for(authz)["read_ticket"](ticket_id="1")


# ------------------------------------------------------------------ hard blocks
@pytest.mark.parametrize(("name", "category"), [
    ("create_api_key", "token_minting"),
    ("Create-API-Key", "token_minting"),
    ("ＣｒｅａｔｅＡｐｉＫｅｙ", "token_minting"),
    ("mint\u200bToken", "token_minting"),
    ("sts_assume_role", "token_minting"),
    ("grant_rоle", "privilege_change"),   # a Cyrillic о
    ("addTeamMember", "privilege_change"),
    ("attach_iam_policy", "privilege_change"),
    ("get_secret_value", "credential_change"),
    ("add_ssh_key", "credential_change"),
])
def test_undeclared_hard_blocked_tools(authz: Authorizer, name: str, category: str) -> None:
    authz.agents.register("agent:bot", owner="user:alice", purpose="x", tools=[name],
                          replace=True)
    with authz.acting_as("agent:bot", on_behalf_of="user:alice"):
        call = authz.guard.begin(name, {"name": "x"})
    assert not call.allowed
    assert call.decision.reasons[0].kind == f"hard_block:{category}"


def test_undeclared_harmless_tool_is_still_denied_for_agents(authz: Authorizer) -> None:
    with authz.acting_as("agent:bot", on_behalf_of="user:alice"):
        call = authz.guard.begin("get_weather", {"city": "Paris"})
    assert call.decision.reasons[0].kind == "undeclared_tool"


def test_undeclared_tool_for_a_user_follows_the_policy(authz: Authorizer) -> None:
    with authz.acting_as("user:alice"):
        assert authz.guard.begin("run_shell", {"cmd": "ls"}).allowed   # policy lets alice
        assert not authz.guard.begin("get_weather", {}).allowed        # no tool:get_weather


def test_declared_hard_block_beats_the_policy(authz: Authorizer) -> None:
    t = tools_for(authz)
    with authz.acting_as("agent:bot", on_behalf_of="user:alice"), \
            pytest.raises(ToolDenied) as info:
        t["rotate_password"](account="db")
    assert kinds(info) == ["hard_block:credential_change"]
    assert calls["rotate_password"] == 0


@pytest.mark.parametrize("category", ["privilege_change", "token_minting", "credential_change"])
def test_each_declared_category_is_blocked_even_when_the_policy_allows(
        authz: Authorizer, category: str) -> None:
    authz.guard.declare(ToolSpec("innocent_name", hard_block=category))
    authz.add("tool:innocent_name#user@team:t#member")
    authz.agents.register("agent:bot", owner="user:alice", purpose="x",
                          tools=["innocent_name"], replace=True)
    with authz.acting_as("user:alice"):
        assert authz.guard.begin("innocent_name", {}).allowed   # a person may
    with authz.acting_as("agent:bot", on_behalf_of="user:alice"):
        call = authz.guard.begin("innocent_name", {})
    assert call.decision.reasons[0].kind == f"hard_block:{category}"


def test_runtime_discovered_tool_from_description_and_arguments(authz: Authorizer) -> None:
    authz.agents.register("agent:bot", owner="user:alice", purpose="x",
                          tools=["helper", "run"], replace=True)
    with authz.acting_as("agent:bot", on_behalf_of="user:alice"):
        by_description = authz.guard.begin("helper", {}, description="Creates a new API key")
        by_argument = authz.guard.begin("run", {"command": "aws sts assume-role --role-arn x"})
    assert by_description.decision.reasons[0].kind == "hard_block:token_minting"
    assert by_argument.decision.reasons[0].kind == "hard_block:token_minting"


@pytest.mark.parametrize(("tool", "kwargs"), [
    ("add_member", {"team": "t", "user": "agent:bot"}),
    ("add_member", {"team": "t", "user": "user:alice"}),              # its owner
    ("update_team", {"team": "t", "members": ["user:bob", "agent:bot"]}),
])
def test_self_escalation_by_arguments(authz: Authorizer, tool: str,
                                      kwargs: dict[str, Any]) -> None:
    authz.guard.declare(ToolSpec("add_member", effect="write"))  # declared harmless-looking
    t = tools_for(authz)
    with authz.acting_as("agent:bot", on_behalf_of="user:alice"), \
            pytest.raises(ToolDenied) as info:
        t[tool](**kwargs)
    assert kinds(info)[0] == "hard_block:self_escalation"
    assert calls[tool] == 0


def test_adding_someone_else_is_not_self_escalation(authz: Authorizer) -> None:
    authz.guard.declare(ToolSpec("add_member", effect="write"))
    authz.approvals.ttl = 60
    with authz.acting_as("agent:bot", on_behalf_of="user:alice"):
        call = authz.guard.begin("add_member", {"team": "t", "user": "user:carol"})
    assert call.allowed


def test_break_glass_opens_a_hard_block(authz: Authorizer) -> None:
    t = tools_for(authz)
    authz.break_glass("agent:bot", "call", "tool:rotate_password",
                      reason="database password leaked; rotate it now", approver="user:carol",
                      ttl=60)
    with authz.acting_as("agent:bot", on_behalf_of="user:alice"):
        assert t["rotate_password"](account="db") == "rotated"


def test_tool_must_be_approved_for_the_agent(authz: Authorizer) -> None:
    t = tools_for(authz)
    with authz.acting_as("agent:other", on_behalf_of="user:alice"), \
            pytest.raises(ToolDenied) as info:
        t["update_ticket"](ticket_id="1")
    assert kinds(info) == ["tool_not_approved"]


# -------------------------------------------------------------- argument checks
@pytest.mark.parametrize(("tool", "kwargs", "ok"), [
    ("send_email", {"to": "bob@acme.example", "body": "hi"}, True),
    ("send_email", {"to": "bob@evil.example", "body": "hi"}, False),
    ("send_email", {"to": "bob@acme.example.evil.io", "body": "hi"}, False),
    ("fetch", {"url": "https://docs.acme.example/a"}, True),
    ("fetch", {"url": "https://kb.wiki.acme.example/a"}, True),
    ("fetch", {"url": "https://docs.acme.example.evil.io/a"}, False),
    ("fetch", {"url": "https://user@docs.acme.example/a"}, False),
    ("fetch", {"url": "file:///etc/passwd"}, False),
    ("set_priority", {"ticket_id": "1", "priority": "high", "minutes": 5}, True),
    ("set_priority", {"ticket_id": "1", "priority": "urgent"}, False),
    ("set_priority", {"ticket_id": "1", "priority": "low", "minutes": 61}, False),
    ("set_priority", {"ticket_id": "1", "priority": "low", "minutes": "5"}, False),
])
def test_argument_constraints(authz: Authorizer, tool: str, kwargs: dict[str, Any],
                              ok: bool) -> None:
    with authz.acting_as("agent:bot", on_behalf_of="user:alice"):
        call = authz.guard.begin(tool, kwargs)
    if ok:
        assert call.allowed or call.decision.reasons[0].kind == "approval_required"
    else:
        assert call.decision.reasons[0].kind == "argument_constraint"


def test_bad_arguments_deny(authz: Authorizer) -> None:
    with authz.acting_as("agent:bot", on_behalf_of="user:alice"):
        missing = authz.guard.begin("read_ticket", {})
        wrong = authz.guard.begin("read_ticket", {"ticket_id": ["1"]})
        odd = authz.guard.begin("read_ticket", "ticket 1")  # type: ignore[arg-type]
    for call in (missing, wrong, odd):
        assert call.decision.reasons[0].kind == "bad_arguments"


# ------------------------------------------------------------------ chain rules
def test_external_after_confidential_read_is_denied(authz: Authorizer) -> None:
    t = tools_for(authz)
    with authz.acting_as("agent:bot", on_behalf_of="user:alice"), \
            authz.task(scope=[("*", "*")], purpose="triage"):
        t["read_doc"](doc_id="public")
        assert t["send_email"](to="bob@acme.example", body="fine") == "sent"
        t["read_doc"](doc_id="secret")
        with pytest.raises(ToolDenied) as info:
            t["send_email"](to="bob@acme.example", body="the payroll")
    assert kinds(info) == ["chain_rule"] and "confidential" in str(info.value)
    assert calls["send_email"] == 1


def test_labels_of_search_results_count(authz: Authorizer) -> None:
    t = tools_for(authz)
    with authz.acting_as("agent:bot", on_behalf_of="user:alice"), \
            authz.task(scope=[("*", "*")], purpose="triage"):
        t["search"](query="payroll")          # returns the confidential document
        with pytest.raises(ToolDenied):
            t["fetch"](url="https://docs.acme.example/upload")


def test_first_write_needs_step_up(authz: Authorizer) -> None:
    approved: list[ApprovalRequest] = []

    def person(request: ApprovalRequest) -> bool:
        approved.append(request)
        return True

    t = tools_for(authz, approval_handler=person)
    with authz.acting_as("agent:bot", on_behalf_of="user:alice"), \
            authz.task(scope=[("*", "*")], purpose="triage"):
        t["update_ticket"](ticket_id="1")        # no read before: no step-up
        assert not approved
    with authz.acting_as("agent:bot", on_behalf_of="user:alice"), \
            authz.task(scope=[("*", "*")], purpose="triage"):
        t["read_ticket"](ticket_id="1")
        assert t["update_ticket"](ticket_id="1", text="fixed") == "updated"
        assert len(approved) == 1 and approved[0].tool == "update_ticket"
        t["update_ticket"](ticket_id="1", text="again")   # not the first write any more
        assert len(approved) == 1


def test_step_up_denied_and_timed_out(authz: Authorizer) -> None:
    def slow(request: ApprovalRequest) -> bool:
        time.sleep(2)
        return True

    for handler, kind in ((lambda r: False, "approval_denied"), (slow, "approval_denied"),
                          (lambda r: 1 / 0, "approval_denied")):
        t = tools_for(authz, approval_handler=handler, approval_timeout=0.2)
        with authz.acting_as("agent:bot", on_behalf_of="user:alice"), \
                authz.task(scope=[("*", "*")], purpose="triage"):
            t["read_ticket"](ticket_id="1")
            with pytest.raises(ToolDenied) as info:
                t["update_ticket"](ticket_id="1")
        assert kinds(info)[0] == kind
    assert calls["update_ticket"] == 0


def test_out_of_band_approval_covers_exactly_one_request(authz: Authorizer) -> None:
    t = tools_for(authz)
    with authz.acting_as("agent:bot", on_behalf_of="user:alice"), \
            authz.task(scope=[("*", "*")], purpose="triage"):
        t["read_ticket"](ticket_id="1")
        with pytest.raises(ApprovalRequired) as info:
            t["update_ticket"](ticket_id="1", text="fix")
        request_id = info.value.request_id
        assert [r.id for r in authz.approvals.pending()] == [request_id]
        with pytest.raises(InvalidInputError, match="cannot approve its own"):
            authz.approvals.approve(request_id, approver="agent:bot")
        authz.approvals.approve(request_id, approver="user:alice")
        with pytest.raises(ApprovalRequired):
            t["update_ticket"](ticket_id="1", text="something else")   # other arguments
        assert t["update_ticket"](ticket_id="1", text="fix") == "updated"
    assert calls["update_ticket"] == 1


async def test_async_tools_and_async_approval_handler(authz: Authorizer) -> None:
    async def person(request: ApprovalRequest) -> bool:
        await asyncio.sleep(0)
        return True

    @guarded_tool(action="write", resource="ticket:{ticket_id}", effect="write", authz=authz)
    async def close_ticket(ticket_id: str) -> str:
        return "closed"

    guard = authz.tool_guard(approval_handler=person)
    aread = guard.wrap(_async_read_ticket, authz.guard.spec("read_ticket"))
    close = guard.wrap(close_ticket.__wrapped__, authz.guard.spec("close_ticket"))  # type: ignore[attr-defined]
    authz.agents.register("agent:bot", owner="user:alice", purpose="x",
                          tools=["read_ticket", "close_ticket"], replace=True)
    with authz.acting_as("agent:bot", on_behalf_of="user:alice"):
        async with authz.task(scope=[("*", "*")], purpose="triage"):
            assert await aread(ticket_id="1") == {"id": "1"}
            assert await close(ticket_id="1") == "closed"


async def _async_read_ticket(ticket_id: str) -> dict[str, str]:
    return {"id": ticket_id}


def test_budget(authz: Authorizer) -> None:
    t = tools_for(authz)
    with authz.acting_as("agent:bot", on_behalf_of="user:alice"), \
            authz.task(scope=[("*", "*")], purpose="triage"):
        t["search"](query="a")
        t["search"](query="b")
        with pytest.raises(ToolDenied, match="budget"):
            t["search"](query="c")
    assert calls["search"] == 2


def test_budget_holds_under_concurrent_calls(authz: Authorizer) -> None:
    t = tools_for(authz, on_deny="message")
    results: list[Any] = []
    with authz.acting_as("agent:bot", on_behalf_of="user:alice"), \
            authz.task(scope=[("*", "*")], purpose="triage") as task:
        barrier = threading.Barrier(8)

        def worker() -> None:
            with authz.acting_as(task.principal):
                barrier.wait()
                results.append(t["search"](query="x"))

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    assert calls["search"] == 2
    assert sum(isinstance(r, str) and r.startswith("DENIED") for r in results) == 6


async def test_ledgers_are_isolated_per_task(authz: Authorizer) -> None:
    t = tools_for(authz, on_deny="message")

    async def run(n: int) -> list[Any]:
        with authz.acting_as("agent:bot", on_behalf_of="user:alice"), \
                authz.task(scope=[("*", "*")], purpose=f"task {n}"):
            out = []
            for _ in range(3):
                out.append(t["search"](query="x"))
                await asyncio.sleep(0)
            return out

    a, b = await asyncio.gather(run(1), run(2))
    for out in (a, b):
        assert [isinstance(r, str) for r in out] == [False, False, True]


def test_tenant_pinning(authz: Authorizer) -> None:
    authz.add("ticket:9#team@team:t")
    t = tools_for(authz)
    with authz.acting_as("agent:bot", on_behalf_of="user:alice"), \
            authz.task(scope=[("*", "*")], purpose="triage"):
        t["read_ticket"](ticket_id="1")
        t["read_ticket"](ticket_id="2")
        with pytest.raises(ToolDenied, match="tenant"):
            t["read_ticket"](ticket_id="9")


# ------------------------------------------------------------ result filtering
def test_results_are_filtered_and_the_record_says_what_was_withheld(
        authz: Authorizer, audit: list[ToolCallRecord]) -> None:
    authz.remove("document:secret#team@team:t")
    t = tools_for(authz, audit)
    with authz.acting_as("agent:bot", on_behalf_of="user:alice"):
        out = t["search"](query="reset")
    assert out["total"] == 3
    assert out["hits"] == [{"id": "public", "title": "Reset guide"}]   # email field removed
    withheld = audit[-1].withheld
    assert "record document:secret" in withheld and "record document:elsewhere" in withheld
    assert "document:public field email" in withheld


def test_masking_instead_of_removing(authz: Authorizer) -> None:
    authz.guard.declare(ToolSpec("search", result={"resource": "document:{id}",
                                                   "records": "hits", "mask": "[withheld]",
                                                   "fields": {"email": "email"}}))
    with authz.acting_as("agent:bot", on_behalf_of="user:alice"):
        out = tools_for(authz)["search"](query="x")
    assert out["hits"][0]["email"] == "[withheld]"


def test_result_of_the_wrong_shape_is_withheld(authz: Authorizer,
                                               audit: list[ToolCallRecord]) -> None:
    def search(query: str) -> str:
        return "raw text that may hold anything"

    guarded = authz.tool_guard(audit=audit.append).wrap(search)
    with authz.acting_as("agent:bot", on_behalf_of="user:alice"):
        assert guarded(query="x") is None
    assert "the whole result" in audit[-1].withheld[0]


# ---------------------------------------------------------------- declarations
def test_guarded_tool_uses_the_bound_authorizer(authz: Authorizer) -> None:
    @guarded_tool("read_ticket", action="read", resource="ticket:{ticket_id}")
    def read(ticket_id: str) -> str:
        return ticket_id

    with pytest.raises(ToolDenied, match="no authorizer"):
        read(ticket_id="1")
    with authz.acting_as("agent:bot", on_behalf_of="user:alice"):
        assert read(ticket_id="1") == "1"


def test_bad_tool_declarations_fail_at_load() -> None:
    bad = POLICY.replace('read_ticket: {action: read, resource: "ticket:{ticket_id}"}',
                         'read_ticket: {action: read, resource: "tickt:{ticket_id}"}')
    with pytest.raises(PolicyError, match="type 'tickt' is not declared"):
        Authorizer(bad)
    bad = POLICY.replace("  - {id: search-budget, tool: search, max_calls: 2}",
                         "  - {id: search-budget, tool: search}")
    with pytest.raises(PolicyError, match="exactly one of"):
        Authorizer(bad)
    with pytest.raises(InvalidInputError):
        ToolSpec("x", resource="{id}")
    with pytest.raises(InvalidInputError):
        ToolSpec("x", constraints={"a": {"pattern": "("}})


def test_denial_records_name_the_resource(authz: Authorizer,
                                          audit: list[ToolCallRecord]) -> None:
    guard = authz.tool_guard(audit=audit.append)
    guard.declare(ToolSpec("rotate_key", action="write", resource="ticket:{ticket_id}",
                           hard_block="credential_change"))
    with authz.acting_as("agent:bot", on_behalf_of="user:alice"):
        guard.begin("rotate_key", {"ticket_id": "1"})
    assert (audit[-1].action, audit[-1].resource) == ("write", "ticket:1")


def test_handler_names_the_approver_and_sees_the_principal(authz: Authorizer) -> None:
    from agentauthz import current_principal

    seen: list[object] = []

    def person(request: ApprovalRequest) -> str:
        seen.append(current_principal())
        return "user:carol"

    t = tools_for(authz, approval_handler=person)
    guard = authz.tool_guard(approval_handler=person)
    with authz.acting_as("agent:bot", on_behalf_of="user:alice"), \
            authz.task(scope=[("*", "*")], purpose="triage") as task:
        t["read_ticket"](ticket_id="1")
        call = guard.begin("update_ticket", {"ticket_id": "1"})
    assert call.allowed and "approved by user:carol" in call.decision.reasons[0].message
    assert seen == [task.principal]


def test_guards_of_one_authorizer_share_the_ledger(authz: Authorizer) -> None:
    first, second = authz.tool_guard(), authz.tool_guard()
    with authz.acting_as("agent:bot", on_behalf_of="user:alice"), \
            authz.task(scope=[("*", "*")], purpose="triage"):
        assert first.begin("search", {"query": "a"}).allowed
        assert second.begin("search", {"query": "b"}).allowed
        assert not first.begin("search", {"query": "c"}).allowed   # the budget is per task


def test_handler_answering_as_the_agent_is_a_denial(authz: Authorizer) -> None:
    guard = authz.tool_guard(approval_handler=lambda request: "agent:bot")
    with authz.acting_as("agent:bot", on_behalf_of="user:alice"), \
            authz.task(scope=[("*", "*")], purpose="triage"):
        guard.begin("read_ticket", {"ticket_id": "1"})
        call = guard.begin("update_ticket", {"ticket_id": "1"})
    assert not call.allowed and call.decision.reasons[0].kind == "approval_denied"


def test_a_failing_tool_is_audited(authz: Authorizer, audit: list[ToolCallRecord]) -> None:
    def read_ticket(ticket_id: str) -> str:
        raise OSError("backend down")

    guarded = authz.tool_guard(audit=audit.append).wrap(read_ticket)
    with authz.acting_as("agent:bot", on_behalf_of="user:alice"), \
            pytest.raises(OSError, match="backend down"):
        guarded(ticket_id="1")
    assert audit[-1].decision.allowed and audit[-1].withheld == ("no result: the tool raised "
                                                                 "OSError",)


def test_chains_given_to_the_guard_replace_the_policys(authz: Authorizer) -> None:
    guard = authz.tool_guard(chains=[{"id": "one-read", "tool": "read_ticket", "max_calls": 1}])
    with authz.acting_as("agent:bot", on_behalf_of="user:alice"), \
            authz.task(scope=[("*", "*")], purpose="triage"):
        assert guard.begin("read_ticket", {"ticket_id": "1"}).allowed
        assert "one-read" in guard.begin("read_ticket", {"ticket_id": "2"}).message
        assert guard.begin("search", {"query": "a"}).allowed
        assert guard.begin("search", {"query": "b"}).allowed
        assert guard.begin("search", {"query": "c"}).allowed   # the policy's budget is not used
    with pytest.raises(ConfigurationError, match="chains"):
        authz.tool_guard(chains=[{"id": "x"}])
