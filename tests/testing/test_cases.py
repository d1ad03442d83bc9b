"""Policy tests as data: the file format, its validation, the runner and coverage."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from agentauthz import PolicyError
from agentauthz.testing import Coverage, load_file, run_file
from agentauthz.testing.cases import merge_coverage

ROOT = Path(__file__).resolve().parents[2]
DEMO_CASES = ROOT / "examples" / "policy_tests" / "demo.authz.yaml"

POLICY = """\
types:
  user: {}
  agent: {}
  team:
    relations: {member: [user, agent]}
  folder:
    relations: {viewer: [user, agent, team#member], parent: [folder]}
    permissions: {read: viewer | parent->read}
  document:
    relations: {owner: [user], parent: [folder], banned: [user, agent]}
    permissions:
      read: (owner | parent->read) - banned
      write: owner
      share: owner & read
rules:
  - id: weekend-freeze
    effect: forbid
    action: write
    when: has(context.weekend) && context.weekend
  - id: auditors-read
    effect: permit
    principal: user:auditor
    action: read
  - id: never-used
    effect: forbid
    resource: folder
    action: delete
"""
DATA = """\
relationships:
  - team:eng#member@user:alice
  - team:eng#member@agent:bot
  - folder:f#viewer@team:eng#member
  - document:1#parent@folder:f
  - document:1#owner@user:carol
  - document:1#banned@user:mallory
  - team:eng#member@user:bob
  - document:1#banned@user:bob
  - folder:f#viewer@agent:ghost
"""
AGENTS = """\
agents:
  - {id: agent:bot, owner: user:alice, purpose: summarises documents}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def files(tmp_path: Path) -> Path:
    write(tmp_path, "policy.yaml", POLICY)
    write(tmp_path, "data.yaml", DATA)
    write(tmp_path, "agents.yaml", AGENTS)
    return tmp_path


HEAD = "policy: policy.yaml\ndata: data.yaml\nagents: agents.yaml\ncases:\n"


def case(name: str, principal: str, action: str, resource: str, expect: str, **extra: str) -> str:
    lines = [f"  - name: {name}", f"    principal: {principal}", f"    action: {action}",
             f"    resource: {resource}", f"    expect: {expect}"]
    lines += [f"    {k}: {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- running
def test_the_demo_cases_pass_and_cover_the_demo_policy() -> None:
    result = run_file(DEMO_CASES)
    assert result.passed and len(result.results) >= 12
    assert result.coverage.unexercised_rules == []
    assert result.coverage.unexercised == []
    assert result.coverage.never_granted == ["folder.write"]


def test_a_failing_case_reports_the_case_the_decision_and_the_tree(files: Path) -> None:
    path = write(files, "t.authz.yaml", HEAD
                 + case("alice reads", "user:alice", "read", "document:1", "allow")
                 + case("alice writes", "user:alice", "write", "document:1", "allow"))
    result = run_file(path)
    assert not result.passed and [r.case.name for r in result.failures] == ["alice writes"]
    failed = result.failures[0]
    assert failed.failure == "expected allow, got deny"
    assert failed.case.line == 10
    assert "✘ relation document:1#owner — direct subjects: user:carol" in failed.explanation_text
    report = failed.report()
    assert report.startswith(f"FAIL {path}:10: alice writes — expected allow, got deny\n")
    assert "  request:  user:alice write document:1\n" in report
    assert "  expected: allow\n  got:      deny\n" in report
    assert "    - [default_deny] no relation path or permit rule grants 'write' on document" in report
    assert "    ✘ DENY: user:alice write document:1" in report
    assert result.results[0].passed and result.results[0].report().startswith("PASS ")


def test_reason_and_rule_are_checked_after_the_outcome(files: Path) -> None:
    path = write(files, "t.authz.yaml", HEAD
                 + case("right reason", "user:carol", "write", "document:1", "deny",
                        context="{weekend: true}", reason="forbid", rule="weekend-freeze")
                 + case("wrong reason", "user:alice", "write", "document:1", "deny",
                        reason="forbid")
                 + case("wrong rule", "user:auditor", "read", "document:1", "allow",
                        rule="weekend-freeze"))
    results = run_file(path).results
    assert results[0].passed
    assert results[1].failure == "expected the first reason to be 'forbid', got 'default_deny'"
    assert "  problem:  expected the first reason" in results[1].report()
    assert results[2].failure == "expected a reason naming rule 'weekend-freeze', got 'auditors-read'"


def test_agent_and_task_cases(files: Path) -> None:
    path = write(files, "t.authz.yaml", HEAD + """\
  - name: the bot for alice, in a task
    agent: agent:bot
    on_behalf_of: user:alice
    task: {scope: ["read document:*"], purpose: summarise}
    action: read
    resource: document:1
    expect: allow
    reason: delegation
  - name: outside the task's scope
    agent: agent:bot
    on_behalf_of: user:alice
    task: {scope: [[read, "folder:*"]]}
    action: read
    resource: document:1
    expect: deny
    reason: out_of_task_scope
  - name: the user's grants bound the agent's
    agent: agent:bot
    on_behalf_of: user:mallory
    action: read
    resource: document:1
    expect: deny
    reason: user_denied
  - name: an unregistered agent is denied, whatever the relationships say
    principal: agent:ghost
    action: read
    resource: document:1
    expect: allow
  - name: an unregistered agent gets no task
    agent: agent:ghost
    on_behalf_of: user:alice
    task: {scope: [[read, "*"]]}
    action: read
    resource: document:1
    expect: deny
    reason: unknown_agent
""")
    results = run_file(path).results
    assert [r.failure for r in results] == [None] * 3 + ["expected allow, got deny", None]
    assert "✘ registry: agent:ghost — agent 'agent:ghost' is not registered" in \
        results[3].explanation_text
    assert results[1].case.who == ("agent:bot on behalf of user:alice in a task "
                                   "(scope: read folder:*)")
    assert "✘ task scope covers read document:1" in results[1].explanation_text
    assert results[4].explanation is None
    assert "explanation: unavailable" in results[4].report()


def test_everything_inline(tmp_path: Path) -> None:
    path = write(tmp_path, "inline.authz.yaml", """\
        policy:
          types:
            user: {}
            agent: {}
            document:
              relations: {owner: [user, agent]}
              permissions: {read: owner}
        data:
          relationships: [document:1#owner@user:alice, document:1#owner@agent:bot]
        agents:
          - {id: agent:bot, owner: user:alice, purpose: reads}
        cases:
          - name: alice
            principal: user:alice
            action: read
            resource: document:1
            expect: allow
          - name: the bot
            principal: agent:bot
            action: read
            resource: document:1
            expect: allow
    """)
    assert run_file(path).passed


# ------------------------------------------------------------- validation
def problems(path: Path) -> list[str]:
    with pytest.raises(PolicyError) as info:
        load_file(path)
    return [str(p) for p in info.value.problems]


def test_every_case_problem_is_named_with_file_line_and_field(files: Path) -> None:
    path = write(files, "bad.authz.yaml", """\
        policy: policy.yaml
        data: data.yaml
        colour: blue
        cases:
          - name: typo
            principal: user:alice
            acton: read
            resource: document:1
            expect: allow
          - name: typo
            principal: usr:alice
            action: read
            resource: document1
            expect: maybe
            rule: weekend-frieze
          - name: both
            principal: user:alice
            agent: agent:bot
            action: read
            resource: document:1
            expect: deny
            context: [1]
          - action: read
            resource: document:1
            on_behalf_of: user:alice
            task: {scope: [[read]], ttl: 3}
          - just a string
    """)
    found = problems(path)
    assert found == [
        f"{path}:3:9: colour: unknown field 'colour' (hint: expected one of policy, data, agents, "
        "cases)",
        f"{path}:7:12: cases[0].acton: unknown field 'acton' (hint: did you mean 'action'?)",
        f"{path}:5:11: cases[0].action: missing required field 'action'",
        f"{path}:11:16: cases[1].principal: type 'usr' is not declared in the policy "
        "(hint: did you mean 'user'?)",
        f"{path}:13:15: cases[1].resource: resource: expected 'type:id', got 'document1'",
        f"{path}:15:11: cases[1].rule: the policy has no rule 'weekend-frieze' "
        "(hint: did you mean 'weekend-freeze'?)",
        f"{path}:14:13: cases[1].expect: expect must be 'allow' or 'deny', got 'maybe'",
        f"{path}:18:12: cases[2].agent: give either 'principal' or 'agent', not both",
        f"{path}:22:14: cases[2].context: 'context' must be a mapping",
        f"{path}:23:13: cases[3].name: missing required field 'name'",
        f"{path}:23:13: cases[3]: a case needs 'principal', or 'agent' (with 'on_behalf_of' and "
        "'task')",
        f"{path}:25:19: cases[3].on_behalf_of: 'on_behalf_of' needs 'agent': it describes an agent "
        "acting for a user",
        f"{path}:26:29: cases[3].task: 'task' needs 'agent': it describes an agent acting for a user",
        f"{path}:23:13: cases[3].expect: missing required field 'expect' (hint: expect: allow, or "
        "expect: deny)",
        f"{path}:26:34: cases[3].task.ttl: unknown field 'ttl' (hint: expected one of scope, purpose)",
        f"{path}:26:20: cases[3].task.scope[0]: scope item ['read'] is not valid: expected an action "
        "name or '*', and a resource pattern '*', 'type:*', 'type:prefix*' or 'type:id'; written "
        "('read', 'document:*') or 'read document:*'",
        f"{path}:27:5: cases[4]: a case must be a mapping with name, principal, action, resource "
        "and expect",
    ]


def test_case_names_are_unique_in_a_file(files: Path) -> None:
    path = write(files, "t.authz.yaml", HEAD + case("same", "user:a", "read", "document:1", "deny")
                 + case("same", "user:b", "read", "document:1", "deny"))
    assert problems(path) == [f"{path}:10:11: cases[1].name: duplicate case name 'same' "
                              "(also cases[0])"]


def test_problems_of_an_inline_policy_point_into_the_test_file(tmp_path: Path) -> None:
    path = write(tmp_path, "t.authz.yaml", """\
        policy:
          types:
            user: {}
            document:
              relations: {owner: [usr]}
              permissions: {read: ownr}
        cases:
          - {name: a, principal: user:a, action: read, resource: document:1, expect: deny}
    """)
    assert problems(path) == [
        f"{path}:5:27: policy.types.document.relations.owner[0]: undefined type 'usr' "
        "(hint: did you mean 'user'?)",
        f"{path}:6:27: policy.types.document.permissions.read: type 'document' has no relation or "
        "permission 'ownr' (hint: did you mean 'owner'?)",
    ]


def test_problems_of_a_policy_file_point_into_that_file(tmp_path: Path) -> None:
    policy = write(tmp_path, "policy.yaml", "types:\n  user: {relations: {r: [nope]}}\n")
    path = write(tmp_path, "t.authz.yaml", "policy: policy.yaml\ncases: []\n")
    assert problems(path) == [
        f"{policy}:2:26: types.user.relations.r[0]: undefined type 'nope' (hint: declare it under "
        "'types:')",
        f"{path}:2:8: cases: 'cases' must be a non-empty list of cases (hint: cases:\n  - name: "
        "...\n    principal: user:alice\n    action: read\n    resource: document:1\n    expect: "
        "allow)",
    ]
    missing = write(tmp_path, "m.authz.yaml", "policy: nowhere.yaml\ncases: [{}]\n")
    assert problems(missing)[0].startswith(f"{tmp_path / 'nowhere.yaml'}: file not found")
    assert problems(write(tmp_path, "x.authz.yaml", "- 1\n")) == [
        f"{tmp_path / 'x.authz.yaml'}:1:1: a policy test file must be a mapping with 'policy' and "
        "'cases' (hint: start the file with 'policy:')"]
    assert problems(write(tmp_path, "y.authz.yaml", "cases: [{}]\npolicy: [1]\n"))[0] == \
        f"{tmp_path / 'y.authz.yaml'}:2:9: policy: must be a path or a mapping (the policy inline)"


def test_problems_of_data_and_agents(files: Path) -> None:
    one = "cases: [{name: a, principal: user:a, action: read, resource: document:1, expect: deny}]\n"
    inline_data = write(files, "d.authz.yaml", "policy: policy.yaml\ndata:\n  relationships: "
                        "[nonsense]\n  colour: 1\n" + one)
    assert problems(inline_data) == [
        f"{inline_data}:4:11: data.colour: unknown field 'colour' (hint: a data file has "
        "'relationships' and 'attributes')",
        f"{inline_data}:3:19: data.relationships[0]: relationship: expected "
        "'type:id#relation@subject', got 'nonsense'",
    ]
    misfit = write(files, "m.authz.yaml", "policy: policy.yaml\ndata: {relationships: "
                   "['document:1#owner@team:x']}\n" + one)
    assert problems(misfit) == [f"{misfit}:2:8: data: document.owner does not allow subject "
                                "'team:x' (allowed: user)"]
    agents = write(files, "a.authz.yaml", "policy: policy.yaml\nagents:\n  - {id: agent:x, "
                   "owner: user:a}\n" + one)
    assert problems(agents) == [f"{agents}:3:19: agents[0].purpose: Field required"]
    nested = write(files, "n.authz.yaml", "policy: policy.yaml\nagents: {agents: [{id: agent:x, "
                   "owner: user:a}]}\n" + one)
    assert problems(nested) == [f"{nested}:2:33: agents.agents[0].purpose: Field required"]
    twice = write(files, "t.authz.yaml", "policy: {types: {agent: {}}, agents: [{id: agent:x, "
                  "owner: agent:y, purpose: p}]}\nagents: [{id: agent:x, owner: agent:y, "
                  "purpose: p}]\n" + one.replace("user:a", "agent:a").replace("document:1",
                                                                                "agent:1"))
    assert "agent 'agent:x' is both in the policy and in agents=" in problems(twice)[0]


# --------------------------------------------------------------- coverage
def test_coverage_names_what_no_case_exercised(files: Path) -> None:
    path = write(files, "t.authz.yaml", HEAD
                 + case("carol writes on a weekday", "user:carol", "write", "document:1", "allow",
                        context="{weekend: false}")
                 + case("alice reads through her team", "user:alice", "read", "document:1",
                        "allow"))
    cov = run_file(path).coverage
    assert cov.cases == 2
    assert cov.unexercised_rules == ["weekend-freeze", "auditors-read", "never-used"]
    assert cov.unexercised == ["document.share", "folder.parent"]
    assert cov.never_granted == ["document.banned"]  # alice is not banned: but it was evaluated
    text = cov.render()
    assert f"coverage of {files / 'policy.yaml'} (" in text and "2 cases:" in text
    assert "  rules that decided a case: 0 of 3" in text
    assert "    weekend-freeze: reached in 1 case, its condition never held" in text
    assert "    never-used: no case reached it" in text
    assert "    document.share (permission)" in text and "    folder.parent (relation)" in text
    assert "    document.banned (relation)" in text


def test_coverage_counts_arrows_usersets_exclusions_and_every_delegation_branch(
        files: Path) -> None:
    path = write(files, "t.authz.yaml", HEAD
                 + case("bob is banned", "user:bob", "read", "document:1", "deny")
                 + case("the auditor reads by rule", "user:auditor", "read", "document:1", "allow")
                 + case("weekend", "user:carol", "write", "document:1", "deny",
                        context="{weekend: true}")
                 + case("carol shares", "user:carol", "share", "document:1", "allow")
                 + """\
  - name: the bot for alice
    agent: agent:bot
    on_behalf_of: user:alice
    action: read
    resource: document:1
    expect: allow
""")
    result = run_file(path)
    assert result.passed
    cov = result.coverage
    assert cov.unexercised_rules == ["never-used"]
    assert cov.rules["auditors-read"].decided == 1
    assert cov.unexercised == []
    assert cov.never_granted == ["folder.parent"]  # folder:f has no parent
    assert "document.banned" not in cov.never_granted  # the exclusion held for bob
    assert cov.names["team.member"].granted >= 1  # through the userset folder:f#viewer
    assert cov.names["document.parent"].evaluated >= 1  # read by the arrow parent->read


def test_a_rule_that_held_but_did_not_decide_is_not_exercised(tmp_path: Path) -> None:
    path = write(tmp_path, "t.authz.yaml", """\
        policy:
          types:
            user: {}
            document: {relations: {owner: [user]}, permissions: {read: owner}}
          rules:
            - {id: owners-too, effect: permit, action: read, when: "true"}
        data: {relationships: [document:1#owner@user:a]}
        cases:
          - {name: a, principal: user:a, action: read, resource: document:1, expect: allow}
    """)
    cov = run_file(path).coverage
    assert cov.unexercised_rules == ["owners-too"]
    assert "owners-too: its condition held in 1 case, but another rule or a relation decided " \
           "first" in cov.render()


def test_coverage_merges_files_of_the_same_policy_only(files: Path) -> None:
    one = run_file(write(files, "1.authz.yaml", HEAD + case(
        "a", "user:carol", "write", "document:1", "deny", context="{weekend: true}"))).coverage
    two = run_file(write(files, "2.authz.yaml", HEAD + case(
        "b", "user:auditor", "read", "document:1", "allow"))).coverage
    other = run_file(DEMO_CASES).coverage
    merged = merge_coverage([one, two, other])
    assert len(merged) == 2
    assert merged[0].unexercised_rules == ["never-used"]
    assert merged[0].files == [str(files / "1.authz.yaml"), str(files / "2.authz.yaml")]
    assert merged[0].cases == 2 and one.cases == 1
    with pytest.raises(ValueError, match="different policies"):
        Coverage(one.policy).merge(other)


# ------------------------------------------------------------ the guide
def test_the_guides_example_files_say_what_they_do(tmp_path: Path) -> None:
    from tests.test_docs import fenced_blocks

    guide = ROOT / "docs" / "testing.md"
    text = guide.read_text(encoding="utf-8")
    blocks = {b.source.split("\n", 1)[0]: b.source for b in fenced_blocks(text, guide)
              if b.language == "yaml"}
    for name in ("policy.yaml", "data.yaml", "document.authz.yaml"):
        (tmp_path / name).write_text(blocks[f"# {name}"])
    path = tmp_path / "document.authz.yaml"
    result = run_file(path)
    assert result.passed and len(result.results) == 6
    rendered = result.coverage.render().replace(str(tmp_path / "policy.yaml"), "policy.yaml")
    assert rendered in text  # the coverage shown is the coverage run

    wrong = blocks["# document.authz.yaml"].replace(
        "resource: document:plan\n    expect: deny\n", "resource: document:plan\n    expect: allow\n", 1)
    path.write_text(wrong)
    assert run_file(path).failures[0].report().replace(str(path), "document.authz.yaml") in text

    bad = blocks["# document.authz.yaml"].replace("    action: write", "    acton: write", 1)
    path.write_text(bad.replace("expect: deny", "expect: maybe", 1))
    with pytest.raises(PolicyError) as info:
        load_file(path)
    shown = "\n".join(f"  {p}" for p in info.value.problems).replace(str(path), "document.authz.yaml")
    assert shown in text
