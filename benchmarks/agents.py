#!/usr/bin/env python3
"""Cost of the agent layer: delegated checks, task credentials, attenuation chains.

    python benchmarks/agents.py [--calls N]

The workload is the enforcement benchmark's: a user reaches a document
through team → folder → document; the agent is a member of the same team,
so both branches of a delegation walk the same depth. Rows (per-call median
and p99, ``perf_counter_ns`` around each call):

- plain check: ``Authorizer.check(user, ...)`` with no agent types in the
  policy (the evaluator's hot path, nothing in front);
- plain check, agents on: the same user check when the policy registers
  agents (every check passes the agent gate first);
- agent check: the agent alone, through the registry gate;
- delegated: agent on behalf of user, no task;
- delegated in a task: agent on behalf of user inside a task credential
  (scope, expiry and revocation checked on every call);
- credential issue + verify: ``tasks.issue`` then ``tasks.verify(token)``;
- verify, chain of k caveats: ``tasks.verify`` of a token attenuated k times.

Targets (issue 4): delegated in a task ≤ 2× plain check; issue + verify
< 50 µs; verification linear in the chain length (reported as the cost per
caveat at each length; linear means roughly constant).
"""

from __future__ import annotations

import sys

from _timing import Results, Verdicts, run_main, time_sync

from agentauthz import Authorizer
from agentauthz.agents import Delegation

POLICY = """
types:
  user: {}
  agent: {}
  team: {relations: {member: [user, agent]}}
  folder: {relations: {owner: [team#member]}, permissions: {read: owner}}
  document:
    relations: {parent: [folder], owner: [user]}
    permissions: {read: owner | parent->read}
"""
AGENTS = """
agents:
  - {id: agent:helper, owner: user:alice, purpose: answers questions about documents}
"""
DATA = {"relationships": ["team:eng#member@user:alice", "team:eng#member@agent:helper",
                          "folder:f1#owner@team:eng#member", "document:42#parent@folder:f1"]}
CHAIN = (0, 1, 2, 4, 8, 16)






def measure(n: int) -> Results:
    out: dict[str, dict[str, float]] = {}
    plain = Authorizer(POLICY.replace("  agent: {}\n", "").replace("user, agent", "user"),
                       data={"relationships": DATA["relationships"][:1] + DATA["relationships"][2:]})
    authz = Authorizer(POLICY + AGENTS, data=DATA)
    doc = "document:42"
    assert plain.check("user:alice", "read", doc).allowed
    out["plain check"] = time_sync(lambda: plain.check("user:alice", "read", doc), n)
    out["plain check, agents on"] = time_sync(lambda: authz.check("user:alice", "read", doc), n)
    out["agent check"] = time_sync(lambda: authz.check("agent:helper", "read", doc), n)
    d = Delegation("agent:helper", "user:alice")
    assert authz.check(d, "read", doc).allowed
    out["delegated"] = time_sync(lambda: authz.check(d, "read", doc), n)
    task = authz.task(scope=[("read", "document:*")], ttl=3600, purpose="benchmark",
                      agent="agent:helper", on_behalf_of="user:alice")
    in_task = task.principal
    assert authz.check(in_task, "read", doc).allowed
    out["delegated in a task"] = time_sync(lambda: authz.check(in_task, "read", doc), n)
    tasks = authz.tasks

    def issue_verify() -> None:
        credential = tasks.issue(agent="agent:helper", on_behalf_of="user:alice",
                                 scope=[("read", "document:*")], ttl=60, purpose="benchmark")
        tasks.verify(credential.token)

    out["credential issue + verify"] = time_sync(issue_verify, max(n // 10, 500))
    credential = task.credential
    for k in range(max(CHAIN) + 1):
        if k in CHAIN:
            token = credential.token
            out[f"verify, chain of {k}"] = time_sync(lambda t=token: tasks.verify(t),  # type: ignore[misc]
                                                     max(n // 10, 500))
        credential = credential.attenuate(scope=[("read", "document:*")])
    task.revoke()
    return out


def report(results: Results) -> tuple[str, Verdicts]:
    plain = results["plain check"]["median_us"]
    lines = ["| call | median µs | p99 µs | × plain check |", "|---|---:|---:|---:|"]
    for name, r in results.items():
        ratio = "" if name.startswith(("credential", "verify")) else \
            f"{r['median_us'] / plain:.2f}"
        lines.append(f"| {name} | {r['median_us']:.2f} | {r['p99_us']:.2f} | {ratio} |")
    root = results["verify, chain of 0"]["median_us"]
    lines += ["", "| chain length | verify median µs | µs per caveat above the root |",
              "|---:|---:|---:|"]
    slopes = []
    for k in CHAIN:
        med = results[f"verify, chain of {k}"]["median_us"]
        slope = (med - root) / k if k else None
        if slope is not None:
            slopes.append(slope)
        lines.append(f"| {k} | {med:.2f} | {'' if slope is None else f'{slope:.2f}'} |")
    task_ratio = results["delegated in a task"]["median_us"] / plain
    issue = results["credential issue + verify"]["median_us"]
    spread = max(slopes) / min(slopes) if slopes and min(slopes) > 0 else float("inf")
    verdicts = [
        ("delegated check in a task ≤ 2× plain check", f"{task_ratio:.2f}×", task_ratio <= 2.0),
        ("credential issue + verify < 50 µs", f"{issue:.1f} µs", issue < 50.0),
        ("verification linear in chain length (per-caveat cost within 2× across lengths)",
         f"{min(slopes):.2f}–{max(slopes):.2f} µs per caveat", spread <= 2.0),
    ]
    return "\n".join(lines), verdicts




if __name__ == "__main__":
    sys.exit(run_main(__doc__, measure, report))
