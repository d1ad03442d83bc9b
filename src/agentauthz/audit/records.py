"""The audit record: one per decision, cheap to make, rendered only when a sink needs it.

A record keeps the :class:`~agentauthz.model.Decision` and the raw inputs
(principal, action, resource, context, tool arguments) as they were handed
to the authorizer; :meth:`AuditRecord.to_dict` renders them — principal
chain resolved, context and arguments redacted, JSON-safe — when a sink asks.
So an in-memory sink pays for a tuple, and a file sink renders on its writer
thread.

The rendered form (what the JSON-lines file holds, plus its chain fields)::

    {"id": "…", "time": "2024-06-11T10:00:00.123456Z", "kind": "check",
     "principal": "agent:bot>user:alice@task:…", "agent": "agent:bot",
     "on_behalf_of": "user:alice", "task": "…", "action": "read",
     "resource": "document:42", "context": {…}, "outcome": "allow",
     "allowed": true, "reasons": [{"kind": …, "message": …, "rule": …}],
     "policy_version": "sha256:…", "backend": "local", "latency_us": 3.1,
     "cached": false}

Tool-call records (``kind: "tool"``) add ``tool``, ``arguments`` (masked
unless kept) and ``withheld`` (what result filtering removed).
"""

from __future__ import annotations

import time as _time
from collections.abc import Mapping
from math import modf as _modf
from typing import TYPE_CHECKING, Any, NamedTuple

from agentauthz.agents.delegation import Delegation
from agentauthz.model import Decision, Outcome

if TYPE_CHECKING:
    from agentauthz.audit.redaction import Redactor

__all__ = ["AuditRecord", "principal_chain"]

def principal_chain(principal: Any) -> tuple[str, str | None, str | None, str | None]:
    """``(principal, agent, on_behalf_of, task id)`` of a principal or a delegation."""
    if isinstance(principal, Delegation):
        task = principal.task
        return (principal.key, principal.agent, principal.on_behalf_of,
                None if task is None else task.task_id)
    return _key(principal), None, None, None


def _key(value: Any) -> str:
    if value.__class__ is str:
        return value
    key = getattr(value, "key", None)
    if isinstance(key, str):
        return key
    text = repr(value) if value is not None else "(none)"
    return text[:200]


def iso_time(seconds: float) -> str:
    """UTC ISO 8601 with microseconds and a ``Z``: sorts as text, parses everywhere."""
    fraction, whole_seconds = _modf(seconds)
    whole, micros = int(whole_seconds), round(fraction * 1_000_000)
    if micros == 1_000_000:
        whole, micros = whole + 1, 0
    cached = _SECOND
    if cached[0] != whole:  # one strftime per second, not per record
        cached = _SECOND[:] = [whole, _time.strftime("%Y-%m-%dT%H:%M:%S", _time.gmtime(whole))]
    return f"{cached[1]}.{micros:06d}Z"


_SECOND: list[Any] = [None, ""]


class AuditRecord(NamedTuple):
    """One decision, as evidence. Immutable; render it with :meth:`to_dict`.

    ``time`` is Unix seconds when the question was asked, ``latency_s`` how
    long the answer took; ``redactor`` is applied by :meth:`to_dict` (the
    default one when ``None``).
    """

    kind: str
    """``"check"`` (a decision of ``check``/``acheck`` and what is built on them) or ``"tool"``."""
    decision: Decision
    principal: Any
    action: str
    resource: Any
    context: Mapping[str, Any] | None
    backend: str
    time: float
    latency_s: float
    redactor: Redactor | None = None
    tool: str | None = None
    arguments: Mapping[str, Any] | None = None
    withheld: tuple[str, ...] = ()

    # ------------------------------------------------------------- fields
    @property
    def decision_id(self) -> str:
        return self.decision.decision_id

    @property
    def outcome(self) -> Outcome:
        return self.decision.outcome

    @property
    def allowed(self) -> bool:
        return self.decision.allowed

    @property
    def principal_key(self) -> str:
        """The principal's ``type:id``, or the delegation's one-line form."""
        return principal_chain(self.principal)[0]

    @property
    def agent(self) -> str | None:
        """The acting agent of a delegation (``None`` for a plain principal)."""
        return principal_chain(self.principal)[1]

    @property
    def on_behalf_of(self) -> str | None:
        return principal_chain(self.principal)[2]

    @property
    def task(self) -> str | None:
        """The task id of the delegation's task credential, if any."""
        return principal_chain(self.principal)[3]

    @property
    def resource_key(self) -> str:
        return _key(self.resource)

    @property
    def cached(self) -> bool:
        """Whether the decision was made before the question: served from the cache."""
        return self.decision.evaluated_at < self.time - 1e-3

    # ---------------------------------------------------------- rendering
    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-safe data, redacted (the form every sink writes)."""
        redactor = self.redactor
        if redactor is None:
            redactor = _default_redactor()
        decision = self.decision
        principal, agent, user, task = principal_chain(self.principal)
        context = self.context
        out: dict[str, Any] = {
            "id": decision.decision_id,
            "time": iso_time(self.time),
            "kind": self.kind,
            "principal": principal,
            "agent": agent,
            "on_behalf_of": user,
            "task": task,
            "action": self.action if self.action.__class__ is str else _key(self.action),
            "resource": self.resource_key,
            "context": None if context is None else redactor.context(context),
            "outcome": decision.outcome.value,
            "allowed": decision.allowed,
            "reasons": [{"kind": r.kind, "message": redactor.text(r.message), "rule": r.rule}
                        for r in decision.reasons],
            "policy_version": decision.policy_version or None,
            "backend": self.backend,
            "latency_us": round(self.latency_s * 1e6, 2),
            "cached": decision.evaluated_at < self.time - 1e-3,
        }
        if self.kind == "tool":
            tool = self.tool or ""
            out["tool"] = tool
            out["arguments"] = redactor.arguments(tool, self.arguments)
            out["withheld"] = list(self.withheld)
        return out

    def __repr__(self) -> str:
        what = f"tool {self.tool} " if self.kind == "tool" else ""
        return (f"<AuditRecord {what}{self.decision.outcome.value} {self.principal_key} "
                f"{self.action} {self.resource_key}>")


_DEFAULT: list[Redactor] = []


def _default_redactor() -> Redactor:
    if not _DEFAULT:
        from agentauthz.audit.redaction import Redactor

        _DEFAULT.append(Redactor())
    return _DEFAULT[0]
