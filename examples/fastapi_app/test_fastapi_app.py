"""The document service, driven through FastAPI's TestClient and over real HTTP.

Every scenario runs twice: in process (``TestClient``, a fresh app per test)
and against uvicorn serving one app on a free loopback port in a thread of
this process. ``test_the_readme_command_serves`` runs the README's uvicorn
command in a subprocess.
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from fastapi_app.app import create_app

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 120.0  # seconds; generous for a loaded machine, never a measurement
PROBLEM_MEMBERS = {"type", "title", "status", "detail", "decision_id"}
# words that would tell a client about the policy or the data behind a denial
INTERNALS = ("tenant", "isolation", "confidential", "classification", "agents-do-not-edit",
             "parent", "viewer", "owner", "folder", "team", "rule", "permit", "user:", "agent:",
             "acme", "globex", "reason")


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {name}-token"}


def free_loopback_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def wait_until_serving(base_url: str, alive: Any) -> None:
    """Poll /health until it answers 200; fail early if the server died."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    with httpx.Client(base_url=base_url, timeout=5.0) as probe:
        while True:
            if not alive():
                raise AssertionError(f"the server at {base_url} stopped before it answered")
            try:
                if probe.get("/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{base_url} did not answer within {STARTUP_TIMEOUT:.0f}s")
            time.sleep(0.1)


class LiveServer:
    """uvicorn serving ``app`` in a thread, on a socket bound before it starts (no port race)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.socket = free_loopback_socket()
        port = self.socket.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(app, log_config=None, log_level="warning", lifespan="off",
                                ws="none", http="h11", loop="asyncio")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]},
                                       name="uvicorn-test-server", daemon=True)

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        wait_until_serving(self.base_url, self.thread.is_alive)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=STARTUP_TIMEOUT)
        self.socket.close()
        assert not self.thread.is_alive(), "uvicorn did not shut down"


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[FastAPI, httpx.Client]]:
    app = create_app()
    with LiveServer(app) as server, httpx.Client(base_url=server.base_url, timeout=30.0) as client:
        yield app, client


@pytest.fixture(params=["testclient", "uvicorn"])
def service(request: pytest.FixtureRequest) -> Iterator[tuple[FastAPI, httpx.Client]]:
    """(app, client): a fresh app behind TestClient, or the shared app behind uvicorn."""
    if request.param == "uvicorn":
        yield request.getfixturevalue("live")
        return
    app = create_app()
    with TestClient(app) as client:
        yield app, client


@pytest.fixture
def client(service: tuple[FastAPI, httpx.Client]) -> httpx.Client:
    return service[1]


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert set(body) <= PROBLEM_MEMBERS
    assert body["status"] == status
    assert body["type"] == "about:blank"
    text = response.text.lower()
    leaked = [word for word in INTERNALS if word in text]
    assert not leaked, f"the body names {leaked}: {response.text}"
    return body


def without_decision_id(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "decision_id"}


# ----------------------------------------------------------------------------- scenarios
def test_an_allowed_read(client: httpx.Client) -> None:
    response = client.get("/documents/ticket-1", headers=bearer("alice"))
    assert response.status_code == 200
    assert response.json()["title"] == "Refund for order 1001"


def test_a_reader_may_not_edit(client: httpx.Client) -> None:
    # engineering views the tickets folder: bob reads a ticket...
    assert client.get("/documents/ticket-1", headers=bearer("bob")).status_code == 200
    # ...and may not edit it; the answer says so (403), not "no such document"
    response = client.put("/documents/ticket-1", json={"body": "edited by bob"}, headers=bearer("bob"))
    body = assert_problem(response, 403)
    assert body["decision_id"]
    assert client.get("/documents/ticket-1", headers=bearer("bob")).json()["body"] != "edited by bob"


def test_an_owner_edits(client: httpx.Client) -> None:
    response = client.put("/documents/runbook-1", json={"body": "Drain, restart, verify."},
                          headers=bearer("bob"))
    assert response.status_code == 200
    assert response.json()["body"] == "Drain, restart, verify."
    assert client.get("/documents/runbook-1", headers=bearer("alice")).json()["body"] == \
        "Drain, restart, verify."


def test_404_does_not_reveal_existence(client: httpx.Client) -> None:
    hidden = client.get("/documents/globex-plan", headers=bearer("bob"))  # exists, not bob's
    missing = client.get("/documents/no-such-document", headers=bearer("bob"))
    hidden_body, missing_body = assert_problem(hidden, 404), assert_problem(missing, 404)
    assert hidden_body["decision_id"] != missing_body["decision_id"]
    assert without_decision_id(hidden_body) == without_decision_id(missing_body)
    assert hidden.headers["content-length"] == missing.headers["content-length"]
    # the same for a write: an edit of a document bob may not even read is a 404, not a 403
    edit = client.put("/documents/globex-plan", json={"body": "x"}, headers=bearer("bob"))
    assert without_decision_id(assert_problem(edit, 404)) == without_decision_id(missing_body)


def test_the_list_is_filtered(client: httpx.Client) -> None:
    def ids(who: str) -> list[str]:
        response = client.get("/documents", headers=bearer(who))
        assert response.status_code == 200
        return [doc["id"] for doc in response.json()]

    acme_support = ["partner-brief", "runbook-1", "ticket-1", "ticket-2"]
    assert ids("alice") == acme_support
    assert ids("assistant") == acme_support
    assert ids("bob") == ["runbook-1", "ticket-1", "ticket-2"]
    assert ids("mallory") == ["globex-plan"]  # not partner-brief, shared with her team or not


def test_a_cross_tenant_attempt_is_denied(service: tuple[FastAPI, httpx.Client]) -> None:
    app, client = service
    # acme shared its partners folder with globex's team, so mallory has a relationship
    # path to partner-brief; tenant isolation still denies, and she cannot tell it exists
    response = client.get("/documents/partner-brief", headers=bearer("mallory"))
    assert_problem(response, 404)
    assert_problem(client.post("/documents/partner-brief/export", headers=bearer("mallory")), 404)
    decision = app.state.authz.check("user:mallory", "read", "document:partner-brief")
    assert [r.rule for r in decision.reasons] == ["tenant-isolation"]
    # and the other way round
    assert_problem(client.get("/documents/globex-plan", headers=bearer("alice")), 404)


def test_401_without_a_principal(client: httpx.Client) -> None:
    attempts = [{}, {"Authorization": "Bearer stolen-token"}, {"Authorization": "Bearer"},
                {"Authorization": "Basic YWxpY2U6c2VjcmV0"}, {"Authorization": "alice-token"}]
    bodies = []
    for headers in attempts:
        for method, path in [("GET", "/documents"), ("GET", "/documents/ticket-1"),
                             ("POST", "/documents/ticket-1/export")]:
            response = client.request(method, path, headers=headers)
            body = assert_problem(response, 401)
            assert response.headers["www-authenticate"] == "Bearer"
            assert "decision_id" not in body  # nothing was decided: there was nobody to decide for
            bodies.append(body)
    assert all(body == bodies[0] for body in bodies)
    assert client.get("/health").status_code == 200  # a route that authorizes nothing stays open
    assert client.get("/me").json() == {"principal": None}


def test_the_decorator_guards_a_sync_handler(client: httpx.Client) -> None:
    response = client.post("/documents/ticket-1/export", headers=bearer("alice"))
    assert response.status_code == 200
    assert response.json()["content"].startswith("# Refund for order 1001")
    # alice may read ticket-2, but it is confidential: export is forbidden, not hidden
    assert_problem(client.post("/documents/ticket-2/export", headers=bearer("alice")), 403)
    assert_problem(client.post("/documents/globex-plan/export", headers=bearer("alice")), 404)


def test_the_agent_has_a_narrower_boundary(client: httpx.Client) -> None:
    assert client.get("/me", headers=bearer("assistant")).json() == {"principal": "agent:assistant"}
    assert client.get("/documents/ticket-1", headers=bearer("assistant")).status_code == 200
    assert client.post("/documents/ticket-1/export", headers=bearer("assistant")).status_code == 200
    # alice, in the same team, may edit ticket-1; the assistant may not
    body = assert_problem(client.put("/documents/ticket-1", json={"body": "x"},
                                     headers=bearer("assistant")), 403)
    assert body["detail"] == "The principal may not perform this action on this resource."


def test_problem_bodies_carry_the_decision_id_and_nothing_more(client: httpx.Client) -> None:
    response = client.put("/documents/ticket-2", json={"body": "x"}, headers=bearer("assistant"))
    body = assert_problem(response, 403)
    assert set(body) == PROBLEM_MEMBERS
    assert body["title"] == "Forbidden"
    assert isinstance(body["decision_id"], str) and body["decision_id"]


# ----------------------------------------------------------------------------- the README command
def test_the_readme_command_serves(tmp_path: Path) -> None:
    """``uvicorn --app-dir examples fastapi_app.app:app`` from the README, as a subprocess."""
    readme = (Path(__file__).parent / "README.md").read_text(encoding="utf-8")
    assert "uvicorn --app-dir examples fastapi_app.app:app --host 127.0.0.1" in readme
    log = tmp_path / "uvicorn.log"
    for _attempt in range(3):  # the port is free when picked, but another process may take it first
        with free_loopback_socket() as sock:
            port = sock.getsockname()[1]
        command = [sys.executable, "-m", "uvicorn", "--app-dir", "examples", "fastapi_app.app:app",
                   "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
        with log.open("wb") as out:
            proc = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            try:
                wait_until_serving(f"http://127.0.0.1:{port}", lambda p=proc: p.poll() is None)
            except AssertionError:
                if proc.poll() is not None and b"address already in use" in log.read_bytes().lower():
                    continue
                raise AssertionError(log.read_text(errors="replace")) from None
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30.0) as client:
                listed = client.get("/documents", headers=bearer("bob"))
                assert listed.status_code == 200
                assert [d["id"] for d in listed.json()] == ["runbook-1", "ticket-1", "ticket-2"]
                assert_problem(client.put("/documents/ticket-1", json={"body": "x"},
                                          headers=bearer("bob")), 403)
                assert_problem(client.get("/documents/ticket-1"), 401)
            return
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=STARTUP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    raise AssertionError("no free port after 3 attempts: " + json.dumps(log.read_text(errors="replace")))
