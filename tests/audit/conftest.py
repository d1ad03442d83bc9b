from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from agentauthz.agents import Delegation
from agentauthz.audit import AuditRecord
from agentauthz.model import Decision, Outcome, Reason

MakeRecord = Callable[..., AuditRecord]


@pytest.fixture
def make_record() -> MakeRecord:
    """An audit record as the authorizer would build it (every field overridable)."""

    def make(principal: Any = "user:alice", action: str = "read", resource: Any = "document:1",
             context: Any = None, *, allowed: bool = True, outcome: Outcome | None = None,
             kind: str = "check", at: float | None = None, **fields: Any) -> AuditRecord:
        outcome = outcome or (Outcome.ALLOW if allowed else Outcome.DENY)
        reason = Reason("permission", "document.read = owner") if allowed else \
            Reason("default_deny", "nothing grants read")
        decision = Decision(allowed, outcome, (reason,), "sha256:test")
        return AuditRecord(kind, decision, principal, action, resource, context, "local",
                           time.time() if at is None else at, 2.5e-6, **fields)

    return make


@pytest.fixture
def delegation() -> Delegation:
    return Delegation("agent:bot", "user:alice")
