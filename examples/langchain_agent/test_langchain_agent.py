"""The support assistant: each of its five steps, from the audit records and the desk itself."""

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from langchain_core.messages import ToolMessage

from agentauthz.agents.guard import ToolCallRecord
from langchain_agent.agent import AGENT, SCRIPT, TICKET, USER, Run, main, run

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def result() -> tuple[Run, str]:
    out = io.StringIO()
    return run(out), out.getvalue()


def record(result: tuple[Run, str], tool: str) -> ToolCallRecord:
    [found] = [r for r in result[0].records if r.tool == tool]
    return found


def answer(result: tuple[Run, str], tool: str) -> ToolMessage:
    """What the model read back for its call of ``tool``."""
    [found] = [m for m in result[0].messages if isinstance(m, ToolMessage) and m.name == tool]
    return found


def test_every_call_of_the_script_was_decided_once(result: tuple[Run, str]) -> None:
    run_, _ = result
    assert [r.tool for r in run_.records] == [
        "read_ticket", "search_kb", "send_email", "create_api_key", "update_ticket"]
    assert all(r.principal.startswith(f"{AGENT}>{USER}@task:") for r in run_.records)
    assert len({r.task for r in run_.records}) == 1
    assert len(SCRIPT) == 6 and run_.messages[-1].content == SCRIPT[-1].content


def test_1_it_reads_the_ticket(result: tuple[Run, str]) -> None:
    read = record(result, "read_ticket")
    assert read.decision.allowed and read.resource == f"ticket:{TICKET}"
    assert "charged twice" in json.loads(str(answer(result, "read_ticket").content))["text"]


def test_2_the_search_drops_a_record_and_a_field_it_may_not_see(result: tuple[Run, str]) -> None:
    search = record(result, "search_kb")
    assert search.decision.allowed
    assert set(search.withheld) == {"record article:KB-3", "article:KB-1 field internal_notes"}
    seen = json.loads(str(answer(result, "search_kb").content))["articles"]
    assert [a["id"] for a in seen] == ["KB-1", "KB-2"]
    assert all("internal_notes" not in a for a in seen)


def test_3_exporting_after_a_confidential_read_is_stopped(result: tuple[Run, str]) -> None:
    send = record(result, "send_email")
    assert not send.decision.allowed
    assert (send.decision.reasons[0].kind, send.decision.reasons[0].rule) == (
        "chain_rule", "no-exfiltration")
    refused = answer(result, "send_email")
    assert refused.status == "error" and str(refused.content).startswith("DENIED: chain rule")
    assert result[0].desk.outbox == []


def test_4_minting_itself_an_api_key_is_refused(result: tuple[Run, str]) -> None:
    mint = record(result, "create_api_key")
    assert not mint.decision.allowed
    assert mint.decision.reasons[0].kind == "hard_block:token_minting"
    assert answer(result, "create_api_key").status == "error"
    assert result[0].desk.api_keys == []


def test_5_the_write_runs_once_a_person_approved_it(result: tuple[Run, str]) -> None:
    update = record(result, "update_ticket")
    assert update.decision.allowed and update.decision.reasons[0].kind == "approved"
    assert any(r.rule == "step-up-on-first-write" for r in update.decision.reasons)
    ticket = result[0].desk.tickets[TICKET]
    assert ticket["status"] == "solved" and len(ticket["replies"]) == 1
    assert "user:carol approves apr-" in result[1]


def test_the_transcript_has_one_line_per_step(result: tuple[Run, str]) -> None:
    lines = [line.strip() for line in result[1].splitlines()]
    marks = [line[0] + " " + line.split()[1] for line in lines if line[:1] in ("✔", "✘")]
    assert marks == ["✔ read_ticket", "✔ search_kb", "✘ send_email", "✘ create_api_key",
                     "✔ update_ticket"]


def test_main_writes_the_audit_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "audit.jsonl"
    assert main(["--audit", str(path)]) == 0
    entries = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [(e["tool"], e["allowed"]) for e in entries] == [
        ("read_ticket", True), ("search_kb", True), ("send_email", False),
        ("create_api_key", False), ("update_ticket", True)]
    assert entries[1]["withheld"] and entries[2]["reasons"][0]["rule"] == "no-exfiltration"
    assert all(e["decision_id"] and e["principal"].startswith(AGENT) for e in entries)
    assert f"5 decisions written to {path}" in capsys.readouterr().out


def test_it_runs_as_a_module_from_the_repository_root(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    out = subprocess.run([sys.executable, "-m", "examples.langchain_agent.agent", "--audit",
                          str(path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "✘ create_api_key" in out.stdout and out.stderr == ""
    assert len(path.read_text(encoding="utf-8").splitlines()) == 5
