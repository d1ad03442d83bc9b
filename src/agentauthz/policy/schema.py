"""A validated policy: the schema resolved, expressions parsed, conditions compiled.

:class:`Policy` is what the rest of the library holds. Building one runs
every check below and reports all problems at once in a
:class:`~agentauthz.errors.PolicyError`, each with file, line, column and a
hint. After that, a ``Policy`` is immutable and consistent: every name it
mentions exists, every expression parses, no permission depends on itself
within its own type.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from pydantic import ValidationError

from agentauthz.errors import PolicyError, Problem
from agentauthz.policy.cel import CelSyntaxError, Condition, compile_condition
from agentauthz.policy.definition import (
    AgentDefinition,
    PolicyDefinition,
    RuleDefinition,
    TypeDefinition,
)
from agentauthz.policy.expressions import (
    ExpressionSyntaxError,
    Name,
    PermissionExpr,
    parse_permission,
    walk,
)
from agentauthz.policy.loader import PathKey, Positions, SourceText, read_source
from agentauthz.policy.typecheck import check_condition

__all__ = ["Policy", "PrincipalSelector", "RelationInfo", "Rule", "SubjectType", "TypeInfo"]

_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
RESERVED_ATTRIBUTES: Final = frozenset({"id", "type"})


@dataclass(frozen=True, slots=True)
class SubjectType:
    """An allowed subject of a relation: ``user``, ``team#member`` or ``user:*``."""

    type: str
    relation: str | None = None
    wildcard: bool = False

    def __str__(self) -> str:
        if self.relation:
            return f"{self.type}#{self.relation}"
        return f"{self.type}:*" if self.wildcard else self.type


@dataclass(frozen=True, slots=True)
class RelationInfo:
    name: str
    subjects: tuple[SubjectType, ...]

    @property
    def direct_types(self) -> frozenset[str]:
        return frozenset(s.type for s in self.subjects if s.relation is None and not s.wildcard)

    @property
    def wildcard_types(self) -> frozenset[str]:
        return frozenset(s.type for s in self.subjects if s.wildcard)

    @property
    def usersets(self) -> tuple[SubjectType, ...]:
        return tuple(s for s in self.subjects if s.relation is not None)


@dataclass(frozen=True, slots=True)
class TypeInfo:
    name: str
    relations: Mapping[str, RelationInfo]
    permissions: Mapping[str, PermissionExpr]
    attributes: Mapping[str, str]
    fields: Mapping[str, Mapping[str, PermissionExpr]]

    def has(self, name: str) -> bool:
        """Whether ``name`` is a relation or a permission of this type."""
        return name in self.relations or name in self.permissions


@dataclass(frozen=True, slots=True)
class PrincipalSelector:
    """Who a rule applies to: anyone, a type, one entity, or the members of a userset."""

    kind: Literal["any", "type", "entity", "userset"]
    type: str | None = None
    id: str | None = None
    relation: str | None = None

    def __str__(self) -> str:
        if self.kind == "any":
            return "*"
        if self.kind == "type":
            return str(self.type)
        text = f"{self.type}:{self.id}"
        return f"{text}#{self.relation}" if self.relation else text


@dataclass(frozen=True, slots=True)
class Rule:
    """A compiled rule. ``actions``/``resource_types`` of ``None`` match anything."""

    id: str
    effect: Literal["permit", "forbid"]
    actions: frozenset[str] | None
    resource_types: frozenset[str] | None
    principals: tuple[PrincipalSelector, ...]
    condition: Condition | None
    description: str | None = None

    def applies_to(self, resource_type: str, action: str) -> bool:
        return ((self.resource_types is None or resource_type in self.resource_types)
                and (self.actions is None or action in self.actions))


class Policy:
    """A validated, immutable policy. Build it with :meth:`load` or a constructor below."""

    def __init__(self, definition: PolicyDefinition, *, source: str | None = None,
                 positions: Positions | None = None) -> None:
        self.definition = definition
        self.source = source
        positions = positions or Positions(source)
        problems: list[Problem] = []
        self.types: Mapping[str, TypeInfo] = _resolve_types(definition, positions, problems)
        self.rules: tuple[Rule, ...] = tuple(_resolve_rules(definition, self.types, positions,
                                                            problems))
        self.agents: tuple[AgentDefinition, ...] = resolve_agents(
            definition.agents, self.types, positions, problems)
        self.tools, self.chains = _resolve_tools(definition, self.types, positions, problems)
        if problems:
            raise PolicyError(problems)
        canonical = json.dumps(definition.model_dump(mode="json"), sort_keys=True,
                               separators=(",", ":"))
        self.version: str = "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()[:16]

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, source: str | os.PathLike[str] | Mapping[str, Any] | Policy) -> Policy:
        """Load from a path (``.yaml``/``.yml``/``.json``), YAML text, a mapping, or a policy."""
        if isinstance(source, Policy):
            return source
        return cls._from_source(read_source(source))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Policy:
        return cls._from_source(read_source(os.fspath(path) if isinstance(path, str)
                                            else path))

    @classmethod
    def from_yaml(cls, text: str, *, source: str | None = None) -> Policy:
        from agentauthz.policy.loader import parse_text

        return cls._from_source(parse_text(text, source))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Policy:
        return cls._from_source(read_source(data))

    @classmethod
    def _from_source(cls, src: SourceText) -> Policy:
        positions = src.positions
        if not isinstance(src.data, dict):
            raise PolicyError([positions.problem(
                (), "a policy must be a mapping with a 'types' key",
                hint="start the file with 'types:'")])
        try:
            definition = PolicyDefinition.model_validate(src.data)
        except ValidationError as exc:
            structural = _pydantic_problems(exc, positions)
        else:
            return cls(definition, source=positions.file, positions=positions)
        # Report every problem at once: check what did parse, then add those findings.
        raise PolicyError(structural + _salvaged_problems(src.data, positions))

    # ----------------------------------------------------------------- queries
    def actions_for(self, resource_type: str) -> frozenset[str]:
        """Every action a check on this type can grant: its permissions and rule actions."""
        info = self.types.get(resource_type)
        if info is None:
            return frozenset()
        actions = set(info.permissions)
        for rule in self.rules:
            if rule.effect == "permit" and rule.actions is not None and (
                    rule.resource_types is None or resource_type in rule.resource_types):
                actions |= rule.actions
        return frozenset(actions)

    def __repr__(self) -> str:
        return f"<Policy {self.version} types={len(self.types)} rules={len(self.rules)}>"


# ---------------------------------------------------------------------- helpers
def _salvaged_problems(data: dict[str, Any], positions: Positions) -> list[Problem]:
    """Semantic problems of the parts of a structurally broken policy that did parse."""
    types = data.get("types")
    rules = data.get("rules")
    partial: dict[str, Any] = {"types": {}, "rules": []}
    if isinstance(types, dict):
        for name, spec in types.items():
            try:
                TypeDefinition.model_validate({} if spec is None else spec)
            except ValidationError:
                partial["types"][name] = {}  # keep the name so references to it resolve
            else:
                partial["types"][name] = {} if spec is None else spec
    kept: dict[int, int] = {}
    if isinstance(rules, list):
        for index, rule in enumerate(rules):
            try:
                RuleDefinition.model_validate(rule)
            except ValidationError:
                continue
            kept[len(partial["rules"])] = index
            partial["rules"].append(rule)
    if isinstance(data.get("context"), dict):
        partial["context"] = data["context"]
    try:
        definition = PolicyDefinition.model_validate(partial)
    except ValidationError:
        return []
    positions.rule_index = kept
    try:
        Policy(definition, source=positions.file, positions=positions)
    except PolicyError as exc:
        return list(exc.problems)
    finally:
        positions.rule_index = None
    return []



def _suggest(name: str, options: Iterable[str]) -> str | None:
    match = difflib.get_close_matches(name, list(options), n=1)
    return f"did you mean {match[0]!r}?" if match else None


def _pydantic_problems(exc: ValidationError, positions: Positions) -> list[Problem]:
    problems = []
    for err in exc.errors():
        path: PathKey = tuple(p for p in err["loc"] if isinstance(p, str | int))
        kind = err["type"]
        if kind == "extra_forbidden":
            message = f"unknown field {path[-1]!r}"
            hint = "remove it, or check its spelling and indentation"
        elif kind == "missing":
            message = f"missing required field {path[-1]!r}"
            hint = None
        else:
            message = err["msg"]
            hint = None
        problems.append(positions.problem(path, message, hint=hint))
    return problems


def _parse_subject(text: str) -> SubjectType | None:
    if text.endswith(":*"):
        return SubjectType(text[:-2], wildcard=True) if _NAME.fullmatch(text[:-2]) else None
    type_, sep, rel = text.partition("#")
    if not _NAME.fullmatch(type_) or (sep and not _NAME.fullmatch(rel)):
        return None
    return SubjectType(type_, rel or None)


def _resolve_types(defn: PolicyDefinition, pos: Positions,
                   problems: list[Problem]) -> dict[str, TypeInfo]:
    names = set(defn.types)
    relations: dict[str, dict[str, RelationInfo]] = {}
    perms: dict[str, dict[str, PermissionExpr]] = {}
    for tname, tdef in defn.types.items():
        base: PathKey = ("types", tname)
        if not _NAME.fullmatch(tname):
            problems.append(pos.problem(base, f"type name {tname!r} is not a valid name",
                                        hint="use letters, digits and '_', not starting "
                                             "with a digit"))
        relations[tname] = {}
        for rname, subjects in tdef.relations.items():
            rpath: PathKey = (*base, "relations", rname)
            if not _NAME.fullmatch(rname):
                problems.append(pos.problem(rpath, f"relation name {rname!r} is not a valid name"))
            if rname in tdef.permissions:
                problems.append(pos.problem(rpath, f"{rname!r} is both a relation and a "
                                                   "permission", hint="rename one of them"))
            if not subjects:
                problems.append(pos.problem(rpath, "a relation needs at least one subject type",
                                            hint="e.g. [user] or [user, team#member]"))
            parsed = []
            for i, text in enumerate(subjects):
                st = _parse_subject(text)
                if st is None:
                    problems.append(pos.problem((*rpath, i), f"bad subject type {text!r}",
                                                hint="write 'user', 'team#member' or 'user:*'"))
                    continue
                if st.type not in names:
                    problems.append(pos.problem((*rpath, i), f"undefined type {st.type!r}",
                                                hint=_suggest(st.type, names)
                                                or "declare it under 'types:'"))
                    continue
                parsed.append(st)
            relations[tname][rname] = RelationInfo(rname, tuple(parsed))
        perms[tname] = {}
        for pname, text in tdef.permissions.items():
            ppath: PathKey = (*base, "permissions", pname)
            if not _NAME.fullmatch(pname):
                problems.append(pos.problem(ppath, f"permission name {pname!r} is not a valid name"))
            try:
                perms[tname][pname] = parse_permission(text)
            except ExpressionSyntaxError as exc:
                problems.append(pos.problem(ppath, f"bad permission expression: {exc.message}",
                                            offset=exc.offset))
    # usersets name a relation or permission of their type
    for tname, rels in relations.items():
        for rname, rinfo in rels.items():
            for i, st in enumerate(rinfo.subjects):
                if st.relation and st.relation not in relations.get(st.type, {}) \
                        and st.relation not in perms.get(st.type, {}):
                    options = [*relations.get(st.type, {}), *perms.get(st.type, {})]
                    problems.append(pos.problem(
                        ("types", tname, "relations", rname, i),
                        f"type {st.type!r} has no relation or permission {st.relation!r}",
                        hint=_suggest(st.relation, options)))

    def check_expr(tname: str, expr: PermissionExpr, path: PathKey) -> None:
        own = {**relations[tname], **perms[tname]}
        for leaf in walk(expr):
            if isinstance(leaf, Name):
                if leaf.name not in own:
                    problems.append(pos.problem(
                        path, f"type {tname!r} has no relation or permission {leaf.name!r}",
                        hint=_suggest(leaf.name, own), offset=leaf.offset))
                continue
            rel = relations[tname].get(leaf.relation)
            if rel is None:
                problems.append(pos.problem(
                    path, f"the left side of '->' must be a relation of {tname!r}; "
                          f"{leaf.relation!r} is not",
                    hint=_suggest(leaf.relation, relations[tname]), offset=leaf.offset))
                continue
            if rel.usersets or rel.wildcard_types:
                problems.append(pos.problem(
                    path, f"'->' follows only direct subjects, but {tname}.{leaf.relation} "
                          "allows usersets or wildcards",
                    hint="point the arrow at a relation whose subjects are plain types",
                    offset=leaf.offset))
                continue
            targets = rel.direct_types
            if not any(leaf.permission in relations.get(t, {}) or leaf.permission in perms.get(t, {})
                       for t in targets):
                problems.append(pos.problem(
                    path, f"no subject type of {tname}.{leaf.relation} "
                          f"({', '.join(sorted(targets)) or 'none'}) has {leaf.permission!r}",
                    offset=leaf.offset + len(leaf.relation) + 2))

    for tname in defn.types:
        for pname, expr in perms[tname].items():
            check_expr(tname, expr, ("types", tname, "permissions", pname))

    # a permission may not depend on itself within its type (cycles through '->' are data)
    for tname in defn.types:
        graph = {p: {leaf.name for leaf in walk(e) if isinstance(leaf, Name)
                     and leaf.name in perms[tname]} for p, e in perms[tname].items()}
        for start in graph:
            cycle = _find_cycle(graph, start)
            if cycle and cycle[0] == start and start == min(cycle[:-1]):
                problems.append(pos.problem(
                    ("types", tname, "permissions", start),
                    f"cyclic permission definition: {' -> '.join(cycle)}",
                    hint="a permission cannot be defined in terms of itself; "
                         "recursion belongs in data, through '->'"))

    out: dict[str, TypeInfo] = {}
    for tname, tdef in defn.types.items():
        for aname in tdef.attributes:
            if aname in RESERVED_ATTRIBUTES:
                problems.append(pos.problem(("types", tname, "attributes", aname),
                                            f"attribute {aname!r} is reserved (the entity's "
                                            f"own {aname})"))
        fields: dict[str, dict[str, PermissionExpr]] = {}
        for fname, per_action in tdef.fields.items():
            fields[fname] = {}
            for action, text in per_action.items():
                fpath: PathKey = ("types", tname, "fields", fname, action)
                try:
                    expr = parse_permission(text)
                except ExpressionSyntaxError as exc:
                    problems.append(pos.problem(fpath, f"bad field expression: {exc.message}",
                                                offset=exc.offset))
                    continue
                check_expr(tname, expr, fpath)
                fields[fname][action] = expr
        out[tname] = TypeInfo(tname, relations[tname], perms[tname], dict(tdef.attributes),
                              fields)
    return out


def _find_cycle(graph: Mapping[str, set[str]], start: str) -> list[str] | None:
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for nxt in graph.get(node, ()):
            if nxt == start:
                return [*path, nxt]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None


def _parse_principal(text: str) -> PrincipalSelector | None:
    if text == "*":
        return PrincipalSelector("any")
    if _NAME.fullmatch(text):
        return PrincipalSelector("type", text)
    body, sep, rel = text.partition("#")
    type_, colon, id_ = body.partition(":")
    if not colon or not _NAME.fullmatch(type_) or not id_ or id_ == "*" or " " in id_:
        return None
    if sep:
        return PrincipalSelector("userset", type_, id_, rel) if _NAME.fullmatch(rel) else None
    return PrincipalSelector("entity", type_, id_)


_SPIFFE: Final = re.compile(r"spiffe://[a-z0-9._-]{1,255}(/[A-Za-z0-9._-]+)+")
"""A SPIFFE id per the SPIFFE-ID spec: lowercase trust domain, path segments of [A-Za-z0-9._-]."""


def resolve_agents(agents: Iterable[AgentDefinition], types: Mapping[str, object],
                   pos: Positions, problems: list[Problem], *,
                   indices: Iterable[int] | None = None) -> tuple[AgentDefinition, ...]:
    """Agent definitions with ids and owners as full ``type:id`` keys; problems appended.

    A bare id (``support-bot``) means ``agent:support-bot``. Agent and owner
    types must be declared by the policy (when ``types`` is not empty).
    """
    out: list[AgentDefinition] = []
    seen: dict[str, int] = {}
    spiffe_seen: set[str] = set()
    for index, adef in zip(itertools.count() if indices is None else indices, agents,
                           strict=False):
        at: PathKey = ("agents", index)
        ok = True
        key = adef.id if ":" in adef.id else f"agent:{adef.id}"
        for field_name, value, what in (("id", key, "agent"), ("owner", adef.owner, "owner")):
            type_, colon, id_ = value.partition(":")
            if not colon or not _NAME.fullmatch(type_) or not id_ or id_ == "*" or any(
                    c.isspace() or c == "#" for c in id_):
                problems.append(pos.problem((*at, field_name), f"{what} {value!r} is not a "
                                            "'type:id' entity", hint="e.g. 'agent:support-bot' "
                                            "or 'team:support'"))
                ok = False
            elif types and type_ not in types:
                problems.append(pos.problem((*at, field_name), f"{what} type {type_!r} is not "
                                            "declared in the policy",
                                            hint=_suggest(type_, types) or f"add '{type_}:' "
                                            "under 'types:'"))
                ok = False
        if key in seen:
            problems.append(pos.problem((*at, "id"), f"agent {key!r} is registered twice "
                                        f"(first at index {seen[key]})"))
            ok = False
        seen.setdefault(key, index)
        if not adef.purpose.strip():
            problems.append(pos.problem((*at, "purpose"), "an agent needs a purpose",
                                        hint="say in a sentence what the agent is for"))
            ok = False
        if adef.spiffe_id is not None:
            if not _SPIFFE.fullmatch(adef.spiffe_id):
                problems.append(pos.problem((*at, "spiffe_id"), f"{adef.spiffe_id!r} is not a "
                                            "SPIFFE id", hint="spiffe://<trust-domain>/<path>"))
                ok = False
            elif adef.spiffe_id in spiffe_seen:
                problems.append(pos.problem((*at, "spiffe_id"), f"SPIFFE id {adef.spiffe_id!r} "
                                            "names two agents"))
                ok = False
            spiffe_seen.add(adef.spiffe_id)
        for t, tool in enumerate(adef.tools):
            if not tool.strip():
                problems.append(pos.problem((*at, "tools", t), "empty tool name"))
                ok = False
        if ok:
            out.append(adef.model_copy(update={"id": key}))
    return tuple(out)


def _resolve_tools(defn: PolicyDefinition, types: Mapping[str, TypeInfo], pos: Positions,
                   problems: list[Problem]) -> tuple[Mapping[str, Any], tuple[Any, ...]]:
    """Tool declarations and chain rules, compiled (imported lazily: they live with agents)."""
    if not defn.tools and not defn.chains:
        return {}, ()
    from agentauthz.agents.chains import ChainRule
    from agentauthz.agents.tools import ToolSpec
    from agentauthz.errors import InvalidInputError

    tools = {}
    for name, tdef in defn.tools.items():
        try:
            spec = ToolSpec.from_definition(name, tdef)
        except InvalidInputError as exc:
            problems.append(pos.problem(("tools", name), str(exc)))
            continue
        for template, where in ((spec.resource, "resource"),
                                (spec.result.resource if spec.result else None,
                                 "result")):
            if isinstance(template, str) and types and template.partition(":")[0] not in types:
                type_ = template.partition(":")[0]
                problems.append(pos.problem(("tools", name, where), f"type {type_!r} is not "
                                            "declared in the policy",
                                            hint=_suggest(type_, types)))
        tools[name] = spec
    chains = []
    seen: set[str] = set()
    for index, cdef in enumerate(defn.chains):
        if cdef.id in seen:
            problems.append(pos.problem(("chains", index, "id"), f"duplicate chain rule id "
                                        f"{cdef.id!r}"))
        seen.add(cdef.id)
        try:
            chains.append(ChainRule.from_definition(cdef))
        except InvalidInputError as exc:
            problems.append(pos.problem(("chains", index), str(exc)))
    return tools, tuple(chains)


def _resolve_rules(defn: PolicyDefinition, types: Mapping[str, TypeInfo], pos: Positions,
                   problems: list[Problem]) -> list[Rule]:
    seen: set[str] = set()
    out = []
    for index, rdef in enumerate(defn.rules):
        base: PathKey = ("rules", index)
        if rdef.id in seen:
            problems.append(pos.problem((*base, "id"), f"duplicate rule id {rdef.id!r}"))
        seen.add(rdef.id)
        rule = _resolve_rule(rdef, base, defn, types, pos, problems)
        if rule is not None:
            out.append(rule)
    return out


def _resolve_rule(rdef: RuleDefinition, base: PathKey, defn: PolicyDefinition,
                  types: Mapping[str, TypeInfo], pos: Positions,
                  problems: list[Problem]) -> Rule | None:
    start = len(problems)
    resource_types: frozenset[str] | None = None
    if "*" not in rdef.resource:
        for i, t in enumerate(rdef.resource):
            if t not in types:
                problems.append(pos.problem((*base, "resource", i), f"undefined type {t!r}",
                                            hint=_suggest(t, types)))
        resource_types = frozenset(rdef.resource)
    actions = None if "*" in rdef.action else frozenset(rdef.action)
    for i, a in enumerate(rdef.action):
        if a != "*" and not _NAME.fullmatch(a):
            problems.append(pos.problem((*base, "action", i), f"action {a!r} is not a valid name"))
    principals = []
    for i, text in enumerate(rdef.principal):
        sel = _parse_principal(text)
        if sel is None:
            problems.append(pos.problem((*base, "principal", i), f"bad principal selector {text!r}",
                                        hint="write '*', a type ('user'), an entity "
                                             "('user:alice') or a userset ('role:admin#member')"))
            continue
        if sel.type is not None and sel.type not in types:
            problems.append(pos.problem((*base, "principal", i), f"undefined type {sel.type!r}",
                                        hint=_suggest(sel.type, types)))
            continue
        if sel.relation is not None and sel.type is not None \
                and not types[sel.type].has(sel.relation):
            problems.append(pos.problem((*base, "principal", i),
                                        f"type {sel.type!r} has no relation or permission "
                                        f"{sel.relation!r}",
                                        hint=_suggest(sel.relation, [*types[sel.type].relations,
                                                                     *types[sel.type].permissions])))
            continue
        principals.append(sel)
    condition = None
    if rdef.when is not None:
        try:
            condition = compile_condition(rdef.when)
        except CelSyntaxError as exc:
            problems.append(pos.problem((*base, "when"), f"bad condition: {exc.message}",
                                        offset=exc.offset))
        else:
            _check_references(condition, base, rdef, defn, types, pos, problems)
    if len(problems) > start:
        return None
    return Rule(rdef.id, rdef.effect, actions, resource_types, tuple(principals), condition,
                rdef.description)


def _check_references(condition: Condition, base: PathKey, rdef: RuleDefinition,
                      defn: PolicyDefinition, types: Mapping[str, TypeInfo], pos: Positions,
                      problems: list[Problem]) -> None:
    """Attributes named in a condition must be declared where the schema declares any."""
    def declared(selector_types: Iterable[str]) -> dict[str, str] | None:
        merged: dict[str, str] = {}
        for t in selector_types:
            info = types.get(t)
            if info is None or not info.attributes:
                return None  # some candidate type does not declare: anything goes
            for name, kind in info.attributes.items():
                # the same attribute with different types on two candidates: unknown type
                merged[name] = kind if merged.get(name, kind) == kind else "any"
        return merged

    resource_types = list(types) if "*" in rdef.resource else rdef.resource
    principal_types = []
    for text in rdef.principal:
        sel = _parse_principal(text)
        if sel is None or sel.kind == "any" or sel.kind == "userset":
            principal_types = list(types)
            break
        principal_types.append(str(sel.type))
    scopes = {
        "resource": declared(resource_types),
        "principal": declared(principal_types),
        "context": dict(defn.context) if defn.context else None,
    }
    for ref in condition.references:
        allowed = scopes.get(ref.variable)
        if allowed is None or not ref.path:
            continue
        head = ref.path[0]
        if head in RESERVED_ATTRIBUTES and ref.variable != "context":
            continue
        if head not in allowed:
            problems.append(pos.problem(
                (*base, "when"), f"{ref.variable}.{head} is not a declared attribute",
                hint=_suggest(head, allowed) or "declare it under the type's 'attributes:' "
                                                "(or the policy's 'context:')",
                offset=ref.offset))
    if condition.tree is not None:
        for message, offset in check_condition(condition.tree, scopes):
            problems.append(pos.problem((*base, "when"), f"type error in condition: {message}",
                                        hint="check the declared attribute types",
                                        offset=offset))
