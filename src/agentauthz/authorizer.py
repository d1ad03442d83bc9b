"""The facade application code talks to: ``check``, ``authorize``, ``list_*``, writes.

The authorizer speaks only to a :class:`~agentauthz.typing.Backend`: the
local evaluator by default, or a remote engine. In front of it sit the
optional decision cache and the failure policy: whatever a backend raises
becomes a deny with reason ``backend_error`` (or is re-raised, if asked),
never an allow. Every method has an async twin.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any, Final, Literal

from agentauthz import enforce
from agentauthz.backends.local import LocalBackend
from agentauthz.cache import CacheStats, DecisionCache
from agentauthz.engine.data import load_data
from agentauthz.engine.evaluator import CheckRequest, Evaluator
from agentauthz.engine.explain import Explanation, explain
from agentauthz.engine.store import MemoryStore
from agentauthz.errors import (
    AuthorizationError,
    BackendError,
    ConfigurationError,
    Forbidden,
    NotFound,
    Unauthenticated,
)
from agentauthz.model import Decision, EntityLike, Outcome, Reason, Relationship
from agentauthz.policy.schema import Policy
from agentauthz.typing import Backend

__all__ = ["Authorizer"]

log = logging.getLogger("agentauthz.authorizer")

PolicySource = str | os.PathLike[str] | Mapping[str, Any] | Policy
RelationshipLike = Relationship | str | tuple[str, str, str]
_UNKNOWN_VERSION: Final = "unknown"


class Authorizer:
    """Answers "may this principal do this action on this resource, in this context?".

    Pass ``policy`` (a path to a YAML/JSON file, YAML text, a mapping, or a
    :class:`~agentauthz.policy.Policy`) to decide in process, or ``backend``
    for a remote engine. A bad policy raises
    :class:`~agentauthz.errors.PolicyError` naming every problem.

    Keyword-only settings:

    ``data``
        relationships and attributes to preload (local evaluator only).
    ``store``
        where relationships live (local only): in memory by default,
        :class:`~agentauthz.engine.SQLiteStore` to survive restarts.
    ``cache``
        ``True`` or a :class:`~agentauthz.cache.DecisionCache` to cache
        decisions; off by default (the local evaluator answers faster than
        most cache lookups; remote backends gain the most).
    ``on_backend_error``
        ``"deny"`` (default): a failing backend denies with reason
        ``backend_error``; ``"raise"``: raise :class:`~agentauthz.errors.BackendError`.
    ``timeout``
        seconds an async call may wait for its backend before denying.
    ``read_action``
        the action whose denial makes :meth:`authorize` raise ``NotFound``
        rather than ``Forbidden`` (so existence does not leak); ``None`` to
        always raise ``Forbidden``.
    ``forbidden_error``, ``not_found_error``
        the exception classes :meth:`authorize` raises.
    """

    def __init__(self, policy: PolicySource | None = None, *, backend: Backend | None = None,
                 data: str | os.PathLike[str] | Mapping[str, Any] | None = None,
                 store: MemoryStore | None = None, cache: DecisionCache | bool | None = None,
                 on_backend_error: Literal["deny", "raise"] = "deny",
                 timeout: float | None = None, read_action: str | None = "read",
                 forbidden_error: type[AuthorizationError] = Forbidden,
                 not_found_error: type[AuthorizationError] = NotFound,
                 max_depth: int = 50) -> None:
        if (policy is None) == (backend is None):
            raise ConfigurationError(
                "Authorizer needs exactly one of policy=... (decide locally) or backend=... "
                "(a remote engine)")
        if backend is None:
            backend = LocalBackend(Policy.load(policy), store, max_depth=max_depth)  # type: ignore[arg-type]
        elif not isinstance(backend, Backend):
            raise ConfigurationError(f"backend={type(backend).__name__} does not implement the "
                                     "Backend protocol (agentauthz.typing.Backend)")
        elif store is not None or data is not None:
            raise ConfigurationError("store=... and data=... configure the local evaluator; with "
                                     "a remote backend, load data into that backend")
        if on_backend_error not in ("deny", "raise"):
            raise ConfigurationError("on_backend_error must be 'deny' or 'raise'")
        if timeout is not None and not (isinstance(timeout, int | float) and timeout > 0):
            raise ConfigurationError("timeout must be a positive number of seconds or None")
        self.backend: Backend = backend
        self._local = backend if isinstance(backend, LocalBackend) else None
        if cache is True:
            cache = DecisionCache()
        elif cache is False:
            cache = None
        elif cache is not None and not isinstance(cache, DecisionCache):
            raise ConfigurationError("cache must be True, False, None or a DecisionCache")
        self.cache: DecisionCache | None = cache
        self.on_backend_error = on_backend_error
        self.timeout = timeout
        self.read_action = read_action
        self.forbidden_error = forbidden_error
        self.not_found_error = not_found_error
        if self.cache is None and self._local is not None:
            # the hot path: nothing stands between the caller and the evaluator
            self.check = self._local.evaluator.check  # type: ignore[method-assign]
        if data is not None:
            self.load_data(data)

    # ------------------------------------------------------------ properties
    @property
    def evaluator(self) -> Evaluator:
        """The local evaluator (raises for a remote backend)."""
        return self._require_local("evaluator").evaluator

    @property
    def policy(self) -> Policy:
        return self._require_local("policy").evaluator.policy

    @property
    def policy_version(self) -> str:
        if self._local is not None:
            return self._local.evaluator.policy_version
        version = self.backend.version()
        return str(version) if version is not None else _UNKNOWN_VERSION

    @property
    def store(self) -> MemoryStore:
        return self._require_local("store").evaluator.store

    def cache_stats(self) -> CacheStats | None:
        """Hits, misses and hit ratio of the decision cache (``None`` without one)."""
        return self.cache.stats() if self.cache is not None else None

    def _require_local(self, what: str) -> LocalBackend:
        if self._local is None:
            raise NotImplementedError(
                f"{what} belongs to the local evaluator; this authorizer decides with the "
                f"{self.backend.name!r} backend")
        return self._local

    # ------------------------------------------------------ policy and data
    def reload_policy(self, policy: PolicySource) -> None:
        """Swap the policy atomically; a bad policy raises and leaves the old one in force."""
        self._require_local("reload_policy").evaluator.set_policy(Policy.load(policy))
        self.invalidate()

    def invalidate(self) -> None:
        """Drop every cached decision (policy reloads and revocations call this)."""
        if self.cache is not None:
            self.cache.invalidate()

    def write(self, add: Iterable[RelationshipLike] = (),
              remove: Iterable[RelationshipLike] = ()) -> int:
        """Add and remove relationships in one validated batch; returns how many changed."""
        if self._local is not None:
            return self._local.evaluator.write(add, remove)  # the store version moves itself
        writer = getattr(self.backend, "write", None)
        if writer is None:
            raise NotImplementedError(f"the {self.backend.name!r} backend takes no "
                                      "relationship writes through agentauthz")
        changed: int = writer(add, remove)
        self.invalidate()  # a remote backend's version cannot tell the cache
        return changed

    def add(self, *relationships: RelationshipLike) -> int:
        """Shorthand for ``write(add=relationships)``."""
        return self.write(add=relationships)

    def remove(self, *relationships: RelationshipLike) -> int:
        """Shorthand for ``write(remove=relationships)``."""
        return self.write(remove=relationships)

    def set_attributes(self, entity: EntityLike, attributes: Mapping[str, Any] | None) -> None:
        """Store attributes of an entity (replacing earlier ones), for conditions to read."""
        self._require_local("set_attributes").evaluator.set_attributes(entity, attributes)

    def load_data(self, source: str | os.PathLike[str] | Mapping[str, Any]) -> None:
        """Load a data file's relationships and attributes (validated against the schema)."""
        evaluator = self._require_local("load_data").evaluator
        dataset = load_data(source)
        evaluator.write(add=dataset.relationships)
        for entity, attrs in dataset.attributes.items():
            evaluator.set_attributes(entity, attrs)

    # --------------------------------------------------------------- checks
    def _failed(self, exc: BaseException) -> Decision:
        if self.on_backend_error == "raise":
            if isinstance(exc, BackendError):
                raise exc
            raise BackendError(f"the {self.backend.name!r} backend failed: {exc}") from exc
        log.warning("agentauthz: backend %r failed (%s: %s); denying", self.backend.name,
                    type(exc).__name__, exc)
        message = f"the {self.backend.name!r} backend failed ({type(exc).__name__}: {exc})"
        return Decision(False, Outcome.DENY, (Reason("backend_error", message[:300]),),
                        _UNKNOWN_VERSION)

    def _version(self) -> Any:
        local = self._local
        if local is not None:
            evaluator = local.evaluator
            return (evaluator._compiled.version, evaluator.store._version)
        try:
            return self.backend.version()
        except Exception:  # a backend that cannot say: key on nothing it might have changed
            return object()

    def _cached(self, principal: EntityLike, action: str, resource: EntityLike,
                context: Mapping[str, Any] | None) -> tuple[Hashable | None, Decision | None]:
        """The cache key of a request (``None``: not cacheable) and the cached decision."""
        cache = self.cache
        if cache is None:
            return None, None
        key = cache.key(self._version(), principal, action, resource, context)
        return key, (cache.get(key) if key is not None else None)

    def _answered(self, key: Hashable | None, decision: object) -> Decision:
        """Accept a backend's answer only if it is a Decision; remember it if it may be."""
        if not isinstance(decision, Decision):
            return self._failed(BackendError(f"answered {type(decision).__name__}, "
                                             "not a Decision"))
        if key is not None and self.cache is not None:
            self.cache.put(key, decision)
        return decision

    def check(self, principal: EntityLike, action: str, resource: EntityLike,
              context: Mapping[str, Any] | None = None) -> Decision:
        """Decide. Never raises for a deny: malformed input and failures deny with a reason."""
        key, hit = self._cached(principal, action, resource, context)
        if hit is not None:
            return hit
        try:
            decision = self.backend.check(principal, action, resource, context)
        except Exception as exc:  # deny on doubt: whatever a backend raises is not an allow
            return self._failed(exc)
        return self._answered(key, decision)

    async def acheck(self, principal: EntityLike, action: str, resource: EntityLike,
                     context: Mapping[str, Any] | None = None) -> Decision:
        key, hit = self._cached(principal, action, resource, context)
        if hit is not None:
            return hit
        try:
            pending = self.backend.acheck(principal, action, resource, context)
            decision = await (asyncio.wait_for(pending, self.timeout) if self.timeout
                              else pending)
        except Exception as exc:  # deny on doubt, timeouts included
            return self._failed(exc)
        return self._answered(key, decision)

    def check_many(self, requests: Sequence[CheckRequest | tuple[Any, ...]]) -> list[Decision]:
        """Decide a batch, in order; each item a :class:`CheckRequest` or a tuple of its fields."""
        items = [_request(r) for r in requests]
        if self.cache is not None:
            return [self.check(r.principal, r.action, r.resource, r.context) for r in items]
        if self._local is not None:
            return self._local.evaluator.check_many(items)
        try:
            out = self.backend.check_many(items)
        except Exception as exc:  # deny on doubt, the whole batch
            return [self._failed(exc)] * len(items)
        return self._checked_batch(items, out)

    def _checked_batch(self, items: list[CheckRequest], out: object) -> list[Decision]:
        if (not isinstance(out, list) or len(out) != len(items)
                or not all(isinstance(d, Decision) for d in out)):
            return [self._failed(BackendError("a batch answer did not match the batch"))] \
                * len(items)
        return out

    async def acheck_many(self, requests: Sequence[CheckRequest | tuple[Any, ...]]
                          ) -> list[Decision]:
        items = [_request(r) for r in requests]
        if self.cache is not None:
            return [await self.acheck(r.principal, r.action, r.resource, r.context)
                    for r in items]
        try:
            pending = self.backend.acheck_many(items)
            out = await (asyncio.wait_for(pending, self.timeout) if self.timeout else pending)
        except Exception as exc:  # deny on doubt, timeouts included
            return [self._failed(exc)] * len(items)
        return self._checked_batch(items, out)

    def authorize(self, principal: EntityLike | None, action: str, resource: EntityLike,
                  context: Mapping[str, Any] | None = None) -> Decision:
        """Return the allowing decision, or raise.

        Raises :class:`~agentauthz.errors.Unauthenticated` without a principal;
        on a deny, ``not_found_error`` when the principal may not even
        ``read_action`` the resource (so its existence does not leak), else
        ``forbidden_error``. Each error carries the decision.
        """
        if principal is None:
            raise Unauthenticated(None, "no principal: nobody to decide for")
        decision = self.check(principal, action, resource, context)
        if decision.allowed:
            return decision
        raise self._denied(decision, action, lambda: self.check(
            principal, self.read_action or "", resource, context))

    async def aauthorize(self, principal: EntityLike | None, action: str, resource: EntityLike,
                         context: Mapping[str, Any] | None = None) -> Decision:
        if principal is None:
            raise Unauthenticated(None, "no principal: nobody to decide for")
        decision = await self.acheck(principal, action, resource, context)
        if decision.allowed:
            return decision
        readable = None
        if self.read_action is not None and action != self.read_action:
            readable = await self.acheck(principal, self.read_action, resource, context)
        raise self._denied(decision, action, lambda: readable)

    def _denied(self, decision: Decision, action: str, read: Any) -> AuthorizationError:
        if self.read_action is None:
            return self.forbidden_error(decision)
        if action == self.read_action:
            return self.not_found_error(decision)
        readable = read()
        if readable is not None and readable.allowed:
            return self.forbidden_error(decision)
        return self.not_found_error(decision)

    def acting_as(self, principal: EntityLike) -> enforce.acting_as:
        """Set the current principal (and this authorizer) for a block, task or function."""
        return enforce.acting_as(principal, authz=self)

    # ------------------------------------------------------------- queries
    def list_resources(self, principal: EntityLike, action: str, resource_type: str,
                       context: Mapping[str, Any] | None = None) -> frozenset[str]:
        """Every known entity of ``resource_type`` that ``check`` would allow.

        A failing backend lists nothing (or raises, with ``on_backend_error="raise"``):
        never a partial list.
        """
        try:
            return _names(self.backend.list_resources(principal, action, resource_type, context))
        except Exception as exc:
            self._failed(exc)
            return frozenset()

    async def alist_resources(self, principal: EntityLike, action: str, resource_type: str,
                              context: Mapping[str, Any] | None = None) -> frozenset[str]:
        try:
            pending = self.backend.alist_resources(principal, action, resource_type, context)
            return _names(await (asyncio.wait_for(pending, self.timeout) if self.timeout
                                 else pending))
        except Exception as exc:
            self._failed(exc)
            return frozenset()

    def list_actions(self, principal: EntityLike, resource: EntityLike,
                     context: Mapping[str, Any] | None = None) -> frozenset[str]:
        try:
            return _names(self.backend.list_actions(principal, resource, context))
        except Exception as exc:
            self._failed(exc)
            return frozenset()

    async def alist_actions(self, principal: EntityLike, resource: EntityLike,
                            context: Mapping[str, Any] | None = None) -> frozenset[str]:
        try:
            pending = self.backend.alist_actions(principal, resource, context)
            return _names(await (asyncio.wait_for(pending, self.timeout) if self.timeout
                                 else pending))
        except Exception as exc:
            self._failed(exc)
            return frozenset()

    def authorized_fields(self, principal: EntityLike, action: str, resource: EntityLike,
                          context: Mapping[str, Any] | None = None) -> frozenset[str]:
        return self._require_local("authorized_fields").evaluator.authorized_fields(
            principal, action, resource, context)

    async def aauthorized_fields(self, principal: EntityLike, action: str, resource: EntityLike,
                                 context: Mapping[str, Any] | None = None) -> frozenset[str]:
        return self.authorized_fields(principal, action, resource, context)

    def explain(self, principal: EntityLike, action: str, resource: EntityLike,
                context: Mapping[str, Any] | None = None) -> Explanation:
        """The full decision tree; ``str()`` of it is readable (local evaluator only)."""
        return explain(self._require_local("explain").evaluator, principal, action, resource,
                       context)

    async def awrite(self, add: Iterable[RelationshipLike] = (),
                     remove: Iterable[RelationshipLike] = ()) -> int:
        return self.write(add, remove)


def _request(item: CheckRequest | tuple[Any, ...]) -> CheckRequest:
    if isinstance(item, CheckRequest):
        return item
    if isinstance(item, tuple) and len(item) in (3, 4):
        return CheckRequest(*item)
    return CheckRequest(None, "", None)  # type: ignore[arg-type]  # denies as invalid input


def _names(answer: object) -> frozenset[str]:
    """A backend's list answer, if it is a set of strings; anything else is a failure."""
    if isinstance(answer, frozenset | set) and all(type(x) is str for x in answer):
        return frozenset(answer)
    raise BackendError(f"a list answer must be a set of strings, got {type(answer).__name__}")
