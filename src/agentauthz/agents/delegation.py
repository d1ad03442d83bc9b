"""Delegation: an agent acting for a user, inside a task — and the rule that decides it.

A :class:`Delegation` is a principal chain: the agent that acts, the user it
acts for (optional: an agent may act on its own account) and the task
credential it acts under (optional). Pass it wherever a principal goes;
``authz.acting_as(agent, on_behalf_of=user)`` and ``authz.task(...)`` make it
the current principal, so ``@authorize`` and the tool guard use it unasked.

A delegated request is allowed only if **every** branch allows it:

1. each agent in the chain is registered and active, and none is revoked;
2. the task credential (if any) is live — not expired, not revoked — was
   issued to this agent for this user, and its scope covers the request;
3. each agent in the chain is allowed by the policy on its own grants;
4. the user (if any) is allowed by the policy on their own grants.

So an agent never gains from its user a permission its own grants lack, nor
the other way round, and a task scope only narrows. Branches are checked
cheapest first and the first denial answers; :meth:`AgentLayer.explain` walks
every branch for people.

The same gate (registry status and agent revocation) applies to a plain
check whose principal is an agent, and break-glass grants are applied here,
per branch, after the policy denied.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from agentauthz.agents.breakglass import BreakGlass
from agentauthz.agents.registry import AgentRegistry, AgentStatus
from agentauthz.agents.revocation import RevocationStore
from agentauthz.errors import InvalidInputError
from agentauthz.model import Decision, Entity, Outcome, Reason, parse_entity_key

if TYPE_CHECKING:
    from agentauthz.agents.credentials import TaskCredential, TaskCredentials
    from agentauthz.engine.explain import Explanation
    from agentauthz.typing import EntityLike

__all__ = ["AgentLayer", "Delegation"]

_DENY: Final = Outcome.DENY
_ALLOW: Final = Outcome.ALLOW
BaseCheck = Callable[[Any, str, Any, "Mapping[str, Any] | None"], Decision]


@dataclass(frozen=True, slots=True)
class Delegation:
    """An agent, the user it acts for, and the task credential it acts under."""

    agent: str
    on_behalf_of: str | None = None
    task: TaskCredential | None = None
    agents: tuple[str, ...] = field(init=False, repr=False, compare=False)
    """Every agent whose grants must allow: the task chain's agents, or this agent."""
    principals: tuple[str, ...] = field(init=False, repr=False, compare=False)
    """Every principal whose own grants must allow: the agents, then the user."""
    _text: str = field(init=False, repr=False, compare=False)
    _allowed: Reason = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parse_entity_key(self.agent, what="delegation agent")
        if self.on_behalf_of is not None:
            parse_entity_key(self.on_behalf_of, what="on_behalf_of")
            if self.on_behalf_of == self.agent:
                raise InvalidInputError("an agent cannot act on behalf of itself")
        task = self.task
        agents = task.agents if task is not None and len(task.agents) > 1 else (self.agent,)
        text = self.agent
        if self.on_behalf_of is not None:
            text += f" on behalf of {self.on_behalf_of}"
        if task is not None:
            text += f" in task {task.task_id}"
        object.__setattr__(self, "agents", agents)
        object.__setattr__(self, "principals", agents if self.on_behalf_of is None
                           else (*agents, self.on_behalf_of))
        object.__setattr__(self, "_text", text)
        object.__setattr__(self, "_allowed", Reason("delegation", f"allowed for {text}: every "
                                                    "branch allows"))

    @classmethod
    def of(cls, agent: EntityLike, on_behalf_of: EntityLike | None = None,
           task: TaskCredential | None = None) -> Delegation:
        return cls(_key(agent, "agent"), None if on_behalf_of is None
                   else _key(on_behalf_of, "on_behalf_of"), task)

    @property
    def key(self) -> str:
        """A readable one-line form, for logs: ``agent:bot>user:alice@task:<id>``."""
        text = self.agent
        if self.on_behalf_of is not None:
            text += f">{self.on_behalf_of}"
        if self.task is not None:
            text += f"@task:{self.task.id}"
        return text

    def __str__(self) -> str:
        return self._text


def _key(value: object, what: str) -> str:
    if isinstance(value, Entity):
        return value.key
    if isinstance(value, str):
        parse_entity_key(value, what=what)
        return value
    raise InvalidInputError(f"{what} must be an Entity or a 'type:id' string, got "
                            f"{type(value).__name__}")


def _resource_key(resource: object) -> str | None:
    if resource.__class__ is str:
        return resource
    if isinstance(resource, Entity):
        return resource.key
    return None


class AgentLayer:
    """Registry, revocation, task credentials and break-glass, around a base check."""

    def __init__(self, registry: AgentRegistry, revocations: RevocationStore,
                 credentials: TaskCredentials, breakglass: BreakGlass) -> None:
        self.registry = registry
        self.revocations = revocations
        self.credentials = credentials
        self.breakglass = breakglass

    # --------------------------------------------------------------- gates
    def gate(self, agents: Iterable[str]) -> Reason | None:
        """Why these agents may not act now (registry status, revocation), or ``None``."""
        registry = self.registry
        for agent in agents:
            reason = registry.gate(agent)
            if reason is not None:
                return reason
        revoked = self.revocations.revoked("agent", agents)
        if revoked is not None:
            why = f": {revoked.reason}" if revoked.reason else ""
            return Reason("agent_revoked", f"agent {revoked.id!r} is revoked{why}")
        return None

    def task_gate(self, d: Delegation) -> Reason | None:
        """Why this delegation's task credential cannot be used now, or ``None``."""
        task = d.task
        if task is None:
            return None
        if task.agent != d.agent:
            return Reason("wrong_agent", f"task credential {task.id} was issued to "
                          f"{task.agent!r}, not {d.agent!r}")
        if task.on_behalf_of != d.on_behalf_of:
            return Reason("wrong_principal", f"task credential {task.id} acts for "
                          f"{task.on_behalf_of!r}, not {d.on_behalf_of!r}")
        status = self.credentials.status(task)
        if status is not None:
            return Reason(f"task_{status}", f"task credential {task.id} (task {task.task_id}) "
                          f"is {status}")
        return None

    # -------------------------------------------------------------- checks
    def agent_denial(self, principal: Any) -> tuple[str | None, Decision | None]:
        """For a plain check: the principal's key, and a denial if it is a barred agent."""
        pkey = principal if principal.__class__ is str else getattr(principal, "key", None)
        if pkey.__class__ is not str:
            return None, None
        if self.registry.is_agent(pkey):
            reason = self.gate((pkey,))
            if reason is not None:
                return pkey, Decision(False, _DENY, (reason,), "")
        return pkey, None

    def check_agent(self, base: BaseCheck, pkey: str, principal: Any, action: str, resource: Any,
                    context: Mapping[str, Any] | None) -> Decision:
        """A plain check whose principal is an agent: gate, policy, break-glass, usage."""
        record = self.registry._records.get(pkey)
        if (record is None or record.status is not AgentStatus.ACTIVE
                or self.revocations.revoked("agent", (pkey,)) is not None):
            reason = self.gate((pkey,))
            assert reason is not None
            return Decision(False, _DENY, (reason,), "")
        decision = base(principal, action, resource, context)
        rkey = resource if resource.__class__ is str else _resource_key(resource)
        if rkey is not None:
            if not decision.allowed and self.breakglass:
                decision = self.overlay(pkey, action, rkey, decision)
            self.registry.record_use(pkey, action, rkey, decision.allowed)
        return decision

    def settle(self, pkey: str | None, action: str, resource: Any, decision: Decision) -> Decision:
        """A plain check's answer: break-glass applied, and an agent's use recorded."""
        rkey = _resource_key(resource)
        if pkey is not None and rkey is not None:
            decision = self.overlay(pkey, action, rkey, decision)
            if self.registry.is_agent(pkey):
                self.registry.record_use(pkey, action, rkey, decision.allowed)
        return decision

    def overlay(self, pkey: str, action: str, rkey: str, decision: Decision) -> Decision:
        """A denial turned into an allow by a live break-glass grant for exactly this request."""
        if decision.allowed or not self.breakglass:
            return decision
        grant = self.breakglass.match(pkey, action, rkey)
        if grant is None:
            return decision
        return Decision(True, _ALLOW, (grant.as_reason(), *decision.reasons),
                        decision.policy_version)

    def precheck(self, d: Delegation, action: str, resource: Any
                 ) -> tuple[str, tuple[str, ...], Decision | None]:
        """The resource key, the principals whose grants must allow, or a denial already."""
        rkey = _resource_key(resource)
        if rkey is None:
            return "", (), Decision(False, _DENY, (Reason(
                "invalid_input", "resource must be an Entity or a 'type:id' string"),), "")
        reason = self.gate(d.agents) or self.task_gate(d)
        if reason is None and d.task is not None and not d.task.allows(action, rkey):
            reason = Reason("out_of_task_scope", f"{action} on {rkey[:128]} is outside the scope "
                            f"of task {d.task.task_id} ({_scope_text(d.task)})")
        if reason is not None:
            self.registry.record_use(d.agent, action, rkey, False)
            return rkey, (), Decision(False, _DENY, (reason,), "")
        return rkey, d.principals, None

    def check(self, base: BaseCheck, d: Delegation, action: str, resource: Any,
              context: Mapping[str, Any] | None) -> Decision:
        """A delegated decision, deciding branches in turn: the first denial answers.

        The synchronous twin of ``precheck`` + ``combine`` (which the async
        path uses to decide branches concurrently), inlined for the hot path.
        """
        records = self.registry._records
        task = d.task
        rkey = resource if resource.__class__ is str else _resource_key(resource)
        if rkey is None or task is not None or len(d.agents) != 1 or not (
                (record := records.get(d.agent)) is not None
                and record.status is AgentStatus.ACTIVE
                and self.revocations.revoked("agent", d.agents) is None):
            # the general path: several agents, a task, or a gate that says no
            rkey, _, denial = self.precheck(d, action, resource)
            if denial is not None:
                return denial
        reasons: tuple[Reason, ...] = (d._allowed,)
        for principal in d.principals:
            decision = base(principal, action, resource, context)
            if not decision._allowed:
                decision = self.overlay(principal, action, rkey, decision)
                if not decision._allowed:
                    return self._branch_denied(d, principal, action, rkey,
                                               decision)
            reasons += decision._reasons
        self.registry.record_use(d.agent, action, rkey, True)
        return Decision(True, _ALLOW, reasons, decision._version)

    def _branch_denied(self, d: Delegation, principal: str, action: str, rkey: str,
                       decision: Decision) -> Decision:
        self.registry.record_use(d.agent, action, rkey, False)
        if principal == d.on_behalf_of:
            first = Reason("user_denied", f"{principal} (on whose behalf {d.agent} acts) may "
                           f"not {action} {rkey[:128]}")
        else:
            first = Reason("agent_denied", f"agent {principal} may not {action} {rkey[:128]} on "
                           "its own grants")
        return Decision(False, decision.outcome, (first, *decision.reasons),
                        decision.policy_version)

    def combine(self, d: Delegation, action: str, rkey: str,
                decisions: Iterable[Decision]) -> Decision:
        """The delegated answer from the branch decisions, in ``d.principals`` order.

        ``decisions`` may be lazy: the first denial answers, and later
        branches are then never evaluated.
        """
        reasons: list[Reason] = []
        version = ""
        for principal, decision in zip(d.principals, decisions, strict=False):
            decision = self.overlay(principal, action, rkey, decision)
            if not decision.allowed:
                return self._branch_denied(d, principal, action, rkey, decision)
            reasons += decision.reasons
            version = version or decision.policy_version
        self.registry.record_use(d.agent, action, rkey, True)
        return Decision(True, _ALLOW, (d._allowed, *reasons), version)

    # ------------------------------------------------------------- queries
    def usable(self, d: Delegation) -> bool:
        """Whether a delegation may act at all now (registry, revocation, task credential)."""
        return self.gate(d.agents) is None and self.task_gate(d) is None

    def combine_resources(self, d: Delegation, action: str, resource_type: str,
                          found: Iterable[frozenset[str]]) -> frozenset[str]:
        """Exactly what :meth:`combine` would allow, from each principal's own list.

        ``found`` yields one list per ``d.principals`` entry and may be lazy:
        an empty intersection stops early.
        """
        result: frozenset[str] | None = None
        for principal, listed in zip(d.principals, found, strict=False):
            listed = listed | self.granted_resources(principal, action, resource_type)
            result = listed if result is None else result & listed
            if not result:
                return frozenset()
        if result is None:
            return frozenset()
        task = d.task
        if task is not None:
            result = frozenset(r for r in result if task.allows(action, r))
        return result

    def granted_resources(self, principal: str, action: str, resource_type: str
                          ) -> frozenset[str]:
        """Resources of a type that live break-glass grants open to this principal."""
        if not self.breakglass:
            return frozenset()
        prefix = f"{resource_type}:"
        return frozenset(g.resource for g in self.breakglass.active()
                         if g.principal == principal and g.action == action
                         and g.resource.startswith(prefix))

    def combine_actions(self, d: Delegation, resource: Any,
                        found: Iterable[frozenset[str]]) -> frozenset[str]:
        """Exactly the actions :meth:`combine` would allow on ``resource``."""
        rkey = _resource_key(resource)
        if rkey is None:
            return frozenset()
        result: frozenset[str] | None = None
        for principal, listed in zip(d.principals, found, strict=False):
            if self.breakglass:
                listed = listed | {g.action for g in self.breakglass.active()
                                   if g.principal == principal and g.resource == rkey}
            result = listed if result is None else result & listed
        if result is None:
            return frozenset()
        task = d.task
        if task is not None:
            result = frozenset(a for a in result if task.allows(a, rkey))
        return result

    def explain(self, walk: Callable[[Any], Explanation], d: Delegation, action: str,
                resource: Any, decision: Decision) -> Explanation:
        """Every branch of a delegated decision, evaluated in full, for people."""
        from agentauthz.engine.explain import Explanation

        rkey = _resource_key(resource) or repr(resource)
        children = []
        gate = self.gate(d.agents)
        children.append(Explanation("registry: " + ", ".join(d.agents), gate is None,
                                    gate.message if gate else "registered, active, not revoked"))
        if d.task is not None:
            task_reason = self.task_gate(d)
            children.append(Explanation(f"task {d.task.task_id} credential", task_reason is None,
                                        task_reason.message if task_reason else
                                        f"live, issued to {d.task.agent}"))
            in_scope = d.task.allows(action, rkey)
            children.append(Explanation(f"task scope covers {action} {rkey}", in_scope,
                                        _scope_text(d.task)))
        for principal, role in ([(a, "agent") for a in d.agents]
                                + ([(d.on_behalf_of, "on behalf of")] if d.on_behalf_of else [])):
            node = walk(principal)
            node.label = f"{role} {principal}: {node.label}"
            children.append(node)
        return Explanation(f"delegation: {d} — {action} {rkey}", decision.allowed,
                           "; ".join(r.message for r in decision.reasons[:2]), children,
                           decision)


def _scope_text(task: TaskCredential) -> str:
    parts = ", ".join(f"{i.action} {i.pattern}" for i in task.scope.items)
    if task.caveat_scopes:
        parts += f" (narrowed {len(task.caveat_scopes)}×)"
    return "scope: " + parts
