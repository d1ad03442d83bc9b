"""Failure: Redis down at start is a configuration error; down later denies, then recovers."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from agentauthz import Authorizer, ConfigurationError, MemoryStore, StateStoreUnavailable
from agentauthz.agents import MemoryRevocationStore
from agentauthz.agents.guard import guard_tools
from agentauthz.scale import RedisState, Replica

from .conftest import RedisServer, _free_port
from .policy import DATA, KEYS, authorizer, policy

AGENT, USER = "agent:bot", "user:alice"


def _within(condition: Callable[[], bool], timeout: float = 5.0) -> float:
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, "not within the time allowed"
        time.sleep(0.005)
    return time.monotonic() - start


def test_without_the_redis_client_the_error_says_what_to_install() -> None:
    code = ("import sys; sys.modules['redis'] = None\n"
            "import agentauthz.scale\n"
            "try:\n    agentauthz.scale.RedisState\n"
            "except ImportError as exc:\n    print(exc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'agentauthz[redis]'" in out.stdout


def test_redis_down_at_start_is_a_configuration_error_naming_url_and_fix() -> None:
    url = f"redis://:s3cret@127.0.0.1:{_free_port()}/0"
    with pytest.raises(ConfigurationError) as info:
        Authorizer(policy(), state=RedisState(url, namespace="x", timeout=0.2))
    message = str(info.value)
    assert f"127.0.0.1:{url.rsplit(':', 1)[1]}" in message and "s3cret" not in message
    assert "start Redis there" in message and "RedisState(url=...)" in message


@pytest.mark.parametrize(("options", "match"), [
    ({"url": "http://nowhere"}, "is not a Redis URL"),
    ({"namespace": "has space"}, "namespace"),
    ({"namespace": ""}, "namespace"),
    ({"timeout": 0}, "timeout"),
    ({"max_silence": -1}, "max_silence"),
    ({"feed_length": 10}, "feed_length"),
])
def test_bad_settings_are_configuration_errors(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        RedisState(**options)


def test_a_state_is_not_combined_with_its_own_stores(redis_url: str, namespace: str) -> None:
    with pytest.raises(ConfigurationError, match="store"):
        Authorizer(policy(), store=MemoryStore(), state=RedisState(redis_url, namespace=namespace))
    with pytest.raises(ConfigurationError, match="revocations"):
        Authorizer(policy(), revocations=MemoryRevocationStore(),
                   state=RedisState(redis_url, namespace=namespace))
    with pytest.raises(ConfigurationError, match="not a shared state"):
        Authorizer(policy(), state=object())  # type: ignore[arg-type]
    state = RedisState(redis_url, namespace=namespace)
    authz = Authorizer(policy(), state=state)
    try:
        with pytest.raises(ConfigurationError, match="one RedisState per Authorizer"):
            state.bind(Replica(None, lambda: "", None, lambda: None))
    finally:
        state.close()
    assert authz.store is not None


def _guarded(authz: Authorizer) -> Callable[..., Any]:
    def search(ticket_id: str) -> str:
        return ticket_id

    (guarded,) = guard_tools([search], authz=authz, on_deny="message")
    return guarded


def test_redis_down_later_denies_and_recovers_with_acknowledged_writes_intact(
        own_redis: RedisServer, namespace: str) -> None:
    a = authorizer(own_redis.url, namespace, budget=1000, timeout=0.3, max_silence=0.5)
    b = authorizer(own_redis.url, namespace, budget=1000, timeout=0.3, max_silence=0.5)
    try:
        search = _guarded(a)
        with a.acting_as(AGENT, on_behalf_of=USER), \
                a.task(scope=[("*", "*")], ttl=600, purpose="outage") as task:
            for _ in range(3):
                assert search(ticket_id="1") == "1"
            a.revoke(agent="agent:other", reason="before the outage")  # acknowledged
            a.remove("ticket:2#team@team:t")                           # acknowledged

            own_redis.kill()
            # each worker notices by itself (at once here: the socket closes; max_silence at worst)
            _within(lambda: not a.check(USER, "read", "ticket:1").allowed, timeout=2.0)
            _within(lambda: not b.check(USER, "read", "ticket:1").allowed, timeout=2.0)
            decision = b.check(USER, "read", "ticket:1")
            assert decision.reasons[0].kind == "state_store_unavailable"
            denied = search(ticket_id="1")
            assert denied.startswith("DENIED") and "Redis" in denied
            with pytest.raises(StateStoreUnavailable, match="nothing was acknowledged"):
                a.revoke(agent=AGENT, reason="during the outage")
            with pytest.raises(StateStoreUnavailable):
                a.add("ticket:2#team@team:t")
            with pytest.raises(StateStoreUnavailable):
                a.approvals.pending()

            own_redis.start()  # same port, same append-only file
            _within(lambda: a.check(USER, "read", "ticket:1").allowed)
            _within(lambda: b.check(USER, "read", "ticket:1").allowed)
            assert search(ticket_id="1") == "1"
            assert len(a.ledgers.steps(f"task:{task.task_id}")) == 4  # 3 before, 1 after
            for authz in (a, b):
                assert not authz.check("agent:other", "read", "ticket:1").allowed
                assert not authz.check(USER, "read", "ticket:2").allowed
                assert authz.check(AGENT, "read", "ticket:1").allowed  # the failed revoke
    finally:
        for authz in (a, b):
            authz._state.close()  # type: ignore[union-attr]


def test_a_worker_started_against_a_restarted_redis_sees_what_was_acknowledged(
        own_redis: RedisServer, namespace: str) -> None:
    first = authorizer(own_redis.url, namespace)
    first.revoke(agent=AGENT, reason="compromised")
    first._state.close()  # type: ignore[union-attr]
    own_redis.kill()
    own_redis.start()
    later = Authorizer(policy(), data=DATA, task_keys=KEYS,
                       state=RedisState(own_redis.url, namespace=namespace))
    try:
        decision = later.check(AGENT, "read", "ticket:1")
        assert decision.reasons[0].kind == "agent_revoked"
        assert len(later.store) == len(DATA["relationships"])
    finally:
        later._state.close()  # type: ignore[union-attr]
