"""``agentauthz audit``: verify, show and report on JSON-lines audit files.

::

    agentauthz audit verify FILE...        exit 0 intact, 1 tampered, 2 unreadable
    agentauthz audit show FILE... [--agent A] [--task T] [--principal P]
                                  [--since ISO|-1h] [--until ...] [--outcome O] [--kind K]
    agentauthz audit report FILE... [--since ...] [--until ...]

Pass rotated files oldest first: ``decisions.jsonl.2 decisions.jsonl.1
decisions.jsonl``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

from agentauthz.audit.chain import verify

__all__ = ["add_parser", "run"]

EXIT_OK = 0
EXIT_TAMPERED = 1
EXIT_UNREADABLE = 2

_OUTCOMES = ("allow", "deny", "approval_required")
_RELATIVE = re.compile(r"^-?(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_AGE_ARGUMENT = re.compile(r"^-\d+$|^-\d*\.\d+$|^-\d+(?:\.\d+)?[smhdw]$")


def add_parser(sub: Any) -> None:
    """Add ``audit`` and its subcommands to the ``agentauthz`` parser."""
    audit = sub.add_parser("audit", help="verify and query JSON-lines audit files")
    commands = audit.add_subparsers(dest="audit_command", required=True)
    v = commands.add_parser("verify", help="check the hash chain (exit 0 intact, 1 tampered, "
                            "2 unreadable)")
    v.add_argument("files", nargs="+", metavar="FILE", help="oldest first")
    v.add_argument("--partial", action="store_true",
                   help="accept a chain whose first records are in files not given")
    v.add_argument("--json", action="store_true", help="print the result as JSON")
    s = commands.add_parser("show", help="print matching decisions as a table")
    s.add_argument("files", nargs="+", metavar="FILE")
    s.add_argument("--agent", help="decisions of this agent (acting alone or for someone)")
    s.add_argument("--task", help="decisions made in this task id")
    s.add_argument("--principal", help="decisions of this principal, or of agents acting "
                   "on its behalf")
    s.add_argument("--outcome", action="append", choices=_OUTCOMES,
                   help="only this outcome (repeatable)")
    s.add_argument("--kind", choices=("check", "tool"), help="only checks or only tool calls")
    s.add_argument("--limit", type=int, help="only the last N matches")
    s.add_argument("--json", action="store_true", help="print matching records as JSON lines")
    r = commands.add_parser("report", help="per-agent counts of allowed, denied, "
                            "approval-required and hard-blocked decisions")
    r.add_argument("files", nargs="+", metavar="FILE")
    r.add_argument("--json", action="store_true", help="print the counts as JSON")
    for p in (s, r):
        p.add_argument("--since", help="ISO 8601 time (UTC unless it says) or an age: "
                       "-90s, -30m, -1h, -2d, -1w")
        p.add_argument("--until", help="same forms as --since")
        if hasattr(p, "_negative_number_matcher"):  # let `--since -1h` read as a value
            p._negative_number_matcher = _AGE_ARGUMENT


class _Usage(Exception):
    pass


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Run ``agentauthz audit ...``; returns the exit code."""
    if args.audit_command == "verify":
        return _verify(args, out)
    try:
        since, until = _time(args.since, "--since"), _time(args.until, "--until")
        records = list(_records(args.files, err, since, until))
    except _Usage as exc:
        err.write(f"agentauthz audit: {exc}\n")
        return EXIT_UNREADABLE
    if args.audit_command == "show":
        return _show(args, records, out)
    return _report(args, records, out)


# ---------------------------------------------------------------- verify
def _verify(args: argparse.Namespace, out: TextIO) -> int:
    result = verify(args.files, partial=args.partial)
    if args.json:
        out.write(json.dumps({"ok": result.ok, "records": result.records, "head": result.head,
                              "problem": result.problem, "file": result.file,
                              "line": result.line, "message": result.message}) + "\n")
    else:
        out.write(str(result) + "\n")
    if result.ok:
        return EXIT_OK
    return EXIT_UNREADABLE if result.problem == "unreadable" else EXIT_TAMPERED


# --------------------------------------------------------------- reading
def _time(text: str | None, option: str) -> dt.datetime | None:
    if text is None:
        return None
    text = text.strip()
    relative = _RELATIVE.match(text)
    if relative:
        seconds = float(relative[1]) * _UNITS[relative[2]]
        return dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise _Usage(f"{option} {text!r}: expected an ISO 8601 time (2024-06-11, "
                     "2024-06-11T10:00:00Z) or an age (-30m, -1h, -2d)") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def _records(files: Sequence[str], err: TextIO, since: dt.datetime | None,
             until: dt.datetime | None) -> Iterator[dict[str, Any]]:
    skipped = 0
    for name in files:
        try:
            f = open(name, "rb")  # noqa: SIM115
        except OSError as exc:
            raise _Usage(f"cannot read {name}: {exc.strerror or exc}") from None
        with f:
            for raw in f:
                try:
                    record = json.loads(raw)
                    moment = dt.datetime.fromisoformat(record["time"])
                except (ValueError, KeyError, TypeError):
                    skipped += 1
                    continue
                if not isinstance(record, dict):
                    skipped += 1
                    continue
                if (since is not None and moment < since) or (until is not None
                                                              and moment > until):
                    continue
                yield record
    if skipped:
        err.write(f"agentauthz audit: skipped {skipped} line(s) that are not records "
                  "(run `agentauthz audit verify` on the files)\n")


def _actor(record: dict[str, Any]) -> str:
    """Who acted: the agent of a delegation, else the principal."""
    return str(record.get("agent") or record.get("principal") or "?")


def _matches(args: argparse.Namespace, record: dict[str, Any]) -> bool:
    if args.agent is not None and _actor(record) != args.agent:
        return False
    if args.task is not None and record.get("task") != args.task:
        return False
    if args.principal is not None and args.principal not in (
            record.get("principal"), record.get("agent"), record.get("on_behalf_of")):
        return False
    if args.outcome and record.get("outcome") not in args.outcome:
        return False
    return args.kind is None or record.get("kind") == args.kind


# ------------------------------------------------------------------ show
def _show(args: argparse.Namespace, records: list[dict[str, Any]], out: TextIO) -> int:
    matched = [r for r in records if _matches(args, r)]
    if args.limit is not None:
        matched = matched[-args.limit:] if args.limit > 0 else []
    if args.json:
        for record in matched:
            out.write(json.dumps(record, sort_keys=True) + "\n")
        return EXIT_OK
    rows: list[tuple[str, ...]] = [("TIME (UTC)", "OUTCOME", "WHO", "TASK", "ACTION",
                                    "RESOURCE", "WHY")]
    for r in matched:
        who = _actor(r) + (f" for {r['on_behalf_of']}" if r.get("on_behalf_of") else "")
        action = f"{r.get('tool')}: {r.get('action')}" if r.get("kind") == "tool" else \
            str(r.get("action"))
        reasons = r.get("reasons") or [{}]
        first = reasons[0] if isinstance(reasons[0], dict) else {}
        why = f"[{first.get('kind', '')}] {first.get('message', '')}".strip()
        rows.append((str(r.get("time", ""))[:19].replace("T", " "),
                     str(r.get("outcome", "")).upper(), who, str(r.get("task") or "-")[:12],
                     action, str(r.get("resource")), why))
    _table(rows, out, limits=(19, 17, 48, 12, 32, 40, 80))
    out.write(f"\n{len(matched)} decision(s)\n")
    return EXIT_OK


def _table(rows: list[tuple[str, ...]], out: TextIO, limits: Sequence[int]) -> None:
    cells = [[_cut(c, limits[i]) for i, c in enumerate(row)] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(rows[0]))]
    for row in cells:
        out.write("  ".join(c.ljust(widths[i]) if i < len(row) - 1 else c
                            for i, c in enumerate(row)).rstrip() + "\n")


def _cut(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


# ---------------------------------------------------------------- report
def _report(args: argparse.Namespace, records: list[dict[str, Any]], out: TextIO) -> int:
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for r in records:
        key = (_actor(r), str(r.get("kind", "check")))
        row = counts.setdefault(key, {"allowed": 0, "denied": 0, "approval_required": 0,
                                      "hard_blocked": 0, "total": 0})
        row["total"] += 1
        outcome = r.get("outcome")
        reasons = r.get("reasons") or [{}]
        first = reasons[0] if isinstance(reasons[0], dict) else {}
        if outcome == "allow":
            row["allowed"] += 1
        elif outcome == "approval_required":
            row["approval_required"] += 1
        elif str(first.get("kind", "")).startswith("hard_block"):
            row["hard_blocked"] += 1
        else:
            row["denied"] += 1
    ordered = sorted(counts.items())
    if args.json:
        out.write(json.dumps([{"agent": who, "kind": kind, **row}
                              for (who, kind), row in ordered], indent=2) + "\n")
        return EXIT_OK
    rows: list[tuple[str, ...]] = [("AGENT / PRINCIPAL", "KIND", "ALLOWED", "DENIED",
                                    "APPROVAL", "HARD-BLOCKED", "TOTAL")]
    for (who, kind), row in ordered:
        rows.append((who, kind, *(str(row[k]) for k in (
            "allowed", "denied", "approval_required", "hard_blocked", "total"))))
    _table(rows, out, limits=(60, 5, 12, 12, 12, 12, 12))
    out.write(f"\n{len(records)} decision(s); a guarded tool call is one `tool` record plus "
              "the `check` records it made\n")
    return EXIT_OK
