#!/usr/bin/env python3
"""Overhead of the tool guard per call.

    python benchmarks/guard.py [--calls N]

An agent acting for a user inside a task calls a declared tool
(``read_ticket``: action ``read`` on ``ticket:{ticket_id}``) that the policy
allows; the policy has four chain rules (one applies to the tool), the guard
records each step in the task's ledger and hands a record to an in-memory
audit sink (a list). Rows (per-call median and p99, ``perf_counter_ns``
around each call):

- the bare function;
- the core check (``Authorizer.check``, a user, no agent layer in front);
- the delegated check the guard makes (agent for user, in the task);
- the guarded call;
- the guarded call of a declared ``write`` tool (adds the self-escalation scan
  of its arguments).

Targets (issue 5): guard overhead (guarded minus bare) < 30 µs median and at
most 5× the core check median.
"""

from __future__ import annotations

import sys

from _timing import Results, Verdicts, run_main, time_sync

from agentauthz import Authorizer
from agentauthz.agents.guard import ToolCallRecord, guard_tools

POLICY = """
types:
  user: {}
  agent: {}
  team: {relations: {member: [user, agent]}}
  ticket:
    attributes: {tenant: string, classification: string}
    relations: {team: [team]}
    permissions: {read: team->member, write: team->member}
agents:
  - {id: agent:bot, owner: user:alice, purpose: answers tickets, tools: [read_ticket, note]}
tools:
  read_ticket: {action: read, resource: "ticket:{ticket_id}"}
  note: {action: write, resource: "ticket:{ticket_id}", effect: write}
chains:
  - {id: no-exfiltration, effect: external, after_labels: [confidential]}
  - {id: step-up, effect: write, first: true, decision: deny}
  - {id: ticket-budget, tool: read_ticket, max_calls: 100000000}
  - {id: one-tenant, same_attribute: tenant}
"""
DATA = {"relationships": ["team:t#member@user:alice", "team:t#member@agent:bot",
                          "ticket:1#team@team:t"],
        "attributes": {"ticket:1": {"tenant": "acme", "classification": "internal"}}}






def measure(n: int) -> Results:
    out: dict[str, dict[str, float]] = {}
    plain = Authorizer(POLICY.split("agents:")[0].replace("  agent: {}\n", "")
                       .replace("[user, agent]", "[user]"),
                       data={"relationships": DATA["relationships"][::2]})
    authz = Authorizer(POLICY, data=DATA)
    sink: list[ToolCallRecord] = []

    def read_ticket(ticket_id: str) -> str:
        return ticket_id

    def note(ticket_id: str, text: str) -> str:
        return ticket_id

    guarded_read, guarded_note = guard_tools([read_ticket, note], authz=authz,
                                             audit=sink.append)
    out["bare function"] = time_sync(lambda: read_ticket(ticket_id="1"), n)
    out["core check"] = time_sync(lambda: plain.check("user:alice", "read", "ticket:1"), n)
    with authz.acting_as("agent:bot", on_behalf_of="user:alice"), \
            authz.task(scope=[("read", "ticket:*"), ("write", "ticket:*")], ttl=3600,
                       purpose="benchmark") as task:
        principal = task.principal
        out["delegated check in the task"] = time_sync(
            lambda: authz.check(principal, "read", "ticket:1"), n)
        assert guarded_note(ticket_id="1", text="x") == "1"  # the first write, before any read

        def call() -> None:
            guarded_read(ticket_id="1")
            if len(sink) > 10_000:
                sink.clear()

        out["guarded call (read tool)"] = time_sync(call, n)

        def write() -> None:
            guarded_note(ticket_id="1", text="a note")
            if len(sink) > 10_000:
                sink.clear()

        out["guarded call (write tool)"] = time_sync(write, n)
        assert all(r.decision.allowed for r in sink), "every timed call must be allowed"
    return out


def report(results: Results) -> tuple[str, Verdicts]:
    bare = results["bare function"]["median_us"]
    core = results["core check"]["median_us"]
    lines = ["| call | median µs | p99 µs | overhead µs | overhead × core check |",
             "|---|---:|---:|---:|---:|"]
    for name, r in results.items():
        guarded = name.startswith("guarded")
        over = r["median_us"] - bare
        lines.append(f"| {name} | {r['median_us']:.2f} | {r['p99_us']:.2f} | "
                     f"{f'{over:.2f}' if guarded else ''} | "
                     f"{f'{over / core:.1f}' if guarded else ''} |")
    over = results["guarded call (read tool)"]["median_us"] - bare
    verdicts = [
        ("guard overhead per call < 30 µs (declared read tool, allowed, ledger + audit)",
         f"{over:.2f} µs", over < 30.0),
        (f"guard overhead ≤ 5× the core check ({core:.2f} µs)", f"{over / core:.1f}×",
         over <= 5 * core),
    ]
    return "\n".join(lines), verdicts




if __name__ == "__main__":
    sys.exit(run_main(__doc__, measure, report))
