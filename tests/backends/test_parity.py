"""One scenario, five backends: every engine must give exactly the same answers.

The scenario is the demo policy and data (``src/agentauthz/demo/``), written in
each engine's own language (``examples/backends/<name>/``). The table of 126
expected outcomes is ``parity_cases.yaml``. The agent layer sits above the
backend, so delegation, task scopes, hard blocks and chain rules must also
come out the same whichever engine answers the base questions.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentauthz import Authorizer
from agentauthz.agents import AgentRegistry, Delegation
from agentauthz.agents.tools import ToolSpec
from agentauthz.demo import DATA, POLICY
from agentauthz.policy.schema import Policy

REMOTE = ("opa", "oso_cloud", "cedar", "authzen")
CASES = [tuple(c) for c in yaml.safe_load(
    (Path(__file__).with_name("parity_cases.yaml")).read_text())["cases"]]
CHAINS = [
    {"id": "no-exfiltration", "effect": "external", "after_labels": ["confidential"]},
    {"id": "one-export", "tool": "export_document", "max_calls": 1},
]
TOOLS = [
    ToolSpec("read_document", action="read", resource="document:{doc}"),
    ToolSpec("export_document", action="export", resource="document:{doc}", effect="external"),
    ToolSpec("create_api_key", hard_block="token_minting"),
]


def _registry() -> AgentRegistry:
    return AgentRegistry(Policy.load(POLICY).agents)


@pytest.fixture(scope="module", params=("local", *REMOTE))
def authz(request: pytest.FixtureRequest) -> Iterator[Authorizer]:
    if request.param == "local":
        yield Authorizer(POLICY, data=DATA)
        return
    module = importlib.import_module(f"tests.backends.servers.{request.param}_server")
    with ExitStack() as stack:
        backend = stack.enter_context(module.demo_backend())
        yield Authorizer(backend=backend, agents=_registry())


@pytest.mark.parametrize(("principal", "action", "resource", "expected"), CASES,
                         ids=["-".join(c[:3]) for c in CASES])
def test_every_backend_gives_the_table(authz: Authorizer, principal: str, action: str,
                                       resource: str, expected: str) -> None:
    decision = authz.check(principal, action, resource)
    assert ("allow" if decision.allowed else "deny") == expected, decision.reasons


def _agent_script(authz: Authorizer) -> list[Any]:
    """Delegated checks, task scopes and guarded tool calls: the outcomes, in order."""
    out: list[Any] = []
    docs = ["document:ticket-1", "document:ticket-2", "document:runbook-1", "document:payroll"]
    for agent in ("agent:assistant", "agent:scraper"):
        for user in ("user:alice", "user:bob", "user:carol"):
            d = Delegation(agent, user)
            out += [authz.check(d, a, r).allowed for a in ("read", "write", "export") for r in docs]
            out.append(sorted(authz.list_resources(d, "read", "document")))
    guard = authz.tool_guard(tools=TOOLS, chains=CHAINS, on_deny="message")
    authz.agents.register("agent:assistant", owner="team:support", purpose="parity",
                          tools=[t.name for t in TOOLS], replace=True)
    with authz.acting_as("agent:assistant", on_behalf_of="user:alice"), \
            authz.task(scope=[("read", "document:*"), ("export", "document:*")],
                       purpose="parity") as task:
        out.append([task.check("write", r).allowed for r in docs])           # outside the scope
        for tool, args in (("export_document", {"doc": "ticket-1"}),        # allowed, budget 1
                           ("export_document", {"doc": "runbook-1"}),       # budget spent
                           ("read_document", {"doc": "ticket-2"}),          # banned for the agent
                           ("read_document", {"doc": "ticket-1"}),
                           ("create_api_key", {"name": "me"})):             # hard block
            call = guard.begin(tool, args)
            out.append((tool, call.allowed, call.decision.reasons[0].kind if
                        call.decision.reasons else None))
    return out


def test_the_agent_layer_agrees_with_local(authz: Authorizer) -> None:
    expected = _agent_script(Authorizer(POLICY, data=DATA))
    assert _agent_script(authz) == expected
