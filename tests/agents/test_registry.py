from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentauthz import Authorizer, ConfigurationError, InvalidInputError, PolicyError
from agentauthz.agents import AgentRegistry, AgentStatus, Delegation, RiskTier

from .conftest import DATA, POLICY


def test_policy_agents_are_registered(authz: Authorizer) -> None:
    helper = authz.agents.get("agent:helper")
    assert helper is not None
    assert (helper.owner, helper.risk, helper.status) == ("user:alice", RiskTier.MEDIUM,
                                                          AgentStatus.ACTIVE)
    assert helper.tools == {"search_docs", "create_ticket", "export_csv"}
    assert len(authz.agents) == 3


def test_registry_from_a_separate_file(tmp_path: Path) -> None:
    path = tmp_path / "agents.yaml"
    path.write_text("agents:\n  - id: bot\n    owner: user:alice\n    purpose: triage\n"
                    "    risk: high\n    tools: [search]\n")
    authz = Authorizer(POLICY.split("agents:")[0], agents=path)
    assert authz.agents.get("agent:bot") is not None
    authz.add("document:a#viewer@agent:bot")
    assert authz.check("agent:bot", "read", "document:a").allowed


def test_bad_registry_file_names_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "agents.yaml"
    path.write_text("agents:\n  - id: bot\n    owner: alice\n    purpose: triage\n"
                    "  - id: bot2\n    owner: robot:x\n    purpose: ''\n    risk: extreme\n")
    with pytest.raises(PolicyError) as info:
        Authorizer(POLICY.split("agents:")[0], agents=path)
    text = str(info.value)
    assert "agents.yaml" in text and "owner" in text and "risk" in text
    assert "'alice' is not a 'type:id'" in text
    assert any(p.line == 3 for p in info.value.problems)


def test_bad_agents_in_policy_fail_at_load() -> None:
    policy = POLICY.replace("owner: user:alice\n    purpose: answers",
                            "owner: robot:x\n    purpose: answers")
    with pytest.raises(PolicyError, match="owner type 'robot' is not declared"):
        Authorizer(policy)
    with pytest.raises(PolicyError, match="registered twice"):
        Authorizer(POLICY + "  - {id: agent:helper, owner: user:a, purpose: dup}\n")


def test_agent_in_policy_and_registry_conflicts() -> None:
    registry = AgentRegistry()
    registry.register("agent:helper", owner="user:bob", purpose="dup")
    with pytest.raises(ConfigurationError, match="both in the policy"):
        Authorizer(POLICY, agents=registry)


def test_register_validates() -> None:
    registry = AgentRegistry()
    with pytest.raises(InvalidInputError):
        registry.register("bot", owner="nobody", purpose="x")
    with pytest.raises(InvalidInputError):
        registry.register("bot", owner="user:a", purpose="x", risk="extreme")
    registry.register("bot", owner="user:a", purpose="x")
    with pytest.raises(ConfigurationError, match="already registered"):
        registry.register("bot", owner="user:a", purpose="x")
    registry.register("bot", owner="user:b", purpose="y", replace=True)
    record = registry.get("agent:bot")
    assert record is not None and record.owner == "user:b"


def test_governance_export_shows_owners_use_and_unused_grants(authz: Authorizer) -> None:
    authz.agents.record_tool("agent:helper", "search_docs")
    authz.agents.record_tool("agent:helper", "delete_everything")
    authz.check(Delegation("agent:helper", "user:alice"), "read", "document:a")
    report = authz.governance_report()
    json.dumps(report)  # JSON-ready
    helper = next(a for a in report["agents"] if a["id"] == "agent:helper")
    assert helper["owner"] == "user:alice"
    assert helper["last_used_at"] is not None
    assert helper["approved_tools_never_used"] == ["create_ticket", "export_csv"]
    assert helper["tools_used_without_approval"] == ["delete_everything"]
    # read document:a went through team:support -> folder:shared; the other grants idle
    assert "team:support#member@agent:helper" in helper["grants"]
    assert "team:support#member@agent:helper" not in helper["grants_never_used"]
    assert "document:agent-notes#editor@agent:helper" in helper["grants_never_used"]
    assert "project:p7#member@agent:helper" in helper["grants_never_used"]
    sleepy = next(a for a in report["agents"] if a["id"] == "agent:sleepy")
    assert sleepy["status"] == "suspended" and sleepy["last_used_at"] is None
    assert json.loads(authz.agents.to_json())["agents"][0]["id"] == "agent:helper"


def test_reload_policy_updates_policy_agents() -> None:
    authz = Authorizer(POLICY, data=DATA)
    authz.reload_policy(POLICY.replace("risk: medium", "risk: high"))
    record = authz.agents.get("agent:helper")
    assert record is not None and record.risk is RiskTier.HIGH


def test_spiffe_ids_are_unique() -> None:
    registry = AgentRegistry()
    registry.register("a", owner="user:x", purpose="p", spiffe_id="spiffe://example.org/a")
    assert registry.by_spiffe_id("spiffe://example.org/a") is not None
    with pytest.raises(ConfigurationError):
        registry.register("b", owner="user:x", purpose="p", spiffe_id="spiffe://example.org/a")
