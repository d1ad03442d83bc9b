"""The OPA backend against an OPA-faithful server on a real socket (the Rego run by regopy).

Protocol: the request and result shapes of OPA's Data API, both twins.
Parity: the 126 cases of ``parity_cases.yaml``, the lists and a delegated
check give what the local evaluator gives. Faults: every way the server can
fail denies with a reason (or raises ``BackendError``), never allows, never
crashes; only connection errors are retried, which the server's request
count proves.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from agentauthz import Authorizer, Entity
from agentauthz.agents import AgentRegistry, Delegation
from agentauthz.backends import opa as opa_module
from agentauthz.backends.opa import OPABackend, main, opa_data
from agentauthz.demo import DATA, POLICY
from agentauthz.engine.evaluator import CheckRequest
from agentauthz.errors import BackendError, ConfigurationError, InvalidInputError, PolicyError
from agentauthz.policy.schema import Policy
from agentauthz.typing import Backend
from tests.backends.servers.opa_server import (
    DECISION,
    LIST_ACTIONS,
    LIST_RESOURCES,
    OPAServer,
    Reply,
    closed_port,
    demo_backend,
    demo_engine,
    demo_server,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "backends" / "opa"
CASES = [tuple(c) for c in yaml.safe_load(
    (Path(__file__).with_name("parity_cases.yaml")).read_text())["cases"]]
PRINCIPALS = sorted({c[0] for c in CASES})
RESOURCES = sorted({c[2] for c in CASES})
ALICE_READS = ("user:alice", "read", "document:ticket-1")


@pytest.fixture(scope="module")
def backend() -> Iterator[OPABackend]:
    with demo_backend() as b:
        yield b


@pytest.fixture(scope="module")
def local() -> Authorizer:
    return Authorizer(POLICY, data=DATA)


def _scripted(responder: Any, **options: Any) -> tuple[OPAServer, OPABackend]:
    server = OPAServer(responder=responder).start()
    options.setdefault("retries", 2)
    options.setdefault("retry_backoff", 0.01)
    return server, OPABackend(server.url, decision=DECISION,
                              list_resources=LIST_RESOURCES,
                              list_actions=LIST_ACTIONS, **options)


@pytest.fixture
def scripted() -> Iterator[Any]:
    """``scripted(responder, **options) -> (server, backend)``, both closed after the test."""
    made: list[tuple[OPAServer, OPABackend]] = []

    def make(responder: Any, **options: Any) -> tuple[OPAServer, OPABackend]:
        made.append(_scripted(responder, **options))
        return made[-1]

    yield make
    for server, b in made:
        b.close()
        server.stop()


# ------------------------------------------------------------------ protocol
def test_is_a_backend(backend: OPABackend) -> None:
    assert isinstance(backend, Backend)
    assert backend.name == "opa"
    assert backend.version() is None
    assert repr(backend).startswith("OPABackend('http://127.0.0.1")


def test_check_posts_the_documented_input() -> None:
    with demo_server() as server, OPABackend(server.url, decision=DECISION) as b:
        when = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
        b.check(Entity("user", "alice", {"tenant": "acme"}), "read", "document:ticket-1",
                {"ip": "10.0.0.1", "at": when, "labels": frozenset({"x"})})
        path, sent = server.inputs[-1]
        assert path == DECISION
        assert sent == {"principal": {"type": "user", "id": "alice",
                                      "attributes": {"tenant": "acme"}},
                        "action": "read", "resource": {"type": "document", "id": "ticket-1"},
                        "context": {"ip": "10.0.0.1", "at": when.isoformat(), "labels": ["x"]}}
        assert server.headers[-1]["Content-Type"] == "application/json"


def test_the_decision_carries_the_reasons_and_opas_decision_id() -> None:
    with demo_server() as server, OPABackend(server.url, decision=DECISION) as b:
        allowed = b.check(*ALICE_READS)
        denied = b.check("user:alice", "export", "document:ticket-2")
    assert allowed.allowed and not denied.allowed
    assert allowed.reasons[0].kind == "permission"
    assert denied.reasons[0].kind == "forbid"
    assert denied.reasons[0].rule == "no-export-of-confidential"
    for decision, issued in zip((allowed, denied), server.decision_ids, strict=True):
        assert decision.reasons[-1].kind == "opa_decision_id"
        assert issued in decision.reasons[-1].message
    assert allowed.policy_version == "unknown"


def test_a_boolean_rule_decides_too() -> None:
    with demo_server(decision_logs=False) as server, OPABackend(
            server.url, decision="data.agentauthz.demo.allow",
            policy_version="bundle-7") as b:
        yes, no = b.check(*ALICE_READS), b.check("user:bob", "read", "document:ticket-1")
    assert (yes.allowed, no.allowed) == (True, False)
    assert [r.kind for r in yes.reasons] == ["permit"]  # no decision log, no decision id
    assert [r.kind for r in no.reasons] == ["default_deny"]
    assert yes.policy_version == "bundle-7" and b.version() == "bundle-7"


def test_reasons_may_be_strings_or_objects(scripted: Any) -> None:
    _, b = scripted(lambda path, inp, n: Reply(doc={"result": {"allow": False, "reasons": [
        "plain text", {"message": "m", "kind": "forbid", "rule": "r1"}, {"message": "k"}]}}))
    reasons = b.check(*ALICE_READS).reasons
    assert [(r.kind, r.message, r.rule) for r in reasons] == [
        ("opa", "plain text", None), ("forbid", "m", "r1"), ("opa", "k", None)]


def test_token_and_headers_are_sent() -> None:
    with demo_server() as server, OPABackend(server.url, decision=DECISION,
                                             token="s3cret", headers={"X-Tenant": "acme"}) as b:
        b.check(*ALICE_READS)
    assert server.headers[-1]["Authorization"] == "Bearer s3cret"
    assert server.headers[-1]["X-Tenant"] == "acme"


async def test_async_twins_answer_as_the_sync_ones() -> None:
    with demo_server() as server:
        async with OPABackend(server.url, decision=DECISION,
                              list_resources=LIST_RESOURCES,
                              list_actions=LIST_ACTIONS) as b:
            decision = await b.acheck(*ALICE_READS)
            assert decision.allowed and decision.reasons[-1].kind == "opa_decision_id"
            assert await b.alist_resources("user:alice", "read", "document") == {
                "document:ticket-1", "document:ticket-2", "document:runbook-1"}
            assert await b.alist_actions("user:alice", "document:ticket-1") == {
                "read", "write", "export"}
            batch = await b.acheck_many([CheckRequest(*c[:3]) for c in CASES[:20]])
            assert [d.allowed for d in batch] == [c[3] == "allow" for c in CASES[:20]]
            mixed = await b.acheck_many([ALICE_READS, None])  # type: ignore[list-item]
            assert [d.allowed for d in mixed] == [True, False]
            assert mixed[1].reasons[0].kind == "invalid_input"


def test_invalid_input_denies_without_asking(scripted: Any) -> None:
    server, b = scripted(lambda path, inp, n: pytest.fail("nothing should be sent"))
    for principal, action, resource, context in [
            ("nobody", "read", "document:1", None), ("user:a", "", "document:1", None),
            ("user:a", "read", 42, None), ("user:a", "read", "document:1", ["no"]),
            ("user:a", "read", "document:1", {"x": object()}),
            ("user:a", "read", "document:1", {"x": float("nan")})]:
        decision = b.check(principal, action, resource, context)
        assert not decision.allowed and decision.reasons[0].kind == "invalid_input"
    with pytest.raises(InvalidInputError):
        b.list_resources("user:a", "read", "no:such")
    with pytest.raises(InvalidInputError):
        b.list_actions("user:a", "nonsense")
    assert server.requests == 0


def test_lists_without_a_rule_are_not_supported() -> None:
    with demo_server() as server, OPABackend(server.url, decision=DECISION) as b:
        with pytest.raises(NotImplementedError, match="list_resources="):
            b.list_resources("user:alice", "read", "document")
        with pytest.raises(NotImplementedError, match="list_actions="):
            b.list_actions("user:alice", "document:ticket-1")
        assert Authorizer(backend=b).list_resources("user:alice", "read", "document") == set()


@pytest.mark.parametrize(("option", "value"), [
    ("url", "localhost:8181"), ("url", "ftp://opa"), ("url", "http://opa:8181/?q=1"), ("url", 8181),
    ("decision", ""), ("decision", "a b"), ("decision", "data."),
    ("list_resources", "x/../y"), ("timeout", 0), ("timeout", "1"), ("retries", -1),
    ("retries", 1.5), ("max_concurrency", 0), ("page_size", 0), ("max_pages", True),
    ("retry_backoff", -1), ("token", ""), ("policy_version", 3)])
def test_bad_configuration_fails_at_construction(option: str, value: object) -> None:
    options: dict[str, Any] = {"url": "http://localhost:8181", "decision": DECISION}
    options[option] = value
    url = options.pop("url")
    with pytest.raises(ConfigurationError):
        OPABackend(url, **options)


@pytest.mark.parametrize("path", ["agentauthz/demo/decision", "/agentauthz/demo/decision/",
                                  "data.agentauthz.demo.decision", "/v1/data/agentauthz/demo/decision"])
def test_rule_paths_in_every_spelling(path: str) -> None:
    assert OPABackend("http://opa:8181/", decision=path).decision_path == DECISION


def test_without_httpx_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(opa_module, "httpx", None)
    with pytest.raises(ImportError, match=r"agentauthz\[opa\]"):
        OPABackend("http://localhost:8181", decision=DECISION)


# -------------------------------------------------------------------- parity
@pytest.mark.parametrize(("principal", "action", "resource", "expected"), CASES,
                         ids=["-".join(c[:3]) for c in CASES])
def test_parity_case(backend: OPABackend, principal: str, action: str, resource: str,
                     expected: str) -> None:
    decision = Authorizer(backend=backend).check(principal, action, resource)
    assert ("allow" if decision.allowed else "deny") == expected, decision.reasons


def test_a_batch_gives_the_table(backend: OPABackend) -> None:
    authz = Authorizer(backend=backend)
    out = authz.check_many([CheckRequest(*c[:3]) for c in CASES])
    assert [d.allowed for d in out] == [c[3] == "allow" for c in CASES]


async def test_the_async_twins_give_the_table() -> None:
    async with _async_demo() as b:
        authz = Authorizer(backend=b, timeout=5)
        out = [await authz.acheck(*c[:3]) for c in CASES]
        assert [d.allowed for d in out] == [c[3] == "allow" for c in CASES]


def test_lists_agree_with_check_and_with_the_local_evaluator(backend: OPABackend,
                                                            local: Authorizer) -> None:
    authz = Authorizer(backend=backend)
    for principal in PRINCIPALS:
        for rtype, actions in (("document", ("read", "write", "export")),
                               ("folder", ("read", "write"))):
            for action in actions:
                listed = authz.list_resources(principal, action, rtype)
                assert listed == local.list_resources(principal, action, rtype)
                assert listed == {r for r in local.store.entities(rtype)
                                  if authz.check(principal, action, r).allowed}
        for resource in RESOURCES:
            actions_ = authz.list_actions(principal, resource)
            assert actions_ == local.list_actions(principal, resource)
            assert actions_ == {a for a in ("read", "write", "export")
                                if authz.check(principal, a, resource).allowed}


def test_a_list_follows_every_page() -> None:
    with demo_server() as server, OPABackend(server.url, decision=DECISION,
                                             list_resources=LIST_RESOURCES,
                                             page_size=1) as b:
        assert b.list_resources("user:alice", "read", "document") == {
            "document:ticket-1", "document:ticket-2", "document:runbook-1"}
    pages = [inp["page"] for path, inp in server.inputs]
    assert pages == [{"size": 1}, {"size": 1, "cursor": "1"}, {"size": 1, "cursor": "2"}]


def test_attributes_in_the_request_override_the_stored_ones(backend: OPABackend,
                                                           local: Authorizer) -> None:
    cases: list[tuple[Entity | str, Entity | str]] = [
        (Entity("user", "alice", {"tenant": "globex"}), "document:ticket-1"),
        ("user:alice", Entity("document", "ticket-1", {"classification": "restricted"})),
        ("user:alice", Entity("document", "ticket-1", {"tenant": "x"})),
        (Entity("agent", "assistant", {"risk": "high"}), "document:ticket-1"),
        (Entity("agent", "assistant", {"risk": None}), "document:ticket-1"),
        (Entity("user", "alice", {"tenant": None}), "document:ticket-1"),
        ("user:alice", Entity("document", "ticket-1", {"classification": None})),
        ("user:alice", Entity("document", "ticket-1", {"classification": 3})),
        ("user:mallory", Entity("document", "globex-plan", {"tenant": 5})),
    ]
    for principal, resource in cases:
        for action in ("read", "write", "export"):
            got = backend.check(principal, action, resource)
            assert got.allowed == local.check(principal, action, resource).allowed, \
                (principal, action, resource, got.reasons)


def test_an_erroring_forbid_denies_as_locally(local: Authorizer) -> None:
    data = yaml.safe_load(DATA.read_text())
    del data["attributes"]["document:ticket-1"]["classification"]
    del data["attributes"]["agent:assistant"]["risk"]
    engine = type(demo_engine())((EXAMPLE / "policy.rego").read_text(), opa_data(data))
    mine = Authorizer(POLICY, data=data)
    with OPAServer(engine) as server, OPABackend(server.url, decision=DECISION) as b:
        for principal in ("user:alice", "agent:assistant"):
            for action in ("read", "write", "export"):
                got = b.check(principal, action, "document:ticket-1")
                assert got.allowed == mine.check(principal, action, "document:ticket-1").allowed
                if action == "export" or (principal.startswith("agent") and action == "write"):
                    assert "condition_error" in [r.kind for r in got.reasons]


def test_the_policy_under_the_real_opa_engine() -> None:
    """The shipped Rego under OPA itself (Go), when its Python bindings are at $OPA_BINDINGS_DIR.

    regopy (rego-cpp) runs everything else; this guards against the two Rego
    engines disagreeing. Opt-in: the bindings are not a PyPI dependency.
    """
    where = os.environ.get("OPA_BINDINGS_DIR")
    if not where:
        pytest.skip("set OPA_BINDINGS_DIR to the unpacked opa-golib-python-bindings wheel")
    sys.path.insert(0, where)
    try:
        opa_bindings = pytest.importorskip("opa_bindings")
    finally:
        sys.path.remove(where)
    engine = opa_bindings.OpaEngine()
    try:
        engine.add_policy("policy.rego", (EXAMPLE / "policy.rego").read_text())
        engine.add_data(opa_data(DATA))

        def ask(rule: str, **input_: Any) -> Any:
            return engine.eval_document(f"agentauthz.demo.{rule}", input_)

        for principal, action, resource, expected in CASES:
            got = ask("decision", principal=_json_entity(principal), action=action,
                      resource=_json_entity(resource))
            assert got["allow"] == (expected == "allow"), (principal, action, resource, got)
        assert ask("list_resources", principal=_json_entity("user:alice"), action="read",
                   resource={"type": "document"}, page={"size": 2, "cursor": "2"}) == {
            "ids": ["ticket-2"], "next": None}
        assert ask("list_actions", principal=_json_entity("user:bob"),
                   resource=_json_entity("folder:runbooks")) == ["read", "write"]
    finally:
        engine.close()


def _json_entity(key: str) -> dict[str, str]:
    type_, _, id_ = key.partition(":")
    return {"type": type_, "id": id_}


def _demo_registry() -> AgentRegistry:
    return AgentRegistry(Policy.load(POLICY).agents)


def test_a_delegated_check_gives_what_the_local_authorizer_gives(backend: OPABackend,
                                                                  local: Authorizer) -> None:
    authz = Authorizer(backend=backend, agents=_demo_registry())
    for agent in ("agent:assistant", "agent:scraper"):
        for user in ("user:alice", "user:bob", "user:carol", "user:mallory"):
            d = Delegation(agent, user)
            for action in ("read", "write", "export"):
                for resource in RESOURCES:
                    assert authz.check(d, action, resource).allowed == \
                        local.check(d, action, resource).allowed, (d, action, resource)
            assert authz.list_resources(d, "read", "document") == \
                local.list_resources(d, "read", "document")
    d = Delegation("agent:assistant", "user:alice")
    assert authz.check(d, "read", "document:ticket-1").allowed
    assert not authz.check(d, "read", "document:ticket-2").allowed  # the agent is banned


async def test_a_delegated_async_check_too(local: Authorizer) -> None:
    async with _async_demo() as b:
        authz = Authorizer(backend=b, agents=_demo_registry())
        d = Delegation("agent:assistant", "user:alice")
        for resource in RESOURCES:
            assert (await authz.acheck(d, "write", resource)).allowed == \
                local.check(d, "write", resource).allowed


# -------------------------------------------------------------------- faults
FAULTS: dict[str, Reply] = {
    "500": Reply(500, {"code": "internal_error", "message": "eval_conflict_error"}),
    "400": Reply(400, {"code": "invalid_parameter", "message": "bad input"}),
    "404": Reply(404, body=b"not found"),
    "malformed JSON": Reply(body=b'{"result": tru'),
    "not an object": Reply(doc=[True]),
    "undefined": Reply(doc={"decision_id": "d-1"}),
    "a string": Reply(doc={"result": "true"}),
    "a number": Reply(doc={"result": 1}),
    "a list": Reply(doc={"result": [True]}),
    "null": Reply(doc={"result": None}),
    "allow not a bool": Reply(doc={"result": {"allow": "yes"}}),
    "no allow": Reply(doc={"result": {"reasons": []}}),
    "reasons not a list": Reply(doc={"result": {"allow": True, "reasons": "fine"}}),
    "a reason without message": Reply(doc={"result": {"allow": True, "reasons": [{"kind": "x"}]}}),
    "a reason with a bad rule": Reply(doc={"result": {"allow": True, "reasons": [
        {"message": "m", "rule": 3}]}}),
    "decision_id not a string": Reply(doc={"result": True, "decision_id": 7}),
    "cut off mid-response": Reply(doc={"result": True, "pad": "x" * 200}, cut_after=12),
    "empty body": Reply(body=b""),
}


@pytest.mark.parametrize("fault", FAULTS, ids=list(FAULTS))
def test_a_fault_denies_with_a_reason_and_is_not_retried(scripted: Any, fault: str) -> None:
    server, b = scripted(lambda path, inp, n: FAULTS[fault], retries=3)
    with pytest.raises(BackendError) as info:
        b.check(*ALICE_READS)
    assert str(info.value)
    assert server.requests == 1  # never retried
    decision = Authorizer(backend=b).check(*ALICE_READS)
    assert not decision.allowed
    assert decision.reasons[0].kind == "backend_error"
    assert server.requests == 2
    with pytest.raises(BackendError):
        Authorizer(backend=b, on_backend_error="raise").check(*ALICE_READS)


@pytest.mark.parametrize("fault", ["500", "undefined", "a string", "cut off mid-response"])
async def test_an_async_fault_denies_too(scripted: Any, fault: str) -> None:
    server, b = scripted(lambda path, inp, n: FAULTS[fault], retries=3)
    try:
        with pytest.raises(BackendError):
            await b.acheck(*ALICE_READS)
        decision = await Authorizer(backend=b).acheck(*ALICE_READS)
        assert not decision.allowed and decision.reasons[0].kind == "backend_error"
        assert server.requests == 2
    finally:
        await b.aclose()


def test_a_slow_server_times_out(scripted: Any) -> None:
    server, b = scripted(lambda path, inp, n: Reply(doc={"result": True}, delay=2), timeout=0.2)
    started = time.perf_counter()
    with pytest.raises(BackendError, match="timed out"):
        b.check(*ALICE_READS)
    assert time.perf_counter() - started < 1.5
    assert server.requests == 1
    assert Authorizer(backend=b).check(*ALICE_READS).reasons[0].kind == "backend_error"


async def test_a_slow_server_times_out_async(scripted: Any) -> None:
    server, b = scripted(lambda path, inp, n: Reply(doc={"result": True}, delay=2), timeout=0.2)
    try:
        with pytest.raises(BackendError, match="timed out"):
            await b.acheck(*ALICE_READS)
        assert server.requests == 1
        # the authorizer's own deadline, shorter than the backend's
        decision = await Authorizer(backend=b, timeout=0.05).acheck(*ALICE_READS)
        assert not decision.allowed and decision.reasons[0].kind == "backend_error"
    finally:
        await b.aclose()


class _Counting(httpx.BaseTransport):
    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.attempts = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.attempts += 1
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def test_a_refused_connection_is_retried_then_denies() -> None:
    counting = _Counting()
    with OPABackend(f"http://127.0.0.1:{closed_port()}", decision=DECISION, retries=2,
                    retry_backoff=0.01, transport=counting) as b:
        with pytest.raises(BackendError, match="unreachable after 3 attempts"):
            b.check(*ALICE_READS)
        assert counting.attempts == 3
        decision = Authorizer(backend=b).check(*ALICE_READS)
        assert not decision.allowed and decision.reasons[0].kind == "backend_error"
        assert b.check_many([CheckRequest(*ALICE_READS)] * 3)[2].reasons[0].kind == "backend_error"


async def test_a_refused_connection_async() -> None:
    async with OPABackend(f"http://127.0.0.1:{closed_port()}", decision=DECISION,
                          retries=1, retry_backoff=0.01) as b:
        with pytest.raises(BackendError, match="unreachable after 2 attempts"):
            await b.acheck(*ALICE_READS)
        assert not (await Authorizer(backend=b).acheck(*ALICE_READS)).allowed


def test_a_retry_reaches_a_server_that_came_up() -> None:
    port = closed_port()
    started: list[OPAServer] = []

    def come_up() -> None:
        time.sleep(0.15)
        started.append(OPAServer(demo_engine(), port=port).start())

    thread = threading.Thread(target=come_up)
    thread.start()
    try:
        with OPABackend(f"http://127.0.0.1:{port}", decision=DECISION, retries=5,
                        retry_backoff=0.05) as b:
            assert b.check(*ALICE_READS).allowed
        assert started[0].requests == 1  # the refused attempts never reached it
    finally:
        thread.join()
        for server in started:
            server.stop()


def test_the_server_closing_before_answering_is_not_retried(scripted: Any) -> None:
    server, b = scripted(lambda path, inp, n: Reply(doc={"result": True}, cut_after=0), retries=3)
    with pytest.raises(BackendError):
        b.check(*ALICE_READS)
    assert server.requests == 1


@pytest.mark.parametrize("error", [
    httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadTimeout, httpx.WriteTimeout,
    httpx.PoolTimeout, httpx.ReadError, httpx.WriteError, httpx.CloseError, httpx.ProxyError,
    httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.RemoteProtocolError,
    httpx.DecodingError, httpx.TooManyRedirects])
def test_every_httpx_error_is_translated(error: type[httpx.HTTPError]) -> None:
    calls = []

    def fail(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise error("boom", request=request)  # type: ignore[call-arg]

    with OPABackend("http://opa:8181", decision=DECISION, retries=2, retry_backoff=0,
                    transport=httpx.MockTransport(fail)) as b, pytest.raises(BackendError) as info:
        b.check(*ALICE_READS)
    assert isinstance(info.value.__cause__, error)
    assert len(calls) == (3 if error is httpx.ConnectError else 1)


# --------------------------------------------------------------- list faults
def _pages(first: Reply, later: Reply | None = None) -> Any:
    """The first page's reply, then ``later`` for every page that has a cursor."""
    return lambda path, inp, n: later if later and "cursor" in inp["page"] else first


LIST_FAULTS: dict[str, Any] = {
    "more pages, then a 500": _pages(Reply(doc={"result": {"ids": ["a"], "next": "1"}}),
                                     Reply(500, {"code": "internal_error", "message": "x"})),
    "more pages, then undefined": _pages(Reply(doc={"result": {"ids": ["a"], "next": "1"}}),
                                         Reply(doc={})),
    "more pages, then cut off": _pages(Reply(doc={"result": {"ids": ["a"], "next": 1}}),
                                       Reply(doc={"result": {"ids": ["b"], "next": None}},
                                             cut_after=5)),
    "pages without end": lambda path, inp, n: Reply(doc={"result": {"ids": [str(n)],
                                                                    "next": str(n)}}),
    "a repeated cursor": lambda path, inp, n: Reply(doc={"result": {"ids": ["a"], "next": "c"}}),
    "a plain list after a page": _pages(Reply(doc={"result": {"ids": ["a"], "next": "1"}}),
                                        Reply(doc={"result": ["b"]})),
    "ids not strings": _pages(Reply(doc={"result": [1, 2]})),
    "an invalid id": _pages(Reply(doc={"result": ["ok", "bad#id"]})),
    "a wildcard id": _pages(Reply(doc={"result": ["*"]})),
    "no next": _pages(Reply(doc={"result": {"ids": ["a"]}})),
    "a bad cursor": _pages(Reply(doc={"result": {"ids": ["a"], "next": True}})),
    "an object": _pages(Reply(doc={"result": {"a": True}})),
    "a string": _pages(Reply(doc={"result": "a"})),
}


@pytest.mark.parametrize("fault", LIST_FAULTS, ids=list(LIST_FAULTS))
def test_a_list_is_never_partial(scripted: Any, fault: str) -> None:
    server, b = scripted(LIST_FAULTS[fault], max_pages=5)
    with pytest.raises(BackendError):
        b.list_resources("user:alice", "read", "document")
    assert server.requests <= 5
    assert Authorizer(backend=b).list_resources("user:alice", "read", "document") == set()


async def test_an_async_list_is_never_partial(scripted: Any) -> None:
    server, b = scripted(LIST_FAULTS["more pages, then a 500"])
    try:
        with pytest.raises(BackendError):
            await b.alist_resources("user:alice", "read", "document")
        assert server.requests == 2
    finally:
        await b.aclose()


@pytest.mark.parametrize("result", ["read", [1], ["read", ""], {"read": True}, None])
def test_list_actions_must_be_a_list_of_names(scripted: Any, result: Any) -> None:
    _, b = scripted(lambda path, inp, n: Reply(doc={"result": result}))
    with pytest.raises(BackendError):
        b.list_actions("user:alice", "document:ticket-1")
    assert Authorizer(backend=b).list_actions("user:alice", "document:ticket-1") == set()


# --------------------------------------------------------------------- batches
def _slow_truth(path: str, inp: Any, n: int) -> Reply:
    return Reply(doc={"result": inp["resource"]["id"] != "fail"}, delay=0.02)


def test_a_batch_runs_concurrently_within_the_bound(scripted: Any) -> None:
    server, b = scripted(_slow_truth, max_concurrency=4)
    requests = [CheckRequest("user:a", "read", f"document:{i}") for i in range(24)]
    started = time.perf_counter()
    out = b.check_many(requests)
    elapsed = time.perf_counter() - started
    assert all(d.allowed for d in out)
    assert 1 < server.max_in_flight <= 4
    assert elapsed < 24 * 0.02  # faster than one at a time


async def test_an_async_batch_runs_concurrently_within_the_bound(scripted: Any) -> None:
    server, b = scripted(_slow_truth, max_concurrency=3)
    try:
        out = await b.acheck_many([CheckRequest("user:a", "read", f"document:{i}")
                                   for i in range(12)])
        assert all(d.allowed for d in out)
        assert 1 < server.max_in_flight <= 3
    finally:
        await b.aclose()


def test_a_failing_item_denies_alone(scripted: Any) -> None:
    def answer(path: str, inp: Any, n: int) -> Reply:
        if inp["resource"]["id"] == "broken":
            return Reply(500, {"code": "internal_error", "message": "x"})
        return Reply(doc={"result": True})

    _, b = scripted(answer)
    requests = [CheckRequest("user:a", "read", f"document:{i}") for i in ("1", "broken", "2")]
    for out in (b.check_many(requests), Authorizer(backend=b).check_many(requests)):
        assert [d.allowed for d in out] == [True, False, True]
        assert out[1].reasons[0].kind == "backend_error"


async def test_a_failing_item_denies_alone_async(scripted: Any) -> None:
    _, b = scripted(lambda path, inp, n: Reply(doc={"result": True} if inp["resource"]["id"]
                                               != "broken" else {"result": "?"}))
    try:
        out = await b.acheck_many([CheckRequest("user:a", "read", f"document:{i}")
                                   for i in ("1", "broken")])
        assert [d.allowed for d in out] == [True, False]
    finally:
        await b.aclose()


def test_a_batch_takes_tuples_and_denies_what_is_not_a_request(backend: OPABackend) -> None:
    out = backend.check_many([ALICE_READS, "nonsense", (*ALICE_READS, {"k": 1})])  # type: ignore[list-item]
    assert [d.allowed for d in out] == [True, False, True]
    assert out[1].reasons[0].kind == "invalid_input"


def test_the_clients_reopen_after_close() -> None:
    with demo_backend() as b:
        assert b.check(*ALICE_READS).allowed
        b.close()
        assert b.check(*ALICE_READS).allowed
        assert len(b.check_many([CheckRequest(*ALICE_READS)] * 2)) == 2


# ------------------------------------------------------------------------ data
def test_opa_data_has_the_documented_shape() -> None:
    doc = opa_data(DATA)["agentauthz"]
    assert doc["relationships"]["parent"]["document:ticket-1"] == ["folder:tickets"]
    assert doc["relationships"]["owner"]["folder:tickets"] == ["team:support#member"]
    assert doc["attributes"]["document:payroll"] == {"tenant": "acme",
                                                     "classification": "restricted"}
    assert doc["entities"]["document"] == ["globex-plan", "payroll", "runbook-1", "ticket-1",
                                           "ticket-2"]
    assert doc["entities"]["team"] == ["eng", "support"]
    assert "*" not in doc["entities"].get("user", [])
    assert set(opa_data(DATA, root="authz")) == {"authz"}


def test_opa_data_validates_against_a_policy() -> None:
    with pytest.raises((PolicyError, InvalidInputError)):
        opa_data({"relationships": ["document:1#owner@team:x#member"]}, policy=POLICY)
    with pytest.raises(ConfigurationError):
        opa_data(DATA, root="a.b")


def test_the_shipped_data_json_is_up_to_date() -> None:
    shipped = json.loads((EXAMPLE / "data.json").read_text())
    assert shipped == opa_data(DATA, policy=POLICY)


def test_the_command_writes_the_data_document(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(DATA), "--policy", str(POLICY)]) == 0
    assert json.loads(capsys.readouterr().out) == opa_data(DATA)
    out = tmp_path / "data.json"
    assert main([str(DATA), "--root", "authz", "-o", str(out)]) == 0
    assert set(json.loads(out.read_text())) == {"authz"}


# --------------------------------------------------------------------- helpers
class _async_demo:
    """``async with _async_demo() as backend``: a demo server and an async-closed backend."""

    def __init__(self, **options: Any) -> None:
        self.options = options

    async def __aenter__(self) -> OPABackend:
        self._server = OPAServer(demo_engine()).start()
        self._backend = OPABackend(self._server.url, decision=DECISION,
                                   list_resources=LIST_RESOURCES,
                                   list_actions=LIST_ACTIONS, **self.options)
        return self._backend

    async def __aexit__(self, *exc: object) -> None:
        await self._backend.aclose()
        await asyncio.to_thread(self._server.stop)
