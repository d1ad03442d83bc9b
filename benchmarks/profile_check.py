#!/usr/bin/env python3
"""Where the time of one ``check`` goes, per peer-benchmark workload.

    python benchmarks/profile_check.py                 # W1, W2 @100k docs, W3
    python benchmarks/profile_check.py --cprofile      # plus cProfile top functions

Each row is the per-call median over the workload's 20,000 queries (same
queries, same order as the peer harness, after a 2,000-query warm-up),
timed one call at a time with ``perf_counter_ns`` like the harness.  Going
down the table, one layer is peeled off at a time:

- ``python-dict floor``: the harness's hand-written reference adapter;
- ``adapter.check``: what the harness measures for agentauthz;
- ``Authorizer.check``: the same with the ``type:id`` strings built in advance;
- ``Evaluator.check``: the facade removed;
- then pieces of the evaluator measured alone (internals, for diagnosis only):
  ``Decision(...)`` construction, the compiled permission closure (W2), the
  CEL condition on a prebuilt activation (W3).

Rows after the first two reuse the same ``type:id`` string objects for every
call, so their hashes are cached; the adapter builds fresh strings per call,
which the engine then hashes: part of the adapter row's extra cost.

Needs the peer harness for the workloads (``--peers``, default
``../shared/bench/peers`` next to the repository).
"""
from __future__ import annotations

import argparse
import cProfile
import gc
import io
import pstats
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_PEERS = HERE.parent.parent / "shared" / "bench" / "peers"


def median_per_call(fn: Callable[[Any], Any], items: Iterable[Any]) -> float:
    pc = time.perf_counter_ns
    lat = []
    for x in items:
        t = pc()
        fn(x)
        lat.append(pc() - t)
    lat.sort()
    return lat[len(lat) // 2] / 1e3


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peers", default=str(DEFAULT_PEERS))
    ap.add_argument("--workloads", default="rbac,rebac,abac")
    ap.add_argument("--docs", type=int, default=100_000, help="W2 documents (default 100,000)")
    ap.add_argument("--queries", type=int, default=20_000)
    ap.add_argument("--cprofile", action="store_true", help="also print cProfile top functions")
    args = ap.parse_args(argv)
    peers = Path(args.peers).resolve()
    if not (peers / "peerbench" / "workloads.py").is_file():
        print(f"peer harness not found at {peers}; pass --peers DIR", file=sys.stderr)
        return 2
    sys.path.insert(0, str(peers))
    from peerbench import workloads
    from peerbench.engines import resolve
    from peerbench.engines.reference import ReferenceAdapter

    from agentauthz.model import Decision, Outcome

    adapter_cls = resolve(f"{HERE / 'agentauthz_engine.py'}:AgentauthzAdapter")
    empty = median_per_call(lambda _x: None, range(20_000))
    print(f"(timing an empty call the same way: {empty:.2f} µs, included in every row)\n")
    for wl in args.workloads.split(","):
        w = workloads.make(wl, args.queries, n_docs=args.docs)
        ours, ref = adapter_cls(), ReferenceAdapter()
        ours.load(w)
        ref.load(w)
        authz = ours.authz
        ev = authz.evaluator
        qs = w.queries
        calls = [(ours.ptype + q.principal, q.action, ours.rtype + q.resource, q.context)
                 for q in qs]
        for q in qs[:2_000]:
            ours.check(q)
            ref.check(q)
        gc.collect()
        rows: list[tuple[str, float]] = [
            ("python-dict floor", median_per_call(ref.check, qs)),
            ("adapter.check (what the harness times)", median_per_call(ours.check, qs)),
            ("Authorizer.check, strings prebuilt", median_per_call(
                lambda c, f=authz.check: f(*c), calls)),
            ("Evaluator.check, strings prebuilt", median_per_call(
                lambda c, f=ev.check: f(*c), calls)),
            ("  Decision(...) construction alone", median_per_call(
                lambda _c: Decision(True, Outcome.ALLOW, (), "v"), calls)),
        ]
        try:  # internals: diagnosis only, may change with the engine
            compiled = ev._compiled
            pieces = []
            for pkey, action, rkey, ctx in calls:
                rtype = rkey.partition(":")[0]
                ptype, _, pid = pkey.partition(":")
                acc = compiled.access[rtype].get(action) or compiled.fallback[rtype]
                pieces.append((acc, pkey, ptype, pid, action, rkey, rtype, ctx))
            if any(p[0].permission is not None for p in pieces):
                rows.append(("  permission closure alone", median_per_call(
                    lambda p: p[0].permission and p[0].permission(p[5], p[1], p[2] + ":*", None),
                    pieces)))
            conds = []
            for acc, _pkey, ptype, pid, action, rkey, rtype, ctx in pieces:
                if acc.permits and acc.permits[0].condition is not None:
                    rid = rkey.partition(":")[2]
                    activation = {
                        "principal": {"id": pid, "type": ptype},
                        "resource": {"id": rid, "type": rtype,
                                     **authz.store.get_attributes(rkey)},
                        "action": action, "context": ctx if ctx is not None else {}}
                    conds.append((acc.permits[0].condition, activation))
            if conds:
                rows.append(("  CEL condition(activation) alone, activation prebuilt",
                             median_per_call(lambda c: c[0](c[1]), conds)))
        except (AttributeError, KeyError, TypeError, IndexError) as exc:
            rows.append((f"  (internals changed, pieces not measured: {exc!r})", float("nan")))
        print(f"## {w.label}\n")
        print("| layer | median µs |")
        print("|---|---:|")
        for name, v in rows:
            print(f"| {name} | {v:.2f} |")
        print()
        if args.cprofile:
            prof = cProfile.Profile()
            prof.enable()
            for c in calls:
                authz.check(*c)
            prof.disable()
            s = io.StringIO()
            pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(12)
            print("```")
            print("\n".join(ln for ln in s.getvalue().splitlines()[4:] if ln.strip()))
            print("```\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
