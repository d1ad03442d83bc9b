"""Enforcement in application code: who is acting, and the ``@authorize`` decorator.

The current principal lives in a :mod:`contextvars` variable, so each thread
and each asyncio task sees its own: ``with authz.acting_as(user):`` sets it
for the block (and restores the previous one on the way out, exceptions
included); an ``async with`` works the same; ``acting_as`` is also a
decorator.

``@authorize(action, resource)`` checks before the wrapped function runs
and raises an :class:`~agentauthz.errors.AuthorizationError` instead of
calling it. ``resource`` is one of:

- an entity type, ``"document"`` (or a class with ``__authz_type__``): the id
  comes from the argument named by ``id_param`` (default ``<type>_id``, then
  ``id``), or from an argument that is an instance of that class (its ``.id``);
- a template, ``"document:{doc_id}"``, filled from the call's arguments;
- a callable taking the same arguments as the function, returning an entity.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import string
from collections.abc import Callable, Coroutine, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast, overload

from agentauthz.agents.delegation import Delegation
from agentauthz.errors import ConfigurationError, InvalidInputError, Unauthenticated
from agentauthz.model import Entity

if TYPE_CHECKING:
    from agentauthz.authorizer import Authorizer
    from agentauthz.typing import EntityLike

__all__ = ["acting_as", "authorize", "current_authorizer", "current_principal"]

P = ParamSpec("P")
R = TypeVar("R")

_principal: contextvars.ContextVar[EntityLike | Delegation | None] = contextvars.ContextVar(
    "agentauthz_principal", default=None)
_authorizer: contextvars.ContextVar[Authorizer | None] = contextvars.ContextVar(
    "agentauthz_authorizer", default=None)


def current_principal() -> EntityLike | Delegation | None:
    """The principal set by the innermost ``acting_as`` (or task) in this thread or task.

    A :class:`~agentauthz.agents.Delegation` when an agent acts for a user.
    """
    return _principal.get()


def current_authorizer() -> Authorizer | None:
    """The authorizer bound by the innermost ``acting_as`` in this thread or task."""
    return _authorizer.get()


class acting_as:  # used like a function: `with acting_as(user):`
    """Set the current principal (and authorizer) for a block, a task, or a function.

    Usable as ``with``, ``async with`` and as a decorator of sync and async
    functions. The previous values are restored when the block ends, however
    it ends.
    """

    def __init__(self, principal: EntityLike | Delegation, *,
                 authz: Authorizer | None = None) -> None:
        if principal is None or not isinstance(principal, Entity | str | Delegation):
            raise InvalidInputError("acting_as needs an Entity, a 'type:id' string or a "
                                    "Delegation")
        self.principal = principal
        self.authz = authz
        self._tokens: list[tuple[contextvars.Token[Any], contextvars.Token[Any] | None]] = []

    def __enter__(self) -> EntityLike | Delegation:
        p = _principal.set(self.principal)
        a = _authorizer.set(self.authz) if self.authz is not None else None
        self._tokens.append((p, a))
        return self.principal

    def __exit__(self, *exc: object) -> None:
        p, a = self._tokens.pop()
        if a is not None:
            _authorizer.reset(a)
        _principal.reset(p)

    async def __aenter__(self) -> EntityLike | Delegation:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__(*exc)

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        if inspect.iscoroutinefunction(fn):
            afn: Callable[P, Coroutine[Any, Any, Any]] = fn

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                with _scope(self.principal, self.authz):
                    return await afn(*args, **kwargs)

            return cast(Callable[P, R], async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with _scope(self.principal, self.authz):
                return fn(*args, **kwargs)

        return wrapper


@contextmanager
def _scope(principal: EntityLike | Delegation, authz: Authorizer | None) -> Iterator[None]:
    # a fresh acting_as per call: one decorated function may run in many tasks at once
    with acting_as(principal, authz=authz):
        yield


ResourceSpec = str | type | Callable[..., "EntityLike"]
_MISSING: Any = object()


class _ResourceResolver:
    """Turns a call's arguments into the resource entity, as the decorator was told."""

    def __init__(self, spec: ResourceSpec, fn: Callable[..., Any], id_param: str | None) -> None:
        self.signature = inspect.signature(fn)
        self.spec = spec
        self.template: str | None = None
        self.type: str | None = None
        self.cls: type | None = None
        self.id_params: tuple[str, ...] = ()
        self.getters: list[tuple[str, int, Any]] | None = None
        self.prefix: str | None = None
        self.field = ""
        params = self.signature.parameters
        if isinstance(spec, str) and ("{" in spec or ":" in spec):
            fields = {name for _, name, _, _ in string.Formatter().parse(spec) if name}
            missing = {f.split(".")[0].split("[")[0] for f in fields} - set(params)
            if missing:
                raise ConfigurationError(
                    f"@authorize on {fn.__qualname__}: resource template {spec!r} names "
                    f"{', '.join(sorted(missing))}, which {fn.__qualname__} has no parameter "
                    "for; fix the template or the parameter name")
            self.template = spec
            parts = list(string.Formatter().parse(spec))
            # "document:{doc_id}": a prefix and one plain field, joined without str.format
            if len(parts) == 1 and parts[0][1] and not parts[0][2] and not parts[0][3] \
                    and parts[0][1].isidentifier():
                self.prefix, self.field = parts[0][0], parts[0][1]
            self.getters = self._argument_getters(
                {f.split(".")[0].split("[")[0] for f in fields})
        elif isinstance(spec, str | type):
            if isinstance(spec, type):
                self.cls = spec
                self.type = str(getattr(spec, "__authz_type__", spec.__name__.lower()))
            else:
                self.type = spec
            candidates = (id_param,) if id_param else (f"{self.type}_id", "id")
            self.id_params = tuple(c for c in candidates if c in params)
            self.getters = (None if self.cls is not None
                            else self._argument_getters(set(self.id_params)))
            by_instance = self.cls is not None and any(
                p.annotation is self.cls or p.annotation == self.cls.__name__
                for p in params.values())
            if not self.id_params and not by_instance:
                raise ConfigurationError(
                    f"@authorize on {fn.__qualname__}: cannot tell which argument is the "
                    f"{self.type} id; pass id_param='...' (looked for "
                    f"{', '.join(candidates)})")
        elif not callable(spec):
            raise ConfigurationError(
                f"@authorize on {fn.__qualname__}: resource must be a type name, a class, a "
                "'type:{param}' template or a callable")

    def _argument_getters(self, names: set[str]) -> list[tuple[str, int, Any]] | None:
        """Where each named argument sits: (name, position or -1, default). ``None`` when a
        name is keyword-only or variadic, so ``Signature.bind`` must do the work."""
        out = []
        for index, (name, param) in enumerate(self.signature.parameters.items()):
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                if name in names:
                    return None
                break
            if name in names:
                position = index if param.kind is not param.KEYWORD_ONLY else -1
                default = param.default if param.default is not param.empty else _MISSING
                out.append((name, position, default))
        return out if len(out) == len(names) else None

    def _arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        if self.getters is not None:
            values: dict[str, Any] = {}
            for name, position, default in self.getters:
                if 0 <= position < len(args):
                    values[name] = args[position]
                elif name in kwargs:
                    values[name] = kwargs[name]
                elif default is not _MISSING:
                    values[name] = default
                else:
                    break
            else:
                return values
        bound = self.signature.bind(*args, **kwargs)  # also raises the usual TypeError
        bound.apply_defaults()
        return dict(bound.arguments)

    def __call__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> EntityLike:
        if self.template is None and self.type is None:
            resolve = cast(Callable[..., "EntityLike"], self.spec)
            return resolve(*args, **kwargs)
        arguments = self._arguments(args, kwargs)
        if self.template is not None:
            if self.prefix is not None:
                return f"{self.prefix}{arguments[self.field]}"
            return self.template.format(**arguments)
        for name in self.id_params:
            value = arguments.get(name)
            if value is not None:
                return f"{self.type}:{value}"
        if self.cls is not None:
            for value in arguments.values():
                if isinstance(value, self.cls):
                    return f"{self.type}:{value.id}"  # type: ignore[attr-defined]
        raise InvalidInputError(f"no {self.type} id among the arguments")


@overload
def authorize(action: str, resource: ResourceSpec, *, authz: Authorizer | None = ...,
              id_param: str | None = ..., context: Mapping[str, Any]
              | Callable[..., Mapping[str, Any]] | None = ...,
              principal: EntityLike | Delegation | None = ...
              ) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


@overload
def authorize(action: str, resource: ResourceSpec, **options: Any
              ) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def authorize(action: str, resource: ResourceSpec, *, authz: Authorizer | None = None,
              id_param: str | None = None,
              context: Mapping[str, Any] | Callable[..., Mapping[str, Any]] | None = None,
              principal: EntityLike | Delegation | None = None,
              **options: Any) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Check ``action`` on the resource before the decorated function runs.

    The principal is ``principal`` if given, else the current one
    (:func:`current_principal`); the authorizer is ``authz`` if given, else
    the one bound by ``acting_as``. ``context`` is a mapping or a callable of
    the function's arguments. Raises :class:`~agentauthz.errors.Unauthenticated`,
    :class:`~agentauthz.errors.Forbidden` or :class:`~agentauthz.errors.NotFound`
    (see :meth:`Authorizer.authorize`) instead of calling the function.
    """
    if options:
        raise TypeError(f"authorize() got unexpected options: {', '.join(sorted(options))}")
    if not isinstance(action, str) or not action:
        raise ConfigurationError("@authorize needs an action name, e.g. @authorize('read', ...)")

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        resolve = _ResourceResolver(resource, fn, id_param)

        def prepare(args: tuple[Any, ...], kwargs: dict[str, Any]
                    ) -> tuple[Authorizer, EntityLike | Delegation, EntityLike, Mapping[str, Any] | None]:
            who = principal if principal is not None else _principal.get()
            checker = authz if authz is not None else _authorizer.get()
            if checker is None:
                raise ConfigurationError(
                    f"@authorize on {fn.__qualname__}: no Authorizer; pass authz=... or run "
                    "inside `with authz.acting_as(principal):`")
            if who is None:
                raise Unauthenticated(None, f"{fn.__qualname__} needs a principal: call it "
                                            "inside `with authz.acting_as(principal):`")
            target = resolve(args, kwargs)
            ctx = context(*args, **kwargs) if callable(context) else context
            return checker, who, target, ctx

        if inspect.iscoroutinefunction(fn):
            afn: Callable[P, Coroutine[Any, Any, Any]] = fn

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                checker, who, target, ctx = prepare(args, kwargs)
                await checker.aauthorize(who, action, target, ctx)
                return await afn(*args, **kwargs)

            return cast(Callable[P, R], async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            checker, who, target, ctx = prepare(args, kwargs)
            checker.authorize(who, action, target, ctx)
            return fn(*args, **kwargs)

        return wrapper

    return decorate
