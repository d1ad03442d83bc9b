"""Policy tests as data: YAML files of expected decisions, decided, explained and measured.

A test file (``*.authz.yaml`` is what the pytest plugin collects)::

    policy: policy.yaml          # a path relative to this file, or the policy inline
    data: data.yaml              # optional: relationships and attributes, path or inline
    agents: agents.yaml          # optional: an agent registry, path or inline list
    cases:
      - name: alice reads her team's ticket
        principal: user:alice
        action: read
        resource: document:ticket-1
        expect: allow
      - name: the assistant, for alice, in a task scoped to tickets
        agent: agent:assistant
        on_behalf_of: user:alice
        task: {scope: [[read, "document:ticket-*"]]}
        action: read
        resource: document:ticket-1
        context: {ticket: T-1}
        expect: allow
        reason: delegation       # optional: the kind of the decision's first reason
        rule: some-rule          # optional: a reason of the decision names this rule

:func:`load_file` validates a file and reports every problem with file,
line and field (a :class:`~agentauthz.errors.PolicyError`, like a policy);
:func:`run_file` decides and explains every case. A :class:`Coverage` walks
the explanation trees of the cases and names the rules and the relations and
permissions that no case exercised (``docs/testing.md`` says exactly what
counts).
"""

from __future__ import annotations

import ast
import dataclasses
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, TextIO

from agentauthz.agents.delegation import Delegation
from agentauthz.authorizer import Authorizer
from agentauthz.engine.explain import Explanation
from agentauthz.errors import AgentAuthzError, AuthorizationError, PolicyError, Problem
from agentauthz.model import Decision, Entity, EntityLike, Outcome, Reason, parse_entity_key
from agentauthz.policy.loader import PathKey, Positions, read_source
from agentauthz.policy.schema import Policy

__all__ = [
    "Case",
    "CaseFile",
    "CaseResult",
    "Coverage",
    "FileResult",
    "describe",
    "explain_decision",
    "load_file",
    "merge_coverage",
    "run_case",
    "run_file",
    "run_files",
]

Expect = Literal["allow", "deny"]

_FILE_KEYS: Final = ("policy", "data", "agents", "cases")
_CASE_KEYS: Final = ("name", "principal", "agent", "on_behalf_of", "task", "action", "resource",
                     "context", "expect", "reason", "rule")
_TASK_KEYS: Final = ("scope", "purpose")


# ------------------------------------------------------------------- cases
@dataclass(frozen=True, slots=True)
class Case:
    """One expected decision. Either ``principal``, or ``agent`` (with ``on_behalf_of`` and ``scope``)."""

    name: str
    action: str
    resource: str
    expect: Expect
    principal: str | None = None
    agent: str | None = None
    on_behalf_of: str | None = None
    scope: tuple[tuple[str, str], ...] | None = None
    """The task scope: the case is decided inside ``authz.task(scope)``."""
    purpose: str | None = None
    context: Mapping[str, Any] | None = None
    reason: str | None = None
    rule: str | None = None
    file: str | None = None
    line: int | None = None

    @property
    def who(self) -> str:
        if self.principal is not None:
            return self.principal
        text = f"{self.agent}"
        if self.on_behalf_of is not None:
            text += f" on behalf of {self.on_behalf_of}"
        if self.scope is not None:
            text += " in a task (scope: " + ", ".join(f"{a} {p}" for a, p in self.scope) + ")"
        return text

    @property
    def request(self) -> str:
        text = f"{self.who} {self.action} {self.resource}"
        return text + (f" context={dict(self.context)!r}" if self.context else "")

    @property
    def location(self) -> str:
        where = self.file or "<cases>"
        return f"{where}:{self.line}" if self.line is not None else where

    @property
    def expectation(self) -> str:
        text: str = self.expect
        if self.reason is not None:
            text += f", first reason {self.reason}"
        if self.rule is not None:
            text += f", by rule {self.rule!r}"
        return text


@dataclass(frozen=True, slots=True)
class CaseResult:
    """A case, the decision it got, and (when it failed) why, with the explanation tree."""

    case: Case
    decision: Decision
    explanation: Explanation | None
    failure: str | None
    """``None`` when the case passed; else what differs from the expectation."""

    @property
    def passed(self) -> bool:
        return self.failure is None

    @property
    def explanation_text(self) -> str:
        return str(self.explanation) if self.explanation is not None else ""

    def report(self) -> str:
        """The case, the expectation, the decision and the full explanation: for a failure."""
        case = self.case
        head = f"{'PASS' if self.passed else 'FAIL'} {case.location}: {case.name}"
        if self.failure is not None:
            head += f" — {self.failure}"
        return head + "\n" + describe(case.request, case.expectation, self.decision,
                                      self.explanation, self.failure)


def describe(request: str, expected: str, decision: Decision, explanation: Explanation | None,
             failure: str | None = None) -> str:
    """A decision as a failing test shows it: the request, expected and got, reasons, tree."""
    lines = [f"  request:  {request}", f"  expected: {expected}",
             f"  got:      {decision.outcome.value}"]
    if failure is not None and decision.allowed == expected.startswith("allow"):
        lines.append(f"  problem:  {failure}")  # the outcome was right: a reason or rule was not
    lines.append(f"  reasons (policy {decision.policy_version or 'unknown'}):")
    lines.extend(f"    - {r}" for r in decision.reasons)
    if not decision.reasons:
        lines.append("    (none)")
    if explanation is None:
        lines.append("  explanation: unavailable (only the local evaluator explains)")
    else:
        lines.append("  explanation:")
        lines.append(explanation.render("    "))
    return "\n".join(lines)


def _failure(case: Case, decision: Decision) -> str | None:
    got = "allow" if decision.allowed else "deny"
    if got != case.expect:
        return f"expected {case.expect}, got {decision.outcome.value}"
    first = decision.reasons[0].kind if decision.reasons else None
    if case.reason is not None and first != case.reason:
        return f"expected the first reason to be {case.reason!r}, got {first!r}"
    if case.rule is not None and not any(r.rule == case.rule for r in decision.reasons):
        named = sorted({r.rule for r in decision.reasons if r.rule})
        return (f"expected a reason naming rule {case.rule!r}, got "
                + (", ".join(map(repr, named)) if named else "no rule"))
    return None


def run_case(authz: Authorizer, case: Case) -> CaseResult:
    """Decide one case (inside its task, if it has one) and explain the decision."""
    try:
        if case.scope is not None:
            assert case.agent is not None
            purpose = case.purpose or f"policy test: {case.name}"
            with authz.task(case.scope, purpose=purpose, agent=case.agent,
                            on_behalf_of=case.on_behalf_of) as task:
                return _decided(authz, case, task.principal)
        if case.agent is not None:
            return _decided(authz, case, Delegation.of(case.agent, case.on_behalf_of))
        assert case.principal is not None
        return _decided(authz, case, case.principal)
    except AuthorizationError as exc:  # the task could not be issued: its agent may not act
        decision = exc.decision if exc.decision is not None else Decision(
            False, Outcome.DENY, (Reason(type(exc).__name__, str(exc)),), authz.policy_version)
        return CaseResult(case, decision, None, _failure(case, decision))


def _decided(authz: Authorizer, case: Case, principal: str | Delegation) -> CaseResult:
    decision = authz.check(principal, case.action, case.resource, case.context)
    explanation = explain_decision(authz, decision, principal, case.action, case.resource,
                                   case.context)
    return CaseResult(case, decision, explanation, _failure(case, decision))


def explain_decision(authz: Authorizer, decision: Decision, principal: EntityLike | Delegation,
                     action: str, resource: EntityLike, context: Mapping[str, Any] | None
                     ) -> Explanation | None:
    """The tree of ``decision`` (``None`` when the backend cannot explain).

    ``explain`` of a plain principal walks the policy only; when that
    disagrees with the decision of an agent (unregistered, suspended,
    revoked, or let through by break-glass), the agent is explained as a
    delegation, whose tree shows the registry's verdict.
    """
    try:
        explanation = authz.explain(principal, action, resource, context)
        tree = explanation.decision
        if (tree is not None and tree.allowed != decision.allowed
                and not isinstance(principal, Delegation)
                and authz.agents.is_agent(principal.key if isinstance(principal, Entity)
                                          else principal)):
            explanation = authz.explain(Delegation.of(principal), action, resource, context)
    except NotImplementedError:
        return None
    return explanation


# ------------------------------------------------------------------- files
class CaseFile:
    """A validated test file: its policy, an authorizer with its data, and its cases."""

    def __init__(self, path: str, policy: Policy, authz: Authorizer, cases: Sequence[Case]) -> None:
        self.path = path
        self.policy = policy
        self.authz = authz
        """The authorizer every case of this file is decided by (built once, by :func:`load_file`)."""
        self.cases: tuple[Case, ...] = tuple(cases)

    def run(self) -> FileResult:
        results = tuple(run_case(self.authz, case) for case in self.cases)
        return FileResult(self.path, results, Coverage.of(self.policy, results, self.path))

    def __repr__(self) -> str:
        return f"<CaseFile {self.path} {len(self.cases)} cases>"


@dataclass(frozen=True, slots=True)
class FileResult:
    path: str
    results: tuple[CaseResult, ...]
    coverage: Coverage

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> list[CaseResult]:
        return [r for r in self.results if not r.passed]


def load_file(path: str | os.PathLike[str]) -> CaseFile:
    """Read and validate a test file; raises :class:`PolicyError` naming every problem."""
    path = Path(path)
    src = read_source(path)
    pos = src.positions
    data = src.data
    name = str(path)
    if not isinstance(data, dict):
        raise PolicyError([pos.problem((), "a policy test file must be a mapping with 'policy' "
                                           "and 'cases'", hint="start the file with 'policy:'")])
    problems: list[Problem] = []
    for key in data:
        if key not in _FILE_KEYS:
            problems.append(pos.problem((str(key),), f"unknown field {key!r}",
                                        hint=_hint(str(key), _FILE_KEYS)))
    policy = _load_policy(data, path.parent, pos, problems)
    cases = _read_cases(data, name, pos, problems, policy)
    if problems:
        raise PolicyError(problems)
    assert policy is not None
    authz = _authorizer(policy, data, path.parent, pos)
    return CaseFile(name, policy, authz, cases)


def run_file(path: str | os.PathLike[str]) -> FileResult:
    """Load, validate and run one test file."""
    return load_file(path).run()


def _hint(key: str, options: Iterable[str]) -> str:
    import difflib

    match = difflib.get_close_matches(key, list(options), n=1)
    return f"did you mean {match[0]!r}?" if match else "expected one of " + ", ".join(options)


def _source(value: Any, base: Path) -> Any:
    """A path (relative to the test file) or inline data, as the loaders take it."""
    if isinstance(value, str):
        return Path(os.path.normpath(base / value))
    return value


def _relocated(exc: PolicyError, pos: Positions, prefix: PathKey) -> list[Problem]:
    """Problems of inline content, placed in the test file (those of another file stay put)."""
    out = []
    for p in exc.problems:
        if p.file is not None or p.line is not None:
            out.append(p)
        else:
            out.append(pos.problem((*prefix, *_path_key(p.path)), p.message, hint=p.hint))
    return out


_PATH_PART = re.compile(r"\[(\d+)\]|\.?([^.\[]+)")


def _path_key(text: str) -> PathKey:
    """The inverse of the loader's ``format_path`` (keys holding '.' resolve to their parent)."""
    return tuple(int(m[1]) if m[1] is not None else m[2] for m in _PATH_PART.finditer(text))


def _load_policy(data: dict[str, Any], base: Path, pos: Positions,
                 problems: list[Problem]) -> Policy | None:
    value = data.get("policy")
    if value is None:
        problems.append(pos.problem(("policy",) if "policy" in data else (),
                                    "missing required field 'policy'",
                                    hint="a path relative to this file, or the policy inline"))
        return None
    if not isinstance(value, str | dict):
        problems.append(pos.problem(("policy",), "must be a path or a mapping (the policy inline)"))
        return None
    try:
        return Policy.load(_source(value, base))
    except PolicyError as exc:
        problems.extend(_relocated(exc, pos, ("policy",)))
        return None


def _authorizer(policy: Policy, data: dict[str, Any], base: Path, pos: Positions) -> Authorizer:
    from agentauthz.agents.registry import AgentRegistry

    registry = None
    agents = data.get("agents")
    if agents is not None:
        # an inline list is read as {"agents": [...]}: its problems' paths then start at "agents"
        inline_prefix: PathKey = () if isinstance(agents, list) else ("agents",)
        if isinstance(agents, list):
            agents = {"agents": agents}
        elif not isinstance(agents, str | dict):
            raise PolicyError([pos.problem(("agents",), "must be a path or a list of agents")])
        try:
            registry = AgentRegistry.load(_source(agents, base), known_types=policy.types)
        except PolicyError as exc:
            raise PolicyError(_relocated(exc, pos, inline_prefix)) from None
    try:
        authz = Authorizer(policy, agents=registry)
    except AgentAuthzError as exc:  # an agent both in the policy and in agents:
        raise PolicyError([pos.problem(("agents",), str(exc))]) from None
    source = data.get("data")
    if source is not None:
        if not isinstance(source, str | dict):
            raise PolicyError([pos.problem(("data",), "must be a path or a mapping")])
        try:
            authz.load_data(_source(source, base))
        except PolicyError as exc:
            raise PolicyError(_relocated(exc, pos, ("data",))) from None
        except AgentAuthzError as exc:  # a relationship the schema does not allow
            raise PolicyError([pos.problem(("data",), str(exc))]) from None
    return authz


def _read_cases(data: dict[str, Any], file: str, pos: Positions, problems: list[Problem],
                policy: Policy | None) -> list[Case]:
    raw = data.get("cases")
    if not isinstance(raw, list) or not raw:
        problems.append(pos.problem(("cases",) if "cases" in data else (),
                                    "'cases' must be a non-empty list of cases",
                                    hint="cases:\n  - name: ...\n    principal: user:alice\n"
                                         "    action: read\n    resource: document:1\n"
                                         "    expect: allow"))
        return []
    seen: dict[str, int] = {}
    cases = []
    for index, item in enumerate(raw):
        case = _read_case(item, ("cases", index), file, pos, problems, policy)
        if case is None:
            continue
        if case.name in seen:
            problems.append(pos.problem(("cases", index, "name"), f"duplicate case name "
                                        f"{case.name!r} (also cases[{seen[case.name]}])"))
        seen.setdefault(case.name, index)
        cases.append(case)
    return cases


def _read_case(item: Any, at: PathKey, file: str, pos: Positions, problems: list[Problem],
               policy: Policy | None) -> Case | None:
    if not isinstance(item, dict):
        problems.append(pos.problem(at, "a case must be a mapping with name, principal, action, "
                                        "resource and expect"))
        return None
    start = len(problems)
    # where the case starts: its first key (the loader places a mapping at its last key)
    first = min(((p.line or 0, p.column or 0) for p in (pos.problem((*at, str(k)), "")
                                                         for k in item)), default=(None, None))

    def bad(key: str | PathKey, message: str, hint: str | None = None) -> None:
        path = (*at, key) if isinstance(key, str) else (*at, *key)
        problem = pos.problem(path, message, hint=hint)
        if path == at or (isinstance(key, str) and key not in item):  # missing: point at the case
            problem = dataclasses.replace(problem, line=first[0], column=first[1])
        problems.append(problem)

    for key in item:
        if key not in _CASE_KEYS:
            bad(str(key), f"unknown field {key!r}", _hint(str(key), _CASE_KEYS))

    def text(key: str, *, required: bool = False) -> str | None:
        value = item.get(key)
        if value is None:
            if required:
                bad(key, f"missing required field {key!r}")
            return None
        if not isinstance(value, str) or not value:
            bad(key, f"{key!r} must be a non-empty string")
            return None
        return value

    def entity(key: str, *, required: bool = False) -> str | None:
        value = text(key, required=required)
        if value is None:
            return None
        try:
            type_, _ = parse_entity_key(value, what=key)
        except AgentAuthzError as exc:
            bad(key, str(exc))
            return None
        if policy is not None and type_ not in policy.types:
            bad(key, f"type {type_!r} is not declared in the policy", _hint(type_, policy.types))
        return value

    name = text("name", required=True)
    principal = entity("principal")
    agent = entity("agent")
    on_behalf_of = entity("on_behalf_of")
    action = text("action", required=True)
    resource = entity("resource", required=True)
    reason = text("reason")
    rule = text("rule")
    if policy is not None and rule is not None and rule not in {r.id for r in policy.rules}:
        bad("rule", f"the policy has no rule {rule!r}", _hint(rule, [r.id for r in policy.rules]))
    if "principal" in item and "agent" in item:
        bad("agent", "give either 'principal' or 'agent', not both")
    elif "principal" not in item and "agent" not in item:
        bad((), "a case needs 'principal', or 'agent' (with 'on_behalf_of' and 'task')")
    if agent is not None and agent == on_behalf_of:
        bad("on_behalf_of", "an agent cannot act on behalf of itself")
    for key in ("on_behalf_of", "task"):
        if key in item and "agent" not in item:
            bad(key, f"{key!r} needs 'agent': it describes an agent acting for a user")
    expect = item.get("expect")
    if expect is None:
        bad("expect", "missing required field 'expect'", "expect: allow, or expect: deny")
    elif expect not in ("allow", "deny"):
        bad("expect", f"expect must be 'allow' or 'deny', got {expect!r}")
    context = item.get("context")
    if context is not None and not isinstance(context, dict):
        bad("context", "'context' must be a mapping")
    scope, purpose = _read_task(item.get("task"), (*at, "task"), pos, problems) \
        if "task" in item else (None, None)
    if len(problems) > start:
        return None
    assert name is not None and action is not None and resource is not None
    return Case(name=name, action=action, resource=resource,
                expect="allow" if expect == "allow" else "deny", principal=principal,
                agent=agent, on_behalf_of=on_behalf_of, scope=scope, purpose=purpose,
                context=context, reason=reason, rule=rule, file=file, line=first[0])


def _read_task(task: Any, at: PathKey, pos: Positions, problems: list[Problem]
               ) -> tuple[tuple[tuple[str, str], ...] | None, str | None]:
    from agentauthz.agents.credentials import Scope

    if not isinstance(task, dict):
        problems.append(pos.problem(at, "'task' must be a mapping with 'scope'",
                                    hint="task: {scope: [[read, \"document:*\"]]}"))
        return None, None
    for key in task:
        if key not in _TASK_KEYS:
            problems.append(pos.problem((*at, str(key)), f"unknown field {key!r}",
                                        hint=_hint(str(key), _TASK_KEYS)))
    purpose = task.get("purpose")
    if purpose is not None and not isinstance(purpose, str):
        problems.append(pos.problem((*at, "purpose"), "'purpose' must be a string"))
    raw = task.get("scope")
    if not isinstance(raw, list) or not raw:
        problems.append(pos.problem((*at, "scope") if "scope" in task else at,
                                    "a task needs a 'scope': a non-empty list of [action, "
                                    "resource pattern]", hint='scope: [[read, "document:*"]]'))
        return None, None
    items: list[tuple[str, str]] = []
    for i, entry in enumerate(raw):
        try:
            Scope([entry])
        except AgentAuthzError as exc:
            problems.append(pos.problem((*at, "scope", i), str(exc)))
            continue
        if isinstance(entry, str):
            action, _, pattern = entry.partition(" ")
            items.append((action, pattern))
        else:
            items.append((entry[0], entry[1]))
    return tuple(items), purpose


def run_files(paths: Sequence[str], out: TextIO, err: TextIO, *, coverage: bool = False) -> int:
    """``agentauthz test``: run files, print every failure; 0 all passed, 1 failed, 2 invalid."""
    results: list[FileResult] = []
    invalid = 0
    for path in paths:
        try:
            results.append(run_file(path))
        except PolicyError as exc:
            invalid += 1
            count = len(exc.problems)
            err.write(f"{path}: invalid policy test file ({count} problem"
                      f"{'s' if count != 1 else ''})\n")
            err.writelines(f"  {p}\n" for p in exc.problems)
        except AgentAuthzError as exc:
            invalid += 1
            err.write(f"{path}: {exc}\n")
    failed = 0
    total = 0
    for result in results:
        total += len(result.results)
        failed += len(result.failures)
        for failure in result.failures:
            out.write(failure.report() + "\n\n")
        state = "ok" if result.passed else f"{len(result.failures)} failed"
        out.write(f"{result.path}: {len(result.results)} cases, {state}\n")
    if coverage:
        for cov in merge_coverage(r.coverage for r in results):
            out.write("\n" + cov.render() + "\n")
    files = len(results) + invalid
    summary = f"{total - failed} passed, {failed} failed"
    if invalid:
        summary += f", {invalid} invalid file{'s' if invalid != 1 else ''}"
    out.write(f"\n{summary} ({files} file{'s' if files != 1 else ''})\n")
    return 2 if invalid else (1 if failed else 0)


# ---------------------------------------------------------------- coverage
_PREFIX: Final = r"(?:userset \S+: |excluded: )*"
_RELATION: Final = re.compile(_PREFIX + r"relation ([A-Za-z_]\w*):[^\s#]+#(\w+)$")
_PERMISSION: Final = re.compile(_PREFIX + r"([A-Za-z_]\w*)\.(\w+) on [A-Za-z_]\w*:\S+ = ")
_ARROW: Final = re.compile(_PREFIX + r"(\w+)->\w+ from ([A-Za-z_]\w*):\S+$")
_STOPPED: Final = re.compile(_PREFIX + r"([A-Za-z_]\w*):[^\s#]+#(\w+)$")  # a cycle or the depth limit
_RULE: Final = re.compile(r"(?:permit|forbid) rule ('.*'|\".*\")$")


@dataclass(slots=True)
class _Use:
    evaluated: int = 0
    granted: int = 0
    decided: int = 0


@dataclass
class Coverage:
    """What the cases of one policy exercised, from their explanation trees.

    A rule is *exercised* when it decided at least one case: a reason of the
    case's decision (or, for a delegation, of one branch's decision) names it
    — a permit that granted, a forbid that denied. A relation or permission
    (``type.name``) is *exercised* when at least one explanation evaluated
    it: a node for it, or an arrow reading the relation, appears in the tree.
    ``never_granted`` are those evaluated but never found to hold.
    """

    policy: Policy
    rules: dict[str, _Use] = field(init=False)
    names: dict[str, _Use] = field(init=False)
    cases: int = 0
    files: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rules = {rule.id: _Use() for rule in self.policy.rules}
        self.names = {f"{t}.{n}": _Use() for t, info in self.policy.types.items()
                      for n in (*info.relations, *info.permissions)}

    @classmethod
    def of(cls, policy: Policy, results: Iterable[CaseResult], file: str | None = None) -> Coverage:
        """The coverage of these case results (of one file, when ``file`` is given)."""
        coverage = cls(policy)
        if file is not None:
            coverage.files.append(file)
        for result in results:
            coverage.record(result.decision, result.explanation)
        return coverage

    def record(self, decision: Decision, explanation: Explanation | None) -> None:
        """Count one case."""
        self.cases += 1
        evaluated: set[str] = set()
        granted: set[str] = set()
        reached: set[str] = set()
        held: set[str] = set()
        decided = {r.rule for r in decision.reasons if r.rule and r.kind in ("permit", "forbid")}
        if explanation is not None:
            self._walk(explanation, evaluated, granted, reached, held, decided, root=True)
        for names, attr in ((evaluated, "evaluated"), (granted, "granted")):
            for name in names:
                use = self.names.get(name)
                if use is not None:
                    setattr(use, attr, getattr(use, attr) + 1)
        for ids, attr in ((reached, "evaluated"), (held, "granted"), (decided, "decided")):
            for rule_id in ids:
                use = self.rules.get(rule_id)
                if use is not None:
                    setattr(use, attr, getattr(use, attr) + 1)

    def _walk(self, node: Explanation, evaluated: set[str], granted: set[str], reached: set[str],
              held: set[str], decided: set[str], *, root: bool = False) -> None:
        label = node.label
        if node.decision is not None and not root:  # a delegation's branch
            decided.update(r.rule for r in node.decision.reasons
                           if r.rule and r.kind in ("permit", "forbid"))
        name = None
        if m := _RELATION.match(label) or _PERMISSION.match(label):
            name = f"{m[1]}.{m[2]}"
        elif m := _ARROW.match(label):
            name = f"{m[2]}.{m[1]}"  # the arrow reads its relation on the object
        elif (m := _STOPPED.match(label)) and node.granted is not None:
            name = f"{m[1]}.{m[2]}"
        elif m := _RULE.match(label):
            rule_id = ast.literal_eval(m[1])
            if node.granted is not None:  # None: the rule's principal selector did not match
                reached.add(rule_id)
            if node.granted:
                held.add(rule_id)
        if name is not None:
            evaluated.add(name)
            if node.granted:
                granted.add(name)
        for child in node.children:
            self._walk(child, evaluated, granted, reached, held, decided)

    def merge(self, other: Coverage) -> None:
        """Add another file's counts (same policy version) to these."""
        if other.policy.version != self.policy.version:
            raise ValueError("coverage of different policies cannot be merged")
        for mine, theirs in ((self.rules, other.rules), (self.names, other.names)):
            for key, use in theirs.items():
                m = mine[key]
                m.evaluated += use.evaluated
                m.granted += use.granted
                m.decided += use.decided
        self.cases += other.cases
        self.files.extend(other.files)

    @property
    def unexercised_rules(self) -> list[str]:
        """Rules that decided no case, in policy order."""
        return [rule_id for rule_id, use in self.rules.items() if not use.decided]

    @property
    def unexercised(self) -> list[str]:
        """Relations and permissions (``type.name``) that no case evaluated."""
        return sorted(name for name, use in self.names.items() if not use.evaluated)

    @property
    def never_granted(self) -> list[str]:
        """Relations and permissions some case evaluated, but that never held."""
        return sorted(name for name, use in self.names.items()
                      if use.evaluated and not use.granted)

    def render(self) -> str:
        policy = self.policy
        where = policy.source or ", ".join(self.files) or "inline policy"
        rules = len(self.rules) - len(self.unexercised_rules)
        names = len(self.names) - len(self.unexercised)
        lines = [f"coverage of {where} ({policy.version}), {_cases(self.cases)}:",
                 f"  rules that decided a case: {rules} of {len(self.rules)}",
                 f"  relations and permissions evaluated: {names} of {len(self.names)}"]
        if self.unexercised_rules:
            lines.append("  rules never exercised:")
            for rule_id in self.unexercised_rules:
                use = self.rules[rule_id]
                if not use.evaluated:
                    why = "no case reached it (its action, resource type and principal never matched)"
                elif not use.granted:
                    why = f"reached in {_cases(use.evaluated)}, its condition never held"
                else:
                    why = (f"its condition held in {_cases(use.granted)}, but another rule or a "
                           "relation decided first")
                lines.append(f"    {rule_id}: {why}")
        if self.unexercised:
            lines.append("  relations and permissions never evaluated:")
            lines.extend(f"    {name} ({self._kind(name)})" for name in self.unexercised)
        if self.never_granted:
            lines.append("  evaluated but never granted (no case has a path through them):")
            lines.extend(f"    {name} ({self._kind(name)})" for name in self.never_granted)
        return "\n".join(lines)

    def _kind(self, name: str) -> str:
        type_, _, item = name.partition(".")
        return "relation" if item in self.policy.types[type_].relations else "permission"


def _cases(n: int) -> str:
    return f"{n} case{'s' if n != 1 else ''}"


def merge_coverage(coverages: Iterable[Coverage]) -> list[Coverage]:
    """One coverage per policy version, merging files that test the same policy."""
    merged: dict[str, Coverage] = {}
    for cov in coverages:
        mine = merged.get(cov.policy.version)
        if mine is None:
            mine = merged[cov.policy.version] = Coverage(cov.policy)
        mine.merge(cov)
    return list(merged.values())
