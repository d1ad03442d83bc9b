#!/usr/bin/env python3
"""Overhead of enforcement: ``@authorize`` around an empty function, sync and async.

    python benchmarks/enforcement.py [--calls N]

Rows (per-call median and p99, ``perf_counter_ns`` around each call):

- the bare function (the floor of any wrapper);
- ``Authorizer.check`` of the same request (the core check, no cache);
- ``@authorize`` with no decision cache: every call decides;
- ``@authorize`` with a cache but a new request every call (a real *miss*:
  key, lookup, decide, store);
- ``@authorize`` with a ``DecisionCache``, the same request each call (a *hit*);
- the same two for an ``async def``, awaited in a loop on one event loop.

Overhead = decorated median minus bare median. Targets: hit overhead < 3 µs;
miss overhead < core check median + 3 µs.
"""

from __future__ import annotations

import sys

from _timing import Results, Verdicts, run_main, time_async, time_sync

from agentauthz import Authorizer, DecisionCache, acting_as, authorize

POLICY = """
types:
  user: {}
  team: {relations: {member: [user]}}
  folder: {relations: {owner: [team#member]}, permissions: {read: owner}}
  document:
    relations: {parent: [folder], owner: [user]}
    permissions: {read: owner | parent->read}
"""


def build(cache: bool) -> Authorizer:
    authz = Authorizer(POLICY, cache=DecisionCache(maxsize=10_000, ttl=3600) if cache else None)
    authz.add("team:eng#member@user:alice", "folder:f1#owner@team:eng#member",
              "document:42#parent@folder:f1")
    return authz








def measure(n: int) -> Results:
    out: dict[str, dict[str, float]] = {}

    def bare(doc_id: str) -> None:
        return None

    async def abare(doc_id: str) -> None:
        return None

    out["bare sync"] = time_sync(lambda: bare("42"), n)
    out["bare async"] = time_async(lambda: abare("42"), n)
    plain = build(cache=False)
    out["core check"] = time_sync(lambda: plain.check("user:alice", "read", "document:42"), n)
    for cached in (False, True):
        authz = build(cache=cached)
        label = "cache hit" if cached else "no cache (miss)"

        @authorize("read", "document:{doc_id}", authz=authz)
        def read(doc_id: str) -> None:
            return None

        @authorize("read", "document:{doc_id}", authz=authz)
        async def aread(doc_id: str) -> None:
            return None

        with acting_as("user:alice", authz=authz):
            out[f"@authorize sync, {label}"] = time_sync(lambda: read("42"), n)
            out[f"@authorize async, {label}"] = time_async(lambda: aread("42"), n)
        if cached:
            stats = authz.cache_stats()
            assert stats is not None and stats.hit_ratio > 0.99, stats
    # a real miss: the cache on, every request new (more distinct ids than the cache holds)
    authz = build(cache=True)
    for i in range(2 * n):
        authz.add(f"document:m{i}#parent@folder:f1")
    ids = iter([f"m{i}" for i in range(2 * n)] * 3)

    @authorize("read", "document:{doc_id}", authz=authz)
    def read_miss(doc_id: str) -> None:
        return None

    plain_ids = iter([f"document:m{i}" for i in range(2 * n)] * 3)
    out["core check, new request each call"] = time_sync(
        lambda: authz.evaluator.check("user:alice", "read", next(plain_ids)), n)
    with acting_as("user:alice", authz=authz):
        out["@authorize sync, cache miss"] = time_sync(lambda: read_miss(next(ids)), n)
    stats = authz.cache_stats()
    assert stats is not None and stats.hits == 0, stats
    return out


def report(results: Results) -> tuple[str, Verdicts]:
    bare_s = results["bare sync"]["median_us"]
    bare_a = results["bare async"]["median_us"]
    core = results["core check"]["median_us"]
    lines = ["| call | median µs | p99 µs | overhead µs |", "|---|---:|---:|---:|"]
    for name, r in results.items():
        base = bare_a if "async" in name else bare_s
        if name == "@authorize sync, cache miss":
            base = results["core check, new request each call"]["median_us"]
        over = "" if name.startswith(("bare", "core")) else f"{r['median_us'] - base:.2f}"
        lines.append(f"| {name} | {r['median_us']:.2f} | {r['p99_us']:.2f} | {over} |")
    verdicts = []
    for kind, base in (("sync", bare_s), ("async", bare_a)):
        hit = results[f"@authorize {kind}, cache hit"]["median_us"] - base
        miss = results[f"@authorize {kind}, no cache (miss)"]["median_us"] - base
        if kind == "sync":
            # against the check of the same stream of new requests
            cold = results["core check, new request each call"]["median_us"]
            real_miss = results["@authorize sync, cache miss"]["median_us"] - cold
            verdicts.append((f"@authorize sync, cache miss: above a check of the same new "
                             f"requests ({cold:.2f}) < 3 µs", f"{real_miss:.2f} µs",
                             real_miss < 3.0))
        verdicts.append((f"@authorize {kind} overhead, cache hit < 3 µs",
                         f"{hit:.2f} µs", hit < 3.0))
        verdicts.append((f"@authorize {kind} overhead, miss < core check ({core:.2f}) + 3 µs",
                         f"{miss:.2f} µs", miss < core + 3.0))
    return "\n".join(lines), verdicts




if __name__ == "__main__":
    sys.exit(run_main(__doc__, measure, report))
