"""The policy, data and keys the scale tests share (worker processes import it too)."""

from __future__ import annotations

from typing import Any

from agentauthz import Authorizer

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
  - {id: agent:bot, owner: user:alice, purpose: answers tickets,
     tools: [search, lookup, read_ticket, update_ticket, send_email]}
  - {id: agent:other, owner: user:alice, purpose: a second agent, tools: [search]}
tools:
  search: {action: read, resource: "ticket:{ticket_id}"}
  lookup: {action: read, resource: "ticket:{ticket_id}"}
  read_ticket:
    action: read
    resource: "ticket:{ticket_id}"
    result: {resource: "ticket:{id}", records: hits}
  update_ticket: {action: write, resource: "ticket:{ticket_id}", effect: write}
  send_email: {action: read, resource: "ticket:{ticket_id}", effect: external}
chains:
  - {id: no-exfiltration, effect: external, after_labels: [confidential]}
  - {id: step-up-first-write, effect: write, first: true, decision: approval_required}
  - {id: search-budget, tool: search, max_calls: BUDGET}
"""

DATA: dict[str, Any] = {
    "relationships": ["team:t#member@user:alice", "team:t#member@agent:bot",
                      "team:t#member@agent:other",
                      *(f"ticket:{i}#team@team:t" for i in range(1, 10))],
    "attributes": {f"ticket:{i}": {"tenant": "acme",
                                   "classification": "confidential" if i == 9 else "internal"}
                   for i in range(1, 10)},
}

KEYS = {"k1": "a shared signing key for the scale tests, 32+ bytes long"}


def policy(budget: int = 5) -> str:
    return POLICY.replace("BUDGET", str(budget))


def authorizer(url: str, namespace: str, *, budget: int = 5, cache: bool = False,
               **state_options: Any) -> Authorizer:
    """One worker's authorizer on the shared namespace."""
    from agentauthz.scale import RedisState

    return Authorizer(policy(budget), data=DATA, cache=cache, task_keys=KEYS,
                      state=RedisState(url, namespace=namespace, **state_options))
