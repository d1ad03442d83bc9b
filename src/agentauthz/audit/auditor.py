"""The auditor: one record per decision, handed to every sink, failures isolated.

``Authorizer(..., audit=sink)`` (or a list of sinks, or an :class:`Auditor`)
routes every ``check`` and ``acheck`` through a wrapper that times the
decision and calls :meth:`Auditor.decided`. A sink that raises is counted
(``failures``) and logged — at most once per ``report_every`` seconds per
sink — and the decision stands: auditing never changes an answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from agentauthz.audit.records import AuditRecord
from agentauthz.audit.redaction import Redactor
from agentauthz.errors import ConfigurationError
from agentauthz.model import Decision, _next_seq
from agentauthz.typing import AuditSink

if TYPE_CHECKING:
    from agentauthz.agents.guard import GuardedCall

__all__ = ["Auditor"]

log = logging.getLogger("agentauthz.audit")


class Auditor:
    """Builds audit records and fans them out to ``sinks``.

    ``redactor`` decides what of contexts and tool arguments reaches a
    record (default: :class:`~agentauthz.audit.Redactor` with its default
    patterns, every tool argument masked).
    """

    def __init__(self, sinks: AuditSink | Iterable[AuditSink], *,
                 redactor: Redactor | None = None, report_every: float = 60.0) -> None:
        if isinstance(sinks, AuditSink):
            listed = [sinks]
        elif isinstance(sinks, list | tuple):
            listed = list(sinks)
        else:
            raise ConfigurationError(f"audit must be a sink with an emit(record) method, a list "
                                     f"of them or an Auditor, got {type(sinks).__name__}")
        for sink in listed:
            if not isinstance(sink, AuditSink):
                raise ConfigurationError(f"audit sink {sink!r} has no emit(record) method "
                                         "(agentauthz.typing.AuditSink)")
        if redactor is not None and not isinstance(redactor, Redactor):
            raise ConfigurationError("redactor must be an agentauthz.audit.Redactor")
        self.sinks: tuple[AuditSink, ...] = tuple(listed)
        self.redactor = redactor or Redactor()
        self.report_every = report_every
        self.failures: dict[str, int] = {}
        """Failed ``emit`` calls per sink (``repr`` of the sink)."""
        self._reported: dict[str, float] = {}

    # ------------------------------------------------------------ records
    def decided(self, decision: Decision, principal: Any, action: str, resource: Any,
                context: Mapping[str, Any] | None, backend: str, at: float,
                latency_s: float) -> None:
        """Record one ``check`` decision. Never raises."""
        if context is not None and context.__class__ is dict:
            context = context.copy()  # the caller may reuse its dict: keep what was decided on
        if not decision._seq:  # number it on this thread, not first on a sink's writer thread
            decision._seq = _next_seq()
        self.emit(AuditRecord("check", decision, principal, action, resource, context, backend,
                              at, latency_s, self.redactor))

    def tool_call(self, call: GuardedCall, withheld: tuple[str, ...], backend: str) -> None:
        """Record one tool-guard decision (with the tool, its arguments, what was withheld)."""
        latency = time.perf_counter() - call.started
        if not call.decision._seq:  # see decided()
            call.decision._seq = _next_seq()
        self.emit(AuditRecord("tool", call.decision, call.principal, call.action,
                              call.resource or f"tool:{call.tool}", None, backend,
                              time.time() - latency, latency, self.redactor, call.tool,
                              dict(call.arguments), withheld))

    def emit(self, record: AuditRecord) -> None:
        """Hand ``record`` to every sink; a sink that raises is counted and logged."""
        for sink in self.sinks:
            try:
                sink.emit(record)
            except Exception as exc:  # a failing sink never fails the decision
                self._failed(sink, exc)

    def _failed(self, sink: AuditSink, exc: Exception) -> None:
        name = repr(sink)
        count = self.failures[name] = self.failures.get(name, 0) + 1
        now = time.monotonic()
        if now - self._reported.get(name, -self.report_every) >= self.report_every:
            self._reported[name] = now
            log.error("agentauthz audit: sink %s failed (%s: %s); the decision stands "
                      "(%d failures of this sink so far)", name, type(exc).__name__, exc, count)

    # ------------------------------------------------------------ control
    @property
    def failed(self) -> int:
        """Failed ``emit`` calls, all sinks together."""
        return sum(self.failures.values())

    def flush(self) -> None:
        """Flush every sink that buffers (those with a ``flush`` method)."""
        for sink in self.sinks:
            flush = getattr(sink, "flush", None)
            if flush is not None:
                try:
                    flush()
                except Exception as exc:
                    self._failed(sink, exc)

    def close(self) -> None:
        """Close every sink that holds resources (those with a ``close`` method)."""
        for sink in self.sinks:
            close = getattr(sink, "close", None)
            if close is not None:
                try:
                    close()
                except Exception as exc:
                    self._failed(sink, exc)

    def __repr__(self) -> str:
        return f"<Auditor {', '.join(repr(s) for s in self.sinks)}>"
