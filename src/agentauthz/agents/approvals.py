"""Step-up: a person approves one request before it runs.

When a decision is ``approval_required`` the guard asks the configured
**approval handler** — a sync or async callable given an
:class:`ApprovalRequest`, returning ``True`` (approved) or ``False`` — and
waits at most ``timeout`` seconds; a denial, a timeout or an error is a
denial. Without a handler it raises :class:`~agentauthz.errors.ApprovalRequired`
carrying a request id; a person (or the application on their behalf) calls
``authz.approvals.approve(request_id, approver=...)``, and the **same
request** — same principal chain, task, tool and arguments — may then run
once, within ``ttl`` seconds. An approval covers exactly that request: other
arguments, another tool or another task need their own.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

from agentauthz.errors import InvalidInputError
from agentauthz.model import Reason, parse_entity_key

__all__ = ["ApprovalHandler", "ApprovalRequest", "Approvals", "fingerprint"]

log = logging.getLogger("agentauthz.approvals")

DEFAULT_TTL: Final = 300.0
MAX_PENDING: Final = 10_000


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    """What a person is asked to approve."""

    id: str
    principal: str
    tool: str
    action: str
    resource: str
    arguments: Mapping[str, Any]
    reasons: tuple[Reason, ...]
    fingerprint: str
    created_at: float = field(default_factory=time.time)
    agents: tuple[str, ...] = ()
    """The agents behind the request: none of them may approve it."""

    @property
    def summary(self) -> str:
        why = "; ".join(r.message for r in self.reasons[:2])
        return f"{self.principal} wants {self.tool} ({self.action} {self.resource}): {why}"


ApprovalHandler: TypeAlias = Callable[[ApprovalRequest], "bool | Awaitable[bool]"]


def fingerprint(principal: str, task: str | None, tool: str, arguments: Mapping[str, Any]
                ) -> str:
    """A stable digest of one request: what an approval is bound to."""
    try:
        args = json.dumps(arguments, sort_keys=True, default=repr, separators=(",", ":"))
    except (TypeError, ValueError):
        args = repr(sorted(arguments.items(), key=lambda kv: str(kv[0])))
    blob = json.dumps([principal, task, tool, args], separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(slots=True)
class _Grant:
    approver: str
    expires_at: float
    request: ApprovalRequest


class Approvals:
    """Pending approval requests and the approvals granted for them."""

    def __init__(self, *, ttl: float = DEFAULT_TTL, clock: Callable[[], float] = time.time
                 ) -> None:
        self.ttl = ttl
        self._clock = clock
        self._pending: dict[str, ApprovalRequest] = {}
        self._granted: dict[str, _Grant] = {}  # by fingerprint
        self._lock = threading.Lock()

    def request(self, *, principal: str, tool: str, action: str, resource: str,
                arguments: Mapping[str, Any], reasons: tuple[Reason, ...], fingerprint: str,
                agents: tuple[str, ...] = ()) -> ApprovalRequest:
        """Record a pending request; returns it with a fresh id."""
        req = ApprovalRequest(f"apr-{secrets.token_hex(8)}", principal, tool, action, resource,
                              dict(arguments), reasons, fingerprint, self._clock(), agents)
        with self._lock:
            if len(self._pending) >= MAX_PENDING:
                oldest = min(self._pending.values(), key=lambda r: r.created_at)
                del self._pending[oldest.id]
            self._pending[req.id] = req
        log.info("approval requested %s: %s", req.id, req.summary)
        return req

    def pending(self) -> list[ApprovalRequest]:
        return sorted(self._pending.values(), key=lambda r: r.created_at)

    def approve(self, request_id: str, *, approver: str, ttl: float | None = None
                ) -> ApprovalRequest:
        """Approve one pending request: that exact request may run once within ``ttl``."""
        parse_entity_key(approver, what="approver")
        with self._lock:
            req = self._pending.pop(request_id, None)
            if req is None:
                raise InvalidInputError(f"no pending approval request {request_id!r}")
            if approver == req.principal or approver in req.agents:
                self._pending[request_id] = req
                raise InvalidInputError("an agent cannot approve its own request: a person "
                                        "must")
            life = self.ttl if ttl is None else ttl
            if not 0 < life <= self.ttl:
                self._pending[request_id] = req
                raise InvalidInputError(f"an approval lasts between 0 and {self.ttl:g} seconds")
            self._granted[req.fingerprint] = _Grant(approver, self._clock() + life, req)
        log.warning("approval granted %s by %s: %s", req.id, approver, req.summary)
        return req

    def deny(self, request_id: str, *, approver: str) -> ApprovalRequest:
        with self._lock:
            req = self._pending.pop(request_id, None)
        if req is None:
            raise InvalidInputError(f"no pending approval request {request_id!r}")
        log.info("approval denied %s by %s", req.id, approver)
        return req

    def consume(self, fingerprint: str) -> Reason | None:
        """Use up the approval for exactly this request, if one is live."""
        with self._lock:
            grant = self._granted.pop(fingerprint, None)
        if grant is None or grant.expires_at <= self._clock():
            return None
        return Reason("approved", f"approved by {grant.approver} (request {grant.request.id})",
                      grant.request.id)

    def grant_now(self, req: ApprovalRequest, approver: str) -> Reason:
        """An approval given synchronously by a handler: used at once, never stored."""
        with self._lock:
            self._pending.pop(req.id, None)
        log.warning("approval granted %s by %s: %s", req.id, approver, req.summary)
        return Reason("approved", f"approved by {approver} (request {req.id})", req.id)

    def drop(self, request_id: str) -> None:
        with self._lock:
            self._pending.pop(request_id, None)
