"""The Redis stores, against a real redis-server: keys, TTLs, atomicity, the guard on top."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis

from agentauthz import ApprovalRequired, Authorizer
from agentauthz.agents.approvals import ApprovalStore
from agentauthz.agents.chains import LedgerStore, Step, Summary
from agentauthz.agents.guard import ToolDenied, guard_tools
from agentauthz.agents.revocation import RevocationStore
from agentauthz.agents.tools import Effect
from agentauthz.scale import RedisState, SharedState, codec

from .policy import DATA, authorizer

AGENT, USER = "agent:bot", "user:alice"


@pytest.fixture
def workers(redis_url: str, namespace: str) -> Iterator[list[Authorizer]]:
    """Two workers (two authorizers, two states) on one namespace."""
    made = [authorizer(redis_url, namespace), authorizer(redis_url, namespace)]
    yield made
    for authz in made:
        authz._state.close()  # type: ignore[union-attr]


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def _key(namespace: str, suffix: str) -> str:
    return f"agentauthz:{{{namespace}}}:{suffix}"


def _tools(authz: Authorizer, **options: Any) -> dict[str, Any]:
    def search(ticket_id: str) -> str:
        return ticket_id

    def update_ticket(ticket_id: str) -> str:
        return ticket_id

    def read_ticket(ticket_id: str) -> dict[str, Any]:
        return {"hits": [{"id": ticket_id}, {"id": "9"}]}  # ticket 9 is confidential

    def send_email(ticket_id: str) -> str:
        return "sent"

    fns = [search, update_ticket, read_ticket, send_email]
    return {f.__name__: g for f, g in zip(fns, guard_tools(fns, authz=authz, **options),
                                          strict=True)}


def test_the_stores_implement_the_agent_layer_protocols(workers: list[Authorizer]) -> None:
    state = workers[0]._state
    assert isinstance(state, SharedState)
    assert isinstance(state.revocations, RevocationStore)
    assert isinstance(state.ledgers, LedgerStore)
    assert isinstance(state.approvals, ApprovalStore)
    assert workers[0].revocations is state.revocations
    assert workers[0].ledgers is state.ledgers and workers[0].approvals is state.approvals
    assert "redis" in repr(state) and state.ready()


def test_keys_are_namespaced_and_expire_with_what_they_hold(
        workers: list[Authorizer], raw: redis.Redis, namespace: str) -> None:
    a, _ = workers
    with a.acting_as(AGENT, on_behalf_of=USER), \
            a.task(scope=[("*", "*")], ttl=120, purpose="triage") as task:
        _tools(a)["search"](ticket_id="1")
        ledger = _key(namespace, f"ledger:task:{task.task_id}:sum")
        assert 120_000 < raw.pttl(ledger) <= 181_000  # the task's life, a minute's grace
        assert 120_000 < raw.pttl(_key(namespace, f"ledger:task:{task.task_id}:steps")) <= 181_000
    # the task's own revocation (its block exited) lives as long as a task could
    assert 0 < raw.pttl(_key(namespace, f"rev:task:{task.task_id}")) <= (3600 + 300) * 1000
    a.revoke(agent="agent:other", reason="retired")
    assert raw.pttl(_key(namespace, "rev:agent:agent:other")) == -1  # an agent stays revoked
    grant = a.break_glass("user:alice", "read", "ticket:1", reason="the nightly job broke down",
                          approver="user:carol", ttl=30)
    assert 0 < raw.pttl(_key(namespace, f"bg:{grant.id}")) <= 30_000
    assert all(k.startswith(f"agentauthz:{{{namespace}}}:") for k in raw.scan_iter(
        match=f"agentauthz:{{{namespace}}}:*"))
    assert not list(raw.scan_iter(match="agentauthz:{other}:*"))


def test_a_revocation_in_one_worker_denies_in_the_other(workers: list[Authorizer]) -> None:
    a, b = workers
    assert b.check(AGENT, "read", "ticket:1").allowed
    a.revoke(agent=AGENT, reason="token leaked")
    decision = b.check(AGENT, "read", "ticket:1")  # a's write returned once a's copy held it
    deadline = time.monotonic() + 2
    while decision.allowed and time.monotonic() < deadline:
        decision = b.check(AGENT, "read", "ticket:1")
    assert not decision.allowed and decision.reasons[0].kind == "agent_revoked"
    assert "token leaked" in decision.reasons[0].message


def test_a_task_revoked_in_one_worker_is_dead_in_the_other(workers: list[Authorizer]) -> None:
    a, b = workers
    with a.acting_as(AGENT, on_behalf_of=USER), \
            a.task(scope=[("read", "ticket:*")], purpose="triage") as task, \
            b.join_task(task.token, agent=AGENT) as joined:
        assert joined.check("read", "ticket:1").allowed
        a.revoke(task=task.task_id)
        _eventually(lambda: not joined.check("read", "ticket:1").allowed)
        assert joined.check("read", "ticket:1").reasons[0].kind == "task_revoked"


def _eventually(condition: Any, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.005)


def test_break_glass_grants_and_their_end_reach_every_worker(workers: list[Authorizer]) -> None:
    a, b = workers
    assert not b.check("user:bob", "read", "ticket:1").allowed
    grant = a.break_glass("user:bob", "read", "ticket:1", reason="on call must read the ticket",
                          approver="user:carol", ttl=60)
    _eventually(lambda: b.check("user:bob", "read", "ticket:1").allowed)
    assert b.break_glass_grants() == [grant]
    b.revoke(break_glass=grant.id)
    assert not b.check("user:bob", "read", "ticket:1").allowed  # at once where it was revoked
    _eventually(lambda: not a.check("user:bob", "read", "ticket:1").allowed)
    assert a.break_glass_grants() == []


def test_a_budget_holds_across_workers_and_threads(redis_url: str, namespace: str) -> None:
    made = [authorizer(redis_url, namespace, budget=7) for _ in range(3)]
    try:
        owner = made[0]
        with owner.acting_as(AGENT, on_behalf_of=USER), \
                owner.task(scope=[("*", "*")], purpose="race") as task:
            allowed: list[bool] = []
            lock = threading.Lock()

            def run(authz: Authorizer) -> None:
                search = _tools(authz, on_deny="message")["search"]
                with authz.acting_as(AGENT, on_behalf_of=USER), \
                        authz.join_task(task.token, agent=AGENT):
                    for _ in range(5):
                        ok = search(ticket_id="1") == "1"
                        with lock:
                            allowed.append(ok)

            threads = [threading.Thread(target=run, args=(authz,)) for authz in made
                       for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert len(allowed) == 30 and sum(allowed) == 7
            steps = owner.ledgers.steps(f"task:{task.task_id}")
            assert [s.n for s in steps] == list(range(7))
    finally:
        for authz in made:
            authz._state.close()  # type: ignore[union-attr]


def test_the_first_write_needs_approval_once_whichever_worker_asks(
        workers: list[Authorizer]) -> None:
    a, b = workers
    with a.acting_as(AGENT, on_behalf_of=USER), \
            a.task(scope=[("*", "*")], purpose="triage") as task:
        _tools(a)["search"](ticket_id="1")  # a read first
        with pytest.raises(ApprovalRequired) as info:
            _tools(a)["update_ticket"](ticket_id="1")
        with b.acting_as(AGENT, on_behalf_of=USER), b.join_task(task.token, agent=AGENT), \
                pytest.raises(ApprovalRequired):
            _tools(b)["update_ticket"](ticket_id="1")  # b sees a's read: still the first write
        assert {r.id for r in b.approvals.pending()} >= {info.value.request_id}
        b.approvals.approve(info.value.request_id, approver="user:carol")  # the admin UI
        assert _tools(a)["update_ticket"](ticket_id="1") == "1"  # the approval reached a
        with b.acting_as(AGENT, on_behalf_of=USER), b.join_task(task.token, agent=AGENT):
            assert _tools(b)["update_ticket"](ticket_id="2") == "2"  # no longer the first write


def test_an_approval_is_used_once_however_many_race_for_it(workers: list[Authorizer]) -> None:
    a, b = workers
    request = a.approvals.request(principal=AGENT, tool="t", action="write", resource="ticket:1",
                                  arguments={"x": 1}, reasons=(), fingerprint="fp-race",
                                  agents=(AGENT,))
    b.approvals.approve(request.id, approver="user:carol")
    got: list[Any] = []
    threads = [threading.Thread(target=lambda authz=authz: got.append(
        authz.approvals.consume("fp-race"))) for authz in (a, b) * 8]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r is not None for r in got) == 1


def test_approval_requests_and_answers(workers: list[Authorizer], raw: redis.Redis,
                                       namespace: str) -> None:
    a, b = workers
    request = a.approvals.request(principal=AGENT, tool="t", action="write", resource="ticket:1",
                                  arguments={"when": datetime(2025, 1, 1, tzinfo=UTC)},
                                  reasons=(), fingerprint="fp-1", agents=(AGENT,))
    assert 0 < raw.pttl(_key(namespace, f"apr:pending:{request.id}")) <= 86_400_000
    (seen,) = b.approvals.pending()
    assert seen.id == request.id and seen.arguments["when"] == datetime(2025, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="cannot approve its own"):
        b.approvals.approve(request.id, approver=AGENT)
    with pytest.raises(ValueError, match="between 0 and"):
        b.approvals.approve(request.id, approver="user:carol", ttl=10_000)
    b.approvals.approve(request.id, approver="user:carol", ttl=60)
    assert 0 < raw.pttl(_key(namespace, "apr:granted:fp-1")) <= 60_000
    with pytest.raises(ValueError, match="no pending"):
        b.approvals.approve(request.id, approver="user:carol")
    other = a.approvals.request(principal=AGENT, tool="t", action="write", resource="ticket:2",
                                arguments={}, reasons=(), fingerprint="fp-2")
    b.approvals.deny(other.id, approver="user:carol")
    assert a.approvals.wait_for(other, timeout=1) is False
    with pytest.raises(ValueError, match="no pending"):
        b.approvals.deny(other.id, approver="user:carol")
    dropped = a.approvals.request(principal=AGENT, tool="t", action="write", resource="ticket:3",
                                  arguments={}, reasons=(), fingerprint="fp-3")
    a.approvals.drop(dropped.id)
    assert b.approvals.pending() == []


def test_a_handler_waits_for_an_approval_given_in_another_worker(
        workers: list[Authorizer]) -> None:
    a, admin = workers

    def approve_soon() -> None:
        _eventually(lambda: bool(admin.approvals.pending()))
        admin.approvals.approve(admin.approvals.pending()[0].id, approver="user:carol")

    tools = _tools(a, approval_handler=lambda request: a.approvals.wait_for(request, timeout=5))
    with a.acting_as(AGENT, on_behalf_of=USER), a.task(scope=[("*", "*")], purpose="triage"):
        tools["search"](ticket_id="1")
        approver = threading.Thread(target=approve_soon)
        approver.start()
        assert tools["update_ticket"](ticket_id="1") == "1"
        approver.join()


async def test_the_async_guard_uses_the_asyncio_client(workers: list[Authorizer]) -> None:
    a, b = workers

    async def search(ticket_id: str) -> str:
        return ticket_id

    async def read_ticket(ticket_id: str) -> dict[str, Any]:
        return {"hits": [{"id": ticket_id}, {"id": "9"}]}

    async def send_email(ticket_id: str) -> str:
        return "sent"

    async def update_ticket(ticket_id: str) -> str:
        return ticket_id

    asearch, aread, asend, aupdate = guard_tools([search, read_ticket, send_email, update_ticket],
                                                 authz=a)
    with a.acting_as(AGENT, on_behalf_of=USER), \
            a.task(scope=[("*", "*")], purpose="triage") as task:
        results = await asyncio.gather(*(asearch(ticket_id="1") for _ in range(8)),
                                       return_exceptions=True)
        assert sum(r == "1" for r in results) == 5  # the budget, under concurrency
        assert await aread(ticket_id="1") == {"hits": [{"id": "1"}, {"id": "9"}]}
        with pytest.raises(ToolDenied, match="confidential"):
            await asend(ticket_id="1")  # the result's label reached the ledger
        with pytest.raises(ApprovalRequired) as info:
            await aupdate(ticket_id="1")
        b.approvals.approve(info.value.request_id, approver="user:carol")
        assert await aupdate(ticket_id="1") == "1"
        labels = {label for s in b.ledgers.steps(f"task:{task.task_id}") for label in s.labels}
        assert "confidential" in labels


def test_labels_a_result_revealed_reach_the_other_workers(workers: list[Authorizer]) -> None:
    a, b = workers
    with a.acting_as(AGENT, on_behalf_of=USER), \
            a.task(scope=[("*", "*")], purpose="triage") as task:
        assert _tools(a)["send_email"](ticket_id="1") == "sent"  # nothing confidential read yet
        _tools(a)["read_ticket"](ticket_id="1")
        with b.acting_as(AGENT, on_behalf_of=USER), b.join_task(task.token, agent=AGENT), \
                pytest.raises(ToolDenied, match="no-exfiltration"):
            _tools(b)["send_email"](ticket_id="1")


def test_the_summary_survives_the_round_trip() -> None:
    summary = Summary()
    when = datetime(2025, 1, 1, tzinfo=UTC)
    for i, value in enumerate(["acme", 7, when, ["a", "b"], None]):
        summary.add(Step("search", "read", f"ticket:{i}", Effect.READ, frozenset({"pii"}),
                         {"tenant": value, "blob": object()}, True, 1.5, i))
    back = codec.summary_from(codec.summary_to(summary))
    assert back.count == 5 and back.effects == {Effect.READ}
    assert back.calls == {("search", Effect.READ): 5}
    assert set(back.values["tenant"]) == set(summary.values["tenant"])
    assert back.labels["pii"].resource == "ticket:0"
    assert codec.summary_from(None) == Summary()


def test_seeding_happens_once(redis_url: str, namespace: str) -> None:
    first = authorizer(redis_url, namespace)
    try:
        first.remove("ticket:1#team@team:t")
        later = Authorizer(first.policy, data=DATA, state=RedisState(redis_url,
                                                                     namespace=namespace))
        try:
            assert not later.store.has(("ticket:1", "team", "team:t"))  # not resurrected
            assert len(later.store) == len(first.store) == len(DATA["relationships"]) - 1
            assert later.store.get_attributes("ticket:9") == {"tenant": "acme",
                                                              "classification": "confidential"}
        finally:
            later._state.close()  # type: ignore[union-attr]
    finally:
        first._state.close()  # type: ignore[union-attr]
