"""Oso Cloud as the backend: decisions through the official ``oso-cloud`` SDK.

::

    backend = OsoCloudBackend(api_key=os.environ["OSO_AUTH"], timeout=0.5)
    authz = Authorizer(backend=backend, agents="agents.yaml")

**What goes to Oso.** An entity ``type:id`` becomes the SDK's
``Value(OsoType, id)``; ``OsoType`` is ``types[type]`` when given, else the
type with its first letter capitalised (``document`` → ``Document``), the
Polar convention. Relationships and attributes become facts:

============================================  =============================================
agentauthz                                    Oso Cloud fact
============================================  =============================================
``document:1#owner@user:alice``               ``has_relation(Document{"1"}, "owner", User{"alice"})``
``folder:f#owner@team:t#member`` (userset)    ``has_userset(Folder{"f"}, "owner", Team{"t"}, "member")``
``folder:f#viewer@user:*`` (wildcard)         ``has_wildcard(Folder{"f"}, "viewer", "User")``
attribute ``document:1 {tenant: acme}``       ``has_attribute(Document{"1"}, "tenant", "acme")``
``context={"risk": "high"}`` (per request)    context fact ``has_context("risk", "high")``
============================================  =============================================

Attribute and context values must be strings (non-empty), integers (64-bit)
or booleans, or lists of them (one fact per element); a nested mapping is
flattened with dotted names (``{"tool": {"name": "x"}}`` → ``has_context("tool.name",
"x")``) and ``None`` is left out. Anything else (a float, bytes, an object)
has no Oso form: the check denies with reason ``invalid_input`` rather than
send a request the policy would read differently. Attributes passed on an
:class:`~agentauthz.model.Entity` with a check are sent as context facts:
Oso adds them to the stored facts, it does not replace stored ones.

**What comes back.** ``authorize`` allows only on a literal JSON ``true``;
``false`` denies; anything else — a string, a number, a missing field, a
malformed body, an HTTP error, a refused or cut connection, a deadline
passed — raises :class:`~agentauthz.errors.BackendError`, which the
:class:`~agentauthz.Authorizer` turns into a deny with reason ``backend_error``.
``list`` is followed page by page to its end within ``list_timeout``; an id
that is not a string, a wildcard (``*``), a page token that repeats, or more
than ``max_pages`` pages raise rather than answer a partial list. ``actions``
must be a list of strings.

**Deadlines.** The SDK is synchronous, retries, and waits up to 5 s per
attempt. Every call here runs on this backend's thread pool (at most
``max_concurrency`` requests in flight) and is abandoned at the backend's own
deadline; the async twins await the pool, so the event loop never blocks. Each
HTTP attempt the SDK makes is also cut to what is left of the deadline, so an
abandoned call frees its thread soon after.

Oso Cloud returns no reasons: a decision's reason (kind ``backend``) says that
Oso Cloud decided, and its ``policy_version`` is the ``policy_version`` label
given here (for instance the commit of the deployed Polar file).
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType
from typing import Any, Final, Generic, TypeVar, cast
from urllib.parse import urlsplit

from agentauthz.backends.base import BaseBackend
from agentauthz.engine.data import load_data
from agentauthz.engine.evaluator import CheckRequest
from agentauthz.errors import BackendError, ConfigurationError, InvalidInputError
from agentauthz.model import Decision, Entity, Outcome, Reason, Relationship, parse_entity_key
from agentauthz.typing import Context, EntityLike

_MISSING: ImportError | None = None
try:
    from oso_cloud import Oso, Value
except ImportError as exc:  # pragma: no cover - depends on the environment
    _MISSING = exc

__all__ = ["OsoCloudBackend"]

_T = TypeVar("_T")
_R = TypeVar("_R")
Fact = tuple[Any, ...]
Scalar = str | int | bool

_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})
_TYPE_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_INT64: Final = (-(2**63), 2**63 - 1)
_MAX_ID: Final = 1024
_WRITE_CHUNK: Final = 1000
_deadline = threading.local()


def _require() -> None:
    if _MISSING is not None:
        raise ImportError(f"OsoCloudBackend needs the oso-cloud SDK ({_MISSING}); "
                          "pip install 'agentauthz[oso]'") from _MISSING


def _default_oso_type(type_: str) -> str:
    """The Oso type of an agentauthz type when ``types`` does not name it: ``team`` → ``Team``."""
    return type_[:1].upper() + type_[1:]


@dataclass(frozen=True, slots=True)
class _Ask(Generic[_R]):
    """One question ready to send: the SDK call, what it is, and how to read its answer."""

    call: Callable[[], Any]
    what: str
    finish: Callable[[Any], _R]
    timeout: float


class OsoCloudBackend(BaseBackend):
    """Decides with Oso Cloud (or an Oso Dev Server) through the official SDK.

    ``url`` defaults to ``$OSO_URL`` or ``https://api.osohq.com``; ``api_key``
    to ``$OSO_AUTH``. Keyword-only settings:

    ``fallback_url``
        an Oso Fallback node the SDK turns to when Oso Cloud cannot answer a
        check, list or actions request (writes never fall back).
    ``timeout``
        seconds a check or ``list_actions`` may take, retries and fallback
        included; a batch of *n* gets ``timeout × ⌈n / max_concurrency⌉``.
    ``list_timeout``
        seconds a whole ``list_resources`` may take, every page included
        (default: ``timeout``).
    ``write_timeout``
        seconds a write may take (default 10).
    ``max_concurrency``
        requests in flight at once, across every caller of this backend.
    ``types``
        agentauthz type → Oso type, for types the capitalised default does not fit.
    ``page_size``, ``max_pages``
        how ``list_resources`` pages through Oso's ``list``.
    ``policy_version``
        the label decisions carry as ``policy_version``.

    Call :meth:`close` (or use ``with``) to release the threads and connections.
    """

    name = "oso_cloud"

    def __init__(self, url: str | None = None, api_key: str | None = None, *,
                 fallback_url: str | None = None, timeout: float = 1.0,
                 list_timeout: float | None = None, write_timeout: float = 10.0,
                 max_concurrency: int = 16, types: Mapping[str, str] | None = None,
                 page_size: int = 10_000, max_pages: int = 1_000,
                 policy_version: str = "oso-cloud") -> None:
        _require()
        url = url if url is not None else os.environ.get("OSO_URL", "https://api.osohq.com")
        api_key = api_key if api_key is not None else os.environ.get("OSO_AUTH")
        _check_url(url, "url")
        if fallback_url is not None:
            _check_url(fallback_url, "fallback_url")
        if not isinstance(api_key, str) or not api_key.strip():
            raise ConfigurationError("OsoCloudBackend needs api_key=... or the OSO_AUTH environment "
                                     "variable: an Oso Cloud API key")
        for what, value in (("timeout", timeout), ("write_timeout", write_timeout),
                            ("list_timeout", timeout if list_timeout is None else list_timeout)):
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not 0 < value < math.inf:
                raise ConfigurationError(f"OsoCloudBackend {what} must be a positive number of "
                                         f"seconds, got {value!r}")
        for what, number, top in (("max_concurrency", max_concurrency, 1024),
                                  ("page_size", page_size, 10_000),
                                  ("max_pages", max_pages, 1_000_000)):
            if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= top:
                raise ConfigurationError(f"OsoCloudBackend {what} must be an integer from 1 to "
                                         f"{top}, got {number!r}")
        if not isinstance(policy_version, str):
            raise ConfigurationError("OsoCloudBackend policy_version must be a string")
        self._types = _check_types(types)
        self.url = url
        self.fallback_url = fallback_url
        self.timeout = float(timeout)
        self.list_timeout = float(timeout if list_timeout is None else list_timeout)
        self.write_timeout = float(write_timeout)
        self.max_concurrency = max_concurrency
        self.page_size = page_size
        self.max_pages = max_pages
        self.policy_version = policy_version
        try:
            self._oso = Oso(url, api_key, fallback_url)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"OsoCloudBackend: the oso-cloud SDK refused its "
                                     f"configuration: {exc}") from exc
        self._pool = ThreadPoolExecutor(max_workers=max_concurrency,
                                        thread_name_prefix="agentauthz-oso")
        self._sessions = _bound_sessions(self._oso, max_concurrency)

    # ------------------------------------------------------------ lifecycle
    def version(self) -> Hashable | None:
        """``None``: other writers change Oso's facts and policy, so only a cache TTL can tell."""
        return None

    def close(self) -> None:
        """Stop taking requests; abandon queued ones; close the SDK's connections."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        for session in self._sessions:
            session.close()

    def __enter__(self) -> OsoCloudBackend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"OsoCloudBackend(url={self.url!r}, timeout={self.timeout:g})"

    # ------------------------------------------------------------- mapping
    def oso_type(self, type_: str) -> str:
        """The Oso type name of an agentauthz type."""
        return self._types.get(type_) or _default_oso_type(type_)

    def value(self, entity: EntityLike) -> Value:
        """The SDK value of an entity: ``user:alice`` → ``Value("User", "alice")``."""
        return self._entity(entity, "entity")[0]

    def fact(self, relationship: Relationship | str | tuple[str, str, str]) -> Fact:
        """The fact a relationship is stored as (see the module docstring)."""
        rel = Relationship.of(relationship)
        rtype, rid = parse_entity_key(rel.resource, what="relationship resource")
        stype, sid, srel = rel.subject_parts()
        resource = Value(self.oso_type(rtype), rid)
        if srel is not None:
            return ("has_userset", resource, rel.relation, Value(self.oso_type(stype), sid), srel)
        if sid == "*":
            return ("has_wildcard", resource, rel.relation, self.oso_type(stype))
        return ("has_relation", resource, rel.relation, Value(self.oso_type(stype), sid))

    def attribute_facts(self, entity: EntityLike, attributes: Mapping[str, Any]) -> list[Fact]:
        """The ``has_attribute`` facts of an entity's attributes."""
        subject = self._entity(entity, "entity")[0]
        return [("has_attribute", subject, name, value)
                for name, value in _flatten(attributes, "attribute")]

    def _entity(self, entity: object, what: str) -> tuple[Value, str, Mapping[str, Any]]:
        if isinstance(entity, Entity):
            return Value(self.oso_type(entity.type), entity.id), entity.key, entity.attributes
        type_, id_ = parse_entity_key(entity, what=what)  # a str, or it raises
        return Value(self.oso_type(type_), id_), cast(str, entity), _EMPTY

    def _context_facts(self, entities: Iterable[tuple[Value, Mapping[str, Any]]],
                       context: object) -> list[Fact]:
        facts: list[Fact] = []
        for subject, attributes in entities:
            facts.extend(("has_attribute", subject, name, value)
                         for name, value in _flatten(attributes, "attribute"))
        if context is not None:
            if not isinstance(context, Mapping):
                raise InvalidInputError("context must be a mapping")
            facts.extend(("has_context", name, value) for name, value in _flatten(context, "context"))
        return facts

    # ------------------------------------------------------------ questions
    def _check_ask(self, principal: object, action: object, resource: object,
                   context: object) -> _Ask[Decision] | Decision:
        try:
            actor, pkey, pattrs = self._entity(principal, "principal")
            target, rkey, rattrs = self._entity(resource, "resource")
            if type(action) is not str or not action:
                raise InvalidInputError("action must be a non-empty string")
            facts = self._context_facts(((actor, pattrs), (target, rattrs)), context)
        except InvalidInputError as exc:
            return Decision(False, Outcome.DENY, (Reason("invalid_input", str(exc)),),
                            self.policy_version)
        what = f"authorize({pkey}, {action[:64]!r}, {rkey})"
        return _Ask(partial(self._oso.authorize, actor, action, target, facts), what,
                    partial(self._decided, what), self.timeout)

    def _decided(self, what: str, allowed: object) -> Decision:
        if allowed is True:
            return Decision(True, Outcome.ALLOW, (Reason("backend", f"Oso Cloud allowed {what}"),),
                            self.policy_version)
        if allowed is False:
            return Decision(False, Outcome.DENY, (Reason("backend", f"Oso Cloud denied {what}"),),
                            self.policy_version)
        raise BackendError(f"Oso Cloud answered {what} with allowed={_short(repr(allowed))} "
                           f"({type(allowed).__name__}), not true or false; denied")

    def _list_ask(self, principal: object, action: object, resource_type: object,
                  context: object) -> _Ask[frozenset[str]]:
        actor, pkey, pattrs = self._entity(principal, "principal")
        if type(action) is not str or not action:
            raise InvalidInputError("action must be a non-empty string")
        if type(resource_type) is not str or not _TYPE_RE.fullmatch(resource_type):
            raise InvalidInputError(f"resource_type {resource_type!r} is not a type name")
        facts = self._context_facts(((actor, pattrs),), context)
        what = f"list({pkey}, {action[:64]!r}, {resource_type})"
        deadline = time.monotonic() + self.list_timeout
        return _Ask(partial(self._all_pages, actor, action, self.oso_type(resource_type), facts,
                            deadline, what), what,
                    partial(_listed, what, resource_type), self.list_timeout)

    def _all_pages(self, actor: Value, action: str, oso_type: str, facts: list[Fact],
                   deadline: float, what: str) -> list[object]:
        """Every page of a list (runs on the pool); never returns a partial list."""
        found: list[object] = []
        token: str | None = None
        seen: set[str] = set()
        for _ in range(self.max_pages):
            if time.monotonic() >= deadline:
                raise BackendError(f"Oso Cloud did not finish {what} within "
                                   f"{self.list_timeout:g}s")
            page = self._oso.list_paginated(actor, action, oso_type, page_size=self.page_size,
                                            page_token=token, context_facts=facts)
            results: object = page.results
            if not isinstance(results, list):
                raise BackendError(f"Oso Cloud answered {what} with results of type "
                                   f"{type(results).__name__}, not a list")
            found.extend(results)
            nxt: object = page.next_page_token
            if nxt is None:
                return found
            if not isinstance(nxt, str) or not nxt:
                raise BackendError(f"Oso Cloud answered {what} with next_page_token="
                                   f"{_short(nxt)}, not a string")
            if nxt in seen:
                raise BackendError(f"Oso Cloud repeated the page token {_short(nxt)} in {what}; "
                                   "the list cannot be read to its end")
            seen.add(nxt)
            token = nxt
        raise BackendError(f"{what} has more than {self.max_pages} pages of {self.page_size}; "
                           "raise max_pages to read it to its end")

    def _actions_ask(self, principal: object, resource: object,
                     context: object) -> _Ask[frozenset[str]]:
        actor, pkey, pattrs = self._entity(principal, "principal")
        target, rkey, rattrs = self._entity(resource, "resource")
        facts = self._context_facts(((actor, pattrs), (target, rattrs)), context)
        what = f"actions({pkey}, {rkey})"
        return _Ask(partial(self._oso.actions, actor, target, facts), what,
                    partial(_actions, what), self.timeout)

    # --------------------------------------------------------------- running
    def _submit(self, ask: _Ask[Any]) -> Future[Any]:
        try:
            return self._pool.submit(_within, ask.call, time.monotonic() + ask.timeout)
        except RuntimeError as exc:  # shut down
            raise BackendError(f"the Oso Cloud backend is closed; {ask.what} was not sent") \
                from exc

    def _run(self, ask: _Ask[_R]) -> _R:
        future = self._submit(ask)
        try:
            answer = future.result(ask.timeout)
        except Exception as exc:
            raise _failure(future, exc, ask) from exc
        return ask.finish(answer)

    async def _arun(self, ask: _Ask[_R]) -> _R:
        future = self._submit(ask)
        try:
            answer = await asyncio.wait_for(asyncio.wrap_future(future), ask.timeout)
        except Exception as exc:  # the caller's own cancellation is not an Exception: it propagates
            raise _failure(future, exc, ask) from exc
        return ask.finish(answer)

    def _batch(self, requests: Sequence[CheckRequest]
               ) -> tuple[list[_Ask[Decision] | Decision], list[int], float]:
        asks = [self._check_ask(*_fields(r)) for r in requests]
        sent = [i for i, a in enumerate(asks) if not isinstance(a, Decision)]
        rounds = math.ceil(len(sent) / self.max_concurrency)
        return asks, sent, self.timeout * max(rounds, 1)

    def _submit_all(self, asks: list[_Ask[Decision] | Decision], sent: list[int]
                    ) -> list[Future[Any]]:
        futures: list[Future[Any]] = []
        try:
            for i in sent:
                futures.append(self._submit(asks[i]))  # type: ignore[arg-type]
        except BackendError:
            for f in futures:
                f.cancel()
            raise
        return futures

    @staticmethod
    def _gathered(asks: list[_Ask[Decision] | Decision], sent: list[int],
                  futures: list[Future[Any]], timeout: float) -> list[Decision]:
        """Every answer of a batch, in order, or one BackendError for the whole batch."""
        late = [f for f in futures if not f.done()]
        if late:
            for f in futures:
                f.cancel()
            raise BackendError(f"Oso Cloud did not answer {len(late)} of {len(futures)} checks "
                               f"of a batch within {timeout:g}s; the batch is denied")
        out: list[Decision] = list(asks)  # type: ignore[arg-type]
        for i, future in zip(sent, futures, strict=True):
            ask: _Ask[Decision] = asks[i]  # type: ignore[assignment]
            try:
                answer = future.result()
            except Exception as exc:
                raise _failure(future, exc, ask) from exc
            out[i] = ask.finish(answer)
        return out

    # ----------------------------------------------------------- the protocol
    def check(self, principal: EntityLike, action: str, resource: EntityLike,
              context: Context | None = None) -> Decision:
        ask = self._check_ask(principal, action, resource, context)
        return ask if isinstance(ask, Decision) else self._run(ask)

    async def acheck(self, principal: EntityLike, action: str, resource: EntityLike,
                     context: Context | None = None) -> Decision:
        ask = self._check_ask(principal, action, resource, context)
        return ask if isinstance(ask, Decision) else await self._arun(ask)

    def check_many(self, requests: Sequence[CheckRequest]) -> list[Decision]:
        """One ``authorize`` per request, ``max_concurrency`` at a time; all answered or none.

        oso-cloud 2.x has no bulk-authorize call. A request that cannot be
        sent denies on its own (``invalid_input``); a request that fails
        fails the batch with :class:`~agentauthz.errors.BackendError`.
        """
        asks, sent, timeout = self._batch(requests)
        futures = self._submit_all(asks, sent)
        wait_futures(futures, timeout)
        return self._gathered(asks, sent, futures, timeout)

    async def acheck_many(self, requests: Sequence[CheckRequest]) -> list[Decision]:
        asks, sent, timeout = self._batch(requests)
        futures = self._submit_all(asks, sent)
        if futures:
            waiting = [asyncio.wrap_future(f) for f in futures]
            done, late = await asyncio.wait(waiting, timeout=timeout)
            for w in late:
                w.cancel()
            for w in done:
                w.exception()  # read here, so that asyncio does not log it as never retrieved
        return self._gathered(asks, sent, futures, timeout)

    def list_resources(self, principal: EntityLike, action: str, resource_type: str,
                       context: Context | None = None) -> frozenset[str]:
        return self._run(self._list_ask(principal, action, resource_type, context))

    async def alist_resources(self, principal: EntityLike, action: str, resource_type: str,
                              context: Context | None = None) -> frozenset[str]:
        return await self._arun(self._list_ask(principal, action, resource_type, context))

    def list_actions(self, principal: EntityLike, resource: EntityLike,
                     context: Context | None = None) -> frozenset[str]:
        return self._run(self._actions_ask(principal, resource, context))

    async def alist_actions(self, principal: EntityLike, resource: EntityLike,
                            context: Context | None = None) -> frozenset[str]:
        return await self._arun(self._actions_ask(principal, resource, context))

    # ---------------------------------------------------------------- writes
    def write(self, add: Iterable[Relationship | str | tuple[str, str, str]] = (),
              remove: Iterable[Relationship | str | tuple[str, str, str]] = ()) -> int:
        """Delete then insert the facts of these relationships, in one batch request.

        Returns the number of facts sent (Oso does not say how many changed).
        A malformed relationship raises :class:`~agentauthz.errors.InvalidInputError`
        before anything is sent; a failed request raises
        :class:`~agentauthz.errors.BackendError` (the batch may or may not
        have been applied: write it again, it is idempotent).
        """
        inserts = [self.fact(r) for r in add]
        deletes = [self.fact(r) for r in remove]
        if inserts or deletes:
            self._send_batch([(deletes, inserts)], f"a write of {len(inserts) + len(deletes)} facts")
        return len(inserts) + len(deletes)

    def set_attributes(self, entity: EntityLike, attributes: Mapping[str, Any] | None) -> None:
        """Replace the ``has_attribute`` facts of an entity (``None`` or ``{}`` removes them)."""
        if attributes is not None and not isinstance(attributes, Mapping):
            raise InvalidInputError("attributes must be a mapping")
        subject = self._entity(entity, "entity")[0]
        inserts = self.attribute_facts(entity, attributes or {})
        self._send_batch([([("has_attribute", subject, None, None)], inserts)],
                         f"the attributes of {_key(entity)}")

    def load_data(self, source: str | os.PathLike[str] | Mapping[str, Any]) -> int:
        """Send a data file's relationships and attributes (agentauthz's data format) as facts.

        Each entity's attributes replace the ones Oso holds. Sent in batches of
        1,000 facts; returns the number of facts inserted.
        """
        dataset = load_data(source)
        steps: list[tuple[list[Fact], list[Fact]]] = []
        for entity, attributes in dataset.attributes.items():
            subject = self._entity(entity, "entity")[0]
            steps.append(([("has_attribute", subject, None, None)],
                          self.attribute_facts(entity, attributes)))
        steps.extend(([], [self.fact(r)]) for r in dataset.relationships)
        self._send_batch(steps, "a data load")
        return sum(len(inserts) for _, inserts in steps)

    def _send_batch(self, steps: list[tuple[list[Fact], list[Fact]]], what: str) -> None:
        for chunk in _chunks(steps):
            def send(chunk: list[tuple[list[Fact], list[Fact]]] = chunk) -> None:
                with self._oso.batch() as tx:
                    for deletes, inserts in chunk:
                        for fact in deletes:
                            tx.delete(fact)
                        for fact in inserts:
                            tx.insert(fact)

            self._run(_Ask(send, what, _none, self.write_timeout))


# ------------------------------------------------------------------ helpers
def _check_url(url: object, field: str) -> None:
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"OsoCloudBackend {field}={url!r} is not an http(s) URL; "
                                 "e.g. https://api.osohq.com or http://localhost:8080")


def _check_types(types: object) -> dict[str, str]:
    if types is None:
        return {}
    if not isinstance(types, Mapping):
        raise ConfigurationError("OsoCloudBackend types must map agentauthz types to Oso types")
    out: dict[str, str] = {}
    for ours, theirs in types.items():
        if not (isinstance(ours, str) and _TYPE_RE.fullmatch(ours)
                and isinstance(theirs, str) and _TYPE_RE.fullmatch(theirs)):
            raise ConfigurationError(f"OsoCloudBackend types: {ours!r} → {theirs!r} is not a pair "
                                     "of type names")
        out[ours] = theirs
    return out


def _bound_sessions(oso: Oso, pool: int) -> list[Any]:
    """Cut each HTTP attempt of the SDK to what is left of the caller's deadline.

    Best effort on the SDK's sessions (``oso.api.session``, and
    ``fallback_session``): the deadline itself is enforced by the waiting
    caller whatever the SDK does; this only frees an abandoned thread sooner.
    """
    import requests.adapters

    class _DeadlineAdapter(requests.adapters.HTTPAdapter):
        def send(self, request: Any, stream: bool = False,
                 timeout: Any = None, verify: Any = True, cert: Any = None,
                 proxies: Any = None) -> Any:
            deadline: float | None = getattr(_deadline, "at", None)
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise requests.exceptions.ConnectTimeout(
                        "agentauthz: the caller's deadline has passed", request=request)
                timeout = _clamp(timeout, left)
            return super().send(request, stream=stream, timeout=timeout, verify=verify,
                                cert=cert, proxies=proxies)

    sessions = [s for s in (getattr(oso.api, "session", None),
                            getattr(oso.api, "fallback_session", None)) if s is not None]
    for session in sessions:
        adapter = _DeadlineAdapter(pool_connections=4, pool_maxsize=pool)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
    return sessions


def _clamp(timeout: Any, left: float) -> Any:
    if isinstance(timeout, tuple):
        return tuple(left if t is None else min(t, left) for t in timeout)
    return left if timeout is None else min(timeout, left)


def _within(call: Callable[[], _T], deadline: float) -> _T:
    """Run an SDK call on a pool thread, telling the HTTP adapter the caller's deadline."""
    if time.monotonic() >= deadline:  # queued past it: the caller has given up already
        raise BackendError("the deadline passed before the request could be sent")
    _deadline.at = deadline
    try:
        return call()
    finally:
        _deadline.at = None


def _failure(future: Future[Any], exc: BaseException, ask: _Ask[Any]) -> BackendError:
    """What a failed or abandoned call becomes: always a BackendError, never an answer."""
    if not future.done():
        future.cancel()
        return BackendError(f"Oso Cloud did not answer {ask.what} within {ask.timeout:g}s")
    if isinstance(exc, BackendError):
        return BackendError(str(exc))
    return BackendError(f"Oso Cloud could not answer {ask.what}: {type(exc).__name__}: "
                        f"{_short(str(exc), 200)}")


def _fields(request: object) -> tuple[object, object, object, object]:
    if isinstance(request, CheckRequest):
        return request.principal, request.action, request.resource, request.context
    if isinstance(request, tuple) and len(request) in (3, 4):
        return (*request, None) if len(request) == 3 else request
    return None, None, None, None  # denies as invalid input


def _flatten(values: object, what: str, prefix: str = "", depth: int = 0
             ) -> Iterator[tuple[str, Scalar]]:
    """``(dotted name, scalar)`` pairs of a mapping, lists spread one pair per element."""
    if not isinstance(values, Mapping):
        raise InvalidInputError(f"{what} {prefix or 'values'} must be a mapping")
    if depth > 8:
        raise InvalidInputError(f"{what} {prefix}: nested more than 8 levels")
    for name, value in values.items():
        if type(name) is not str or not name:
            raise InvalidInputError(f"{what} names must be non-empty strings, got {name!r}")
        full = f"{prefix}.{name}" if prefix else name
        if value is None:
            continue
        if isinstance(value, Mapping):
            yield from _flatten(value, what, full, depth + 1)
        elif isinstance(value, list | tuple | set | frozenset):
            for item in value:
                yield full, _scalar(item, what, full)
        else:
            yield full, _scalar(value, what, full)


def _scalar(value: object, what: str, name: str) -> Scalar:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise InvalidInputError(f"{what} {name!r}: {value} does not fit Oso's 64-bit Integer")
        return int(value)
    if isinstance(value, str):
        if not value:
            raise InvalidInputError(f"{what} {name!r}: Oso Cloud cannot carry an empty string")
        return str(value)
    raise InvalidInputError(f"{what} {name!r}: a {type(value).__name__} has no Oso Cloud form "
                            "(String, Integer and Boolean only)")


def _listed(what: str, resource_type: str, ids: list[object]) -> frozenset[str]:
    out = set()
    for id_ in ids:
        if type(id_) is not str or not id_ or len(id_) > _MAX_ID or "#" in id_ \
                or any(c.isspace() for c in id_):
            raise BackendError(f"Oso Cloud answered {what} with the id {_short(id_)}, which is "
                               "not an entity id")
        if id_ == "*":
            raise BackendError(f"Oso Cloud answered {what} with a wildcard: every {resource_type}, "
                               "which cannot be listed; write the policy so that it names them")
        out.add(f"{resource_type}:{id_}")
    return frozenset(out)


def _actions(what: str, actions: object) -> frozenset[str]:
    if not isinstance(actions, list) or not all(type(a) is str and a for a in actions):
        raise BackendError(f"Oso Cloud answered {what} with {_short(actions)}, not a list of "
                           "action names")
    return frozenset(actions)


def _chunks(steps: list[tuple[list[Fact], list[Fact]]]
            ) -> Iterator[list[tuple[list[Fact], list[Fact]]]]:
    chunk: list[tuple[list[Fact], list[Fact]]] = []
    size = 0
    for step in steps:
        chunk.append(step)
        size += len(step[0]) + len(step[1])
        if size >= _WRITE_CHUNK:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _none(_: object) -> None:
    return None


def _key(entity: object) -> str:
    return entity.key if isinstance(entity, Entity) else str(entity)[:120]


def _short(value: object, limit: int = 60) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "…"
