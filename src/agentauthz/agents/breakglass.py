"""Break-glass: narrow emergency grants with a reason, an approver and an expiry.

A grant opens exactly one (principal, action, resource) — no wildcards, no
types — for at most ``max_ttl`` seconds. It needs a written reason and an
approver who is not the principal itself. It is never standing: it expires
by itself, and :meth:`BreakGlass.revoke` ends it early. Every decision that
a grant turns into an allow says so in its reasons (kind ``break_glass``,
naming the grant, reason, approver and expiry), and every grant is logged at
WARNING on the ``agentauthz.breakglass`` logger when made, used and ended.

A break-glass grant is also the only thing that opens a tool call that is
hard-blocked for agents (privilege changes, token minting, credential
changes).

Grants live in memory here; a shared store (Redis, :mod:`agentauthz.scale`)
subclasses :class:`BreakGlass`, keeping this process's copy of every live
grant up to date so that :meth:`BreakGlass.match` never leaves the process.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from agentauthz.errors import InvalidInputError
from agentauthz.model import Reason, parse_entity_key

__all__ = ["BreakGlass", "BreakGlassGrant"]

log = logging.getLogger("agentauthz.breakglass")

DEFAULT_MAX_TTL: Final = 4 * 3600.0
_MIN_REASON: Final = 10


@dataclass(frozen=True, slots=True)
class BreakGlassGrant:
    """One emergency grant. ``reason()`` is the decision reason that cites it."""

    id: str
    principal: str
    action: str
    resource: str
    reason: str
    approver: str
    granted_at: float
    expires_at: float

    def as_reason(self) -> Reason:
        until = datetime.fromtimestamp(self.expires_at, UTC).isoformat(timespec="seconds")
        return Reason("break_glass", f"BREAK-GLASS grant {self.id} approved by {self.approver} "
                      f"until {until}: {self.reason}", self.id)


class BreakGlass:
    """The active break-glass grants of one authorizer."""

    def __init__(self, *, max_ttl: float = DEFAULT_MAX_TTL,
                 clock: Callable[[], float] = time.time,
                 on_change: Callable[[], None] | None = None) -> None:
        self.max_ttl = max_ttl
        self._clock = clock
        self._on_change = on_change
        self._grants: dict[tuple[str, str, str], BreakGlassGrant] = {}
        self._lock = threading.Lock()

    def grant(self, principal: str, action: str, resource: str, *, reason: str, approver: str,
              ttl: float) -> BreakGlassGrant:
        """Open one (principal, action, resource) for ``ttl`` seconds; every field is required."""
        for value, what in ((principal, "principal"), (resource, "resource")):
            _, id_ = parse_entity_key(value, what=f"break-glass {what}")
            if id_ == "*":
                raise InvalidInputError(f"a break-glass {what} must be one entity, not a wildcard")
        if "#" in principal:
            raise InvalidInputError("a break-glass principal must be one entity, not a userset")
        if type(action) is not str or not action or action == "*" or not action.isidentifier():
            raise InvalidInputError("a break-glass grant names one action (no '*')")
        if type(reason) is not str or len(reason.strip()) < _MIN_REASON:
            raise InvalidInputError(f"a break-glass grant needs a reason of at least {_MIN_REASON} "
                                    "characters: say what is broken and why this access fixes it")
        parse_entity_key(approver, what="break-glass approver")
        if approver == principal:
            raise InvalidInputError("a break-glass grant cannot be approved by its own principal")
        if not isinstance(ttl, int | float) or not 0 < ttl <= self.max_ttl:
            raise InvalidInputError(f"a break-glass ttl must be between 0 and {self.max_ttl:g} "
                                    "seconds: emergency access is never standing")
        now = self._clock()
        grant = BreakGlassGrant(f"bg-{secrets.token_hex(6)}", principal, action, resource,
                                reason.strip(), approver, now, now + float(ttl))
        self._save(grant)
        log.warning("BREAK-GLASS granted %s: %s may %s %s until %s, approved by %s: %s",
                    grant.id, principal, action, resource, grant.expires_at, approver, grant.reason)
        return grant

    def _save(self, grant: BreakGlassGrant) -> None:
        """Put a new grant in force (a shared store writes it for every process)."""
        self._put(grant)

    def _put(self, grant: BreakGlassGrant) -> None:
        with self._lock:
            self._grants[(grant.principal, grant.action, grant.resource)] = grant
        self._changed()

    def match(self, principal: str, action: str, resource: str) -> BreakGlassGrant | None:
        """The live grant for exactly this request, if any (logged: every use is loud)."""
        grant = self._grants.get((principal, action, resource))
        if grant is None:
            return None
        if grant.expires_at <= self._clock():
            self._drop(grant, "expired")
            return None
        log.warning("BREAK-GLASS used %s: %s %s %s", grant.id, principal, action, resource)
        return grant

    def active(self) -> list[BreakGlassGrant]:
        """Every grant still in force, oldest first."""
        now = self._clock()
        for grant in [g for g in list(self._grants.values()) if g.expires_at <= now]:
            self._drop(grant, "expired")
        return sorted(self._grants.values(), key=lambda g: g.granted_at)

    def revoke(self, grant_id: str) -> bool:
        """End a grant early; ``False`` if no live grant has that id."""
        for grant in list(self._grants.values()):
            if grant.id == grant_id:
                self._end(grant)
                return True
        return False

    def _end(self, grant: BreakGlassGrant) -> None:
        """End a grant early (a shared store ends it for every process)."""
        self._drop(grant, "revoked")

    def _replace(self, grants: Iterable[BreakGlassGrant]) -> None:
        """Hold exactly ``grants`` (a shared store's copy, after resynchronising)."""
        with self._lock:
            self._grants = {(g.principal, g.action, g.resource): g for g in grants}
        self._changed()

    def __bool__(self) -> bool:
        return bool(self._grants)

    def _drop(self, grant: BreakGlassGrant, why: str) -> None:
        with self._lock:
            if self._grants.get((grant.principal, grant.action, grant.resource)) is grant:
                del self._grants[(grant.principal, grant.action, grant.resource)]
            else:
                return
        log.warning("BREAK-GLASS %s %s", grant.id, why)
        self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()
