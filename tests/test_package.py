from __future__ import annotations

import subprocess
import sys

import agentauthz


def test_all_is_complete_and_sorted() -> None:
    # '@py_builtins' and '@pytest_ar': pytest rewrites the asserts of a package with a pytest11
    # entry point (ours: agentauthz.testing.pytest_plugin), and leaves these names behind
    public = {name for name in dir(agentauthz) if not name.startswith(("_", "@"))}
    modules = {"authorizer", "engine", "errors", "model", "policy", "cli", "demo", "enforce",
               "typing", "cache", "backends", "integrations", "agents", "audit", "telemetry",
               "testing", "scale"}
    assert sorted(agentauthz.__all__, key=str.lower) == agentauthz.__all__ or \
        sorted(agentauthz.__all__) == agentauthz.__all__
    assert public - modules <= set(agentauthz.__all__)
    for name in agentauthz.__all__:
        assert hasattr(agentauthz, name)


def test_import_pulls_in_no_optional_dependency() -> None:
    code = ("import sys, agentauthz; bad = [m for m in ('fastapi', 'langchain', 'httpx', "
            "'oso_cloud', 'pytest', 'cedarpy', 'redis', 'jwt') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
