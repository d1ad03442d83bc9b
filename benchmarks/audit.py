#!/usr/bin/env python3
"""Cost of auditing a decision, per sink, and of OpenTelemetry without an SDK.

    python benchmarks/audit.py [--calls N]

The workload is the agent benchmark's plain check: a user reaches a document
through team → folder → document, allowed, no context. Rows:

- check, no audit: ``Authorizer(...)`` without ``audit=`` or ``telemetry=``
  (the evaluator's hot path, nothing in front);
- MemorySink: ``audit=MemorySink()`` — per-call median and p99;
- LoggingSink (informational): ``audit=LoggingSink()`` with the
  ``agentauthz.decisions`` logger at INFO into a ``NullHandler``, so each
  record is rendered and logged;
- JsonlFileSink, caller: per-call median on the calling thread (queueing
  only; the writer thread renders, chains and writes in the background);
- JsonlFileSink, amortised: wall time of N decisions plus the final
  ``flush()`` (every record rendered, hashed and written), divided by N —
  the median of several rounds; once without and once with a three-key
  context;
- telemetry, no SDK: ``telemetry=True`` with no OpenTelemetry SDK installed
  (the API's no-op providers);
- telemetry, SDK (informational): a ``Telemetry`` with the SDK's tracer and
  meter providers and in-memory exporters — spans and metrics really made.

The cost of auditing is each row minus the check without audit. Targets
(the audit issue): MemorySink < 5 µs, JsonlFileSink < 20 µs amortised,
telemetry without an SDK < 1 µs.
"""

from __future__ import annotations

import gc
import logging
import os
import statistics
import sys
import tempfile
import time
from typing import Any

from _timing import Results, Verdicts, run_main, time_sync

from agentauthz import Authorizer
from agentauthz.audit import JsonlFileSink, LoggingSink, MemorySink

POLICY = """
types:
  user: {}
  team: {relations: {member: [user]}}
  folder: {relations: {owner: [team#member]}, permissions: {read: owner}}
  document:
    relations: {parent: [folder], owner: [user]}
    permissions: {read: owner | parent->read}
"""
DATA = {"relationships": ["team:eng#member@user:alice", "folder:f1#owner@team:eng#member",
                          "document:42#parent@folder:f1"]}
CONTEXT = {"tenant": "acme", "ip": "10.0.0.7", "api_key": "k-1234567890"}
ROUNDS = 5


def amortised(directory: str, n: int, context: dict[str, Any] | None) -> dict[str, float]:
    """Median over rounds of (N decisions + final flush) / N, a fresh file each round."""
    per_call, dropped = [], 0
    for r in range(ROUNDS):
        sink = JsonlFileSink(os.path.join(directory, f"amortised-{context is not None}-{r}.jsonl"),
                             buffer=n + 10)
        authz = Authorizer(POLICY, data=DATA, audit=sink)
        check = authz.check
        for _ in range(1000):
            check("user:alice", "read", "document:42", context)
        sink.flush(timeout=None)
        gc.collect()
        start = time.perf_counter_ns()
        for _ in range(n):
            check("user:alice", "read", "document:42", context)
        sink.flush(timeout=None)
        per_call.append((time.perf_counter_ns() - start) / n / 1e3)
        dropped += sink.dropped
        sink.close()
    return {"median_us": statistics.median(per_call), "p99_us": max(per_call),
            "dropped": float(dropped)}


def measure(n: int) -> Results:
    out: Results = {}
    doc = "document:42"
    plain = Authorizer(POLICY, data=DATA)
    assert plain.check("user:alice", "read", doc).allowed
    out["check, no audit"] = time_sync(lambda: plain.check("user:alice", "read", doc), n)

    memory = Authorizer(POLICY, data=DATA, audit=MemorySink(maxlen=n + 10_000))
    out["MemorySink"] = time_sync(lambda: memory.check("user:alice", "read", doc), n)

    logger = logging.getLogger("agentauthz.decisions")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logger.addHandler(logging.NullHandler())
    logged = Authorizer(POLICY, data=DATA, audit=LoggingSink())
    out["LoggingSink (informational)"] = time_sync(
        lambda: logged.check("user:alice", "read", doc), n // 4)

    with tempfile.TemporaryDirectory() as directory:
        sink = JsonlFileSink(os.path.join(directory, "caller.jsonl"), buffer=n + 10_000)
        filed = Authorizer(POLICY, data=DATA, audit=sink)
        out["JsonlFileSink, caller"] = time_sync(lambda: filed.check("user:alice", "read", doc), n)
        sink.close()
        out["JsonlFileSink, amortised"] = amortised(directory, n, None)
        out["JsonlFileSink, amortised, 3-key context"] = amortised(directory, n, CONTEXT)

    traced = Authorizer(POLICY, data=DATA, telemetry=True)
    assert traced.telemetry is not None and not traced.telemetry.live, "an SDK is installed"
    out["telemetry, no SDK"] = time_sync(lambda: traced.check("user:alice", "read", doc), n)

    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    except ImportError:
        return out

    from agentauthz.telemetry import Telemetry

    tracer_provider = TracerProvider()
    exporter = InMemorySpanExporter()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry = Telemetry(tracer_provider=tracer_provider,
                          meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()]))
    sdk = Authorizer(POLICY, data=DATA, telemetry=telemetry)

    def with_sdk() -> None:
        sdk.check("user:alice", "read", doc)
        if len(exporter._finished_spans) > 10_000:
            exporter.clear()

    out["telemetry, SDK (informational)"] = time_sync(with_sdk, n // 4)
    return out


def report(results: Results) -> tuple[str, Verdicts]:
    plain = results["check, no audit"]["median_us"]
    lines = ["| row | median µs | p99 µs | audit cost µs (row − check) |", "|---|---:|---:|---:|"]
    for name, r in results.items():
        cost = "" if name == "check, no audit" else f"{r['median_us'] - plain:.2f}"
        p99 = f"{r['p99_us']:.2f}" if "amortised" not in name else \
            f"(worst round {r['p99_us']:.2f})"
        lines.append(f"| {name} | {r['median_us']:.2f} | {p99} | {cost} |")
    memory = results["MemorySink"]["median_us"] - plain
    filed = results["JsonlFileSink, amortised"]["median_us"] - plain
    filed_ctx = results["JsonlFileSink, amortised, 3-key context"]["median_us"] - plain
    nosdk = results["telemetry, no SDK"]["median_us"] - plain
    dropped = int(results["JsonlFileSink, amortised"]["dropped"]
                  + results["JsonlFileSink, amortised, 3-key context"]["dropped"])
    verdicts = [
        ("audit cost with MemorySink < 5 µs (median)", f"{memory:.2f} µs", memory < 5.0),
        ("audit cost with JsonlFileSink < 20 µs amortised (no context; records dropped: "
         f"{dropped})", f"{filed:.2f} µs", filed < 20.0 and dropped == 0),
        ("audit cost with JsonlFileSink < 20 µs amortised (3-key context)", f"{filed_ctx:.2f} µs",
         filed_ctx < 20.0 and dropped == 0),
        ("cost of telemetry=True without an SDK < 1 µs (median)", f"{nosdk:.2f} µs",
         nosdk < 1.0),
    ]
    return "\n".join(lines), verdicts


if __name__ == "__main__":
    sys.exit(run_main(__doc__, measure, report))
