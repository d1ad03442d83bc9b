"""A loopback stand-in for Oso Cloud: the HTTP endpoints the ``oso-cloud`` SDK calls.

The official SDK (``oso_cloud.Oso``) is the client, unchanged: it sends its
usual requests (``POST /api/authorize``, ``/api/list``, ``/api/actions``,
``/api/batch``, with its bearer token and headers) and reads the JSON shapes
it expects (``{"allowed": ...}``, ``{"results": [...], "next_page_token": ...}``,
``{"results": [...]}``, ``{"message": ...}``). The answers come from a local
:class:`~agentauthz.Authorizer` holding the demo policy; facts written through
the SDK are translated back into its relationships and attributes, so the
fact mapping of :mod:`agentauthz.backends.oso_cloud` is tested both ways.

Faults, for the failure tests: set ``server.fault`` to one of :data:`FAULTS`
(optionally only for ``server.fault_paths``).

:func:`demo_backend` yields an :class:`OsoCloudBackend` pointed at a fresh
server, with the demo data written through the SDK: the parity suite imports it.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from agentauthz import Authorizer
from agentauthz.backends.oso_cloud import OsoCloudBackend
from agentauthz.demo import DATA, POLICY
from agentauthz.errors import AgentAuthzError
from agentauthz.model import Entity, Relationship

__all__ = ["API_KEY", "DEMO_TYPES", "FAULTS", "OsoCloudServer", "demo_backend", "refused_url"]

API_KEY = "e_test_0123456789"
DEMO_TYPES = {"User": "user", "Agent": "agent", "Team": "team", "Folder": "folder",
              "Document": "document"}
"""Oso type → agentauthz type, as the demo's Polar policy names them (examples/backends/oso_cloud)."""

FAULTS = frozenset({
    "slow",            # wait ``server.delay`` seconds (or until stopped), then answer
    "500",             # HTTP 500 with a text body
    "401",             # HTTP 401, as for a bad API key
    "malformed",       # HTTP 200, a body that is not JSON
    "allowed_string",  # authorize: {"allowed": "true"}
    "allowed_int",     # authorize: {"allowed": 1}
    "allowed_null",    # authorize: {"allowed": null}
    "allowed_missing",  # authorize: {}
    "close",           # headers promising a body, half of it, then the connection closes
    "drop",            # the connection closes before any answer
    "list_loop",       # list: the same next_page_token forever
    "list_not_list",   # list: {"results": "document-1"}
    "list_wildcard",   # list: {"results": ["*"]}
    "list_bad_id",     # list: {"results": [7]}
    "list_bad_token",  # list: a next_page_token that is a number
    "actions_bad",     # actions: {"results": ["read", 1]}
})


class _Bad(Exception):
    """A request the server answers with 400."""


class OsoCloudServer:
    """Oso Cloud's check, list, actions and batch endpoints on ``127.0.0.1``, in a thread."""

    def __init__(self, policy: str | Path = POLICY, *, api_key: str = API_KEY,
                 types: dict[str, str] | None = None, max_page_size: int | None = None,
                 latency: float = 0.0) -> None:
        self.authz = Authorizer(policy)
        self.api_key = api_key
        self.types = dict(DEMO_TYPES if types is None else types)
        self.oso_types = {ours: theirs for theirs, ours in self.types.items()}
        self.max_page_size = max_page_size
        self.latency = latency
        """Seconds added to every answer, as a remote engine's network round trip would."""
        self.fault: str | None = None
        self.fault_paths: set[str] | None = None
        self.delay = 30.0
        self.released = threading.Event()
        self.lock = threading.Lock()
        self.hits: dict[str, int] = {}
        self.bodies: list[tuple[str, Any]] = []
        self.handler_ns: list[int] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.offset = 0
        self.errors: list[BaseException] = []
        """What handlers raised, but a client hanging up (a slow answer nobody waits for)."""
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        assert self._httpd is not None, "start() the server first"
        return f"http://127.0.0.1:{self._httpd.server_port}"

    def start(self) -> OsoCloudServer:
        httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        httpd.oso = self
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="oso-cloud-test-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.released.set()  # let slow handlers go
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> OsoCloudServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def faulty(self, path: str) -> str | None:
        if self.fault is None or (self.fault_paths is not None and path not in self.fault_paths):
            return None
        return self.fault

    # ------------------------------------------------------------- the API
    def answer(self, path: str, body: Any) -> Any:
        """The JSON answer of one endpoint (raises _Bad for a request it cannot read)."""
        if path == "/api/authorize":
            principal, resource, context = self._question(body, with_resource=True)
            decision = self.authz.check(principal, _str(body, "action"), resource, context)
            return {"allowed": decision.allowed}
        if path == "/api/list":
            principal, _, context = self._question(body, with_resource=False)
            rtype = self._our_type(_str(body, "resource_type"))
            keys = self.authz.list_resources(principal, _str(body, "action"), rtype, context)
            ids = sorted(k.partition(":")[2] for k in keys)
            size = body.get("page_size") or len(ids) or 1
            if self.max_page_size is not None:
                size = min(size, self.max_page_size)
            token = body.get("page_token") or "0"
            start = int(token) if isinstance(token, str) and token.isdigit() else 0
            more = start + size < len(ids)
            return {"results": ids[start:start + size],
                    "next_page_token": str(start + size) if more else None}
        if path == "/api/actions":
            principal, resource, context = self._question(body, with_resource=True)
            return {"results": sorted(self.authz.list_actions(principal, resource, context))}
        if path == "/api/batch":
            self._batch(body)
            return {"message": "Batch applied."}
        raise _Bad(f"no endpoint {path}")

    def _our_type(self, oso_type: str) -> str:
        return self.types.get(oso_type, oso_type[:1].lower() + oso_type[1:])

    def _key(self, value: Any) -> str:
        if not isinstance(value, dict) or not isinstance(value.get("type"), str) \
                or not isinstance(value.get("id"), str):
            raise _Bad(f"expected a concrete value {{type, id}}, got {value!r}")
        return f"{self._our_type(value['type'])}:{value['id']}"

    def _question(self, body: Any, *, with_resource: bool) -> tuple[Any, Any, dict[str, Any]]:
        if not isinstance(body, dict):
            raise _Bad("the body must be a JSON object")
        pkey = self._key({"type": body.get("actor_type"), "id": body.get("actor_id")})
        rkey = (self._key({"type": body.get("resource_type"), "id": body.get("resource_id")})
                if with_resource else None)
        attrs: dict[str, dict[str, Any]] = {pkey: {}}
        if rkey is not None:
            attrs[rkey] = {}
        context: dict[str, Any] = {}
        facts = body.get("context_facts") or []
        if not isinstance(facts, list):
            raise _Bad("context_facts must be a list")
        for fact in facts:
            predicate, args = _fact(fact)
            if predicate == "has_attribute" and len(args) == 3:
                entity = self._key(args[0])
                if entity not in attrs:
                    raise _Bad(f"this server takes context attributes of the actor and resource "
                               f"only, not of {entity}")
                _put(attrs[entity], _scalar_string(args[1]), _scalar(args[2]))
            elif predicate == "has_context" and len(args) == 2:
                _put(context, _scalar_string(args[0]), _scalar(args[1]))
            else:
                raise _Bad(f"unknown context fact {predicate}/{len(args)}")
        principal: Any = Entity.parse(pkey, attrs[pkey]) if attrs[pkey] else pkey
        resource: Any = None
        if rkey is not None:
            resource = Entity.parse(rkey, attrs[rkey]) if attrs[rkey] else rkey
        return principal, resource, context

    def _relationship(self, predicate: str, args: list[Any]) -> Relationship:
        if predicate == "has_relation" and len(args) == 3:
            return Relationship(self._key(args[0]), _scalar_string(args[1]), self._key(args[2]))
        if predicate == "has_userset" and len(args) == 4:
            return Relationship(self._key(args[0]), _scalar_string(args[1]),
                                f"{self._key(args[2])}#{_scalar_string(args[3])}")
        if predicate == "has_wildcard" and len(args) == 3:
            return Relationship(self._key(args[0]), _scalar_string(args[1]),
                                f"{self._our_type(_scalar_string(args[2]))}:*")
        raise _Bad(f"no fact {predicate}/{len(args)} in this policy")

    def _batch(self, body: Any) -> None:
        if not isinstance(body, list):
            raise _Bad("a batch is a list of changesets")
        for changeset in body:
            if not isinstance(changeset, dict) or len(changeset) != 1:
                raise _Bad("a changeset is {\"inserts\": [...]} or {\"deletes\": [...]}")
            (kind, facts), = changeset.items()
            if kind not in ("inserts", "deletes") or not isinstance(facts, list):
                raise _Bad(f"unknown changeset {kind!r}")
            for fact in facts:
                predicate, args = _fact(fact)
                if predicate == "has_attribute" and len(args) == 3:
                    self._attribute(kind, args)
                    continue
                rel = self._relationship(predicate, args)
                try:
                    self.authz.write(**{"add" if kind == "inserts" else "remove": [rel]})
                except AgentAuthzError as exc:
                    raise _Bad(f"fact {predicate}{args} does not fit the policy: {exc}") from exc

    def _attribute(self, kind: str, args: list[Any]) -> None:
        entity = self._key(args[0])
        attrs = self.authz.store.get_attributes(entity)
        name = None if args[1].get("id") is None else _scalar_string(args[1])
        value = None if args[2].get("id") is None else _scalar(args[2])
        if kind == "inserts":
            if name is None or value is None:
                raise _Bad("an inserted fact must be concrete")
            _put(attrs, name, value)
        elif name is None:
            attrs = {}
        else:
            _remove(attrs, name, value)
        self.authz.set_attributes(entity, attrs)


def _fact(fact: Any) -> tuple[str, list[Any]]:
    if not isinstance(fact, dict) or not isinstance(fact.get("predicate"), str) \
            or not isinstance(fact.get("args"), list):
        raise _Bad(f"expected a fact {{predicate, args}}, got {fact!r}")
    return fact["predicate"], fact["args"]


def _str(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str):
        raise _Bad(f"{field} must be a string")
    return value


def _scalar(value: Any) -> Any:
    if not isinstance(value, dict) or not isinstance(value.get("id"), str):
        raise _Bad(f"expected a value, got {value!r}")
    kind, text = value.get("type"), value["id"]
    if kind == "String":
        return text
    if kind == "Integer":
        return int(text)
    if kind == "Boolean":
        return text == "true"
    raise _Bad(f"a context or attribute value of type {kind!r}")


def _scalar_string(value: Any) -> str:
    text = _scalar(value)
    if not isinstance(text, str):
        raise _Bad(f"expected a String, got {value!r}")
    return text


def _put(target: dict[str, Any], dotted: str, value: Any) -> None:
    """Set a dotted name; a name given twice becomes a list of its values (Oso's facts are sets)."""
    *parents, last = dotted.split(".")
    for part in parents:
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            raise _Bad(f"{dotted} nests under a value")
    if last not in target:
        target[last] = value
    elif isinstance(target[last], list):
        if value not in target[last]:
            target[last].append(value)
    elif target[last] != value:
        target[last] = [target[last], value]


def _remove(target: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        target = target.get(part, {})
    if last not in target:
        return
    if value is None or target[last] == value:
        del target[last]
    elif isinstance(target[last], list) and value in target[last]:
        target[last].remove(value)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    oso: OsoCloudServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if error is not None and not isinstance(error, ConnectionError):
            self.oso.errors.append(error)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms ACK stall
    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def _serve(self) -> None:
        oso: OsoCloudServer = self.server.oso
        start = time.perf_counter_ns()
        path = self.path.split("?", 1)[0]
        if path == "/_test/handler_ns":  # not Oso's: the benchmark reads the server's own time
            with oso.lock:
                times, oso.handler_ns = oso.handler_ns, []
            self._send(200, times)
            return
        with oso.lock:
            oso.hits[path] = oso.hits.get(path, 0) + 1
            oso.in_flight += 1
            oso.max_in_flight = max(oso.max_in_flight, oso.in_flight)
        try:
            self._answer(oso, path)
        finally:
            elapsed = time.perf_counter_ns() - start
            with oso.lock:
                oso.in_flight -= 1
                oso.handler_ns.append(elapsed)

    def _answer(self, oso: OsoCloudServer, path: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        fault = oso.faulty(path)
        if oso.latency:
            time.sleep(oso.latency)
        if fault == "slow":
            oso.released.wait(oso.delay)
        if fault == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if self.headers.get("Authorization") != f"Bearer {oso.api_key}" or fault == "401":
            self._send(401, {"message": "Invalid API key"})
            return
        if fault == "500":
            self._send_raw(500, b"internal error", "text/plain")
            return
        if fault == "malformed":
            self._send_raw(200, b'{"allowed": tru', "application/json")
            return
        if fault == "close":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "4096")
            self.end_headers()
            self.wfile.write(b'{"allowed": tr')
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        try:
            body = json.loads(raw) if raw else None
            with oso.lock:
                oso.bodies.append((path, body))
            answer = oso.answer(path, body)
        except (_Bad, ValueError, KeyError, TypeError, AgentAuthzError) as exc:
            self._send(400, {"message": str(exc)})
            return
        answer = _spoil(fault, path, answer)
        headers = {}
        if path == "/api/batch":
            with oso.lock:
                oso.offset += 1
                headers["OsoOffset"] = str(oso.offset)
        self._send(200, answer, headers)

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self._send_raw(status, json.dumps(body).encode(), "application/json", headers)

    def _send_raw(self, status: int, data: bytes, content_type: str,
                  headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def _spoil(fault: str | None, path: str, answer: Any) -> Any:
    if path == "/api/authorize":
        spoiled = {"allowed_string": {"allowed": "true"}, "allowed_int": {"allowed": 1},
                   "allowed_null": {"allowed": None}, "allowed_missing": {}}
        return spoiled.get(fault or "", answer)
    if path == "/api/list":
        if fault == "list_loop":
            return {"results": answer["results"], "next_page_token": "again"}
        if fault == "list_not_list":
            return {"results": "document-1", "next_page_token": None}
        if fault == "list_wildcard":
            return {"results": ["*"], "next_page_token": None}
        if fault == "list_bad_id":
            return {"results": [7], "next_page_token": None}
        if fault == "list_bad_token":
            return {"results": answer["results"], "next_page_token": 5}
    if path == "/api/actions" and fault == "actions_bad":
        return {"results": ["read", 1]}
    return answer


def refused_url() -> str:
    """A loopback URL nothing listens on: connecting to it is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@contextmanager
def demo_backend(**options: Any) -> Iterator[OsoCloudBackend]:
    """An OsoCloudBackend on a fresh server with the demo policy, the demo data sent as facts."""
    with OsoCloudServer() as server:
        settings: dict[str, Any] = {"timeout": 5.0, **options}
        backend = OsoCloudBackend(server.url, API_KEY, **settings)
        try:
            backend.load_data(DATA)
            yield backend
        finally:
            backend.close()


def _serve_forever() -> None:
    """``python -m tests.backends.servers.oso_cloud_server [LATENCY_MS]``: serve the demo until stdin closes.

    Prints the URL on the first line. The benchmark runs the server this way,
    in a process of its own, so that its time is not the client's.
    """
    latency = float(sys.argv[1]) / 1e3 if len(sys.argv) > 1 else 0.0
    with OsoCloudServer(latency=latency) as server:
        server.authz.load_data(DATA)
        print(server.url, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    _serve_forever()
