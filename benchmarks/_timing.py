"""What the per-call benchmark scripts share: timing loops and their command line.

Each script (``enforcement.py``, ``agents.py``, ``guard.py``, ...) defines
``measure(n) -> {row: {"median_us", "p99_us"}}`` and
``report(results) -> (markdown table, [(target, measured, met)])``, and ends
with ``sys.exit(run_main(__doc__, measure, report))``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing
import time
from collections.abc import Awaitable, Callable
from typing import Any

Results = dict[str, dict[str, float]]
Verdicts = list[tuple[str, str, bool]]


def stats(lat: list[int]) -> dict[str, float]:
    """Median and p99 of nanosecond latencies, in microseconds."""
    lat.sort()
    return {"median_us": lat[len(lat) // 2] / 1e3, "p99_us": lat[int(len(lat) * 0.99)] / 1e3}


def time_sync(fn: Callable[[], Any], n: int) -> dict[str, float]:
    """Warm up, collect garbage, then time ``n`` calls one by one."""
    for _ in range(min(n, 2000)):
        fn()
    gc.collect()
    pc = time.perf_counter_ns
    lat = [0] * n
    for i in range(n):
        t = pc()
        fn()
        lat[i] = pc() - t
    return stats(lat)


def time_async(fn: Callable[[], Awaitable[Any]], n: int) -> dict[str, float]:
    """:func:`time_sync` for a coroutine function, awaited in a loop on one event loop."""
    async def loop() -> dict[str, float]:
        for _ in range(min(n, 2000)):
            await fn()
        gc.collect()
        pc = time.perf_counter_ns
        lat = [0] * n
        for i in range(n):
            t = pc()
            await fn()
            lat[i] = pc() - t
        return stats(lat)

    return asyncio.run(loop())


def run_main(doc: str | None, measure: Callable[[int], Results],
             report: Callable[[Results], tuple[str, Verdicts]],
             argv: list[str] | None = None) -> int:
    """``--calls N`` and ``--json``; prints the table and a verdict per target."""
    ap = argparse.ArgumentParser(description=doc,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--json", action="store_true", help="print raw results as JSON")
    args = ap.parse_args(argv)
    results = measure(args.calls)
    if args.json:
        print(json.dumps(results))
        return 0
    table, verdicts = report(results)
    print(table)
    print()
    for target, measured, ok in verdicts:
        print(f"- {target}: {measured} — {'met' if ok else 'MISSED'}")
    return 0


def rate(fn: Callable[[], Any], rounds: int, per_call: int) -> float:
    """Decisions per second of ``fn()`` (``per_call`` decisions a call), best of three runs."""
    fn()
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(rounds):
            fn()
        best = max(best, rounds * per_call / (time.perf_counter() - start))
    return best


def arate(fn: Callable[[], Awaitable[Any]], rounds: int, per_call: int,
          finish: Callable[[], Awaitable[Any]] | None = None) -> float:
    """:func:`rate` for a coroutine function; ``finish()`` is awaited on the same loop."""
    async def run() -> float:
        await fn()
        best = 0.0
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(rounds):
                await fn()
            best = max(best, rounds * per_call / (time.perf_counter() - start))
        if finish is not None:
            await finish()
        return best

    return asyncio.run(run())


def latency_and_rate_rows(results: Results) -> list[str]:
    """A table of the latency rows (median, p99), then one of the rate rows (``per_s``)."""
    lines = ["| call | median µs | p99 µs |", "|---|---:|---:|"]
    lines += [f"| {name} | {r['median_us']:.1f} | {r['p99_us']:.1f} |"
              for name, r in results.items() if "median_us" in r]
    lines += ["", "| batch | decisions/s |", "|---|---:|"]
    lines += [f"| {name} | {r['per_s']:,.0f} |" for name, r in results.items() if "per_s" in r]
    return lines


class ServerChild:
    """A test server in a spawned child process, so that its threads do not share our GIL.

    ``serve(conn)`` runs in the child: it sends its URLs (a tuple) first, then
    answers commands; ``stop`` ends it.
    """

    def __init__(self, serve: Callable[[Any], None]) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, theirs = context.Pipe()
        self.process = context.Process(target=serve, args=(theirs,), daemon=True)
        self.process.start()
        self.urls: tuple[str, ...] = self.conn.recv()

    def ask(self, command: str) -> Any:
        self.conn.send(command)
        return self.conn.recv()

    def stop(self) -> None:
        self.ask("stop")
        self.process.join(10)
