"""The Oso Cloud backend, with the official SDK as the client of a loopback server.

The server (``servers/oso_cloud_server.py``) speaks the HTTP endpoints the
``oso-cloud`` SDK calls and decides with agentauthz's evaluator; nothing of the
SDK is mocked. The shipped Polar policy is checked separately, by a small
interpreter of the Polar it uses (bottom of this file).
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentauthz import Authorizer, Entity, Policy
from agentauthz.agents import AgentRegistry, Delegation
from agentauthz.backends.oso_cloud import OsoCloudBackend
from agentauthz.demo import DATA, POLICY
from agentauthz.engine.evaluator import CheckRequest
from agentauthz.errors import BackendError, ConfigurationError, InvalidInputError
from agentauthz.typing import Backend
from tests.backends.servers.oso_cloud_server import (
    API_KEY,
    FAULTS,
    OsoCloudServer,
    demo_backend,
    refused_url,
)

ROOT = Path(__file__).resolve().parents[2]
CASES = [tuple(c) for c in yaml.safe_load(
    Path(__file__).with_name("parity_cases.yaml").read_text())["cases"]]
PRINCIPALS = sorted({c[0] for c in CASES})
RESOURCES = sorted({c[2] for c in CASES})
ACTIONS = ("read", "write", "export")
LOCAL = Authorizer(POLICY, data=DATA)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[OsoCloudServer, OsoCloudBackend]]:
    """One server with the demo data, written through the SDK; for tests that only read."""
    with OsoCloudServer() as server, OsoCloudBackend(server.url, API_KEY, timeout=5.0) as backend:
        backend.load_data(DATA)
        yield server, backend


@pytest.fixture
def backend(served: tuple[OsoCloudServer, OsoCloudBackend]) -> OsoCloudBackend:
    return served[1]


@pytest.fixture
def server() -> Iterator[OsoCloudServer]:
    """A fresh server of its own (faults, writes), the demo data loaded directly."""
    with OsoCloudServer() as fresh:
        fresh.authz.load_data(DATA)
        yield fresh


def _backend(url: str, **options: Any) -> OsoCloudBackend:
    return OsoCloudBackend(url, API_KEY, **options)


def _registry() -> AgentRegistry:
    return AgentRegistry(Policy.load(POLICY).agents)


# ---------------------------------------------------------------- configuration
def test_it_is_a_backend(backend: OsoCloudBackend) -> None:
    assert isinstance(backend, Backend)
    assert backend.name == "oso_cloud"
    assert backend.version() is None
    assert "OsoCloudBackend(url=" in repr(backend)


def test_a_missing_api_key_fails_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OSO_AUTH", raising=False)
    with pytest.raises(ConfigurationError, match="OSO_AUTH"):
        OsoCloudBackend("http://127.0.0.1:1")
    with pytest.raises(ConfigurationError, match="api_key"):
        OsoCloudBackend("http://127.0.0.1:1", "  ")


def test_the_environment_gives_url_and_key(monkeypatch: pytest.MonkeyPatch,
                                           server: OsoCloudServer) -> None:
    monkeypatch.setenv("OSO_URL", server.url)
    monkeypatch.setenv("OSO_AUTH", API_KEY)
    with OsoCloudBackend() as backend:
        assert backend.url == server.url
        assert backend.check("user:alice", "read", "document:ticket-1").allowed


@pytest.mark.parametrize(("options", "field"), [
    ({"url": "ftp://example.com"}, "url"),
    ({"url": "not a url"}, "url"),
    ({"url": "http://"}, "url"),
    ({"fallback_url": "localhost:8080"}, "fallback_url"),
    ({"timeout": 0}, "timeout"),
    ({"timeout": -1}, "timeout"),
    ({"timeout": "1"}, "timeout"),
    ({"timeout": True}, "timeout"),
    ({"timeout": float("inf")}, "timeout"),
    ({"list_timeout": 0}, "list_timeout"),
    ({"write_timeout": float("nan")}, "write_timeout"),
    ({"max_concurrency": 0}, "max_concurrency"),
    ({"max_concurrency": 2.5}, "max_concurrency"),
    ({"page_size": 10_001}, "page_size"),
    ({"max_pages": 0}, "max_pages"),
    ({"types": {"user": "not a type"}}, "types"),
    ({"types": ["user"]}, "types"),
    ({"policy_version": 3}, "policy_version"),
])
def test_bad_configuration_fails_loudly(options: dict[str, Any], field: str) -> None:
    url = options.pop("url", "http://127.0.0.1:1")
    with pytest.raises(ConfigurationError, match=field):
        OsoCloudBackend(url, API_KEY, **options)


def test_without_the_sdk_the_module_imports_and_the_backend_names_the_extra() -> None:
    code = ("import sys; sys.modules['oso_cloud'] = None\n"
            "from agentauthz.backends.oso_cloud import OsoCloudBackend\n"
            "try:\n    OsoCloudBackend('http://127.0.0.1:1', 'k')\n"
            "except ImportError as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert "pip install 'agentauthz[oso]'" in out.stdout


# ------------------------------------------------------------------- the mapping
def test_relationships_and_attributes_become_facts() -> None:
    with _backend("http://127.0.0.1:1", types={"team": "Group"}) as backend:
        doc, alice = backend.value("document:1"), backend.value(Entity("user", "alice"))
        assert (doc.type, doc.id, alice.type, alice.id) == ("Document", "1", "User", "alice")
        assert backend.fact("document:1#owner@user:alice") == ("has_relation", doc, "owner", alice)
        assert backend.fact(("folder:f", "owner", "team:t#member")) == (
            "has_userset", backend.value("folder:f"), "owner", backend.value("team:t"), "member")
        assert backend.value("team:t").type == "Group"
        assert backend.fact("folder:f#viewer@user:*") == (
            "has_wildcard", backend.value("folder:f"), "viewer", "User")
        assert backend.attribute_facts("document:1", {
            "tenant": "acme", "level": 3, "public": False, "labels": ["a", "b"],
            "meta": {"owner": "bob"}, "gone": None}) == [
            ("has_attribute", doc, "tenant", "acme"), ("has_attribute", doc, "level", 3),
            ("has_attribute", doc, "public", False), ("has_attribute", doc, "labels", "a"),
            ("has_attribute", doc, "labels", "b"), ("has_attribute", doc, "meta.owner", "bob")]
        with pytest.raises(InvalidInputError):
            backend.fact("document:1#owner")


def test_the_sdk_sends_what_the_module_docstring_promises(
        served: tuple[OsoCloudServer, OsoCloudBackend]) -> None:
    server, backend = served
    resource = Entity("document", "ticket-1", {"classification": "internal"})
    backend.check("user:alice", "read", resource, {"risk": "low", "tool": {"calls": 2},
                                                   "labels": ["x", "y"], "trusted": True})
    path, body = server.bodies[-1]
    assert path == "/api/authorize"
    assert body == {
        "actor_type": "User", "actor_id": "alice", "action": "read",
        "resource_type": "Document", "resource_id": "ticket-1",
        "context_facts": [
            {"predicate": "has_attribute", "args": [
                {"type": "Document", "id": "ticket-1"}, {"type": "String", "id": "classification"},
                {"type": "String", "id": "internal"}]},
            {"predicate": "has_context", "args": [{"type": "String", "id": "risk"},
                                                  {"type": "String", "id": "low"}]},
            {"predicate": "has_context", "args": [{"type": "String", "id": "tool.calls"},
                                                  {"type": "Integer", "id": "2"}]},
            {"predicate": "has_context", "args": [{"type": "String", "id": "labels"},
                                                  {"type": "String", "id": "x"}]},
            {"predicate": "has_context", "args": [{"type": "String", "id": "labels"},
                                                  {"type": "String", "id": "y"}]},
            {"predicate": "has_context", "args": [{"type": "String", "id": "trusted"},
                                                  {"type": "Boolean", "id": "true"}]},
        ]}


@pytest.mark.parametrize("context", [
    {"score": 0.5}, {"raw": b"x"}, {"empty": ""}, {"big": 2**63}, {"obj": object()},
    {"": "x"}, {1: "x"}, {"nested": [{"a": 1}]}, "tenant=acme",
])
def test_a_context_oso_cannot_carry_denies_without_a_request(
        served: tuple[OsoCloudServer, OsoCloudBackend], context: Any) -> None:
    server, backend = served
    sent = len(server.bodies)
    decision = backend.check("user:alice", "read", "document:ticket-1", context)
    assert not decision.allowed
    assert decision.reasons[0].kind == "invalid_input"
    assert len(server.bodies) == sent
    authz = Authorizer(backend=backend)
    assert authz.check("user:alice", "read", "document:ticket-1", context).reasons[0].kind \
        == "invalid_input"


@pytest.mark.parametrize(("principal", "action", "resource"), [
    ("alice", "read", "document:ticket-1"),
    ("user:*", "read", "document:ticket-1"),
    ("user:alice", "read", "document:"),
    (42, "read", "document:ticket-1"),
    ("user:alice", "", "document:ticket-1"),
    ("user:alice", None, "document:ticket-1"),
    ("user:alice#member", "read", "document:ticket-1"),
])
async def test_malformed_input_denies_in_both_worlds(
        backend: OsoCloudBackend, principal: Any, action: Any, resource: Any) -> None:
    for decision in (backend.check(principal, action, resource),
                     await backend.acheck(principal, action, resource)):
        assert not decision.allowed
        assert decision.reasons[0].kind == "invalid_input"


# ------------------------------------------------------------------ the protocol
@pytest.mark.parametrize(("principal", "action", "resource", "expected"), CASES,
                         ids=["-".join(c[:3]) for c in CASES])
def test_parity(backend: OsoCloudBackend, principal: str, action: str, resource: str,
                expected: str) -> None:
    decision = Authorizer(backend=backend).check(principal, action, resource)
    assert ("allow" if decision.allowed else "deny") == expected, decision.reasons
    assert decision.policy_version == "oso-cloud"
    assert decision.reasons[0].kind == "backend"


async def test_parity_async(backend: OsoCloudBackend) -> None:
    authz = Authorizer(backend=backend, timeout=5.0)
    decisions = await asyncio.gather(*(authz.acheck(p, a, r) for p, a, r, _ in CASES))
    assert [("allow" if d.allowed else "deny") for d in decisions] == [c[3] for c in CASES]


async def test_batches_answer_in_order_and_deny_what_they_cannot_send(
        backend: OsoCloudBackend) -> None:
    requests: list[Any] = [CheckRequest(p, a, r) for p, a, r, _ in CASES]
    requests.insert(7, ("user:alice", "read", "not-an-entity"))
    expected = [c[3] for c in CASES]
    expected.insert(7, "deny")
    for decisions in (backend.check_many(requests), await backend.acheck_many(requests),
                      Authorizer(backend=backend).check_many(requests)):
        assert [("allow" if d.allowed else "deny") for d in decisions] == expected
        assert decisions[7].reasons[0].kind == "invalid_input"
    assert backend.check_many([]) == []
    assert len(await backend.acheck_many([CheckRequest("user:alice", "read", "bad")])) == 1


async def test_a_batch_runs_concurrently_within_the_bound(server: OsoCloudServer) -> None:
    server.fault, server.delay = "slow", 0.05
    with _backend(server.url, max_concurrency=4, timeout=2.0) as backend:
        requests = [CheckRequest("user:alice", "read", r) for r in RESOURCES] * 2
        started = time.perf_counter()
        decisions = backend.check_many(requests)
        assert time.perf_counter() - started < 0.05 * len(requests)  # not one by one
        assert server.max_in_flight == 4
        server.max_in_flight = 0
        again = await backend.acheck_many(requests)
        assert [d.allowed for d in again] == [d.allowed for d in decisions]
        assert server.max_in_flight == 4
    assert [d.allowed for d in decisions] == [
        LOCAL.check("user:alice", "read", r).allowed for r in RESOURCES] * 2


@pytest.mark.parametrize("resource_type", ["document", "folder", "team"])
async def test_list_resources_agrees_with_check(backend: OsoCloudBackend,
                                                resource_type: str) -> None:
    for principal in PRINCIPALS:
        for action in ACTIONS:
            listed = backend.list_resources(principal, action, resource_type)
            assert listed == await backend.alist_resources(principal, action, resource_type)
            assert listed == LOCAL.list_resources(principal, action, resource_type)
            for resource in RESOURCES:
                if resource.startswith(f"{resource_type}:"):
                    assert (resource in listed) == backend.check(principal, action,
                                                                 resource).allowed


async def test_list_actions_agrees_with_check(backend: OsoCloudBackend) -> None:
    for principal in PRINCIPALS:
        for resource in RESOURCES:
            actions = backend.list_actions(principal, resource)
            assert actions == await backend.alist_actions(principal, resource)
            assert actions == LOCAL.list_actions(principal, resource)
            assert actions == {a for a in ACTIONS
                               if backend.check(principal, a, resource).allowed}


def test_lists_are_read_page_by_page_to_the_end(server: OsoCloudServer) -> None:
    server.authz.write(add=[f"document:d{i}#owner@user:carol" for i in range(25)])
    server.max_page_size = 4
    with _backend(server.url, page_size=3) as backend:
        listed = backend.list_resources("user:carol", "read", "document")
    assert listed == server.authz.list_resources("user:carol", "read", "document")
    assert len(listed) == 26
    assert server.hits["/api/list"] == 9  # 26 ids, 3 a page
    assert all(body["page_size"] == 3 for path, body in server.bodies if path == "/api/list")


async def test_delegation_gives_the_local_answers(backend: OsoCloudBackend) -> None:
    remote = Authorizer(backend=backend, agents=_registry())
    local = Authorizer(POLICY, data=DATA)
    for agent in ("agent:assistant", "agent:scraper"):
        for user in ("user:alice", "user:bob", "user:carol"):
            d = Delegation(agent, user)
            for action in ACTIONS:
                assert remote.list_resources(d, action, "document") == \
                    local.list_resources(d, action, "document")
                for resource in RESOURCES:
                    expected = local.check(d, action, resource)
                    assert remote.check(d, action, resource).allowed == expected.allowed
                    assert (await remote.acheck(d, action, resource)).allowed == expected.allowed


def test_request_time_attributes_reach_the_policy(backend: OsoCloudBackend) -> None:
    elsewhere = Entity("document", "ticket-1", {"tenant": "globex"})
    for authz in (Authorizer(backend=backend), LOCAL):
        assert authz.check("user:alice", "read", "document:ticket-1").allowed
        decision = authz.check("user:alice", "read", elsewhere)
        assert not decision.allowed
        assert not authz.check(Entity("user", "alice", {"tenant": "globex"}), "read",
                               "document:ticket-1").allowed


# ---------------------------------------------------------------------- writes
def test_writes_become_facts_and_change_decisions(server: OsoCloudServer) -> None:
    with _backend(server.url) as backend:
        authz = Authorizer(backend=backend, cache=True)
        assert not authz.check("user:bob", "read", "document:ticket-1").allowed
        assert authz.write(add=["folder:tickets#viewer@team:eng#member"]) == 1
        assert server.authz.store.has(("folder:tickets", "viewer", "team:eng#member"))
        assert authz.check("user:bob", "read", "document:ticket-1").allowed  # cache invalidated
        authz.remove("folder:tickets#viewer@team:eng#member")
        assert not authz.check("user:bob", "read", "document:ticket-1").allowed
        authz.add("folder:archive#viewer@user:*")
        assert authz.check("user:bob", "read", "document:ticket-2").allowed
        assert authz.write() == 0
        with pytest.raises(InvalidInputError):
            authz.write(add=["folder:archive#viewer"])
        backend.set_attributes("user:bob", {"tenant": "globex"})
        authz.invalidate()
        assert server.authz.store.get_attributes("user:bob") == {"tenant": "globex"}
        assert not authz.check("user:bob", "read", "document:ticket-2").allowed
        backend.set_attributes("user:bob", None)
        assert server.authz.store.get_attributes("user:bob") == {}
        with pytest.raises(InvalidInputError):
            backend.set_attributes("user:bob", ["tenant"])  # type: ignore[arg-type]
    batches = [body for path, body in server.bodies if path == "/api/batch"]
    assert batches[0] == [{"inserts": [{"predicate": "has_userset", "args": [
        {"type": "Folder", "id": "tickets"}, {"type": "String", "id": "viewer"},
        {"type": "Team", "id": "eng"}, {"type": "String", "id": "member"}]}]}]
    assert batches[-1] == [{"deletes": [{"predicate": "has_attribute", "args": [
        {"type": "User", "id": "bob"}, {"type": None, "id": None}, {"type": None, "id": None}]}]}]


def test_load_data_sends_the_demo_data_in_batches() -> None:
    with OsoCloudServer() as server, _backend(server.url) as backend:
        data = {"relationships": [f"document:d{i}#owner@user:carol" for i in range(1500)],
                "attributes": {"user:carol": {"tenant": "acme"}}}
        assert backend.load_data(data) == 1501
        assert server.hits["/api/batch"] == 2
        assert len(server.authz.list_resources("user:carol", "read", "document")) == 1500
        with demo_backend() as demo:
            assert demo.check("user:alice", "read", "document:ticket-1").allowed


def test_a_failed_write_raises(server: OsoCloudServer) -> None:
    server.fault = "500"
    with _backend(server.url, write_timeout=3.0) as backend, \
            pytest.raises(BackendError, match="500"):
        backend.write(add=["document:x#owner@user:alice"])
    with _backend(refused_url(), fallback_url=server.url, write_timeout=3.0) as backend, \
            pytest.raises(BackendError):  # writes never go to a fallback node
        backend.write(add=["document:x#owner@user:alice"])


# ------------------------------------------------------------------------ faults
def test_a_slow_server_loses_to_the_deadline(server: OsoCloudServer) -> None:
    server.fault = "slow"
    with _backend(server.url, timeout=0.2) as backend:
        for call in (lambda: backend.check("user:alice", "read", "document:ticket-1"),
                     lambda: backend.list_actions("user:alice", "document:ticket-1"),
                     lambda: backend.list_resources("user:alice", "read", "document"),
                     lambda: backend.check_many([CheckRequest("user:alice", "read",
                                                              "document:ticket-1")])):
            started = time.perf_counter()
            with pytest.raises(BackendError, match=r"did not answer .* within 0.2s"):
                call()
            assert time.perf_counter() - started < 1.0
        authz = Authorizer(backend=backend)
        decision = authz.check("user:alice", "read", "document:ticket-1")
        assert not decision.allowed
        assert decision.reasons[0].kind == "backend_error"
        assert authz.list_resources("user:alice", "read", "document") == frozenset()
        assert authz.list_actions("user:alice", "document:ticket-1") == frozenset()
        assert [d.reasons[0].kind for d in authz.check_many(
            [("user:alice", "read", r) for r in RESOURCES[:3]])] == ["backend_error"] * 3


async def test_a_slow_server_never_blocks_the_event_loop(server: OsoCloudServer) -> None:
    server.fault = "slow"
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    running = asyncio.create_task(ticker())
    with _backend(server.url, timeout=0.3) as backend:
        started = time.perf_counter()
        results = await asyncio.gather(
            backend.acheck("user:alice", "read", "document:ticket-1"),
            backend.alist_resources("user:alice", "read", "document"),
            backend.alist_actions("user:alice", "document:ticket-1"),
            backend.acheck_many([CheckRequest("user:alice", "read", "document:ticket-1")] * 3),
            return_exceptions=True)
        elapsed = time.perf_counter() - started
        authz = Authorizer(backend=backend)
        denied = await authz.acheck("user:alice", "read", "document:ticket-1")
    running.cancel()
    assert all(isinstance(r, BackendError) for r in results), results
    assert elapsed < 1.0
    assert ticks >= 15
    assert denied.reasons[0].kind == "backend_error"


async def test_the_authorizer_timeout_also_holds(server: OsoCloudServer) -> None:
    server.fault = "slow"
    with _backend(server.url, timeout=5.0) as backend:
        authz = Authorizer(backend=backend, timeout=0.1)
        started = time.perf_counter()
        decision = await authz.acheck("user:alice", "read", "document:ticket-1")
        assert time.perf_counter() - started < 1.0
    assert decision.reasons[0].kind == "backend_error"


async def test_a_refused_connection_denies() -> None:
    with _backend(refused_url(), timeout=0.5) as backend:
        for call in (lambda: backend.check("user:alice", "read", "document:ticket-1"),
                     lambda: backend.list_resources("user:alice", "read", "document")):
            with pytest.raises(BackendError):
                call()
        with pytest.raises(BackendError):
            await backend.acheck("user:alice", "read", "document:ticket-1")
        decision = Authorizer(backend=backend).check("user:alice", "read", "document:ticket-1")
    assert decision.reasons[0].kind == "backend_error"


# fault → what the BackendError says (the SDK answers the first three after one retry)
ANSWER_FAULTS = [
    ("500", "500"),
    ("401", "401"),
    ("malformed", "deserialize"),
    ("allowed_string", r"allowed='true' \(str\), not true or false"),
    ("allowed_int", r"allowed=1 \(int\)"),
    ("allowed_null", r"allowed=None \(NoneType\)"),
    ("allowed_missing", "TypeError"),
    ("close", "ChunkedEncodingError|ConnectionError|ProtocolError"),
    ("drop", "ConnectionError"),
]


@pytest.mark.parametrize(("fault", "message"), ANSWER_FAULTS, ids=[f for f, _ in ANSWER_FAULTS])
async def test_a_bad_answer_is_never_an_allow(server: OsoCloudServer, fault: str,
                                              message: str) -> None:
    server.fault = fault
    with _backend(server.url, timeout=3.0) as backend:
        with pytest.raises(BackendError, match=message) as raised:
            backend.check("user:alice", "read", "document:ticket-1")
        if fault not in ("allowed_string", "allowed_int", "allowed_null"):
            assert raised.value.__cause__ is not None  # the foreign error, kept and translated
        with pytest.raises(BackendError, match=message):
            await backend.acheck("user:alice", "read", "document:ticket-1")
        authz = Authorizer(backend=backend, cache=True)
        for _ in range(2):  # a failure is never cached
            hits = sum(server.hits.values())
            decision = authz.check("user:alice", "read", "document:ticket-1")
            assert not decision.allowed
            assert decision.reasons[0].kind == "backend_error"
            assert sum(server.hits.values()) > hits
        with pytest.raises(BackendError):
            Authorizer(backend=backend, on_backend_error="raise").check(
                "user:alice", "read", "document:ticket-1")


LIST_FAULTS = [
    ("list_loop", "repeated the page token"),
    ("list_not_list", "not a list"),
    ("list_wildcard", "wildcard"),
    ("list_bad_id", "not an entity id"),
    ("list_bad_token", "not a string"),
]


@pytest.mark.parametrize(("fault", "message"), LIST_FAULTS, ids=[f for f, _ in LIST_FAULTS])
async def test_a_list_is_never_partial(server: OsoCloudServer, fault: str, message: str) -> None:
    server.fault = fault
    server.max_page_size = 1
    with _backend(server.url, timeout=3.0) as backend:
        with pytest.raises(BackendError, match=message):
            backend.list_resources("user:alice", "read", "document")
        with pytest.raises(BackendError, match=message):
            await backend.alist_resources("user:alice", "read", "document")
        assert Authorizer(backend=backend).list_resources("user:alice", "read",
                                                          "document") == frozenset()


def test_a_list_longer_than_max_pages_raises(server: OsoCloudServer) -> None:
    server.max_page_size = 1
    with _backend(server.url, max_pages=2) as backend, \
            pytest.raises(BackendError, match="more than 2 pages"):
        backend.list_resources("user:alice", "read", "document")


async def test_a_bad_actions_answer_raises(server: OsoCloudServer) -> None:
    server.fault = "actions_bad"
    with _backend(server.url) as backend:
        with pytest.raises(BackendError, match="not a list of action names"):
            backend.list_actions("user:alice", "document:ticket-1")
        with pytest.raises(BackendError, match="not a list of action names"):
            await backend.alist_actions("user:alice", "document:ticket-1")


async def test_a_failing_batch_is_denied_whole(server: OsoCloudServer) -> None:
    requests = [CheckRequest("user:alice", "read", r) for r in RESOURCES]
    with _backend(server.url, timeout=3.0) as backend:
        server.fault, server.fault_paths = "allowed_string", {"/api/authorize"}
        with pytest.raises(BackendError, match="not true or false"):
            backend.check_many(requests)
        with pytest.raises(BackendError, match="not true or false"):
            await backend.acheck_many(requests)
        decisions = Authorizer(backend=backend).check_many(requests)
        assert {d.reasons[0].kind for d in decisions} == {"backend_error"}
        decisions = await Authorizer(backend=backend).acheck_many(requests)
        assert not any(d.allowed for d in decisions)


def test_the_fallback_node_answers_when_oso_cloud_refuses(server: OsoCloudServer) -> None:
    with _backend(refused_url(), fallback_url=server.url, timeout=3.0) as backend:
        assert backend.check("user:alice", "read", "document:ticket-1").allowed
        assert not backend.check("user:bob", "read", "document:ticket-1").allowed
        assert backend.list_resources("user:bob", "read", "document") == {"document:runbook-1"}
        assert backend.list_actions("user:alice", "document:ticket-1") == set(ACTIONS)
    assert server.hits["/api/authorize"] == 2
    assert server.hits["/api/list"] == 1


def test_a_closed_backend_denies(server: OsoCloudServer) -> None:
    backend = _backend(server.url)
    backend.close()
    with pytest.raises(BackendError, match="closed"):
        backend.check("user:alice", "read", "document:ticket-1")
    assert not Authorizer(backend=backend).check("user:alice", "read",
                                                 "document:ticket-1").allowed


def test_every_fault_of_the_server_is_tested() -> None:
    tested = {f for f, _ in ANSWER_FAULTS} | {f for f, _ in LIST_FAULTS} | {"slow",
                                                                             "actions_bad"}
    assert tested == FAULTS


# ------------------------------------------------- the Polar policy, interpreted
# A small interpreter of the Polar that examples/backends/oso_cloud/policy.polar
# uses (typed rule heads, facts, `and`, `not` over facts, `matches`, test blocks),
# so that the shipped policy is checked against the parity table too.

_TOKEN = re.compile(r'\s*(?:(#[^\n]*)|("(?:[^"\\]|\\.)*")|([A-Za-z_][A-Za-z0-9_]*)|(\S))')


class _Var:
    def __init__(self, name: str) -> None:
        self.name = name


class _Polar:
    def __init__(self, text: str) -> None:
        self.tokens = list(self._tokens(text))
        self.pos = 0
        self.actors: set[str] = set()
        self.resources: set[str] = set()
        self.rules: dict[str, list[tuple[list[tuple[Any, str | None]], list[Any]]]] = {}
        self.tests: list[tuple[list[Any], list[tuple[bool, Any]]]] = []
        while self.pos < len(self.tokens):
            self._statement()

    @staticmethod
    def _tokens(text: str) -> Iterator[str]:
        for comment, string, name, punct in _TOKEN.findall(text):
            if not comment and (string or name or punct):
                yield string or name or punct

    def _next(self, expected: str | None = None) -> str:
        token = self.tokens[self.pos]
        self.pos += 1
        assert expected is None or token == expected, (expected, token, self.pos)
        return token

    def _peek(self) -> str:
        return self.tokens[self.pos]

    def _statement(self) -> None:
        head = self._next()
        if head in ("actor", "resource") and self.tokens[self.pos + 1] == "{":
            (self.actors if head == "actor" else self.resources).add(self._next())
            self._next("{")
            self._next("}")
        elif head == "test":
            self._next()
            self._next("{")
            self._next("setup")
            self._next("{")
            facts = []
            while self._peek() != "}":
                facts.append(self._call(self._next()))
                self._next(";")
            self._next("}")
            asserts = []
            while self._peek() != "}":
                positive = self._next() == "assert"
                asserts.append((positive, self._call(self._next())))
                self._next(";")
            self._next("}")
            self.tests.append((facts, asserts))
        else:
            params: list[tuple[Any, str | None]] = []
            self._next("(")
            while self._peek() != ")":
                term = self._term()
                kind = None
                if self._peek() == ":":
                    self._next()
                    kind = self._next()
                params.append((term, kind))
                if self._peek() == ",":
                    self._next()
            self._next(")")
            body: list[Any] = []
            if self._peek() == "if":
                self._next()
                body.append(self._literal())
                while self._peek() == "and":
                    self._next()
                    body.append(self._literal())
            self._next(";")
            self.rules.setdefault(head, []).append((params, body))

    def _term(self) -> Any:
        token = self._next()
        if token.startswith('"'):
            return ("String", token[1:-1])
        if self._peek() == "{":
            self._next()
            value = self._next()[1:-1]
            self._next("}")
            return (token, value)
        return _Var(token)

    def _call(self, name: str) -> tuple[str, list[Any]]:
        self._next("(")
        args = []
        while self._peek() != ")":
            args.append(self._term())
            if self._peek() == ",":
                self._next()
        self._next(")")
        return name, args

    def _literal(self) -> Any:
        token = self._next()
        if token == "not":
            return ("not", *self._call(self._next()))
        if self._peek() == "matches":
            self._next()
            return ("matches", _Var(token), self._next())
        return ("call", *self._call(token))

    # ---------------------------------------------------------------- evaluation
    def is_a(self, value: tuple[str, str], kind: str) -> bool:
        return value[0] == kind or (kind == "Actor" and value[0] in self.actors) or (
            kind == "Resource" and value[0] in self.actors | self.resources)

    def query(self, facts: set[tuple[Any, ...]], name: str, args: list[Any]) -> bool:
        return any(True for _ in self._solve(facts, name, args, {}, 0))

    @staticmethod
    def _walk(term: Any, env: dict[_Var, Any]) -> Any:
        while isinstance(term, _Var) and term in env:
            term = env[term]
        return term

    def _unify(self, a: Any, b: Any, env: dict[_Var, Any]) -> dict[_Var, Any] | None:
        a, b = self._walk(a, env), self._walk(b, env)
        if isinstance(a, _Var):
            return {**env, a: b} if a is not b else env
        if isinstance(b, _Var):
            return {**env, b: a}
        return env if a == b else None

    def _solve(self, facts: set[tuple[Any, ...]], name: str, args: list[Any],
               env: dict[_Var, Any], depth: int) -> Iterator[dict[_Var, Any]]:
        assert depth < 64, "runaway recursion"
        for fact in facts:
            if fact[0] == name and len(fact) == len(args) + 1:
                bound: dict[_Var, Any] | None = env
                for term, value in zip(args, fact[1:], strict=True):
                    bound = self._unify(term, value, bound) if bound is not None else None
                if bound is not None:
                    yield bound
        for params, body in self.rules.get(name, []):
            if len(params) != len(args):
                continue
            fresh: dict[str, _Var] = {}

            def rename(term: Any, fresh: dict[str, _Var] = fresh) -> Any:
                return fresh.setdefault(term.name, _Var(term.name)) if isinstance(term, _Var) \
                    else term

            bound = env
            checks = []
            for (term, kind), arg in zip(params, args, strict=True):
                bound = self._unify(rename(term), arg, bound) if bound is not None else None
                if kind is not None:
                    checks.append((rename(term), kind))
            if bound is None:
                continue
            renamed = [("matches", rename(lit[1]), lit[2]) if lit[0] == "matches"
                       else (lit[0], lit[1], [rename(a) for a in lit[2]]) for lit in body]
            yield from self._body(facts, renamed, bound, checks, depth)

    def _body(self, facts: set[tuple[Any, ...]], body: list[Any], env: dict[_Var, Any],
              checks: list[tuple[Any, str]], depth: int) -> Iterator[dict[_Var, Any]]:
        pending = []
        for term, kind in checks:
            value = self._walk(term, env)
            if isinstance(value, _Var):
                pending.append((term, kind))
            elif not self.is_a(value, kind):
                return
        if not body:
            assert not pending, "a variable stayed unbound"
            yield env
            return
        lit, rest = body[0], body[1:]
        if lit[0] == "matches":
            yield from self._body(facts, rest, env, [*pending, (lit[1], lit[2])], depth)
        elif lit[0] == "not":
            args = [self._walk(a, env) for a in lit[2]]
            assert not any(isinstance(a, _Var) for a in args), "negation of an unbound fact"
            assert lit[1] not in self.rules, "Oso negates facts only"
            if not any(True for _ in self._solve(facts, lit[1], args, env, depth + 1)):
                yield from self._body(facts, rest, env, pending, depth)
        else:
            for found in self._solve(facts, lit[1], lit[2], env, depth + 1):
                yield from self._body(facts, rest, found, pending, depth)


POLAR = _Polar((ROOT / "examples/backends/oso_cloud/policy.polar").read_text())


def _polar_facts(backend: OsoCloudBackend, data: Any = DATA) -> set[tuple[Any, ...]]:
    from agentauthz.engine.data import load_data

    def plain(arg: Any) -> Any:
        return ("String", arg) if isinstance(arg, str) else (arg.type, arg.id)

    dataset = load_data(data)
    facts = [backend.fact(r) for r in dataset.relationships]
    for entity, attributes in dataset.attributes.items():
        facts.extend(backend.attribute_facts(entity, attributes))
    return {(f[0], *(plain(a) for a in f[1:])) for f in facts}


def test_the_polar_policy_gives_the_parity_table() -> None:
    with _backend("http://127.0.0.1:1") as backend:
        facts = _polar_facts(backend)
        for principal, action, resource, expected in CASES:
            allowed = _polar_allows(backend, facts, principal, action, resource)
            assert ("allow" if allowed else "deny") == expected, (principal, action, resource)


def test_the_polar_policy_passes_its_own_tests() -> None:
    assert POLAR.tests, "policy.polar has a test block"
    for setup, asserts in POLAR.tests:
        facts = {(name, *args) for name, args in setup}
        for positive, (name, args) in asserts:
            assert POLAR.query(facts, name, args) is positive, (name, args)


# The parity table never reaches the rules (no one it lists crosses a tenant, and the
# high-risk agent holds no relation): this data does, and Polar must agree with local.
RULES_DATA = {
    "relationships": [
        *yaml.safe_load(Path(DATA).read_text())["relationships"],
        "team:support#member@user:mallory",          # crosses the tenant boundary
        "team:support#member@agent:scraper",         # high risk: may read, not write or export
        "team:eng#member@team:support#member",       # nested teams
        "folder:archive#viewer@user:*",              # every user views the archive
        "document:draft#parent@folder:tickets",      # no classification: never exported
        "document:draft#owner@user:dave",
    ],
    "attributes": {**yaml.safe_load(Path(DATA).read_text())["attributes"],
                   "user:dave": {"tenant": "acme"}, "document:draft": {"tenant": "acme"}},
}


def _polar_allows(backend: OsoCloudBackend, facts: set[tuple[Any, ...]], principal: str,
                  action: str, resource: str) -> bool:
    actor, target = backend.value(principal), backend.value(resource)
    return POLAR.query(facts, "allow", [(actor.type, actor.id), ("String", action),
                                        (target.type, target.id)])


def test_the_polar_policy_agrees_with_local_on_the_rules() -> None:
    local = Authorizer(POLICY, data=RULES_DATA)
    principals = [*PRINCIPALS, "user:dave"]
    resources = [*RESOURCES, "document:draft"]
    with _backend("http://127.0.0.1:1") as backend:
        facts = _polar_facts(backend, RULES_DATA)
        outcomes = {(p, a, r): _polar_allows(backend, facts, p, a, r)
                    for p in principals for a in ACTIONS for r in resources}
    assert outcomes == {key: local.check(*key).allowed for key in outcomes}
    reached = {key for key, allowed in outcomes.items() if allowed}
    assert ("user:mallory", "read", "document:ticket-1") not in reached   # tenant isolation
    assert ("agent:scraper", "read", "document:ticket-1") in reached
    assert ("agent:scraper", "write", "document:ticket-1") not in reached  # high-risk agents
    assert ("user:dave", "write", "document:draft") in reached
    assert ("user:dave", "export", "document:draft") not in reached        # no classification
    assert ("user:alice", "write", "document:runbook-1") in reached        # nested teams
    assert ("user:carol", "read", "document:ticket-2") in reached          # the wildcard


def test_the_polar_policy_is_stricter_than_local_without_a_tenant() -> None:
    data = {"relationships": ["document:note#owner@user:dave"],
            "attributes": {"document:note": {"classification": "internal"}}}
    local = Authorizer(POLICY, data=data)
    with _backend("http://127.0.0.1:1") as backend:
        facts = _polar_facts(backend, data)
        assert local.check("user:dave", "read", "document:note").allowed
        assert not _polar_allows(backend, facts, "user:dave", "read", "document:note")
