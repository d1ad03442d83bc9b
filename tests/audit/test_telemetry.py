"""OpenTelemetry: spans and metrics, checked with the SDK's in-memory exporters."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from agentauthz import Authorizer, ConfigurationError
from agentauthz.agents import Delegation
from agentauthz.agents.guard import ToolDenied, guarded_tool
from agentauthz.audit import MemorySink
from agentauthz.backends import BaseBackend
from agentauthz.model import Decision
from agentauthz.telemetry import Telemetry

POLICY = """
types:
  user: {}
  agent: {}
  team: {relations: {member: [user, agent]}}
  document:
    relations: {team: [team]}
    permissions: {read: team->member}
  tool:
    relations: {user: [user, agent]}
    permissions: {call: user}
agents:
  - {id: agent:bot, owner: user:alice, purpose: reads documents,
     tools: [read_doc, rotate_password]}
tools:
  read_doc: {action: read, resource: "document:{doc_id}"}
  rotate_password: {hard_block: credential_change}
"""
DATA = {"relationships": ["team:t#member@user:alice", "team:t#member@agent:bot",
                          "document:1#team@team:t"]}


class Otel:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def telemetry(self, **options: Any) -> Telemetry:
        return Telemetry(tracer_provider=self.tracer_provider,
                         meter_provider=self.meter_provider, **options)

    def finished(self) -> list[Any]:
        return list(self.spans.get_finished_spans())

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        if data is None:
            return []
        return [point for rm in data.resource_metrics for sm in rm.scope_metrics
                for metric in sm.metrics if metric.name == name
                for point in metric.data.data_points]


@pytest.fixture
def otel() -> Otel:
    return Otel()


@pytest.fixture
def authz(otel: Otel) -> Authorizer:
    return Authorizer(POLICY, data=DATA, telemetry=otel.telemetry())


def test_a_span_per_decision(authz: Authorizer, otel: Otel) -> None:
    allowed = authz.check("user:alice", "read", "document:1")
    denied = authz.check("user:bob", "read", Delegation("agent:bot").agent)
    first, second = otel.finished()
    assert first.name == "agentauthz.check" and first.kind is SpanKind.INTERNAL
    assert first.instrumentation_scope.name == "agentauthz"
    attrs = dict(first.attributes)
    assert attrs == {
        "agentauthz.decision.id": allowed.decision_id,
        "agentauthz.decision.outcome": "allow", "agentauthz.decision.allowed": True,
        "agentauthz.decision.kind": "check", "agentauthz.action": "read",
        "agentauthz.resource": "document:1", "agentauthz.resource.type": "document",
        "agentauthz.principal": "user:alice", "agentauthz.policy.version": authz.policy_version,
        "agentauthz.backend": "local", "agentauthz.decision.reason": "permission"}
    assert first.end_time >= first.start_time > 0
    assert first.status.status_code is StatusCode.UNSET  # a decision is not an error
    assert second.attributes["agentauthz.decision.outcome"] == "deny"
    assert second.attributes["agentauthz.decision.id"] == denied.decision_id
    assert second.status.status_code is StatusCode.UNSET


def test_the_span_is_a_child_of_the_callers_span(authz: Authorizer, otel: Otel) -> None:
    tracer = otel.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("GET /documents/1") as request:
        authz.check("user:alice", "read", "document:1")
    decision = next(s for s in otel.finished() if s.name == "agentauthz.check")
    assert decision.parent is not None
    assert decision.parent.span_id == request.get_span_context().span_id
    assert decision.context.trace_id == request.get_span_context().trace_id


async def test_acheck_and_delegation_in_a_task(authz: Authorizer, otel: Otel) -> None:
    with authz.acting_as("agent:bot", on_behalf_of="user:alice"), \
            authz.task(scope=["read document:*"], purpose="answer") as task:
        await authz.acheck(task.principal, "read", "document:1")
    (span,) = otel.finished()
    assert span.attributes["agentauthz.agent"] == "agent:bot"
    assert span.attributes["agentauthz.on_behalf_of"] == "user:alice"
    assert span.attributes["agentauthz.task.id"] == task.task_id
    assert span.attributes["agentauthz.decision.reason"] == "delegation"


def test_a_failing_backend_marks_the_span(otel: Otel) -> None:
    class Down(BaseBackend):
        name = "opa"

        def check(self, principal: Any, action: str, resource: Any, context: Any = None
                  ) -> Decision:
            raise TimeoutError("no answer")

    authz = Authorizer(backend=Down(), telemetry=otel.telemetry())
    assert not authz.check("user:alice", "read", "document:1").allowed
    (span,) = otel.finished()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["agentauthz.backend"] == "opa"


def test_decision_metrics(authz: Authorizer, otel: Otel) -> None:
    for _ in range(3):
        authz.check("user:alice", "read", "document:1")
    authz.check("user:bob", "read", "document:1")
    counts = {p.attributes["agentauthz.decision.outcome"]: p.value
              for p in otel.points("agentauthz.decisions")}
    assert counts == {"allow": 3, "deny": 1}
    point = next(p for p in otel.points("agentauthz.decisions"))
    assert point.attributes == {"agentauthz.decision.outcome": "allow",
                                "agentauthz.decision.kind": "check",
                                "agentauthz.backend": "local"}
    durations = {p.attributes["agentauthz.decision.outcome"]: p
                 for p in otel.points("agentauthz.decision.duration")}
    assert durations["allow"].count == 3 and durations["allow"].sum > 0


def test_cache_hit_ratio(otel: Otel) -> None:
    authz = Authorizer(POLICY, data=DATA, cache=True, telemetry=otel.telemetry())
    for _ in range(4):
        authz.check("user:alice", "read", "document:1")
    (point,) = otel.points("agentauthz.cache.hit_ratio")
    assert point.value == pytest.approx(0.75)
    assert point.attributes == {"agentauthz.backend": "local"}


def test_tool_guard_spans_and_blocks_by_category(authz: Authorizer, otel: Otel) -> None:
    @guarded_tool("read_doc", action="read", resource="document:{doc_id}", authz=authz)
    def read_doc(doc_id: str) -> str:
        return doc_id

    @guarded_tool("rotate_password", hard_block="credential_change", authz=authz)
    def rotate_password(user: str) -> str:
        return user

    def run_shell(command: str) -> str:
        return command

    shell = authz.guard.wrap(run_shell)
    with authz.acting_as("agent:bot", on_behalf_of="user:alice"):
        read_doc("1")
        for _ in range(2):
            with pytest.raises(ToolDenied):
                rotate_password("user:alice")
        with pytest.raises(ToolDenied):
            shell("rm -rf /")
    tools = [s for s in otel.finished() if s.name == "agentauthz.tool_call"]
    assert [s.attributes["agentauthz.tool.name"] for s in tools] == [
        "read_doc", "rotate_password", "rotate_password", "run_shell"]
    assert tools[1].attributes["agentauthz.guard.category"] == "credential_change"
    assert tools[1].attributes["agentauthz.guard.hard_block"] is True
    blocks = {(p.attributes["agentauthz.guard.category"], p.attributes["agentauthz.tool.name"],
               p.attributes["agentauthz.guard.hard_block"]): p.value
              for p in otel.points("agentauthz.guard.blocks")}
    assert blocks[("credential_change", "rotate_password", True)] == 2
    assert sum(blocks.values()) == 3
    kinds = {(p.attributes["agentauthz.decision.kind"], p.attributes[
        "agentauthz.decision.outcome"]): p.value for p in otel.points("agentauthz.decisions")}
    assert kinds[("tool", "allow")] == 1 and kinds[("tool", "deny")] == 3


def test_spans_or_metrics_alone(otel: Otel) -> None:
    authz = Authorizer(POLICY, data=DATA, telemetry=otel.telemetry(metrics=False))
    authz.check("user:alice", "read", "document:1")
    assert len(otel.finished()) == 1 and otel.points("agentauthz.decisions") == []
    other = Otel()
    authz = Authorizer(POLICY, data=DATA, telemetry=other.telemetry(spans=False))
    authz.check("user:alice", "read", "document:1")
    assert other.finished() == [] and len(other.points("agentauthz.decisions")) == 1


def test_telemetry_and_audit_together(otel: Otel) -> None:
    sink = MemorySink()
    authz = Authorizer(POLICY, data=DATA, audit=sink, telemetry=otel.telemetry())
    decision = authz.check("user:alice", "read", "document:1")
    (span,) = otel.finished()
    assert span.attributes["agentauthz.decision.id"] == sink.records[0].decision_id \
        == decision.decision_id


def test_failing_telemetry_never_fails_a_decision(caplog: pytest.LogCaptureFixture) -> None:
    class BrokenTracer:
        def start_span(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("tracer exploded")

    class Broken(TracerProvider):
        def get_tracer(self, *args: Any, **kwargs: Any) -> Any:
            return BrokenTracer()

    authz = Authorizer(POLICY, data=DATA, telemetry=Telemetry(tracer_provider=Broken()))
    with caplog.at_level(logging.ERROR, "agentauthz"):
        assert not authz.check("user:bob", "read", "document:1").allowed
        assert authz.check("user:alice", "read", "document:1").allowed
    assert "tracer exploded" in caplog.text and "the decision stands" in caplog.text


def test_without_an_sdk_nothing_is_reported() -> None:
    authz = Authorizer(POLICY, data=DATA, telemetry=True)
    assert authz.telemetry is not None and not authz.telemetry.live
    assert authz.check("user:alice", "read", "document:1").allowed


def test_a_bad_telemetry_option_fails_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="telemetry"):
        Authorizer(POLICY, telemetry="yes")  # type: ignore[arg-type]


def _python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_global_sdk_installed_later_is_picked_up() -> None:
    out = _python(f"""
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from agentauthz import Authorizer
        from agentauthz.telemetry import Telemetry

        authz = Authorizer({POLICY!r}, data={DATA!r}, telemetry=Telemetry(recheck=0))
        authz.check("user:alice", "read", "document:1")
        before = authz.telemetry.live
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        authz.check("user:alice", "read", "document:1")
        print(before, authz.telemetry.live, len(exporter.get_finished_spans()))
    """)
    assert out == "False True 1"


def test_the_library_never_imports_the_sdk() -> None:
    out = _python(f"""
        import sys
        from agentauthz import Authorizer

        Authorizer({POLICY!r}, data={DATA!r}, telemetry=True).check("user:alice", "read",
                                                                      "document:1")
        print(sorted(m for m in sys.modules if m.startswith("opentelemetry.sdk")))
    """)
    assert out == "[]"
