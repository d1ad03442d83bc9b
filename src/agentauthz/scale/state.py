"""One Redis namespace shared by every worker of a deployment: stores and change feed.

``Authorizer(policy, state=RedisState("redis://...", namespace="prod"))``
gives the authorizer Redis-backed revocations, task ledgers, approvals and
break-glass grants, and keeps its relationships, attributes and policy in
step with every other worker through the change feed
(:mod:`agentauthz.scale.feed`). Keys, all under ``agentauthz:{<namespace>}:``
(one hash slot per namespace)::

    seq, feed               the feed's counter and stream (capped at feed_length entries)
    rels                    set of relationships, each the JSON [resource, relation, subject]
    attrs                   hash: entity -> JSON attributes
    policy                  the last policy reloaded by any worker (JSON definition)
    seeded                  set once the first worker has loaded its data=
    rev:<kind>:<id>         a revocation, expiring at its ``until``
    bg:<grant id>           a break-glass grant, expiring with it
    ledger:<key>:sum|steps|turn  a task's ledger: summary and version, steps, whose turn it is
    apr:pending:<id>        an approval request (pending_ttl)
    apr:granted:<hash>      an approval, until used or expired

Relationships travel on the feed themselves: each worker holds all of them
in its own :class:`~agentauthz.engine.MemoryStore` and decides locally, so a
check costs what it costs in memory. ``rels`` and ``attrs`` are the
snapshot a worker starts from (and resynchronises from). With a remote
backend (OPA, Oso Cloud, an AuthZEN PDP) the backend holds relationships;
the feed then carries only invalidations.

Failure, deny on doubt: Redis unreachable when the authorizer is built raises
:class:`~agentauthz.errors.ConfigurationError`; later, writes raise
:class:`~agentauthz.errors.StateStoreUnavailable` (nothing acknowledged),
decisions deny with reason ``state_store_unavailable`` until the feed has
resynchronised, and everything recovers by itself when Redis is back.
Acknowledged writes survive a Redis restart only if Redis persists them: run
it with ``appendonly yes`` (and ``appendfsync always`` to lose nothing).
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from agentauthz.agents.breakglass import BreakGlass
from agentauthz.engine.store import MemoryStore, RelationTuple
from agentauthz.errors import ConfigurationError, InvalidInputError, StateStoreUnavailable
from agentauthz.model import Reason
from agentauthz.scale import codec
from agentauthz.scale.base import Replica
from agentauthz.scale.feed import Feed
from agentauthz.scale.stores import (
    _LEDGER,
    RedisApprovals,
    RedisBreakGlass,
    RedisLedgers,
    RedisRevocationStore,
)

__all__ = ["RedisState"]

log = logging.getLogger("agentauthz.scale")

_NAMESPACE: Final = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_CHUNK: Final = 2000
"""Relationship changes per script call (and feed entry): bounds one entry's size."""

# Every script takes KEYS[1] = seq, KEYS[2] = feed, ARGV[1] = feed length, ARGV[2] = the
# entry's kind, ARGV[3] = its data; the change and its entry happen together or not at all.
_EMIT: Final = """
local function emit()
  local seq = redis.call('INCR', KEYS[1])
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', 's', seq, 'k', ARGV[2], 'd', ARGV[3])
  return seq
end
"""
_RELATIONSHIPS: Final = _EMIT + """
local changed = 0
local removes = tonumber(ARGV[4])
for i = 5, 4 + removes do changed = changed + redis.call('SREM', KEYS[3], ARGV[i]) end
for i = 5 + removes, #ARGV do changed = changed + redis.call('SADD', KEYS[3], ARGV[i]) end
if changed == 0 then return {0, 0} end
return {changed, emit()}
"""
_ATTRIBUTES: Final = _EMIT + """
for i = 4, #ARGV, 2 do
  if ARGV[i + 1] == '' then redis.call('HDEL', KEYS[3], ARGV[i])
  else redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1]) end
end
return emit()
"""
_PUT: Final = _EMIT + """
if ARGV[5] == '0' then redis.call('SET', KEYS[3], ARGV[4])
else redis.call('SET', KEYS[3], ARGV[4], 'PXAT', ARGV[5]) end
return emit()
"""
_DELETE: Final = _EMIT + """
if redis.call('DEL', KEYS[3]) == 0 then return 0 end
return emit()
"""
_ONLY_EMIT: Final = _EMIT + "return emit()\n"


def _redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))


class RedisState:
    """Revocations, ledgers, approvals, break-glass grants and the change feed, on Redis.

    ``url``: a ``redis://`` / ``rediss://`` / ``unix://`` URL (redis-py's
    syntax). ``namespace``: one deployment's keys (letters, digits, ``_.-``);
    workers that share it share everything. ``timeout``: seconds a Redis
    command may take before the decision that needed it denies.
    ``max_silence``: seconds the feed may go without hearing from Redis
    before this process stops vouching for its copies (bounds how stale a
    decision can be when the network fails silently). ``ledger_ttl``: how
    long the ledger of calls made outside a task is kept after its last step.
    ``pending_ttl``: how long an approval request waits. ``feed_length``:
    entries kept in the stream (a worker further behind resynchronises).
    ``echo_timeout``: how long a write waits for this process's copy to hold
    it before giving up on the copy (and resynchronising).

    One state serves one :class:`~agentauthz.Authorizer`; make one per
    authorizer (and per process: build it after forking).
    """

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", *, namespace: str = "default",
                 timeout: float = 1.0, max_silence: float = 1.0, ledger_ttl: float = 86_400.0,
                 pending_ttl: float = 86_400.0, feed_length: int = 10_000,
                 echo_timeout: float = 5.0) -> None:
        if type(namespace) is not str or not _NAMESPACE.fullmatch(namespace):
            raise ConfigurationError(f"RedisState(namespace={namespace!r}): use 1 to 64 letters, "
                                     "digits, '_', '.' or '-'")
        for value, name in ((timeout, "timeout"), (max_silence, "max_silence"),
                            (ledger_ttl, "ledger_ttl"), (pending_ttl, "pending_ttl"),
                            (echo_timeout, "echo_timeout")):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ConfigurationError(f"RedisState({name}=...) must be a positive number of "
                                         f"seconds, got {value!r}")
        if type(feed_length) is not int or feed_length < 100:
            raise ConfigurationError("RedisState(feed_length=...) must be an integer >= 100")
        self.url = url
        self.namespace = namespace
        self.timeout = float(timeout)
        self.ledger_ttl = float(ledger_ttl)
        self.pending_ttl = float(pending_ttl)
        self.echo_timeout = float(echo_timeout)
        self._feed_length = feed_length
        self._prefix = f"agentauthz:{{{namespace}}}:"
        options: dict[str, Any] = {"socket_timeout": self.timeout,
                                   "socket_connect_timeout": self.timeout,
                                   "decode_responses": True}
        try:
            self.client: redis.Redis = redis.Redis.from_url(
                url, retry=Retry(NoBackoff(), 1), client_name=f"agentauthz:{namespace}", **options)
            block = min(0.25, max_silence / 4)
            listener = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0),
                                            client_name=f"agentauthz-feed:{namespace}", **{
                                                **options, "socket_timeout": block + self.timeout})
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"RedisState(url={_redacted(url)!r}) is not a Redis URL "
                                     f"({exc}); e.g. redis://127.0.0.1:6379/0") from None
        self._options = options
        self._aclients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[Any, AsyncIterator[None], Any]] = \
            weakref.WeakKeyDictionary()
        self._aclients_lock = threading.Lock()
        self._scripts = {name: self.client.register_script(text) for name, text in (
            ("rel", _RELATIONSHIPS), ("attrs", _ATTRIBUTES), ("put", _PUT),
            ("delete", _DELETE), ("emit", _ONLY_EMIT), ("ledger", _LEDGER))}
        self._feed = Feed(listener, self.key("seq"), self.key("feed"), self, block=block,
                          max_silence=max_silence)
        self._listener = listener
        self._replica: Replica | None = None
        self._fleet_policy: str | None = None
        self.revocations = RedisRevocationStore(self)
        """Revocations, shared (a :class:`~agentauthz.agents.RevocationStore`)."""
        self.ledgers = RedisLedgers(self)
        """Task ledgers, shared (a :class:`~agentauthz.agents.chains.LedgerStore`)."""
        self.approvals = RedisApprovals(self)
        """Approval requests and approvals, shared (an :class:`~agentauthz.agents.ApprovalStore`)."""
        self._breakglass: RedisBreakGlass | None = None
        self.ready: Callable[[], bool] = self._feed.ready
        """Whether this process's copies are known to be current."""

    def __repr__(self) -> str:
        return f"RedisState({_redacted(self.url)!r}, namespace={self.namespace!r})"

    def key(self, suffix: str) -> str:
        """The Redis key of ``suffix`` in this namespace."""
        return self._prefix + suffix

    @property
    def feed(self) -> Feed:
        """The change feed this process follows."""
        return self._feed

    def breakglass(self, *, on_change: Callable[[], None]) -> BreakGlass:
        if self._breakglass is None:
            self._breakglass = RedisBreakGlass(self, on_change=on_change)
        return self._breakglass

    # ------------------------------------------------------------ lifecycle
    def bind(self, replica: Replica) -> None:
        if self._replica is not None:
            raise ConfigurationError("this RedisState already serves an Authorizer; make one "
                                     "RedisState per Authorizer")
        self._replica = replica
        where = _redacted(self.url)
        try:
            version = str(self.client.info("server").get("redis_version", "0"))
            if tuple(int(x) for x in version.split(".")[:2]) < (6, 2):
                raise ConfigurationError(f"Redis at {where} is version {version}; agentauthz "
                                         "needs 6.2 or later (GETDEL, SET PXAT)")
            self._feed.sync()
        except (RedisError, OSError) as exc:
            self._replica = None
            raise ConfigurationError(
                f"cannot reach Redis at {where} ({type(exc).__name__}: {exc}): start Redis "
                "there, or pass RedisState(url=...) the address of a running one") from None
        self._feed.start()

    def close(self) -> None:
        self._feed.stop()
        self.client.close()
        self._listener.close()
        with self._aclients_lock:
            self._aclients.clear()

    def unavailable(self) -> Reason:
        return Reason("state_store_unavailable", f"the shared state store (Redis at "
                      f"{_redacted(self.url)}, namespace {self.namespace!r}) cannot vouch for "
                      f"this process's copy: {self._feed.why}; denying until it resynchronises")

    def unreachable(self, exc: BaseException, what: str) -> StateStoreUnavailable:
        """The error for a Redis command on ``what`` that failed."""
        return StateStoreUnavailable(
            f"Redis at {_redacted(self.url)} failed on {what} ({type(exc).__name__}: {exc}); "
            "nothing was acknowledged")

    async def aclient(self) -> redis.asyncio.Redis:
        """This event loop's asyncio client (closed when the loop shuts its generators down)."""
        return (await self._aentry())[0]

    async def _aentry(self) -> tuple[redis.asyncio.Redis, AsyncIterator[None], Any]:
        loop = asyncio.get_running_loop()
        entry = self._aclients.get(loop)
        if entry is None:
            client = redis.asyncio.Redis.from_url(
                self.url, retry=redis.asyncio.retry.Retry(NoBackoff(), 1),
                client_name=f"agentauthz:{self.namespace}", **self._options)
            keeper = _closing(client)
            await keeper.__anext__()  # registered with the loop: asyncio.run closes it
            with self._aclients_lock:
                self._aclients[loop] = entry = (client, keeper, client.register_script(_LEDGER))
        return entry

    def _ledger(self, keys: list[str], args: list[str]) -> Any:
        """One compare-and-set of a ledger (see :class:`~agentauthz.scale.stores.RedisLedgers`)."""
        try:
            return self._scripts["ledger"](keys=keys, args=args)
        except RedisError as exc:
            raise self.unreachable(exc, "the task's ledger") from exc

    async def _aledger(self, keys: list[str], args: list[str]) -> Any:
        try:
            script = (await self._aentry())[2]
            return await script(keys=keys, args=args)
        except RedisError as exc:
            raise self.unreachable(exc, "the task's ledger") from exc

    # --------------------------------------------------------------- writes
    def _script(self, name: str, keys: Sequence[str], args: Sequence[Any], what: str) -> Any:
        try:
            return self._scripts[name](keys=[self.key("seq"), self.key("feed"), *keys],
                                       args=[self._feed_length, *args])
        except RedisError as exc:
            raise self.unreachable(exc, what) from exc

    def _echo(self, seq: int) -> None:
        """Return once this process's copy holds the write numbered ``seq``."""
        if seq and not self._feed.wait(seq, self.echo_timeout):
            self._feed.lost(f"own write {seq} not seen within {self.echo_timeout:g}s")
            log.warning("agentauthz: a write to the shared state was acknowledged but not seen "
                        "here within %gs; denying until resynchronised", self.echo_timeout)

    def _put(self, key: str, kind: str, data: str, value: str, until: float | None) -> None:
        pxat = "0" if until is None else str(max(1, int(until * 1000)))
        self._echo(int(self._script("put", [key], [kind, data, value, pxat], kind)))

    def _delete(self, key: str, kind: str, data: str) -> bool:
        seq = int(self._script("delete", [key], [kind, data], kind))
        self._echo(seq)
        return seq != 0

    def write(self, add: Sequence[RelationTuple], remove: Sequence[RelationTuple]) -> int:
        changes = [("r", t) for t in remove] + [("a", t) for t in add]
        changed = 0
        last = 0
        for start in range(0, len(changes), _CHUNK):
            chunk = changes[start:start + _CHUNK]
            removes = [list(t) for op, t in chunk if op == "r"]
            adds = [list(t) for op, t in chunk if op == "a"]
            data = codec.dumps({"add": adds, "remove": removes})
            members = [codec.dumps(t) for t in removes] + [codec.dumps(t) for t in adds]
            n, seq = self._script("rel", [self.key("rels")],
                                  ["rel", data, len(removes), *members], "relationships")
            changed += int(n)
            last = max(last, int(seq))
        self._echo(last)
        return changed

    def set_attributes(self, items: Sequence[tuple[str, Mapping[str, Any] | None]]) -> None:
        args: list[str] = []
        payload: list[list[Any]] = []
        for entity, attributes in items:
            try:
                value = codec.dumps_strict(dict(attributes)) if attributes else ""
            except TypeError as exc:
                raise InvalidInputError(f"attributes of {entity}: {exc}") from None
            args += [entity, value]
            payload.append([entity, dict(attributes) if attributes else None])
        if not items:
            return
        data = codec.dumps(payload)
        self._echo(int(self._script("attrs", [self.key("attrs")], ["attrs", data, *args],
                                    "attributes")))

    def publish_policy(self, policy: Any) -> None:
        text = codec.dumps({"version": policy.version,
                            "definition": policy.definition.model_dump(mode="json")})
        self._fleet_policy = policy.version
        self._put(self.key("policy"), "policy", text, text, None)

    def invalidate_everywhere(self) -> None:
        self._echo(int(self._script("emit", [], ["inval", "{}"], "invalidation")))

    def claim_seed(self) -> bool:
        try:
            return bool(self.client.set(self.key("seeded"), str(time.time()), nx=True))
        except RedisError as exc:
            raise self.unreachable(exc, "seeding") from exc

    # ------------------------------------------------------- feed handling
    def snapshot(self, client: redis.Redis, first: bool) -> None:
        replica = self._replica
        assert replica is not None
        store = replica.store
        if store is not None:
            self._load_relationships(client, store)
            self._load_attributes(client, store)
        revocations = [codec.revocation_from(v) for v in self._scan_values(client, "rev:*")]
        self.revocations._replace(revocations)
        if self._breakglass is not None:
            now = time.time()
            self._breakglass._replace(g for g in (codec.grant_from(v) for v in
                                                  self._scan_values(client, "bg:*"))
                                      if g.expires_at > now)
        raw = client.get(self.key("policy"))
        if raw is not None:
            fleet = codec.loads(raw)
            if first:
                if fleet["version"] != replica.policy_version():
                    log.warning("agentauthz: this worker starts with policy %s; the last policy "
                                "reloaded by a worker of namespace %r is %s. Workers decide with "
                                "different policies until one reloads.",
                                replica.policy_version(), self.namespace, fleet["version"])
                self._fleet_policy = fleet["version"]
            elif fleet["version"] != self._fleet_policy:  # reloaded while we were away
                self._apply_policy(raw)
        replica.invalidate()

    def _scan_values(self, client: redis.Redis, pattern: str) -> list[str | bytes]:
        keys = list(client.scan_iter(match=self.key(pattern), count=1000))
        values: list[str | bytes] = []
        for start in range(0, len(keys), 1000):
            values += [v for v in client.mget(keys[start:start + 1000]) if v is not None]
        return values

    def _load_relationships(self, client: redis.Redis, store: MemoryStore) -> None:
        shared = {tuple(codec.loads(m)) for m in client.sscan_iter(self.key("rels"), count=5000)}
        with store.lock:
            local = set(store._iter_tuples())
            store.write(add=[t for t in shared if t not in local],
                        remove=[t for t in local if t not in shared])

    def _load_attributes(self, client: redis.Redis, store: MemoryStore) -> None:
        shared = {entity: codec.loads(value) for entity, value in
                  client.hscan_iter(self.key("attrs"), count=5000)}
        with store.lock:
            changes: list[tuple[str, Mapping[str, Any] | None]] = [
                (entity, None) for entity in store.attributes if entity not in shared]
            changes += [(entity, attrs) for entity, attrs in shared.items()
                        if store.get_attributes(entity) != attrs]
            if changes:
                store.set_many_attributes(changes)

    def apply(self, kind: str, data: str) -> None:
        replica = self._replica
        assert replica is not None
        if kind == "rel":
            if replica.store is not None:
                change = codec.loads(data)
                replica.store.write(add=[tuple(t) for t in change["add"]],
                                    remove=[tuple(t) for t in change["remove"]])
        elif kind == "attrs":
            if replica.store is not None:
                replica.store.set_many_attributes([(e, a) for e, a in codec.loads(data)])
        elif kind == "rev":
            self.revocations._remember(codec.revocation_from(data))
            replica.invalidate()
        elif kind == "bg+":
            if self._breakglass is not None:
                self._breakglass._put(codec.grant_from(data))
        elif kind == "bg-":
            if self._breakglass is not None:
                self._breakglass._forget(codec.grant_from(data).id)
        elif kind == "policy":
            self._apply_policy(data)
        elif kind == "inval":
            replica.invalidate()
        else:
            log.warning("agentauthz: unknown shared state feed entry %r (a newer worker?); "
                        "dropping cached decisions", kind)
            replica.invalidate()

    def _apply_policy(self, data: str | bytes) -> None:
        from agentauthz.policy.schema import Policy

        replica = self._replica
        assert replica is not None
        fleet = codec.loads(data)
        if replica.set_policy is None or fleet["version"] == replica.policy_version():
            self._fleet_policy = fleet["version"]
            replica.invalidate()
            return
        replica.set_policy(Policy.from_dict(fleet["definition"]))  # a failure: not ready, retried
        self._fleet_policy = fleet["version"]
        log.warning("agentauthz: policy %s reloaded by another worker is now in force",
                    fleet["version"])


async def _closing(client: redis.asyncio.Redis) -> AsyncIterator[None]:
    """Hold an asyncio client open for its loop's life; the loop closes it at shutdown."""
    try:
        yield
    finally:
        await client.aclose()
