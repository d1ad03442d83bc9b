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
  writes them in Redis itself, atomically (a ledger step is recorded in a
  ``WATCH``/``MULTI``/``EXEC`` transaction, retried when another worker
  wrote the same ledger meanwhile; an approval is used up by ``GETDEL``).

Every entry that has an expiry carries it as a Redis TTL: a revoked
credential's entry lives as long as the credential could, a break-glass
grant until it ends, a task's ledger until its credential expires (a
minute's grace for clock skew), an approval for its ``ttl``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final

from redis.exceptions import RedisError, WatchError

from agentauthz.agents.approvals import ApprovalRequest, Approvals, approval_life
from agentauthz.agents.breakglass import BreakGlass, BreakGlassGrant
from agentauthz.agents.chains import MAX_STEPS, Decide, Step, Summary
from agentauthz.agents.revocation import MemoryRevocationStore, Revocation, RevocationKind
from agentauthz.errors import InvalidInputError, StateStoreUnavailable
from agentauthz.model import Reason, parse_entity_key
from agentauthz.scale import codec

if TYPE_CHECKING:
    from agentauthz.scale.state import RedisState

__all__ = ["RedisApprovals", "RedisBreakGlass", "RedisLedgers", "RedisRevocationStore"]

log = logging.getLogger("agentauthz.scale")

_GRACE: Final = 60.0
_ATTEMPTS: Final = 100


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

    def revoke(self, kind: RevocationKind, id: str, *, reason: str = "",
               until: float | None = None) -> Revocation:
        entry = self._new(kind, id, reason, until)
        data = codec.revocation_to(entry)
        self._state._put(self._state.key(f"rev:{kind}:{id}"), "rev", data, data, until)
        return entry

    def revoked(self, kind: RevocationKind, ids: Iterable[str]) -> Revocation | None:
        if not self._state.ready():
            for id in ids:
                return Revocation(kind, id, "the shared revocation store cannot be vouched for "
                                  "(state_store_unavailable)", self._clock())
            return None
        return MemoryRevocationStore.revoked(self, kind, ids)


# ------------------------------------------------------------------- ledgers
class RedisLedgers:
    """Each task's ledger in Redis: its summary (one JSON value) and its steps (a list).

    :meth:`record` reads the summary under ``WATCH``, lets the guard decide,
    and writes the summary and the step in one ``MULTI``/``EXEC``; when
    another worker recorded a step in between, the transaction fails and the
    guard decides again on the new summary (at most 100 times, with jittered
    backoff). So N workers racing cannot exceed a budget.
    """

    def __init__(self, state: RedisState) -> None:
        self._state = state

    def _keys(self, key: str) -> tuple[str, str]:
        base = self._state.key(f"ledger:{key}")
        return f"{base}:sum", f"{base}:steps"

    def _expiry(self, expires_at: float | None) -> dict[str, int]:
        if expires_at is not None:
            return {"pxat": int((expires_at + _GRACE) * 1000)}
        return {"px": int(self._state.ledger_ttl * 1000)}

    def record(self, key: str, decide: Decide, *, expires_at: float | None = None
               ) -> Step | None:
        sum_key, steps_key = self._keys(key)
        expiry = self._expiry(expires_at)
        client = self._state.client
        for attempt in range(_ATTEMPTS):
            try:
                with client.pipeline(transaction=True) as pipe:
                    pipe.watch(sum_key)  # type: ignore[no-untyped-call]
                    summary = codec.summary_from(pipe.get(sum_key))
                    step = decide(summary)
                    if step is None:
                        return None
                    _append(pipe, summary, step, sum_key, steps_key, expiry)
                    pipe.execute()
                    return step
            except WatchError:
                time.sleep(_jitter(attempt))
            except RedisError as exc:
                raise self._state.unreachable(exc, "the task's ledger") from exc
        raise _contended(key)

    async def arecord(self, key: str, decide: Decide, *, expires_at: float | None = None
                      ) -> Step | None:
        sum_key, steps_key = self._keys(key)
        expiry = self._expiry(expires_at)
        client = await self._state.aclient()
        for attempt in range(_ATTEMPTS):
            try:
                async with client.pipeline(transaction=True) as pipe:
                    await pipe.watch(sum_key)
                    summary = codec.summary_from(await pipe.get(sum_key))
                    step = decide(summary)
                    if step is None:
                        return None
                    _append(pipe, summary, step, sum_key, steps_key, expiry)
                    await pipe.execute()
                    return step
            except WatchError:
                await asyncio.sleep(_jitter(attempt))
            except RedisError as exc:
                raise self._state.unreachable(exc, "the task's ledger") from exc
        raise _contended(key)

    def add_labels(self, key: str, step: Step, labels: frozenset[str]) -> Step:
        sum_key, steps_key = self._keys(key)
        client = self._state.client
        for attempt in range(_ATTEMPTS):
            try:
                with client.pipeline(transaction=True) as pipe:
                    pipe.watch(sum_key)  # type: ignore[no-untyped-call]
                    raw = pipe.get(sum_key)
                    if raw is None:  # the ledger expired with its task: nothing to label
                        return step
                    summary = codec.summary_from(raw)
                    updated = _relabel(pipe, summary, step, labels, sum_key, steps_key)
                    pipe.execute()
                    return updated
            except WatchError:
                time.sleep(_jitter(attempt))
            except RedisError as exc:
                raise self._state.unreachable(exc, "the task's ledger") from exc
        raise _contended(key)

    async def aadd_labels(self, key: str, step: Step, labels: frozenset[str]) -> Step:
        sum_key, steps_key = self._keys(key)
        client = await self._state.aclient()
        for attempt in range(_ATTEMPTS):
            try:
                async with client.pipeline(transaction=True) as pipe:
                    await pipe.watch(sum_key)
                    raw = await pipe.get(sum_key)
                    if raw is None:
                        return step
                    summary = codec.summary_from(raw)
                    updated = _relabel(pipe, summary, step, labels, sum_key, steps_key)
                    await pipe.execute()
                    return updated
            except WatchError:
                await asyncio.sleep(_jitter(attempt))
            except RedisError as exc:
                raise self._state.unreachable(exc, "the task's ledger") from exc
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
            return codec.summary_from(self._state.client.get(self._keys(key)[0]))
        except RedisError as exc:
            raise self._state.unreachable(exc, "the task's ledger") from exc

    def drop(self, key: str) -> None:
        try:
            self._state.client.delete(*self._keys(key))
        except RedisError as exc:
            raise self._state.unreachable(exc, "the task's ledger") from exc


def _append(pipe: Any, summary: Summary, step: Step, sum_key: str, steps_key: str,
            expiry: dict[str, int]) -> None:
    summary.add(step)
    pipe.multi()
    pipe.set(sum_key, codec.summary_to(summary), **expiry)
    pipe.rpush(steps_key, codec.dumps(codec.step_to(step)))
    pipe.ltrim(steps_key, -MAX_STEPS, -1)
    if "pxat" in expiry:
        pipe.pexpireat(steps_key, expiry["pxat"])
    else:
        pipe.pexpire(steps_key, expiry["px"])


def _relabel(pipe: Any, summary: Summary, step: Step, labels: frozenset[str], sum_key: str,
             steps_key: str) -> Step:
    updated = Step(step.tool, step.action, step.resource, step.effect, step.labels | labels,
                   step.attributes, step.allowed, step.at, step.n)
    for label in labels:
        summary.labels.setdefault(label, updated)
    pipe.multi()
    pipe.set(sum_key, codec.summary_to(summary), keepttl=True)
    back = summary.count - step.n
    if step.n >= 0 and 0 < back <= MAX_STEPS:
        pipe.lset(steps_key, -back, codec.dumps(codec.step_to(updated)))
    return updated


def _jitter(attempt: int) -> float:
    return random.uniform(0, min(0.02, 0.0005 * (2 ** min(attempt, 6))))


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
