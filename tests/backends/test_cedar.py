"""The Cedar backend: cedarpy in process, entities built from our relationship store.

Protocol: both twins, the batch through one ``is_authorized_batch``, reasons
from Cedar's determining policies. Parity: the 126 cases of
``parity_cases.yaml``, the lists and a delegated check give what the local
evaluator gives. Faults: a policy that errors at evaluation, malformed entity
data, a request Cedar's schema rejects, a bad policy or schema at load, a
failing cedarpy: each denies with a reason, raises ``BackendError`` or (at
load) ``ConfigurationError``; never an allow, never a crash.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cedarpy
import pytest
import yaml

from agentauthz import Authorizer, Entity
from agentauthz.agents import AgentRegistry, Delegation
from agentauthz.backends.cedar import CedarBackend
from agentauthz.demo import DATA, POLICY
from agentauthz.engine.evaluator import CheckRequest
from agentauthz.engine.store import MemoryStore
from agentauthz.errors import BackendError, ConfigurationError, InvalidInputError, PolicyError
from agentauthz.policy.schema import Policy
from agentauthz.typing import Backend
from tests.backends.servers.cedar_server import EXAMPLE, SCHEMA, demo_backend
from tests.backends.servers.cedar_server import POLICY as CEDAR_POLICY

ROOT = Path(__file__).resolve().parents[2]
CASES = [tuple(c) for c in yaml.safe_load(
    (Path(__file__).with_name("parity_cases.yaml")).read_text())["cases"]]
PRINCIPALS = sorted({c[0] for c in CASES})
RESOURCES = sorted({c[2] for c in CASES})

# A small schema and policies for the fault tests: a Long that overflows is an
# evaluation error Cedar's validator cannot rule out.
ERR_SCHEMA = """
entity User { level?: Long, tenant?: String };
entity Doc { tenant?: String, owner?: User, labels?: Set<String> };
action read appliesTo { principal: [User], resource: [Doc],
                        context: { n?: Long, at?: datetime, ttl?: duration, who?: User,
                                   tags?: Set<String>, meta?: { source: String } } };
"""
ERR_POLICIES = """
@id("overflow-permit")
permit (principal, action, resource)
when { principal has level && principal.level * 9223372036854775807 > 0 };

@id("open")
@description("open documents are open")
permit (principal, action, resource) when { resource has tenant && resource.tenant == "open" };

@id("overflow-forbid")
@description("forbids the overflowing")
forbid (principal, action, resource) when { context has n && context.n * 9223372036854775807 > 0 };
"""
ERR_DATA = {"attributes": {"user:climber": {"level": 2}, "doc:open": {"tenant": "open"},
                           "doc:closed": {"tenant": "closed"}}}


@pytest.fixture(scope="module")
def backend() -> Iterator[CedarBackend]:
    with demo_backend() as b:
        yield b


@pytest.fixture
def fresh() -> Iterator[CedarBackend]:
    """A demo backend of its own, for tests that write."""
    with demo_backend() as b:
        yield b


@pytest.fixture(scope="module")
def local() -> Authorizer:
    return Authorizer(POLICY, data=DATA)


def _registry() -> AgentRegistry:
    return AgentRegistry(Policy.load(POLICY).agents)


def _faulty(**options: Any) -> CedarBackend:
    return CedarBackend.from_text(ERR_POLICIES, ERR_SCHEMA, data=ERR_DATA, **options)


# ---------------------------------------------------------------- protocol
def test_is_a_backend(backend: CedarBackend) -> None:
    assert isinstance(backend, Backend)
    assert backend.name == "cedar"
    version = backend.version()
    assert isinstance(version, tuple)
    policy_version, store_version = version
    assert policy_version == backend.policy_version
    assert policy_version.startswith("sha256:")
    assert store_version == backend.store.version
    assert backend.actions == ("export", "read", "write")


def test_an_allow_names_the_determining_permit(backend: CedarBackend) -> None:
    decision = backend.check("user:alice", "read", "document:ticket-2")
    assert decision.allowed
    assert decision.policy_version == backend.policy_version
    assert [(r.kind, r.rule) for r in decision.reasons] == [("permit", "document-read")]
    assert "readers of its folders" in decision.reasons[0].message


def test_a_forbid_names_the_determining_forbid(backend: CedarBackend) -> None:
    decision = backend.check("user:alice", "export", "document:ticket-2")
    assert not decision.allowed
    assert [(r.kind, r.rule, r.message) for r in decision.reasons] == [
        ("forbid", "no-export-of-confidential", "confidential and restricted documents never leave")]
    assert backend.check("user:mallory", "read", "document:ticket-1").reasons[0].rule \
        == "tenant-isolation"


def test_no_permit_is_a_default_deny(backend: CedarBackend) -> None:
    decision = backend.check("user:carol", "read", "folder:tickets")
    assert [r.kind for r in decision.reasons] == ["default_deny"]
    assert "'read' on folder" in decision.reasons[0].message


async def test_async_twins_answer_as_the_sync_ones(backend: CedarBackend) -> None:
    for principal in PRINCIPALS:
        for resource in RESOURCES:
            sync = backend.check(principal, "read", resource)
            assert (await backend.acheck(principal, "read", resource)).reasons == sync.reasons
            assert await backend.alist_actions(principal, resource) \
                == backend.list_actions(principal, resource)
        assert await backend.alist_resources(principal, "read", "document") \
            == backend.list_resources(principal, "read", "document")
    requests = [CheckRequest(p, a, r) for p, a, r, _ in CASES]
    assert [d.allowed for d in await backend.acheck_many(requests)] \
        == [d.allowed for d in backend.check_many(requests)]


class _Spy:
    """Counts cedarpy batch calls and their sizes, passing them through."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, backend: CedarBackend) -> None:
        self.sizes: list[int] = []
        real = cedarpy.is_authorized_batch

        def batch(requests: list[dict[str, Any]], *args: Any, **kwargs: Any) -> Any:
            self.sizes.append(len(requests))
            return real(requests, *args, **kwargs)

        monkeypatch.setattr(backend._cedar, "is_authorized_batch", batch)


def test_a_batch_is_one_cedar_call(fresh: CedarBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = _Spy(monkeypatch, fresh)
    requests = [CheckRequest(p, a, r) for p, a, r, _ in CASES]
    decisions = fresh.check_many(requests)
    assert spy.sizes == [len(CASES)]
    assert [d.allowed for d in decisions] == [e == "allow" for *_, e in CASES]
    assert [d.reasons for d in decisions] \
        == [fresh.check(r.principal, r.action, r.resource).reasons for r in requests]


def test_a_batch_denies_what_is_not_a_request(backend: CedarBackend) -> None:
    out = backend.check_many([CheckRequest("user:alice", "read", "document:ticket-1"),
                              ("user:alice", "read"),  # type: ignore[list-item]
                              CheckRequest("user:*", "read", "folder:x")])
    assert [d.allowed for d in out] == [True, False, False]
    assert [d.reasons[0].kind for d in out[1:]] == ["invalid_input", "invalid_input"]
    assert backend.check_many([]) == []


def test_a_large_batch_goes_in_chunks(fresh: CedarBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = _Spy(monkeypatch, fresh)
    requests = [CheckRequest("user:alice", "read", "document:ticket-1")] * 5000
    assert all(d.allowed for d in fresh.check_many(requests))
    assert spy.sizes == [2048, 2048, 904]


@pytest.mark.parametrize(("principal", "action", "resource", "kind"), [
    ("user:*", "read", "folder:tickets", "invalid_input"),
    ("team:support#member", "read", "folder:tickets", "invalid_input"),
    ("user:alice", "read", "folder:", "invalid_input"),
    (42, "read", "folder:tickets", "invalid_input"),
    ("user:alice", "", "folder:tickets", "invalid_input"),
    ("user:alice", ["read"], "folder:tickets", "invalid_input"),
    ("service:x", "read", "folder:tickets", "unknown_type"),
    ("user:alice", "read", "widget:1", "unknown_type"),
    ("user:alice", "delete", "folder:tickets", "invalid_input"),
    ("user:alice", "export", "folder:tickets", "invalid_input"),
    # names that could alias Cedar's own types, or another of ours, have no Cedar type
    ("userset:user:*", "read", "folder:tickets", "unknown_type"),
    ("action:read", "read", "folder:tickets", "unknown_type"),
    ("User:alice", "read", "folder:tickets", "unknown_type"),
    ("_user:alice", "read", "folder:tickets", "unknown_type"),
])
def test_invalid_input_denies_with_a_reason(backend: CedarBackend, principal: Any, action: Any,
                                            resource: str, kind: str) -> None:
    decision = backend.check(principal, action, resource)
    assert not decision.allowed
    assert decision.reasons[0].kind == kind, decision.reasons


def test_the_schema_validates_the_request_context(backend: CedarBackend) -> None:
    decision = backend.check("user:alice", "read", "document:ticket-1", {"purpose": "x"})
    assert not decision.allowed
    assert "purpose" in decision.reasons[0].message
    lax = CedarBackend(CEDAR_POLICY, SCHEMA, data=DATA, validate_requests=False)
    assert lax.check("user:alice", "read", "document:ticket-1", {"purpose": "x"}).allowed
    assert not lax.check("service:x", "read", "document:ticket-1").allowed


def test_context_values_become_cedar_values() -> None:
    policies = """
    permit (principal, action, resource)
    when { context has at && context.at < datetime("2030-01-01T00:00:00Z") &&
           context has ttl && context.ttl == duration("1h30m") &&
           context has who && context.who == User::"ann" &&
           context has tags && context.tags.contains("b") &&
           context has meta && context.meta.source == "crm" &&
           context has n && context.n == 9223372036854775807 };
    """
    b = CedarBackend.from_text(policies, ERR_SCHEMA)
    context = {"at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC), "ttl": dt.timedelta(minutes=90),
               "who": Entity("user", "ann"), "tags": ["a", "b"], "meta": {"source": "crm"},
               "n": 2 ** 63 - 1}
    assert b.check("user:x", "read", "doc:1", context).allowed
    assert not b.check("user:x", "read", "doc:1", {**context, "ttl": dt.timedelta(hours=1)}).allowed


@pytest.mark.parametrize("context", [
    {"n": 1.5}, {"n": None}, {"n": 2 ** 63}, {"meta": {"__entity": {"type": "User", "id": "x"}}},
    {"at": dt.datetime(2026, 1, 1)}, {"n": object()}, {"who": Entity("Widget", "w")}, {1: 2},
    ["not", "a", "mapping"],
])
def test_context_cedar_cannot_hold_denies(context: Any) -> None:
    decision = _faulty().check("user:x", "read", "doc:open", context)
    assert not decision.allowed
    assert decision.reasons[0].kind == "invalid_input", decision.reasons


def test_attributes_in_the_request_override_the_stored_ones(backend: CedarBackend,
                                                            local: Authorizer) -> None:
    foreign = Entity("document", "ticket-1", {"tenant": "globex"})
    moved = Entity("user", "alice", {"tenant": "globex"})
    public = Entity("document", "new", {"tenant": "acme", "classification": "internal"})
    for principal, resource in ((foreign.key, foreign), (moved, "document:ticket-1"),
                                ("user:alice", public), (moved, foreign)):
        for action in ("read", "write", "export"):
            assert backend.check(principal, action, resource).allowed \
                == local.check(principal, action, resource).allowed
    assert backend.check("user:alice", "read", foreign).reasons[0].rule == "tenant-isolation"
    # the stored entity is untouched
    assert backend.check("user:alice", "read", "document:ticket-1").allowed
    assert backend.check("user:alice", "read", Entity("document", "ticket-1")).allowed


def test_request_attributes_cedar_refuses_deny(backend: CedarBackend) -> None:
    for resource in (Entity("document", "ticket-1", {"tenant": 7}),
                     Entity("document", "ticket-1", {"colour": "red"}),
                     Entity("document", "new", {"tenant": 1.5})):
        decision = backend.check("user:alice", "read", resource)
        assert not decision.allowed
        assert decision.reasons[0].kind == "invalid_input", decision.reasons
    assert "tenant" in backend.check("user:alice", "read", Entity(
        "document", "ticket-1", {"tenant": 7})).reasons[0].message


# ------------------------------------------------------------------ parity
@pytest.mark.parametrize(("principal", "action", "resource", "expected"), CASES,
                         ids=["-".join(c[:3]) for c in CASES])
def test_parity_case(backend: CedarBackend, principal: str, action: str, resource: str,
                     expected: str) -> None:
    decision = Authorizer(backend=backend).check(principal, action, resource)
    assert ("allow" if decision.allowed else "deny") == expected, decision.reasons


def test_the_reasons_match_the_local_evaluators_kinds(backend: CedarBackend,
                                                      local: Authorizer) -> None:
    for principal, action, resource, _ in CASES:
        ours = backend.check(principal, action, resource).reasons[0]
        theirs = local.check(principal, action, resource).reasons[0]
        if theirs.kind == "forbid":
            assert (ours.kind, ours.rule, ours.message) == (theirs.kind, theirs.rule,
                                                            theirs.message)
        else:
            assert ours.kind == {"permission": "permit"}.get(theirs.kind, theirs.kind)


def test_lists_agree_with_check_and_with_the_local_evaluator(backend: CedarBackend,
                                                             local: Authorizer) -> None:
    authz = Authorizer(backend=backend)
    for principal in PRINCIPALS:
        for rtype in ("document", "folder", "team"):
            for action in ("read", "write", "export"):
                listed = authz.list_resources(principal, action, rtype)
                assert listed == local.list_resources(principal, action, rtype)
                assert listed == {r for r in backend.store.entities(rtype)
                                  if backend.check(principal, action, r).allowed}
        for resource in RESOURCES:
            actions = authz.list_actions(principal, resource)
            assert actions == local.list_actions(principal, resource)
            assert actions == {a for a in ("read", "write", "export")
                               if backend.check(principal, a, resource).allowed}
    assert backend.list_resources("user:alice", "read", "nothing") == frozenset()
    with pytest.raises(InvalidInputError):
        backend.list_resources("user:alice", "read", 7)  # type: ignore[arg-type]


def test_a_list_is_one_cedar_call(fresh: CedarBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    spy = _Spy(monkeypatch, fresh)
    fresh.list_resources(Entity("user", "alice", {"department": "x"}), "read", "document")
    fresh.list_actions("user:alice", "document:ticket-1")
    assert spy.sizes == [len(fresh.store.entities("document")), 3]


def test_a_delegated_check_gives_what_the_local_authorizer_gives(backend: CedarBackend) -> None:
    authz = Authorizer(backend=backend, agents=_registry())
    local = Authorizer(POLICY, data=DATA)
    for agent in ("agent:assistant", "agent:scraper", "agent:unknown"):
        for user in ("user:alice", "user:bob", "user:carol", "user:mallory"):
            d = Delegation(agent, user)
            for resource in RESOURCES:
                for action in ("read", "write", "export"):
                    ours, theirs = authz.check(d, action, resource), local.check(d, action, resource)
                    assert ours.allowed == theirs.allowed, (d, action, resource, ours.reasons)
            assert authz.list_resources(d, "read", "document") \
                == local.list_resources(d, "read", "document")


async def test_a_delegated_async_check_too(backend: CedarBackend) -> None:
    authz = Authorizer(backend=backend, agents=_registry(), timeout=5)
    local = Authorizer(POLICY, data=DATA)
    d = Delegation("agent:assistant", "user:alice")
    for resource in RESOURCES:
        for action in ("read", "write", "export"):
            assert (await authz.acheck(d, action, resource)).allowed \
                == local.check(d, action, resource).allowed
    assert await authz.alist_actions(d, "document:ticket-1") \
        == local.list_actions(d, "document:ticket-1")


# --------------------------------------------------------- data and writes
def _twins(*relationships: str, attributes: dict[str, dict[str, Any]] | None = None
           ) -> tuple[CedarBackend, Authorizer]:
    """The demo on Cedar and on the local evaluator, with the same extra data."""
    cedar = CedarBackend(CEDAR_POLICY, SCHEMA, data=DATA)
    local = Authorizer(POLICY, data=DATA)
    cedar.write(add=relationships)
    local.write(add=relationships)
    for key, values in (attributes or {}).items():
        cedar.set_attributes(key, values)
        local.set_attributes(key, values)
    return cedar, local


def _same(cedar: CedarBackend, local: Authorizer, principals: list[str],
          resources: list[str]) -> None:
    for p in principals:
        for r in resources:
            for a in ("read", "write", "export"):
                if a == "export" and not r.startswith("document:"):
                    continue
                assert cedar.check(p, a, r).allowed == local.check(p, a, r).allowed, (p, a, r)


def test_the_user_wildcard_holds_every_user_and_no_agent() -> None:
    cedar, local = _twins("folder:public#viewer@user:*", "folder:public-sub#parent@folder:public",
                          "document:leaflet#parent@folder:public-sub",
                          attributes={"user:stranger": {"tenant": "acme"}})
    assert cedar.check("user:nobody-knows", "read", "document:leaflet").allowed
    _same(cedar, local, ["user:nobody-knows", "user:stranger", "user:mallory", "agent:assistant",
                         "agent:unknown"], ["document:leaflet", "folder:public-sub"])
    # an unknown user twice: the delta entity set is built once and reused
    assert cedar.check("user:nobody-knows", "read", "folder:public").allowed
    assert len(cedar._current().deltas) == 1
    assert cedar.list_resources("user:nobody-knows", "read", "document") == {"document:leaflet"}
    assert cedar.check(Entity("user", "walk-in", {"tenant": "globex"}), "read",
                       "document:leaflet").allowed == local.check(
        Entity("user", "walk-in", {"tenant": "globex"}), "read", "document:leaflet").allowed


def test_nested_teams_and_deep_folders() -> None:
    chain = [f"folder:f{i + 1}#parent@folder:f{i}" for i in range(30)]
    cedar, local = _twins("team:everyone#member@team:support#member",
                          "folder:f0#viewer@team:everyone#member", *chain,
                          "document:deep#parent@folder:f30", "document:deep#banned@user:bob",
                          "folder:f10#owner@user:bob")
    assert cedar.check("user:alice", "read", "document:deep").allowed
    assert cedar.check("user:bob", "write", "document:deep").allowed
    assert not cedar.check("user:bob", "read", "document:deep").allowed
    _same(cedar, local, PRINCIPALS, ["document:deep", "folder:f0", "folder:f5", "folder:f20"])


def test_a_userset_subject_holds_what_its_tag_holds() -> None:
    backend = CedarBackend(CEDAR_POLICY, SCHEMA, data={"relationships": [
        "folder:f#viewer@user:ann", "document:d#parent@folder:f",  # d's viewers are f's
        "team:x#member@document:d#viewer", "folder:g#viewer@team:x#member"]})
    assert backend.check("user:ann", "read", "folder:g").allowed
    assert not backend.check("user:bob", "read", "folder:g").allowed


def test_writes_move_the_version_and_the_decisions(fresh: CedarBackend) -> None:
    authz = Authorizer(backend=fresh, cache=True)
    assert not authz.check("user:carol", "read", "document:ticket-1").allowed
    before = fresh.version()
    assert authz.write(add=["document:ticket-1#owner@user:carol"]) == 1
    assert fresh.version() != before
    assert authz.check("user:carol", "read", "document:ticket-1").allowed
    assert fresh.write(add=["document:ticket-1#owner@user:carol"]) == 0
    assert authz.remove("document:ticket-1#owner@user:carol") == 1
    assert not authz.check("user:carol", "read", "document:ticket-1").allowed
    fresh.set_attributes("user:carol", {"tenant": "globex"})
    fresh.write(add=[("document:ticket-1", "owner", "user:carol")])
    assert fresh.check("user:carol", "read", "document:ticket-1").reasons[0].rule \
        == "tenant-isolation"
    fresh.set_attributes(Entity("user", "carol"), None)
    assert fresh.check("user:carol", "read", "document:ticket-1").allowed


@pytest.mark.parametrize(("add", "attributes", "message"), [
    (["folder:a#parent@folder:b", "folder:b#parent@folder:a"], None, "cycle"),
    (["team:x#member@team:y#member", "team:y#member@team:x#member"], None, "cycle"),
    (["widget:w#owner@user:alice"], None, "Widget"),
    (["document:d#owner@Robot:r"], None, "no Cedar name"),
    (["user:alice#owner@document:ticket-1"], None, "tag"),
    ([], ("user:alice", {"tenant": 7}), "tenant"),
    ([], ("user:alice", {"height": "tall"}), "height"),
    ([], ("user:alice", {"tenant": 1.5}), "floating-point"),
    ([], ("user:alice", {"tenant": None}), "null"),
    ([], ("user:alice", {"meta": {"__extn": {"fn": "ip", "arg": "1.1.1.1"}}}), "reserved"),
])
def test_data_cedar_refuses_is_refused_and_nothing_changes(
        fresh: CedarBackend, add: list[str], attributes: tuple[str, dict[str, Any]] | None,
        message: str) -> None:
    before = (sorted(map(str, fresh.store.relationships())),
              fresh.store.get_attributes("user:alice"), fresh.entities_json())
    entities = fresh._current().entities
    change = (lambda: fresh.write(add=add)) if attributes is None else (
        lambda: fresh.set_attributes(*attributes))
    with pytest.raises(InvalidInputError, match=message):
        change()
    assert (sorted(map(str, fresh.store.relationships())),
            fresh.store.get_attributes("user:alice"), fresh.entities_json()) == before
    assert fresh._current().entities is entities  # the previous set, not a rebuild
    assert fresh.check("user:alice", "read", "document:ticket-1").allowed


def test_a_removal_cedar_refuses_is_undone_too(fresh: CedarBackend) -> None:
    fresh.write(add=["folder:a#parent@folder:b"])
    with pytest.raises(InvalidInputError, match="cycle"):
        fresh.write(add=["folder:b#parent@folder:a"], remove=["document:ticket-1#parent@folder:tickets"])
    assert fresh.store.has(("document:ticket-1", "parent", "folder:tickets"))
    assert not fresh.store.has(("folder:b", "parent", "folder:a"))


def test_malformed_writes_raise(fresh: CedarBackend) -> None:
    with pytest.raises(InvalidInputError):
        fresh.write(add=["not a relationship"])
    with pytest.raises(InvalidInputError):
        fresh.set_attributes("nokey", {"a": 1})
    with pytest.raises(InvalidInputError):
        fresh.set_attributes("user:alice", {"id": "bob"})
    with pytest.raises(InvalidInputError):
        fresh.set_attributes("user:alice", ["tenant"])  # type: ignore[arg-type]


def test_load_data_is_all_or_nothing(fresh: CedarBackend) -> None:
    with pytest.raises(InvalidInputError, match="height"):
        fresh.load_data({"relationships": ["document:new#owner@user:carol"],
                         "attributes": {"user:carol": {"height": 2}}})
    assert not fresh.store.has(("document:new", "owner", "user:carol"))
    assert fresh.store.get_attributes("user:carol") == {"tenant": "acme", "department": "finance"}
    fresh.load_data({"relationships": ["document:new#owner@user:carol"]})
    assert fresh.check("user:carol", "read", "document:new").allowed


def test_data_written_behind_the_backends_back_denies_until_fixed() -> None:
    store = MemoryStore()
    backend = CedarBackend(CEDAR_POLICY, SCHEMA, data=DATA, store=store)
    authz = Authorizer(backend=backend)
    store.set_attributes("document:ticket-1", {"tenant": ["acme"]})  # bypasses the backend
    with pytest.raises(BackendError, match="tenant"):
        backend.check("user:alice", "read", "document:ticket-1")
    with pytest.raises(BackendError):
        backend.list_resources("user:alice", "read", "document")
    decision = authz.check("user:alice", "read", "document:runbook-1")
    assert not decision.allowed
    assert decision.reasons[0].kind == "backend_error"
    assert authz.list_resources("user:alice", "read", "document") == frozenset()
    store.set_attributes("document:ticket-1", {"tenant": "acme", "classification": "internal"})
    assert authz.check("user:alice", "read", "document:runbook-1").allowed


def test_a_store_cedar_refuses_fails_at_construction() -> None:
    store = MemoryStore()
    store.set_attributes("user:alice", {"tenant": 3})
    with pytest.raises(ConfigurationError, match="does not fit"):
        CedarBackend(CEDAR_POLICY, SCHEMA, store=store)
    with pytest.raises(ConfigurationError, match="height"):
        CedarBackend(CEDAR_POLICY, SCHEMA, data={"attributes": {"user:a": {"height": 1}}})


def test_checks_during_writes_never_fail(fresh: CedarBackend) -> None:
    stop = threading.Event()
    seen: list[object] = []

    def reader() -> None:
        while not stop.is_set():
            decision = fresh.check("user:carol", "read", "document:ticket-1")
            seen.append(decision.allowed)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for _ in range(40):
            fresh.write(add=["document:ticket-1#owner@user:carol"])
            fresh.write(remove=["document:ticket-1#owner@user:carol"])
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert seen and set(seen) <= {True, False}


def test_the_shipped_entities_json_is_up_to_date(backend: CedarBackend) -> None:
    shipped = (EXAMPLE / "entities.json").read_text()
    assert json.loads(shipped) == json.loads(backend.entities_json())
    entities = cedarpy.Entities.from_json_str(shipped, cedarpy.Schema.from_str(SCHEMA.read_text()))
    assert len(entities) > 0


# ------------------------------------------------------ evaluation errors
def test_an_erroring_permit_grants_nothing() -> None:
    decision = _faulty().check("user:climber", "read", "doc:closed")
    assert not decision.allowed
    assert [(r.kind, r.rule) for r in decision.reasons] == [
        ("default_deny", None), ("condition_error", "overflow-permit")]
    assert "integer overflow" in decision.reasons[1].message
    assert "grants nothing" in decision.reasons[1].message


def test_an_erroring_permit_does_not_undo_another_permit() -> None:
    decision = _faulty().check("user:climber", "read", "doc:open")
    assert decision.allowed
    assert [(r.kind, r.rule) for r in decision.reasons] == [
        ("permit", "open"), ("condition_error", "overflow-permit")]


def test_an_erroring_forbid_denies_where_cedar_alone_allows() -> None:
    backend = _faulty()
    raw = cedarpy.is_authorized(
        {"principal": {"type": "User", "id": "x"}, "action": {"type": "Action", "id": "read"},
         "resource": {"type": "Doc", "id": "open"}, "context": {"n": 3}},
        backend._policyset, backend._current().entities)
    assert raw.allowed  # Cedar skips a policy that errors
    decision = backend.check("user:x", "read", "doc:open", {"n": 3})
    assert not decision.allowed
    assert [(r.kind, r.rule) for r in decision.reasons] == [
        ("forbid", "overflow-forbid"), ("condition_error", "overflow-forbid")]
    assert "an erroring forbid denies" in decision.reasons[1].message
    assert backend.check("user:x", "read", "doc:open", {"n": 0}).allowed


def test_an_error_no_policy_claims_denies(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = _faulty()

    class Result:
        decision = cedarpy.Decision.Allow
        diagnostics = cedarpy.Diagnostics({"reason": ["policy1"], "errors": ["something odd"]})

    monkeypatch.setattr(backend._cedar, "is_authorized_batch", lambda reqs, *a: [Result()] * len(reqs))
    decision = backend.check("user:x", "read", "doc:open")
    assert not decision.allowed
    assert decision.reasons[0].kind == "condition_error"


# ------------------------------------------------------- cedarpy failures
@pytest.mark.parametrize("fault", ["raises", "short", "unreadable", "no-permit"])
def test_a_failing_cedarpy_denies(monkeypatch: pytest.MonkeyPatch, fault: str) -> None:
    backend = _faulty()

    class NoPermit:
        decision = cedarpy.Decision.Allow
        diagnostics = cedarpy.Diagnostics({"reason": ["policy99"], "errors": []})

    def broken(requests: list[Any], *args: Any) -> list[Any]:
        if fault == "raises":
            raise RuntimeError("engine on fire")
        if fault == "short":
            return []
        if fault == "unreadable":
            return [object()] * len(requests)
        return [NoPermit()] * len(requests)

    monkeypatch.setattr(backend._cedar, "is_authorized_batch", broken)
    authz = Authorizer(backend=backend)
    if fault == "no-permit":
        assert backend.check("user:x", "read", "doc:open").reasons[0].kind == "evaluation_error"
    else:
        with pytest.raises(BackendError):
            backend.check("user:x", "read", "doc:open")
        with pytest.raises(BackendError):
            backend.list_resources("user:x", "read", "doc")
    decision = authz.check("user:x", "read", "doc:open")
    assert not decision.allowed
    assert authz.list_resources("user:x", "read", "doc") == frozenset()
    assert authz.list_actions("user:x", "doc:open") == frozenset()
    assert not any(d.allowed for d in authz.check_many([("user:x", "read", "doc:open")] * 3))
    if fault != "no-permit":
        with pytest.raises(BackendError):
            Authorizer(backend=backend, on_backend_error="raise").list_resources(
                "user:x", "read", "doc")


async def test_a_failing_cedarpy_denies_async(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = _faulty()

    def broken(*args: Any) -> list[Any]:
        raise ValueError("no")

    monkeypatch.setattr(backend._cedar, "is_authorized_batch", broken)
    authz = Authorizer(backend=backend, timeout=1)
    decision = await authz.acheck("user:x", "read", "doc:open")
    assert decision.reasons[0].kind == "backend_error"
    assert await authz.alist_resources("user:x", "read", "doc") == frozenset()
    assert not any(d.allowed for d in await authz.acheck_many([("user:x", "read", "doc:open")]))


# ------------------------------------------------------------------ loading
def _load(tmp_path: Path, policies: str, schema: str | None = None,
          schema_name: str = "schema.cedarschema") -> CedarBackend:
    (tmp_path / "policy.cedar").write_text(policies)
    (tmp_path / schema_name).write_text(schema if schema is not None else SCHEMA.read_text())
    return CedarBackend(tmp_path / "policy.cedar", tmp_path / schema_name)


def test_a_policy_that_does_not_parse_names_file_line_and_message(tmp_path: Path) -> None:
    policies = CEDAR_POLICY.read_text() + "\n// a typo\npermit (principal action, resource);\n"
    with pytest.raises(PolicyError) as caught:
        _load(tmp_path, policies)
    (problem,) = caught.value.problems
    assert problem.file == str(tmp_path / "policy.cedar")
    assert problem.line == policies.splitlines().index("permit (principal action, resource);") + 1
    assert "unexpected token" in problem.message
    assert isinstance(caught.value, ConfigurationError)


def test_a_policy_the_schema_rejects_names_each_problem(tmp_path: Path) -> None:
    policies = ('// two mistakes\n@id("typo")\npermit (principal, action == Action::"read", '
                'resource is Document)\nwhen { resource.tenat == "acme" };\n\n'
                'forbid (principal, action == Action::"zap", resource);\n')
    with pytest.raises(PolicyError) as caught:
        _load(tmp_path, policies)
    problems = caught.value.problems
    assert [(p.line, p.path) for p in problems][:1] == [(2, "policy 'typo'")]
    assert any("tenat" in p.message for p in problems)
    assert any(p.line == 6 and "zap" in p.message for p in problems)
    assert str(tmp_path / "policy.cedar") in str(caught.value)


@pytest.mark.parametrize(("schema", "name", "message"), [
    ("entity User in [Nope];", "schema.cedarschema", "Nope"),
    ("entity User {", "schema.cedarschema", "schema"),
    ('{"": {"entityTypes": {"A": {"memberOfTypes": ["B"]}}, "actions": {}}}', "schema.json", "B"),
])
def test_a_bad_schema_names_file_and_message(tmp_path: Path, schema: str, name: str,
                                             message: str) -> None:
    with pytest.raises(PolicyError, match=message) as caught:
        _load(tmp_path, "", schema, name)
    assert caught.value.problems[0].file == str(tmp_path / name)


def test_a_json_schema_works_too(tmp_path: Path) -> None:
    schema = {"": {"entityTypes": {"User": {}, "Doc": {"shape": {"type": "Record", "attributes": {
        "owner": {"type": "Entity", "name": "User", "required": False}}}}},
        "actions": {"read": {"appliesTo": {"principalTypes": ["User"],
                                           "resourceTypes": ["Doc"]}}}}}
    backend = _load(tmp_path, "permit (principal, action, resource) "
                              "when { resource has owner && resource.owner == principal };",
                    json.dumps(schema), "schema.json")
    backend.set_attributes("doc:1", {"owner": Entity("user", "ann")})
    assert backend.check("user:ann", "read", "doc:1").allowed
    assert not backend.check("user:bob", "read", "doc:1").allowed
    text = CedarBackend.from_text("permit (principal, action, resource);", json.dumps(schema))
    assert text.check("user:bob", "read", "doc:1").allowed


def test_missing_files_fail_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="from_text"):
        CedarBackend(tmp_path / "none.cedar", SCHEMA)
    with pytest.raises(ConfigurationError, match="schema"):
        CedarBackend(CEDAR_POLICY, tmp_path / "none.cedarschema")


@pytest.mark.parametrize(("option", "value"), [
    ("type_names", {"user": "User", "person": "User"}),
    ("type_names", {"user": "Userset"}),
    ("type_names", {"user": "Action"}),
    ("type_names", {"user": "no such name"}),
    ("namespace", "not a name"),
    ("userset_type", "Bad Name"),
    ("hierarchy", "parent"),
    ("store", {}),
])
def test_bad_configuration_fails_at_construction(option: str, value: Any) -> None:
    with pytest.raises(ConfigurationError):
        CedarBackend(CEDAR_POLICY, SCHEMA, **{option: value})


def test_a_namespace_and_renamed_types() -> None:
    schema = """
    namespace Acme {
      entity Group in [Group];
      entity Person in [Group] { tenant?: String };
      entity Team tags Group;
      entity Doc in [Group] tags Group;
      action read appliesTo { principal: [Person], resource: [Doc] };
    }
    """
    policies = ('permit (principal, action == Acme::Action::"read", resource is Acme::Doc) '
                'when { resource.hasTag("reader") && principal in resource.getTag("reader") };')
    data = {"relationships": ["doc:1#reader@team:t#member", "team:t#member@user:ann"]}
    options: dict[str, Any] = {"namespace": "Acme", "type_names": {"user": "Person"},
                               "userset_type": "Group"}
    backend = CedarBackend.from_text(policies, schema, data=data, **options)
    assert backend.check("user:ann", "read", "doc:1").allowed
    assert not backend.check("user:bob", "read", "doc:1").allowed
    assert backend.actions == ("read",)
    assert backend.check("person:ann", "read", "doc:1").reasons[0].kind == "unknown_type"
    assert '"Acme::Group"' in backend.entities_json()
    with pytest.raises(ConfigurationError, match="Team"):
        CedarBackend.from_text(policies, schema.replace("entity Team tags Group;", ""),
                               data=data, **options)


def test_without_cedarpy_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cedarpy", None)
    with pytest.raises(ImportError, match=r"agentauthz\[cedar\]"):
        CedarBackend(CEDAR_POLICY, SCHEMA)


def test_importing_agentauthz_and_the_module_does_not_import_cedarpy() -> None:
    code = ("import sys, agentauthz, agentauthz.backends.cedar; "
            "assert 'cedarpy' not in sys.modules, 'cedarpy imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# ---------------------------------------------------------------- the docs
def test_the_docs_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_docs import fenced_blocks

    page = ROOT / "docs" / "backends" / "cedar.md"
    blocks = [b for b in fenced_blocks(page.read_text(), page)
              if b.language == "python" and not b.source.lstrip().startswith("# not-run")]
    assert blocks
    monkeypatch.chdir(ROOT)
    for block in blocks:
        exec(compile(block.source, f"<{page.name}:{block.line}>", "exec"), {"__name__": "__doc__"})
