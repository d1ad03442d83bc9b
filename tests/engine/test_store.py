from __future__ import annotations

from pathlib import Path

import pytest

from agentauthz import Authorizer, Relationship, SQLiteStore, StoreError
from agentauthz.engine.store import MemoryStore

POLICY = """
types:
  user: {}
  team: {relations: {member: [user, team#member]}}
  doc: {relations: {viewer: [user, team#member, user:*]}, permissions: {read: viewer}}
"""


def test_memory_store_indexes_both_ways_and_versions() -> None:
    s = MemoryStore()
    v0 = s.version
    assert s.write(add=[("doc:1", "viewer", "user:a"), ("doc:1", "viewer", "user:b"),
                        ("doc:1", "viewer", "team:t#member")]) == 3
    assert s.version == v0 + 1
    assert s.write(add=[("doc:1", "viewer", "user:a")]) == 0
    assert s.version == v0 + 1  # no change, no new version
    assert s.forward["doc:1"]["viewer"] == {"user:a", "user:b"}
    assert s.reverse["user:a"]["doc#viewer"] == "doc:1"
    assert s.has(("doc:1", "viewer", "team:t#member"))
    assert len(s) == 3
    assert s.write(remove=[("doc:1", "viewer", "user:b"), ("doc:1", "viewer", "team:t#member")]) == 2
    assert s.forward["doc:1"]["viewer"] == "user:a"
    assert "doc:1" not in s.usersets
    assert {str(r) for r in s.relationships()} == {"doc:1#viewer@user:a"}
    seen: list[int] = []
    unsubscribe = s.subscribe(seen.append)
    s.set_attributes("doc:1", {"tenant": "x"})
    unsubscribe()
    s.set_attributes("doc:1", None)
    assert seen == [s.version - 1]
    assert s.get_attributes("doc:1") == {}


def test_writes_change_decisions_immediately() -> None:
    a = Authorizer(POLICY)
    assert not a.check("user:a", "read", "doc:1").allowed
    a.add("doc:1#viewer@team:t#member", "team:t#member@user:a")
    assert a.check("user:a", "read", "doc:1").allowed
    a.remove("team:t#member@user:a")
    assert not a.check("user:a", "read", "doc:1").allowed
    a.add(Relationship("doc:1", "viewer", "user:*"))
    assert a.check("user:zz", "read", "doc:1").allowed


def test_sqlite_store_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "rels.db"
    a = Authorizer(POLICY, store=SQLiteStore(path))
    a.add("doc:1#viewer@team:t#member", "team:t#member@user:a", "doc:2#viewer@user:b")
    a.set_attributes("doc:1", {"tenant": "acme", "n": 3})
    a.remove("doc:2#viewer@user:b")
    b = Authorizer(POLICY, store=SQLiteStore(path))
    assert b.check("user:a", "read", "doc:1").allowed
    assert not b.check("user:b", "read", "doc:2").allowed
    assert b.store.get_attributes("doc:1") == {"tenant": "acme", "n": 3}
    assert len(b.store) == 2


def test_policy_swap_checks_stored_data(tmp_path: Path) -> None:
    a = Authorizer(POLICY)
    a.add("doc:1#viewer@user:a")
    before = a.policy_version
    with pytest.raises(Exception, match="does not fit"):
        a.reload_policy("types: {user: {}, doc: {relations: {owner: [user]}}}")
    assert a.policy_version == before
    a.reload_policy(POLICY + "\n  extra: {}\n")
    assert a.policy_version != before
    assert a.check("user:a", "read", "doc:1").allowed


def test_sqlite_store_reports_a_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "not-a-db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot open"):
        SQLiteStore(bad)


def test_sqlite_keeps_timestamps_and_durations(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    path = tmp_path / "rels.db"
    created = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    a = Authorizer(POLICY, store=SQLiteStore(path))
    a.set_attributes("doc:1", {"created": created, "ttl": timedelta(hours=2), "tags": ("a",)})
    b = Authorizer(POLICY, store=SQLiteStore(path))
    assert b.store.get_attributes("doc:1") == {"created": created, "ttl": timedelta(hours=2),
                                               "tags": ["a"]}
    with pytest.raises(StoreError):
        a.set_attributes("doc:2", {"bad": object()})
    with pytest.raises(StoreError):
        a.set_attributes("doc:2", {"naive": datetime(2026, 1, 1)})
