"""The tool guard: every call an agent makes is a decision before it runs.

``guard_tools([...], authz=authz)`` (or ``@guarded_tool(...)``) wraps plain
sync and async callables. Before each call the guard builds the request from
the current principal — an agent, a :class:`~agentauthz.agents.Delegation`
(agent on behalf of a user, in a task) or a user — the tool's declaration and
the call's arguments, and decides, cheapest first:

1. **declared?** an agent may only call declared tools (undeclared: denied);
2. **hard blocks** (agents only): privilege changes, token minting and
   credential changes — declared, or detected from the tool's name,
   description and arguments by :mod:`~agentauthz.agents.hardblock`, and
   self-escalation by arguments — are denied whatever the policy says; only a
   live break-glass grant for ``call`` on ``tool:<name>`` opens one;
3. **approved tools**: the agent's registry entry must list the tool;
4. **argument constraints**: allowed values, ranges, patterns, URL hosts;
5. **the policy**: ``authz.check(principal, action, resource)``, the
   resource derived from the arguments;
6. **chain rules** over the task's ledger (see :mod:`~agentauthz.agents.chains`);
7. **step-up**: an ``approval_required`` outcome goes to the approval handler,
   or raises :class:`~agentauthz.errors.ApprovalRequired` with a request id
   (see :mod:`~agentauthz.agents.approvals`).

On allow the call runs, the step is recorded in the ledger (decided and
recorded in one atomic step of the ledger store, so concurrent calls — in
one process, or in many sharing a Redis store — cannot overspend a budget),
and the result is **filtered** before it reaches the model:
records the principal may not read are dropped and fields it may not read
are removed or masked. On deny the tool is not called: the guard raises
:class:`ToolDenied`, or — with ``on_deny="message"`` — returns
``"DENIED: <reason>"`` for the model to read.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import inspect
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal, ParamSpec, TypeVar, cast

from pydantic import ValidationError

from agentauthz import enforce
from agentauthz.agents.approvals import ApprovalHandler, ApprovalRequest, fingerprint
from agentauthz.agents.chains import ChainRule, Decide, LedgerStore, Step, Summary
from agentauthz.agents.delegation import Delegation
from agentauthz.agents.hardblock import classify, self_escalation
from agentauthz.agents.tools import Effect, ResultSpec, ToolSpec, fill_template
from agentauthz.errors import (
    AgentAuthzError,
    ApprovalRequired,
    ConfigurationError,
    Forbidden,
    InvalidInputError,
    StateStoreUnavailable,
)
from agentauthz.model import Decision, Entity, Outcome, Reason, parse_entity_key
from agentauthz.policy.definition import ChainRuleDefinition

if TYPE_CHECKING:
    from agentauthz.authorizer import Authorizer

__all__ = ["GuardedCall", "ToolCallRecord", "ToolDenied", "ToolGuard", "guard_tools",
           "guarded_tool"]

log = logging.getLogger("agentauthz.guard")

P = ParamSpec("P")
R = TypeVar("R")
_DENY: Final = Outcome.DENY
_ALLOW: Final = Outcome.ALLOW
_APPROVAL: Final = Outcome.APPROVAL_REQUIRED


class ToolDenied(Forbidden):
    """A tool call the guard refused; the tool was not called. ``str()`` is for the model."""

    def __init__(self, decision: Decision, tool: str) -> None:
        self.tool = tool
        super().__init__(decision, denial_message(decision))


def denial_message(decision: Decision) -> str:
    """What a model reads when its call is refused: never mistakable for a result."""
    first = decision.reasons[0] if decision.reasons else Reason("denied", "not allowed")
    return f"DENIED: {first.message}"


@dataclass(frozen=True, slots=True)
class ToolCallRecord:
    """What the guard decided about one call, and what it withheld from the result."""

    tool: str
    principal: str
    action: str
    resource: str
    decision: Decision
    task: str | None
    withheld: tuple[str, ...] = ()
    latency_s: float = 0.0


@dataclass(slots=True)
class GuardedCall:
    """A call that has been decided; :meth:`ToolGuard.finish` records its result."""

    tool: str
    arguments: Mapping[str, Any]
    spec: ToolSpec | None
    principal: Any
    principal_key: str
    decision: Decision
    action: str = "call"
    resource: str = ""
    task: str | None = None
    started: float = field(default_factory=time.perf_counter)
    step: Step | None = None

    @classmethod
    def denied(cls, tool: str, kind: str, message: str) -> GuardedCall:
        """A call refused before anything about it could be worked out."""
        return cls(str(tool)[:128], {}, None, None, "?", _deny(kind, message))

    @property
    def allowed(self) -> bool:
        return self.decision.allowed

    @property
    def message(self) -> str:
        return denial_message(self.decision)


def _deny(kind: str, message: str, version: str = "") -> Decision:
    return Decision(False, _DENY, (Reason(kind, message),), version)


def _failed(tool: object, exc: Exception) -> GuardedCall:
    """The denial of a call the guard could not decide (or record)."""
    if isinstance(exc, StateStoreUnavailable):
        log.warning("agentauthz guard: %r denied: %s", str(tool)[:64], exc)
        return GuardedCall.denied(str(tool), "state_store_unavailable", str(exc)[:300])
    log.warning("agentauthz guard: deciding %r failed (%s: %s); denying",
                str(tool)[:64], type(exc).__name__, exc)
    return GuardedCall.denied(str(tool), "guard_error", "the guard could not decide "
                              f"({type(exc).__name__})")


def _unlabelled(call: GuardedCall, exc: Exception, withheld: list[str]) -> Any:
    """Withhold a result whose labels could not be recorded: later rules must see them."""
    log.warning("agentauthz guard: recording the labels of %s's result failed (%s: %s); "
                "withholding it", call.tool, type(exc).__name__, exc)
    why = ("state_store_unavailable" if isinstance(exc, StateStoreUnavailable)
           else type(exc).__name__)
    withheld.append(f"the whole result: its data labels could not be recorded ({why})")
    return None


def _ledger_key(call: GuardedCall) -> str:
    return f"task:{call.task}" if call.task is not None else f"principal:{call.principal_key}"


def _expiry(principal: object) -> float | None:
    """When a call's ledger may be forgotten: when its task credential expires."""
    if isinstance(principal, Delegation) and principal.task is not None:
        return principal.task.expires_at
    return None


@dataclass(slots=True)
class _Plan:
    """What is left to decide once the policy allowed: chain rules, then step-up.

    Called with the task's summary, it runs the chain rules and returns the
    step to record (a :data:`~agentauthz.agents.chains.Decide`). A shared
    ledger store may call it again (another worker recorded a step
    meanwhile): each call starts from the policy's answer.
    """

    call: GuardedCall
    chains: tuple[ChainRule, ...]
    key: str
    expires_at: float | None
    effect: Effect
    attributes: Mapping[str, Any]
    labels: frozenset[str]
    version: str
    policy_reasons: tuple[Reason, ...]
    policy_approval: bool
    agents: tuple[str, ...]
    reasons: tuple[Reason, ...] = ()
    needs_approval: bool = False

    def __call__(self, summary: Summary) -> Step | None:
        call = self.call
        name = call.tool
        effect = self.effect
        attributes = self.attributes
        reasons = self.policy_reasons
        needs_approval = self.policy_approval
        for rule in self.chains:
            why = rule.fires(summary, name, effect, attributes)
            if why is None:
                continue
            if rule.decision == "deny":
                call.decision = Decision(False, _DENY, (rule.reason(why),), self.version)
                self.needs_approval = False
                return None
            needs_approval = True
            reasons = (rule.reason(why), *reasons)
        self.reasons = reasons
        self.needs_approval = needs_approval
        if needs_approval:
            return None
        call.decision = Decision(True, _ALLOW, reasons, self.version)
        return Step(name, call.action, call.resource, effect, self.labels, dict(attributes),
                    True, time.time(), summary.count)


def _fingerprint(call: GuardedCall) -> str:
    return fingerprint(call.principal_key, call.task, call.tool, call.arguments)


class ToolGuard:
    """Decides every tool call of one authorizer (see the module docstring).

    ``tools`` adds declarations to those of the policy's ``tools:`` section.
    ``on_deny``: ``"raise"`` (:class:`ToolDenied`) or ``"message"``.
    ``approval_handler``: called with an :class:`ApprovalRequest`, sync or
    async, returns whether a person approved; ``approval_timeout`` seconds
    later, no answer is a denial. ``audit``: called with a
    :class:`ToolCallRecord` for every decided call. ``chains``: chain rules
    (:class:`~agentauthz.agents.chains.ChainRule`, or mappings shaped as in the
    policy's ``chains:``) used instead of the policy's — a remote backend has
    no policy file here.
    """

    def __init__(self, authz: Authorizer, tools: Iterable[ToolSpec] = (), *,
                 on_deny: Literal["raise", "message"] = "raise",
                 approval_handler: ApprovalHandler | None = None,
                 approval_timeout: float = 300.0,
                 audit: Callable[[ToolCallRecord], None] | None = None,
                 chains: Iterable[ChainRule | Mapping[str, Any]] | None = None) -> None:
        if on_deny not in ("raise", "message"):
            raise ConfigurationError("on_deny must be 'raise' or 'message'")
        if approval_handler is not None and not callable(approval_handler):
            raise ConfigurationError("approval_handler must be callable")
        if not approval_timeout > 0:
            raise ConfigurationError("approval_timeout must be a positive number of seconds")
        self.authz = authz
        self.on_deny = on_deny
        self.approval_handler = approval_handler
        self.approval_timeout = approval_timeout
        self.audit = audit
        self.ledgers: LedgerStore = authz.ledgers  # shared: every guard sees every step
        self._specs: dict[str, ToolSpec] = {}
        for spec in tools:
            self.declare(spec)
        self._chains: tuple[ChainRule, ...] | None = None
        if chains is not None:
            try:
                self._chains = tuple(
                    c if isinstance(c, ChainRule)
                    else ChainRule.from_definition(ChainRuleDefinition.model_validate(dict(c)))
                    for c in chains)
            except (InvalidInputError, ValidationError) as exc:
                raise ConfigurationError(f"chains: {exc}") from None

    # -------------------------------------------------------------- tools
    def declare(self, spec: ToolSpec) -> ToolSpec:
        """Add (or replace) a tool's declaration."""
        if not isinstance(spec, ToolSpec):
            raise ConfigurationError(f"declare needs a ToolSpec, got {type(spec).__name__}")
        self._specs[spec.name] = spec
        return spec

    def spec(self, name: str) -> ToolSpec | None:
        """A tool's declaration: declared on this guard, else in the policy's ``tools:``."""
        spec = self._specs.get(name)
        if spec is None:
            evaluator = getattr(self.authz.backend, "evaluator", None)
            if evaluator is not None:
                spec = evaluator.policy.tools.get(name)
        return spec

    @property
    def chains(self) -> tuple[ChainRule, ...]:
        """The chain rules in force: those given to the guard, else the policy's ``chains:``.

        A remote backend has no policy file here: give its guards ``chains=``.
        """
        if self._chains is not None:
            return self._chains
        evaluator = getattr(self.authz.backend, "evaluator", None)
        return evaluator.policy.chains if evaluator is not None else ()

    # ------------------------------------------------------------ deciding
    def begin(self, tool: str, arguments: Mapping[str, Any] | None, *,
              description: str | None = None) -> GuardedCall:
        """Decide one call (approval handlers called synchronously). Never raises."""
        call, request = self._decide(tool, arguments, description)
        if request is not None:
            call = self._step_up(call, request, self._ask_sync(request))
        return self._recorded(call)

    async def abegin(self, tool: str, arguments: Mapping[str, Any] | None, *,
                     description: str | None = None) -> GuardedCall:
        """:meth:`begin` for asyncio: an async approval handler is awaited."""
        call, request = await self._adecide(tool, arguments, description)
        if request is not None:
            call = self._step_up(call, request, await self._ask_async(request))
        return await self._arecorded(call)

    def _decide(self, tool: object, arguments: Mapping[str, Any] | None,
                description: str | None) -> tuple[GuardedCall, ApprovalRequest | None]:
        try:
            return self._decide_unsafe(tool, arguments, description)
        except Exception as exc:  # deny on doubt: a guard that fails does not let calls through
            return _failed(tool, exc), None

    async def _adecide(self, tool: object, arguments: Mapping[str, Any] | None,
                       description: str | None) -> tuple[GuardedCall, ApprovalRequest | None]:
        try:
            return await self._adecide_unsafe(tool, arguments, description)
        except Exception as exc:  # deny on doubt, as in _decide
            return _failed(tool, exc), None

    def _decide_unsafe(self, tool: object, arguments: Mapping[str, Any] | None,
                       description: str | None) -> tuple[GuardedCall, ApprovalRequest | None]:
        call, plan = self._prepare(tool, arguments, description)
        if plan is None:
            return call, None
        # decide and record in one step: concurrent calls, here or in other workers, see each other
        call.step = self.ledgers.record(plan.key, plan, expires_at=plan.expires_at)
        if not plan.needs_approval:
            return call, None
        approvals = self.authz.approvals
        fp = _fingerprint(call)
        approved = approvals.consume(fp)
        if approved is not None:
            return self._approved(call, plan, approved), None
        request = approvals.request(**self._request_fields(call, plan, fp))
        return self._awaiting(call, plan, request), request

    async def _adecide_unsafe(self, tool: object, arguments: Mapping[str, Any] | None,
                              description: str | None
                              ) -> tuple[GuardedCall, ApprovalRequest | None]:
        call, plan = self._prepare(tool, arguments, description)
        if plan is None:
            return call, None
        call.step = await self.ledgers.arecord(plan.key, plan, expires_at=plan.expires_at)
        if not plan.needs_approval:
            return call, None
        approvals = self.authz.approvals
        fp = _fingerprint(call)
        approved = await approvals.aconsume(fp)
        if approved is not None:
            return self._approved(call, plan, approved), None
        request = await approvals.arequest(**self._request_fields(call, plan, fp))
        return self._awaiting(call, plan, request), request

    def _prepare(self, tool: object, arguments: Mapping[str, Any] | None,
                 description: str | None) -> tuple[GuardedCall, _Plan | None]:
        """Every check before the ledger; the plan for the chain rules, or ``None`` (decided)."""
        name = tool if isinstance(tool, str) else str(tool)
        args: Mapping[str, Any] = arguments if isinstance(arguments, Mapping) else {}
        principal = enforce.current_principal()
        spec = self.spec(name)
        call = GuardedCall(name[:128], args, spec, principal, "", _deny("", ""))
        if not isinstance(arguments, Mapping) and arguments is not None:
            call.decision = _deny("bad_arguments", "tool arguments must be a mapping")
            return call, None
        if principal is None:
            call.decision = _deny("unauthenticated", "no principal is acting: call tools inside "
                                  "`with authz.acting_as(...)` or a task")
            return call, None
        d = principal if isinstance(principal, Delegation) else None
        pkey = principal.key if isinstance(principal, Entity | Delegation) else str(principal)
        call.principal_key = pkey
        agent = d.agent if d is not None else (pkey if self.authz.agents.is_agent(pkey)
                                                 else None)
        call.task = d.task.task_id if d is not None and d.task is not None else None
        call.action = spec.action if spec is not None else "call"
        bad_arguments: InvalidInputError | None = None
        try:
            call.resource = spec.resource_for(args) if spec is not None else f"tool:{name}"
        except InvalidInputError as exc:
            bad_arguments = exc
            call.resource = f"tool:{name}"
        if agent is not None:
            denial = self._agent_checks(call, agent, description)
            if denial is not None:
                call.decision = denial
                return call, None
        if bad_arguments is not None:
            call.decision = _deny("bad_arguments", f"tool {name!r}: {bad_arguments}")
            return call, None
        decision = self.authz.check(principal, call.action, call.resource)
        if not decision.allowed and decision.outcome is not _APPROVAL:
            call.decision = decision
            return call, None
        effect = spec.effect if spec is not None else Effect.PRIVILEGED
        attributes = self._attributes(call.resource)
        return call, _Plan(
            call, self.chains, _ledger_key(call), _expiry(principal), effect, attributes,
            self._labels(spec, attributes), decision.policy_version,
            decision.reasons, decision.outcome is _APPROVAL,
            d.agents if d is not None else ((agent,) if agent is not None else ()))

    def _approved(self, call: GuardedCall, plan: _Plan, approved: Reason) -> GuardedCall:
        call.decision = Decision(True, _ALLOW, (approved, *plan.reasons), plan.version)
        return call

    @staticmethod
    def _request_fields(call: GuardedCall, plan: _Plan, fp: str) -> dict[str, Any]:
        return {"principal": call.principal_key, "tool": call.tool, "action": call.action,
                "resource": call.resource, "arguments": call.arguments,
                "reasons": plan.reasons, "fingerprint": fp, "agents": plan.agents}

    @staticmethod
    def _awaiting(call: GuardedCall, plan: _Plan, request: ApprovalRequest) -> GuardedCall:
        call.decision = Decision(False, _APPROVAL, (
            Reason("approval_required", f"a person must approve request {request.id} first: "
                   f"{plan.reasons[0].message}", request.id), *plan.reasons), plan.version)
        return call

    def _agent_checks(self, call: GuardedCall, agent: str, description: str | None
                      ) -> Decision | None:
        spec = call.spec
        name = call.tool
        args = call.arguments
        if spec is None and not self._opened(agent, name):
            found = classify(name, description, args)
            if found is not None:
                return _deny(f"hard_block:{found.category.value}",
                             f"tool {name!r} is blocked for agents ({found.category.value}: "
                             f"{found.evidence})")
            return _deny("undeclared_tool", f"tool {name!r} is not declared; agents may only "
                         "call declared tools")
        record = self.authz.agents.get(agent)
        identities = {agent, agent.partition(":")[2]}
        if record is not None:
            identities |= {record.owner, record.owner.partition(":")[2]}
        if spec is not None and spec.hard_block is not None and not self._opened(agent, name):
            return _deny(f"hard_block:{spec.hard_block.value}",
                         f"tool {name!r} is declared {spec.hard_block.value}: blocked for agents "
                         "whatever the policy permits")
        # a tool declared to only read cannot raise anyone: its declaration is trusted
        escalation = None if spec is not None and spec.effect is Effect.READ else \
            self_escalation(args, identities, name=name,
                            description=description or (spec.description if spec else None))
        if escalation is not None and not self._opened(agent, name):
            return _deny("hard_block:self_escalation", f"tool {name!r} would change the "
                         f"privileges of the agent or its owner ({escalation.evidence})")
        if record is not None and name not in record.tools:
            return _deny("tool_not_approved", f"tool {name!r} is not among {agent}'s approved "
                         "tools")
        if spec is not None:
            problem = spec.argument_problem(args)
            if problem is not None:
                return _deny("argument_constraint", f"tool {name!r}: {problem}")
        return None

    def _opened(self, agent: str, tool: str) -> bool:
        """Whether a live break-glass grant opens this hard-blocked tool for this agent."""
        return self.authz._breakglass.match(agent, "call", f"tool:{tool}") is not None

    def _attributes(self, resource: str) -> Mapping[str, Any]:
        local = getattr(self.authz.backend, "evaluator", None)
        if local is None:
            return {}
        return local.store.attributes.get(resource) or {}

    # ----------------------------------------------------------- approval
    def _ask_sync(self, request: ApprovalRequest) -> bool | str | None:
        handler = self.approval_handler
        if handler is None:
            return None
        context = contextvars.copy_context()  # the handler sees who is acting
        future = _approval_pool().submit(context.run, _run_handler, handler, request)
        try:
            return future.result(timeout=self.approval_timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            log.warning("approval %s timed out after %gs: denied", request.id,
                        self.approval_timeout)
            return False
        except Exception as exc:
            log.warning("approval handler failed for %s (%s): denied", request.id, exc)
            return False

    async def _ask_async(self, request: ApprovalRequest) -> bool | str | None:
        handler = self.approval_handler
        if handler is None:
            return None
        try:
            answer = handler(request)
            if inspect.isawaitable(answer):
                answer = await asyncio.wait_for(answer, self.approval_timeout)
            return _answer(answer)
        except TimeoutError:
            log.warning("approval %s timed out after %gs: denied", request.id,
                        self.approval_timeout)
            return False
        except Exception as exc:
            log.warning("approval handler failed for %s (%s): denied", request.id, exc)
            return False

    def _step_up(self, call: GuardedCall, request: ApprovalRequest, answer: bool | str | None
                 ) -> GuardedCall:
        """Apply a handler's answer: ``True`` or an approver's key approves, anything else denies."""
        version = call.decision.policy_version
        if answer is None:
            return call  # no handler: approval_required stands, with its request id
        if answer is False:
            self.authz.approvals.drop(request.id)
            call.decision = Decision(False, _DENY, (Reason(
                "approval_denied", f"approval request {request.id} was denied or timed out",
                request.id), *call.decision.reasons[1:]), version)
            return call
        approver = answer if isinstance(answer, str) else "approval-handler"
        if approver in request.agents:
            self.authz.approvals.drop(request.id)
            call.decision = Decision(False, _DENY, (Reason(
                "approval_denied", f"approval request {request.id} was approved by the agent "
                "itself", request.id), *call.decision.reasons[1:]), version)
            return call
        granted = self.authz.approvals.grant_now(request, approver)
        call.decision = Decision(True, _ALLOW, (granted, *call.decision.reasons[1:]), version)
        return call

    # ---------------------------------------------------------- recording
    def _recorded(self, call: GuardedCall) -> GuardedCall:
        """Record an approved call in its ledger, re-checking deny chain rules atomically."""
        if call.decision.allowed and call.step is None:
            try:
                call.step = self.ledgers.record(_ledger_key(call), self._recheck(call),
                                                expires_at=_expiry(call.principal))
            except Exception as exc:  # deny on doubt: an unrecorded step would escape the rules
                call.decision = _failed(call.tool, exc).decision
        return self._settled(call)

    async def _arecorded(self, call: GuardedCall) -> GuardedCall:
        if call.decision.allowed and call.step is None:
            try:
                call.step = await self.ledgers.arecord(_ledger_key(call), self._recheck(call),
                                                       expires_at=_expiry(call.principal))
            except Exception as exc:  # deny on doubt, as in _recorded
                call.decision = _failed(call.tool, exc).decision
        return self._settled(call)

    def _recheck(self, call: GuardedCall) -> Decide:
        """The deny chain rules again, for a call a person approved meanwhile."""
        chains = self.chains
        approved = call.decision
        spec = call.spec
        effect = spec.effect if spec is not None else Effect.PRIVILEGED
        attributes = self._attributes(call.resource)
        labels = self._labels(spec, attributes)

        def decide(summary: Summary) -> Step | None:
            call.decision = approved
            for rule in chains:
                if rule.decision != "deny":
                    continue
                why = rule.fires(summary, call.tool, effect, attributes)
                if why is not None:
                    call.decision = Decision(False, _DENY, (rule.reason(why),),
                                             approved.policy_version)
                    return None
            return Step(call.tool, call.action, call.resource, effect, labels, dict(attributes),
                        True, time.time(), summary.count)

        return decide

    def _settled(self, call: GuardedCall) -> GuardedCall:
        if call.decision.allowed:
            agent = self._agent_of(call)
            if agent is not None:
                self.authz.agents.record_tool(agent, call.tool)
        else:
            self._audit(call, ())
        return call

    @staticmethod
    def _labels(spec: ToolSpec | None, attributes: Mapping[str, Any]) -> frozenset[str]:
        if spec is None:
            return frozenset()
        labels = set(spec.labels)
        if spec.label_attribute is not None:
            value = attributes.get(spec.label_attribute)
            if isinstance(value, str):
                labels.add(value)
        return frozenset(labels)

    def _agent_of(self, call: GuardedCall) -> str | None:
        p = call.principal
        if isinstance(p, Delegation):
            return p.agent
        return call.principal_key if self.authz.agents.is_agent(call.principal_key) else None

    def _audit(self, call: GuardedCall, withheld: tuple[str, ...]) -> None:
        observe = getattr(self.authz, "_tool_observer", None)
        if observe is not None:  # the authorizer's audit sinks and telemetry; never raises
            observe(call, withheld)
        if self.audit is None:
            return
        try:
            self.audit(ToolCallRecord(call.tool, call.principal_key, call.action, call.resource,
                                      call.decision, call.task, withheld,
                                      time.perf_counter() - call.started))
        except Exception as exc:  # an audit sink must not turn an allow into a crash
            log.error("agentauthz guard: audit sink failed: %s", exc)

    def _filtered(self, call: GuardedCall, result: Any
                  ) -> tuple[Any, list[str], frozenset[str]]:
        """The result as the principal may see it, what was withheld, and new labels read."""
        withheld: list[str] = []
        spec = call.spec
        if spec is None or spec.result is None:
            return result, withheld, frozenset()
        read: set[str] = set()
        result = self._filter(call, spec.result, result, withheld, read)
        labels = self._new_labels(call, read) if call.step is not None else frozenset()
        return result, withheld, labels

    def finish(self, call: GuardedCall, result: Any) -> Any:
        """Filter an allowed call's result for the principal, and audit the call."""
        result, withheld, labels = self._filtered(call, result)
        if labels and call.step is not None:
            try:
                call.step = self.ledgers.add_labels(_ledger_key(call), call.step, labels)
            except Exception as exc:  # deny on doubt: unrecorded labels would escape the rules
                result = _unlabelled(call, exc, withheld)
        self._audit(call, tuple(withheld))
        return result

    async def afinish(self, call: GuardedCall, result: Any) -> Any:
        """:meth:`finish` for asyncio (a shared ledger store is written without blocking)."""
        result, withheld, labels = self._filtered(call, result)
        if labels and call.step is not None:
            try:
                call.step = await self.ledgers.aadd_labels(_ledger_key(call), call.step, labels)
            except Exception as exc:  # deny on doubt, as in finish
                result = _unlabelled(call, exc, withheld)
        self._audit(call, tuple(withheld))
        return result

    def abort(self, call: GuardedCall, exc: BaseException | None = None) -> None:
        """Audit an allowed call whose tool failed: no result reached the model."""
        why = "the tool failed" if exc is None else f"the tool raised {type(exc).__name__}"
        self._audit(call, (f"no result: {why}",))

    def _new_labels(self, call: GuardedCall, resources: set[str]) -> frozenset[str]:
        """The labels of the records a result handed over that the call's step lacks."""
        spec = call.spec
        step = call.step
        if spec is None or step is None or spec.label_attribute is None or not resources:
            return frozenset()
        labels = {value for r in resources
                  if isinstance(value := self._attributes(r).get(spec.label_attribute), str)}
        return frozenset(labels - step.labels)

    # ---------------------------------------------------------- filtering
    def _filter(self, call: GuardedCall, rs: ResultSpec, result: Any, withheld: list[str],
                read: set[str]) -> Any:
        container: dict[str, Any] | None = None
        if rs.records is not None:
            if not isinstance(result, Mapping) or not isinstance(result.get(rs.records), list):
                withheld.append(f"the whole result: it has no {rs.records!r} list")
                return None
            container = dict(result)
            items: list[Any] = container[rs.records]
        elif isinstance(result, list):
            items = result
        elif isinstance(result, Mapping):
            kept = self._filter_records(call, rs, [result], withheld, read)
            return kept[0] if kept else None
        else:
            withheld.append(f"the whole result: a {type(result).__name__} is not a record")
            return None
        kept = self._filter_records(call, rs, items, withheld, read)
        if container is not None:
            container[rs.records] = kept  # type: ignore[index]
            return container
        return kept

    def _filter_records(self, call: GuardedCall, rs: ResultSpec, items: list[Any],
                        withheld: list[str], read: set[str]) -> list[Any]:
        authz = self.authz
        principal = call.principal
        out = []
        for item in items:
            if not isinstance(item, Mapping):
                withheld.append("a record that is not a mapping")
                continue
            try:
                rkey = fill_template(rs.resource, item)
            except InvalidInputError:
                withheld.append("a record that names no resource")
                continue
            if not authz.check(principal, rs.action, rkey).allowed:
                withheld.append(f"record {rkey}")
                continue
            if rs.fields:
                try:
                    readable = authz.authorized_fields(principal, rs.action, rkey)
                except (NotImplementedError, AgentAuthzError):
                    readable = frozenset()
                record = dict(item)
                for key, fname in rs.fields.items():
                    if key in record and fname not in readable:
                        withheld.append(f"{rkey} field {fname}")
                        if rs.mask is None:
                            del record[key]
                        else:
                            record[key] = rs.mask
                item = record
            read.add(rkey)
            out.append(item)
        return out

    # ------------------------------------------------------------ wrapping
    def wrap(self, fn: Callable[P, R], spec: ToolSpec | None = None) -> Callable[P, R]:
        """Guard a plain sync or async callable; its name is the tool's name by default."""
        if spec is not None:
            self.declare(spec)
        name = spec.name if spec is not None else getattr(fn, "__name__", repr(fn))
        signature = inspect.signature(fn)
        description = inspect.getdoc(fn)

        def arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any] | None:
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError:
                return None
            bound.apply_defaults()
            return dict(bound.arguments)

        def refused(call: GuardedCall) -> Any:
            if self.on_deny == "message":
                return call.message
            if call.decision.outcome is _APPROVAL:
                request_id = call.decision.reasons[0].rule or ""
                raise ApprovalRequired(call.decision, request_id, call.message)
            raise ToolDenied(call.decision, call.tool)

        if inspect.iscoroutinefunction(fn):
            afn = cast(Callable[..., Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                call = await self.abegin(name, arguments(args, kwargs), description=description)
                if not call.allowed:
                    return refused(call)
                try:
                    result = await afn(*args, **kwargs)
                except BaseException as exc:
                    self.abort(call, exc)
                    raise
                return await self.afinish(call, result)

            async_wrapper.__agentauthz_guard__ = self  # type: ignore[attr-defined]
            return cast(Callable[P, R], async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            call = self.begin(name, arguments(args, kwargs), description=description)
            if not call.allowed:
                return refused(call)
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                self.abort(call, exc)
                raise
            return self.finish(call, result)

        wrapper.__agentauthz_guard__ = self  # type: ignore[attr-defined]
        return cast(Callable[P, R], wrapper)


_POOL: concurrent.futures.ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _approval_pool() -> concurrent.futures.ThreadPoolExecutor:
    """One small pool for synchronous approval handlers, made on first use."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = concurrent.futures.ThreadPoolExecutor(
                max_workers=4, thread_name_prefix="agentauthz-approval")
        return _POOL


def _answer(answer: object) -> bool | str:
    """A handler's answer: ``True``, an approver's ``type:id`` key, or a denial."""
    if answer is True:
        return True
    if isinstance(answer, str):
        try:
            parse_entity_key(answer, what="approver")
        except InvalidInputError:
            return False
        return answer
    return False


def _run_handler(handler: ApprovalHandler, request: ApprovalRequest) -> bool | str:
    answer: Any = handler(request)
    if inspect.isawaitable(answer):
        pending: Awaitable[Any] = answer

        async def wait() -> Any:
            return await pending

        answer = asyncio.run(wait())
    return _answer(answer)


def guard_tools(tools: Iterable[Callable[..., Any]], *, authz: Authorizer,
                **options: Any) -> list[Callable[..., Any]]:
    """Wrap each tool with one guard of ``authz`` (options as for :class:`ToolGuard`)."""
    guard = authz.tool_guard(**options) if options else authz.guard
    return [guard.wrap(t, getattr(t, "__agentauthz_spec__", None)) for t in tools]


def guarded_tool(name: str | None = None, *, action: str = "call",
                 resource: Any = None, effect: Effect | str = Effect.READ,
                 labels: Iterable[str] = (), label_attribute: str | None = "classification",
                 constraints: Mapping[str, Any] | None = None, result: Any = None,
                 hard_block: Any = None, authz: Authorizer | None = None
                 ) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Declare a tool and guard it, in one decorator.

    With ``authz`` the function is guarded at once by ``authz.guard``;
    without, by the authorizer bound by the enclosing ``acting_as`` or task
    at call time (no authorizer there: the call is denied).
    """
    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        spec = ToolSpec(name or fn.__name__, action, resource, Effect(effect), frozenset(labels),
                        label_attribute, dict(constraints or {}), result, hard_block,
                        inspect.getdoc(fn))
        if authz is not None:
            return authz.guard.wrap(fn, spec)
        guarded: dict[int, Callable[..., Any]] = {}

        def current() -> Callable[..., Any] | None:
            bound = enforce.current_authorizer()
            if bound is None:
                return None
            wrapped = guarded.get(id(bound))
            if wrapped is None:
                wrapped = guarded[id(bound)] = bound.guard.wrap(fn, spec)
            return wrapped

        def no_authorizer() -> ToolDenied:
            return ToolDenied(_deny("unauthenticated", "no authorizer is bound: call tools "
                                    "inside `with authz.acting_as(...)` or a task"), spec.name)

        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                wrapped = current()
                if wrapped is None:
                    raise no_authorizer()
                return await wrapped(*args, **kwargs)

            async_wrapper.__agentauthz_spec__ = spec  # type: ignore[attr-defined]
            return cast(Callable[P, R], async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            wrapped = current()
            if wrapped is None:
                raise no_authorizer()
            return wrapped(*args, **kwargs)

        wrapper.__agentauthz_spec__ = spec  # type: ignore[attr-defined]
        return cast(Callable[P, R], wrapper)

    return decorate
