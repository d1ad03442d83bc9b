"""The decision cache: hits, invalidation on every kind of change, and what it refuses to key."""

from __future__ import annotations

import pytest

from agentauthz import Authorizer, ConfigurationError, Entity
from agentauthz.cache import DecisionCache

POLICY = """
types:
  user: {}
  doc:
    relations: {viewer: [user]}
    permissions: {read: viewer}
rules:
  - {id: flag, effect: permit, action: peek, resource: doc, when: "context.flag == true"}
"""


@pytest.fixture
def authz() -> Authorizer:
    a = Authorizer(POLICY, cache=DecisionCache(maxsize=100, ttl=60))
    a.add("doc:1#viewer@user:a")
    return a


def test_hits_are_counted(authz: Authorizer) -> None:
    first = authz.check("user:a", "read", "doc:1")
    second = authz.check("user:a", "read", "doc:1")
    assert first is second
    stats = authz.cache_stats()
    assert stats is not None
    assert (stats.hits, stats.misses) == (1, 1)
    assert stats.hit_ratio == 0.5


def test_a_relationship_write_invalidates(authz: Authorizer) -> None:
    assert authz.check("user:a", "read", "doc:1").allowed
    authz.remove("doc:1#viewer@user:a")
    assert not authz.check("user:a", "read", "doc:1").allowed
    authz.add("doc:1#viewer@user:a")
    assert authz.check("user:a", "read", "doc:1").allowed


def test_an_attribute_write_invalidates(authz: Authorizer) -> None:
    authz.reload_policy(POLICY + """
  - {id: closed, effect: forbid, resource: doc, when: "has(resource.closed) && resource.closed"}
""")
    assert authz.check("user:a", "read", "doc:1").allowed
    authz.set_attributes("doc:1", {"closed": True})
    assert not authz.check("user:a", "read", "doc:1").allowed


def test_a_policy_reload_invalidates(authz: Authorizer) -> None:
    assert authz.check("user:a", "read", "doc:1").allowed
    authz.reload_policy(POLICY.replace("read: viewer", "read: viewer & viewer - viewer"))
    assert not authz.check("user:a", "read", "doc:1").allowed


def test_context_is_part_of_the_key_with_its_types(authz: Authorizer) -> None:
    assert authz.check("user:a", "peek", "doc:1", {"flag": True}).allowed
    assert not authz.check("user:a", "peek", "doc:1", {"flag": 1}).allowed
    assert not authz.check("user:a", "peek", "doc:1", {"flag": 1.0}).allowed
    assert not authz.check("user:a", "peek", "doc:1", {"flag": False}).allowed
    assert authz.check("user:a", "peek", "doc:1", {"flag": True}).allowed


def test_uncacheable_requests_bypass(authz: Authorizer) -> None:
    authz.check(Entity("user", "a", {"x": 1}), "read", "doc:1")
    authz.check("user:a", "read", "doc:1", {"obj": object()})
    stats = authz.cache_stats()
    assert stats is not None and stats.bypassed == 2 and stats.size == 0


def test_bad_settings() -> None:
    with pytest.raises(ConfigurationError):
        DecisionCache(maxsize=0)
    with pytest.raises(ConfigurationError):
        DecisionCache(ttl=0)


def test_invalidate_drops_everything(authz: Authorizer) -> None:
    authz.check("user:a", "read", "doc:1")
    authz.invalidate()
    stats = authz.cache_stats()
    assert stats is not None and stats.size == 0
