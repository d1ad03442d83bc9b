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

An approval handler may also wait for a person who answers elsewhere (an
admin UI calling ``approve``): :meth:`Approvals.wait_for` (or
:meth:`Approvals.await_for`) returns the approver once the request is
approved, using the approval up.

Where requests and approvals live is an :class:`ApprovalStore`:
:class:`Approvals` in memory by default, or Redis (:mod:`agentauthz.scale`)
so that an approval granted in one process reaches the worker that waits for
it; using an approval up is atomic there too, so it runs once in all.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, TypeAlias, runtime_checkable

from agentauthz.errors import InvalidInputError
from agentauthz.model import Reason, parse_entity_key

__all__ = ["ApprovalHandler", "ApprovalRequest", "ApprovalStore", "Approvals", "fingerprint"]

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


@runtime_checkable
class ApprovalStore(Protocol):
    """Pending approval requests and granted approvals. Every method is safe from many threads.

    :meth:`consume` must be atomic: of many callers racing for one approval,
    exactly one gets it. A shared store that cannot be reached raises
    :class:`~agentauthz.errors.StateStoreUnavailable`.
    """

    ttl: float

    def request(self, *, principal: str, tool: str, action: str, resource: str,
                arguments: Mapping[str, Any], reasons: tuple[Reason, ...], fingerprint: str,
                agents: tuple[str, ...] = ()) -> ApprovalRequest:
        """Record a pending request; returns it with a fresh id."""
        ...

    async def arequest(self, *, principal: str, tool: str, action: str, resource: str,
                       arguments: Mapping[str, Any], reasons: tuple[Reason, ...],
                       fingerprint: str, agents: tuple[str, ...] = ()) -> ApprovalRequest:
        ...

    def pending(self) -> list[ApprovalRequest]:
        """Every pending request, oldest first."""
        ...

    def approve(self, request_id: str, *, approver: str, ttl: float | None = None
                ) -> ApprovalRequest:
        """Approve one pending request: that exact request may run once within ``ttl``."""
        ...

    def deny(self, request_id: str, *, approver: str) -> ApprovalRequest:
        ...

    def consume(self, fingerprint: str) -> Reason | None:
        """Use up the approval for exactly this request, if one is live (atomically)."""
        ...

    async def aconsume(self, fingerprint: str) -> Reason | None:
        ...

    def grant_now(self, req: ApprovalRequest, approver: str) -> Reason:
        """An approval given synchronously by a handler: used at once, never stored."""
        ...

    def drop(self, request_id: str) -> None:
        ...

    def wait_for(self, request: ApprovalRequest, *, timeout: float) -> bool | str:
        """The approver once ``request`` is approved elsewhere (used up); ``False`` otherwise."""
        ...

    async def await_for(self, request: ApprovalRequest, *, timeout: float) -> bool | str:
        ...


def approval_life(req: ApprovalRequest, approver: str, ttl: float | None, max_ttl: float
                  ) -> float:
    """How long an approval of ``req`` by ``approver`` lasts; raises if it may not be given."""
    if approver == req.principal or approver in req.agents:
        raise InvalidInputError("an agent cannot approve its own request: a person must")
    life = max_ttl if ttl is None else ttl
    if not 0 < life <= max_ttl:
        raise InvalidInputError(f"an approval lasts between 0 and {max_ttl:g} seconds")
    return life


_POLL_FIRST: Final = 0.02
_POLL_MAX: Final = 0.5


@dataclass(slots=True)
class _Grant:
    approver: str
    expires_at: float
    request: ApprovalRequest


class Approvals:
    """Pending approval requests and the approvals granted for them, in memory.

    The in-process :class:`ApprovalStore`.
    """

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
        req = self._new_request(principal, tool, action, resource, arguments, reasons,
                                fingerprint, agents)
        with self._lock:
            if len(self._pending) >= MAX_PENDING:
                oldest = min(self._pending.values(), key=lambda r: r.created_at)
                del self._pending[oldest.id]
            self._pending[req.id] = req
        log.info("approval requested %s: %s", req.id, req.summary)
        return req

    def _new_request(self, principal: str, tool: str, action: str, resource: str,
                     arguments: Mapping[str, Any], reasons: tuple[Reason, ...], fingerprint: str,
                     agents: tuple[str, ...]) -> ApprovalRequest:
        return ApprovalRequest(f"apr-{secrets.token_hex(8)}", principal, tool, action, resource,
                               dict(arguments), reasons, fingerprint, self._clock(), agents)

    async def arequest(self, *, principal: str, tool: str, action: str, resource: str,
                       arguments: Mapping[str, Any], reasons: tuple[Reason, ...],
                       fingerprint: str, agents: tuple[str, ...] = ()) -> ApprovalRequest:
        return self.request(principal=principal, tool=tool, action=action, resource=resource,
                            arguments=arguments, reasons=reasons, fingerprint=fingerprint,
                            agents=agents)

    def pending(self) -> list[ApprovalRequest]:
        return sorted(self._pending.values(), key=lambda r: r.created_at)

    def approve(self, request_id: str, *, approver: str, ttl: float | None = None
                ) -> ApprovalRequest:
        """Approve one pending request: that exact request may run once within ``ttl``."""
        parse_entity_key(approver, what="approver")
        with self._lock:
            req = self._pending.get(request_id)
            if req is None:
                raise InvalidInputError(f"no pending approval request {request_id!r}")
            life = approval_life(req, approver, ttl, self.ttl)
            del self._pending[request_id]
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

    async def aconsume(self, fingerprint: str) -> Reason | None:
        return self.consume(fingerprint)

    def grant_now(self, req: ApprovalRequest, approver: str) -> Reason:
        """An approval given synchronously by a handler: used at once, never stored."""
        with self._lock:
            self._pending.pop(req.id, None)
        log.warning("approval granted %s by %s: %s", req.id, approver, req.summary)
        return Reason("approved", f"approved by {approver} (request {req.id})", req.id)

    def drop(self, request_id: str) -> None:
        with self._lock:
            self._pending.pop(request_id, None)

    def wait_for(self, request: ApprovalRequest, *, timeout: float) -> bool | str:
        """Wait until a person approves ``request`` elsewhere (e.g. ``approve`` from an admin UI).

        For an approval handler: returns the approver, using the approval up,
        or ``False`` once the request is denied, dropped, expired or
        ``timeout`` seconds have passed.
        """
        deadline = time.monotonic() + timeout
        pause = _POLL_FIRST
        while True:
            answer = self._settled(request)
            if answer is not None:
                return answer
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(pause, left))
            pause = min(pause * 2, _POLL_MAX)

    async def await_for(self, request: ApprovalRequest, *, timeout: float) -> bool | str:
        """:meth:`wait_for` for asyncio."""
        deadline = time.monotonic() + timeout
        pause = _POLL_FIRST
        while True:
            answer = await self._asettled(request)
            if answer is not None:
                return answer
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, _POLL_MAX)

    def _settled(self, request: ApprovalRequest) -> bool | str | None:
        """The approver (approval used up), ``False`` (no longer pending), or ``None`` (pending)."""
        with self._lock:
            grant = self._granted.get(request.fingerprint)
            if grant is not None and grant.request.id == request.id:
                del self._granted[request.fingerprint]
                return grant.approver if grant.expires_at > self._clock() else False
            return None if request.id in self._pending else False

    async def _asettled(self, request: ApprovalRequest) -> bool | str | None:
        return self._settled(request)
