"""``agentauthz audit verify | show | report`` on a file written by a real authorizer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agentauthz import ApprovalRequired, Authorizer
from agentauthz.agents.guard import ToolDenied, guard_tools
from agentauthz.audit import JsonlFileSink
from agentauthz.cli import main

POLICY = """
types:
  user: {}
  agent: {}
  team: {relations: {member: [user, agent]}}
  ticket:
    relations: {team: [team]}
    permissions: {read: team->member, write: team->member}
agents:
  - {id: agent:bot, owner: user:alice, purpose: answers tickets,
     tools: [read_ticket, update_ticket, rotate_password]}
  - {id: agent:other, owner: user:alice, purpose: a second agent, tools: [read_ticket]}
tools:
  read_ticket: {action: read, resource: "ticket:{ticket_id}"}
  update_ticket: {action: write, resource: "ticket:{ticket_id}", effect: write}
  rotate_password: {hard_block: credential_change}
chains:
  - {id: step-up-first-write, effect: write, first: true, decision: approval_required}
"""
DATA = {"relationships": ["team:t#member@user:alice", "team:t#member@agent:bot",
                          "team:t#member@agent:other", "ticket:1#team@team:t"]}


def read_ticket(ticket_id: str) -> str:
    return ticket_id


def update_ticket(ticket_id: str, body: str) -> str:
    return ticket_id


def rotate_password(user: str) -> str:
    return user


@pytest.fixture(scope="module")
def evidence(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """An audit file: checks, a task, tool calls allowed, hard-blocked and held for approval."""
    path = tmp_path_factory.mktemp("audit") / "decisions.jsonl"
    sink = JsonlFileSink(path)
    authz = Authorizer(POLICY, data=DATA, audit=sink)
    tools = {t.__name__: t for t in guard_tools([read_ticket, update_ticket, rotate_password],
                                                authz=authz)}
    authz.check("user:alice", "read", "ticket:1")  # allow
    authz.check("user:bob", "read", "ticket:1")  # deny
    with authz.acting_as("agent:bot", on_behalf_of="user:alice"), \
            authz.task(scope=["read ticket:*", "write ticket:*"], purpose="triage") as task:
        tools["read_ticket"]("1")  # check allow + tool allow
        with pytest.raises(ToolDenied):
            tools["rotate_password"]("user:alice")  # tool hard-blocked
        with pytest.raises(ApprovalRequired):
            tools["update_ticket"]("1", body="password: hunter2")  # check allow + tool approval
    authz.check("agent:other", "read", "ticket:1")  # allow, the agent alone
    sink.close()
    return path, task.task_id


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_verify_an_intact_file(evidence: tuple[Path, str],
                               capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = evidence
    code, out, _ = run(capsys, "audit", "verify", str(path))
    assert code == 0 and out.startswith("ok: 8 records, chain intact; head ")


def test_verify_a_tampered_file(evidence: tuple[Path, str], tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = evidence
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[1] = lines[1].replace('"outcome":"deny"', '"outcome":"allow"')
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, out, _ = run(capsys, "audit", "verify", str(tampered))
    assert code == 1 and out.startswith(f"{tampered}:2: edited: ")
    code, out, _ = run(capsys, "audit", "verify", "--json", str(tampered))
    assert code == 1 and json.loads(out)["line"] == 2 and json.loads(out)["problem"] == "edited"


def test_verify_an_unreadable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "audit", "verify", str(tmp_path / "missing.jsonl"))
    assert code == 2 and "unreadable" in out


def test_show_everything(evidence: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = evidence
    code, out, _ = run(capsys, "audit", "show", str(path))
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["TIME", "(UTC)", "OUTCOME", "WHO", "TASK",
                                               "ACTION", "RESOURCE", "WHY"]
    assert lines[-1] == "8 decision(s)"
    assert "hunter2" not in out


def test_show_one_agent(evidence: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    path, task_id = evidence
    code, out, _ = run(capsys, "audit", "show", str(path), "--agent", "agent:bot")
    rows = out.splitlines()[1:-2]
    assert code == 0 and len(rows) == 5
    assert all("agent:bot for user:alice" in row and task_id[:12] in row for row in rows)
    assert any("rotate_password: call" in row and "DENY" in row and "hard_block" in row
               for row in rows)
    assert any("APPROVAL_REQUIRED" in row for row in rows)


def test_show_filters(evidence: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    path, task_id = evidence

    def count(*options: str) -> int:
        code, out, _ = run(capsys, "audit", "show", str(path), "--json", *options)
        assert code == 0
        return len(out.splitlines())

    assert count("--task", task_id) == 5
    assert count("--principal", "user:alice") == 6  # alice, and the agent acting for her
    assert count("--agent", "agent:other") == 1
    assert count("--outcome", "deny") == 2
    assert count("--outcome", "deny", "--outcome", "approval_required") == 3
    assert count("--kind", "tool") == 3
    assert count("--since", "-1h") == 8
    assert count("--since", "2999-01-01") == 0
    assert count("--until", "2000-01-01T00:00:00Z") == 0
    assert count("--limit", "2") == 2
    _, out, _ = run(capsys, "audit", "show", str(path), "--json", "--kind", "tool")
    tools = [json.loads(line) for line in out.splitlines()]
    assert [t["tool"] for t in tools] == ["read_ticket", "rotate_password", "update_ticket"]
    assert tools[2]["arguments"] == {"ticket_id": "[REDACTED]", "body": "[REDACTED]"}


def test_show_rejects_a_bad_time(evidence: tuple[Path, str],
                                 capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = evidence
    code, _, err = run(capsys, "audit", "show", str(path), "--since", "last tuesday")
    assert code == 2 and "ISO 8601" in err


def test_show_skips_lines_that_are_not_records(evidence: tuple[Path, str], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = evidence
    damaged = tmp_path / "damaged.jsonl"
    damaged.write_text(path.read_text(encoding="utf-8") + "garbage\n", encoding="utf-8")
    code, out, err = run(capsys, "audit", "show", str(damaged))
    assert code == 0 and out.splitlines()[-1] == "8 decision(s)"
    assert "skipped 1 line" in err


def test_report(evidence: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = evidence
    code, out, _ = run(capsys, "audit", "report", str(path), "--json")
    assert code == 0
    rows = {(r["agent"], r["kind"]): r for r in json.loads(out)}
    assert rows[("agent:bot", "tool")] == {
        "agent": "agent:bot", "kind": "tool", "allowed": 1, "denied": 0,
        "approval_required": 1, "hard_blocked": 1, "total": 3}
    assert rows[("agent:bot", "check")]["allowed"] == 2
    assert rows[("user:bob", "check")]["denied"] == 1
    assert rows[("agent:other", "check")]["allowed"] == 1
    code, out, _ = run(capsys, "audit", "report", str(path))
    assert code == 0 and out.splitlines()[0].split()[:3] == ["AGENT", "/", "PRINCIPAL"]
    assert any(line.split()[:2] == ["agent:bot", "tool"] for line in out.splitlines())


def test_report_of_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "audit", "report", str(tmp_path / "missing.jsonl"))
    assert code == 2 and "cannot read" in err


def test_the_command_runs_as_a_program(evidence: tuple[Path, str]) -> None:
    path, _ = evidence
    done = subprocess.run([sys.executable, "-m", "agentauthz", "audit", "verify", str(path)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stdout.startswith("ok: 8 records")
    done = subprocess.run([sys.executable, "-m", "agentauthz", "audit", "report", str(path)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "agent:bot" in done.stdout
