from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from search import DOCUMENTS, build, search


@pytest.mark.parametrize("user", ["user:alice", "user:bob", "user:carol", "user:mallory"])
def test_every_result_is_readable(user: str) -> None:
    authz = build()
    for doc in search(authz, user, "refunds"):
        assert authz.check(user, "read", doc).allowed


def test_filter_is_exact() -> None:
    authz = build()
    assert set(search(authz, "user:bob", "refunds")) == {"document:deploy", "document:oncall"}
    alice = set(search(authz, "user:alice", "refunds"))
    assert alice == {"document:refund-policy", "document:escalation", "document:deploy",
                     "document:oncall"}
    # carol views finance, but the restricted salary bands never reach a prompt
    assert search(authz, "user:carol", "refunds") == ["document:budget"]
    assert search(authz, "user:mallory", "refunds") == []
    assert len(DOCUMENTS) == 6


def test_script_runs() -> None:
    out = subprocess.run([sys.executable, str(Path(__file__).parent / "search.py")],
                         capture_output=True, text=True, check=True).stdout
    assert "user:mallory  searches 'refunds' -> (nothing readable)" in out
