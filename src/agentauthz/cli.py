"""The ``agentauthz`` command.

::

    agentauthz validate POLICY                      exit 0 valid, 1 invalid
    agentauthz check POLICY [--data DATA] PRINCIPAL ACTION RESOURCE [--context JSON]
                                                    exit 0 allow, 1 deny, 2 usage or invalid input
    agentauthz explain POLICY [--data DATA] PRINCIPAL ACTION RESOURCE [--context JSON]
    agentauthz list POLICY [--data DATA] PRINCIPAL ACTION TYPE
    agentauthz demo                                 the example policy, decided and explained
    agentauthz audit verify|show|report FILE...     audit files (see agentauthz.audit.cli)
    agentauthz test FILE... [--coverage]            policy test files: exit 0 passed, 1 failed,
                                                    2 invalid (see agentauthz.testing.cases)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any, TextIO

from agentauthz.audit import cli as audit_cli
from agentauthz.authorizer import Authorizer
from agentauthz.errors import AgentAuthzError, PolicyError
from agentauthz.model import parse_entity_key
from agentauthz.policy.schema import Policy

__all__ = ["main"]

EXIT_ALLOW = 0
EXIT_DENY = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse exits 2 on usage errors: keep that
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="agentauthz", description="Validate, query and explain agentauthz policies.")
    sub = p.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate", help="check a policy file and report every problem")
    v.add_argument("policy")
    v.add_argument("--data", help="also load this data file against the policy")
    for name, text in (("check", "decide one request (exit 0 allow, 1 deny)"),
                       ("explain", "decide one request and print the whole decision tree")):
        c = sub.add_parser(name, help=text)
        c.add_argument("policy")
        c.add_argument("principal", help="e.g. user:alice")
        c.add_argument("action", help="e.g. read")
        c.add_argument("resource", help="e.g. document:42")
        c.add_argument("--data", help="relationships and attributes (YAML or JSON)")
        c.add_argument("--context", help="request context as a JSON object")
        c.add_argument("--json", action="store_true", help="print the decision as JSON")
    ls = sub.add_parser("list", help="list the resources of a type the principal may act on")
    ls.add_argument("policy")
    ls.add_argument("principal")
    ls.add_argument("action")
    ls.add_argument("resource_type")
    ls.add_argument("--data")
    ls.add_argument("--context")
    sub.add_parser("demo", help="run the example policy and print decisions with explanations")
    audit_cli.add_parser(sub)
    t = sub.add_parser("test", help="run policy test files (expected decisions, in YAML)")
    t.add_argument("files", nargs="+", metavar="FILE")
    t.add_argument("--coverage", action="store_true",
                   help="also name the rules, relations and permissions no case exercised")
    return p


def _context(text: str | None) -> Mapping[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _Usage(f"--context is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise _Usage("--context must be a JSON object, e.g. '{\"tenant\": \"acme\"}'")
    return value


class _Usage(Exception):
    pass


def _authorizer(policy: str, data: str | None) -> Authorizer:
    return Authorizer(policy, data=data)


def _decision_json(decision: Any) -> str:
    return json.dumps({
        "allowed": decision.allowed,
        "outcome": decision.outcome.value,
        "reasons": [{"kind": r.kind, "message": r.message, "rule": r.rule}
                    for r in decision.reasons],
        "policy_version": decision.policy_version,
        "decision_id": decision.decision_id,
    }, indent=2)


def run(argv: Sequence[str], out: TextIO, err: TextIO) -> int:
    args = _parser().parse_args(list(argv))
    if args.command == "audit":
        return audit_cli.run(args, out, err)
    if args.command == "test":
        from agentauthz.testing.cases import run_files

        return run_files(args.files, out, err, coverage=args.coverage)
    try:
        if args.command == "validate":
            policy = Policy.load(args.policy)
            if args.data:
                Authorizer(policy, data=args.data)
            out.write(f"{args.policy}: valid ({len(policy.types)} types, {len(policy.rules)} "
                      f"rules, version {policy.version})\n")
            return EXIT_ALLOW
        if args.command == "demo":
            return _demo(out)
        authz = _authorizer(args.policy, args.data)
        context = _context(args.context)
        if args.command == "list":
            parse_entity_key(args.principal, what="principal")
            for key in sorted(authz.list_resources(args.principal, args.action,
                                                   args.resource_type, context)):
                out.write(key + "\n")
            return EXIT_ALLOW
        if args.command == "explain":
            explanation = authz.explain(args.principal, args.action, args.resource, context)
            decision = explanation.decision
            assert decision is not None
            out.write(_decision_json(decision) + "\n" if args.json else str(explanation) + "\n")
        else:
            decision = authz.check(args.principal, args.action, args.resource, context)
            out.write(_decision_json(decision) + "\n" if args.json else decision.explain() + "\n")
        if any(r.kind == "invalid_input" for r in decision.reasons):
            return EXIT_USAGE
        return EXIT_ALLOW if decision.allowed else EXIT_DENY
    except PolicyError as exc:
        err.write(f"{exc}\n")
        return EXIT_DENY if args.command == "validate" else EXIT_USAGE
    except (_Usage, AgentAuthzError) as exc:
        err.write(f"agentauthz: {exc}\n")
        return EXIT_DENY if args.command == "validate" else EXIT_USAGE


_DEMO_REQUESTS: tuple[tuple[str, str, str, str], ...] = (
    ("user:alice", "read", "document:ticket-1", "alice's team owns the tickets folder"),
    ("user:alice", "read", "document:ticket-2", "archive is inside tickets: permissions follow"),
    ("agent:assistant", "read", "document:ticket-1", "the assistant is on the support team"),
    ("agent:assistant", "read", "document:ticket-2", "...but is banned from this one"),
    ("user:alice", "export", "document:ticket-2", "confidential documents never leave"),
    ("user:bob", "read", "document:ticket-1", "bob is on another team"),
    ("user:mallory", "read", "document:globex-plan", "no relationship grants it"),
    ("agent:scraper", "write", "document:runbook-1", "unknown to the graph, and high risk"),
    ("user:alice", "read", "document:runbook-1", "support may view runbooks"),
    ("user:alice", "write", "document:runbook-1", "...but not edit them"),
)


def _demo(out: TextIO) -> int:
    base = resources.files("agentauthz.demo")
    authz = Authorizer(base.joinpath("policy.yaml").read_text(encoding="utf-8"),
                       data=_data_mapping(base.joinpath("data.yaml").read_text(encoding="utf-8")))
    out.write(f"agentauthz demo — policy {authz.policy_version}, "
              f"{len(authz.store)} relationships, local evaluator (no network)\n\n")
    for principal, action, resource, note in _DEMO_REQUESTS:
        decision = authz.check(principal, action, resource)
        verdict = "ALLOW" if decision.allowed else "DENY "
        out.write(f"{verdict} {principal:<16} {action:<7} {resource:<20} # {note}\n")
        out.write(f"       because {decision.reasons[0].message}\n")
    out.write("\nWhat alice may read (list_resources, the RAG pre-retrieval filter):\n  ")
    out.write(", ".join(sorted(authz.list_resources("user:alice", "read", "document"))) + "\n")
    out.write("\nFields of ticket-1 the assistant may read (authorized_fields):\n  ")
    out.write(", ".join(sorted(authz.authorized_fields("agent:assistant", "read",
                                                        "document:ticket-1"))) + "\n")
    out.write("\nThe full decision tree for the assistant reading ticket-2 (explain):\n")
    out.write(str(authz.explain("agent:assistant", "read", "document:ticket-2")) + "\n")
    return EXIT_ALLOW


def _data_mapping(text: str) -> Mapping[str, Any]:
    from agentauthz.policy.loader import parse_text

    data = parse_text(text, "agentauthz/demo/data.yaml").data
    return data if isinstance(data, dict) else {}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``agentauthz`` console script."""
    try:
        return run(sys.argv[1:] if argv is None else argv, sys.stdout, sys.stderr)
    except BrokenPipeError:
        # the reader went away (`agentauthz demo | head`): stop quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
