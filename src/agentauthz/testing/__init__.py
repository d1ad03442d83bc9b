"""Testing your policy and the code that enforces it — with or without pytest.

::

    from agentauthz.testing import RecordingAuthorizer, assert_allowed, assert_denied

    authz = RecordingAuthorizer("policy.yaml", data="data.yaml")
    assert_allowed(authz, "user:alice", "read", "document:1")
    assert_denied(authz, "user:bob", "read", "document:1")
    app_code_under_test(authz)
    assert [(d.principal, d.action) for d in authz.decisions] == [("user:alice", "read")]

A failed assertion shows the decision, its reasons and the whole
``explain()`` tree. ``agentauthz.testing.cases`` runs YAML files of expected
decisions and measures what they cover. The pytest plugin
(``agentauthz.testing.pytest_plugin``, registered through the ``pytest11``
entry point) builds on these; this package never imports pytest.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from agentauthz.agents.delegation import Delegation
from agentauthz.audit.sinks import MemorySink
from agentauthz.authorizer import Authorizer
from agentauthz.model import Decision
from agentauthz.policy.schema import Policy
from agentauthz.testing.cases import (
    Case,
    CaseFile,
    CaseResult,
    Coverage,
    FileResult,
    describe,
    explain_decision,
    load_file,
    run_file,
)
from agentauthz.typing import AuditSink, Backend, EntityLike

if TYPE_CHECKING:
    from agentauthz.audit.records import AuditRecord

__all__ = [
    "Case",
    "CaseFile",
    "CaseResult",
    "Coverage",
    "FileResult",
    "RecordingAuthorizer",
    "assert_allowed",
    "assert_denied",
    "load_file",
    "local_backend",
    "run_file",
]

_quiet: Final[contextvars.ContextVar[bool]] = contextvars.ContextVar("agentauthz_testing_quiet",
                                                                      default=False)


class _Recorder(MemorySink):
    """A memory sink that ignores the decisions the assertion helpers make themselves."""

    def emit(self, record: AuditRecord) -> None:
        if not _quiet.get():
            super().emit(record)


class RecordingAuthorizer(Authorizer):
    """An :class:`~agentauthz.Authorizer` that keeps every decision it makes, for tests.

    It takes the same arguments; ``audit`` sinks (or an
    :class:`~agentauthz.audit.Auditor`), if given, receive the records too.
    ``decisions`` lists the audit records of what was asked — of
    ``check``/``acheck`` and everything built on them (``authorize``,
    ``@authorize``, delegated checks, the tool guard) — oldest first,
    without those :meth:`assert_allowed` and :meth:`assert_denied` made.
    """

    def __init__(self, policy: Any = None, *,
                 audit: AuditSink | Sequence[AuditSink] | None = None,
                 **options: Any) -> None:
        self.recorder: MemorySink = _Recorder()
        sinks: list[AuditSink] = [self.recorder]
        if isinstance(audit, list | tuple):
            sinks += audit
        elif audit is not None:
            sinks.append(audit)  # type: ignore[arg-type]  # an Auditor is a sink too
        super().__init__(policy, audit=sinks, **options)

    @property
    def decisions(self) -> list[AuditRecord]:
        """Audit records of the decisions made so far (``.principal``, ``.action``,
        ``.resource``, ``.context``, ``.decision``, ``.allowed``, ``.kind``)."""
        return self.recorder.records

    def clear_decisions(self) -> None:
        self.recorder.clear()

    def assert_allowed(self, principal: EntityLike | Delegation, action: str,
                       resource: EntityLike, context: Mapping[str, Any] | None = None) -> Decision:
        """:func:`assert_allowed` on this authorizer."""
        __tracebackhide__ = True
        return _expect(True, self, principal, action, resource, context)

    def assert_denied(self, principal: EntityLike | Delegation, action: str,
                      resource: EntityLike, context: Mapping[str, Any] | None = None) -> Decision:
        """:func:`assert_denied` on this authorizer."""
        __tracebackhide__ = True
        return _expect(False, self, principal, action, resource, context)


def assert_allowed(authz: Authorizer, principal: EntityLike | Delegation, action: str,
                   resource: EntityLike, context: Mapping[str, Any] | None = None) -> Decision:
    """Return the allowing decision, or raise ``AssertionError`` with the decision explained.

    ``principal`` may be a :class:`~agentauthz.agents.Delegation` (``task.principal``
    inside ``authz.task(...)``); the message then explains every branch.
    """
    __tracebackhide__ = True
    return _expect(True, authz, principal, action, resource, context)


def assert_denied(authz: Authorizer, principal: EntityLike | Delegation, action: str,
                  resource: EntityLike, context: Mapping[str, Any] | None = None) -> Decision:
    """Return the denying decision, or raise ``AssertionError`` with the decision explained."""
    __tracebackhide__ = True
    return _expect(False, authz, principal, action, resource, context)


def _expect(allowed: bool, authz: Authorizer, principal: EntityLike | Delegation, action: str,
            resource: EntityLike, context: Mapping[str, Any] | None) -> Decision:
    __tracebackhide__ = True
    token = _quiet.set(True)
    try:
        decision = authz.check(principal, action, resource, context)
        if decision.allowed is allowed:
            return decision
        explanation = explain_decision(authz, decision, principal, action, resource, context)
    finally:
        _quiet.reset(token)
    request = f"{principal} {action} {resource}" + (f" context={dict(context)!r}" if context
                                                    else "")
    expected = "allow" if allowed else "deny"
    raise AssertionError(f"expected {expected}, got {decision.outcome.value}: {request}\n"
                         + describe(request, expected, decision, explanation))


def local_backend(policy: Policy, data: Mapping[str, Any] | None) -> Backend:
    """The backend factory of the local evaluator (the pytest plugin's default backend).

    A backend factory takes the policy and the data file's content
    (``{"relationships": [...], "attributes": {...}}``, or ``None``) and
    returns a :class:`~agentauthz.typing.Backend` that decides with both.
    """
    # an authorizer loads and validates data in one place; keep only its backend
    return Authorizer(policy, data=data).backend
