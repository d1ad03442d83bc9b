#!/usr/bin/env python3
"""What the OPA backend adds above OPA's own time, on loopback.

    python benchmarks/backends_opa.py [--calls N]

OPA's stand-in from the tests (``tests/backends/servers/opa_server.py``:
OPA's REST Data API, the shipped ``examples/backends/opa/policy.rego`` run by
regopy over the demo data) runs in a child process, as OPA would run beside
an application. It times its own handler for every request, from the complete
request (headers and body read) to the last byte written, and the benchmark subtracts that time
from each call it made (calls are sequential, so they pair one to one). What the server spends
parsing the request's headers counts as overhead: the figures are an upper
bound on the adapter's share. A
second server in the same child answers a canned ``{"result": true}`` without
evaluating anything: the batch rows use it to show what the adapter can push
through, which the Rego server (one interpreter behind a lock) cannot.

Rows (per call, median and p99 of ``perf_counter_ns``; remote rows time
``min(N, 5000)`` calls, ``user:alice read document:ticket-1``, an allow; the
raw, sync and async rows run in ten alternating slices, so that the load of a
shared machine falls on each alike):

- the server's own time per request;
- ``httpx.Client.post`` alone, minus the server's time: the HTTP client and
  loopback, the floor any Python client pays;
- ``OPABackend.check`` and ``acheck``, minus the server's time: the adapter's
  overhead (input encoding, HTTP, answer decoding, the decision);
- the adapter's own logic without I/O (encode, decode, build the decision);
- ``Authorizer(backend=..., cache=True)`` asked the same question again (a
  cache hit), beside the same authorizer without a cache.

Batch rows: decisions per second of ``check_many`` / ``acheck_many`` of 100
requests (``max_concurrency=8``, the default) against 100 sequential ``check`` calls, on
three servers: the Rego one, the canned one, and the canned one answering
after 2 ms (a network hop). Against a server in one Python process on the
same two cores, concurrency has nothing to overlap; against a server some
milliseconds away, it overlaps the waits.

Targets: adapter overhead above the server < 1 ms median (sync and async);
a cache hit at least 20× faster than asking OPA; a concurrent batch at least
3× the sequential throughput against the server 2 ms away.
"""

from __future__ import annotations

import asyncio
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the stand-in server lives with the tests

from _timing import (  # noqa: E402
    Results,
    ServerChild,
    Verdicts,
    arate,
    latency_and_rate_rows,
    rate,
    run_main,
    stats,
    time_sync,
)

REQUEST = ("user:alice", "read", "document:ticket-1")
MAX_REMOTE_CALLS = 5000
BATCH = 100
AWAY_S = 0.002  # the canned server "2 ms away": a network hop to an OPA sidecar or service
CANNED = (b'{"result": {"allow": true, "reasons": [{"kind": "permission", "message": '
          b'"document.read = (owner | parent->read) - banned"}]}, "decision_id": '
          b'"4f2b7a52-0c1d-4d4e-9a53-5a2f1c9e8b11"}')


def serve(conn: Connection) -> None:
    """The child: two servers, then answer ``reset`` / ``stats`` / ``stop`` on ``conn``."""
    from tests.backends.servers.opa_server import OPAServer, Reply, demo_engine

    rego = OPAServer(demo_engine()).start()
    canned = OPAServer(responder=lambda path, inp, n: Reply(doc={"result": True})).start()
    away = OPAServer(responder=lambda path, inp, n: Reply(doc={"result": True},
                                                         delay=AWAY_S)).start()
    conn.send((rego.url, canned.url, away.url))
    while True:
        command = conn.recv()
        while rego.in_flight:  # a handler records its time just after its last byte
            time.sleep(0.0005)
        if command == "reset":
            rego.handler_ns.clear()
            canned.handler_ns.clear()
            conn.send(None)
        elif command == "stats":
            conn.send(list(rego.handler_ns))
        else:
            for server in (rego, canned, away):
                server.stop()
            conn.send(None)
            return


def timed(child: ServerChild, call: Any, n: int) -> tuple[list[int], list[int]]:
    """Time ``n`` sequential calls: (each call's latency, the server's own time for it)."""
    child.ask("reset")
    pc = time.perf_counter_ns
    lat = [0] * n
    for i in range(n):
        t = pc()
        call()
        lat[i] = pc() - t
    server = child.ask("stats")
    assert len(server) == n, f"expected {n} requests, the server saw {len(server)}"
    return lat, server


def atimed(child: ServerChild, call: Any, n: int) -> tuple[list[int], list[int]]:
    """:func:`timed` for ``call`` = (a coroutine function, the coroutine that closes its client)."""
    ask, close = call

    async def loop() -> list[int]:
        await ask()  # opens the client of this event loop
        child.ask("reset")
        pc = time.perf_counter_ns
        lat = [0] * n
        for i in range(n):
            t = pc()
            await ask()
            lat[i] = pc() - t
        await close()  # an AsyncClient belongs to one event loop
        return lat

    lat = asyncio.run(loop())
    return lat, child.ask("stats")


def interleaved(child: ServerChild, calls: dict[str, tuple[bool, Any]], n: int
                ) -> dict[str, tuple[list[int], list[int]]]:
    """Time each call ``n`` times, in ten alternating slices, so that load shifts on a
    shared machine fall on every row alike. ``calls``: name -> (is async, call)."""
    out: dict[str, tuple[list[int], list[int]]] = {name: ([], []) for name in calls}
    for is_async, call in calls.values():  # warm up every client and connection
        (atimed if is_async else timed)(child, call, min(n, 300))
    for _ in range(10):
        for name, (is_async, call) in calls.items():
            lat, server = (atimed if is_async else timed)(child, call, max(1, n // 10))
            out[name][0].extend(lat)
            out[name][1].extend(server)
    return out


def minus_server(lat: list[int], server: list[int]) -> dict[str, float]:
    return stats([c - s for c, s in zip(lat, server, strict=True)])


def measure(n: int) -> Results:
    import httpx
    from tests.backends.servers.opa_server import DECISION

    from agentauthz import Authorizer
    from agentauthz.backends.opa import OPABackend
    from agentauthz.engine.evaluator import CheckRequest

    remote = min(n, MAX_REMOTE_CALLS)
    out: Results = {}
    child = ServerChild(serve)
    rego_url, canned_url, away_url = child.urls
    try:
        backend = OPABackend(rego_url, decision=DECISION)
        body = backend._check_flow(*REQUEST, None).send(None).body  # the exact request bytes
        url = f"{rego_url}/v1/data/{DECISION}"
        assert backend.check(*REQUEST).allowed
        asynchronous = OPABackend(rego_url, decision=DECISION)

        async def acheck() -> None:
            await asynchronous.acheck(*REQUEST)

        with httpx.Client() as raw:
            got = interleaved(child, {
                "raw": (False, lambda: raw.post(url, content=body)),
                "check": (False, lambda: backend.check(*REQUEST)),
                "acheck": (True, (acheck, asynchronous.aclose))}, remote)
        out["server's own time per request"] = stats(list(got["check"][1]))
        out["httpx.Client.post alone, minus the server"] = minus_server(*got["raw"])
        out["OPABackend.check, minus the server"] = minus_server(*got["check"])
        out["OPABackend.acheck, minus the server"] = minus_server(*got["acheck"])

        def logic() -> None:
            flow = backend._check_flow(*REQUEST, None)
            call = flow.send(None)
            try:
                flow.send(backend._document(call, 200, CANNED))
            except StopIteration:
                return
            raise AssertionError("a check is one request")

        out["adapter logic alone (no I/O)"] = time_sync(logic, n)
        plain = Authorizer(backend=backend)
        cached = Authorizer(backend=backend, cache=True)
        cached.check(*REQUEST)
        out["Authorizer.check, no cache (asks OPA)"] = time_sync(
            lambda: plain.check(*REQUEST), remote)
        out["Authorizer.check, cache hit"] = time_sync(lambda: cached.check(*REQUEST), n)
        stats_ = cached.cache_stats()
        assert stats_ is not None and stats_.hits >= n

        batch = [CheckRequest(*REQUEST)] * BATCH
        rounds = max(2, remote // (BATCH * 10))
        servers = (("Rego server", rego_url), ("canned server", canned_url),
                   ("canned server 2 ms away", away_url))
        for label, url in servers:
            with OPABackend(url, decision=DECISION, max_concurrency=8) as b:
                out[f"100 sequential checks ({label})"] = {
                    "per_s": rate(lambda b=b: [b.check(*REQUEST) for _ in range(BATCH)],
                                  rounds, BATCH)}
                out[f"check_many of 100 ({label})"] = {
                    "per_s": rate(lambda b=b: b.check_many(batch), rounds, BATCH)}

                async def many(b: OPABackend = b) -> None:
                    await b.acheck_many(batch)

                out[f"acheck_many of 100 ({label})"] = {
                    "per_s": arate(many, rounds, BATCH, finish=b.aclose)}
        backend.close()
    finally:
        child.stop()
    return out


def report(results: Results) -> tuple[str, Verdicts]:
    lines = latency_and_rate_rows(results)
    sync = results["OPABackend.check, minus the server"]["median_us"]
    async_ = results["OPABackend.acheck, minus the server"]["median_us"]
    miss = results["Authorizer.check, no cache (asks OPA)"]["median_us"]
    hit = results["Authorizer.check, cache hit"]["median_us"]
    seq = results["100 sequential checks (canned server 2 ms away)"]["per_s"]
    batch = results["check_many of 100 (canned server 2 ms away)"]["per_s"]
    abatch = results["acheck_many of 100 (canned server 2 ms away)"]["per_s"]
    verdicts = [
        ("adapter overhead above the server < 1 ms median (check)", f"{sync:.0f} µs",
         sync < 1000),
        ("adapter overhead above the server < 1 ms median (acheck)", f"{async_:.0f} µs",
         async_ < 1000),
        ("a cache hit ≥ 20× faster than asking OPA", f"{miss / hit:.0f}×", miss / hit >= 20),
        ("check_many of 100 ≥ 3× sequential (server 2 ms away)", f"{batch / seq:.1f}×",
         batch / seq >= 3),
        ("acheck_many of 100 ≥ 3× sequential (server 2 ms away)", f"{abatch / seq:.1f}×",
         abatch / seq >= 3),
    ]
    return "\n".join(lines), verdicts


if __name__ == "__main__":
    sys.exit(run_main(__doc__, measure, report))
