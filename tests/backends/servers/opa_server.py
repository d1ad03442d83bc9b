"""An OPA for the tests: OPA's REST Data API on a real socket, the Rego evaluated by regopy.

:class:`OPAServer` serves what :class:`~agentauthz.backends.opa.OPABackend`
uses of OPA, as OPA does it:

- ``POST /v1/data/{path}`` with ``{"input": ...}`` answers 200 with
  ``{"result": ..., "decision_id": ...}``, or ``{"decision_id": ...}`` alone
  when the document is undefined; a body that is not JSON answers 400 and an
  evaluation error 500, each with OPA's ``{"code", "message"}``;
- ``GET /health`` answers ``{}``.

The Rego is evaluated by regopy (Microsoft's rego-cpp, a real Rego engine):
the shipped ``examples/backends/opa/policy.rego`` over the demo data as
:func:`~agentauthz.backends.opa.opa_data` writes it. A ``responder`` replaces
evaluation with scripted replies (slow, 500, malformed, cut off...) for the
fault tests. The server counts requests, keeps their inputs and headers, and
times its handler from the complete request to the last byte of the answer
(the benchmark subtracts that time).

``demo_backend()`` yields an ``OPABackend`` on a fresh server loaded with the
demo policy and data: the name the cross-backend parity suite imports.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import regopy

from agentauthz.backends.opa import OPABackend, opa_data
from agentauthz.demo import DATA, POLICY

ROOT = Path(__file__).resolve().parents[3]
REGO = ROOT / "examples" / "backends" / "opa" / "policy.rego"
DECISION = "agentauthz/demo/decision"
ALLOW = "agentauthz/demo/allow"
LIST_RESOURCES = "agentauthz/demo/list_resources"
LIST_ACTIONS = "agentauthz/demo/list_actions"
ENTRYPOINTS = (DECISION, ALLOW, LIST_RESOURCES, LIST_ACTIONS)


class EvalError(Exception):
    """The Rego could not be evaluated (OPA answers 500)."""


class RegoEngine:
    """A compiled policy and data document; evaluates one query at a time."""

    def __init__(self, policy: str, data: dict[str, Any],
                 entrypoints: tuple[str, ...] = ENTRYPOINTS) -> None:
        self._rego = regopy.Interpreter()
        self._rego.add_module("policy.rego", policy)
        self._rego.add_data_json(json.dumps(data))
        # a bundle compiles once; Interpreter.query() recompiles on every call
        self._bundle = self._rego.build(None, list(entrypoints))
        if not self._bundle.ok():
            raise EvalError("the Rego policy does not compile")
        self._entrypoints = frozenset(entrypoints)
        self._lock = threading.Lock()  # one interpreter: its input is shared state

    def evaluate(self, path: str, input_: Any) -> tuple[bool, Any]:
        """``(True, value)`` of ``data.<path>``, or ``(False, None)`` when it is undefined."""
        with self._lock:
            self._rego.set_input(regopy.Input(input_))
            if path in self._entrypoints:
                out = self._rego.query_bundle_entrypoint(self._bundle, path)
            else:
                out = self._rego.query("data." + path.replace("/", "."))
            if not out.ok():
                raise EvalError(str(out)[:500])
            results = out.results
        if not results or not results[0].expressions:
            return False, None
        return True, results[0].expressions[0]


@cache
def demo_engine() -> RegoEngine:
    """The shipped Rego policy over the demo data (compiled once per test session)."""
    return RegoEngine(REGO.read_text(encoding="utf-8"), opa_data(DATA, policy=POLICY))


@dataclass(frozen=True)
class Reply:
    """A scripted answer: ``doc`` as JSON (or raw ``body``), after ``delay`` seconds.

    ``cut_after``: announce the whole body, send only that many bytes of it,
    then close the connection.
    """

    status: int = 200
    doc: Any = None
    body: bytes | None = None
    delay: float = 0.0
    cut_after: int | None = None

    def content(self) -> bytes:
        return self.body if self.body is not None else json.dumps(self.doc).encode()


Responder = Callable[[str, Any, int], "Reply | None"]
"""``(path, input, request number from 1) -> Reply``, or ``None`` to evaluate the Rego."""


class OPAServer:
    """OPA's REST Data API on 127.0.0.1 (a free port), in a background thread."""

    def __init__(self, engine: RegoEngine | None = None, *, responder: Responder | None = None,
                 decision_logs: bool = True, port: int = 0) -> None:
        self.engine = engine
        self.responder = responder
        self.decision_logs = decision_logs
        self.requests = 0
        self.inputs: list[tuple[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.decision_ids: list[str] = []
        self.handler_ns: list[int] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._httpd = _HTTPServer(("127.0.0.1", port), _Handler)
        self._httpd.opa = self
        self.port: int = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True,
                                        name=f"opa-test-server-{self.port}")

    def start(self) -> OPAServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()  # wakes slow replies
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def __enter__(self) -> OPAServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # called by the handler
    def _arrived(self, path: str, input_: Any, headers: dict[str, str]) -> int:
        with self._lock:
            self.requests += 1
            self.inputs.append((path, input_))
            self.headers.append(headers)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return self.requests

    def _left(self, elapsed_ns: int) -> None:
        with self._lock:
            self.in_flight -= 1
            self.handler_ns.append(elapsed_ns)

    def _new_decision_id(self) -> str:
        decision_id = str(uuid.uuid4())
        with self._lock:
            self.decision_ids.append(decision_id)
        return decision_id


class _HTTPServer(ThreadingHTTPServer):
    request_queue_size = 128  # the default backlog of 5 refuses a batch's connections
    daemon_threads = True
    block_on_close = False  # idle keep-alive connections end with their clients
    opa: OPAServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as OPA's Go server
    timeout = 5  # an idle keep-alive connection is dropped after this
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/health":
            self._send(200, b"{}")
        else:
            self._error(404, "resource_not_found", f"{self.path} not found")

    def do_POST(self) -> None:
        opa = self.server.opa
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        started = time.perf_counter_ns()  # the handler's own time starts with the whole request
        if not self.path.startswith("/v1/data/"):
            self._error(404, "resource_not_found", f"{self.path} not found")
            return
        path = self.path[len("/v1/data/"):].split("?", 1)[0].strip("/")
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            self._error(400, "invalid_parameter", "body contains malformed JSON")
            return
        if not isinstance(body, dict):
            self._error(400, "invalid_parameter", "body must be an object")
            return
        input_ = body.get("input")
        number = opa._arrived(path, input_, dict(self.headers.items()))
        try:
            reply = opa.responder(path, input_, number) if opa.responder else None
            if reply is None:
                self._evaluate(path, input_)
            else:
                self._reply(reply)
        finally:
            opa._left(time.perf_counter_ns() - started)

    def _evaluate(self, path: str, input_: Any) -> None:
        opa = self.server.opa
        if opa.engine is None:
            self._error(500, "internal_error", "no policy loaded")
            return
        try:
            defined, value = opa.engine.evaluate(path, input_)
        except EvalError as exc:
            self._error(500, "internal_error", str(exc))
            return
        doc: dict[str, Any] = {"result": value} if defined else {}
        if opa.decision_logs:
            doc["decision_id"] = opa._new_decision_id()
        self._send(200, json.dumps(doc).encode())

    def _reply(self, reply: Reply) -> None:
        if reply.delay:
            self.server.opa.stopping.wait(reply.delay)
        content = reply.content()
        if reply.cut_after is None:
            self._send(reply.status, content)
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content[:reply.cut_after])
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def _error(self, status: int, code: str, message: str) -> None:
        self._send(status, json.dumps({"code": code, "message": message}).encode())

    def _send(self, status: int, content: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def demo_server(**options: Any) -> Iterator[OPAServer]:
    """A running server with the demo policy and data."""
    with OPAServer(demo_engine(), **options) as server:
        yield server


@contextmanager
def demo_backend(**options: Any) -> Iterator[OPABackend]:
    """An ``OPABackend`` on a fresh server with the demo policy and data; both closed after."""
    with demo_server() as server, OPABackend(
            server.url, decision=DECISION, list_resources=LIST_RESOURCES,
            list_actions=LIST_ACTIONS, **options) as backend:
        yield backend
