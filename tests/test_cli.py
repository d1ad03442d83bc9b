from __future__ import annotations

import io
import json
import subprocess
import sys
from typing import Any

from agentauthz.cli import run
from tests.conftest import DOCS_POLICY

DATA = """
relationships:
  - document:3#owner@user:bob
  - [document:1, parent, folder:root]
attributes:
  document:3: {tenant: acme, classification: internal}
"""


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


def test_validate(tmp_file: Any) -> None:
    good = tmp_file("p.yaml", DOCS_POLICY)
    code, out, _ = _run("validate", str(good))
    assert code == 0 and "valid" in out
    bad = tmp_file("bad.yaml", "types: {user: {relations: {r: [nope]}}}")
    code, _, err = _run("validate", str(bad))
    assert code == 1 and "bad.yaml:1:" in err and "undefined type 'nope'" in err


def test_check_exit_codes(tmp_file: Any) -> None:
    policy, data = tmp_file("p.yaml", DOCS_POLICY), tmp_file("d.yaml", DATA)
    assert _run("check", str(policy), "user:bob", "read", "document:3", "--data", str(data))[0] == 0
    code, out, _ = _run("check", str(policy), "user:eve", "read", "document:3", "--data", str(data))
    assert code == 1 and "DENY" in out
    assert _run("check", str(policy), "user:bob", "read", "document3", "--data", str(data))[0] == 2
    assert _run("check", str(policy), "user:bob", "read", "document:3", "--context", "{")[0] == 2
    assert _run("check", str(policy), "user:bob", "read", "document:3", "--context", "[1]")[0] == 2
    assert _run("check", str(tmp_file("x.yaml", "types: 3")), "user:a", "r", "d:1")[0] == 2
    code, out, _ = _run("check", str(policy), "user:bob", "read", "document:3", "--data",
                        str(data), "--json")
    assert json.loads(out)["allowed"] is True


def test_explain_and_list(tmp_file: Any) -> None:
    policy, data = tmp_file("p.yaml", DOCS_POLICY), tmp_file("d.yaml", DATA)
    code, out, _ = _run("explain", str(policy), "user:bob", "read", "document:3", "--data", str(data))
    assert code == 0 and "relation document:3#owner" in out
    code, out, _ = _run("list", str(policy), "user:bob", "read", "document", "--data", str(data))
    assert code == 0 and out.split() == ["document:3"]


def test_usage_errors_exit_2() -> None:
    proc = subprocess.run([sys.executable, "-m", "agentauthz", "check"], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 2


def test_demo_runs() -> None:
    proc = subprocess.run([sys.executable, "-m", "agentauthz", "demo"], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "ALLOW user:alice" in proc.stdout and "DENY" in proc.stdout
    assert "no-export-of-confidential" in proc.stdout or "never leave" in proc.stdout
