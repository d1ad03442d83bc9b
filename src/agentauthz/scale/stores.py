"""The agent layer's stores on Redis: revocations, ledgers, approvals, break-glass grants.

Each implements the protocol its in-memory twin does
(:class:`~agentauthz.agents.RevocationStore`,
:class:`~agentauthz.agents.chains.LedgerStore`,
:class:`~agentauthz.agents.approvals.ApprovalStore`, and
:class:`~agentauthz.agents.BreakGlass` by subclassing), so the agent layer
cannot tell them apart. Two kinds:

- **read on every decision** — revocations and break-glass grants: Redis
  holds them, every write goes out on the change feed, and each process
  decides on its own copy, so a decision never waits on the network. A
  write returns once this process's copy holds it.
- **read where they are used** — ledgers and approvals: the guard reads and
  writes them in Redis itself, atomically (a ledger step is recorded by a
  compare-and-set Lua script, decided again when another worker wrote the
  same ledger meanwhile; an approval is used up by ``GETDEL``).

Every entry that has an expiry carries it as a Redis TTL: a revoked
credential's entry lives as long as the credential could, a break-glass
grant until it ends, a task's ledger until its credential expires (a
minute's grace for clock skew), an approval for its ``ttl``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

from redis.exceptions import RedisError

from agentauthz.agents.approvals import ApprovalRequest, Approvals, approval_life
from agentauthz.agents.breakglass import BreakGlass, BreakGlassGrant
from agentauthz.agents.chains import MAX_STEPS, Decide, Step, Summary
from agentauthz.agents.revocation import (
    MemoryRevocationStore,
    Revocation,
    RevocationKind,
    first_revoked,
)
from agentauthz.errors import InvalidInputError, StateStoreUnavailable
from agentauthz.model import Reason, parse_entity_key
from agentauthz.scale import codec

if TYPE_CHECKING:
    from agentauthz.scale.state import RedisState

__all__ = ["RedisApprovals", "RedisBreakGlass", "RedisLedgers", "RedisRevocationStore"]

log = logging.getLogger("agentauthz.scale")

_monotonic = time.monotonic
_GRACE: Final = 60.0
_ATTEMPTS: Final = 100
_SEEN: Final = 10_000


# --------------------------------------------------------------- revocations
class RedisRevocationStore(MemoryRevocationStore):
    """Revocations in Redis (one key each, expiring at ``until``); read from this process's copy.

    While the copy cannot be vouched for (the feed is down or behind), every
    lookup answers "revoked": a revocation this process may have missed must
    not let a decision through.
    """

    def __init__(self, state: RedisState) -> None:
        super().__init__()
        self._state = state
        self._feed = state.feed

    def revoke(self, kind: RevocationKind, id: str, *, reason: str = "",
               until: float | None = None) -> Revocation:
        entry = self._new(kind, id, reason, until)
        data = codec.revocation_to(entry)
        self._state._put(self._state.key(f"rev:{kind}:{id}"), "rev", data, data, until)
        return entry

    def revoked(self, kind: RevocationKind, ids: Iterable[str]) -> Revocation | None:
        if _monotonic() >= self._feed.ok_until:  # every delegated check asks: kept inline
            for id in ids:
                return Revocation(kind, id, "the shared revocation store cannot be vouched for "
                                  "(state_store_unavailable)", self._clock())
            return None
        return first_revoked(self._entries, kind, ids)


# ------------------------------------------------------------------- ledgers
# Compare-and-set of one ledger: KEYS[1] = its summary (hash: v = version, s = summary JSON),
# KEYS[2] = its steps (list), KEYS[3] = whose turn it is; ARGV[1] = the version the caller
# decided on, ARGV[2] = the new version, ARGV[3] = the new summary ('' to record nothing: only
# confirm the version), ARGV[4] = the step (appended) or its replacement, ARGV[5] = where the
# replacement goes ('' to append; else a negative index), ARGV[6] = expiry (ms since the
# epoch, or a TTL in ms when negated; '' to keep), ARGV[7] = at most this many steps, ARGV[8]
# = the caller. Answers {1, version} when done; {0, version, summary} when the ledger moved on
# meanwhile: decide again on that — and it is the caller's turn next (for 50 ms), so that a
# worker that keeps winning cannot starve the others; {2} while it is another caller's turn.
_LEDGER: Final = """
local turn = redis.call('GET', KEYS[3])
if turn and turn ~= ARGV[8] then return {2} end
local v = redis.call('HGET', KEYS[1], 'v') or ''
if v ~= ARGV[1] then
  if not turn then redis.call('SET', KEYS[3], ARGV[8], 'PX', 50) end
  return {0, v, redis.call('HGET', KEYS[1], 's') or ''}
end
if turn then redis.call('DEL', KEYS[3]) end
if ARGV[3] == '' then return {1, v} end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 's', ARGV[3])
if ARGV[5] == '' then
  redis.call('RPUSH', KEYS[2], ARGV[4])
  redis.call('LTRIM', KEYS[2], -tonumber(ARGV[7]), -1)
else
  pcall(redis.call, 'LSET', KEYS[2], ARGV[5], ARGV[4])
end
local at = tonumber(ARGV[6])
if at ~= nil then
  for i = 1, 2 do
    if at > 0 then redis.call('PEXPIREAT', KEYS[i], at) else redis.call('PEXPIRE', KEYS[i], -at) end
  end
end
return {1, ARGV[2]}
"""
_NEVER_SEEN: Final = ("?", Summary())  # a version no ledger has: the first attempt fetches it


class RedisLedgers:
    """Each task's ledger in Redis: its summary and version (a hash) and its steps (a list).

    :meth:`record` decides on the summary this process last saw and sends
    the step with the version it decided on; one Lua script appends it only
    if the ledger is still at that version (compare-and-set), else answers
    the current summary and the guard decides again (at most 100 times, with
    jittered backoff after the first). So N
    workers racing cannot exceed a budget, and a worker that keeps calling
    one task's tools pays one round trip per call. A decision that records
    nothing (a denial) is confirmed the same way: it was made on the
    ledger's current state. A worker that lost a race has the next turn (for
    50 ms at most), so one that keeps winning cannot starve the others.
    """

    def __init__(self, state: RedisState) -> None:
        self._state = state
        self._seen: OrderedDict[str, tuple[str, Summary]] = OrderedDict()
        """Per ledger: the version and summary this process last saw (never mutated)."""

    def _keys(self, key: str) -> list[str]:
        base = self._state.key(f"ledger:{key}")
        return [f"{base}:sum", f"{base}:steps", f"{base}:turn"]

    def _expiry(self, expires_at: float | None) -> str:
        if expires_at is not None:
            return str(int((expires_at + _GRACE) * 1000))
        return str(-int(self._state.ledger_ttl * 1000))

    def _remember(self, key: str, version: str, summary: Summary) -> None:
        seen = self._seen
        seen[key] = (version, summary)
        seen.move_to_end(key)
        if len(seen) > _SEEN:
            seen.popitem(last=False)

    def _attempt(self, key: str, decide: Decide
                 ) -> tuple[list[str], Step | None, Summary | None]:
        """Decide on what this process last saw: the script's arguments, the step, the summary."""
        version, summary = self._seen.get(key, _NEVER_SEEN)
        step = decide(summary)
        if step is None:
            return [version, "", "", "", "", "", "", ""], None, None
        after = summary.copy()
        after.add(step)
        return [version, secrets.token_hex(8), codec.summary_to(after),
                codec.dumps(codec.step_to(step)), "", "", str(MAX_STEPS), ""], step, after

    def _settled(self, key: str, args: list[str], after: Summary | None, answer: Any) -> bool:
        """Whether the script took the attempt; if not, remember the ledger it answered."""
        done = int(answer[0])
        if done == 1:
            if after is not None:
                self._remember(key, args[1], after)
            return True
        if done == 0:
            self._remember(key, str(answer[1]), codec.summary_from(answer[2] or None))
        return False

    def record(self, key: str, decide: Decide, *, expires_at: float | None = None
               ) -> Step | None:
        keys = self._keys(key)
        expiry = self._expiry(expires_at)
        caller = secrets.token_hex(8)
        for attempt in range(_ATTEMPTS):
            args, step, after = self._attempt(key, decide)
            args[5] = expiry if step is not None else ""
            args[7] = caller
            if self._settled(key, args, after, self._state._ledger(keys, args)):
                return step
            time.sleep(_backoff(attempt))
        raise _contended(key)

    async def arecord(self, key: str, decide: Decide, *, expires_at: float | None = None
                      ) -> Step | None:
        keys = self._keys(key)
        expiry = self._expiry(expires_at)
        caller = secrets.token_hex(8)
        for attempt in range(_ATTEMPTS):
            args, step, after = self._attempt(key, decide)
            args[5] = expiry if step is not None else ""
            args[7] = caller
            if self._settled(key, args, after, await self._state._aledger(keys, args)):
                return step
            await asyncio.sleep(_backoff(attempt))
        raise _contended(key)

    def _relabel(self, key: str, step: Step, labels: frozenset[str]
                 ) -> tuple[list[str], Step, Summary] | None:
        version, summary = self._seen.get(key, _NEVER_SEEN)
        if version == "":
            return None  # the ledger expired with its task: nothing to label
        after = summary.copy()
        updated = Step(step.tool, step.action, step.resource, step.effect, step.labels | labels,
                       step.attributes, step.allowed, step.at, step.n)
        for label in labels:
            after.labels.setdefault(label, updated)
        back = after.count - step.n
        # a step already dropped from the list (or never numbered): the summary still learns;
        # an index out of range makes LSET fail, harmlessly
        where = -back if step.n >= 0 and 0 < back <= MAX_STEPS else -(MAX_STEPS + 1)
        return [version, secrets.token_hex(8), codec.summary_to(after),
                codec.dumps(codec.step_to(updated)), str(where), "", str(MAX_STEPS), ""], \
            updated, after

    def add_labels(self, key: str, step: Step, labels: frozenset[str]) -> Step:
        keys = self._keys(key)
        caller = secrets.token_hex(8)
        for n in range(_ATTEMPTS):
            attempt = self._relabel(key, step, labels)
            if attempt is None:
                return step
            args, updated, after = attempt
            args[7] = caller
            if self._settled(key, args, after, self._state._ledger(keys, args)):
                return updated
            time.sleep(_backoff(n))
        raise _contended(key)

    async def aadd_labels(self, key: str, step: Step, labels: frozenset[str]) -> Step:
        keys = self._keys(key)
        caller = secrets.token_hex(8)
        for n in range(_ATTEMPTS):
            attempt = self._relabel(key, step, labels)
            if attempt is None:
                return step
            args, updated, after = attempt
            args[7] = caller
            if self._settled(key, args, after, await self._state._aledger(keys, args)):
                return updated
            await asyncio.sleep(_backoff(n))
        raise _contended(key)

    def steps(self, key: str) -> tuple[Step, ...]:
        try:
            raw = self._state.client.lrange(self._keys(key)[1], 0, -1)
        except RedisError as exc:
            raise self._state.unreachable(exc, "the task's ledger") from exc
        return tuple(codec.step_from(codec.loads(s)) for s in raw)

    def summary(self, key: str) -> Summary:
        """What the task has done so far (empty for a ledger never written, or expired)."""
        try:
            raw = self._state.client.hget(self._keys(key)[0], "s")
        except RedisError as exc:
            raise self._state.unreachable(exc, "the task's ledger") from exc
        return codec.summary_from(raw)

    def drop(self, key: str) -> None:
        self._seen.pop(key, None)
        try:
            self._state.client.delete(*self._keys(key))
        except RedisError as exc:
            raise self._state.unreachable(exc, "the task's ledger") from exc


def _backoff(attempt: int) -> float:
    """How long to wait before deciding again: none at first (the answer brought the news, and
    the turn), then a little, jittered, while another worker has its turn."""
    if attempt == 0:
        return 0.0
    return random.uniform(0, min(0.005, 0.0001 * 2 ** min(attempt, 6)))


def _contended(key: str) -> StateStoreUnavailable:
    return StateStoreUnavailable(f"could not record a step of ledger {key!r}: {_ATTEMPTS} "
                                 "attempts lost to concurrent writers")


# ----------------------------------------------------------------- approvals
_APPROVE: Final = """
if redis.call('DEL', KEYS[1]) == 1 then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

_SETTLED: Final = """
local granted = redis.call('GET', KEYS[1])
if granted then
  local ok, grant = pcall(cjson.decode, granted)
  if ok and grant['request']['id'] == ARGV[1] then
    redis.call('DEL', KEYS[1])
    return granted
  end
end
return redis.call('EXISTS', KEYS[2])
"""


class RedisApprovals(Approvals):
    """Pending requests and granted approvals in Redis, so an approval reaches any worker.

    A pending request lives ``pending_ttl`` seconds; an approval ``ttl``
    seconds (at most :attr:`ttl`). Using an approval up is one ``GETDEL``:
    of any number of workers racing for it, one gets it.
    """

    def __init__(self, state: RedisState) -> None:
        super().__init__()
        self._state = state
        self._approve = state.client.register_script(_APPROVE)
        self._settle = state.client.register_script(_SETTLED)

    def _pending_key(self, request_id: str) -> str:
        return self._state.key(f"apr:pending:{request_id}")

    def _granted_key(self, fingerprint: str) -> str:
        return self._state.key(f"apr:granted:{fingerprint}")

    def _failed(self, exc: RedisError) -> StateStoreUnavailable:
        return self._state.unreachable(exc, "approvals")

    def request(self, *, principal: str, tool: str, action: str, resource: str,
                arguments: Any, reasons: tuple[Reason, ...], fingerprint: str,
                agents: tuple[str, ...] = ()) -> ApprovalRequest:
        req = self._new_request(principal, tool, action, resource, arguments, reasons,
                                fingerprint, agents)
        try:
            self._state.client.set(self._pending_key(req.id), codec.dumps(codec.request_to(req)),
                                   px=int(self._state.pending_ttl * 1000))
        except RedisError as exc:
            raise self._failed(exc) from exc
        log.info("approval requested %s: %s", req.id, req.summary)
        return req

    async def arequest(self, *, principal: str, tool: str, action: str, resource: str,
                       arguments: Any, reasons: tuple[Reason, ...], fingerprint: str,
                       agents: tuple[str, ...] = ()) -> ApprovalRequest:
        req = self._new_request(principal, tool, action, resource, arguments, reasons,
                                fingerprint, agents)
        try:
            client = await self._state.aclient()
            await client.set(self._pending_key(req.id), codec.dumps(codec.request_to(req)),
                             px=int(self._state.pending_ttl * 1000))
        except RedisError as exc:
            raise self._failed(exc) from exc
        log.info("approval requested %s: %s", req.id, req.summary)
        return req

    def pending(self) -> list[ApprovalRequest]:
        client = self._state.client
        try:
            keys = list(client.scan_iter(match=self._pending_key("*"), count=1000))
            values = client.mget(keys) if keys else []
        except RedisError as exc:
            raise self._failed(exc) from exc
        found = [codec.request_from(codec.loads(v)) for v in values if v is not None]
        return sorted(found, key=lambda r: r.created_at)

    def _get(self, request_id: str) -> ApprovalRequest:
        if type(request_id) is not str or not request_id:
            raise InvalidInputError("an approval request id is a non-empty string")
        try:
            raw = self._state.client.get(self._pending_key(request_id))
        except RedisError as exc:
            raise self._failed(exc) from exc
        if raw is None:
            raise InvalidInputError(f"no pending approval request {request_id!r}")
        return codec.request_from(codec.loads(raw))

    def approve(self, request_id: str, *, approver: str, ttl: float | None = None
                ) -> ApprovalRequest:
        parse_entity_key(approver, what="approver")
        req = self._get(request_id)
        life = approval_life(req, approver, ttl, self.ttl)
        grant = {"approver": approver, "expires_at": self._clock() + life,
                 "request": codec.request_to(req)}
        try:
            moved = self._approve(keys=[self._pending_key(req.id), self._granted_key(req.fingerprint)],
                                  args=[codec.dumps(grant), int(life * 1000)])
        except RedisError as exc:
            raise self._failed(exc) from exc
        if not moved:
            raise InvalidInputError(f"no pending approval request {request_id!r} (answered "
                                    "meanwhile)")
        log.warning("approval granted %s by %s: %s", req.id, approver, req.summary)
        return req

    def deny(self, request_id: str, *, approver: str) -> ApprovalRequest:
        try:
            raw = self._state.client.getdel(self._pending_key(request_id))
        except RedisError as exc:
            raise self._failed(exc) from exc
        if raw is None:
            raise InvalidInputError(f"no pending approval request {request_id!r}")
        req = codec.request_from(codec.loads(raw))
        log.info("approval denied %s by %s", req.id, approver)
        return req

    def consume(self, fingerprint: str) -> Reason | None:
        try:
            raw = self._state.client.getdel(self._granted_key(fingerprint))
        except RedisError as exc:
            raise self._failed(exc) from exc
        return self._used(raw)

    async def aconsume(self, fingerprint: str) -> Reason | None:
        try:
            client = await self._state.aclient()
            raw = await client.getdel(self._granted_key(fingerprint))
        except RedisError as exc:
            raise self._failed(exc) from exc
        return self._used(raw)

    def _used(self, raw: str | bytes | None) -> Reason | None:
        if raw is None:
            return None
        grant = codec.loads(raw)
        if grant["expires_at"] <= self._clock():
            return None
        request_id = grant["request"]["id"]
        return Reason("approved", f"approved by {grant['approver']} (request {request_id})",
                      request_id)

    def grant_now(self, req: ApprovalRequest, approver: str) -> Reason:
        self.drop(req.id)
        log.warning("approval granted %s by %s: %s", req.id, approver, req.summary)
        return Reason("approved", f"approved by {approver} (request {req.id})", req.id)

    def drop(self, request_id: str) -> None:
        try:
            self._state.client.delete(self._pending_key(request_id))
        except RedisError as exc:
            raise self._failed(exc) from exc

    def _settled(self, request: ApprovalRequest) -> bool | str | None:
        try:
            answer = self._settle(keys=[self._granted_key(request.fingerprint),
                                        self._pending_key(request.id)], args=[request.id])
        except RedisError as exc:
            raise self._failed(exc) from exc
        return self._answer(answer)

    async def _asettled(self, request: ApprovalRequest) -> bool | str | None:
        try:
            client = await self._state.aclient()
            answer = await client.eval(_SETTLED, 2, self._granted_key(request.fingerprint),
                                       self._pending_key(request.id), request.id)
        except RedisError as exc:
            raise self._failed(exc) from exc
        return self._answer(answer)

    def _answer(self, answer: Any) -> bool | str | None:
        if isinstance(answer, str):
            grant = codec.loads(answer)
            return grant["approver"] if grant["expires_at"] > self._clock() else False
        return None if answer == 1 else False


# ---------------------------------------------------------------- break-glass
class RedisBreakGlass(BreakGlass):
    """Break-glass grants in Redis (one key each, expiring with the grant); matched locally."""

    def __init__(self, state: RedisState, **options: Any) -> None:
        super().__init__(**options)
        self._state = state

    def _save(self, grant: BreakGlassGrant) -> None:
        data = codec.grant_to(grant)
        self._state._put(self._state.key(f"bg:{grant.id}"), "bg+", data, data, grant.expires_at)

    def _end(self, grant: BreakGlassGrant) -> None:
        self._state._delete(self._state.key(f"bg:{grant.id}"), "bg-", codec.grant_to(grant))

    def match(self, principal: str, action: str, resource: str) -> BreakGlassGrant | None:
        if not self._state.ready():  # a grant ended elsewhere may still be in this copy
            return None
        return super().match(principal, action, resource)

    def _forget(self, grant_id: str) -> None:
        """Drop a grant another worker ended (from the feed)."""
        for grant in list(self._grants.values()):
            if grant.id == grant_id:
                self._drop(grant, "revoked")
