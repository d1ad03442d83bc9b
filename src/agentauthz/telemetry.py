"""OpenTelemetry spans and metrics for decisions, through ``opentelemetry-api`` only.

``Authorizer(..., telemetry=True)`` reports through the global providers the
application configured (``opentelemetry.sdk`` or a distro);
``telemetry=Telemetry(tracer_provider=..., meter_provider=...)`` through
given ones. The library never installs an SDK.

Per decision (``check``/``acheck`` and what is built on them) one span,
``agentauthz.check``, and per tool-guard decision one span,
``agentauthz.tool_call``; each starts when the question was asked, ends
when it was answered, is a child of the caller's current span, and carries
``agentauthz.*`` attributes (outcome, action, resource, principal chain,
policy version, backend, first reason). A denial is not an error: only a
failing backend or evaluator sets the span status to ``ERROR``.

Metrics:

``agentauthz.decisions`` (counter, ``{decision}``)
    by ``agentauthz.decision.outcome``, ``agentauthz.decision.kind``
    (``check``/``tool``) and ``agentauthz.backend``;
``agentauthz.decision.duration`` (histogram, ``s``)
    with the same attributes;
``agentauthz.cache.hit_ratio`` (observable gauge, ``1``)
    per authorizer with a decision cache, by ``agentauthz.backend``;
``agentauthz.guard.blocks`` (counter, ``{call}``)
    tool calls the guard refused, by ``agentauthz.guard.category``
    (``credential_change``, ``token_minting``, ``privilege_change``,
    ``self_escalation``, ``undeclared_tool``, ``tool_not_approved``,
    ``bad_arguments``, a chain rule…), ``agentauthz.guard.hard_block`` and
    ``agentauthz.tool.name``.

Without an SDK the global providers are the API's no-op proxies: then
nothing is built per decision (the check costs a comparison), and whether
an SDK has been installed since is looked up again at most once per
``recheck`` seconds.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import metrics as otel_metrics
from opentelemetry import trace as otel_trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import SpanKind, Status, StatusCode

from agentauthz.audit.records import principal_chain
from agentauthz.model import Decision

if TYPE_CHECKING:
    from agentauthz.agents.guard import GuardedCall
    from agentauthz.authorizer import Authorizer

__all__ = ["Telemetry"]

SCOPE: Final = "agentauthz"
_NOOP_PROVIDERS: Final = frozenset({"ProxyTracerProvider", "NoOpTracerProvider",
                                    "_ProxyMeterProvider", "NoOpMeterProvider",
                                    "ProxyMeterProvider"})
_ERROR_REASONS: Final = frozenset({"backend_error", "evaluation_error", "guard_error"})


def _version() -> str:
    from agentauthz import __version__

    return __version__


def _real(provider: object) -> bool:
    """Whether a provider is an SDK's, not the API's no-op or not-yet-set proxy."""
    return type(provider).__name__ not in _NOOP_PROVIDERS


class _Instruments:
    """The metric instruments of one meter, shared by every Telemetry that uses it."""

    def __init__(self, meter: otel_metrics.Meter) -> None:
        self.meter = meter
        self.decisions = meter.create_counter(
            "agentauthz.decisions", unit="{decision}",
            description="Authorization decisions, by outcome")
        self.duration = meter.create_histogram(
            "agentauthz.decision.duration", unit="s",
            description="Time from question to answer of an authorization decision")
        self.blocks = meter.create_counter(
            "agentauthz.guard.blocks", unit="{call}",
            description="Tool calls the tool guard refused, by category")
        self.telemetries: weakref.WeakSet[Telemetry] = weakref.WeakSet()
        meter.create_observable_gauge(
            "agentauthz.cache.hit_ratio", callbacks=[self._hit_ratios], unit="1",
            description="Share of decision-cache lookups answered from the cache")

    def _hit_ratios(self, options: CallbackOptions) -> Iterable[Observation]:
        out = []
        for telemetry in list(self.telemetries):
            for authz in list(telemetry._authorizers):
                stats = authz.cache_stats()
                if stats is not None and stats.hits + stats.misses:
                    out.append(Observation(stats.hit_ratio,
                                           {"agentauthz.backend": authz._backend_name}))
        return out


_SHARED: dict[int, _Instruments] = {}
_SHARED_LOCK = threading.Lock()


def _instruments(meter: otel_metrics.Meter) -> _Instruments:
    with _SHARED_LOCK:
        found = _SHARED.get(id(meter))
        if found is None or found.meter is not meter:
            found = _SHARED[id(meter)] = _Instruments(meter)
        return found


class Telemetry:
    """Spans and metrics of one or more authorizers (see the module docstring).

    ``tracer_provider`` / ``meter_provider``: report through these instead
    of the global ones. ``spans=False`` or ``metrics=False`` turns one half
    off. ``recheck``: seconds between looks at whether a global SDK provider
    has been installed, while there is none.
    """

    def __init__(self, *, tracer_provider: otel_trace.TracerProvider | None = None,
                 meter_provider: otel_metrics.MeterProvider | None = None, spans: bool = True,
                 metrics: bool = True, recheck: float = 1.0) -> None:
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self._want_spans = spans
        self._want_metrics = metrics
        self._recheck_ns = int(recheck * 1e9)
        self._next_look = 0
        self._tracer: otel_trace.Tracer | None = None
        self._instruments: _Instruments | None = None
        self._attributes: dict[tuple[str, str, str], dict[str, str]] = {}
        self._authorizers: weakref.WeakSet[Authorizer] = weakref.WeakSet()
        self.live = False
        """Whether anything is reported: a real tracer or meter provider is in use."""
        self._look(0)

    def bind(self, authz: Authorizer) -> None:
        """Report ``authz``'s decision cache in ``agentauthz.cache.hit_ratio``."""
        self._authorizers.add(authz)

    def _look(self, now_ns: int) -> None:
        """Find the providers to report through; while there are none, look again later."""
        self._next_look = now_ns + self._recheck_ns
        if self._want_spans and self._tracer is None:
            provider = self._tracer_provider or otel_trace.get_tracer_provider()
            if _real(provider):
                self._tracer = provider.get_tracer(SCOPE, _version())
        if self._want_metrics and self._instruments is None:
            meter_provider = self._meter_provider or otel_metrics.get_meter_provider()
            if _real(meter_provider):
                self._instruments = _instruments(meter_provider.get_meter(SCOPE, _version()))
                self._instruments.telemetries.add(self)
        self.live = self._tracer is not None or self._instruments is not None
        if (self._tracer is not None or not self._want_spans) and \
                (self._instruments is not None or not self._want_metrics):
            self._next_look = 1 << 62  # everything wanted is in place: never look again

    # ------------------------------------------------------------ reporting
    def decided(self, decision: Decision, principal: Any, action: str, resource: Any,
                backend: str, at_ns: int, elapsed_ns: int, *, kind: str = "check",
                call: GuardedCall | None = None) -> None:
        """Report one decision: a span and the decision metrics."""
        if at_ns >= self._next_look:
            self._look(at_ns)
        if not self.live:
            return
        outcome = decision.outcome.value
        key = (outcome, kind, backend)
        attributes = self._attributes.get(key)
        if attributes is None:
            attributes = self._attributes.setdefault(key, {
                "agentauthz.decision.outcome": outcome, "agentauthz.decision.kind": kind,
                "agentauthz.backend": backend})
        instruments = self._instruments
        if instruments is not None:
            instruments.decisions.add(1, attributes)
            instruments.duration.record(elapsed_ns / 1e9, attributes)
            if call is not None and not decision.allowed and outcome == "deny":
                instruments.blocks.add(1, _block_attributes(decision, call.tool))
        tracer = self._tracer
        if tracer is not None:
            span = tracer.start_span(
                "agentauthz.tool_call" if kind == "tool" else "agentauthz.check",
                kind=SpanKind.INTERNAL, start_time=at_ns,
                attributes=dict(_span_attributes(decision, principal, action, resource,
                                                 backend, kind, call)))
            first = decision.reasons[0] if decision.reasons else None
            if first is not None and first.kind in _ERROR_REASONS:
                span.set_status(Status(StatusCode.ERROR, first.message[:200]))
            span.end(end_time=at_ns + elapsed_ns)

    def tool_call(self, call: GuardedCall, withheld: tuple[str, ...], backend: str,
                  at_ns: int, elapsed_ns: int) -> None:
        """Report one tool-guard decision (and, when it refused, a block by category)."""
        self.decided(call.decision, call.principal, call.action,
                     call.resource or f"tool:{call.tool}", backend, at_ns, elapsed_ns,
                     kind="tool", call=call)

    def __repr__(self) -> str:
        return f"<Telemetry live={self.live} spans={self._tracer is not None} " \
               f"metrics={self._instruments is not None}>"


def _category(decision: Decision) -> tuple[str, bool]:
    kind = decision.reasons[0].kind if decision.reasons else "denied"
    if kind.startswith("hard_block:"):
        return kind[len("hard_block:"):], True
    if kind == "chain_rule" and decision.reasons[0].rule:
        return f"chain:{decision.reasons[0].rule}", False
    return kind, False


def _block_attributes(decision: Decision, tool: str) -> dict[str, Any]:
    category, hard = _category(decision)
    return {"agentauthz.guard.category": category, "agentauthz.guard.hard_block": hard,
            "agentauthz.tool.name": tool}


def _span_attributes(decision: Decision, principal: Any, action: str, resource: Any,
                     backend: str, kind: str, call: GuardedCall | None
                     ) -> Iterator[tuple[str, Any]]:
    key, agent, user, task = principal_chain(principal)
    rkey = resource if resource.__class__ is str else str(getattr(resource, "key", resource))
    yield "agentauthz.decision.id", decision.decision_id
    yield "agentauthz.decision.outcome", decision.outcome.value
    yield "agentauthz.decision.allowed", decision.allowed
    yield "agentauthz.decision.kind", kind
    yield "agentauthz.action", str(action)
    yield "agentauthz.resource", rkey
    yield "agentauthz.resource.type", rkey.partition(":")[0]
    yield "agentauthz.principal", key
    if agent is not None:
        yield "agentauthz.agent", agent
    if user is not None:
        yield "agentauthz.on_behalf_of", user
    if task is not None:
        yield "agentauthz.task.id", task
    if decision.policy_version:
        yield "agentauthz.policy.version", decision.policy_version
    yield "agentauthz.backend", backend
    if decision.reasons:
        first = decision.reasons[0]
        yield "agentauthz.decision.reason", first.kind
        if first.rule:
            yield "agentauthz.decision.rule", first.rule
    if call is not None:
        yield "agentauthz.tool.name", call.tool
        if not decision.allowed and decision.outcome.value == "deny":
            category, hard = _category(decision)
            yield "agentauthz.guard.category", category
            yield "agentauthz.guard.hard_block", hard
