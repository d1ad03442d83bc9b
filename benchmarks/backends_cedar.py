#!/usr/bin/env python3
"""What the Cedar backend adds above cedarpy's own call, in process.

    python benchmarks/backends_cedar.py [--calls N]

The backend is the one the tests use (``tests/backends/servers/cedar_server.py``:
the shipped ``examples/backends/cedar/policy.cedar`` and ``schema.cedarschema``
over the demo data). The engine's own time is ``cedarpy.is_authorized`` on
the same request with the same pre-parsed policy set, entity set and schema
(what a program calling cedarpy directly, as well as it can, pays). The
adapter's overhead is also measured pairwise: each ``check`` times its own
cedarpy call, and the row subtracts it from that check.

Rows (per call, median and p99 of ``perf_counter_ns``; ``user:alice read
document:ticket-2``, an allow through two folders):

- ``cedarpy.is_authorized`` alone;
- ``CedarBackend.check`` and ``acheck``;
- the adapter's overhead, ``check`` minus its own cedarpy call (paired);
- ``Authorizer(backend=...)`` without a cache, and with ``cache=True`` asked
  the same question again (a cache hit);
- a check whose principal carries attributes (the entity set is rebuilt for
  the call: the slow path);
- ``check_many`` of 100 requests (one ``is_authorized_batch``) and
  ``cedarpy.is_authorized_batch`` of the same 100, per call; the batch's
  overhead per decision, ``check_many`` minus its own cedarpy call (paired);
- ``list_resources(user:alice, read, document)``: a scan of the demo's documents;
- one ``write`` into a store of 10,000 relationships (every write rebuilds
  and validates the entity set; ``min(N, 20)`` calls).

Targets: adapter overhead < 10 µs median per check and < 5 µs per decision
of a batch (both paired, so other load on the machine cancels out); a cache
hit at least 5× faster than an uncached check. Throughput is reported without
a target: a batch saves only the per-call Python work, while Cedar's
evaluation, the request's schema validation and cedarpy's decoding of each
result stay, so ``check_many`` decides at about the rate of single checks.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the demo backend lives with the tests

import cedarpy  # noqa: E402
from _timing import Results, Verdicts, run_main, stats, time_sync  # noqa: E402
from tests.backends.servers.cedar_server import POLICY, SCHEMA, demo_backend  # noqa: E402

from agentauthz import Authorizer, Entity  # noqa: E402
from agentauthz.backends.cedar import CedarBackend  # noqa: E402
from agentauthz.engine.evaluator import CheckRequest  # noqa: E402

REQUEST = ("user:alice", "read", "document:ticket-2")
BATCH = 100
BIG = 10_000


def _paired_overhead(backend: CedarBackend, n: int,
                     call: Callable[[], object] | None = None, per: int = 1) -> dict[str, float]:
    """Per call: its total time minus the time of the cedarpy call inside it, over ``per``."""
    call = call or (lambda: backend.check(*REQUEST))
    real = backend._cedar.is_authorized_batch
    inner = [0]
    pc = time.perf_counter_ns

    def timed(*args: Any, **kwargs: Any) -> Any:
        t = pc()
        try:
            return real(*args, **kwargs)
        finally:
            inner[0] = pc() - t

    backend._cedar.is_authorized_batch = timed
    try:
        for _ in range(min(n, 2000)):
            call()
        lat = [0] * n
        for i in range(n):
            t = pc()
            call()
            lat[i] = (pc() - t - inner[0]) // per
    finally:
        backend._cedar.is_authorized_batch = real
    return stats(lat)


def _big_store_write(n: int) -> dict[str, float]:
    backend = CedarBackend(POLICY, SCHEMA)
    rels = [f"document:d{i}#parent@folder:f{i % 100}" for i in range(BIG // 2)]
    rels += [f"folder:f{i % 100}#viewer@user:u{i}" for i in range(BIG // 2)]
    backend.write(add=rels)
    pc = time.perf_counter_ns
    lat = []
    for i in range(n):
        rel = f"document:d{i}#owner@user:u{i}"
        t = pc()
        backend.write(add=[rel])
        lat.append(pc() - t)
        backend.write(remove=[rel])
    return stats(lat)


def measure(n: int) -> Results:
    out: Results = {}
    with demo_backend() as backend:
        snap = backend._current()
        request = {"principal": {"type": "User", "id": "alice"},
                   "action": {"type": "Action", "id": "read"},
                   "resource": {"type": "Document", "id": "ticket-2"}, "context": "{}"}
        policies, entities, schema = backend._policyset, snap.entities, backend._schema
        assert cedarpy.is_authorized(request, policies, entities, schema=schema).allowed
        assert backend.check(*REQUEST).allowed
        out["cedarpy.is_authorized alone"] = time_sync(
            lambda: cedarpy.is_authorized(request, policies, entities, schema=schema), n)
        out["CedarBackend.check"] = time_sync(lambda: backend.check(*REQUEST), n)
        out["adapter overhead (check minus its cedarpy call)"] = _paired_overhead(backend, n)

        async def acheck() -> None:
            for _ in range(min(n, 2000)):
                await backend.acheck(*REQUEST)
            pc = time.perf_counter_ns
            lat = [0] * n
            for i in range(n):
                t = pc()
                await backend.acheck(*REQUEST)
                lat[i] = pc() - t
            out["CedarBackend.acheck"] = stats(lat)

        asyncio.run(acheck())
        plain = Authorizer(backend=backend)
        cached = Authorizer(backend=backend, cache=True)
        out["Authorizer(backend).check, no cache"] = time_sync(lambda: plain.check(*REQUEST), n)
        out["Authorizer(backend, cache=True).check, repeated"] = time_sync(
            lambda: cached.check(*REQUEST), n)
        alice = Entity("user", "alice", {"tenant": "acme", "department": "support"})
        out["check with principal attributes (entity set rebuilt)"] = time_sync(
            lambda: backend.check(alice, "read", "document:ticket-2"), min(n, 5000))
        batch = [CheckRequest("user:alice", a, r) for a in ("read", "write", "export")
                 for r in ("document:ticket-1", "document:ticket-2", "document:runbook-1",
                           "document:payroll", "folder:tickets")] * 10
        batch = (batch * 2)[:BATCH]
        raw = [{"principal": {"type": "User", "id": "alice"},
                "action": {"type": "Action", "id": r.action},
                "resource": {"type": r.resource.partition(":")[0].capitalize(),  # type: ignore[union-attr]
                             "id": r.resource.partition(":")[2]},  # type: ignore[union-attr]
                "context": "{}"} for r in batch]
        calls = max(n // 50, 100)
        out[f"check_many({BATCH})"] = time_sync(lambda: backend.check_many(batch), calls)
        out[f"cedarpy.is_authorized_batch({BATCH}) alone"] = time_sync(
            lambda: cedarpy.is_authorized_batch(raw, policies, entities, schema), calls)
        out[f"check_many({BATCH}) overhead per decision (minus its cedarpy call)"] = \
            _paired_overhead(backend, calls, lambda: backend.check_many(batch), BATCH)
        out["list_resources(document), demo scan"] = time_sync(
            lambda: backend.list_resources("user:alice", "read", "document"), min(n, 5000))
    out[f"write into {BIG:,} relationships (rebuild)"] = _big_store_write(min(n, 20))
    return out


def report(results: Results) -> tuple[str, Verdicts]:
    engine = results["cedarpy.is_authorized alone"]["median_us"]
    lines = ["| call | median µs | p99 µs | above cedarpy µs |", "|---|---:|---:|---:|"]
    for name, r in results.items():
        above = r["median_us"] - engine if name.startswith("CedarBackend") else None
        lines.append(f"| {name} | {r['median_us']:.2f} | {r['p99_us']:.2f} | "
                     f"{'' if above is None else f'{above:.2f}'} |")
    check = results["CedarBackend.check"]["median_us"]
    many = results[f"check_many({BATCH})"]["median_us"]
    raw = results[f"cedarpy.is_authorized_batch({BATCH}) alone"]["median_us"]
    lines += ["", "| throughput | decisions/s |", "|---|---:|",
              f"| sequential check | {1e6 / check:,.0f} |",
              f"| check_many({BATCH}) | {BATCH * 1e6 / many:,.0f} |",
              f"| cedarpy.is_authorized_batch({BATCH}) alone | {BATCH * 1e6 / raw:,.0f} |"]
    overhead = results["adapter overhead (check minus its cedarpy call)"]["median_us"]
    uncached = results["Authorizer(backend).check, no cache"]["median_us"]
    hit = results["Authorizer(backend, cache=True).check, repeated"]["median_us"]
    batch_over = results[f"check_many({BATCH}) overhead per decision (minus its cedarpy call)"]
    verdicts = [
        ("adapter overhead above cedarpy < 10 µs median", f"{overhead:.2f} µs", overhead < 10.0),
        (f"check_many({BATCH}) overhead < 5 µs per decision", f"{batch_over['median_us']:.2f} µs",
         batch_over["median_us"] < 5.0),
        ("a cache hit ≥ 5× faster than an uncached check", f"{uncached / hit:.1f}×",
         uncached / hit >= 5.0),
    ]
    return "\n".join(lines), verdicts


if __name__ == "__main__":
    sys.exit(run_main(__doc__, measure, report))
