"""An OpenID AuthZEN 1.0 PDP for tests: real sockets on 127.0.0.1, the local evaluator behind it.

It serves what the specification defines, in the shapes of its conformance
scenario (``certification/authorization-api-1_0-scenario.md``):

- ``GET /.well-known/authzen-configuration``: the PDP metadata (absolute URLs);
- ``POST /access/v1/evaluation``: ``{"subject", "action", "resource", "context"?}``
  -> ``{"decision": bool, "context": {"id", "reason_admin": {"en": ...}}}``;
- ``POST /access/v1/evaluations``: top-level defaults, entity-level overrides,
  ``options.evaluations_semantic`` (all three), an item that cannot be
  evaluated answered ``false`` in place; no or an empty ``evaluations``
  array behaves as one evaluation;
- ``POST /access/v1/search/{resource,action,subject}``: ``page.limit`` and
  ``page.token`` in, ``page.next_token`` (``""`` on the last page), ``count``
  and ``total`` out; a small page size (2) so paging is exercised; an unknown
  type finds nothing.

Requests are validated as the specification requires: ``Content-Type:
application/json``, a JSON object body, required members and their types,
else HTTP 400. ``X-Request-ID`` is echoed. Decisions come from an
:class:`~agentauthz.engine.Evaluator` (the demo policy and data by default);
``properties`` become entity attributes for that one question.

For fault tests a server has ``fault`` (a hook run before each POST is
answered; it may answer itself: see :func:`slow`, :func:`status`,
:func:`raw`, :func:`close_mid_response`) and ``rewrite`` (changes a JSON
answer before it is sent); it counts requests per path (``counts``) and
records the ``X-Request-ID`` of each (``request_ids``) and the time spent
answering each (``handler_ns``, from the request line to the flushed answer).

    python -m tests.backends.servers.authzen_server [--port 8080]

serves the demo policy until interrupted.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from agentauthz import Authorizer
from agentauthz.backends.authzen import AuthZENBackend
from agentauthz.demo import DATA, POLICY
from agentauthz.engine.evaluator import Evaluator
from agentauthz.errors import InvalidInputError
from agentauthz.model import Entity

__all__ = ["APIS", "AuthZENServer", "close_mid_response", "demo_backend", "demo_evaluator", "raw",
           "slow", "status"]

APIS = ("evaluation", "evaluations", "search_subject", "search_resource", "search_action")
PATHS = {"evaluation": "/access/v1/evaluation", "evaluations": "/access/v1/evaluations",
         "search_subject": "/access/v1/search/subject",
         "search_resource": "/access/v1/search/resource",
         "search_action": "/access/v1/search/action"}
METADATA_KEYS = {"evaluation": "access_evaluation_endpoint",
                 "evaluations": "access_evaluations_endpoint",
                 "search_subject": "search_subject_endpoint",
                 "search_resource": "search_resource_endpoint",
                 "search_action": "search_action_endpoint"}
WELL_KNOWN = "/.well-known/authzen-configuration"
SEMANTICS = ("execute_all", "deny_on_first_deny", "permit_on_first_permit")
MAX_BODY = 1024 * 1024

Fault = Callable[["Handler", str], bool]
"""Runs before a POST to ``api`` is answered; returns True when it answered itself."""
Rewrite = Callable[[str, dict[str, Any], Any], Any]
"""``(api, request, answer) -> answer``: changes a JSON answer before it is sent."""


class BadRequest(Exception):
    """The request breaks the specification: HTTP 400."""


def demo_evaluator() -> Evaluator:
    """The local evaluator loaded with the demo policy and data."""
    return Authorizer(POLICY, data=DATA).evaluator


class AuthZENServer:
    """A PDP on ``127.0.0.1``; ``url`` is its identifier. Use as a context manager."""

    def __init__(self, evaluator: Evaluator | None = None, *, port: int = 0, page_size: int = 2,
                 apis: Iterable[str] = APIS, metadata: bool = True) -> None:
        self.evaluator = evaluator if evaluator is not None else demo_evaluator()
        self.page_size = page_size
        self.apis = frozenset(apis)
        self.metadata = metadata
        self.metadata_override: dict[str, Any] | None = None
        self.fault: Fault | None = None
        self.rewrite: Rewrite | None = None
        self.echo_request_id: str | None = None  # POSTs answer this id, not the one received
        self.counts: Counter[str] = Counter()
        self.request_ids: list[str] = []
        self.handler_ns: list[int] = []
        self.stopping = threading.Event()
        self._port = port
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the server is not started")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> AuthZENServer:
        self._httpd = _HTTPServer(("127.0.0.1", self._port), Handler, self)
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.005}, daemon=True,
                                        name="authzen-test-pdp")
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
            httpd.drop_connections()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> AuthZENServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget counts, ids, timings and faults."""
        self.counts.clear()
        self.request_ids.clear()
        self.handler_ns.clear()
        self.fault = self.rewrite = None
        self.echo_request_id = None
        self.metadata_override = None

    # ---------------------------------------------------------- the APIs
    def metadata_document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"policy_decision_point": self.url}
        for api in APIS:
            if api in self.apis:
                doc[METADATA_KEYS[api]] = self.url + PATHS[api]
        if self.metadata_override is not None:
            doc.update(self.metadata_override)
            doc = {k: v for k, v in doc.items() if v is not None}
        return doc

    def answer(self, api: str, request: dict[str, Any]) -> Any:
        if api == "evaluation":
            return self.evaluate(request)
        if api == "evaluations":
            return self.evaluations(request)
        if api == "search_resource":
            return self.search_resource(request)
        if api == "search_action":
            return self.search_action(request)
        return self.search_subject(request)

    def evaluate(self, request: dict[str, Any]) -> dict[str, Any]:
        subject = _entity(request, "subject")
        name = _action(request)
        resource = _entity(request, "resource")
        context = _context(request)
        try:
            decision = self.evaluator.check(_as_entity(subject), name, _as_entity(resource),
                                            context)
        except InvalidInputError as exc:  # e.g. a type our model cannot name: not a grant
            return {"decision": False, "context": {"id": "invalid", "reason_admin": {
                "en": str(exc)}}}
        first = decision.reasons[0] if decision.reasons else None
        answer: dict[str, Any] = {"decision": decision.allowed}
        if first is not None:
            answer["context"] = {"id": first.rule or first.kind,
                                 "reason_admin": {"en": first.message}}
        return answer

    def evaluations(self, request: dict[str, Any]) -> dict[str, Any]:
        items = request.get("evaluations")
        if items is None or items == []:
            return self.evaluate(request)  # backwards compatible with one evaluation
        if not isinstance(items, list):
            raise BadRequest("'evaluations' must be an array")
        options = request.get("options", {})
        if not isinstance(options, dict):
            raise BadRequest("'options' must be an object")
        semantic = options.get("evaluations_semantic", "execute_all")
        if semantic not in SEMANTICS:
            raise BadRequest(f"options.evaluations_semantic must be one of {SEMANTICS}")
        out = []
        for item in items:
            try:
                if not isinstance(item, dict):
                    raise BadRequest("each evaluation must be an object")
                merged = {key: _merge(request.get(key), item.get(key))
                          for key in ("subject", "action", "resource", "context")}
                answer = self.evaluate({k: v for k, v in merged.items() if v is not None})
            except BadRequest as exc:  # an evaluation-level error: false, in place
                answer = {"decision": False, "context": {"error": {"status": 400,
                                                                   "message": str(exc)}}}
            out.append(answer)
            if (semantic == "deny_on_first_deny" and not answer["decision"]) or \
                    (semantic == "permit_on_first_permit" and answer["decision"]):
                break
        return {"evaluations": out}

    def search_resource(self, request: dict[str, Any]) -> dict[str, Any]:
        subject = _entity(request, "subject")
        name = _action(request)
        rtype = _type_only(request, "resource")
        context = _context(request)
        try:
            found = self.evaluator.list_resources(_as_entity(subject), name, rtype, context)
        except InvalidInputError:
            found = frozenset()
        results = [{"type": rtype, "id": key.partition(":")[2]} for key in sorted(found)]
        return self._paged(request, results)

    def search_action(self, request: dict[str, Any]) -> dict[str, Any]:
        subject = _entity(request, "subject")
        resource = _entity(request, "resource")
        context = _context(request)
        try:
            found = self.evaluator.list_actions(_as_entity(subject), _as_entity(resource), context)
        except InvalidInputError:
            found = frozenset()
        return self._paged(request, [{"name": a} for a in sorted(found)])

    def search_subject(self, request: dict[str, Any]) -> dict[str, Any]:
        stype = _type_only(request, "subject")
        name = _action(request)
        resource = _entity(request, "resource")
        context = _context(request)
        results = []
        try:
            target = _as_entity(resource)
            for key in sorted(self.evaluator.store.entities(stype)):
                if self.evaluator.check(key, name, target, context).allowed:
                    results.append({"type": stype, "id": key.partition(":")[2]})
        except InvalidInputError:
            results = []
        return self._paged(request, results)

    def _paged(self, request: dict[str, Any], results: list[dict[str, str]]) -> dict[str, Any]:
        page = request.get("page", {})
        if not isinstance(page, dict):
            raise BadRequest("'page' must be an object")
        limit = page.get("limit", self.page_size)
        if type(limit) is not int or limit < 1:
            raise BadRequest("page.limit must be a positive integer")
        limit = min(limit, self.page_size)
        query = {k: v for k, v in request.items() if k != "page"}
        digest = hashlib.sha256(json.dumps(query, sort_keys=True).encode()).hexdigest()[:16]
        offset = 0
        token = page.get("token")
        if token is not None:
            offset = _read_token(token, digest)
        chunk = results[offset:offset + limit]
        end = offset + len(chunk)
        next_token = _make_token(end, digest) if end < len(results) else ""
        return {"results": chunk,
                "page": {"next_token": next_token, "count": len(chunk), "total": len(results)}}


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # the stdlib's 5 resets bursts of concurrent connections

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 pdp: AuthZENServer) -> None:
        self.pdp = pdp
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Wake up handlers blocked on kept-alive connections, so they close them."""
        with self.connections_lock:
            open_now = list(self.connections)
        for conn in open_now:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away (a fault test's timeout) is not news


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer
    timeout = 30  # an idle kept-alive connection is closed after this

    @property
    def pdp(self) -> AuthZENServer:
        return self.server.pdp

    def setup(self) -> None:
        super().setup()
        # headers and body are two writes: without this, Nagle's algorithm and the
        # client's delayed ACK add ~40 ms to every answer
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def handle_one_request(self) -> None:
        """The stdlib's, timed from the request line to the flushed answer."""
        try:
            self.raw_requestline = self.rfile.readline(65537)
            start = time.perf_counter_ns()
            if len(self.raw_requestline) > 65536:
                self.send_error(414)
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return
            method = getattr(self, f"do_{self.command}", None)
            if method is None:
                self.send_error(501)
                return
            method()
            self.wfile.flush()
            self.pdp.handler_ns.append(time.perf_counter_ns() - start)
        except (TimeoutError, OSError):
            self.close_connection = True

    # ------------------------------------------------------------ answers
    def send_json(self, status: int, body: Any) -> None:
        self.send_raw(status, json.dumps(body).encode())

    def send_raw(self, status: int, content: bytes,
                 content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(content)))
        request_id = self.headers.get("X-Request-ID")
        if self.command == "POST" and self.pdp.echo_request_id is not None:
            request_id = self.pdp.echo_request_id
        if request_id is not None:
            self.send_header("X-Request-ID", request_id)
        self.end_headers()
        self.wfile.write(content)

    def do_GET(self) -> None:
        self.pdp.counts[self.path] += 1
        self._record_id()
        if self.path == WELL_KNOWN and self.pdp.metadata:
            self.send_json(200, self.pdp.metadata_document())
        else:
            self.send_json(404, {"error": "not found"})

    def do_POST(self) -> None:
        self.pdp.counts[self.path] += 1
        self._record_id()
        api = next((a for a in APIS if PATHS[a] == self.path and a in self.pdp.apis), None)
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit() or int(length) > MAX_BODY:
            self.send_json(411 if length is None else 413, {"error": "bad Content-Length"})
            self.close_connection = True
            return
        content = self.rfile.read(int(length))
        if api is None:
            self.send_json(404, {"error": "not found"})
            return
        fault = self.pdp.fault
        if fault is not None and fault(self, api):
            return
        try:
            request = _parse(self.headers.get("Content-Type", ""), content)
            answer = self.pdp.answer(api, request)
        except BadRequest as exc:
            self.send_json(400, {"error": str(exc)})
            return
        rewrite = self.pdp.rewrite
        if rewrite is not None:
            answer = rewrite(api, request, answer)
        self.send_json(200, answer)

    def _record_id(self) -> None:
        self.pdp.request_ids.append(self.headers.get("X-Request-ID", ""))


# ------------------------------------------------------------------ faults
def slow(seconds: float) -> Fault:
    """Answer normally, after ``seconds`` (or when the server stops)."""
    def fault(handler: Handler, api: str) -> bool:
        handler.pdp.stopping.wait(seconds)
        return False
    return fault


def status(code: int, body: bytes = b'{"error": "internal error"}') -> Fault:
    def fault(handler: Handler, api: str) -> bool:
        handler.send_raw(code, body)
        return True
    return fault


def raw(content: bytes, content_type: str = "application/json") -> Fault:
    """Answer 200 with exactly these bytes."""
    def fault(handler: Handler, api: str) -> bool:
        handler.send_raw(200, content, content_type)
        return True
    return fault


def close_mid_response() -> Fault:
    """Promise 100 bytes, send 14, hang up."""
    def fault(handler: Handler, api: str) -> bool:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", "100")
        handler.end_headers()
        handler.wfile.write(b'{"decision": t')
        handler.wfile.flush()
        handler.close_connection = True
        handler.connection.shutdown(socket.SHUT_RDWR)
        return True
    return fault


# --------------------------------------------------------------- requests
def _parse(content_type: str, content: bytes) -> dict[str, Any]:
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise BadRequest("Content-Type must be application/json")
    if not content:
        raise BadRequest("empty body")
    try:
        request = json.loads(content)
    except ValueError as exc:
        raise BadRequest(f"malformed JSON: {exc}") from None
    if not isinstance(request, dict):
        raise BadRequest("the body must be a JSON object")
    return request


def _member(request: dict[str, Any], key: str) -> dict[str, Any]:
    value = request.get(key)
    if value is None:
        raise BadRequest(f"'{key}' is required")
    if not isinstance(value, dict):
        raise BadRequest(f"'{key}' must be an object")
    props = value.get("properties")
    if props is not None and not isinstance(props, dict):
        raise BadRequest(f"{key}.properties must be an object")
    return value


def _string(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if value is None:
        raise BadRequest(f"{where}.{key} is required")
    if not isinstance(value, str):
        raise BadRequest(f"{where}.{key} must be a string")
    return value


def _entity(request: dict[str, Any], key: str) -> dict[str, Any]:
    value = _member(request, key)
    _string(value, "type", key)
    _string(value, "id", key)
    return value


def _type_only(request: dict[str, Any], key: str) -> str:
    return _string(_member(request, key), "type", key)


def _action(request: dict[str, Any]) -> str:
    return _string(_member(request, "action"), "name", "action")


def _context(request: dict[str, Any]) -> dict[str, Any] | None:
    context = request.get("context")
    if context is not None and not isinstance(context, dict):
        raise BadRequest("'context' must be an object")
    return context


def _as_entity(value: dict[str, Any]) -> Entity:
    props = value.get("properties")
    try:
        return Entity(value["type"], value["id"], props if props else {})
    except InvalidInputError as exc:
        if props and ("id" in props or "type" in props):
            raise BadRequest(str(exc)) from None
        raise


def _merge(default: Any, override: Any) -> Any:
    """Entity-level replacement, required members falling back to the default's."""
    if override is None:
        return default
    if isinstance(default, dict) and isinstance(override, dict) and "name" not in default:
        merged = dict(override)
        for key in ("type", "id"):
            if key not in merged and key in default:
                merged[key] = default[key]
        return merged
    return override


def _make_token(offset: int, digest: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset, "q": digest}).encode()).decode()


def _read_token(token: object, digest: str) -> int:
    try:
        data = json.loads(base64.urlsafe_b64decode(str(token).encode()))
        if data["q"] != digest or type(data["o"]) is not int or data["o"] < 0:
            raise ValueError
        return int(data["o"])
    except (ValueError, KeyError, TypeError):
        raise BadRequest("page.token is not a token of this search") from None


# ------------------------------------------------------------------- parity
@contextmanager
def demo_backend(**options: Any) -> Iterator[AuthZENBackend]:
    """A PDP serving the demo policy and data, and an AuthZENBackend pointed at it."""
    with AuthZENServer() as server, AuthZENBackend(server.url, **options) as backend:
        yield backend


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="An AuthZEN 1.0 PDP serving the demo policy.")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--page-size", type=int, default=50)
    args = parser.parse_args(argv)
    with AuthZENServer(port=args.port, page_size=args.page_size) as server:
        print(f"AuthZEN PDP (demo policy) at {server.url}; metadata at {server.url}{WELL_KNOWN}")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
