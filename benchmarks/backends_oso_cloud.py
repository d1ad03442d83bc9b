#!/usr/bin/env python3
"""Cost of the Oso Cloud adapter, on loopback against the test server.

    python benchmarks/backends_oso_cloud.py [--calls N]

The server is ``tests/backends/servers/oso_cloud_server.py``: Oso Cloud's HTTP
endpoints on 127.0.0.1, deciding with agentauthz's evaluator on the demo
policy and data. It runs in a process of its own and records how long each
request spends in its handler — the server's own time — so that the rest can
be charged to the client. HTTP rows make ``min(N, 2000)`` calls each. Rows
(median and p99, ``perf_counter_ns`` around each call):

- the server's own time per request (read body, decide, write answer);
- ``Oso.authorize`` of the SDK, called directly: SDK + HTTP on loopback;
- ``OsoCloudBackend.check``: the same SDK call on the backend's pool, under
  its deadline, with the request built and the answer read;
- ``check`` minus the server's own time for that very request: the overhead
  above the server (adapter + SDK + HTTP stack);
- ``acheck`` on one event loop; ``Authorizer.check`` with the backend, without
  and with ``cache=True`` (the same request repeated: a cache hit);
- ``check_many`` of 100 requests (``max_concurrency`` 16) against 100 ``check``
  calls one after the other, as decisions per second: on plain loopback (where
  the client's CPU is the limit), and against a server that adds 5 ms to every
  answer, as a remote Oso Cloud's network round trip would.

Targets: the adapter's own cost (``check`` minus the direct SDK call) at most
a quarter of the SDK's own loopback call; a cached decision under 20 µs;
``check_many`` of 100 at least 4× the throughput of one-by-one checks when
each answer takes 5 ms to come back.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from _timing import Results, Verdicts, run_main, stats, time_async, time_sync

from agentauthz import Authorizer
from agentauthz.backends.oso_cloud import OsoCloudBackend
from agentauthz.engine.evaluator import CheckRequest

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "e_test_0123456789"  # the test server's (tests/backends/servers/oso_cloud_server.py)
P, A, R = "user:alice", "read", "document:ticket-1"
BATCH = [CheckRequest(p, a, f"document:{d}") for p in ("user:alice", "user:bob")
         for a in ("read", "write", "export")
         for d in ("ticket-1", "ticket-2", "runbook-1", "payroll", "globex-plan")] * 4
BATCH = BATCH[:100]


@contextmanager
def served(latency_ms: float = 0.0) -> Iterator[str]:
    """The test server in a process of its own; yields its URL."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.backends.servers.oso_cloud_server",
                             str(latency_ms)], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(10)


def handler_ns(url: str) -> list[int]:
    """The server's own time of every request since the last call, in order."""
    with urllib.request.urlopen(f"{url}/_test/handler_ns") as answer:
        return list(json.load(answer))


def batch_rows(backend: OsoCloudBackend, label: str, rounds: int,
               out: dict[str, dict[str, float]]) -> None:
    out[f"check_many(100){label}"] = time_sync(lambda: backend.check_many(BATCH), rounds)
    out[f"100 × check, one by one{label}"] = time_sync(
        lambda: [backend.check(r.principal, r.action, r.resource) for r in BATCH], rounds)
    out[f"acheck_many(100){label}"] = time_async(lambda: backend.acheck_many(BATCH), rounds)


def measure(n: int) -> Results:
    calls = min(n, 2000)
    rounds = max(10, calls // 100)
    out: dict[str, dict[str, float]] = {}
    with served() as url, OsoCloudBackend(url, API_KEY, timeout=5.0) as backend:
        oso = backend._oso
        actor, resource = backend.value(P), backend.value(R)
        assert backend.check(P, A, R).allowed
        out["SDK Oso.authorize, direct"] = time_sync(lambda: oso.authorize(actor, A, resource),
                                                     calls)
        for _ in range(min(calls, 500)):
            backend.check(P, A, R)
        handler_ns(url)
        pc = time.perf_counter_ns
        client = [0] * calls
        for i in range(calls):
            t = pc()
            backend.check(P, A, R)
            client[i] = pc() - t
        own = handler_ns(url)
        assert len(own) == calls, "one server request per check"
        out["server's own time"] = stats(list(own))
        out["OsoCloudBackend.check"] = stats(list(client))
        out["check minus server's own time"] = stats([c - s for c, s in zip(client, own,
                                                                             strict=True)])
        out["OsoCloudBackend.acheck"] = time_async(lambda: backend.acheck(P, A, R), calls)
        plain = Authorizer(backend=backend)
        cached = Authorizer(backend=backend, cache=True)
        out["Authorizer.check (backend)"] = time_sync(lambda: plain.check(P, A, R), calls)
        out["Authorizer.check, cache=True, repeated"] = time_sync(lambda: cached.check(P, A, R), n)
        batch_rows(backend, ", loopback", rounds, out)
    with served(5.0) as url, OsoCloudBackend(url, API_KEY, timeout=5.0) as backend:
        batch_rows(backend, ", 5 ms round trip", 10, out)
    return out


def report(results: Results) -> tuple[str, Verdicts]:
    lines = ["| call | median µs | p99 µs | decisions/s (median) |", "|---|---:|---:|---:|"]
    for name, r in results.items():
        per = 100 if "(100)" in name or "100 ×" in name else 1
        rate = f"{per / r['median_us'] * 1e6:,.0f}" if "server" not in name else ""
        lines.append(f"| {name} | {r['median_us']:.1f} | {r['p99_us']:.1f} | {rate} |")
    sdk = results["SDK Oso.authorize, direct"]["median_us"]
    check = results["OsoCloudBackend.check"]["median_us"]
    over = results["check minus server's own time"]["median_us"]
    own = check - sdk
    hit = results["Authorizer.check, cache=True, repeated"]["median_us"]
    batch = results["check_many(100), 5 ms round trip"]["median_us"]
    serial = results["100 × check, one by one, 5 ms round trip"]["median_us"]
    lines.append("")
    lines.append(f"Adapter overhead above the server's own time: {over:.1f} µs median "
                 f"({results['check minus server' + chr(39) + 's own time']['p99_us']:.1f} µs p99); "
                 f"of which the adapter itself (pool hop, deadline, request and answer): "
                 f"{own:.1f} µs.")
    verdicts = [
        (f"adapter's own cost (check − direct SDK call) ≤ ¼ of the SDK call ({sdk:.0f} µs)",
         f"{own:.1f} µs", own <= sdk / 4),
        ("a cached decision < 20 µs median", f"{hit:.2f} µs", hit < 20.0),
        ("check_many(100) ≥ 4× the throughput of 100 one-by-one checks (5 ms round trip)",
         f"{serial / batch:.1f}×", serial / batch >= 4.0),
    ]
    return "\n".join(lines), verdicts


if __name__ == "__main__":
    sys.exit(run_main(__doc__, measure, report))
