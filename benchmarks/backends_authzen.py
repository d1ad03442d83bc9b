#!/usr/bin/env python3
"""What the AuthZEN backend adds above the PDP's own time, on loopback.

    python benchmarks/backends_authzen.py [--calls N]

The test PDP (``tests/backends/servers/authzen_server.py``: the AuthZEN 1.0
endpoints, requests validated as the specification says, decisions from the
local evaluator over the demo policy and data) runs in a child process, as a
PDP would run beside an application. It times its own handling of every
request, from the request line to the flushed answer, and the benchmark
subtracts that time from each call it made (calls are sequential, so they
pair one to one). A second PDP in the same child has no batch API and answers
after 2 ms (a network hop): against it ``check_many`` falls back to
concurrent single evaluations.

Rows (per call, median and p99 of ``perf_counter_ns``; remote rows time
``min(N, 5000)`` calls of ``user:alice read document:ticket-1``, an allow):

- the PDP's own time per request;
- ``httpx.Client.post`` of the same bytes alone, minus the PDP's time: the
  HTTP client and loopback, the floor any Python client pays;
- ``AuthZENBackend.check`` and ``acheck``, minus the PDP's time: the
  adapter's overhead (request encoding, HTTP, strict decoding, the decision);
- the adapter's own logic without I/O (encode, decode, build the decision);
- ``Authorizer(backend=..., cache=True)`` asked the same question again (a
  cache hit), beside the same authorizer without a cache.

Batch rows: decisions per second of ``check_many`` / ``acheck_many`` of 100
against 100 sequential ``check`` calls: on the PDP (one ``/evaluations``
request per batch) and on the PDP 2 ms away without a batch API (single
evaluations, ``max_concurrency=8``, the default), beside bare
``httpx.AsyncClient`` posting the same 100 requests 8 at a time (what httpx's
async stack and the stand-in server allow on two cores).

Targets: adapter overhead above the PDP < 1 ms median (sync and async) and
< 150 µs above bare httpx (sync and async); a cache hit at least 20× faster
than asking the PDP; ``check_many`` of 100 at least 10× the sequential
throughput (one request instead of 100); without a batch API, against the
PDP 2 ms away, ``check_many`` at least 3× sequential and ``acheck_many`` at
least 0.7× bare httpx at the same concurrency.
"""

from __future__ import annotations

import asyncio
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the test PDP lives with the tests

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
AWAY_S = 0.002
CONCURRENCY = 8  # the adapter's default max_concurrency


def serve(conn: Connection) -> None:
    """The child: two PDPs, then answer ``reset`` / ``stats N`` / ``stop`` on ``conn``."""
    from tests.backends.servers.authzen_server import APIS, AuthZENServer, Handler, demo_evaluator

    # the stand-in's threads answer in turns: shorter turns keep one busy thread from
    # holding the others' answers back for the default 5 ms
    sys.setswitchinterval(0.0002)
    pdp = AuthZENServer(demo_evaluator(), page_size=50).start()
    away = AuthZENServer(demo_evaluator(), apis=[a for a in APIS if a != "evaluations"]).start()

    def two_ms_away(handler: Handler, api: str) -> bool:
        away.stopping.wait(AWAY_S)
        handler.send_raw(200, b'{"decision": true}')
        return True

    away.fault = two_ms_away
    conn.send((pdp.url, away.url))
    while True:
        command, _, arg = conn.recv().partition(" ")
        if command == "reset":
            pdp.handler_ns.clear()
            conn.send(None)
        elif command == "stats":
            deadline = time.monotonic() + 2  # a handler records its time after its last byte
            while len(pdp.handler_ns) < int(arg) and time.monotonic() < deadline:
                time.sleep(0.0005)
            conn.send(list(pdp.handler_ns))
        else:
            pdp.stop()
            away.stop()
            conn.send(None)
            return


def _paired(child: ServerChild, lat: list[int]) -> tuple[dict[str, float], dict[str, float]]:
    server = child.ask(f"stats {len(lat)}")
    assert len(server) == len(lat), f"expected {len(lat)} requests, the PDP saw {len(server)}"
    return stats(list(server)), stats([c - s for c, s in zip(lat, server, strict=True)])


def paired(child: ServerChild, call: Any, n: int) -> tuple[dict[str, float], dict[str, float]]:
    """Time ``n`` calls: (the PDP's own time, each call minus the PDP's time)."""
    for _ in range(min(n, 500)):
        call()
    child.ask("reset")
    pc = time.perf_counter_ns
    lat = [0] * n
    for i in range(n):
        t = pc()
        call()
        lat[i] = pc() - t
    return _paired(child, lat)


def apaired(child: ServerChild, call: Any, n: int, finish: Any = None) -> dict[str, float]:
    """:func:`paired` for a coroutine function; ``finish()`` is awaited on the same loop."""
    async def loop() -> list[int]:
        for _ in range(min(n, 500)):
            await call()
        child.ask("reset")
        pc = time.perf_counter_ns
        lat = [0] * n
        for i in range(n):
            t = pc()
            await call()
            lat[i] = pc() - t
        if finish is not None:
            await finish()
        return lat

    return _paired(child, asyncio.run(loop()))[1]


def measure(n: int) -> Results:
    import httpx

    from agentauthz import Authorizer
    from agentauthz.backends.authzen import AuthZENBackend, _evaluation, _Reply
    from agentauthz.engine.evaluator import CheckRequest

    remote = min(n, MAX_REMOTE_CALLS)
    out: Results = {}
    child = ServerChild(serve)
    pdp_url, away_pdp_url = child.urls
    try:
        backend = AuthZENBackend(pdp_url)
        assert backend.check(*REQUEST).allowed  # reads the metadata once
        body = _evaluation(*REQUEST, None)  # the exact request bytes
        url = backend.url + "/access/v1/evaluation"
        with httpx.Client() as raw:
            assert raw.post(url, content=body, headers={
                "Content-Type": "application/json"}).json()["decision"] is True
            own, floor = paired(child, lambda: raw.post(
                url, content=body, headers={"Content-Type": "application/json"}), remote)
        out["PDP's own time per request"] = own
        out["httpx.Client.post alone, minus the PDP"] = floor
        out["AuthZENBackend.check, minus the PDP"] = paired(
            child, lambda: backend.check(*REQUEST), remote)[1]

        clients: list[httpx.AsyncClient] = []

        async def apost() -> None:
            if not clients:
                clients.append(httpx.AsyncClient())
            await clients[0].post(url, content=body, headers={"Content-Type": "application/json"})

        out["httpx.AsyncClient.post alone, minus the PDP"] = apaired(
            child, apost, remote, finish=lambda: clients[0].aclose())

        async def acheck() -> None:
            await backend.acheck(*REQUEST)

        out["AuthZENBackend.acheck, minus the PDP"] = apaired(child, acheck, remote)

        answer = (b'{"decision":true,"context":{"id":"permission","reason_admin":{"en":'
                  b'"document.read = (owner | parent->read) - banned"}}}')

        def logic() -> None:
            flow = backend._check_flow(_evaluation(*REQUEST, None))
            next(flow)
            try:
                flow.send(_Reply(200, answer, "4f2b7a52-0c1d-4d4e-9a53-5a2f1c9e8b11"))
            except StopIteration:
                return
            raise AssertionError("a check is one request")

        out["adapter logic alone (no I/O)"] = time_sync(logic, n)
        plain = Authorizer(backend=backend)
        cached = Authorizer(backend=backend, cache=True)
        cached.check(*REQUEST)
        out["Authorizer.check, no cache (asks the PDP)"] = time_sync(
            lambda: plain.check(*REQUEST), remote)
        out["Authorizer.check, cache hit"] = time_sync(lambda: cached.check(*REQUEST), n)
        hits = cached.cache_stats()
        assert hits is not None and hits.hits >= n

        batch = [CheckRequest(*REQUEST)] * BATCH
        out["PDP's own time per /evaluations of 100"] = paired(
            child, lambda: backend.check_many(batch), max(50, remote // 20))[0]
        rounds = max(2, remote // (BATCH * 10))
        for label, target in (("PDP, one /evaluations request", pdp_url),
                              ("PDP 2 ms away, no batch API", away_pdp_url)):
            with AuthZENBackend(target, max_concurrency=CONCURRENCY) as b:
                assert all(d.allowed for d in b.check_many(batch))
                out[f"100 sequential checks ({label})"] = {"per_s": rate(
                    lambda b=b: [b.check(*REQUEST) for _ in range(BATCH)], rounds, BATCH)}
                out[f"check_many of 100 ({label})"] = {
                    "per_s": rate(lambda b=b: b.check_many(batch), rounds, BATCH)}

                async def many(b: AuthZENBackend = b) -> None:
                    await b.acheck_many(batch)

                out[f"acheck_many of 100 ({label})"] = {"per_s": arate(many, rounds, BATCH)}

        away_url = away_pdp_url + "/access/v1/evaluation"

        async def bare() -> None:
            async with httpx.AsyncClient() as client:
                gate = asyncio.Semaphore(CONCURRENCY)

                async def one() -> None:
                    async with gate:
                        await client.post(away_url, content=body,
                                          headers={"Content-Type": "application/json"})

                await asyncio.gather(*(one() for _ in range(BATCH)))

        out[f"100 bare httpx.AsyncClient posts, {CONCURRENCY} at a time (PDP 2 ms away)"] = {
            "per_s": arate(bare, rounds, BATCH)}
        backend.close()
    finally:
        child.stop()
    return out


def report(results: Results) -> tuple[str, Verdicts]:
    lines = latency_and_rate_rows(results)
    sync = results["AuthZENBackend.check, minus the PDP"]["median_us"]
    async_ = results["AuthZENBackend.acheck, minus the PDP"]["median_us"]
    floor = results["httpx.Client.post alone, minus the PDP"]["median_us"]
    miss = results["Authorizer.check, no cache (asks the PDP)"]["median_us"]
    hit = results["Authorizer.check, cache hit"]["median_us"]
    seq = results["100 sequential checks (PDP, one /evaluations request)"]["per_s"]
    batch = results["check_many of 100 (PDP, one /evaluations request)"]["per_s"]
    away_seq = results["100 sequential checks (PDP 2 ms away, no batch API)"]["per_s"]
    away = results["check_many of 100 (PDP 2 ms away, no batch API)"]["per_s"]
    aaway = results["acheck_many of 100 (PDP 2 ms away, no batch API)"]["per_s"]
    abare = results[f"100 bare httpx.AsyncClient posts, {CONCURRENCY} at a time "
                    "(PDP 2 ms away)"]["per_s"]
    afloor = results["httpx.AsyncClient.post alone, minus the PDP"]["median_us"]
    verdicts = [
        ("adapter overhead above the PDP < 1 ms median (check)", f"{sync:.0f} µs", sync < 1000),
        ("adapter overhead above the PDP < 1 ms median (acheck)", f"{async_:.0f} µs",
         async_ < 1000),
        ("check < 150 µs above bare httpx.Client.post (median)", f"{sync - floor:.0f} µs",
         sync - floor < 150),
        ("acheck < 150 µs above bare httpx.AsyncClient.post (median)",
         f"{async_ - afloor:.0f} µs", async_ - afloor < 150),
        ("a cache hit ≥ 20× faster than asking the PDP", f"{miss / hit:.0f}×", miss / hit >= 20),
        ("check_many of 100 ≥ 10× sequential (one /evaluations request)", f"{batch / seq:.1f}×",
         batch / seq >= 10),
        ("check_many of 100 ≥ 3× sequential (no batch API, PDP 2 ms away)",
         f"{away / away_seq:.1f}×", away / away_seq >= 3),
        ("acheck_many of 100 ≥ 0.7× bare httpx.AsyncClient at the same concurrency (no batch "
         "API, PDP 2 ms away)", f"{aaway / abare:.2f}×", aaway / abare >= 0.7),
    ]
    return "\n".join(lines), verdicts


if __name__ == "__main__":
    sys.exit(run_main(__doc__, measure, report))
