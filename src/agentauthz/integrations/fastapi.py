"""Protecting FastAPI routes: who is asking, ``require``, and problem+json answers.

::

    guard = AgentAuthz(authz, principal=bearer_principal(decode_token))
    app = FastAPI()
    guard.install(app)  # before the routes are added

    @app.get("/documents/{document_id}")
    async def read(document_id: str,
                   decision: Annotated[Decision, Depends(require("read", "document"))]) -> ...

    @app.post("/documents/{doc_id}/export")
    @authorize("export", "document", id_param="doc_id")
    def export(doc_id: str) -> ...

**Who is asking.** A principal resolver is any FastAPI dependency that returns
an :class:`~agentauthz.Entity`, a ``"type:id"`` string, or ``None`` (nobody):
:func:`header_principal` and :func:`bearer_principal` build the common ones.
A value that is not a well-formed principal counts as nobody, never as an
error: the request is then unauthenticated wherever it needs a principal.

**Binding.** :attr:`AgentAuthz.current_principal` is a dependency that
``install`` adds to every route of the app. It runs the resolver and binds the
principal and the authorizer in the context variables that
:func:`~agentauthz.current_principal` and :func:`~agentauthz.authorize` read:
in the request's own task (so async handlers see them), copied into the worker
thread FastAPI runs a sync handler in, and restored when the request ends.
Every request starts from nobody, whatever context the server runs in.

**Answers.** ``install`` also maps the errors of
:class:`~agentauthz.errors.AuthorizationError` (and
:class:`~agentauthz.errors.BackendError`) to RFC 9457 problem documents,
``application/problem+json``:

- ``Unauthenticated``: 401, with ``WWW-Authenticate`` if the resolver names a scheme;
- ``Forbidden``: 403, with ``decision_id``;
- ``NotFound``: 404, with ``decision_id``;
- ``ApprovalRequired``: 403, with ``decision_id`` and ``approval_request_id``;
- any other ``AuthorizationError``: 403, with ``decision_id``;
- ``BackendError`` (``on_backend_error="raise"``): 503.

A body says what happened in generic words and carries the decision id, never
the reasons: rule ids, relation paths and condition errors describe the policy
and the data, which a client must not learn (a 404 must not even reveal that
the resource exists). The full explanation goes to the ``agentauthz.decisions``
logger at DEBUG, keyed by the same decision id.

Importing this module imports FastAPI; ``import agentauthz`` never does.
"""

# No `from __future__ import annotations` here: FastAPI reads the annotations
# of the dependencies below at run time, and callable instances and closures
# cannot have string annotations resolved.

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Annotated, Any, Final, Literal, TypeAlias

try:
    from fastapi import Depends, FastAPI, HTTPException, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.openapi.models import APIKey
    from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
    from fastapi.responses import JSONResponse
    from fastapi.routing import APIRoute, APIWebSocketRoute
    from fastapi.security.base import SecurityBase
    from fastapi.security.utils import get_authorization_scheme_param
    from starlette.requests import HTTPConnection
    from starlette.responses import Response
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        f"agentauthz.integrations.fastapi needs FastAPI ({exc}); "
        "pip install 'agentauthz[fastapi]'") from exc

from agentauthz import enforce
from agentauthz.agents.delegation import Delegation
from agentauthz.authorizer import Authorizer
from agentauthz.errors import (
    ApprovalRequired,
    AuthorizationError,
    BackendError,
    ConfigurationError,
    Forbidden,
    InvalidInputError,
    NotFound,
    Unauthenticated,
)
from agentauthz.model import Decision, Entity, EntityLike, parse_entity_key

__all__ = [
    "AgentAuthz",
    "BearerPrincipal",
    "ContextSource",
    "HeaderPrincipal",
    "PrincipalDependency",
    "TokenDecoder",
    "allowed_resources",
    "bearer_principal",
    "header_principal",
    "require",
]

log = logging.getLogger("agentauthz.integrations.fastapi")
decisions_log = logging.getLogger("agentauthz.decisions")

PrincipalDependency: TypeAlias = Callable[..., Any]
"""A FastAPI dependency (sync or async) returning an Entity, a ``"type:id"`` string or None."""

TokenDecoder: TypeAlias = Callable[[str], EntityLike | Awaitable[EntityLike | None] | None]
"""Your function from a bearer token to the principal it names (or None), sync or async."""

ContextSource: TypeAlias = (
    Mapping[str, Any]
    | Callable[[Request], Mapping[str, Any] | None]
    | Callable[[Request], Awaitable[Mapping[str, Any] | None]]
)
"""Request-time context for a check: a mapping, or a function of the request (sync or async)."""

_SCOPE_KEY: Final = "agentauthz.principal"  # set in the ASGI scope once the principal is bound
_DECODE_FAILED: Final = object()


def _as_principal(value: object, source: str) -> EntityLike | None:
    """``value`` as a principal, or ``None`` when it is absent or malformed (deny on doubt).

    An entity without attributes is reduced to its ``"type:id"`` string: the
    decision cache keys only strings, and the attributes live in the store.
    """
    if value is None:
        return None
    if isinstance(value, Entity):
        return value if value.attributes else value.key
    if isinstance(value, str):
        try:
            parse_entity_key(value, what="principal")
        except InvalidInputError as exc:
            log.info("%s: not a principal, treating the request as unauthenticated: %s", source, exc)
            return None
        return value
    log.warning("%s returned %s, not an Entity, a 'type:id' string or None; treating the request "
                "as unauthenticated", source, type(value).__name__)
    return None


def _single_header(connection: HTTPConnection, name: str, source: str) -> str | None:
    values = connection.headers.getlist(name)
    if len(values) > 1:  # which one a proxy checked is anybody's guess: trust none
        log.info("%s: %d %s headers, expected one; treating the request as unauthenticated",
                 source, len(values), name)
        return None
    return values[0] if values else None


def _check_type_name(type_name: str, what: str) -> str:
    try:
        Entity(type_name, "x")
    except InvalidInputError:
        raise ConfigurationError(f"{what}: {type_name!r} is not a type name (letters, digits and "
                                 "'_', not starting with a digit)") from None
    return type_name


# --------------------------------------------------------------------------- resolvers
class HeaderPrincipal(SecurityBase):
    """Reads the principal from a request header, e.g. ``X-User: alice`` → ``user:alice``.

    With ``type=None`` the header carries the whole ``"type:id"``. A missing,
    repeated or malformed header gives no principal. Trust such a header only
    when a gateway in front of the app sets it and strips what clients send.
    The header shows in the OpenAPI document as an API-key scheme.
    """

    def __init__(self, name: str = "X-User", *, type: str | None = "user",
                 scheme_name: str | None = None, description: str | None = None) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigurationError("header_principal needs a header name, e.g. 'X-User'")
        self.header = name
        self.type = None if type is None else _check_type_name(type, "header_principal(type=...)")
        self.model = APIKey.model_validate({"in": "header", "name": name, "description": description})
        self.scheme_name = scheme_name or self.__class__.__name__

    async def __call__(self, connection: HTTPConnection) -> EntityLike | None:
        source = f"header {self.header}"
        value = _single_header(connection, self.header, source)
        if value is None or value == "":
            return None
        return _as_principal(value if self.type is None else f"{self.type}:{value}", source)


class BearerPrincipal(SecurityBase):
    """Reads ``Authorization: Bearer <token>`` and asks ``decode`` who the token names.

    ``decode`` is yours (verify a JWT, look up a session): it returns an
    Entity, a ``"type:id"`` string, or ``None`` for a token it does not
    accept. It may be async; a sync one runs in FastAPI's thread pool, so it may
    block. A missing or malformed header, a token ``decode`` refuses or raises
    on, and an answer that is not a principal all give no principal; the
    exception is logged (its type only: its text may quote the token).
    """

    def __init__(self, decode: TokenDecoder, *,
                 scheme_name: str | None = None, description: str | None = None,
                 bearer_format: str | None = None, blocking: bool = True) -> None:
        if not callable(decode):
            raise ConfigurationError("bearer_principal needs decode: a function from a token to a "
                                     "principal (or None)")
        self.decode = decode
        self.model = HTTPBearerModel(bearerFormat=bearer_format, description=description)
        self.scheme_name = scheme_name or self.__class__.__name__
        self._async = inspect.iscoroutinefunction(decode) or inspect.iscoroutinefunction(
            getattr(decode, "__call__", None))  # noqa: B004
        self.blocking = blocking

    def make_authenticate_headers(self) -> dict[str, str]:
        """Headers of a 401 answer (RFC 6750: name the scheme)."""
        return {"WWW-Authenticate": "Bearer"}

    async def __call__(self, connection: HTTPConnection) -> EntityLike | None:
        source = f"bearer_principal({getattr(self.decode, '__qualname__', 'decode')})"
        header = _single_header(connection, "Authorization", source)
        scheme, token = get_authorization_scheme_param(header)
        if scheme.lower() != "bearer" or not token:
            return None
        answer = await self._decode(token, source)
        return None if answer is _DECODE_FAILED else _as_principal(answer, source)

    async def _decode(self, token: str, source: str) -> object:
        try:
            if self._async or not self.blocking:
                answer = self.decode(token)
            else:
                answer = await run_in_threadpool(self.decode, token)
            return await answer if inspect.isawaitable(answer) else answer
        except Exception as exc:  # a token decode refuses is no principal, never a 500
            log.info("%s refused a token (%s); treating the request as unauthenticated",
                     source, type(exc).__name__)
            return _DECODE_FAILED


def header_principal(name: str = "X-User", *, type: str | None = "user",
                     scheme_name: str | None = None,
                     description: str | None = None) -> HeaderPrincipal:
    """A resolver reading the principal's id from header ``name``; see :class:`HeaderPrincipal`."""
    return HeaderPrincipal(name, type=type, scheme_name=scheme_name, description=description)


def bearer_principal(decode: TokenDecoder, *,
                     scheme_name: str | None = None, description: str | None = None,
                     bearer_format: str | None = None, blocking: bool = True) -> BearerPrincipal:
    """A resolver for ``Authorization: Bearer`` tokens, decoded by ``decode``;
    see :class:`BearerPrincipal`. ``blocking=False`` calls a sync ``decode`` on the
    event loop instead of the thread pool: right for a cheap, local decode (a
    lookup, a signature check against a key in memory), wrong for one that
    does I/O, because a thread hop costs more than such a decode."""
    return BearerPrincipal(decode, scheme_name=scheme_name, description=description,
                           bearer_format=bearer_format, blocking=blocking)


class _BindPrincipal:
    """Plain ASGI middleware: resolve the principal with one of our resolvers and bind it.

    It runs before routing, in the task that runs the request, so every
    dependency and handler of the request sees the principal (a sync handler's
    thread pool copies the context). Every request sets it, to nobody if need
    be, and puts back what was there when it ends.
    """

    def __init__(self, app: Any, *, resolver: HeaderPrincipal | BearerPrincipal,
                 authz: Authorizer) -> None:
        self.app = app
        self.resolver = resolver
        self.authz = authz
        self.source = type(resolver).__qualname__

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        principal = _as_principal(await self.resolver(HTTPConnection(scope)), self.source)
        scope[_SCOPE_KEY] = principal
        # restored afterwards: some servers and test transports run the app in the
        # caller's own task, whose context must come back as it was
        principal_token = enforce._principal.set(principal)
        authz_token = enforce._authorizer.set(self.authz)
        try:
            await self.app(scope, receive, send)
        finally:
            enforce._authorizer.reset(authz_token)
            enforce._principal.reset(principal_token)


# --------------------------------------------------------------------------- the holder
_PROBLEMS: Final[dict[type[Exception], tuple[int, str, str]]] = {
    Unauthenticated: (401, "Unauthorized", "This request needs an authenticated principal."),
    NotFound: (404, "Not Found", "The requested resource was not found."),
    ApprovalRequired: (403, "Forbidden", "This action needs a person's approval first."),
    Forbidden: (403, "Forbidden", "The principal may not perform this action on this resource."),
    AuthorizationError: (403, "Forbidden",
                         "The principal may not perform this action on this resource."),
    BackendError: (503, "Service Unavailable",
                   "The authorization service could not decide; try again later."),
}


class AgentAuthz:
    """Connects an :class:`~agentauthz.Authorizer` to a FastAPI app.

    ``principal`` is the resolver: :func:`header_principal`,
    :func:`bearer_principal`, or any FastAPI dependency returning an
    Entity, a ``"type:id"`` string or ``None``. :meth:`install` wires both into
    an app.
    """

    def __init__(self, authz: Authorizer, *, principal: PrincipalDependency) -> None:
        if not isinstance(authz, Authorizer):
            raise ConfigurationError(f"AgentAuthz needs an Authorizer, got {type(authz).__name__}")
        if not callable(principal):
            raise ConfigurationError("AgentAuthz(principal=...) must be a FastAPI dependency: "
                                     "header_principal(...), bearer_principal(...) or a function "
                                     "returning an Entity, a 'type:id' string or None")
        self.authz = authz
        self.resolver = principal
        self.current_principal = self._binder()

    def _binder(self) -> Callable[..., AsyncIterator[EntityLike | None]]:
        resolver, authz = self.resolver, self.authz
        source = getattr(resolver, "__qualname__", None) or type(resolver).__qualname__

        async def current_principal(
                connection: HTTPConnection,
                resolved: Annotated[object, Depends(resolver)]) -> AsyncIterator[EntityLike | None]:
            """Resolve the principal and bind it, and the authorizer, for this request."""
            principal = _as_principal(resolved, source)
            connection.scope[_SCOPE_KEY] = principal
            # enforce's variables, set directly: acting_as cannot bind nobody, and a request
            # must not inherit a principal from the context the server happens to run in
            principal_token = enforce._principal.set(principal)
            authz_token = enforce._authorizer.set(authz)
            try:
                yield principal
            finally:
                enforce._authorizer.reset(authz_token)
                enforce._principal.reset(principal_token)

        return current_principal

    def install(self, app: FastAPI, *, bind: Literal["middleware", "dependency"] = "middleware"
                ) -> FastAPI:
        """Resolve and bind the principal for every request; answer denials.

        With :func:`header_principal` or :func:`bearer_principal` (and the default
        ``bind="middleware"``) a plain ASGI middleware resolves and binds the
        principal for every route, whenever it was added: it costs a few
        microseconds where FastAPI's dependency solver costs tens. The resolver
        then does not appear as a security scheme in the OpenAPI document; add
        ``dependencies=[Depends(resolver)]`` to routes for that.

        With a resolver that is itself a FastAPI dependency (or ``bind="dependency"``)
        the binding is an app dependency. Call ``install`` before adding routes
        or including routers then: FastAPI copies an app's dependencies into a
        route when the route is added, so routes that exist already would run
        without a principal (this raises instead). A router built elsewhere can
        take ``dependencies=[Depends(guard.current_principal)]``.
        """
        if bind not in ("middleware", "dependency"):
            raise ConfigurationError("install(bind=...) must be 'middleware' or 'dependency'")
        if getattr(app.state, "agentauthz_installed", None) is self:
            return app
        if bind == "middleware" and isinstance(self.resolver, HeaderPrincipal | BearerPrincipal):
            app.add_middleware(_BindPrincipal, resolver=self.resolver, authz=self.authz)
            app.add_exception_handler(AuthorizationError, self._handle)
            app.add_exception_handler(BackendError, self._handle)
            app.state.agentauthz_installed = self
            return app
        if any(getattr(d, "dependency", None) is self.current_principal
               for d in app.router.dependencies):
            return app
        early = [getattr(r, "path", type(r).__name__) for r in app.router.routes
                 if isinstance(r, APIRoute | APIWebSocketRoute)
                 or type(r).__module__.startswith("fastapi.")]
        if early:
            raise ConfigurationError(
                f"AgentAuthz.install(app) must come before the routes are added; these would run "
                f"without a principal: {', '.join(map(str, early[:5]))}. Call install(app) right "
                "after FastAPI(), or add Depends(guard.current_principal) to those routes")
        # first, so that the app's own dependencies already see the principal
        app.router.dependencies.insert(0, Depends(self.current_principal))
        app.add_exception_handler(AuthorizationError, self._handle)
        app.add_exception_handler(BackendError, self._handle)
        app.state.agentauthz_installed = self
        return app

    async def _handle(self, request: Request, exc: Exception) -> Response:
        return self.problem_response(request, exc)

    def problem_response(self, request: Request, exc: Exception) -> Response:
        """The problem+json answer to ``exc``; override to add members or headers.

        The decision's explanation is logged to ``agentauthz.decisions`` at DEBUG,
        never sent.
        """
        status, title, detail = next(
            (_PROBLEMS[c] for c in type(exc).__mro__ if c in _PROBLEMS), _PROBLEMS[AuthorizationError])
        body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status,
                                "detail": detail}
        decision: Decision | None = getattr(exc, "decision", None)
        if isinstance(decision, Decision):
            body["decision_id"] = decision.decision_id
        if isinstance(exc, ApprovalRequired):
            body["approval_request_id"] = exc.request_id
        headers: dict[str, str] = {}
        if status == 401:
            make_headers = getattr(self.resolver, "make_authenticate_headers", None)
            if callable(make_headers):
                headers.update(make_headers())
        if decisions_log.isEnabledFor(logging.DEBUG):
            decisions_log.debug(
                "%s %s -> %d (%s) for %s\n%s", request.method, request.url.path, status,
                type(exc).__name__, request.scope.get(_SCOPE_KEY),
                decision.explain() if isinstance(decision, Decision) else exc)
        return JSONResponse(body, status_code=status, headers=headers,
                            media_type="application/problem+json")


# --------------------------------------------------------------------------- dependencies
def _type_of(resource_type: str | type, what: str) -> str:
    if isinstance(resource_type, type):
        return _check_type_name(
            str(getattr(resource_type, "__authz_type__", resource_type.__name__.lower())), what)
    if not isinstance(resource_type, str):
        raise ConfigurationError(f"{what}: the resource type must be a type name or a class")
    return _check_type_name(resource_type, what)


class _Guarded:
    """What ``require`` and ``allowed_resources`` share: finding the principal, authorizer and context."""

    def __init__(self, action: str, resource_type: str | type, *, context: ContextSource | None,
                 authz: Authorizer | None, what: str) -> None:
        if not isinstance(action, str) or not action:
            raise ConfigurationError(f"{what} needs an action name, e.g. {what}('read', 'document')")
        if context is not None and not (callable(context) or isinstance(context, Mapping)):
            raise ConfigurationError(f"{what}(context=...) must be a mapping or a function of the "
                                     "request")
        if authz is not None and not isinstance(authz, Authorizer):
            raise ConfigurationError(f"{what}(authz=...) must be an Authorizer")
        self.action = action
        self.resource_type = _type_of(resource_type, what)
        self.context = context
        self.authz = authz

    def make_unauthenticated_error(self) -> Exception:
        """The error raised when the request has no principal (answered 401)."""
        return Unauthenticated(None, "no principal: nobody to decide for")

    def _bound(self, request: Request) -> tuple[Authorizer, EntityLike | Delegation]:
        authz = self.authz if self.authz is not None else enforce.current_authorizer()
        if _SCOPE_KEY not in request.scope or authz is None:
            raise ConfigurationError(
                f"{type(self).__name__}({self.action!r}, {self.resource_type!r}) on "
                f"{request.url.path}: no principal was resolved for this route; call "
                "AgentAuthz.install(app) before adding routes, or add "
                "Depends(guard.current_principal) before this dependency")
        principal = enforce.current_principal()
        if principal is None:
            raise self.make_unauthenticated_error()
        return authz, principal

    async def _context(self, request: Request) -> Mapping[str, Any] | None:
        if self.context is None or isinstance(self.context, Mapping):
            return self.context
        answer = self.context(request)
        if inspect.isawaitable(answer):
            answer = await answer
        return answer


class require(_Guarded):  # used like a function: Depends(require(...))
    """A dependency that authorizes ``action`` on the resource a route names, or raises.

    ``Annotated[Decision, Depends(require("read", "document"))]`` reads the id
    from the path parameter ``document_id`` (then ``id``), else from the query
    parameter of that name; ``id_param`` names another. ``resource_type`` is a
    type name or a class (its ``__authz_type__``, else its lowercased name).
    ``context`` is a mapping or a function of the request, sync or async.
    ``authz`` overrides the authorizer bound by :class:`AgentAuthz`.

    Returns the allowing :class:`~agentauthz.Decision`. Raises, as
    :meth:`Authorizer.aauthorize` does, ``Unauthenticated``, ``Forbidden`` or
    ``NotFound`` (which :meth:`AgentAuthz.install` answers 401/403/404); a
    request without the id gets :meth:`make_missing_id_error` (422). Override
    the ``make_*_error`` methods in a subclass to answer differently.
    """

    def __init__(self, action: str, resource_type: str | type, *, id_param: str | None = None,
                 context: ContextSource | None = None, authz: Authorizer | None = None) -> None:
        super().__init__(action, resource_type, context=context, authz=authz, what="require")
        if id_param is not None and (not isinstance(id_param, str) or not id_param):
            raise ConfigurationError("require(id_param=...) must be a parameter name")
        self.id_params: tuple[str, ...] = (
            (id_param,) if id_param else (f"{self.resource_type}_id", "id"))

    def make_missing_id_error(self) -> Exception:
        """The error raised when the request names no resource id, or names several (422)."""
        return HTTPException(status_code=422, detail=(
            f"expected one path or query parameter {' or '.join(map(repr, self.id_params))} "
            f"naming the {self.resource_type}"))

    def resource_id(self, request: Request) -> str | None:
        """The id the request names: the first ``id_params`` entry in the path, then the query."""
        for name in self.id_params:
            value = request.path_params.get(name)
            if value is not None:
                return str(value)
        for name in self.id_params:
            values = request.query_params.getlist(name)
            if len(values) == 1:
                return values[0]
            if values:
                return None  # ?id=1&id=2: which one would the handler use?
        return None

    async def __call__(self, request: Request) -> Decision:
        authz, principal = self._bound(request)
        resource_id = self.resource_id(request)
        if resource_id is None:
            raise self.make_missing_id_error()
        context = await self._context(request)
        # a malformed id is not an error here: the check denies it as invalid input
        return await authz.aauthorize(principal, self.action, f"{self.resource_type}:{resource_id}",
                                      context)


class allowed_resources(_Guarded):  # used like a function
    """A dependency giving every ``resource_type`` entity the principal may ``action``.

    ``Annotated[frozenset[str], Depends(allowed_resources("read", "document"))]``
    is the set :meth:`Authorizer.alist_resources` answers (``"document:42"``
    strings), for list endpoints that must show only what the caller may see.
    No principal raises ``Unauthenticated`` (401); a failing backend lists
    nothing.
    """

    def __init__(self, action: str, resource_type: str | type, *,
                 context: ContextSource | None = None, authz: Authorizer | None = None) -> None:
        super().__init__(action, resource_type, context=context, authz=authz,
                         what="allowed_resources")

    async def __call__(self, request: Request) -> frozenset[str]:
        authz, principal = self._bound(request)
        context = await self._context(request)
        return await authz.alist_resources(principal, self.action, self.resource_type, context)
