"""The agent layer's store seams, in memory: what a shared store must do the same way."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from agentauthz import Authorizer, StoreError
from agentauthz.agents.approvals import Approvals, ApprovalStore
from agentauthz.agents.chains import Ledgers, LedgerStore, Step, Summary
from agentauthz.agents.guard import ToolDenied
from agentauthz.agents.revocation import MemoryRevocationStore, RevocationStore
from agentauthz.agents.tools import Effect
from agentauthz.errors import StateStoreUnavailable
from agentauthz.model import Reason

POLICY = """
types:
  user: {}
  agent: {}
  ticket:
    attributes: {classification: string}
    relations: {viewer: [user, agent]}
    permissions: {read: viewer}
agents:
  - {id: agent:bot, owner: user:alice, purpose: triage, tools: [search, read_ticket]}
tools:
  search: {action: read, resource: "ticket:{ticket_id}"}
  read_ticket:
    action: read
    resource: "ticket:{ticket_id}"
    result: {resource: "ticket:{id}"}
chains:
  - {id: search-budget, tool: search, max_calls: 2}
"""


def _step(tool: str = "search", n: int = 0) -> Step:
    return Step(tool, "read", "ticket:1", Effect.READ, frozenset(), {}, True, time.time(), n)


def test_memory_stores_implement_the_protocols() -> None:
    assert isinstance(Ledgers(), LedgerStore)
    assert isinstance(Approvals(), ApprovalStore)
    assert isinstance(MemoryRevocationStore(), RevocationStore)
    assert issubclass(StateStoreUnavailable, StoreError)


def test_record_appends_only_what_decide_returns() -> None:
    ledgers = Ledgers()
    seen: list[int] = []

    def decide(summary: Summary) -> Step | None:
        seen.append(summary.count)
        return _step(n=summary.count) if summary.count < 2 else None

    assert ledgers.record("task:t", decide) is not None
    assert ledgers.record("task:t", decide) is not None
    assert ledgers.record("task:t", decide) is None
    assert seen == [0, 1, 2]
    assert [s.n for s in ledgers.steps("task:t")] == [0, 1]
    assert ledgers.steps("task:other") == ()


def test_add_labels_replaces_the_step_and_feeds_the_summary() -> None:
    ledgers = Ledgers()
    step = ledgers.record("task:t", lambda s: _step(n=s.count))
    assert step is not None
    updated = ledgers.add_labels("task:t", step, frozenset({"confidential"}))
    assert updated.labels == {"confidential"} and updated.n == step.n
    assert ledgers.steps("task:t") == (updated,)
    ledger = ledgers.peek("task:t")
    assert ledger is not None and ledger.summary.labels["confidential"] is updated


async def test_async_twins_share_the_ledger() -> None:
    ledgers = Ledgers()
    first = await ledgers.arecord("task:t", lambda s: _step(n=s.count))
    assert first is not None
    await ledgers.aadd_labels("task:t", first, frozenset({"pii"}))
    assert [s.labels for s in ledgers.steps("task:t")] == [frozenset({"pii"})]


def _request(approvals: Approvals, fp: str = "fp") -> Any:
    return approvals.request(principal="agent:bot", tool="t", action="write",
                             resource="ticket:1", arguments={}, reasons=(Reason("x", "y"),),
                             fingerprint=fp, agents=("agent:bot",))


def test_wait_for_returns_the_approver_given_elsewhere_and_uses_the_approval_up() -> None:
    approvals = Approvals()
    req = _request(approvals)
    timer = threading.Timer(0.05, lambda: approvals.approve(req.id, approver="user:carol"))
    timer.start()
    assert approvals.wait_for(req, timeout=5) == "user:carol"
    timer.join()
    assert approvals.consume("fp") is None  # used up by the wait


def test_wait_for_is_false_when_denied_or_timed_out() -> None:
    approvals = Approvals()
    req = _request(approvals)
    assert approvals.wait_for(req, timeout=0.01) is False
    approvals.deny(req.id, approver="user:carol")
    assert approvals.wait_for(req, timeout=5) is False


async def test_await_for_returns_the_approver() -> None:
    approvals = Approvals()
    req = _request(approvals)
    asyncio.get_running_loop().call_later(0.05, lambda: approvals.approve(
        req.id, approver="user:carol"))
    assert await approvals.await_for(req, timeout=5) == "user:carol"
    assert await approvals.aconsume("fp") is None


def test_a_handler_that_waits_for_an_out_of_band_approval() -> None:
    authz = Authorizer(POLICY.replace("{id: search-budget, tool: search, max_calls: 2}",
                                      "{id: gate, tool: search, max_calls: 0, "
                                      "decision: approval_required}"))
    authz.add("ticket:1#viewer@user:alice", "ticket:1#viewer@agent:bot")

    def handler(request: Any) -> bool | str:
        threading.Timer(0.05, lambda: authz.approvals.approve(
            request.id, approver="user:carol")).start()
        return authz.approvals.wait_for(request, timeout=5)

    guard = authz.tool_guard(approval_handler=handler)
    with authz.acting_as("agent:bot", on_behalf_of="user:alice"):
        call = guard.begin("search", {"ticket_id": "1"})
    assert call.allowed and "approved by user:carol" in call.decision.reasons[0].message
    assert authz.approvals.pending() == []


class _FailingLedgers(Ledgers):
    def __init__(self, where: str) -> None:
        super().__init__()
        self.where = where

    def record(self, key: str, decide: Any, *, expires_at: float | None = None) -> Step | None:
        if self.where == "record":
            raise StateStoreUnavailable("Redis is down")
        return super().record(key, decide, expires_at=expires_at)

    async def arecord(self, key: str, decide: Any, *, expires_at: float | None = None
                      ) -> Step | None:
        return self.record(key, decide, expires_at=expires_at)

    def add_labels(self, key: str, step: Step, labels: frozenset[str]) -> Step:
        raise StateStoreUnavailable("Redis is down")

    async def aadd_labels(self, key: str, step: Step, labels: frozenset[str]) -> Step:
        return self.add_labels(key, step, labels)


def _authz(ledgers: Ledgers) -> Authorizer:
    authz = Authorizer(POLICY, data={
        "relationships": ["ticket:1#viewer@user:alice", "ticket:1#viewer@agent:bot",
                          "ticket:2#viewer@user:alice", "ticket:2#viewer@agent:bot"],
        "attributes": {"ticket:1": {"classification": "internal"},
                       "ticket:2": {"classification": "confidential"}}})
    authz.ledgers = ledgers
    return authz


def test_a_ledger_store_that_fails_denies_with_state_store_unavailable() -> None:
    authz = _authz(_FailingLedgers("record"))
    guard = authz.tool_guard()
    with authz.acting_as("agent:bot", on_behalf_of="user:alice"):
        call = guard.begin("search", {"ticket_id": "1"})
    assert not call.allowed
    assert call.decision.reasons[0].kind == "state_store_unavailable"


async def test_a_ledger_store_that_fails_denies_in_asyncio_too() -> None:
    authz = _authz(_FailingLedgers("record"))

    async def search(ticket_id: str) -> str:
        return ticket_id

    guarded = authz.tool_guard().wrap(search)
    with authz.acting_as("agent:bot", on_behalf_of="user:alice"), \
            pytest.raises(ToolDenied, match="Redis is down"):
        await guarded(ticket_id="1")


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_a_result_whose_labels_cannot_be_recorded_is_withheld(asynchronous: bool) -> None:
    authz = _authz(_FailingLedgers("labels"))
    guard = authz.tool_guard()

    def read_ticket(ticket_id: str) -> dict[str, str]:
        return {"id": "2", "text": "secret"}  # a confidential record: its label must be recorded

    async def aread_ticket(ticket_id: str) -> dict[str, str]:
        return read_ticket(ticket_id)

    with authz.acting_as("agent:bot", on_behalf_of="user:alice"):
        if asynchronous:
            result = await guard.wrap(aread_ticket, guard.spec("read_ticket"))(ticket_id="1")
        else:
            result = guard.wrap(read_ticket, guard.spec("read_ticket"))(ticket_id="1")
    assert result is None
