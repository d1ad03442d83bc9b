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
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal

from agentauthz import enforce
from agentauthz.agents.approvals import Approvals, ApprovalStore
from agentauthz.agents.breakglass import BreakGlass, BreakGlassGrant
from agentauthz.agents.chains import Ledgers, LedgerStore
from agentauthz.agents.credentials import KeyRing, Scope, TaskCredentials
from agentauthz.agents.delegation import AgentLayer, Delegation
from agentauthz.agents.registry import AgentRegistry
from agentauthz.agents.revocation import MemoryRevocationStore, RevocationStore
from agentauthz.agents.tasks import Task
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
    InvalidInputError,
    NotFound,
    Unauthenticated,
)
from agentauthz.model import Decision, Entity, EntityLike, Outcome, Reason, Relationship
from agentauthz.policy.schema import Policy
from agentauthz.typing import Backend

if TYPE_CHECKING:
    from agentauthz.agents.guard import GuardedCall, ToolGuard
    from agentauthz.audit.auditor import Auditor
    from agentauthz.scale.base import SharedState
    from agentauthz.telemetry import Telemetry
    from agentauthz.typing import AuditSink

__all__ = ["Authorizer"]

log = logging.getLogger("agentauthz.authorizer")

PolicySource = str | os.PathLike[str] | Mapping[str, Any] | Policy
RelationshipLike = Relationship | str | tuple[str, str, str]
_UNKNOWN_VERSION: Final = "unknown"
_perf_ns = time.perf_counter_ns
_time_ns = time.time_ns


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
    ``agents``
        an :class:`~agentauthz.agents.AgentRegistry`, or a YAML/JSON file or
        mapping with an ``agents:`` list; the policy's own ``agents:`` are
        added to it. Principals of an agent type must be registered and active.
    ``task_keys``
        the signing keys of task credentials (a :class:`~agentauthz.agents.KeyRing`
        or ``{key_id: secret}``); share them with every process that verifies
        this one's task tokens. Default: one random key, this process only.
    ``revocations``
        where revocations live (in memory by default; shared stores let every
        process see a revocation at once).
    ``max_task_ttl``
        the longest a task credential may live, in seconds.
    ``audit``
        an :class:`~agentauthz.typing.AuditSink`, a list of sinks, or an
        :class:`~agentauthz.audit.Auditor`: every decision of ``check`` and
        ``acheck`` (and of what is built on them: ``authorize``, delegated
        checks, the ``@authorize`` decorator, the tool guard) becomes one
        audit record. ``list_*`` and ``explain`` of a plain principal are not
        recorded. Off by default: then nothing stands in front of the evaluator.
    ``telemetry``
        ``True`` for OpenTelemetry spans and metrics through the global
        providers (reported only once an SDK is installed), or a
        :class:`~agentauthz.telemetry.Telemetry` with providers of its own.
    ``state``
        state shared by every worker of a deployment, e.g.
        :class:`~agentauthz.scale.RedisState`: revocations, task ledgers,
        approvals and break-glass grants live there, and relationship
        writes, policy reloads and revocations reach every worker's copy
        and decision cache through its change feed. While it cannot vouch
        for this process's copy (Redis unreachable, a change possibly
        missed), every decision denies with reason
        ``state_store_unavailable``. Unreachable at construction:
        :class:`~agentauthz.errors.ConfigurationError`. With a state,
        ``data=`` seeds the shared relationships once (the first worker to
        start) and ``store=`` may not be given.
    """

    def __init__(self, policy: PolicySource | None = None, *, backend: Backend | None = None,
                 data: str | os.PathLike[str] | Mapping[str, Any] | None = None,
                 store: MemoryStore | None = None, cache: DecisionCache | bool | None = None,
                 on_backend_error: Literal["deny", "raise"] = "deny",
                 timeout: float | None = None, read_action: str | None = "read",
                 forbidden_error: type[AuthorizationError] = Forbidden,
                 not_found_error: type[AuthorizationError] = NotFound,
                 max_depth: int = 50,
                 agents: AgentRegistry | str | os.PathLike[str] | Mapping[str, Any] | None = None,
                 task_keys: KeyRing | Mapping[str, bytes | str] | None = None,
                 revocations: RevocationStore | None = None,
                 max_task_ttl: float = 3600.0,
                 audit: AuditSink | Sequence[AuditSink] | Auditor | None = None,
                 telemetry: bool | Telemetry | None = None,
                 state: SharedState | None = None) -> None:
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
        self._fast = (self._local.evaluator.check if self.cache is None and self._local
                      is not None else None)
        if self._fast is not None:
            # the hot path: nothing stands between the caller and the evaluator
            self.check = self._fast  # type: ignore[method-assign, assignment]
        self._armed = False
        self._state: SharedState | None = None
        if state is not None:
            self._check_state(state, store, revocations)
        self._setup_observers(audit, telemetry)
        self._setup_agents(agents, task_keys, revocations, max_task_ttl, state)
        if state is not None:
            self._bind(state)
        if data is not None:
            if state is None or state.claim_seed():
                self.load_data(data)
            else:
                log.info("agentauthz: the shared relationships are already seeded; data=... "
                         "is not loaded again")

    @staticmethod
    def _check_state(state: object, store: object, revocations: object) -> None:
        from agentauthz.scale.base import SharedState

        if not isinstance(state, SharedState):
            raise ConfigurationError(f"state={type(state).__name__} is not a shared state "
                                     "(agentauthz.scale.SharedState), e.g. RedisState(url)")
        if store is not None:
            raise ConfigurationError("with state=..., relationships live in the shared state and "
                                     "each worker's memory: pass no store=...")
        if revocations is not None:
            raise ConfigurationError("with state=..., revocations live in the shared state: "
                                     "pass no revocations=...")

    def _bind(self, state: SharedState) -> None:
        """Follow the shared state; every decision asks it first from now on."""
        from agentauthz.scale.base import Replica

        local = self._local
        state.bind(Replica(local.evaluator.store if local is not None else None,
                           lambda: self.policy_version,
                           self._adopt_policy if local is not None else None, self.invalidate))
        self._state = state
        self._state_ready = state.ready
        if not self._observed:
            self.check = self._shared_check  # type: ignore[method-assign]

    def _adopt_policy(self, policy: Policy) -> None:
        """Swap in a policy another worker reloaded (from the shared state's feed)."""
        self._require_local("reload_policy").evaluator.set_policy(policy)
        self._register_policy_agents(replace=True)
        self.invalidate()

    def _setup_agents(self, agents: object, task_keys: KeyRing | Mapping[str, bytes | str] | None,
                      revocations: RevocationStore | None, max_task_ttl: float,
                      state: SharedState | None = None) -> None:
        if isinstance(agents, AgentRegistry):
            registry = agents
        elif agents is None:
            registry = AgentRegistry()
        elif isinstance(agents, str | os.PathLike | Mapping):
            registry = AgentRegistry.load(agents, known_types=self._policy_types())
        else:
            raise ConfigurationError("agents must be an AgentRegistry, a path to an agents file "
                                     f"or a mapping, got {type(agents).__name__}")
        if revocations is not None and not isinstance(revocations, RevocationStore):
            raise ConfigurationError("revocations must implement agentauthz.agents.RevocationStore")
        self.agents: AgentRegistry = registry
        """The agent registry: who may act as an agent, owned by whom, allowed which tools."""
        if state is not None:
            revocations = state.revocations
        self.revocations: RevocationStore = revocations or MemoryRevocationStore()
        self.tasks: TaskCredentials = TaskCredentials(task_keys, revocations=self.revocations,
                                                      max_ttl=max_task_ttl)
        """Issues and verifies task credentials: ``authz.tasks.verify(token)``."""
        self._breakglass = (BreakGlass(on_change=self.invalidate) if state is None
                            else state.breakglass(on_change=self.invalidate))
        self.approvals: ApprovalStore = Approvals() if state is None else state.approvals
        """Pending step-up requests: ``authz.approvals.approve(request_id, approver=...)``."""
        self._guard: ToolGuard | None = None
        self.ledgers: LedgerStore = Ledgers() if state is None else state.ledgers
        """Each task's ledger of tool calls, shared by every guard of this authorizer."""
        self._layer = AgentLayer(registry, self.revocations, self.tasks, self._breakglass)
        self._register_policy_agents(replace=False)

    def _policy_types(self) -> frozenset[str]:
        return frozenset(self._local.evaluator.policy.types) if self._local is not None \
            else frozenset()

    def _register_policy_agents(self, *, replace: bool) -> None:
        if self._local is not None:
            for definition in self._local.evaluator.policy.agents:
                existing = self.agents.get(definition.id)
                if existing is not None and not replace:
                    raise ConfigurationError(f"agent {definition.id!r} is both in the policy and "
                                             "in agents=...; register it in one place")
                self.agents.register(definition.id, owner=definition.owner,
                                     purpose=definition.purpose, risk=definition.risk,
                                     tools=definition.tools, status=definition.status,
                                     spiffe_id=definition.spiffe_id,
                                     description=definition.description,
                                     replace=existing is not None)
        if len(self.agents) or self.agents.agent_types & self._policy_types():
            self._arm()

    def _arm(self) -> None:
        """Route checks through the agent layer (registry, tasks, break-glass) from now on."""
        if not self._armed:
            self._armed = True
            if not self._observed and self._state is None:  # those wrappers pick it themselves
                self.check = self._armed_check  # type: ignore[method-assign]

    def _setup_observers(self, audit: object, telemetry: object) -> None:
        auditor: Auditor | None = None
        if audit is not None:
            from agentauthz.audit.auditor import Auditor

            auditor = audit if isinstance(audit, Auditor) else Auditor(audit)  # type: ignore[arg-type]
        self.auditor: Auditor | None = auditor
        """Where decision records go (``None``: not audited); ``authz.auditor.flush()``."""
        observer: Telemetry | None = None
        if telemetry is not None and telemetry is not False:
            from agentauthz.telemetry import Telemetry

            if telemetry is True:
                observer = Telemetry()
            elif isinstance(telemetry, Telemetry):
                observer = telemetry
            else:
                raise ConfigurationError("telemetry must be True, False, None or an "
                                         f"agentauthz.telemetry.Telemetry, got "
                                         f"{type(telemetry).__name__}")
            observer.bind(self)
        self.telemetry: Telemetry | None = observer
        """OpenTelemetry reporting (``None``: off)."""
        self._backend_name = str(getattr(self.backend, "name", type(self.backend).__name__))
        self._observed = auditor is not None or observer is not None
        self._tool_observer: Callable[[GuardedCall, tuple[str, ...]], None] | None = None
        if self._observed:
            self.check = self._observed_check  # type: ignore[method-assign]
            self.acheck = self._observed_acheck  # type: ignore[method-assign]
            self._tool_observer = self._observe_tool

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
        evaluator = self._require_local("reload_policy").evaluator
        previous = evaluator.policy
        evaluator.set_policy(Policy.load(policy))
        self._register_policy_agents(replace=True)
        self.invalidate()
        if self._state is not None:
            try:
                self._state.publish_policy(evaluator.policy)
            except Exception:  # the other workers did not get it: neither does this one
                self._adopt_policy(previous)
                raise

    def invalidate(self) -> None:
        """Drop every cached decision (policy reloads and revocations call this)."""
        if self.cache is not None:
            self.cache.invalidate()

    def write(self, add: Iterable[RelationshipLike] = (),
              remove: Iterable[RelationshipLike] = ()) -> int:
        """Add and remove relationships in one validated batch; returns how many changed."""
        state = self._state
        if self._local is not None:
            if state is not None:  # validated here, applied in every worker (this one included)
                evaluator = self._local.evaluator
                return state.write(evaluator._tuples(add), evaluator._tuples(remove))
            return self._local.evaluator.write(add, remove)  # the store version moves itself
        writer = getattr(self.backend, "write", None)
        if writer is None:
            raise NotImplementedError(f"the {self.backend.name!r} backend takes no "
                                      "relationship writes through agentauthz")
        changed: int = writer(add, remove)
        self.invalidate()  # a remote backend's version cannot tell the cache
        if state is not None:
            state.invalidate_everywhere()
        return changed

    def add(self, *relationships: RelationshipLike) -> int:
        """Shorthand for ``write(add=relationships)``."""
        return self.write(add=relationships)

    def remove(self, *relationships: RelationshipLike) -> int:
        """Shorthand for ``write(remove=relationships)``."""
        return self.write(remove=relationships)

    def set_attributes(self, entity: EntityLike, attributes: Mapping[str, Any] | None) -> None:
        """Store attributes of an entity (replacing earlier ones), for conditions to read."""
        state = self._state
        if self._local is not None:
            if state is not None:
                key = self._local.evaluator.attributes_key(entity, attributes)
                state.set_attributes([(key, attributes)])
                return
            self._local.evaluator.set_attributes(entity, attributes)
            return
        setter = getattr(self.backend, "set_attributes", None)
        if setter is None:
            raise NotImplementedError(f"the {self.backend.name!r} backend takes no attribute "
                                      "writes through agentauthz")
        setter(entity, attributes)
        self.invalidate()
        if state is not None:
            state.invalidate_everywhere()

    def load_data(self, source: str | os.PathLike[str] | Mapping[str, Any]) -> None:
        """Load a data file's relationships and attributes (validated against the schema)."""
        evaluator = self._require_local("load_data").evaluator
        dataset = load_data(source)
        if self._state is not None:
            self._state.write(evaluator._tuples(dataset.relationships), [])
            self._state.set_attributes([(evaluator.attributes_key(entity, attrs), attrs)
                                        for entity, attrs in dataset.attributes.items()])
            return
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

    def check(self, principal: EntityLike | Delegation, action: str, resource: EntityLike,
              context: Mapping[str, Any] | None = None) -> Decision:
        """Decide. Never raises for a deny: malformed input and failures deny with a reason.

        ``principal`` may be a :class:`~agentauthz.agents.Delegation` (an agent
        acting for a user in a task): then every branch must allow.
        """
        if self._armed:
            return self._armed_check(principal, action, resource, context)
        return self._base_check(principal, action, resource, context)

    def _shared_check(self, principal: EntityLike | Delegation, action: str,
                      resource: EntityLike, context: Mapping[str, Any] | None = None) -> Decision:
        """``check`` with a shared state: deny while it cannot vouch for this process's copy."""
        if self._state_ready():
            inner: Callable[..., Decision] = (self._armed_check if self._armed
                                              else self._fast or self._base_check)
            return inner(principal, action, resource, context)
        return self._unavailable()

    def _unavailable(self) -> Decision:
        assert self._state is not None
        return Decision(False, Outcome.DENY, (self._state.unavailable(),), _UNKNOWN_VERSION)

    def _stale(self) -> bool:
        """Whether a shared state cannot vouch for this process's copy now."""
        return self._state is not None and not self._state_ready()

    def _armed_check(self, principal: EntityLike | Delegation, action: str,
                     resource: EntityLike, context: Mapping[str, Any] | None = None) -> Decision:
        base: Callable[..., Decision] = self._fast or self._base_check
        layer = self._layer
        if principal.__class__ is Delegation:
            return layer.check(base, principal, action, resource, context)
        pkey = principal if principal.__class__ is str else getattr(principal, "key", None)
        if pkey.__class__ is str and pkey[:pkey.find(":")] in layer.registry._types:
            return layer.check_agent(base, pkey, principal, action, resource, context)
        decision = base(principal, action, resource, context)
        if decision.allowed or not layer.breakglass or pkey.__class__ is not str:
            return decision
        return layer.settle(pkey, action, resource, decision)

    def _base_check(self, principal: Any, action: str, resource: Any,
                    context: Mapping[str, Any] | None = None) -> Decision:
        key, hit = self._cached(principal, action, resource, context)
        if hit is not None:
            return hit
        try:
            decision = self.backend.check(principal, action, resource, context)
        except Exception as exc:  # deny on doubt: whatever a backend raises is not an allow
            return self._failed(exc)
        return self._answered(key, decision)

    # ------------------------------------------------- audit and telemetry
    def _observed_check(self, principal: EntityLike | Delegation, action: str,
                        resource: EntityLike, context: Mapping[str, Any] | None = None
                        ) -> Decision:
        """``check`` when decisions are audited: time the decision, then record it."""
        inner: Callable[..., Decision] = (
            self._shared_check if self._state is not None
            else self._armed_check if self._armed else self._fast or self._base_check)
        at = _time_ns()
        start = _perf_ns()
        decision = inner(principal, action, resource, context)
        self._observe(decision, principal, action, resource, context, at, _perf_ns() - start)
        return decision

    async def _observed_acheck(self, principal: EntityLike | Delegation, action: str,
                               resource: EntityLike, context: Mapping[str, Any] | None = None
                               ) -> Decision:
        at = _time_ns()
        start = _perf_ns()
        decision = await Authorizer.acheck(self, principal, action, resource, context)
        self._observe(decision, principal, action, resource, context, at, _perf_ns() - start)
        return decision

    def _observe(self, decision: Decision, principal: Any, action: str, resource: Any,
                 context: Mapping[str, Any] | None, at_ns: int, elapsed_ns: int) -> None:
        try:
            auditor = self.auditor
            if auditor is not None:
                auditor.decided(decision, principal, action, resource, context,
                                self._backend_name, at_ns / 1e9, elapsed_ns / 1e9)
            telemetry = self.telemetry
            if telemetry is not None and (telemetry.live or at_ns >= telemetry._next_look):
                telemetry.decided(decision, principal, action, resource, self._backend_name,
                                  at_ns, elapsed_ns)
        except Exception as exc:  # auditing never changes or fails a decision
            log.error("agentauthz: auditing a decision failed (%s: %s); the decision stands",
                      type(exc).__name__, exc)

    def _observe_tool(self, call: GuardedCall, withheld: tuple[str, ...]) -> None:
        """Record one tool-guard decision (the guard calls this for every decided call)."""
        try:
            auditor = self.auditor
            if auditor is not None:
                auditor.tool_call(call, withheld, self._backend_name)
            telemetry = self.telemetry
            if telemetry is not None:
                elapsed_ns = int((time.perf_counter() - call.started) * 1e9)
                telemetry.tool_call(call, withheld, self._backend_name, _time_ns() - elapsed_ns,
                                    elapsed_ns)
        except Exception as exc:
            log.error("agentauthz: auditing a tool call failed (%s: %s); the decision stands",
                      type(exc).__name__, exc)

    async def acheck(self, principal: EntityLike | Delegation, action: str, resource: EntityLike,
                     context: Mapping[str, Any] | None = None) -> Decision:
        if self._state is not None and not self._state_ready():
            return self._unavailable()
        if not self._armed:
            return await self._base_acheck(principal, action, resource, context)
        layer = self._layer
        if principal.__class__ is Delegation:
            d: Delegation = principal
            rkey, principals, denial = layer.precheck(d, action, resource)
            if denial is not None:
                return denial
            decisions = await asyncio.gather(*(self._base_acheck(p, action, resource, context)
                                               for p in principals))
            return layer.combine(d, action, rkey, decisions)
        pkey, denial = layer.agent_denial(principal)
        if denial is not None:
            return denial
        return layer.settle(pkey, action, resource,
                            await self._base_acheck(principal, action, resource, context))

    async def _base_acheck(self, principal: Any, action: str, resource: Any,
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
        if self.cache is not None or self._armed or self._observed or self._state is not None:
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
        if self.cache is not None or self._armed or self._observed or self._state is not None:
            return [await self.acheck(r.principal, r.action, r.resource, r.context)
                    for r in items]
        try:
            pending = self.backend.acheck_many(items)
            out = await (asyncio.wait_for(pending, self.timeout) if self.timeout else pending)
        except Exception as exc:  # deny on doubt, timeouts included
            return [self._failed(exc)] * len(items)
        return self._checked_batch(items, out)

    def authorize(self, principal: EntityLike | Delegation | None, action: str, resource: EntityLike,
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

    async def aauthorize(self, principal: EntityLike | Delegation | None, action: str, resource: EntityLike,
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

    def acting_as(self, principal: EntityLike, *, on_behalf_of: EntityLike | None = None
                  ) -> enforce.acting_as:
        """Set the current principal (and this authorizer) for a block, task or function.

        With ``on_behalf_of``, ``principal`` is an agent acting for that user:
        the current principal becomes a :class:`~agentauthz.agents.Delegation`,
        allowed only what both may do.
        """
        if on_behalf_of is None:
            return enforce.acting_as(principal, authz=self)
        self._arm()
        return enforce.acting_as(Delegation.of(principal, on_behalf_of),
                                 authz=self)

    # ---------------------------------------------------------------- agents
    def task(self, scope: Iterable[tuple[str, str] | str] | Scope, *, purpose: str,
             ttl: float | None = None, agent: EntityLike | None = None,
             on_behalf_of: EntityLike | None = None) -> Task:
        """Issue a task credential for the current agent (and its user); use it with ``with``.

        The agent and user come from the enclosing ``acting_as(agent,
        on_behalf_of=user)`` unless given. Inside another task, the new task
        is derived from it by attenuation: it can only narrow (and ``ttl``
        defaults to the rest of the outer task's life). ``ttl`` defaults to
        300 seconds otherwise. The task is revoked when its ``with`` block exits.
        """
        current = enforce.current_principal()
        if isinstance(current, Delegation) and agent is None and on_behalf_of is None:
            if current.task is not None:
                parent = Task(self, current.task, revoke_on_exit=False)
                return parent.attenuate(scope=scope, ttl=ttl, purpose=purpose)
            agent_key, user_key = current.agent, current.on_behalf_of
        else:
            if agent is None:
                if current is None:
                    raise InvalidInputError(
                        "a task needs an agent: open it inside `with authz.acting_as(agent, "
                        "on_behalf_of=user)` or pass agent=...")
                agent = current  # type: ignore[assignment]
            d = Delegation.of(agent, on_behalf_of)  # type: ignore[arg-type]
            agent_key, user_key = d.agent, d.on_behalf_of
        reason = self._layer.gate((agent_key,))
        if reason is not None:
            raise self.forbidden_error(Decision(False, Outcome.DENY, (reason,), ""))
        self._arm()
        credential = self.tasks.issue(agent=agent_key, on_behalf_of=user_key, scope=scope,
                                      ttl=300.0 if ttl is None else ttl, purpose=purpose)
        return Task(self, credential, revoke_on_exit=True)

    def join_task(self, token: str, *, agent: EntityLike | None = None) -> Task:
        """Take up a task credential issued elsewhere (another process, a parent agent).

        The token is verified — signature chain, expiry, revocation — and must
        have been issued to ``agent`` (default: the current agent, if any).
        Raises :class:`~agentauthz.errors.CredentialError` otherwise. Leaving
        the block does not revoke the task: its issuer owns it.
        """
        if agent is None:
            current = enforce.current_principal()
            presenter = current.agent if isinstance(current, Delegation) else (
                None if current is None else Delegation.of(current).agent)
        else:
            presenter = Delegation.of(agent).agent
        credential = self.tasks.verify(token, agent=presenter)
        self._arm()
        return Task(self, credential, revoke_on_exit=False)

    def revoke(self, *, agent: EntityLike | None = None, task: str | None = None,
               credential: Any = None, break_glass: str | None = None,
               reason: str = "") -> None:
        """Revoke one thing, effective on the next decision (never served from cache).

        ``agent``: every decision and credential of that agent; ``task``: a
        task id and every credential derived from it; ``credential``: one
        credential (or its id) and those derived from it; ``break_glass``: a
        break-glass grant id.
        """
        given = [x for x in (agent, task, credential, break_glass) if x is not None]
        if len(given) != 1:
            raise InvalidInputError("revoke exactly one of agent=, task=, credential=, "
                                    "break_glass=")
        if agent is not None:
            self.revocations.revoke("agent", Delegation.of(agent).agent, reason=reason)
            self._arm()
        elif task is not None:
            self.tasks.revoke_task(task, reason=reason)
        elif credential is not None:
            self.tasks.revoke(credential, reason=reason)
        elif break_glass is not None and not self._breakglass.revoke(break_glass):
            raise InvalidInputError(f"no live break-glass grant {break_glass!r}")
        self.invalidate()

    def break_glass(self, principal: EntityLike, action: str, resource: EntityLike, *,
                    reason: str, approver: EntityLike, ttl: float) -> BreakGlassGrant:
        """Grant one emergency (principal, action, resource) for ``ttl`` seconds.

        Every field is required; the approver cannot be the principal. The
        grant is logged at WARNING, cited in the reasons of every decision it
        turns into an allow, and expires by itself.
        """
        self._arm()
        return self._breakglass.grant(_entity_key(principal), action, _entity_key(resource),
                                      reason=reason, approver=_entity_key(approver), ttl=ttl)

    @property
    def guard(self) -> ToolGuard:
        """This authorizer's default tool guard (declarations from the policy's ``tools:``)."""
        if self._guard is None:
            self._guard = self.tool_guard()
        return self._guard

    def tool_guard(self, **options: Any) -> ToolGuard:
        """A new :class:`~agentauthz.agents.guard.ToolGuard` (options as for its constructor)."""
        from agentauthz.agents.guard import ToolGuard

        self._arm()
        return ToolGuard(self, **options)

    def break_glass_grants(self) -> list[BreakGlassGrant]:
        """Every break-glass grant in force now."""
        return self._breakglass.active()

    def governance_report(self) -> dict[str, Any]:
        """The registry as governance evidence, with each agent's grants and unused ones.

        A grant is a relationship naming the agent as subject (local
        evaluator). It counts as used when a resource the agent was allowed
        to reach was granted through it (through its object, as
        :meth:`explain` shows the path). Over-privilege shows as
        ``grants_never_used``.
        """
        return self.agents.export(grants=self._grant_evidence)

    def _grant_evidence(self, record: Any, usage: Any) -> dict[str, Any]:
        if self._local is None:
            return {"grants": None, "grants_never_used": None}
        store = self._local.evaluator.store
        grants = sorted(str(r) for r in store.relationships(subject=record.id))
        used_objects: set[str] = set()
        for action, resource in sorted(usage.reached)[:2000]:
            used_objects.add(resource)
            _granting_objects(self.explain(record.id, action, resource), used_objects)
        unused = [g for g in grants if Relationship.parse(g).resource not in used_objects]
        return {"grants": grants, "grants_never_used": unused,
                "usage_truncated": bool(usage.truncated)}

    # ------------------------------------------------------------- queries
    def _list_plan(self, principal: Any) -> tuple[tuple[Any, ...], Delegation | None] | None:
        """Whom to ask for a list, and the delegation whose rules combine the answers.

        ``None``: list nothing (a stale shared state, a barred agent, an
        unusable delegation). A combining delegation of ``None`` means the one
        answer stands as it is; while break-glass grants exist, a plain
        principal is combined as a one-branch delegation so that its grants
        are added.
        """
        if self._stale():  # a shared state that cannot vouch for this copy: list nothing
            return None
        layer = self._layer
        if principal.__class__ is Delegation:
            d: Delegation = principal
            return (d.principals, d) if layer.usable(d) else None
        if self._armed:
            pkey, denial = layer.agent_denial(principal)
            if denial is not None:
                return None
            if pkey is not None and layer.breakglass:
                try:
                    return (principal,), Delegation(pkey)
                except InvalidInputError:  # a malformed principal: the backend lists nothing
                    pass
        return (principal,), None

    def _listed(self, ask: Callable[..., object], *args: Any) -> frozenset[str]:
        """One backend list answer; a failure lists nothing (or raises, if asked)."""
        try:
            return _names(ask(*args))
        except Exception as exc:
            self._failed(exc)
            return frozenset()

    async def _alisted(self, ask: Callable[..., Any], *args: Any) -> frozenset[str]:
        try:
            pending = ask(*args)
            return _names(await (asyncio.wait_for(pending, self.timeout) if self.timeout
                                 else pending))
        except Exception as exc:
            self._failed(exc)
            return frozenset()

    def list_resources(self, principal: EntityLike | Delegation, action: str,
                       resource_type: str, context: Mapping[str, Any] | None = None
                       ) -> frozenset[str]:
        """Every known entity of ``resource_type`` that ``check`` would allow.

        For a delegation: exactly what the agent and the user may both reach,
        within the task's scope — the pre-retrieval filter of an agent's
        search. A failing backend lists nothing (or raises, with
        ``on_backend_error="raise"``): never a partial list.
        """
        plan = self._list_plan(principal)
        if plan is None:
            return frozenset()
        asked, d = plan
        found = (self._listed(self.backend.list_resources, p, action, resource_type, context)
                 for p in asked)  # lazy: an empty intersection stops asking
        if d is None:
            return next(found)
        return self._layer.combine_resources(d, action, resource_type, found)

    async def alist_resources(self, principal: EntityLike | Delegation, action: str,
                              resource_type: str, context: Mapping[str, Any] | None = None
                              ) -> frozenset[str]:
        plan = self._list_plan(principal)
        if plan is None:
            return frozenset()
        asked, d = plan
        found = await asyncio.gather(*(self._alisted(self.backend.alist_resources, p, action,
                                                     resource_type, context) for p in asked))
        if d is None:
            return found[0]
        return self._layer.combine_resources(d, action, resource_type, found)

    def list_actions(self, principal: EntityLike | Delegation, resource: EntityLike,
                     context: Mapping[str, Any] | None = None) -> frozenset[str]:
        """Every action ``check`` would allow this principal (or delegation) on ``resource``."""
        plan = self._list_plan(principal)
        if plan is None:
            return frozenset()
        asked, d = plan
        found = [self._listed(self.backend.list_actions, p, resource, context) for p in asked]
        return found[0] if d is None else self._layer.combine_actions(d, resource, found)

    async def alist_actions(self, principal: EntityLike | Delegation, resource: EntityLike,
                            context: Mapping[str, Any] | None = None) -> frozenset[str]:
        plan = self._list_plan(principal)
        if plan is None:
            return frozenset()
        asked, d = plan
        found = await asyncio.gather(*(self._alisted(self.backend.alist_actions, p, resource,
                                                     context) for p in asked))
        return found[0] if d is None else self._layer.combine_actions(d, resource, found)

    def authorized_fields(self, principal: EntityLike | Delegation, action: str,
                          resource: EntityLike, context: Mapping[str, Any] | None = None
                          ) -> frozenset[str]:
        """The declared fields of ``resource`` this principal (or every branch) may ``action``."""
        evaluator = self._require_local("authorized_fields").evaluator
        if not self.check(principal, action, resource, context).allowed:
            return frozenset()
        principals = (principal.principals if isinstance(principal, Delegation)
                      else (principal,))
        result: frozenset[str] | None = None
        for p in principals:
            fields = evaluator.authorized_fields(p, action, resource, context)
            result = fields if result is None else result & fields
        return result or frozenset()

    async def aauthorized_fields(self, principal: EntityLike | Delegation, action: str,
                                 resource: EntityLike, context: Mapping[str, Any] | None = None
                                 ) -> frozenset[str]:
        return self.authorized_fields(principal, action, resource, context)

    def explain(self, principal: EntityLike | Delegation, action: str, resource: EntityLike,
                context: Mapping[str, Any] | None = None) -> Explanation:
        """The full decision tree; ``str()`` of it is readable (local evaluator only).

        For a delegation, every branch is shown: registry, task credential,
        task scope, each agent's grants and the user's.
        """
        evaluator = self._require_local("explain").evaluator
        if isinstance(principal, Delegation):
            return self._layer.explain(
                lambda p: explain(evaluator, p, action, resource, context), principal, action,
                resource, self.check(principal, action, resource, context))
        return explain(evaluator, principal, action, resource, context)

    async def awrite(self, add: Iterable[RelationshipLike] = (),
                     remove: Iterable[RelationshipLike] = ()) -> int:
        return self.write(add, remove)


def _entity_key(value: object) -> str:
    if isinstance(value, Entity):
        return value.key
    if isinstance(value, str):
        return value
    raise InvalidInputError(f"expected an Entity or a 'type:id' string, got {type(value).__name__}")


def _granting_objects(node: Explanation, out: set[str]) -> None:
    """The objects on granting paths of an explanation (``obj#relation`` labels)."""
    if node.granted:
        label = node.label.rsplit(" ", 1)[-1]
        if "#" in label and ":" in label:
            out.add(label.partition("#")[0])
        for child in node.children:
            _granting_objects(child, out)


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
