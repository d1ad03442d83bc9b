"""The change feed: every worker's copy and decision cache follow every other worker's writes."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from agentauthz import Authorizer, Decision, Outcome, PolicyError
from agentauthz.audit import MemorySink
from agentauthz.backends.base import BaseBackend
from agentauthz.engine.evaluator import Evaluator
from agentauthz.policy.schema import Policy
from agentauthz.scale import RedisState

from .policy import DATA, KEYS, authorizer, policy

USER = "user:alice"


def _state(authz: Authorizer) -> RedisState:
    state = authz._state
    assert isinstance(state, RedisState)
    return state


@pytest.fixture
def made() -> Iterator[list[Authorizer]]:
    """Authorizers a test builds; their states are closed after it."""
    out: list[Authorizer] = []
    yield out
    for authz in out:
        _state(authz).close()


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def _within(condition: Callable[[], bool], timeout: float = 2.0) -> float:
    """Seconds until ``condition`` held (fails past ``timeout``)."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, "not within the time allowed"
        time.sleep(0.001)
    return time.monotonic() - start


def _two(redis_url: str, namespace: str, made: list[Authorizer], **options: Any
         ) -> tuple[Authorizer, Authorizer]:
    a = authorizer(redis_url, namespace, **options)
    made.append(a)
    b = authorizer(redis_url, namespace, **options)
    made.append(b)
    return a, b


def test_a_relationship_write_reaches_every_worker_and_its_cache(
        redis_url: str, namespace: str, made: list[Authorizer]) -> None:
    a, b = _two(redis_url, namespace, made, cache=True)
    assert b.check(USER, "read", "ticket:1").allowed
    assert b.check(USER, "read", "ticket:1").allowed
    assert b.cache is not None and b.cache.stats().hits >= 1  # the allow is cached
    assert a.remove("ticket:1#team@team:t") == 1
    assert not a.check(USER, "read", "ticket:1").allowed  # read-your-writes
    _within(lambda: not b.check(USER, "read", "ticket:1").allowed, timeout=1.0)
    assert a.add("ticket:1#team@team:t") == 1
    _within(lambda: b.check(USER, "read", "ticket:1").allowed, timeout=1.0)
    assert a.write(add=["ticket:1#team@team:t"]) == 0  # nothing changed: nothing sent
    assert sorted(map(str, a.store.relationships())) == sorted(map(str, b.store.relationships()))


def test_attributes_reach_every_worker(redis_url: str, namespace: str,
                                       made: list[Authorizer]) -> None:
    a, b = _two(redis_url, namespace, made)
    a.set_attributes("ticket:2", {"tenant": "globex", "classification": "restricted"})
    _within(lambda: b.store.get_attributes("ticket:2").get("tenant") == "globex")
    a.set_attributes("ticket:2", None)
    _within(lambda: b.store.get_attributes("ticket:2") == {})
    with pytest.raises(ValueError, match="undefined type"):
        a.set_attributes("nothing:2", {"x": 1})
    with pytest.raises(ValueError, match="cannot store"):
        a.set_attributes("ticket:3", {"x": object()})


def test_a_policy_reload_reaches_every_worker(redis_url: str, namespace: str,
                                              made: list[Authorizer]) -> None:
    a, b = _two(redis_url, namespace, made, cache=True)
    assert b.check(USER, "write", "ticket:1").allowed
    stricter = policy().replace("write: team->member", "write: team->member - team->member")
    a.reload_policy(stricter)
    assert not a.check(USER, "write", "ticket:1").allowed
    _within(lambda: b.policy.version == a.policy.version)
    assert not b.check(USER, "write", "ticket:1").allowed
    assert {r.id for r in b.agents} >= {"agent:bot"}


def test_a_bad_reload_is_refused_and_sent_nowhere(redis_url: str, namespace: str,
                                                  made: list[Authorizer]) -> None:
    a, b = _two(redis_url, namespace, made)
    before = b.policy.version
    with pytest.raises(PolicyError):
        a.reload_policy("types: {user: {relations: {x: [nothing]}}}")
    time.sleep(0.05)
    assert a.policy.version == b.policy.version == before


def test_a_worker_that_starts_on_another_policy_says_so(
        redis_url: str, namespace: str, made: list[Authorizer],
        caplog: pytest.LogCaptureFixture) -> None:
    a = authorizer(redis_url, namespace)
    made.append(a)
    a.reload_policy(policy(budget=9))
    with caplog.at_level(logging.WARNING, "agentauthz.scale"):
        made.append(authorizer(redis_url, namespace, budget=5))
    assert "Workers decide with different policies" in caplog.text


class _Remote(BaseBackend):
    """A stand-in for a remote engine both workers share (OPA, Oso Cloud, ...)."""

    name = "remote"

    def __init__(self, evaluator: Evaluator) -> None:
        self.evaluator_ = evaluator

    def version(self) -> str:
        return "constant"  # a version that cannot tell the cache about writes

    def check(self, principal: Any, action: str, resource: Any, context: Any = None) -> Decision:
        return self.evaluator_.check(principal, action, resource, context)

    def write(self, add: Any, remove: Any) -> int:
        return self.evaluator_.write(add, remove)


def test_with_a_remote_backend_the_feed_carries_invalidations(
        redis_url: str, namespace: str, made: list[Authorizer]) -> None:
    engine = Evaluator(Policy.load(policy()))
    engine.write(add=["team:t#member@user:alice", "ticket:1#team@team:t"])
    a, b = (Authorizer(backend=_Remote(engine), cache=True,
                       state=RedisState(redis_url, namespace=namespace)) for _ in range(2))
    made += [a, b]
    assert b.check(USER, "read", "ticket:1").allowed
    assert b.check(USER, "read", "ticket:1").allowed  # cached
    a.remove("ticket:1#team@team:t")
    _within(lambda: not b.check(USER, "read", "ticket:1").allowed, timeout=1.0)


def test_a_missed_entry_makes_the_worker_resynchronise(
        redis_url: str, namespace: str, made: list[Authorizer], raw: redis.Redis) -> None:
    a, b = _two(redis_url, namespace, made)
    feed = _state(b).feed
    assert feed.resyncs == 1
    # an entry numbered past the next one: the one in between was missed (a trimmed stream)
    seq = raw.incrby(f"agentauthz:{{{namespace}}}:seq", 2)
    raw.xadd(f"agentauthz:{{{namespace}}}:feed", {"s": seq, "k": "inval", "d": "{}"})
    _within(lambda: feed.resyncs == 2)
    _within(_state(b).ready)
    a.remove("ticket:1#team@team:t")
    _within(lambda: not b.check(USER, "read", "ticket:1").allowed)


@pytest.mark.parametrize("entry", [{"k": "rel", "d": "not json"}, {"k": "someday", "d": "{}"}])
def test_an_entry_that_cannot_be_applied_is_not_skipped_silently(
        redis_url: str, namespace: str, made: list[Authorizer], raw: redis.Redis,
        entry: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    _, b = _two(redis_url, namespace, made)
    seq = raw.incr(f"agentauthz:{{{namespace}}}:seq")
    with caplog.at_level(logging.WARNING, "agentauthz.scale"):
        raw.xadd(f"agentauthz:{{{namespace}}}:feed", {"s": seq, "k": entry["k"], "d": entry["d"]})
        _within(lambda: "shared state feed" in caplog.text or "unknown" in caplog.text)
    _within(_state(b).ready)
    assert b.check(USER, "read", "ticket:1").allowed


def test_silence_denies_until_redis_is_heard_again(
        redis_url: str, namespace: str, made: list[Authorizer], raw: redis.Redis) -> None:
    _, b = _two(redis_url, namespace, made, max_silence=0.3)
    assert b.check(USER, "read", "ticket:1").allowed
    raw.client_pause(1200)  # Redis answers nobody for 1.2s
    waited = _within(lambda: not b.check(USER, "read", "ticket:1").allowed, timeout=1.0)
    assert waited <= 0.9  # max_silence 0.3, and a busy machine
    decision = b.check(USER, "read", "ticket:1")
    assert decision.reasons[0].kind == "state_store_unavailable"
    assert namespace in decision.reasons[0].message
    _within(lambda: b.check(USER, "read", "ticket:1").allowed, timeout=3.0)


def test_a_dropped_feed_connection_denies_then_recovers(
        redis_url: str, namespace: str, made: list[Authorizer], raw: redis.Redis) -> None:
    a, b = _two(redis_url, namespace, made)
    feed = _state(b).feed
    listeners = [c for c in raw.client_list() if c.get("name") == f"agentauthz-feed:{namespace}"]
    assert len(listeners) == 2
    for c in listeners:
        raw.client_kill_filter(_id=c["id"])
    _within(lambda: feed.resyncs >= 2)
    _within(_state(b).ready)
    a.revoke(agent="agent:other")
    _within(lambda: not b.check("agent:other", "read", "ticket:1").allowed)


def test_every_entry_point_denies_while_the_copy_is_stale(
        redis_url: str, namespace: str, made: list[Authorizer]) -> None:
    (a,) = (authorizer(redis_url, namespace, cache=True),)
    made.append(a)
    assert a.check(USER, "read", "ticket:1").allowed
    _state(a).feed.lost("a test says so")  # the subscriber will resynchronise shortly
    stale = [a.check(USER, "read", "ticket:1"), a.check_many([(USER, "read", "ticket:1")])[0]]
    assert all(d.reasons[0].kind == "state_store_unavailable" for d in stale)
    assert "a test says so" in stale[0].reasons[0].message
    assert a.list_resources(USER, "read", "ticket") == frozenset()
    assert a.list_actions(USER, "ticket:1") == frozenset()
    assert a.revocations.revoked("agent", ["agent:bot"]) is not None  # fails closed too
    _within(_state(a).ready)
    assert a.list_actions(USER, "ticket:1") == {"read", "write"}


async def test_async_entry_points_deny_while_the_copy_is_stale(
        redis_url: str, namespace: str, made: list[Authorizer]) -> None:
    a = authorizer(redis_url, namespace)
    made.append(a)
    assert (await a.acheck(USER, "read", "ticket:1")).allowed
    _state(a).feed.lost("a test says so")
    assert (await a.acheck(USER, "read", "ticket:1")).reasons[0].kind == \
        "state_store_unavailable"
    assert await a.alist_resources(USER, "read", "ticket") == frozenset()
    assert await a.alist_actions(USER, "ticket:1") == frozenset()


def test_audited_decisions_are_gated_too(redis_url: str, namespace: str,
                                         made: list[Authorizer]) -> None:
    sink = MemorySink()
    a = Authorizer(policy(), data=DATA, task_keys=KEYS, audit=sink,
                   state=RedisState(redis_url, namespace=namespace))
    made.append(a)
    assert a.check("agent:bot", "read", "ticket:1").allowed
    _state(a).feed.lost("a test says so")
    assert a.check("agent:bot", "read", "ticket:1").reasons[0].kind == "state_store_unavailable"
    assert [r.outcome for r in sink.records][-2:] == [Outcome.ALLOW, Outcome.DENY]
