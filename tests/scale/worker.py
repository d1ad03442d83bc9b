"""A worker process for the multi-process tests: one authorizer on the shared namespace.

The test drives each worker over a pipe, one command at a time; see :func:`serve`.
"""

from __future__ import annotations

import time
from multiprocessing.connection import Connection
from typing import Any

from .policy import authorizer

AGENT, USER = "agent:bot", "user:alice"


def serve(conn: Connection, url: str, namespace: str, options: dict[str, Any]) -> None:
    """Answer commands until ``("stop",)``; every answer is ``("ok", value)`` or ``("error", text)``."""
    authz = authorizer(url, namespace, **options)

    def search(ticket_id: str) -> str:
        return ticket_id

    def lookup(ticket_id: str) -> str:
        return ticket_id

    tools = {f.__name__: authz.guard.wrap(f) for f in (search, lookup)}
    tool_answers = {"search": "1", "lookup": "1"}

    def guarded(tool: str) -> str:
        """The call's outcome: ``allow`` or the kind of the reason it was denied."""
        try:
            result = tools[tool](ticket_id="1")
        except Exception as exc:  # ToolDenied: its decision says why
            decision = getattr(exc, "decision", None)
            return decision.reasons[0].kind if decision is not None else type(exc).__name__
        assert result == tool_answers[tool]
        return "allow"

    conn.send(("ok", "ready"))
    while True:
        command, *args = conn.recv()
        try:
            if command == "stop":
                authz._state.close()  # type: ignore[union-attr]
                conn.send(("ok", None))
                return
            if command == "check":
                decision = authz.check(*args)
                conn.send(("ok", (decision.allowed, decision.reasons[0].kind)))
            elif command == "revoke":
                (agent,) = args
                authz.revoke(agent=agent, reason="compromised")
                conn.send(("ok", time.time()))
            elif command == "until_denied":
                # check as fast as possible until denied: the wall time it first was
                principal, action, resource, timeout = args
                conn.send(("ok", "polling"))
                deadline = time.monotonic() + timeout
                while authz.check(principal, action, resource).allowed:
                    if time.monotonic() > deadline:
                        conn.send(("ok", None))
                        break
                else:
                    conn.send(("ok", time.time()))
            elif command == "race":
                token, tool, calls = args
                with authz.acting_as(AGENT, on_behalf_of=USER), \
                        authz.join_task(token, agent=AGENT):
                    conn.send(("ok", [guarded(tool) for _ in range(calls)]))
            elif command == "loop":
                token, tool, seconds = args
                out: list[tuple[float, str]] = []
                end = time.monotonic() + seconds
                with authz.acting_as(AGENT, on_behalf_of=USER), \
                        authz.join_task(token, agent=AGENT):
                    while time.monotonic() < end:
                        out.append((time.monotonic(), guarded(tool)))
                        time.sleep(0.002)
                conn.send(("ok", out))
            else:
                conn.send(("error", f"unknown command {command!r}"))
        except Exception as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
