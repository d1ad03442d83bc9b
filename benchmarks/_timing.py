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
