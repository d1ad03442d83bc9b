"""OPA: decisions from an Open Policy Agent server, over its REST Data API.

Every question is one ``POST /v1/data/{path}`` with ``{"input": ...}`` to a
rule you name; OPA answers ``{"result": ..., "decision_id": ...}``, and an
answer without ``result`` means the rule is undefined for that input.

The contract (the shipped ``examples/backends/opa/policy.rego`` follows it)::

    check            POST /v1/data/{decision}
      input          {"principal": {"type", "id", "attributes"?}, "action": str,
                      "resource": {"type", "id", "attributes"?}, "context": {...}}
      result         true | false
                     | {"allow": bool, "reasons"?: [str | {"message", "kind"?, "rule"?}]}

    list_resources   POST /v1/data/{list_resources}
      input          {"principal", "action", "resource": {"type"}, "context",
                      "page": {"size": int, "cursor"?: str | int}}
      result         [id, ...]                            the whole answer
                     | {"ids": [id, ...], "next": cursor | null}   one page

    list_actions     POST /v1/data/{list_actions}
      input          {"principal", "resource", "context"}
      result         [action, ...]

``attributes`` are sent only when the entity carries some; the policy merges
them over the attributes it stores. Ids in a list answer are bare ids (the
``id`` half of ``type:id``). The agent chain and the task are not part of the
input: the agent layer (registry, delegation, task scopes, hard blocks)
decides above the backend, and a delegated check reaches OPA as one plain
check per principal. The names ``agent_chain`` and ``task`` are reserved for
them.

Failure is a deny, never an allow. Whatever cannot be trusted raises
:class:`~agentauthz.errors.BackendError` (the authorizer turns it into a deny
with reason ``backend_error``): a timeout, a refused connection (after
``retries`` more attempts, the only failure retried: nothing was sent), an
HTTP status other than 200, a body that is not a JSON object, an undefined
result (a wrong path, or a policy or data not loaded), a result of the wrong
type, an id or action that is not a string. A list answer is never partial:
pages are followed to the end, and a page that fails, a repeated cursor or
more than ``max_pages`` pages fail the whole list. In a batch, each failing
item is a deny of its own.

OPA's ``decision_id`` (present when decision logging is on) is carried as the
last reason of the decision (kind ``opa_decision_id``), so that an audit
record can be matched with OPA's own decision log. OPA chooses the id; a
client cannot.

Needs httpx: ``pip install 'agentauthz[opa]'``. :func:`opa_data` (and
``python -m agentauthz.backends.opa data.yaml``) writes an agentauthz data
file as OPA's data document.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Generator, Hashable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, TypeVar, cast

from agentauthz.backends.base import BaseBackend
from agentauthz.engine.data import load_data
from agentauthz.engine.evaluator import CheckRequest
from agentauthz.errors import BackendError, ConfigurationError, InvalidInputError
from agentauthz.model import Decision, Entity, Outcome, Reason, parse_entity_key
from agentauthz.typing import Context, EntityLike

try:
    import httpx
except ImportError:  # pragma: no cover - exercised in a subprocess by the tests
    httpx = None  # type: ignore[assignment]

__all__ = ["OPABackend", "opa_data"]

log = logging.getLogger("agentauthz.backends.opa")

T = TypeVar("T")

_SEGMENT: Final = re.compile(r"[A-Za-z0-9_\-]+")
_MAX_REASONS: Final = 32
_MAX_TEXT: Final = 500
_UNKNOWN_VERSION: Final = "unknown"


@dataclass(frozen=True, slots=True)
class _Call:
    """One request of a question: the rule's path, the JSON body, and what it is for."""

    path: str
    body: bytes
    what: str


# A question as a generator: it yields the requests it needs and receives each
# answer's JSON document, so that the sync and async twins share every step
# but the I/O (sans-I/O, as httpx shares its logic between its two clients).
_Flow = Generator[_Call, dict[str, Any], T]


class OPABackend(BaseBackend):
    """Asks an OPA server, over its REST Data API.

    ``url`` is OPA's base URL (``http://localhost:8181``); ``decision``
    names the rule that decides a check, as ``agentauthz/demo/decision`` or
    ``data.agentauthz.demo.decision``; ``list_resources`` and ``list_actions``
    name the rules that list (without them, the lists are not supported).
    Other keyword-only settings:

    ``timeout``
        seconds for each phase of a request (connect, write, each read, a
        pooled connection); default 2.
    ``retries``
        extra attempts after a connection error (nothing reached OPA);
        nothing else is retried. ``retry_backoff`` seconds before the first
        retry, doubling after each.
    ``max_concurrency``
        how many requests of one batch (``check_many``) are in flight at once.
    ``page_size``, ``max_pages``
        the page size asked of a list rule, and how many pages a list may
        take before it fails as truncated.
    ``token``, ``headers``
        a bearer token (OPA's ``--authentication=token``) and extra headers.
    ``policy_version``
        what to report as the decisions' policy version and :meth:`version`
        (for instance the bundle revision you deployed); OPA does not say.
        Without it decisions report ``"unknown"`` and the decision cache
        relies on its TTL.
    ``transport``, ``async_transport``
        httpx transports (for tests, proxies, or unix sockets).

    The clients are created on first use, one pooled ``httpx.Client`` and one
    ``httpx.AsyncClient``. Close them with :meth:`close` / :meth:`aclose`, or
    use the backend as a context manager (``with`` or ``async with``).
    """

    name = "opa"

    def __init__(self, url: str, *, decision: str, list_resources: str | None = None,
                 list_actions: str | None = None,
                 timeout: float = 2.0, retries: int = 2, retry_backoff: float = 0.05,
                 max_concurrency: int = 8, page_size: int = 1000, max_pages: int = 100,
                 token: str | None = None, headers: Mapping[str, str] | None = None,
                 policy_version: str | None = None,
                 transport: httpx.BaseTransport | None = None,
                 async_transport: httpx.AsyncBaseTransport | None = None) -> None:
        if httpx is None:
            raise ImportError("OPABackend needs httpx: pip install 'agentauthz[opa]'")
        self.url = _base_url(url)
        self.decision_path = _rule_path(decision, "decision")
        self.list_resources_path = (None if list_resources is None
                                    else _rule_path(list_resources, "list_resources"))
        self.list_actions_path = (None if list_actions is None
                                  else _rule_path(list_actions, "list_actions"))
        self.timeout = _positive(timeout, "timeout")
        self.retry_backoff = _positive(retry_backoff, "retry_backoff", zero=True)
        self.retries = _count(retries, "retries", low=0, high=10)
        self.max_concurrency = _count(max_concurrency, "max_concurrency", low=1, high=1024)
        self.page_size = _count(page_size, "page_size", low=1, high=1_000_000)
        self.max_pages = _count(max_pages, "max_pages", low=1, high=1_000_000)
        if policy_version is not None and not isinstance(policy_version, str):
            raise ConfigurationError("policy_version must be a string or None")
        self.policy_version = policy_version
        self._version = policy_version or _UNKNOWN_VERSION
        sent = {"Content-Type": "application/json", "Accept": "application/json",
                "User-Agent": "agentauthz-opa"}
        if token is not None:
            if not isinstance(token, str) or not token:
                raise ConfigurationError("token must be a non-empty string")
            sent["Authorization"] = f"Bearer {token}"
        sent.update(headers or {})
        self._headers = sent
        self._transport = transport
        self._async_transport = async_transport
        self._limits = httpx.Limits(max_connections=max(100, max_concurrency),
                                    max_keepalive_connections=max(20, max_concurrency))
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._aclient: httpx.AsyncClient | None = None
        self._aloop: asyncio.AbstractEventLoop | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._urls: dict[str, httpx.URL] = {}  # parsed once per rule, not once per request

    def __repr__(self) -> str:
        return f"OPABackend({self.url!r}, decision={self.decision_path!r})"

    def version(self) -> Hashable | None:
        return self.policy_version

    # ------------------------------------------------------------ questions
    def check(self, principal: EntityLike, action: str, resource: EntityLike,
              context: Context | None = None) -> Decision:
        return self._run(self._check_flow(principal, action, resource, context))

    async def acheck(self, principal: EntityLike, action: str, resource: EntityLike,
                     context: Context | None = None) -> Decision:
        return await self._arun(self._check_flow(principal, action, resource, context))

    def check_many(self, requests: Sequence[CheckRequest]) -> list[Decision]:
        """Decide a batch, ``max_concurrency`` requests in flight; a failing item denies alone."""
        if len(requests) <= 1:
            return [self._batch_item(r) for r in requests]
        return list(self._executor().map(self._batch_item, requests))

    async def acheck_many(self, requests: Sequence[CheckRequest]) -> list[Decision]:
        bound = asyncio.Semaphore(self.max_concurrency)

        async def one(item: object) -> Decision:
            request = _request(item)
            if request is None:
                return self._invalid_item()
            async with bound:
                try:
                    return await self.acheck(request.principal, request.action,
                                             request.resource, request.context)
                except BackendError as exc:
                    return _failed_item(exc)

        return list(await asyncio.gather(*(one(r) for r in requests)))

    def list_resources(self, principal: EntityLike, action: str, resource_type: str,
                       context: Context | None = None) -> frozenset[str]:
        return self._run(self._list_resources_flow(principal, action, resource_type, context))

    async def alist_resources(self, principal: EntityLike, action: str, resource_type: str,
                              context: Context | None = None) -> frozenset[str]:
        return await self._arun(self._list_resources_flow(principal, action, resource_type,
                                                          context))

    def list_actions(self, principal: EntityLike, resource: EntityLike,
                     context: Context | None = None) -> frozenset[str]:
        return self._run(self._list_actions_flow(principal, resource, context))

    async def alist_actions(self, principal: EntityLike, resource: EntityLike,
                            context: Context | None = None) -> frozenset[str]:
        return await self._arun(self._list_actions_flow(principal, resource, context))

    def _batch_item(self, item: object) -> Decision:
        request = _request(item)
        if request is None:
            return self._invalid_item()
        try:
            return self.check(request.principal, request.action, request.resource,
                              request.context)
        except BackendError as exc:
            return _failed_item(exc)

    def _invalid_item(self) -> Decision:
        return Decision(False, Outcome.DENY, (Reason(
            "invalid_input", "a batch item must be a CheckRequest or a tuple (principal, action, "
            "resource[, context])"),), self._version)

    # -------------------------------------------------------------- flows
    def _check_flow(self, principal: EntityLike, action: str, resource: EntityLike,
                    context: Context | None) -> _Flow[Decision]:
        try:
            if type(action) is not str or not action:
                raise InvalidInputError("action must be a non-empty string")
            body = _encode({"principal": _entity(principal, "principal"), "action": action,
                            "resource": _entity(resource, "resource"),
                            "context": _context(context)})
        except InvalidInputError as exc:
            return Decision(False, Outcome.DENY, (Reason("invalid_input", str(exc)[:_MAX_TEXT]),),
                            self._version)
        doc = yield _Call(self.decision_path, body, "check")
        return self._decision(doc)

    def _list_resources_flow(self, principal: EntityLike, action: str, resource_type: str,
                             context: Context | None) -> _Flow[frozenset[str]]:
        path = self._listing(self.list_resources_path, "list_resources")
        if type(action) is not str or not action:
            raise InvalidInputError("action must be a non-empty string")
        if type(resource_type) is not str:
            raise InvalidInputError("resource_type must be a type name")
        Entity(resource_type, "_")  # validates the type name
        question = {"principal": _entity(principal, "principal"), "action": action,
                    "resource": {"type": resource_type}, "context": _context(context)}
        found: set[str] = set()
        cursors: set[str | int] = set()
        cursor: str | int | None = None
        for page in range(1, self.max_pages + 1):
            paging: dict[str, Any] = {"size": self.page_size}
            if cursor is not None:
                paging["cursor"] = cursor
            doc = yield _Call(path, _encode({**question, "page": paging}),
                              f"list_resources page {page}")
            ids, cursor = _page(self._result(path, doc), first=page == 1)
            for id_ in ids:
                key = f"{resource_type}:{id_}"
                try:
                    parse_entity_key(key)
                except InvalidInputError as exc:
                    raise BackendError(f"OPA listed an id that is not a valid {resource_type} "
                                       f"id ({exc}); refusing the list") from exc
                found.add(key)
            if cursor is None:
                return frozenset(found)
            if cursor in cursors:
                raise BackendError(f"OPA repeated the page cursor {cursor!r} of "
                                   f"data.{_dotted(path)}; refusing a list that never ends")
            cursors.add(cursor)
        raise BackendError(f"data.{_dotted(path)} still had pages after {self.max_pages} pages "
                           f"of {self.page_size}; refusing a truncated list (raise max_pages)")

    def _list_actions_flow(self, principal: EntityLike, resource: EntityLike,
                           context: Context | None) -> _Flow[frozenset[str]]:
        path = self._listing(self.list_actions_path, "list_actions")
        body = _encode({"principal": _entity(principal, "principal"),
                        "resource": _entity(resource, "resource"), "context": _context(context)})
        result = self._result(path, (yield _Call(path, body, "list_actions")))
        if not isinstance(result, list) or not all(type(a) is str and a for a in result):
            raise BackendError(f"data.{_dotted(path)} must be a list of action names, got "
                               f"{_shape(result)}")
        return frozenset(result)

    def _listing(self, path: str | None, what: str) -> str:
        if path is None:
            raise NotImplementedError(f"OPABackend lists nothing without {what}=...: name "
                                      f"the rule that answers {what}")
        return path

    # ------------------------------------------------------------ answers
    def _result(self, path: str, doc: dict[str, Any]) -> Any:
        if "result" not in doc:
            raise BackendError(f"data.{_dotted(path)} is undefined for this input{_ids(doc)}: "
                               "check the path, and that the policy and its data are loaded")
        return doc["result"]

    def _decision(self, doc: dict[str, Any]) -> Decision:
        path = self.decision_path
        result = self._result(path, doc)
        decision_id = doc.get("decision_id")
        if decision_id is not None and type(decision_id) is not str:
            raise BackendError(f"OPA's decision_id must be a string, got {_shape(decision_id)}")
        tail = () if decision_id is None else (Reason(
            "opa_decision_id", f"OPA decision {decision_id[:_MAX_TEXT]} (data.{_dotted(path)}); "
            "find it in OPA's decision log"),)
        if result is True or result is False:
            reasons: tuple[Reason, ...] = ()
            allowed = result
        elif isinstance(result, dict) and type(result.get("allow")) is bool:
            allowed = result["allow"]
            reasons = _reasons(result.get("reasons"), path)
        else:
            raise BackendError(f"data.{_dotted(path)} must be a boolean or an object with a "
                               f"boolean 'allow', got {_shape(result)}{_ids(doc)}")
        if not reasons:
            reasons = (Reason("permit" if allowed else "default_deny",
                              f"data.{_dotted(path)} {'allows' if allowed else 'denies'}"),)
        return Decision(allowed, Outcome.ALLOW if allowed else Outcome.DENY, reasons + tail,
                        self._version)

    def _document(self, call: _Call, status: int, content: bytes) -> dict[str, Any]:
        """The JSON object of a 200 answer; anything else is the backend failing."""
        if status != 200:
            raise BackendError(f"OPA answered HTTP {status} to {call.what} "
                               f"(data.{_dotted(call.path)}){_opa_error(content)}")
        try:
            doc = json.loads(content)
        except ValueError as exc:
            raise BackendError(f"OPA's answer to {call.what} is not JSON "
                               f"({content[:80]!r})") from exc
        if not isinstance(doc, dict):
            raise BackendError(f"OPA's answer to {call.what} must be a JSON object, got "
                               f"{_shape(doc)}")
        return doc

    # ----------------------------------------------------------------- I/O
    def _run(self, flow: _Flow[T]) -> T:
        try:
            call = next(flow)
            while True:
                call = flow.send(self._post(call))
        except StopIteration as stop:
            return cast(T, stop.value)

    async def _arun(self, flow: _Flow[T]) -> T:
        try:
            call = next(flow)
            while True:
                call = flow.send(await self._apost(call))
        except StopIteration as stop:
            return cast(T, stop.value)

    def _post(self, call: _Call) -> dict[str, Any]:
        client = self._sync_client()
        attempt = 0
        while True:
            try:
                response = client.post(self._url(call), content=call.body)
            except httpx.HTTPError as exc:
                attempt += 1
                if not self._retry(exc, attempt, call):
                    raise self._failure(exc, call, attempt) from exc
                time.sleep(self._backoff(attempt))
                continue
            return self._document(call, response.status_code, response.content)

    async def _apost(self, call: _Call) -> dict[str, Any]:
        client = self._async_client()
        attempt = 0
        while True:
            try:
                response = await client.post(self._url(call), content=call.body)
            except httpx.HTTPError as exc:
                attempt += 1
                if not self._retry(exc, attempt, call):
                    raise self._failure(exc, call, attempt) from exc
                await asyncio.sleep(self._backoff(attempt))
                continue
            return self._document(call, response.status_code, response.content)

    def _url(self, call: _Call) -> httpx.URL:
        url = self._urls.get(call.path)
        if url is None:
            url = self._urls[call.path] = httpx.URL(f"{self.url}/v1/data/{call.path}")
        return url

    def _retry(self, exc: Exception, attempt: int, call: _Call) -> bool:
        """Retry only what never reached OPA: a failed connection, within ``retries``."""
        if isinstance(exc, httpx.ConnectError) and attempt <= self.retries:
            log.info("agentauthz: OPA at %s: %s failed to connect (%s); retry %d of %d",
                     self.url, call.what, exc, attempt, self.retries)
            return True
        return False

    def _backoff(self, attempt: int) -> float:
        return float(self.retry_backoff * 2 ** (attempt - 1))

    def _failure(self, exc: Exception, call: _Call, attempts: int) -> BackendError:
        where = f"OPA at {self.url} ({call.what}, data.{_dotted(call.path)})"
        if isinstance(exc, httpx.TimeoutException):
            return BackendError(f"{where} timed out after {self.timeout:g} s "
                                f"({type(exc).__name__})")
        if isinstance(exc, httpx.ConnectError):
            return BackendError(f"{where} is unreachable after {attempts} attempt"
                                f"{'s' if attempts != 1 else ''} ({exc})")
        return BackendError(f"{where} failed: {type(exc).__name__}: {exc}")

    def _sync_client(self) -> httpx.Client:
        client = self._client
        if client is None:
            with self._lock:
                client = self._client
                if client is None:
                    client = self._client = httpx.Client(
                        headers=self._headers, timeout=self.timeout, limits=self._limits,
                        transport=self._transport, trust_env=False)
        return client

    def _async_client(self) -> httpx.AsyncClient:
        # An AsyncClient's connections belong to the event loop that opened them.
        loop = asyncio.get_running_loop()
        client = self._aclient
        if client is None or self._aloop is not loop:
            if client is not None:
                log.warning("agentauthz: OPABackend used from a new event loop; the client of "
                            "the previous loop is abandoned (await aclose() before a loop ends)")
            client = self._aclient = httpx.AsyncClient(
                headers=self._headers, timeout=self.timeout, limits=self._limits,
                transport=self._async_transport, trust_env=False)
            self._aloop = loop
        return client

    def _executor(self) -> ThreadPoolExecutor:
        pool = self._pool
        if pool is None:
            with self._lock:
                pool = self._pool
                if pool is None:
                    pool = self._pool = ThreadPoolExecutor(
                        self.max_concurrency, thread_name_prefix="agentauthz-opa")
        return pool

    # ------------------------------------------------------------- closing
    def close(self) -> None:
        """Close the sync client and the batch threads (the backend reopens them if used again)."""
        with self._lock:
            client, self._client = self._client, None
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """Close the async client, then what :meth:`close` closes."""
        client, self._aclient, self._aloop = self._aclient, None, None
        if client is not None:
            await client.aclose()
        self.close()

    def __enter__(self) -> OPABackend:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    async def __aenter__(self) -> OPABackend:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()


# --------------------------------------------------------------- requests
def _entity(value: object, what: str) -> dict[str, Any]:
    if isinstance(value, Entity):
        entity = value
    elif isinstance(value, str):
        entity = Entity.parse(value)
    else:
        raise InvalidInputError(f"{what} must be an Entity or a 'type:id' string, "
                                f"got {type(value).__name__}")
    out: dict[str, Any] = {"type": entity.type, "id": entity.id}
    if entity.attributes:
        out["attributes"] = dict(entity.attributes)
    return out


def _context(context: Context | None) -> dict[str, Any]:
    if context is None:
        return {}
    if not isinstance(context, Mapping):
        raise InvalidInputError(f"context must be a mapping, got {type(context).__name__}")
    return dict(context)


def _encode(question: dict[str, Any]) -> bytes:
    try:
        return json.dumps({"input": question}, separators=(",", ":"), allow_nan=False,
                          default=_json_value).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidInputError(f"the request cannot be sent as JSON ({exc})") from exc


def _json_value(value: object) -> Any:
    """What JSON lacks: timestamps as RFC 3339 text, durations in seconds, sets as lists."""
    if isinstance(value, _dt.datetime | _dt.date | _dt.time):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# ---------------------------------------------------------------- answers
def _reasons(raw: object, path: str) -> tuple[Reason, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise BackendError(f"data.{_dotted(path)}: 'reasons' must be a list, got {_shape(raw)}")
    out = []
    for item in raw[:_MAX_REASONS]:
        if type(item) is str:
            out.append(Reason("opa", item[:_MAX_TEXT]))
            continue
        if not isinstance(item, dict) or type(item.get("message")) is not str:
            raise BackendError(f"data.{_dotted(path)}: a reason must be a string or an object "
                               f"with a string 'message', got {_shape(item)}")
        kind, rule = item.get("kind", "opa"), item.get("rule")
        if type(kind) is not str or (rule is not None and type(rule) is not str):
            raise BackendError(f"data.{_dotted(path)}: a reason's 'kind' and 'rule' must be "
                               "strings")
        out.append(Reason(kind[:64], item["message"][:_MAX_TEXT],
                          None if rule is None else rule[:_MAX_TEXT]))
    return tuple(out)


def _page(result: object, *, first: bool) -> tuple[list[str], str | int | None]:
    """The ids of one page of a list answer and the cursor of the next (``None``: the last)."""
    if isinstance(result, list) and first:
        ids, cursor = result, None
    elif isinstance(result, dict) and isinstance(result.get("ids"), list) and "next" in result:
        ids, cursor = result["ids"], result["next"]
        if cursor is not None and (type(cursor) not in (str, int) or cursor == ""):
            raise BackendError(f"a page's 'next' must be a string, an integer or null, got "
                               f"{_shape(cursor)}")
    else:
        raise BackendError("a list answer must be a list of ids or {'ids': [...], 'next': "
                           f"cursor or null}}, got {_shape(result)}")
    if not all(type(i) is str for i in ids):
        raise BackendError("a list answer's ids must be strings, got "
                           f"{_shape(next(i for i in ids if type(i) is not str))}")
    return ids, cursor


def _request(item: object) -> CheckRequest | None:
    if isinstance(item, CheckRequest):
        return item
    if isinstance(item, tuple) and len(item) in (3, 4):
        return CheckRequest(*item)
    return None


def _failed_item(exc: BackendError) -> Decision:
    return Decision(False, Outcome.DENY, (Reason("backend_error", f"the 'opa' backend failed "
                                                 f"({exc})"[:_MAX_TEXT]),), _UNKNOWN_VERSION)


def _opa_error(content: bytes) -> str:
    """OPA's error body (``{"code", "message"}``), when there is one, for the error message."""
    try:
        body = json.loads(content)
    except ValueError:
        return ""
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        code = body.get("code")
        return f": {code + ': ' if isinstance(code, str) else ''}{body['message'][:300]}"
    return ""


def _ids(doc: Mapping[str, Any]) -> str:
    decision_id = doc.get("decision_id")
    return f" (OPA decision {decision_id[:100]})" if isinstance(decision_id, str) else ""


def _shape(value: object) -> str:
    text = json.dumps(value, default=repr)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"


# ---------------------------------------------------------- configuration
def _base_url(url: object) -> str:
    if not isinstance(url, str):
        raise ConfigurationError(f"url must be OPA's base URL as a string, got {type(url).__name__}")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ConfigurationError(f"url {url!r} is not a URL ({exc})") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host or parsed.query or parsed.fragment:
        raise ConfigurationError(f"url {url!r} must be OPA's base URL, e.g. "
                                 "'http://localhost:8181' (http or https, no query)")
    return url.rstrip("/")


def _rule_path(path: object, what: str) -> str:
    """``a/b/c`` from ``a/b/c``, ``/a/b/c``, ``/v1/data/a/b/c`` or ``data.a.b.c``."""
    if not isinstance(path, str):
        raise ConfigurationError(f"{what} must be a string such as 'agentauthz/demo/decision'")
    text = path.strip()
    if text.startswith("data."):
        text = text[5:].replace(".", "/")
    text = text.strip("/")
    if text.startswith("v1/data/"):
        text = text[8:]
    segments = text.split("/")
    if not text or not all(_SEGMENT.fullmatch(s) for s in segments):
        raise ConfigurationError(f"{what}={path!r} must name a rule, as "
                                 "'agentauthz/demo/decision' or 'data.agentauthz.demo.decision'")
    return "/".join(segments)


def _dotted(path: str) -> str:
    return path.replace("/", ".")


def _positive(value: object, what: str, *, zero: bool = False) -> float:
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or not (value >= 0 if zero else value > 0) or value != value):
        raise ConfigurationError(f"{what} must be a {'non-negative' if zero else 'positive'} "
                                 f"number of seconds, got {value!r}")
    return float(value)


def _count(value: object, what: str, *, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigurationError(f"{what} must be an integer from {low} to {high}, got {value!r}")
    return value


# --------------------------------------------------------------- the data
def opa_data(source: str | os.PathLike[str] | Mapping[str, Any], *,
             policy: Any = None, root: str = "agentauthz") -> dict[str, Any]:
    """An agentauthz data file (or mapping) as OPA's data document.

    Returns ``{root: {"relationships": {relation: {object: [subject, ...]}},
    "attributes": {"type:id": {...}}, "entities": {type: [id, ...]}}}``,
    the shape ``examples/backends/opa/policy.rego`` reads: relations indexed
    relation first (so that ``graph.reachable`` walks a relation straight from
    the data), and every entity the data names, for ``list_resources``. With
    ``policy`` (anything :meth:`Policy.load <agentauthz.policy.Policy.load>`
    takes), relationships are validated against its schema first.
    """
    if not isinstance(root, str) or not _SEGMENT.fullmatch(root):
        raise ConfigurationError(f"root={root!r} must be one path segment, e.g. 'agentauthz'")
    dataset = load_data(source)
    if policy is not None:
        from agentauthz.engine.evaluator import Evaluator
        from agentauthz.policy.schema import Policy

        Evaluator(Policy.load(policy)).write(add=dataset.relationships)
    relations: dict[str, dict[str, list[str]]] = {}
    known: dict[str, set[str]] = {}

    def seen(key: str) -> None:
        type_, _, id_ = key.partition(":")
        if id_ != "*":
            known.setdefault(type_, set()).add(id_)

    for rel in dataset.relationships:
        subjects = relations.setdefault(rel.relation, {}).setdefault(rel.resource, [])
        if rel.subject not in subjects:
            subjects.append(rel.subject)
        seen(rel.resource)
        seen(rel.subject.partition("#")[0])
    for key in dataset.attributes:
        seen(key)
    return {root: {
        "relationships": {r: {o: sorted(s) for o, s in sorted(objs.items())}
                          for r, objs in sorted(relations.items())},
        "attributes": {k: dict(v) for k, v in sorted(dataset.attributes.items())},
        "entities": {t: sorted(ids) for t, ids in sorted(known.items())},
    }}


def main(argv: Iterable[str] | None = None) -> int:
    """``python -m agentauthz.backends.opa data.yaml [--policy policy.yaml] > data.json``."""
    parser = argparse.ArgumentParser(
        prog="python -m agentauthz.backends.opa",
        description="Write an agentauthz data file as OPA's data document (JSON).")
    parser.add_argument("data", help="the data file (YAML or JSON)")
    parser.add_argument("--policy", help="validate the relationships against this policy")
    parser.add_argument("--root", default="agentauthz",
                        help="where the data goes under OPA's data (default: agentauthz)")
    parser.add_argument("-o", "--output", help="write here instead of standard output")
    args = parser.parse_args(None if argv is None else list(argv))
    document = opa_data(args.data, policy=args.policy, root=args.root)
    text = json.dumps(document, indent=2, sort_keys=True, default=_json_value) + "\n"
    if args.output:
        with open(args.output, "w", encoding="utf-8") as out:
            out.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":  # pragma: no cover - run as a module by the tests in a subprocess
    sys.exit(main())
