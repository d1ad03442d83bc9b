"""OpenID AuthZEN: decide with any AuthZEN Policy Decision Point (PDP) over HTTP.

This is the enforcement-point side of the OpenID AuthZEN Authorization API
1.0 (the final specification of January 2026; shapes as its conformance
scenario exercises them). Every question becomes one JSON ``POST``:

=================  ======================================  ===========================
question           AuthZEN API                             default endpoint
=================  ======================================  ===========================
``check``          Access Evaluation                       ``/access/v1/evaluation``
``check_many``     Access Evaluations (``execute_all``)    ``/access/v1/evaluations``
``list_resources`` Resource Search, every page             ``/access/v1/search/resource``
``list_actions``   Action Search, every page               ``/access/v1/search/action``
``list_subjects``  Subject Search, every page              ``/access/v1/search/subject``
=================  ======================================  ===========================

The endpoints come from the PDP's metadata, ``/.well-known/authzen-configuration``
inserted after the host of ``url`` (``discovery="auto"``: a 404 there means the
default paths above, under ``url``).

**Input.** ``"type:id"`` (or an :class:`~agentauthz.Entity`) becomes
``{"type": ..., "id": ...}``, with the entity's attributes as ``properties``;
the action becomes ``{"name": action}``; the context mapping becomes
``context`` (datetimes as RFC 3339 strings, durations as ``"<seconds>s"``). A
request that cannot be written that way (not ``type:id``, context not JSON)
is denied with reason ``invalid_input`` before anything is sent.

**Output.** Only a literal JSON ``true`` in ``decision`` allows; ``false``
denies; anything else (``"true"``, ``1``, ``null``, no ``decision``) is a
:class:`~agentauthz.errors.BackendError`, as are a non-200 status, a body
that is not strict JSON (duplicate keys, ``NaN``), an answer larger than
``max_response_bytes``, an ``X-Request-ID`` echoed back different from the
one sent, and a batch answer whose length differs from the request or with
any malformed item (the whole batch is then denied: it cannot be trusted). The
PDP's ``context`` becomes the decision's reasons: ``reason_admin`` (or a
plain ``reason``) in the ``pdp`` reason, ``reason_user`` as ``pdp_user_reason``,
``error`` as ``pdp_error``; each reason names the request's ``X-Request-ID``.
Search results must have the asked type and a valid id; pages are followed
to the end (an empty ``next_token``) within ``max_pages`` and ``max_results``:
a repeated token, a malformed page or a ``count``/``total`` that says results
are missing is a ``BackendError``, never a partial list.

**Transport.** One pooled ``httpx.Client`` and one ``httpx.AsyncClient`` per
event loop, created on first use; ``close()`` / ``aclose()``, or use the
backend as a (async) context manager. An async client is also closed when
its event loop shuts down (``asyncio.run``'s end). ``timeout`` bounds each
phase of each HTTP request (connect, write, each read, pool); ``retries``
re-attempts only failed connections (``ConnectError``, ``ConnectTimeout``),
never a request the PDP may have received. Every request carries a fresh
``X-Request-ID`` (or ``request_id()``'s) for correlation with the PDP's logs.

The agent layer (registry, delegation, tasks, break-glass, tool guard) sits
above any backend: a delegated check reaches the PDP as one plain question
per branch (the agent, then the user).

Importing this module does not import httpx; constructing a backend does
(``pip install 'agentauthz[authzen]'``).
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import functools
import inspect
import ipaddress
import json
import logging
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Generator, Hashable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar, cast
from urllib.parse import urlsplit

from agentauthz.backends.base import BaseBackend
from agentauthz.engine.evaluator import CheckRequest
from agentauthz.errors import BackendError, ConfigurationError, InvalidInputError
from agentauthz.model import Decision, Entity, Outcome, Reason, parse_entity_key
from agentauthz.typing import Context, EntityLike

if TYPE_CHECKING:
    import httpx

__all__ = ["AuthZENBackend", "Endpoints"]

log = logging.getLogger("agentauthz.backends.authzen")

_T = TypeVar("_T")
_WELL_KNOWN: Final = "/.well-known/authzen-configuration"
_PATHS: Final = {
    "evaluation": "/access/v1/evaluation",
    "evaluations": "/access/v1/evaluations",
    "search_subject": "/access/v1/search/subject",
    "search_resource": "/access/v1/search/resource",
    "search_action": "/access/v1/search/action",
}
_METADATA_KEYS: Final = {
    "evaluation": "access_evaluation_endpoint",
    "evaluations": "access_evaluations_endpoint",
    "search_subject": "search_subject_endpoint",
    "search_resource": "search_resource_endpoint",
    "search_action": "search_action_endpoint",
}
# transport-level httpx options: they only take effect on the transport we build
_TRANSPORT_OPTIONS: Final = frozenset({"verify", "cert", "limits", "http1", "http2", "trust_env",
                                       "local_address", "uds", "socket_options"})
_UNKNOWN_VERSION: Final = "unknown"
_EXECUTE_ALL: Final = b'"options":{"evaluations_semantic":"execute_all"}'
_CONTROL: Final = dict.fromkeys((*range(32), *range(127, 160), 0x2028, 0x2029), " ")


@dataclass(frozen=True, slots=True)
class Endpoints:
    """The PDP's API URLs; ``None`` where the PDP does not offer that API."""

    evaluation: str
    evaluations: str | None
    search_subject: str | None
    search_resource: str | None
    search_action: str | None
    discovered: bool
    """True when read from the PDP's metadata, False for the default paths."""


@dataclass(frozen=True, slots=True)
class _Request:
    """One HTTP exchange a flow asks for: ``GET`` (``body`` None) or JSON ``POST``."""

    what: str
    url: str
    body: bytes | None


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    content: bytes
    request_id: str


# A flow is the logic of one question, free of I/O: it yields the HTTP
# requests it needs and is sent their replies. ``_run`` drives it with the
# sync client, ``_arun`` with the async one: the twins share everything else.
_Flow = Generator[_Request, _Reply, _T]


def _require_httpx() -> ModuleType:
    try:
        import httpx
    except ImportError as exc:
        raise ImportError("AuthZENBackend needs httpx: pip install 'agentauthz[authzen]'") from exc
    return httpx


class AuthZENBackend(BaseBackend):
    """Asks an OpenID AuthZEN 1.0 PDP (OpenFGA, Topaz, Cerbos, Axiomatics, ...).

    ``url`` is the PDP's identifier, its base URL: ``https://pdp.example.com``
    or, for a multi-tenant PDP, ``https://pdp.example.com/stores/01H...``.
    Plain ``http`` is refused except to a loopback address, unless
    ``insecure_http=True``: an answer anyone on the path can rewrite is not
    an authorization decision.

    Keyword-only settings:

    ``discovery``
        ``"auto"`` (default): read the PDP metadata on first use, and use the
        default paths if it answers 404; ``"required"``: the metadata must
        be there; ``"off"``: the default paths, no metadata request.
        The metadata's ``policy_decision_point`` must equal ``url`` and every
        endpoint must be on ``url``'s origin, else the PDP is not trusted.
    ``metadata_url``
        where the metadata is, when the PDP does not follow the well-known
        derivation (OpenFGA: ``.../.well-known/authzen-configuration/{store_id}``).
    ``timeout``
        seconds for each phase of each HTTP request (connect, write, read, pool).
    ``retries``
        extra attempts to *connect* (the first at once, then 0.5 s, 1 s, ... apart);
        nothing else is retried.
    ``headers``
        sent with every request, e.g. ``{"Authorization": "Bearer ..."}``.
    ``client_options``
        more ``httpx.Client`` / ``httpx.AsyncClient`` settings: ``auth``,
        ``verify``, ``cert``, ``limits``, ``proxy``, ``http2``, ``transport``
        (a transport of your own replaces ours, and its retries with it).
    ``batch_size``, ``max_concurrency``
        evaluations per ``/evaluations`` request, and how many requests one
        ``check_many`` has in flight at once (batches, or single evaluations
        when the PDP has no batch API).
    ``page_size``
        sent as ``page.limit`` in searches (``None``: the PDP's page size).
    ``max_pages``, ``max_results``
        a search that needs more pages or returns more results fails: never
        a silently partial list.
    ``max_response_bytes``
        a larger answer (decompressed) fails.
    ``actions``
        ``{resource_type: [actions]}``, the actions of each type: ``list_actions``
        answers only these (a PDP may find more, such as OpenFGA's helper
        relations), and evaluates them in one batch when the PDP has no
        action search.
    ``policy_version``
        what ``version()`` reports and decisions carry, if you know it (e.g.
        the policy bundle the PDP runs); ``None``: unknown, and a decision
        cache relies on its TTL.
    ``request_id``
        makes each ``X-Request-ID`` (default: a random UUID); e.g. reuse the
        id of the request your application is serving.
    """

    name = "authzen"

    def __init__(self, url: str, *, discovery: Literal["auto", "required", "off"] = "auto",
                 metadata_url: str | None = None, timeout: float = 2.0, retries: int = 2,
                 headers: Mapping[str, str] | None = None,
                 client_options: Mapping[str, Any] | None = None,
                 batch_size: int = 100, max_concurrency: int = 8, page_size: int | None = None,
                 max_pages: int = 1000, max_results: int = 100_000,
                 max_response_bytes: int = 8 * 1024 * 1024,
                 actions: Mapping[str, Iterable[str]] | None = None,
                 policy_version: str | None = None,
                 request_id: Callable[[], str] | None = None,
                 insecure_http: bool = False) -> None:
        self.url = _pdp_url(url, insecure_http=insecure_http)
        if discovery not in ("auto", "required", "off"):
            raise ConfigurationError(f"AuthZENBackend(discovery={discovery!r}): use 'auto' "
                                     "(metadata if the PDP has it), 'required' or 'off'")
        self.discovery = discovery
        self.metadata_url = (_pdp_url(metadata_url, insecure_http=insecure_http, what="metadata_url")
                             if metadata_url is not None else _well_known(self.url))
        self.timeout = _positive("timeout", timeout, float)
        if type(retries) is not int or not 0 <= retries <= 10:
            raise ConfigurationError("AuthZENBackend(retries=...) must be an int from 0 to 10 "
                                     "(extra connection attempts)")
        self.retries = retries
        self.batch_size = int(_positive("batch_size", batch_size, int))
        self.max_concurrency = int(_positive("max_concurrency", max_concurrency, int))
        self.page_size = None if page_size is None else int(_positive("page_size", page_size, int))
        self.max_pages = int(_positive("max_pages", max_pages, int))
        self.max_results = int(_positive("max_results", max_results, int))
        self.max_response_bytes = int(_positive("max_response_bytes", max_response_bytes, int))
        self.headers = dict(headers or {})
        if not all(type(k) is str and type(v) is str for k, v in self.headers.items()):
            raise ConfigurationError("AuthZENBackend(headers=...) must map strings to strings")
        if any(k.lower() in ("x-request-id", "content-type") for k in self.headers):
            raise ConfigurationError("AuthZENBackend(headers=...): X-Request-ID and Content-Type "
                                     "are set per request; use request_id=... for the id")
        self._httpx = _require_httpx()
        self.client_options = _client_options(self._httpx, client_options)
        self.actions = _action_table(actions)
        if policy_version is not None and type(policy_version) is not str:
            raise ConfigurationError("AuthZENBackend(policy_version=...) must be a string or None")
        self.policy_version = policy_version
        self._decision_version = policy_version or _UNKNOWN_VERSION
        if request_id is not None and not callable(request_id):
            raise ConfigurationError("AuthZENBackend(request_id=...) must be a callable returning "
                                     "a string")
        self._make_request_id = request_id or _uuid
        self._endpoints: Endpoints | None = None
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._aclients: dict[asyncio.AbstractEventLoop | None, _LoopClient] = {}

    def __repr__(self) -> str:
        return f"AuthZENBackend({self.url!r})"

    def version(self) -> Hashable | None:
        return self.policy_version

    # ------------------------------------------------------------ questions
    def check(self, principal: EntityLike, action: str, resource: EntityLike,
              context: Context | None = None) -> Decision:
        try:
            body = _evaluation(principal, action, resource, context)
        except InvalidInputError as exc:
            return self._invalid(exc)
        return self._run(self._check_flow(body))

    async def acheck(self, principal: EntityLike, action: str, resource: EntityLike,
                     context: Context | None = None) -> Decision:
        try:
            body = _evaluation(principal, action, resource, context)
        except InvalidInputError as exc:
            return self._invalid(exc)
        return await self._arun(self._check_flow(body))

    def check_many(self, requests: Sequence[CheckRequest]) -> list[Decision]:
        out, items, positions = self._prepare_batch(requests)
        if items:
            endpoints = self._run(self._endpoints_flow())
            flows, slots = self._plan_batch(items, positions, endpoints)
            _place(out, slots, self._run_all(flows))
        return cast(list[Decision], out)

    async def acheck_many(self, requests: Sequence[CheckRequest]) -> list[Decision]:
        out, items, positions = self._prepare_batch(requests)
        if items:
            endpoints = await self._arun(self._endpoints_flow())
            flows, slots = self._plan_batch(items, positions, endpoints)
            _place(out, slots, await self._arun_all(flows))
        return cast(list[Decision], out)

    def list_resources(self, principal: EntityLike, action: str, resource_type: str,
                       context: Context | None = None) -> frozenset[str]:
        return self._run(self._resource_search(principal, action, resource_type, context))

    async def alist_resources(self, principal: EntityLike, action: str, resource_type: str,
                              context: Context | None = None) -> frozenset[str]:
        return await self._arun(self._resource_search(principal, action, resource_type, context))

    def list_actions(self, principal: EntityLike, resource: EntityLike,
                     context: Context | None = None) -> frozenset[str]:
        return self._run(self._actions_flow(principal, resource, context))

    async def alist_actions(self, principal: EntityLike, resource: EntityLike,
                            context: Context | None = None) -> frozenset[str]:
        return await self._arun(self._actions_flow(principal, resource, context))

    def list_subjects(self, subject_type: str, action: str, resource: EntityLike,
                      context: Context | None = None) -> frozenset[str]:
        """Every ``subject_type`` subject the PDP allows ``action`` on ``resource`` (Subject Search)."""
        return self._run(self._subject_search(subject_type, action, resource, context))

    async def alist_subjects(self, subject_type: str, action: str, resource: EntityLike,
                             context: Context | None = None) -> frozenset[str]:
        return await self._arun(self._subject_search(subject_type, action, resource, context))

    def discover(self) -> Endpoints:
        """Read the PDP's endpoints now (again); e.g. to fail fast at start-up."""
        self._endpoints = None
        return self._run(self._endpoints_flow())

    async def adiscover(self) -> Endpoints:
        self._endpoints = None
        return await self._arun(self._endpoints_flow())

    # ------------------------------------------------------------ the flows
    def _endpoints_flow(self) -> _Flow[Endpoints]:
        known = self._endpoints
        if known is not None:
            return known
        if self.discovery == "off":
            endpoints = _default_endpoints(self.url)
        else:
            reply = yield _Request("metadata", self.metadata_url, None)
            if reply.status == 404 and self.discovery == "auto":
                endpoints = _default_endpoints(self.url)
                log.debug("agentauthz: %s has no AuthZEN metadata; using the default paths",
                          self.url)
            else:
                endpoints = self._read_metadata(self._json(reply, "metadata"), reply)
        self._endpoints = endpoints
        return endpoints

    def _check_flow(self, body: bytes) -> _Flow[Decision]:
        endpoints = yield from self._endpoints_flow()
        reply = yield _Request("evaluation", endpoints.evaluation, body)
        return self._decision(self._json(reply, "evaluation"), reply.request_id, "evaluation")

    def _batch_flow(self, items: list[bytes]) -> _Flow[list[Decision]]:
        endpoints = yield from self._endpoints_flow()
        if endpoints.evaluations is None:  # no batch API: one evaluation after the other
            decisions = []
            for item in items:
                decisions.append((yield from self._check_flow(item)))
            return decisions
        body = b'{"evaluations":[' + b",".join(items) + b"]," + _EXECUTE_ALL + b"}"
        reply = yield _Request("evaluations", endpoints.evaluations, body)
        answer = self._json(reply, "evaluations")
        evaluations = answer.get("evaluations") if isinstance(answer, dict) else None
        if not isinstance(evaluations, list) or len(evaluations) != len(items):
            got = (f"{len(evaluations)} decisions" if isinstance(evaluations, list)
                   else "no 'evaluations' array")
            raise BackendError(f"the AuthZEN PDP answered a batch of {len(items)} with {got} "
                               f"(X-Request-ID {reply.request_id}); the whole batch is denied")
        return [self._decision(e, reply.request_id, f"evaluations[{i}]")
                for i, e in enumerate(evaluations)]

    def _single_flow(self, body: bytes) -> _Flow[list[Decision]]:
        return [(yield from self._check_flow(body))]

    def _prepare_batch(self, requests: Sequence[CheckRequest]
                       ) -> tuple[list[Decision | None], list[bytes], list[int]]:
        """Deny malformed requests now; the others as request bodies, with their positions."""
        out: list[Decision | None] = [None] * len(requests)
        items: list[bytes] = []
        positions: list[int] = []
        for i, r in enumerate(requests):
            try:
                if not isinstance(r, CheckRequest):
                    raise InvalidInputError(f"expected a CheckRequest, got {type(r).__name__}")
                items.append(_evaluation(r.principal, r.action, r.resource, r.context))
                positions.append(i)
            except InvalidInputError as exc:
                out[i] = self._invalid(exc)
        return out, items, positions

    def _plan_batch(self, items: list[bytes], positions: list[int], endpoints: Endpoints
                    ) -> tuple[list[_Flow[list[Decision]]], list[list[int]]]:
        """Batches of ``batch_size``; or, without the batch API, one evaluation per flow."""
        if endpoints.evaluations is None:
            return [self._single_flow(item) for item in items], [[p] for p in positions]
        size = self.batch_size
        return ([self._batch_flow(items[k:k + size]) for k in range(0, len(items), size)],
                [positions[k:k + size] for k in range(0, len(items), size)])

    def _search_flow(self, what: str, api: str, body: dict[str, Any],
                     read: Callable[[Any], str]) -> _Flow[frozenset[str]]:
        """Every result of a search, page after page, or a BackendError: never a partial set."""
        endpoints = yield from self._endpoints_flow()
        url = getattr(endpoints, api)
        if url is None:
            raise BackendError(f"the AuthZEN PDP at {self.url} offers no {what} "
                               f"(its metadata has no {_METADATA_KEYS[api]})")
        found: set[str] = set()
        received = 0
        seen_tokens: set[str] = set()
        token: str | None = None
        for _ in range(self.max_pages):
            page: dict[str, Any] = {} if self.page_size is None else {"limit": self.page_size}
            if token is not None:
                page["token"] = token
            reply = yield _Request(what, url, _encode({**body, "page": page} if page else body))
            answer = self._json(reply, what)
            where = f"{what} (X-Request-ID {reply.request_id})"
            results = answer.get("results") if isinstance(answer, dict) else None
            if not isinstance(results, list):
                raise BackendError(f"{where}: the answer has no 'results' array")
            received += len(results)
            if received > self.max_results:
                raise BackendError(f"{where}: more than max_results={self.max_results} results; "
                                   "refusing a partial list")
            for item in results:
                found.add(read(item))
            next_token, count, total = _page(answer.get("page"), where)
            if count is not None and count != len(results):
                raise BackendError(f"{where}: the page says {count} results but holds "
                                   f"{len(results)}: truncated")
            if not next_token:
                if total is not None and total > received:
                    raise BackendError(f"{where}: the PDP counts {total} results but sent "
                                       f"{received}: truncated")
                return frozenset(found)
            if next_token in seen_tokens:
                raise BackendError(f"{where}: page token {next_token[:40]!r} came back again: "
                                   "the pages loop")
            seen_tokens.add(next_token)
            token = next_token
        raise BackendError(f"the {what} needs more than max_pages={self.max_pages} pages; "
                           "refusing a partial list")

    def _resource_search(self, principal: EntityLike, action: str, resource_type: str,
                         context: Context | None) -> _Flow[frozenset[str]]:
        body: dict[str, Any] = {"subject": _entity(principal, "principal"),
                                "action": {"name": _action(action)},
                                "resource": {"type": _type_name(resource_type, "resource_type")}}
        if context is not None:
            body["context"] = _context(context)
        return self._search_flow("resource search", "search_resource", body,
                                 lambda item: _result_entity(item, resource_type))

    def _subject_search(self, subject_type: str, action: str, resource: EntityLike,
                        context: Context | None) -> _Flow[frozenset[str]]:
        body: dict[str, Any] = {"subject": {"type": _type_name(subject_type, "subject_type")},
                                "action": {"name": _action(action)},
                                "resource": _entity(resource, "resource")}
        if context is not None:
            body["context"] = _context(context)
        return self._search_flow("subject search", "search_subject", body,
                                 lambda item: _result_entity(item, subject_type))

    def _actions_flow(self, principal: EntityLike, resource: EntityLike, context: Context | None
                      ) -> _Flow[frozenset[str]]:
        subject = _entity(principal, "principal")
        target = _entity(resource, "resource")
        body: dict[str, Any] = {"subject": subject, "resource": target}
        if context is not None:
            body["context"] = _context(context)
        search = self._search_flow("action search", "search_action", body, _result_action)
        endpoints = yield from self._endpoints_flow()
        declared = self.actions.get(target["type"])
        if declared is None:
            return (yield from search)
        if endpoints.search_action is not None:  # only the declared actions, not helper relations
            return (yield from search) & frozenset(declared)
        search.close()
        # no action search: evaluate the actions declared for this type, in batches
        items = [_evaluation(principal, a, resource, context) for a in declared]
        allowed: set[str] = set()
        for k in range(0, len(items), self.batch_size):
            decisions = yield from self._batch_flow(items[k:k + self.batch_size])
            allowed.update(a for a, d in zip(declared[k:], decisions, strict=False) if d.allowed)
        return frozenset(allowed)

    # ------------------------------------------------------------- answers
    def _json(self, reply: _Reply, what: str) -> Any:
        """The reply's JSON, if the PDP answered 200 with strict JSON; else BackendError."""
        where = f"{what} (X-Request-ID {reply.request_id})"
        if reply.status != 200:
            hint = (" (check headers= or client_options={'auth': ...})"
                    if reply.status in (401, 403) else "")
            raise BackendError(f"{where}: the AuthZEN PDP answered HTTP {reply.status}{hint}: "
                               f"{_excerpt(reply.content)}")
        try:
            return json.loads(reply.content, object_pairs_hook=_unique_keys,
                              parse_constant=_no_constant)
        except (ValueError, RecursionError) as exc:
            raise BackendError(f"{where}: the answer is not strict JSON ({_clean(str(exc), 120)}): "
                               f"{_excerpt(reply.content)}") from None

    def _decision(self, answer: Any, request_id: str, where: str) -> Decision:
        """An evaluation answer as a Decision: only a JSON ``true`` allows."""
        if not isinstance(answer, dict):
            raise BackendError(f"{where} (X-Request-ID {request_id}): expected a JSON object, "
                               f"got {_json_kind(answer)}")
        if "decision" not in answer:
            raise BackendError(f"{where} (X-Request-ID {request_id}): the answer has no "
                               "'decision'")
        verdict = answer["decision"]
        if verdict is not True and verdict is not False:
            raise BackendError(f"{where} (X-Request-ID {request_id}): 'decision' must be a JSON "
                               f"boolean, got {_json_kind(verdict)} {_clean(repr(verdict), 40)}")
        context = answer.get("context")
        if context is not None and not isinstance(context, dict):
            raise BackendError(f"{where} (X-Request-ID {request_id}): 'context' must be an "
                               f"object, got {_json_kind(context)}")
        return Decision(verdict, Outcome.ALLOW if verdict else Outcome.DENY,
                        _reasons(verdict, context or {}, request_id), self._decision_version)

    def _read_metadata(self, document: Any, reply: _Reply) -> Endpoints:
        where = f"the AuthZEN metadata at {self.metadata_url} (X-Request-ID {reply.request_id})"
        if not isinstance(document, dict):
            raise BackendError(f"{where} is not a JSON object")
        pdp = document.get("policy_decision_point")
        if type(pdp) is not str or pdp.rstrip("/") != self.url:
            raise BackendError(f"{where} names policy_decision_point {pdp!r}, not {self.url!r}: "
                               "not this PDP's metadata, not used")
        found: dict[str, str | None] = {}
        for api, key in _METADATA_KEYS.items():
            value = document.get(key)
            if value is None:
                found[api] = None
                continue
            if type(value) is not str or not _same_origin(value, self.url):
                raise BackendError(f"{where}: {key} {_clean(repr(value), 120)} is not a URL on "
                                   f"{self.url}'s origin; refusing to send requests there")
            found[api] = value
        evaluation = found.pop("evaluation")
        if evaluation is None:
            raise BackendError(f"{where} has no access_evaluation_endpoint (it is required)")
        return Endpoints(evaluation=evaluation, discovered=True, **found)

    def _invalid(self, exc: Exception) -> Decision:
        return Decision(False, Outcome.DENY, (Reason("invalid_input", _clean(str(exc))),),
                        self._decision_version)

    # ----------------------------------------------------------- sync I/O
    def _run(self, flow: _Flow[_T]) -> _T:
        try:
            request = next(flow)
            while True:
                request = flow.send(self._send(request))
        except StopIteration as stop:
            return cast(_T, stop.value)
        finally:
            flow.close()

    def _run_all(self, flows: list[_Flow[_T]]) -> list[_T]:
        if len(flows) <= 1:
            return [self._run(f) for f in flows]
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(flows)),
                                thread_name_prefix="agentauthz-authzen") as pool:
            futures = [pool.submit(self._run, f) for f in flows]
            return [f.result() for f in futures]

    def _sync_client(self) -> httpx.Client:
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._httpx.Client(**self._client_settings(sync=True))
                client = self._client
        return client

    def _send(self, request: _Request) -> _Reply:
        request_id = self._request_id()
        headers = _headers(request, request_id)
        content = bytearray()
        try:
            with self._sync_client().stream("GET" if request.body is None else "POST",
                                            request.url, content=request.body,
                                            headers=headers) as response:
                for chunk in response.iter_bytes():
                    content += chunk
                    if len(content) > self.max_response_bytes:
                        raise self._too_large(request, request_id)
                return self._reply(response, bytes(content), request, request_id)
        except self._httpx.HTTPError as exc:
            raise self._transport_error(exc, request, request_id) from exc

    def close(self) -> None:
        """Close the HTTP clients (they are made again if the backend is used again)."""
        with self._lock:
            client, self._client = self._client, None
            others = list(self._aclients.items())
            self._aclients.clear()
        if client is not None:
            client.close()
        _close_elsewhere(others)

    def __enter__(self) -> AuthZENBackend:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ---------------------------------------------------------- async I/O
    async def _arun(self, flow: _Flow[_T]) -> _T:
        try:
            request = next(flow)
            while True:
                request = flow.send(await self._asend(request))
        except StopIteration as stop:
            return cast(_T, stop.value)
        finally:
            flow.close()

    async def _arun_all(self, flows: list[_Flow[_T]]) -> list[_T]:
        if len(flows) <= 1:
            return [await self._arun(f) for f in flows]
        gate = asyncio.Semaphore(self.max_concurrency)

        async def one(flow: _Flow[_T]) -> _T:
            async with gate:
                return await self._arun(flow)

        results = await asyncio.gather(*(one(f) for f in flows), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return cast(list[_T], results)

    async def _async_client(self) -> httpx.AsyncClient:
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # another async library (trio): one client, closed by aclose()
            loop = None
        entry = self._aclients.get(loop)
        if entry is not None:
            return entry.client
        client: httpx.AsyncClient = self._httpx.AsyncClient(**self._client_settings(sync=False))
        keeper = _closed_with_loop(client)
        if loop is not None:
            # the loop's shutdown (asyncio.run's end) closes every open async
            # generator: this one closes the client on the loop it belongs to
            await keeper.__anext__()
        with self._lock:
            for stale in [k for k in self._aclients if k is not None and k.is_closed()]:
                del self._aclients[stale]
            entry = self._aclients.get(loop)
            if entry is None:
                self._aclients[loop] = _LoopClient(client, keeper, loop)
                return client
        await _LoopClient(client, keeper, loop).close()  # another thread of this loop was first
        return entry.client

    async def _asend(self, request: _Request) -> _Reply:
        request_id = self._request_id()
        headers = _headers(request, request_id)
        content = bytearray()
        client = await self._async_client()
        try:
            async with client.stream("GET" if request.body is None else "POST", request.url,
                                     content=request.body, headers=headers) as response:
                async for chunk in response.aiter_bytes():
                    content += chunk
                    if len(content) > self.max_response_bytes:
                        raise self._too_large(request, request_id)
                return self._reply(response, bytes(content), request, request_id)
        except self._httpx.HTTPError as exc:
            raise self._transport_error(exc, request, request_id) from exc

    async def aclose(self) -> None:
        """Close the HTTP clients: this event loop's async one, the sync one, and the others'."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        with self._lock:
            entry = self._aclients.pop(loop, None)
        if entry is not None:
            await entry.close()
        self.close()

    async def __aenter__(self) -> AuthZENBackend:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    # ------------------------------------------------------ shared I/O bits
    def _request_id(self) -> str:
        value = self._make_request_id()
        if type(value) is not str or not value or len(value) > 200 or not value.isprintable():
            raise BackendError("request_id() must return a printable string of 1 to 200 "
                               f"characters, got {_clean(repr(value), 60)}")
        return value

    def _client_settings(self, *, sync: bool) -> dict[str, Any]:
        options = dict(self.client_options)
        settings: dict[str, Any] = {"timeout": self._httpx.Timeout(self.timeout),
                                    "headers": self.headers, "follow_redirects": False}
        if "transport" not in options:
            transport_options = {k: options.pop(k) for k in list(options)
                                 if k in _TRANSPORT_OPTIONS}
            kind = self._httpx.HTTPTransport if sync else self._httpx.AsyncHTTPTransport
            settings["transport"] = kind(retries=self.retries, **transport_options)
        settings.update(options)
        return settings

    def _reply(self, response: httpx.Response, content: bytes, request: _Request,
               request_id: str) -> _Reply:
        echoed = response.headers.get("x-request-id")
        if echoed is not None and echoed != request_id:
            raise BackendError(f"{request.what}: sent X-Request-ID {request_id} but the answer "
                               f"is for {_clean(echoed, 80)!r}: not our answer")
        return _Reply(response.status_code, content, request_id)

    def _too_large(self, request: _Request, request_id: str) -> BackendError:
        return BackendError(f"{request.what} (X-Request-ID {request_id}): the answer is larger "
                            f"than max_response_bytes={self.max_response_bytes}")

    def _transport_error(self, exc: Exception, request: _Request, request_id: str
                         ) -> BackendError:
        hx = self._httpx
        where = f"{request.what} at {request.url} (X-Request-ID {request_id})"
        if isinstance(exc, hx.ConnectTimeout | hx.ConnectError):
            attempts = self.retries + 1
            return BackendError(f"{where}: could not connect after {attempts} "
                                f"attempt{'s' if attempts > 1 else ''} ({type(exc).__name__}: "
                                f"{_clean(str(exc), 120)})")
        if isinstance(exc, hx.TimeoutException):
            return BackendError(f"{where}: no answer within timeout={self.timeout}s "
                                f"({type(exc).__name__})")
        return BackendError(f"{where}: the exchange failed ({type(exc).__name__}: "
                            f"{_clean(str(exc), 120)})")


# ------------------------------------------------------------------ helpers
class _LoopClient:
    """An async client, the event loop it belongs to, and what closes it with the loop."""

    __slots__ = ("client", "keeper", "loop")

    def __init__(self, client: httpx.AsyncClient, keeper: AsyncIterator[None],
                 loop: asyncio.AbstractEventLoop | None) -> None:
        self.client = client
        self.keeper = keeper
        self.loop = loop

    async def close(self) -> None:
        if self.loop is None:
            await self.client.aclose()
        else:
            await cast(Any, self.keeper).aclose()  # its finally closes the client


async def _closed_with_loop(client: httpx.AsyncClient) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await client.aclose()


def _close_elsewhere(entries: list[tuple[asyncio.AbstractEventLoop | None, _LoopClient]]) -> None:
    """Close async clients from sync code, on their own loops when those still run."""
    for loop, entry in entries:
        if loop is None or loop.is_closed():
            continue  # a closed loop closed its clients as it shut down
        try:
            if loop.is_running():
                asyncio.run_coroutine_threadsafe(entry.close(), loop)
            else:
                loop.run_until_complete(entry.close())
        except RuntimeError as exc:  # another loop runs in this thread: leave it to its loop
            log.debug("agentauthz: could not close an AuthZEN client of another loop: %s", exc)


def _headers(request: _Request, request_id: str) -> dict[str, str]:
    if request.body is None:
        return {"X-Request-ID": request_id, "Accept": "application/json"}
    return {"X-Request-ID": request_id, "Accept": "application/json",
            "Content-Type": "application/json"}


def _uuid() -> str:
    return str(uuid.uuid4())


def _positive(name: str, value: object, kind: type) -> float:
    if type(value) is bool or not isinstance(value, int | float) or not value > 0 \
            or (kind is int and not isinstance(value, int)) or value != value:
        raise ConfigurationError(f"AuthZENBackend({name}=...) must be a positive "
                                 f"{'integer' if kind is int else 'number'}, got {value!r}")
    return float(value)


def _pdp_url(url: object, *, insecure_http: bool, what: str = "url") -> str:
    if type(url) is not str:
        raise ConfigurationError(f"AuthZENBackend({what}=...) must be a string URL such as "
                                 "'https://pdp.example.com'")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"AuthZENBackend({what}={url!r}): expected an http(s) URL such "
                                 "as 'https://pdp.example.com'")
    if parts.query or parts.fragment:
        raise ConfigurationError(f"AuthZENBackend({what}={url!r}): a PDP URL has no query or "
                                 "fragment")
    if parts.username or parts.password:
        raise ConfigurationError(f"AuthZENBackend({what}=...): put credentials in headers= or "
                                 "client_options={'auth': ...}, not in the URL")
    if parts.scheme == "http" and not insecure_http and not _loopback(parts.hostname):
        raise ConfigurationError(f"AuthZENBackend({what}={url!r}): plain http lets anyone on the "
                                 "path forge decisions; use https, or insecure_http=True for a "
                                 "trusted network")
    return url.rstrip("/")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _well_known(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{_WELL_KNOWN}{parts.path}"


def _default_endpoints(url: str) -> Endpoints:
    return Endpoints(discovered=False, **{api: url + path for api, path in _PATHS.items()})


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


def _same_origin(url: str, base: str) -> bool:
    try:
        return _origin(url) == _origin(base) and not urlsplit(url).fragment
    except ValueError:  # a port that is not a number
        return False


def _client_options(hx: ModuleType, options: Mapping[str, Any] | None) -> dict[str, Any]:
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise ConfigurationError("AuthZENBackend(client_options=...) must be a mapping of "
                                 "httpx.Client settings")
    known = set(inspect.signature(hx.Client).parameters) | _TRANSPORT_OPTIONS
    for key in options:
        if key in ("headers", "base_url", "follow_redirects"):
            raise ConfigurationError(f"AuthZENBackend(client_options={{{key!r}: ...}}): "
                                     + ("use headers=..." if key == "headers" else
                                        "not configurable: the PDP's URLs are absolute and "
                                        "redirects are never followed"))
        if key not in known:
            raise ConfigurationError(f"AuthZENBackend(client_options=...): {key!r} is not an "
                                     f"httpx.Client setting (known: {', '.join(sorted(known))})")
    return dict(options)


def _action_table(actions: Mapping[str, Iterable[str]] | None) -> dict[str, tuple[str, ...]]:
    if actions is None:
        return {}
    if not isinstance(actions, Mapping):
        raise ConfigurationError("AuthZENBackend(actions=...) must map resource types to lists "
                                 "of actions, e.g. {'document': ['read', 'write']}")
    table: dict[str, tuple[str, ...]] = {}
    for rtype, names in actions.items():
        if isinstance(names, str) or not isinstance(names, Iterable):
            raise ConfigurationError(f"AuthZENBackend(actions=...): {rtype!r} needs a list of "
                                     "actions")
        listed = tuple(dict.fromkeys(names))
        if type(rtype) is not str or not all(type(a) is str and a for a in listed):
            raise ConfigurationError("AuthZENBackend(actions=...) must map type names to "
                                     "non-empty action names")
        table[rtype] = listed
    return table


def _json_default(value: object) -> object:
    if isinstance(value, _dt.datetime | _dt.date | _dt.time):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        return f"{value.total_seconds():g}s"
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _encode(payload: object) -> bytes:
    try:
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                          default=_json_default).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidInputError(f"the request cannot be sent as JSON: {exc}") from None


def _entity(value: object, what: str) -> dict[str, Any]:
    if isinstance(value, Entity):
        out: dict[str, Any] = {"type": value.type, "id": value.id}
        if value.attributes:
            out["properties"] = dict(value.attributes)
        return out
    if type(value) is str:
        type_, id_ = _split_key(value, what)
    else:
        type_, id_ = parse_entity_key(value, what=what)
    return {"type": type_, "id": id_}


@functools.lru_cache(maxsize=4096)
def _split_key(key: str, what: str) -> tuple[str, str]:
    """``parse_entity_key``, remembered: the same principals and resources come back."""
    return parse_entity_key(key, what=what)


def _action(action: object) -> str:
    if type(action) is not str or not action:
        raise InvalidInputError(f"action must be a non-empty string, got {action!r:.60}")
    return action


def _type_name(value: object, what: str) -> str:
    if type(value) is not str:
        raise InvalidInputError(f"{what} must be a type name, got {type(value).__name__}")
    parse_entity_key(f"{value}:x", what=what)
    return value


def _context(context: object) -> dict[str, Any]:
    if not isinstance(context, Mapping):
        raise InvalidInputError(f"context must be a mapping, got {type(context).__name__}")
    return dict(context)


def _evaluation(principal: object, action: object, resource: object, context: object) -> bytes:
    """One Access Evaluation request, as JSON bytes."""
    body: dict[str, Any] = {"subject": _entity(principal, "principal"),
                            "action": {"name": _action(action)},
                            "resource": _entity(resource, "resource")}
    if context is not None:
        body["context"] = _context(context)
    return _encode(body)


def _place(out: list[Decision | None], slots: list[list[int]],
           results: list[list[Decision]]) -> None:
    for positions, decisions in zip(slots, results, strict=True):
        for position, decision in zip(positions, decisions, strict=True):
            out[position] = decision


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        keys = [k for k, _ in pairs]
        dup = next(k for k in obj if keys.count(k) > 1)
        raise ValueError(f"duplicate key {dup!r}: ambiguous JSON")
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "array",
            dict: "object"}.get(type(value), type(value).__name__)


def _clean(text: str, limit: int = 300) -> str:
    """Text from the wire, safe for logs and reasons: no control characters, bounded."""
    if not text.isprintable():
        text = text.translate(_CONTROL)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _excerpt(content: bytes) -> str:
    return repr(_clean(content[:200].decode("utf-8", "replace"), 200)) if content else "(empty)"


def _reason_field(value: object) -> str | None:
    """A Reason Field (``{"en": "text", ...}``): English if present, else the first language."""
    if isinstance(value, str):
        return value or None
    if not isinstance(value, dict):
        return None
    texts = {k: v for k, v in value.items() if isinstance(v, str) and v}
    for key in ("en", *sorted(texts)):
        if key in texts:
            return texts[key]
    return None


def _reasons(allowed: bool, context: dict[str, Any], request_id: str) -> tuple[Reason, ...]:
    rule = context.get("id")
    rule = _clean(rule, 100) if isinstance(rule, str) and rule else None
    detail = _reason_field(context.get("reason_admin")) or _reason_field(context.get("reason"))
    verdict = "allowed" if allowed else "denied"
    message = f"{verdict} by the AuthZEN PDP{': ' + detail if detail else ''}"
    reasons = [Reason("pdp", f"{_clean(message, 280)} (X-Request-ID {request_id})", rule)]
    user = _reason_field(context.get("reason_user"))
    if user:
        reasons.append(Reason("pdp_user_reason", _clean(user), rule))
    error = context.get("error")
    if isinstance(error, dict):
        status, text = error.get("status"), _reason_field(error.get("message"))
        error = f"{status} {text or ''}".strip() if status is not None else text
    if isinstance(error, str) and error:
        reasons.append(Reason("pdp_error", _clean(error), rule))
    return tuple(reasons)


def _page(page: object, where: str) -> tuple[str, int | None, int | None]:
    """``(next_token, count, total)`` of a search answer's ``page`` (absent: the last page)."""
    if page is None:
        return "", None, None
    if not isinstance(page, dict):
        raise BackendError(f"{where}: 'page' must be an object, got {_json_kind(page)}")
    if "next_token" not in page:
        raise BackendError(f"{where}: 'page' has no next_token (an empty string ends the "
                           "results): cannot tell whether results are missing")
    token = page["next_token"]
    if type(token) is not str:
        raise BackendError(f"{where}: page.next_token must be a string, got {_json_kind(token)}")
    numbers = []
    for key in ("count", "total"):
        value = page.get(key)
        if value is not None and (type(value) is not int or value < 0):
            raise BackendError(f"{where}: page.{key} must be a non-negative integer")
        numbers.append(value)
    return token, numbers[0], numbers[1]


def _result_entity(item: object, expected_type: str) -> str:
    if not isinstance(item, dict) or item.get("type") != expected_type \
            or type(item.get("id")) is not str:
        raise BackendError(f"a search result must be {{'type': {expected_type!r}, 'id': ...}}, "
                           f"got {_clean(repr(item), 120)}")
    key = f"{expected_type}:{item['id']}"
    try:
        parse_entity_key(key, what="search result")
    except InvalidInputError as exc:
        raise BackendError(f"a search result cannot be an agentauthz entity: {exc}") from None
    return key


def _result_action(item: object) -> str:
    name = item.get("name") if isinstance(item, dict) else None
    if type(name) is not str or not name:
        raise BackendError(f"an action search result must be {{'name': ...}}, got "
                           f"{_clean(repr(item), 120)}")
    return name

