"""How agent-layer state is written to a shared store: compact, canonical JSON.

One home for every encoding the Redis stores use, so that a worker reads
exactly what another wrote. Attribute values keep their CEL types the way
the SQLite store keeps them (``$timestamp``, ``$duration``); anything else a
step's attributes hold that JSON cannot is written as its ``repr`` — a step
is evidence, not a value a condition reads.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from agentauthz.agents.approvals import ApprovalRequest
from agentauthz.agents.breakglass import BreakGlassGrant
from agentauthz.agents.chains import Step, Summary, _hashed
from agentauthz.agents.revocation import Revocation
from agentauthz.agents.tools import Effect
from agentauthz.engine.sqlite import _decode, _encode
from agentauthz.model import Reason

__all__ = ["dumps", "loads"]

_SEPARATORS = (",", ":")


def _lenient(value: Any) -> Any:
    try:
        return _encode(value)
    except TypeError:
        return repr(value)


def dumps(value: Any) -> str:
    """Canonical JSON (sorted keys, no spaces); CEL types tagged, the rest as ``repr``."""
    return json.dumps(value, sort_keys=True, separators=_SEPARATORS, default=_lenient,
                      ensure_ascii=False)


def dumps_strict(value: Any) -> str:
    """:func:`dumps` for values that conditions read: a type JSON cannot hold raises TypeError."""
    return json.dumps(value, sort_keys=True, separators=_SEPARATORS, default=_encode,
                      ensure_ascii=False)


def loads(text: str | bytes) -> Any:
    return json.loads(text, object_hook=_decode)


# ------------------------------------------------------------------ ledgers
def step_to(step: Step) -> dict[str, Any]:
    return {"t": step.tool, "a": step.action, "r": step.resource, "e": step.effect.value,
            "l": sorted(step.labels), "x": dict(step.attributes), "ok": step.allowed,
            "at": step.at, "n": step.n}


def step_from(d: Mapping[str, Any]) -> Step:
    return Step(d["t"], d["a"], d["r"], Effect(d["e"]), frozenset(d["l"]), d["x"], d["ok"],
                d["at"], d["n"])


def summary_to(summary: Summary) -> str:
    return dumps({
        "count": summary.count,
        "labels": {label: step_to(s) for label, s in summary.labels.items()},
        "effects": sorted(e.value for e in summary.effects),
        "calls": [[tool, effect.value, n] for (tool, effect), n in summary.calls.items()],
        "values": {name: [[value, step_to(s)] for value, s in seen.items()]
                   for name, seen in summary.values.items()},
    })


def summary_from(text: str | bytes | None) -> Summary:
    """The summary a ledger holds (an empty one for a ledger never written)."""
    if text is None:
        return Summary()
    d = loads(text)
    return Summary(
        labels={label: step_from(s) for label, s in d["labels"].items()},
        effects={Effect(e) for e in d["effects"]},
        calls={(tool, Effect(effect)): n for tool, effect, n in d["calls"]},
        values={name: {_hashed(value): step_from(s) for value, s in seen}
                for name, seen in d["values"].items()},
        count=d["count"],
    )


# -------------------------------------------------------- revocations, grants
def revocation_to(r: Revocation) -> str:
    return dumps({"kind": r.kind, "id": r.id, "reason": r.reason, "revoked_at": r.revoked_at,
                  "until": r.until})


def revocation_from(text: str | bytes) -> Revocation:
    d = loads(text)
    return Revocation(d["kind"], d["id"], d["reason"], d["revoked_at"], d["until"])


def grant_to(g: BreakGlassGrant) -> str:
    return dumps({"id": g.id, "principal": g.principal, "action": g.action,
                  "resource": g.resource, "reason": g.reason, "approver": g.approver,
                  "granted_at": g.granted_at, "expires_at": g.expires_at})


def grant_from(text: str | bytes) -> BreakGlassGrant:
    d = loads(text)
    return BreakGlassGrant(d["id"], d["principal"], d["action"], d["resource"], d["reason"],
                           d["approver"], d["granted_at"], d["expires_at"])


# ----------------------------------------------------------------- approvals
def request_to(r: ApprovalRequest) -> dict[str, Any]:
    return {"id": r.id, "principal": r.principal, "tool": r.tool, "action": r.action,
            "resource": r.resource, "arguments": dict(r.arguments),
            "reasons": [[x.kind, x.message, x.rule] for x in r.reasons],
            "fingerprint": r.fingerprint, "created_at": r.created_at, "agents": list(r.agents)}


def request_from(d: Mapping[str, Any]) -> ApprovalRequest:
    return ApprovalRequest(d["id"], d["principal"], d["tool"], d["action"], d["resource"],
                           d["arguments"], tuple(Reason(*x) for x in d["reasons"]),
                           d["fingerprint"], d["created_at"], tuple(d["agents"]))
