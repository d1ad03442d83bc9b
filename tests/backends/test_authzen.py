"""The AuthZEN backend against a PDP that speaks the specification on a real loopback socket.

The server (``servers/authzen_server.py``) validates every request as the
AuthZEN 1.0 specification requires and answers from the local evaluator
loaded with the demo policy, so the adapter must give the parity table's
answers; its fault hooks make it slow, absent, broken or lying, and every
such answer must be a deny with a reason, never an allow and never a crash.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.util
import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentauthz import Authorizer, Entity
from agentauthz.agents import AgentRegistry, Delegation
from agentauthz.backends.authzen import AuthZENBackend, Endpoints
from agentauthz.demo import DATA, POLICY
from agentauthz.engine.evaluator import CheckRequest, Evaluator
from agentauthz.errors import BackendError, ConfigurationError
from agentauthz.policy.schema import Policy
from agentauthz.typing import Backend
from tests.backends.servers.authzen_server import (
    APIS,
    PATHS,
    WELL_KNOWN,
    AuthZENServer,
    Handler,
    close_mid_response,
    demo_backend,
    demo_evaluator,
    raw,
    slow,
    status,
)

CASES = [tuple(c) for c in yaml.safe_load(
    (Path(__file__).with_name("parity_cases.yaml")).read_text())["cases"]]
ALICE_READS = ("user:alice", "read", "document:ticket-1")  # allowed: a leak would show


@pytest.fixture(scope="module")
def evaluator() -> Evaluator:
    return demo_evaluator()


@pytest.fixture
def server(evaluator: Evaluator) -> Iterator[AuthZENServer]:
    with AuthZENServer(evaluator) as pdp:
        yield pdp


@pytest.fixture
def backend(server: AuthZENServer) -> Iterator[AuthZENBackend]:
    with AuthZENBackend(server.url, timeout=2.0, retries=0) as b:
        yield b


def _capture(server: AuthZENServer) -> list[tuple[str, dict[str, Any]]]:
    seen: list[tuple[str, dict[str, Any]]] = []

    def rewrite(api: str, request: dict[str, Any], answer: Any) -> Any:
        seen.append((api, request))
        return answer

    server.rewrite = rewrite
    return seen


def _posts(server: AuthZENServer, api: str) -> int:
    return server.counts[PATHS[api]]


# ------------------------------------------------------------------ protocol
def test_it_is_a_backend(backend: AuthZENBackend) -> None:
    assert isinstance(backend, Backend)
    assert backend.name == "authzen"
    assert backend.version() is None
    assert repr(backend).startswith("AuthZENBackend('http://127.0.0.1:")


def test_check_sends_the_access_evaluation_request(server: AuthZENServer,
                                                   backend: AuthZENBackend) -> None:
    seen = _capture(server)
    assert backend.check(*ALICE_READS).allowed
    when = dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC)
    alice = Entity("user", "alice", {"tenant": "acme"})
    assert not backend.check(alice, "export", "document:ticket-2",
                             {"at": when, "ttl": dt.timedelta(minutes=5), "tags": {"b"}})
    assert seen == [
        ("evaluation", {"subject": {"type": "user", "id": "alice"}, "action": {"name": "read"},
                        "resource": {"type": "document", "id": "ticket-1"}}),
        ("evaluation", {"subject": {"type": "user", "id": "alice",
                                    "properties": {"tenant": "acme"}},
                        "action": {"name": "export"},
                        "resource": {"type": "document", "id": "ticket-2"},
                        "context": {"at": "2026-01-02T03:04:00+00:00", "ttl": "300s",
                                    "tags": ["b"]}}),
    ]


def test_properties_reach_the_pdp(backend: AuthZENBackend) -> None:
    # the server merges properties over stored attributes, as the local evaluator does
    globex = Entity("user", "alice", {"tenant": "globex"})
    assert not backend.check(globex, "read", "document:ticket-1").allowed
    assert backend.check(Entity("user", "mallory", {"tenant": "globex"}), "read",
                         "document:globex-plan").allowed is False  # no relation: still a deny


def test_a_decision_carries_the_pdp_reasons_and_request_id(server: AuthZENServer,
                                                           backend: AuthZENBackend) -> None:
    allow = backend.check(*ALICE_READS)
    deny = backend.check("user:bob", "read", "document:ticket-1")
    assert [r.kind for r in allow.reasons] == ["pdp"]
    assert allow.reasons[0].message.startswith("allowed by the AuthZEN PDP: document.read")
    assert deny.reasons[0].message.startswith("denied by the AuthZEN PDP: no relation path")
    assert deny.reasons[0].rule == "default_deny"
    assert deny.policy_version == "unknown"
    ids = server.request_ids[1:]  # after the metadata request
    assert len(ids) == 2 and len(set(ids)) == 2
    assert f"(X-Request-ID {ids[0]})" in allow.reasons[0].message
    assert f"(X-Request-ID {ids[1]})" in deny.reasons[0].message


def test_reason_objects_of_the_spec_become_reasons(server: AuthZENServer,
                                                   backend: AuthZENBackend) -> None:
    server.fault = raw(json.dumps({"decision": False, "context": {
        "id": "C076E82F", "reason_admin": {"es": "política", "en": "Request failed\npolicy"},
        "reason_user": {"en-403": "Insufficient privileges"},
        "error": {"status": 404, "message": "Resource not found"}}}).encode())
    decision = backend.check(*ALICE_READS)
    assert not decision.allowed
    kinds = [(r.kind, r.rule) for r in decision.reasons]
    assert kinds == [("pdp", "C076E82F"), ("pdp_user_reason", "C076E82F"),
                     ("pdp_error", "C076E82F")]
    assert "denied by the AuthZEN PDP: Request failed policy" in decision.reasons[0].message
    assert decision.reasons[1].message == "Insufficient privileges"
    assert decision.reasons[2].message == "404 Resource not found"


def test_request_ids_come_from_the_callers_factory(server: AuthZENServer) -> None:
    ids = iter(f"req-{i}" for i in range(10))
    with AuthZENBackend(server.url, request_id=lambda: next(ids)) as b:
        assert b.check(*ALICE_READS).reasons[0].message.endswith("(X-Request-ID req-1)")
    assert server.request_ids == ["req-0", "req-1"]


def test_policy_version_is_reported_when_known(server: AuthZENServer) -> None:
    with AuthZENBackend(server.url, policy_version="bundle-7") as b:
        assert b.version() == "bundle-7"
        assert b.check(*ALICE_READS).policy_version == "bundle-7"
        assert Authorizer(backend=b).policy_version == "bundle-7"


def test_check_many_is_one_evaluations_request_in_order(server: AuthZENServer,
                                                        backend: AuthZENBackend) -> None:
    seen = _capture(server)
    requests = [CheckRequest(p, a, r) for p, a, r, _ in CASES[:40]]
    decisions = backend.check_many(requests)
    assert ["allow" if d.allowed else "deny" for d in decisions] == [c[3] for c in CASES[:40]]
    assert _posts(server, "evaluations") == 1 and _posts(server, "evaluation") == 0
    assert seen[0][1]["options"] == {"evaluations_semantic": "execute_all"}
    assert len(seen[0][1]["evaluations"]) == 40
    assert backend.check_many([]) == []


def test_check_many_denies_malformed_items_in_place(server: AuthZENServer,
                                                    backend: AuthZENBackend) -> None:
    decisions = backend.check_many([CheckRequest(*ALICE_READS), CheckRequest("alice", "read", "x"),
                                    ("user:alice", "read", "document:ticket-1"),  # type: ignore[list-item]
                                    CheckRequest("user:alice", "read", "document:ticket-1",
                                                 {"x": object()})])
    assert [d.allowed for d in decisions] == [True, False, False, False]
    assert [d.reasons[0].kind for d in decisions[1:]] == ["invalid_input"] * 3
    assert _posts(server, "evaluations") == 1


def test_check_many_splits_big_batches(server: AuthZENServer) -> None:
    requests = [CheckRequest(p, a, r) for p, a, r, _ in CASES] * 2
    with AuthZENBackend(server.url, batch_size=100, max_concurrency=2) as b:
        decisions = b.check_many(requests)
    assert _posts(server, "evaluations") == 3
    assert ["allow" if d.allowed else "deny" for d in decisions] == [c[3] for c in CASES] * 2


async def test_acheck_many_splits_big_batches(server: AuthZENServer) -> None:
    requests = [CheckRequest(p, a, r) for p, a, r, _ in CASES] * 2
    async with AuthZENBackend(server.url, batch_size=50) as b:
        decisions = await b.acheck_many(requests)
    assert _posts(server, "evaluations") == 6
    assert ["allow" if d.allowed else "deny" for d in decisions] == [c[3] for c in CASES] * 2


def _in_flight(server: AuthZENServer) -> list[int]:
    """Make each POST take 50 ms and record the most answered at once."""
    lock = threading.Lock()
    state = [0, 0]  # now, most

    def fault(handler: Handler, api: str) -> bool:
        with lock:
            state[0] += 1
            state[1] = max(state[1], state[0])
        time.sleep(0.05)
        with lock:
            state[0] -= 1
        return False

    server.fault = fault
    return state


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_without_the_batch_api_check_many_evaluates_each_concurrently(
        evaluator: Evaluator, mode: str) -> None:
    with AuthZENServer(evaluator, apis=[a for a in APIS if a != "evaluations"]) as pdp, \
            AuthZENBackend(pdp.url, max_concurrency=3) as b:
        state = _in_flight(pdp)
        requests = [CheckRequest(p, a, r) for p, a, r, _ in CASES[:9]]
        if mode == "sync":
            decisions = b.check_many(requests)
        else:
            decisions = asyncio.run(_acheck_many_and_close(b, requests))
        assert ["allow" if d.allowed else "deny" for d in decisions] == [c[3] for c in CASES[:9]]
        assert _posts(pdp, "evaluation") == 9 and _posts(pdp, "evaluations") == 0
        assert 2 <= state[1] <= 3


async def _acheck_many_and_close(b: AuthZENBackend, requests: list[CheckRequest]) -> Any:
    try:
        return await b.acheck_many(requests)
    finally:
        await b.aclose()


def test_list_resources_follows_every_page(server: AuthZENServer, backend: AuthZENBackend) -> None:
    seen = _capture(server)
    found = backend.list_resources("user:alice", "read", "document")
    assert found == {"document:ticket-1", "document:ticket-2", "document:runbook-1"}
    assert _posts(server, "search_resource") == 2  # a page size of 2
    first, second = (request for _, request in seen)
    assert first == {"subject": {"type": "user", "id": "alice"}, "action": {"name": "read"},
                     "resource": {"type": "document"}}
    assert second["page"]["token"]
    assert backend.list_resources("user:alice", "read", "spaceship") == frozenset()


def test_page_size_is_sent_as_the_page_limit(server: AuthZENServer) -> None:
    seen = _capture(server)
    with AuthZENBackend(server.url, page_size=1) as b:
        assert len(b.list_resources("user:alice", "read", "document")) == 3
    assert [request["page"].get("limit") for _, request in seen] == [1, 1, 1]


def test_list_actions_and_list_subjects_use_their_searches(server: AuthZENServer,
                                                           backend: AuthZENBackend) -> None:
    seen = _capture(server)
    assert backend.list_actions("user:alice", "document:ticket-1") == {"read", "write", "export"}
    assert backend.list_actions("user:alice", "folder:runbooks") == {"read"}
    assert backend.list_subjects("user", "read", "folder:runbooks") == {"user:alice", "user:bob"}
    assert seen[0] == ("search_action", {"subject": {"type": "user", "id": "alice"},
                                         "resource": {"type": "document", "id": "ticket-1"}})
    assert seen[-1][1]["subject"] == {"type": "user"}


async def test_the_async_twins_answer_the_same(server: AuthZENServer) -> None:
    async with AuthZENBackend(server.url) as b:
        assert (await b.acheck(*ALICE_READS)).allowed
        assert not (await b.acheck("user:bob", "read", "document:ticket-1")).allowed
        assert await b.alist_resources("user:bob", "read", "document") == {"document:runbook-1"}
        assert await b.alist_actions("user:bob", "folder:runbooks") == {"read", "write"}
        assert await b.alist_subjects("agent", "read", "document:ticket-2") == frozenset()
        assert (await b.adiscover()).discovered


def test_malformed_input_is_denied_without_asking(server: AuthZENServer,
                                                  backend: AuthZENBackend) -> None:
    cases: list[tuple[Any, Any, Any, Any]] = [
        ("alice", "read", "document:ticket-1", None),
        ("user:alice", "read", "document:*", None),
        ("team:eng#member", "read", "document:ticket-1", None),
        ("user:alice", "", "document:ticket-1", None),
        ("user:alice", "read", "document:ticket-1", ["not", "a", "mapping"]),
        ("user:alice", "read", "document:ticket-1", {"n": float("nan")}),
        (None, "read", "document:ticket-1", None),
    ]
    for principal, action, resource, context in cases:
        decision = backend.check(principal, action, resource, context)
        assert not decision.allowed and decision.reasons[0].kind == "invalid_input", decision
    assert sum(server.counts.values()) == 0
    authz = Authorizer(backend=backend)
    assert authz.list_resources("alice", "read", "document") == frozenset()
    assert authz.list_resources("user:alice", "read", "no such type") == frozenset()


# ------------------------------------------- the test PDP keeps to the spec
ALICE = {"type": "user", "id": "alice"}
READ = {"name": "read"}
TICKET = {"type": "document", "id": "ticket-1"}

# (api, body, status, answer or None): the conformance scenario's requests, on the demo data
CONFORMANCE: list[tuple[str, Any, int, Any]] = [
    ("evaluation", {"subject": ALICE, "action": READ, "resource": TICKET}, 200,
     {"decision": True}),
    ("evaluation", {"subject": ALICE, "action": READ, "resource": TICKET, "foo": "bar",
                    "context": {"time": "2025-06-27T18:03-07:00"}}, 200, {"decision": True}),
    ("evaluation", {"action": READ, "resource": TICKET}, 400, None),
    ("evaluation", {"subject": ALICE, "resource": TICKET}, 400, None),
    ("evaluation", {"subject": ALICE, "action": READ}, 400, None),
    ("evaluation", {"subject": {"id": "alice"}, "action": READ, "resource": TICKET}, 400, None),
    ("evaluation", {"subject": {"type": "user"}, "action": READ, "resource": TICKET}, 400, None),
    ("evaluation", {"subject": ALICE, "action": {}, "resource": TICKET}, 400, None),
    ("evaluation", {"subject": ALICE, "action": READ, "resource": {"id": "x"}}, 400, None),
    ("evaluation", {"subject": "alice", "action": READ, "resource": TICKET}, 400, None),
    ("evaluation", {"subject": ALICE, "action": {"name": 123}, "resource": TICKET}, 400, None),
    ("evaluation", b"{not json", 400, None),
    ("evaluation", b"", 400, None),
    ("evaluation", b"[1]", 400, None),
    ("evaluations", {"subject": ALICE, "action": READ,
                     "evaluations": [{"resource": TICKET}, {}]}, 200,
     {"evaluations": [{"decision": True}, {"decision": False}]}),
    ("evaluations", {"subject": ALICE, "action": READ, "resource": TICKET, "evaluations": []},
     200, {"decision": True}),
    ("evaluations", {"subject": ALICE, "action": {"name": "write"},
                     "resource": {"type": "document"},
                     "evaluations": [{"resource": {"id": "ticket-1"}},
                                     {"resource": {"type": "document", "id": "runbook-1"}}]},
     200, {"evaluations": [{"decision": True}, {"decision": False}]}),
    ("evaluations", {"subject": ALICE, "action": READ, "options": {
        "evaluations_semantic": "deny_on_first_deny"}, "evaluations": [
        {"resource": TICKET}, {"resource": {"type": "document", "id": "payroll"}},
        {"resource": TICKET}]}, 200, {"evaluations": [{"decision": True}, {"decision": False}]}),
    ("evaluations", {"subject": ALICE, "action": READ, "options": {
        "evaluations_semantic": "permit_on_first_permit"}, "evaluations": [
        {"resource": {"type": "document", "id": "payroll"}}, {"resource": TICKET},
        {"resource": TICKET}]}, 200, {"evaluations": [{"decision": False}, {"decision": True}]}),
    ("evaluations", {"subject": ALICE, "action": READ, "options": {"evaluations_semantic": "x"},
                     "evaluations": [{"resource": TICKET}]}, 400, None),
    ("search_subject", {"subject": {"type": "user"}, "action": READ, "resource": TICKET}, 200,
     {"results": [{"type": "user", "id": "alice"}]}),
    ("search_subject", {"subject": {"type": "spaceship"}, "action": READ, "resource": TICKET},
     200, {"results": []}),
    ("search_subject", {"subject": {"type": "user"}, "resource": TICKET}, 400, None),
    ("search_subject", {"subject": {"type": "user"}, "action": READ,
                        "resource": {"type": "document"}}, 400, None),
    ("search_resource", {"subject": ALICE, "action": READ, "resource": {"type": "folder"},
                         "page": {"limit": 1}}, 200, {"results": [{"type": "folder",
                                                                   "id": "archive"}]}),
    ("search_resource", {"action": READ, "resource": {"type": "document"}}, 400, None),
    ("search_resource", {"subject": {"type": "user"}, "action": READ,
                         "resource": {"type": "document"}}, 400, None),
    ("search_resource", {"subject": ALICE, "action": READ, "resource": {"type": "document"},
                         "page": {"token": "forged"}}, 400, None),
    ("search_action", {"subject": {"type": "user", "id": "nonexistent-user"},
                       "resource": TICKET}, 200, {"results": []}),
    ("search_action", {"subject": ALICE}, 400, None),
]


@pytest.mark.parametrize(("api", "body", "code", "expected"), CONFORMANCE,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CONFORMANCE)])
def test_the_test_pdp_answers_the_conformance_scenario(server: AuthZENServer, api: str,
                                                       body: Any, code: int,
                                                       expected: Any) -> None:
    import httpx

    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = httpx.post(server.url + PATHS[api], content=content, headers={
        "Content-Type": "application/json", "X-Request-ID": "conformance-1"})
    assert response.status_code == code, response.text
    assert response.headers["X-Request-ID"] == "conformance-1"
    if expected is None:
        return
    answer = response.json()
    if "evaluations" in expected:
        answer = {"evaluations": [{"decision": e["decision"]} for e in answer["evaluations"]]}
    elif "decision" in expected:
        answer = {"decision": answer["decision"]}
    else:
        assert answer["page"]["count"] == len(answer["results"])
        answer = {"results": answer["results"]}
    assert answer == expected


def test_the_test_pdp_refuses_what_is_not_json(server: AuthZENServer) -> None:
    import httpx

    body = json.dumps({"subject": ALICE, "action": READ, "resource": TICKET})
    assert httpx.post(server.url + PATHS["evaluation"], content=body,
                      headers={"Content-Type": "text/plain"}).status_code == 400
    assert httpx.get(server.url + "/nothing/here").status_code == 404


# ----------------------------------------------------------------- discovery
def test_metadata_is_read_once_and_trusted_only_for_this_pdp(server: AuthZENServer,
                                                             backend: AuthZENBackend) -> None:
    for _ in range(3):
        backend.check(*ALICE_READS)
    backend.list_resources("user:alice", "read", "document")
    assert server.counts[WELL_KNOWN] == 1
    endpoints = backend.discover()
    assert endpoints == Endpoints(discovered=True, **{a: server.url + PATHS[a] for a in APIS})
    assert server.counts[WELL_KNOWN] == 2


def test_the_metadata_url_is_derived_as_the_spec_says() -> None:
    b = AuthZENBackend("https://pdp.example.com/stores/01H/")
    assert b.url == "https://pdp.example.com/stores/01H"
    assert b.metadata_url == "https://pdp.example.com/.well-known/authzen-configuration/stores/01H"
    other = AuthZENBackend("https://pdp.example.com/stores/01H", metadata_url=(
        "https://pdp.example.com/.well-known/authzen-configuration/01H"))
    assert other.metadata_url.endswith("/authzen-configuration/01H")


def test_without_metadata_auto_uses_the_default_paths(evaluator: Evaluator) -> None:
    with AuthZENServer(evaluator, metadata=False) as pdp, AuthZENBackend(pdp.url) as b:
        assert b.check(*ALICE_READS).allowed
        assert b.discover() == Endpoints(discovered=False,
                                         **{a: pdp.url + PATHS[a] for a in APIS})
    with AuthZENServer(evaluator, metadata=False) as pdp, \
            AuthZENBackend(pdp.url, discovery="required") as b:
        decision = Authorizer(backend=b).check(*ALICE_READS)
        assert not decision.allowed and "HTTP 404" in decision.reasons[0].message
    with AuthZENServer(evaluator) as pdp, AuthZENBackend(pdp.url, discovery="off") as b:
        assert b.check(*ALICE_READS).allowed
        assert pdp.counts[WELL_KNOWN] == 0


@pytest.mark.parametrize(("override", "message"), [
    ({"policy_decision_point": "https://evil.example.com"}, "not this PDP's metadata"),
    ({"access_evaluation_endpoint": "https://evil.example.com/access/v1/evaluation"},
     "not a URL on"),
    ({"access_evaluation_endpoint": None}, "has no access_evaluation_endpoint"),
    ({"search_resource_endpoint": 42}, "not a URL on"),
])
def test_metadata_that_cannot_be_trusted_denies(server: AuthZENServer, backend: AuthZENBackend,
                                                override: dict[str, Any], message: str) -> None:
    server.metadata_override = override
    decision = Authorizer(backend=backend).check(*ALICE_READS)
    assert not decision.allowed and decision.reasons[0].kind == "backend_error"
    assert message in decision.reasons[0].message
    assert _posts(server, "evaluation") == 0


def test_a_pdp_without_searches_lists_nothing(evaluator: Evaluator) -> None:
    with AuthZENServer(evaluator, apis=["evaluation", "evaluations"]) as pdp, \
            AuthZENBackend(pdp.url) as b:
        authz = Authorizer(backend=b)
        assert authz.list_resources("user:alice", "read", "document") == frozenset()
        with pytest.raises(BackendError, match="no resource search"):
            b.list_resources("user:alice", "read", "document")
        with pytest.raises(BackendError, match="search_action_endpoint"):
            b.list_actions("user:alice", "document:ticket-1")


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_declared_actions_stand_in_for_action_search(evaluator: Evaluator, mode: str) -> None:
    with AuthZENServer(evaluator, apis=["evaluation", "evaluations"]) as pdp, \
            AuthZENBackend(pdp.url, batch_size=2, actions={
                "document": ["read", "write", "export", "read"], "folder": []}) as b:
        if mode == "sync":
            actions = b.list_actions("user:alice", "document:ticket-2")
            assert b.list_actions("user:alice", "folder:tickets") == frozenset()
        else:
            actions = asyncio.run(_alist_actions_and_close(b, "user:alice", "document:ticket-2"))
        assert actions == {"read", "write"}
        assert _posts(pdp, "evaluations") == 2  # three declared actions, batches of two
        with pytest.raises(BackendError, match="no action search"):
            b.list_actions("user:alice", "team:support")


def test_declared_actions_filter_what_action_search_finds(server: AuthZENServer) -> None:
    with AuthZENBackend(server.url, actions={"document": ["read", "export", "share"]}) as b:
        assert b.list_actions("user:alice", "document:ticket-1") == {"read", "export"}
        assert b.list_actions("user:alice", "folder:tickets") == {"read", "write"}  # undeclared
    assert _posts(server, "search_action") == 3 and _posts(server, "evaluations") == 0  # 2 + 1 pages


async def _alist_actions_and_close(b: AuthZENBackend, principal: str, resource: str) -> Any:
    try:
        return await b.alist_actions(principal, resource)
    finally:
        await b.aclose()


# -------------------------------------------------------------------- faults
def _decision_field(value: Any) -> Callable[[str, dict[str, Any], Any], Any]:
    def rewrite(api: str, request: dict[str, Any], answer: Any) -> Any:
        return {**answer, "decision": value}
    return rewrite


def _drop(key: str) -> Callable[[str, dict[str, Any], Any], Any]:
    def rewrite(api: str, request: dict[str, Any], answer: Any) -> Any:
        return {k: v for k, v in answer.items() if k != key}
    return rewrite


# (id, how to break the server, what the reason must say)
CHECK_FAULTS: list[tuple[str, Callable[[AuthZENServer], None], str]] = [
    ("500", lambda s: setattr(s, "fault", status(500)), "HTTP 500"),
    ("401", lambda s: setattr(s, "fault", status(401)), "check headers="),
    ("redirect", lambda s: setattr(s, "fault", status(307)), "HTTP 307"),
    ("malformed JSON", lambda s: setattr(s, "fault", raw(b'{"decision": tru')), "not strict JSON"),
    ("empty body", lambda s: setattr(s, "fault", raw(b"")), "not strict JSON"),
    ("HTML", lambda s: setattr(s, "fault", raw(b"<html>ok</html>", "text/html")),
     "not strict JSON"),
    ("duplicate keys", lambda s: setattr(s, "fault", raw(b'{"decision": false, "decision": true}')),
     "duplicate key"),
    ("NaN", lambda s: setattr(s, "fault", raw(b'{"decision": NaN}')), "not strict JSON"),
    ("array body", lambda s: setattr(s, "fault", raw(b"[true]")), "expected a JSON object"),
    ("decision 'true'", lambda s: setattr(s, "rewrite", _decision_field("true")),
     "'decision' must be a JSON boolean, got string"),
    ("decision 1", lambda s: setattr(s, "rewrite", _decision_field(1)), "got number"),
    ("decision null", lambda s: setattr(s, "rewrite", _decision_field(None)), "got null"),
    ("decision object", lambda s: setattr(s, "rewrite", _decision_field({"allow": True})),
     "got object"),
    ("missing decision", lambda s: setattr(s, "rewrite", _drop("decision")), "has no 'decision'"),
    ("context not an object", lambda s: setattr(s, "fault", raw(
        b'{"decision": true, "context": ["x"]}')), "'context' must be an object"),
    ("close mid-response", lambda s: setattr(s, "fault", close_mid_response()),
     "the exchange failed"),
    ("slow", lambda s: setattr(s, "fault", slow(3)), "no answer within timeout=0.2s"),
    ("wrong request id", lambda s: setattr(s, "echo_request_id", "someone-else"),
     "not our answer"),
    ("too large", lambda s: setattr(s, "fault", raw(b'{"decision": true, "context": {"x": "'
                                                    + b"a" * 5000 + b'"}}')),
     "larger than max_response_bytes=4096"),
]


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(("fault", "message"), [(f[1], f[2]) for f in CHECK_FAULTS],
                         ids=[f[0] for f in CHECK_FAULTS])
def test_a_faulty_pdp_denies_with_a_reason(server: AuthZENServer, mode: str,
                                           fault: Callable[[AuthZENServer], None],
                                           message: str) -> None:
    fault(server)
    with AuthZENBackend(server.url, timeout=0.2, retries=2, max_response_bytes=4096) as b:
        authz = Authorizer(backend=b)
        if mode == "sync":
            decision = authz.check(*ALICE_READS)
        else:
            decision = asyncio.run(_acheck_and_close(authz, b))
    assert not decision.allowed
    assert decision.reasons[0].kind == "backend_error"
    assert message in decision.reasons[0].message, decision.reasons[0].message
    assert _posts(server, "evaluation") == 1  # never retried: the PDP may have received it


async def _acheck_and_close(authz: Authorizer, b: AuthZENBackend) -> Any:
    try:
        return await authz.acheck(*ALICE_READS)
    finally:
        await b.aclose()


def test_a_faulty_pdp_raises_when_asked_to(server: AuthZENServer, backend: AuthZENBackend) -> None:
    server.rewrite = _decision_field("true")
    authz = Authorizer(backend=backend, on_backend_error="raise")
    with pytest.raises(BackendError, match="must be a JSON boolean"):
        authz.check(*ALICE_READS)
    with pytest.raises(BackendError, match="must be a JSON boolean"):
        authz.authorize(*ALICE_READS)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_refused_connection_denies(mode: str) -> None:
    with AuthZENBackend(f"http://127.0.0.1:{_free_port()}", retries=0) as b:
        authz = Authorizer(backend=b)
        if mode == "sync":
            decision = authz.check(*ALICE_READS)
        else:
            decision = asyncio.run(_acheck_and_close(authz, b))
        assert authz.list_resources("user:alice", "read", "document") == frozenset()
    assert not decision.allowed and decision.reasons[0].kind == "backend_error"
    assert "could not connect after 1 attempt (ConnectError" in decision.reasons[0].message


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_connections_are_retried_until_the_pdp_is_up(evaluator: Evaluator, mode: str) -> None:
    port = _free_port()
    pdp = AuthZENServer(evaluator, port=port)
    starter = threading.Timer(0.2, pdp.start)  # up between the 2nd and 3rd attempt (0 s, 0.5 s)
    starter.start()
    try:
        with AuthZENBackend(f"http://127.0.0.1:{port}", discovery="off", retries=3) as b:
            if mode == "sync":
                decision = b.check(*ALICE_READS)
            else:
                decision = asyncio.run(_acheck_backend_and_close(b))
        assert decision.allowed
        assert _posts(pdp, "evaluation") == 1
    finally:
        starter.join()
        pdp.stop()


async def _acheck_backend_and_close(b: AuthZENBackend) -> Any:
    try:
        return await b.acheck(*ALICE_READS)
    finally:
        await b.aclose()


def test_an_authorizer_timeout_bounds_async_calls(server: AuthZENServer) -> None:
    server.fault = slow(3)
    with AuthZENBackend(server.url, timeout=5) as b:
        authz = Authorizer(backend=b, timeout=0.2)
        start = time.monotonic()
        decision = asyncio.run(_acheck_and_close(authz, b))
    assert time.monotonic() - start < 2
    assert not decision.allowed and decision.reasons[0].kind == "backend_error"


def _evaluations(change: Callable[[list[Any]], Any]) -> Callable[[str, dict[str, Any], Any], Any]:
    def rewrite(api: str, request: dict[str, Any], answer: Any) -> Any:
        return {"evaluations": change(answer["evaluations"])} if api == "evaluations" else answer
    return rewrite


BATCH_FAULTS: list[tuple[str, Callable[[AuthZENServer], None], str]] = [
    ("one short", lambda s: setattr(s, "rewrite", _evaluations(lambda e: e[:-1])),
     "answered a batch of 3 with 2 decisions"),
    ("one long", lambda s: setattr(s, "rewrite", _evaluations(lambda e: [*e, e[0]])),
     "with 4 decisions"),
    ("not an array", lambda s: setattr(s, "rewrite", _evaluations(lambda e: {"0": e[0]})),
     "no 'evaluations' array"),
    ("a single decision", lambda s: setattr(s, "fault", raw(b'{"decision": true}')),
     "no 'evaluations' array"),
    ("an item's decision 'true'", lambda s: setattr(s, "rewrite", _evaluations(
        lambda e: [{"decision": "true"}, *e[1:]])), "evaluations[0]"),
    ("500", lambda s: setattr(s, "fault", status(500)), "HTTP 500"),
]


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(("fault", "message"), [(f[1], f[2]) for f in BATCH_FAULTS],
                         ids=[f[0] for f in BATCH_FAULTS])
def test_a_faulty_batch_denies_the_whole_batch(server: AuthZENServer, mode: str,
                                               fault: Callable[[AuthZENServer], None],
                                               message: str) -> None:
    fault(server)
    requests = [ALICE_READS, ("user:alice", "read", "document:ticket-2"),
                ("user:bob", "read", "document:runbook-1")]  # all three allowed
    with AuthZENBackend(server.url) as b:
        authz = Authorizer(backend=b)
        if mode == "sync":
            decisions = authz.check_many(requests)
        else:
            decisions = asyncio.run(_acheck_many_authz_and_close(authz, b, requests))
    assert len(decisions) == 3
    for decision in decisions:
        assert not decision.allowed and decision.reasons[0].kind == "backend_error"
        assert message in decision.reasons[0].message, decision.reasons[0].message


async def _acheck_many_authz_and_close(authz: Authorizer, b: AuthZENBackend,
                                       requests: list[Any]) -> Any:
    try:
        return await authz.acheck_many(requests)
    finally:
        await b.aclose()


def _pages(change: Callable[[dict[str, Any], dict[str, Any]], Any]
           ) -> Callable[[str, dict[str, Any], Any], Any]:
    def rewrite(api: str, request: dict[str, Any], answer: Any) -> Any:
        return change(request, answer) if api.startswith("search") else answer
    return rewrite


def _loop(request: dict[str, Any], answer: dict[str, Any]) -> Any:
    token = request.get("page", {}).get("token")
    if token:  # the second page claims the page it was asked for comes next
        answer["page"]["next_token"] = token
    return answer


SEARCH_FAULTS: list[tuple[str, Callable[[AuthZENServer], None], str]] = [
    ("pages loop", lambda s: setattr(s, "rewrite", _pages(_loop)), "the pages loop"),
    ("token not a string", lambda s: setattr(s, "rewrite", _pages(
        lambda r, a: {**a, "page": {"next_token": 7}})), "next_token must be a string"),
    ("page without token", lambda s: setattr(s, "rewrite", _pages(
        lambda r, a: {**a, "page": {"count": len(a["results"])}})), "has no next_token"),
    ("page not an object", lambda s: setattr(s, "rewrite", _pages(
        lambda r, a: {**a, "page": "next"})), "'page' must be an object"),
    ("no results", lambda s: setattr(s, "rewrite", _pages(
        lambda r, a: {"page": a["page"]})), "no 'results' array"),
    ("count says more", lambda s: setattr(s, "rewrite", _pages(
        lambda r, a: {**a, "results": a["results"][:1]})), "truncated"),
    ("total says more", lambda s: setattr(s, "rewrite", _pages(
        lambda r, a: {**a, "page": {**a["page"], "total": 99}})), "counts 99 results but sent 3"),
    ("wrong type", lambda s: setattr(s, "rewrite", _pages(
        lambda r, a: {**a, "results": [{"type": "folder", "id": "tickets"}] * len(a["results"])})),
     "a search result must be {'type': 'document'"),
    ("untranslatable id", lambda s: setattr(s, "rewrite", _pages(
        lambda r, a: {**a, "results": [{"type": "document", "id": "a b"}] * len(a["results"])})),
     "cannot be an agentauthz entity"),
    ("a later page fails", lambda s: setattr(s, "rewrite", _pages(
        lambda r, a: a if "token" not in r.get("page", {}) else {"results": 3})), "no 'results'"),
    ("500 on a page", lambda s: setattr(s, "fault", status(503)), "HTTP 503"),
]


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(("fault", "message"), [(f[1], f[2]) for f in SEARCH_FAULTS],
                         ids=[f[0] for f in SEARCH_FAULTS])
def test_a_search_that_cannot_be_read_to_its_end_is_never_partial(
        server: AuthZENServer, mode: str, fault: Callable[[AuthZENServer], None],
        message: str) -> None:
    fault(server)
    with AuthZENBackend(server.url) as b:
        authz = Authorizer(backend=b)
        if mode == "sync":
            assert authz.list_resources("user:alice", "read", "document") == frozenset()
            with pytest.raises(BackendError) as err:
                b.list_resources("user:alice", "read", "document")
        else:
            assert asyncio.run(_alist_and_close(authz, b)) == frozenset()
            with pytest.raises(BackendError) as err:
                asyncio.run(_alist_backend_and_close(b))
    assert message in str(err.value)


async def _alist_and_close(authz: Authorizer, b: AuthZENBackend) -> Any:
    try:
        return await authz.alist_resources("user:alice", "read", "document")
    finally:
        await b.aclose()


async def _alist_backend_and_close(b: AuthZENBackend) -> Any:
    try:
        return await b.alist_resources("user:alice", "read", "document")
    finally:
        await b.aclose()


def test_searches_are_bounded(server: AuthZENServer) -> None:
    with AuthZENBackend(server.url, max_pages=1) as b, \
            pytest.raises(BackendError, match="more than max_pages=1 pages"):
        b.list_resources("user:alice", "read", "document")
    with AuthZENBackend(server.url, max_results=2) as b:
        with pytest.raises(BackendError, match="more than max_results=2"):
            b.list_resources("user:alice", "read", "document")
        assert b.list_resources("user:bob", "read", "document") == {"document:runbook-1"}


def test_action_search_faults_deny_too(server: AuthZENServer, backend: AuthZENBackend) -> None:
    server.rewrite = _pages(lambda r, a: {**a, "results": [{"name": 5}]})
    assert Authorizer(backend=backend).list_actions("user:alice", "document:ticket-1") \
        == frozenset()
    with pytest.raises(BackendError, match=re.escape("must be {'name': ...}")):
        backend.list_actions("user:alice", "document:ticket-1")


def test_reasons_from_the_wire_are_cleaned(server: AuthZENServer, backend: AuthZENBackend) -> None:
    server.fault = raw(json.dumps({"decision": False, "context": {
        "id": "x", "reason_admin": {"en": "line1\n\x1b[31mline2\u2028\x85ü" + "z" * 1000}}}).encode())
    message = backend.check(*ALICE_READS).reasons[0].message
    assert not any(c in message for c in "\n\x1b\u2028\x85") and len(message) < 400
    assert "line2  ü" in message


def test_a_bad_request_id_factory_denies(server: AuthZENServer) -> None:
    with AuthZENBackend(server.url, request_id=lambda: "two\nlines") as b:
        decision = Authorizer(backend=b).check(*ALICE_READS)
    assert not decision.allowed and "request_id() must return" in decision.reasons[0].message
    assert sum(server.counts.values()) == 0


# ------------------------------------------------------------ configuration
@pytest.mark.parametrize(("kwargs", "message"), [
    ({"url": "pdp.example.com"}, "expected an http(s) URL"),
    ({"url": 42}, "must be a string URL"),
    ({"url": "https://pdp.example.com?tenant=1"}, "no query or fragment"),
    ({"url": "https://me:secret@pdp.example.com"}, "not in the URL"),
    ({"url": "http://pdp.example.com"}, "plain http lets anyone on the path forge"),
    ({"discovery": "yes"}, "discovery='yes'"),
    ({"timeout": 0}, "timeout=...) must be a positive number"),
    ({"timeout": True}, "timeout=..."),
    ({"retries": -1}, "retries=..."),
    ({"retries": 1.5}, "retries=..."),
    ({"batch_size": 0}, "batch_size=...) must be a positive integer"),
    ({"page_size": 2.5}, "page_size=...) must be a positive integer"),
    ({"max_pages": float("nan")}, "max_pages=..."),
    ({"headers": {"X-Request-ID": "fixed"}}, "set per request"),
    ({"headers": {"Authorization": 1}}, "map strings to strings"),
    ({"actions": {"document": "read"}}, "needs a list of actions"),
    ({"actions": {"document": [""]}}, "non-empty action names"),
    ({"policy_version": 3}, "policy_version=..."),
    ({"request_id": "abc"}, "request_id=..."),
    ({"metadata_url": "ftp://x"}, "metadata_url="),
    ({"client_options": {"headers": {}}}, "use headers=..."),
    ({"client_options": {"follow_redirects": True}}, "redirects are never followed"),
    ({"client_options": {"verfy": False}}, "'verfy' is not an httpx.Client setting"),
    ({"client_options": ["verify"]}, "must be a mapping"),
])
def test_bad_configuration_fails_at_construction(kwargs: dict[str, Any], message: str) -> None:
    url = kwargs.pop("url", "https://pdp.example.com")
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        AuthZENBackend(url, **kwargs)


def test_plain_http_is_allowed_to_loopback_or_when_told() -> None:
    for url in ("http://127.0.0.1:8080", "http://localhost", "http://[::1]:9"):
        AuthZENBackend(url)
    AuthZENBackend("http://pdp.internal", insecure_http=True)


def test_httpx_is_imported_only_when_a_backend_is_made(monkeypatch: pytest.MonkeyPatch) -> None:
    code = ("import sys, agentauthz.backends.authzen; print('httpx' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).parents[2])
    assert out.stdout.strip() == "False"
    monkeypatch.setitem(sys.modules, "httpx", None)
    with pytest.raises(ImportError, match=r"pip install 'agentauthz\[authzen\]'"):
        AuthZENBackend("https://pdp.example.com")


def test_client_options_reach_httpx(server: AuthZENServer) -> None:
    import httpx

    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.headers["authorization"])
        return httpx.Response(200, json={"decision": True},
                              headers={"X-Request-ID": request.headers["x-request-id"]})

    with AuthZENBackend("https://pdp.example.com", discovery="off",
                        headers={"Authorization": "Bearer t0ken"},
                        client_options={"transport": httpx.MockTransport(handler)}) as b:
        assert b.check(*ALICE_READS).allowed
    assert calls == ["Bearer t0ken"]
    with AuthZENBackend(server.url, client_options={"verify": True, "http2": False}) as b:
        assert b.check(*ALICE_READS).allowed


# ------------------------------------------------------------ client lifecycle
def test_clients_are_lazy_pooled_and_reopen_after_close(server: AuthZENServer) -> None:
    b = AuthZENBackend(server.url)
    assert b._client is None
    b.check(*ALICE_READS)
    client = b._client
    b.check(*ALICE_READS)
    assert b._client is client
    b.close()
    assert client is not None and client.is_closed and b._client is None
    assert b.check(*ALICE_READS).allowed  # a new client
    b.close()
    b.close()  # twice is fine


def test_each_event_loop_gets_its_client_closed_with_the_loop(server: AuthZENServer) -> None:
    b = AuthZENBackend(server.url)
    clients = []

    async def ask() -> bool:
        clients.append(await b._async_client())
        return (await b.acheck(*ALICE_READS)).allowed

    assert asyncio.run(ask()) and asyncio.run(ask())
    first, second = clients
    assert first is not second
    assert first.is_closed and second.is_closed  # asyncio.run shut them down with their loops
    b.close()


async def test_aclose_closes_this_loops_client(server: AuthZENServer) -> None:
    b = AuthZENBackend(server.url)
    assert (await b.acheck(*ALICE_READS)).allowed
    client = await b._async_client()
    assert b.check(*ALICE_READS).allowed
    await b.aclose()
    assert client.is_closed and b._client is None and not b._aclients


def test_close_from_sync_code_closes_a_loop_that_still_runs(server: AuthZENServer) -> None:
    b = AuthZENBackend(server.url)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        allowed = asyncio.run_coroutine_threadsafe(b.acheck(*ALICE_READS), loop).result(5)
        client = asyncio.run_coroutine_threadsafe(b._async_client(), loop).result(5)
        assert allowed.allowed
        b.close()
        deadline = time.monotonic() + 5
        while not client.is_closed and time.monotonic() < deadline:
            time.sleep(0.01)
        assert client.is_closed
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def test_cache_in_front_saves_the_round_trip(server: AuthZENServer,
                                             backend: AuthZENBackend) -> None:
    authz = Authorizer(backend=backend, cache=True)
    for _ in range(5):
        assert authz.check(*ALICE_READS).allowed
    assert _posts(server, "evaluation") == 1


# ------------------------------------------------------------------- parity
@pytest.fixture(scope="module")
def demo() -> Iterator[AuthZENBackend]:
    with demo_backend() as b:
        yield b


@pytest.mark.parametrize(("principal", "action", "resource", "expected"), CASES,
                         ids=["-".join(c[:3]) for c in CASES])
def test_parity_table(demo: AuthZENBackend, principal: str, action: str, resource: str,
                      expected: str) -> None:
    decision = Authorizer(backend=demo).check(principal, action, resource)
    assert ("allow" if decision.allowed else "deny") == expected, decision.reasons


async def test_parity_table_async_and_batched(server: AuthZENServer) -> None:
    async with AuthZENBackend(server.url) as b:
        authz = Authorizer(backend=b)
        singles = [await authz.acheck(p, a, r) for p, a, r, _ in CASES]
        batched = await authz.acheck_many([(p, a, r) for p, a, r, _ in CASES])
    expected = [c[3] for c in CASES]
    assert ["allow" if d.allowed else "deny" for d in singles] == expected
    assert ["allow" if d.allowed else "deny" for d in batched] == expected


def test_lists_agree_with_check_on_the_demo_data(demo: AuthZENBackend) -> None:
    authz = Authorizer(backend=demo)
    principals = sorted({c[0] for c in CASES})
    for principal in principals:
        for action in ("read", "write", "export"):
            for rtype in ("document", "folder"):
                expected = {r for p, a, r, out in CASES if p == principal and a == action
                            and r.startswith(rtype + ":") and out == "allow"}
                assert authz.list_resources(principal, action, rtype) == expected, \
                    (principal, action, rtype)
        for resource in sorted({c[2] for c in CASES}):
            expected = {a for p, a, r, out in CASES if p == principal and r == resource
                        and out == "allow"}
            assert authz.list_actions(principal, resource) == expected, (principal, resource)


def test_a_delegated_check_gives_the_local_answer(demo: AuthZENBackend) -> None:
    remote = Authorizer(backend=demo, agents=AgentRegistry(Policy.load(POLICY).agents))
    local = Authorizer(POLICY, data=DATA)
    resources = sorted({c[2] for c in CASES})
    for agent in ("agent:assistant", "agent:scraper"):
        for user in ("user:alice", "user:bob", "user:carol", "user:mallory"):
            d = Delegation(agent, user)
            for action in ("read", "write", "export"):
                for resource in resources:
                    assert remote.check(d, action, resource).allowed \
                        == local.check(d, action, resource).allowed, (agent, user, action, resource)
                assert remote.list_resources(d, action, "document") \
                    == local.list_resources(d, action, "document")
    with remote.acting_as("agent:assistant", on_behalf_of="user:alice"):
        assert remote.check(Delegation("agent:assistant", "user:alice"), "read",
                            "document:ticket-1").allowed
        assert not remote.check(Delegation("agent:assistant", "user:alice"), "read",
                                "document:ticket-2").allowed  # banned for the agent


# -------------------------------------------------------- the OpenFGA example
EXAMPLE = Path(__file__).parents[2] / "examples" / "backends" / "authzen"


def _make_store() -> Any:
    spec = importlib.util.spec_from_file_location("make_store", EXAMPLE / "make_store.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fga_policy(text: str) -> dict[str, Any]:
    """``model.fga`` as an agentauthz policy: the DSL subset it uses maps one to one
    (``[types]``: a relation; ``or``: ``|``; ``but not``: ``-``; ``r from p``: ``p->r``)."""
    types: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] = {}
    for line in text.splitlines():
        s = line.strip()
        if not s or s.startswith("#") or s in ("model", "schema 1.1", "relations"):
            continue
        if s.startswith("type "):
            current = types.setdefault(s[5:], {})
            continue
        match = re.fullmatch(r"define (\w+): (.+)", s)
        assert match is not None, f"not in the subset this test reads: {s!r}"
        name, expr = match.groups()
        if expr.startswith("["):
            current.setdefault("relations", {})[name] = [t.strip() for t in expr[1:-1].split(",")]
        else:
            assert not (" or " in expr and " but not " in expr), "one operator per definition"
            expr = re.sub(r"(\w+) from (\w+)", r"\2->\1", expr)
            current.setdefault("permissions", {})[name] = (
                expr.replace(" or ", " | ").replace(" but not ", " - "))
    return {"types": types}


def test_the_openfga_store_file_is_generated_from_the_demo() -> None:
    assert (EXAMPLE / "store.fga.yaml").read_text(encoding="utf-8") == _make_store().store()


def test_the_openfga_model_and_tuples_give_the_parity_table() -> None:
    store = yaml.safe_load((EXAMPLE / "store.fga.yaml").read_text(encoding="utf-8"))
    model = _fga_policy((EXAMPLE / "model.fga").read_text(encoding="utf-8"))
    fga = Authorizer(model, data={"relationships": [  # the evaluator: no agent registry
        f"{t['object']}#{t['relation']}@{t['user']}" for t in store["tuples"]]}).evaluator
    for principal, action, resource, expected in CASES:
        assert ("allow" if fga.check(principal, action, resource).allowed else "deny") \
            == expected, (principal, action, resource)
    (test,) = store["tests"]
    assert sum(len(c["assertions"]) for c in test["check"]) == len(CASES)
    for case in test["list_objects"]:
        for action, objects in case["assertions"].items():
            assert sorted(fga.list_resources(case["user"], action, case["type"])) == objects
