"""``agentauthz test``: exit codes, failures explained, invalid files, coverage."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agentauthz.cli import main

ROOT = Path(__file__).resolve().parents[2]
DEMO_CASES = ROOT / "examples" / "policy_tests" / "demo.authz.yaml"

CASES = """\
policy:
  types:
    user: {}
    document: {relations: {owner: [user]}, permissions: {read: owner, write: owner}}
data: {relationships: [document:1#owner@user:alice]}
cases:
  - name: alice reads
    principal: user:alice
    action: read
    resource: document:1
    expect: allow
  - name: bob reads
    principal: user:bob
    action: read
    resource: document:1
    expect: {expect}
"""


@pytest.fixture
def passing(tmp_path: Path) -> Path:
    path = tmp_path / "pass.authz.yaml"
    path.write_text(CASES.replace("{expect}", "deny"))
    return path


@pytest.fixture
def failing(tmp_path: Path) -> Path:
    path = tmp_path / "fail.authz.yaml"
    path.write_text(CASES.replace("{expect}", "allow"))
    return path


def test_every_case_passes_exit_0(passing: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test", str(passing), str(DEMO_CASES)]) == 0
    out = capsys.readouterr().out
    assert f"{passing}: 2 cases, ok\n" in out
    assert out.endswith("\n17 passed, 0 failed (2 files)\n")
    assert "coverage" not in out


def test_a_failing_case_exit_1_with_its_explanation(passing: Path, failing: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test", str(passing), str(failing)]) == 1
    out = capsys.readouterr().out
    assert f"FAIL {failing}:12: bob reads — expected allow, got deny\n" in out
    assert "  request:  user:bob read document:1\n" in out
    assert "    ✘ DENY: user:bob read document:1\n" in out
    assert "            ✘ relation document:1#owner — direct subjects: user:alice\n" in out
    assert f"{failing}: 2 cases, 1 failed\n" in out
    assert "alice reads" not in out  # passing cases stay quiet
    assert out.endswith("\n3 passed, 1 failed (2 files)\n")


def test_an_invalid_file_exit_2_and_the_others_still_run(
        passing: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.authz.yaml"
    bad.write_text(CASES.replace("{expect}", "sometimes"))
    missing = tmp_path / "missing.authz.yaml"
    assert main(["test", str(bad), str(missing), str(passing)]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        f"{bad}: invalid policy test file (1 problem)",
        f"  {bad}:16:13: cases[1].expect: expect must be 'allow' or 'deny', got 'sometimes'",
        f"{missing}: invalid policy test file (1 problem)",
        f"  {missing}: file not found (hint: check the path, relative to the working directory "
        f"{Path.cwd()})",
    ]
    assert captured.out.endswith("\n2 passed, 0 failed, 2 invalid files (3 files)\n")


def test_coverage_names_what_no_case_exercised(passing: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test", "--coverage", str(passing)]) == 0
    out = capsys.readouterr().out
    assert f"coverage of {passing} (sha256:" in out
    assert "  relations and permissions evaluated: 2 of 3\n" in out
    assert "  relations and permissions never evaluated:\n    document.write (permission)\n" in out


def test_no_file_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["test"])
    assert info.value.code == 2
    assert "the following arguments are required: FILE" in capsys.readouterr().err


def test_the_command() -> None:
    proc = subprocess.run([sys.executable, "-m", "agentauthz", "test", "--coverage",
                           str(DEMO_CASES.relative_to(ROOT))], cwd=ROOT, capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("examples/policy_tests/demo.authz.yaml: 15 cases, ok\n")
    assert "coverage of src/agentauthz/demo/policy.yaml (sha256:" in proc.stdout
    assert "  rules that decided a case: 3 of 3\n" in proc.stdout
