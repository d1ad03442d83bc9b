#!/usr/bin/env python3
"""Running at scale: what sharing state through Redis costs, and how fast a change spreads.

    python benchmarks/scale.py [--calls N] [--revocations N] [--seconds S] [--url URL]

Starts its own ``redis-server`` on a free loopback port (no persistence, in a
temporary directory) unless ``--url`` names one, and stops it after. The
tool-guard setup of ``benchmarks/guard.py``: an agent acting for a user inside
a task calls a declared read tool the policy allows, four chain rules, an
in-memory audit sink. Rows:

- per call (median and p99, ``perf_counter_ns`` around each call), in memory
  and with ``RedisState`` on loopback: the delegated check (Redis adds only
  the readiness test: decisions are local), the guarded call (Redis adds the
  ledger's compare-and-set script: one round trip), a revocation (the write
  and its echo on this process's feed), and a bare redis-py ``PING`` for
  reference;
- revocation propagation: one process revokes ``--revocations`` agents one
  after another; three other processes record, for each, the time from the
  start of the ``revoke`` call to the moment their copy holds it (after which
  every decision there denies): median and max over all of them;
- throughput: guarded calls per second summed over 4 worker processes for
  ``--seconds`` seconds, each in its own task; in memory, with Redis, and
  with Redis when all 4 share one task (one ledger: optimistic transactions
  retried on conflict).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from _timing import Verdicts, time_sync
from guard import DATA, POLICY  # the same workload as the in-memory guard benchmark

from agentauthz import Authorizer
from agentauthz.agents.guard import ToolCallRecord, guard_tools

KEYS = {"k1": "the benchmark's shared task signing key, long enough"}
WORKERS = 4
WATCHERS = 3


def authorizer(url: str | None, namespace: str) -> Authorizer:
    state = None
    if url is not None:
        from agentauthz.scale import RedisState

        state = RedisState(url, namespace=namespace)
    return Authorizer(POLICY, data=DATA, task_keys=KEYS, state=state)


def read_ticket(ticket_id: str) -> str:
    return ticket_id


# ------------------------------------------------------------------ redis-server
@contextmanager
def redis_server(url: str | None) -> Iterator[str]:
    if url is not None:
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (apt-get install redis-server), or pass --url")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as directory:
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", directory, "--daemonize", "no",
             "--loglevel", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            import redis

            client = redis.Redis(port=port)
            for _ in range(500):
                try:
                    client.ping()
                    break
                except redis.RedisError:
                    time.sleep(0.01)
            client.close()
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait(10)


# ----------------------------------------------------------------- per call
def per_call(url: str | None, n: int) -> dict[str, dict[str, float]]:
    where = "with Redis" if url else "in memory"
    authz = authorizer(url, f"bench-{os.getpid()}-{time.time_ns()}")
    sink: list[ToolCallRecord] = []
    (guarded,) = guard_tools([read_ticket], authz=authz, audit=sink.append)
    out: dict[str, dict[str, float]] = {}
    with authz.acting_as("agent:bot", on_behalf_of="user:alice"), \
            authz.task(scope=[("read", "ticket:*")], ttl=3600, purpose="benchmark") as task:
        principal = task.principal
        out[f"delegated check, {where}"] = time_sync(
            lambda: authz.check(principal, "read", "ticket:1"), n)

        def call() -> None:
            guarded(ticket_id="1")
            if len(sink) > 10_000:
                sink.clear()

        out[f"guarded call, {where}"] = time_sync(call, n)
        assert all(r.decision.allowed for r in sink), "every timed call must be allowed"
    if authz._state is not None:  # the floor: one round trip through redis-py, doing nothing
        out["redis-py PING (reference)"] = time_sync(authz._state.client.ping, n)
    counter = iter(range(10**9))
    out[f"revoke an agent, {where}"] = time_sync(
        lambda: authz.revoke(agent=f"agent:gone-{next(counter)}"), max(200, n // 10))
    if authz._state is not None:
        authz._state.close()
    return out


# ------------------------------------------------------------- propagation
def watcher(conn: Any, url: str, namespace: str) -> None:
    from agentauthz.scale import codec

    authz = authorizer(url, namespace)
    delays: list[float] = []

    def applied(kind: str, data: str) -> None:
        if kind == "rev":
            now = time.time()
            delays.append(now - codec.loads(data)["revoked_at"])

    authz._state.feed.on_applied = applied  # type: ignore[union-attr]
    conn.send("ready")
    expected = conn.recv()
    deadline = time.monotonic() + 60
    while len(delays) < expected and time.monotonic() < deadline:
        time.sleep(0.01)
    for i in (0, expected - 1):  # and decisions there deny: a spot check
        assert authz.revocations.revoked("agent", [f"agent:r{i}"]) is not None
    conn.send(delays)
    authz._state.close()  # type: ignore[union-attr]


def propagation(url: str, revocations: int) -> dict[str, float]:
    ctx = multiprocessing.get_context("spawn")
    namespace = f"bench-prop-{time.time_ns()}"
    pipes = []
    procs = []
    for _ in range(WATCHERS):
        parent, child = ctx.Pipe()
        p = ctx.Process(target=watcher, args=(child, url, namespace))
        p.start()
        pipes.append(parent)
        procs.append(p)
    for parent in pipes:
        assert parent.recv() == "ready"
    authz = authorizer(url, namespace)
    for i in range(revocations):
        authz.revoke(agent=f"agent:r{i}", reason="benchmark")
    for parent in pipes:
        parent.send(revocations)
    delays = [d for parent in pipes for d in parent.recv()]
    for p in procs:
        p.join(30)
    authz._state.close()  # type: ignore[union-attr]
    assert len(delays) == WATCHERS * revocations, "a watcher missed revocations"
    ms = sorted(d * 1000 for d in delays)
    return {"median_ms": statistics.median(ms), "p99_ms": ms[int(len(ms) * 0.99)],
            "max_ms": ms[-1], "count": float(len(ms))}


# ------------------------------------------------------------- throughput
def runner(conn: Any, url: str | None, namespace: str, token: str, seconds: float,
           start: Any) -> None:
    authz = authorizer(url, namespace)
    (guarded,) = guard_tools([read_ticket], authz=authz, on_deny="message")
    with authz.acting_as("agent:bot", on_behalf_of="user:alice"), \
            authz.join_task(token, agent="agent:bot"):
        for _ in range(200):
            guarded(ticket_id="1")
        conn.send("ready")
        start.wait()
        calls = denied = 0
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            if guarded(ticket_id="1") != "1":
                denied += 1
            calls += 1
    conn.send((calls, denied))
    if authz._state is not None:
        authz._state.close()


def throughput(url: str | None, seconds: float, *, shared_task: bool, workers: int) -> float:
    ctx = multiprocessing.get_context("spawn")
    namespace = f"bench-tp-{time.time_ns()}"
    owner = authorizer(url, namespace)
    start = ctx.Event()
    with owner.acting_as("agent:bot", on_behalf_of="user:alice"):
        tasks = [owner.task(scope=[("read", "ticket:*")], ttl=3600, purpose="benchmark")
                 for _ in range(1 if shared_task else workers)]
        pipes, procs = [], []
        for i in range(workers):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=runner, args=(child, url, namespace,
                                                 tasks[i % len(tasks)].token, seconds, start))
            p.start()
            pipes.append(parent)
            procs.append(p)
        for parent in pipes:
            assert parent.recv() == "ready"
        start.set()
        results = [parent.recv() for parent in pipes]
        for p in procs:
            p.join(30)
    if owner._state is not None:
        owner._state.close()
    assert all(denied == 0 for _, denied in results), f"denied calls: {results}"
    return sum(calls for calls, _ in results) / seconds


# ------------------------------------------------------------------- main
def measure(args: argparse.Namespace) -> dict[str, Any]:
    with redis_server(args.url) as url:
        rows: dict[str, dict[str, float]] = {}
        rows.update(per_call(None, args.calls))
        rows.update(per_call(url, args.calls))
        prop = propagation(url, args.revocations)
        tp = {
            "1 process, in memory": throughput(None, args.seconds, shared_task=False, workers=1),
            "1 process, with Redis": throughput(url, args.seconds, shared_task=False, workers=1),
            f"{WORKERS} processes, in memory": throughput(None, args.seconds, shared_task=False,
                                                          workers=WORKERS),
            f"{WORKERS} processes, with Redis, a task each": throughput(
                url, args.seconds, shared_task=False, workers=WORKERS),
            f"{WORKERS} processes, with Redis, one shared task": throughput(
                url, args.seconds, shared_task=True, workers=WORKERS),
        }
    return {"per_call": rows, "propagation": prop, "throughput": tp}


def report(results: dict[str, Any]) -> tuple[str, Verdicts]:
    rows = results["per_call"]
    lines = ["| per call | median µs | p99 µs |", "|---|---:|---:|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['median_us']:.2f} | {r['p99_us']:.2f} |")
    added = {q: rows["guarded call, with Redis"][f"{q}_us"] - rows["guarded call, in memory"][f"{q}_us"]
             for q in ("median", "p99")}
    gate = rows["delegated check, with Redis"]["median_us"] - \
        rows["delegated check, in memory"]["median_us"]
    lines += ["", f"Added by Redis per guarded call: {added['median']:.1f} µs median, "
              f"{added['p99']:.1f} µs p99; per delegated check: {gate:.2f} µs median.", ""]
    prop = results["propagation"]
    lines += ["| revocation propagation | median ms | p99 ms | max ms | revocations seen |",
              "|---|---:|---:|---:|---:|",
              f"| one process revokes, {WATCHERS} others apply | {prop['median_ms']:.2f} | "
              f"{prop['p99_ms']:.2f} | {prop['max_ms']:.2f} | {int(prop['count']):,} |", ""]
    lines += ["| throughput, guarded calls | calls/s |", "|---|---:|"]
    for name, value in results["throughput"].items():
        lines.append(f"| {name} | {value:,.0f} |")
    verdicts: Verdicts = [
        ("added latency per guarded call with Redis on loopback < 1 ms median",
         f"{added['median']:.0f} µs", added["median"] < 1000),
        ("decisions stay local: a delegated check with Redis ≤ 1 µs slower than in memory",
         f"{gate:.2f} µs", gate <= 1.0),
        ("revocation propagation across processes < 10 ms median",
         f"{prop['median_ms']:.2f} ms", prop["median_ms"] < 10),
        ("revocation propagation across processes < 1 s max (max_silence)",
         f"{prop['max_ms']:.1f} ms", prop["max_ms"] < 1000),
    ]
    return "\n".join(lines), verdicts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--revocations", type=int, default=1_000)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--url", help="a running Redis to use (default: start one)")
    ap.add_argument("--json", action="store_true", help="print raw results as JSON")
    args = ap.parse_args(argv)
    results = measure(args)
    if args.json:
        print(json.dumps(results))
        return 0
    table, verdicts = report(results)
    print(table)
    print()
    for target, measured, ok in verdicts:
        print(f"- {target}: {measured} — {'met' if ok else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
