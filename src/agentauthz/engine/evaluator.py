"""The local evaluator: where a decision is made.

Order of evaluation for ``check(principal, action, resource, context)``:

1. the request is read; anything malformed or of an undeclared type denies
   (``invalid_input`` / ``unknown_type``);
2. ``forbid`` rules for (resource type, action) whose principal selector
   matches: a true condition, or one that errors, denies (forbid wins);
3. the permission named like the action, if the type declares one;
4. ``permit`` rules: a true condition grants; an erroring one grants
   nothing and is reported;
5. nothing granted: deny (default deny).

Everything the hot path needs is precomputed per (type, action) in
:class:`_Access` when the policy is compiled.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from agentauthz.engine.compiler import CheckFn, DepthExceeded, compile_policy
from agentauthz.engine.store import MemoryStore, RelationTuple
from agentauthz.errors import InvalidInputError, PolicyError, Problem
from agentauthz.model import (
    Decision,
    Entity,
    EntityLike,
    Outcome,
    Reason,
    Relationship,
    parse_entity_key,
)
from agentauthz.policy.cel import CelEvalError, Condition
from agentauthz.policy.schema import Policy, Rule

__all__ = ["CheckRequest", "Evaluator"]

log = logging.getLogger("agentauthz.engine")


class _Retrying(threading.local):
    active = False


_retrying = _Retrying()

_ALLOW: Final = Outcome.ALLOW
_DENY: Final = Outcome.DENY


@dataclass(frozen=True, slots=True)
class CheckRequest:
    """One question for :meth:`Evaluator.check_many`."""

    principal: EntityLike
    action: str
    resource: EntityLike
    context: Mapping[str, Any] | None = None


class _Matcher:
    """Does a rule's principal selector match? ``None`` selectors match everyone."""

    __slots__ = ("fn", "key", "kind", "type")

    def __init__(self, kind: str, type_: str | None, key: str | None, fn: CheckFn | None) -> None:
        self.kind = kind
        self.type = type_
        self.key = key
        self.fn = fn

    def __call__(self, pkey: str, ptype: str, wild: str) -> bool:
        if self.kind == "type":
            return ptype == self.type
        if self.kind == "entity":
            return pkey == self.key
        assert self.fn is not None and self.key is not None
        return self.fn(self.key, pkey, wild, None)


class _CRule:
    __slots__ = ("condition", "matchers", "reason", "rule")

    def __init__(self, rule: Rule, matchers: tuple[_Matcher, ...] | None) -> None:
        self.rule = rule
        self.matchers = matchers
        self.condition: Condition | None = rule.condition
        if rule.effect == "forbid":
            self.reason = Reason("forbid", rule.description or f"forbidden by rule {rule.id!r}",
                                 rule.id)
        else:
            self.reason = Reason("permit", rule.description or f"granted by rule {rule.id!r}",
                                 rule.id)

    def matches(self, pkey: str, ptype: str, wild: str) -> bool:
        if self.matchers is None:
            return True
        return any(m(pkey, ptype, wild) for m in self.matchers)


class _Access:
    """What decides one (resource type, action)."""

    __slots__ = ("allow_reasons", "deny_reasons", "forbids", "groups", "needs_principal",
                 "needs_resource", "permission", "permits")

    def __init__(self, rtype: str, action: str, permission: CheckFn | None,
                 forbids: tuple[_CRule, ...], permits: tuple[_CRule, ...],
                 groups: tuple[tuple[str, dict[str, Reason]], ...], expr: str | None) -> None:
        self.permission = permission
        self.forbids = forbids
        self.permits = permits
        self.groups = groups
        self.allow_reasons = (Reason("permission", f"{rtype}.{action} = {expr}"),)
        self.deny_reasons = (Reason(
            "default_deny", f"no relation path or permit rule grants {action!r} on {rtype}"),)
        used = {ref.variable for r in (*forbids, *permits) if r.condition is not None
                for ref in r.condition.references}
        # entity views cost a dict each: build only those some condition reads
        self.needs_principal = "principal" in used
        self.needs_resource = "resource" in used


_NO_VIEW: Final[Mapping[str, Any]] = MappingProxyType({})
_BAD_ID: Final = re.compile(r"[\s#]")


class _Validator:
    """Checks a relationship against the schema, fast enough for bulk loads."""

    def __init__(self, policy: Policy) -> None:
        self.allowed: dict[str, dict[str, tuple[frozenset[str], frozenset[str], frozenset[str]]]] = {
            tname: {rname: (r.direct_types, r.wildcard_types,
                            frozenset(f"{u.type}#{u.relation}" for u in r.usersets))
                    for rname, r in info.relations.items()}
            for tname, info in policy.types.items()
        }
        self._subjects: dict[str, tuple[str, str, str, str]] = {}

    @staticmethod
    def _entity(key: object, what: str) -> tuple[str, str]:
        if key.__class__ is not str:
            raise InvalidInputError(f"{what}: expected 'type:id', got {type(key).__name__}")
        assert isinstance(key, str)
        i = key.find(":")
        if i < 1 or i == len(key) - 1 or len(key) > 1100 or _BAD_ID.search(key, i + 1):
            raise InvalidInputError(f"{what}: expected 'type:id' (id without '#' or white "
                                    f"space), got {key[:80]!r}")
        return key[:i], key[i + 1:]

    def __call__(self, resource: object, relation: object, subject: object) -> None:
        rtype, rid = self._entity(resource, "relationship resource")
        if rid == "*":
            raise InvalidInputError("relationship resource: '*' is not an entity id")
        by_relation = self.allowed.get(rtype)
        if by_relation is None:
            raise InvalidInputError(f"undefined type {rtype!r}")
        if relation.__class__ is not str or relation not in by_relation:
            raise InvalidInputError(f"type {rtype!r} has no relation {relation!r}")
        assert isinstance(relation, str)
        direct, wildcard, usersets = by_relation[relation]
        if subject.__class__ is not str:
            raise InvalidInputError("relationship subject must be a string")
        assert isinstance(subject, str)
        parsed = self._subjects.get(subject)
        if parsed is None:
            # subjects recur (a user in thousands of tuples): parse each one once
            body, sep, srel = subject.partition("#")
            stype, sid = self._entity(body, "relationship subject")
            if len(self._subjects) >= 100_000:
                self._subjects.clear()
            parsed = self._subjects[subject] = (stype, sid, sep, srel)
        stype, sid, sep, srel = parsed
        if sep:
            ok = f"{stype}#{srel}" in usersets and sid != "*"
        elif sid == "*":
            ok = stype in wildcard
        else:
            ok = stype in direct
        if not ok:
            allowed = sorted(direct) + [f"{t}:*" for t in sorted(wildcard)] + sorted(usersets)
            raise InvalidInputError(f"{rtype}.{relation} does not allow subject {subject[:80]!r} "
                                    f"(allowed: {', '.join(allowed)})")


class _Compiled:
    """A policy compiled against a store: swapped in as one object, so readers never see half."""

    def __init__(self, policy: Policy, store: MemoryStore, max_depth: int) -> None:
        self.policy = policy
        self.version = policy.version
        self.functions = compile_policy(policy, store, max_depth)
        self.access: dict[str, dict[str, _Access]] = {}
        self.fallback: dict[str, _Access] = {}
        self.wildcards: dict[str, str] = {t: f"{t}:*" for t in policy.types}
        self.validator = _Validator(policy)
        for rtype, info in policy.types.items():
            actions = set(info.permissions)
            for rule in policy.rules:
                if rule.actions is not None and (rule.resource_types is None
                                                 or rtype in rule.resource_types):
                    actions |= rule.actions
            self.access[rtype] = {a: self._access(rtype, a) for a in sorted(actions)}
            self.fallback[rtype] = self._access(rtype, None)

    def _matchers(self, rule: Rule) -> tuple[_Matcher, ...] | None:
        if any(sel.kind == "any" for sel in rule.principals) or not rule.principals:
            return None
        out = []
        for sel in rule.principals:
            key = f"{sel.type}:{sel.id}" if sel.id is not None else None
            fn = None
            if sel.kind == "userset":
                assert sel.type is not None and sel.relation is not None
                fn = self.functions.functions[(sel.type, sel.relation)]
            out.append(_Matcher(sel.kind, sel.type, key, fn))
        return tuple(out)

    def _groupable(self, rule: Rule) -> tuple[str, str] | None:
        """A permit with no condition whose principals are members of plain relations."""
        if rule.condition is not None or not rule.principals:
            return None
        found = None
        for sel in rule.principals:
            if sel.kind != "userset":
                return None
            assert sel.type is not None and sel.relation is not None
            rinfo = self.policy.types[sel.type].relations.get(sel.relation)
            if rinfo is None or rinfo.usersets:
                return None
            group = f"{sel.type}#{sel.relation}"
            if found is not None and found != group:
                return None
            found = group
        return (found, "") if found else None

    def _access(self, rtype: str, action: str | None) -> _Access:
        info = self.policy.types[rtype]
        applies = [r for r in self.policy.rules
                   if (r.resource_types is None or rtype in r.resource_types)
                   and (r.actions is None or (action is not None and action in r.actions))]
        forbids = tuple(_CRule(r, self._matchers(r)) for r in applies if r.effect == "forbid")
        permits: list[_CRule] = []
        groups: dict[str, dict[str, Reason]] = {}
        for r in applies:
            if r.effect != "permit":
                continue
            g = self._groupable(r)
            if g is None:
                permits.append(_CRule(r, self._matchers(r)))
                continue
            crule = _CRule(r, None)
            for sel in r.principals:
                groups.setdefault(g[0], {}).setdefault(f"{sel.type}:{sel.id}", crule.reason)
        permission = None
        expr = None
        if action is not None and action in info.permissions:
            permission = self.functions.functions[(rtype, action)]
            expr = str(info.permissions[action])
        return _Access(rtype, action or "*", permission, forbids, tuple(permits),
                       tuple(groups.items()), expr)


def _entity_view(store: MemoryStore, key: str, type_: str, id_: str,
                 extra: Mapping[str, Any] | None) -> dict[str, Any]:
    stored = store.attributes.get(key)
    if extra:
        view = dict(stored) if stored is not None else {"id": id_, "type": type_}
        view.update(extra)
        view["id"], view["type"] = id_, type_
        return view
    if stored is not None:
        return stored
    return {"id": id_, "type": type_}


class Evaluator:
    """Decides against a :class:`Policy` and a relationship store, in process.

    Thread-safe: a policy swap replaces one compiled object atomically, and
    store writes hold the store's lock.
    """

    def __init__(self, policy: Policy, store: MemoryStore | None = None, *,
                 max_depth: int = 50) -> None:
        if max_depth < 1:
            raise InvalidInputError("max_depth must be at least 1")
        self.store = store if store is not None else MemoryStore()
        self.max_depth = max_depth
        with self.store.lock:
            self._compiled = self._compile(policy)

    # ----------------------------------------------------------------- policy
    @property
    def policy(self) -> Policy:
        return self._compiled.policy

    @property
    def policy_version(self) -> str:
        return self._compiled.version

    def set_policy(self, policy: Policy) -> None:
        """Swap in a new policy; the stored relationships must fit its schema.

        The store is locked from validation to swap, so no write can slip in
        between that the old policy allowed and the new one does not.
        """
        with self.store.lock:
            self._compiled = self._compile(policy)

    def _compile(self, policy: Policy) -> _Compiled:
        problems = []
        validate = _Validator(policy)
        for rel in self.store.relationships():
            try:
                validate(rel.resource, rel.relation, rel.subject)
            except InvalidInputError as exc:
                problems.append(Problem(f"stored relationship {rel} does not fit the policy: {exc}",
                                        file=policy.source, hint="remove it before the swap"))
                if len(problems) >= 20:
                    break
        if problems:
            raise PolicyError(problems)
        return _Compiled(policy, self.store, self.max_depth)

    # ------------------------------------------------------------------ writes
    def _tuples(self, items: Iterable[Relationship | str | tuple[str, str, str]]
                ) -> list[RelationTuple]:
        validate = self._compiled.validator
        out = []
        for item in items:
            if item.__class__ is tuple and len(item) == 3:
                resource, relation, subject = item
            elif isinstance(item, Relationship):
                resource, relation, subject = item.resource, item.relation, item.subject
            else:
                rel = Relationship.of(item)
                resource, relation, subject = rel.resource, rel.relation, rel.subject
            validate(resource, relation, subject)
            out.append((resource, relation, subject))
        return out

    def write(self, add: Iterable[Relationship | str | tuple[str, str, str]] = (),
              remove: Iterable[Relationship | str | tuple[str, str, str]] = ()) -> int:
        """Validate every relationship against the schema, then apply all as one batch.

        Nothing is written if any relationship is invalid.
        """
        adds, removes = self._tuples(add), self._tuples(remove)
        return self.store.write(adds, removes)

    def set_attributes(self, entity: EntityLike, attributes: Mapping[str, Any] | None) -> None:
        """Store attributes of an entity (replacing earlier ones), for conditions to read."""
        self.store.set_attributes(self.attributes_key(entity, attributes), attributes)

    def attributes_key(self, entity: EntityLike, attributes: Mapping[str, Any] | None) -> str:
        """Validate attributes of an entity for :meth:`set_attributes`; the entity's key."""
        key = entity.key if isinstance(entity, Entity) else entity
        type_, _ = parse_entity_key(key)
        if type_ not in self._compiled.policy.types:
            raise InvalidInputError(f"undefined type {type_!r}")
        if attributes is not None and not isinstance(attributes, Mapping):
            raise InvalidInputError("attributes must be a mapping")
        for reserved in ("id", "type"):
            if attributes and reserved in attributes:
                raise InvalidInputError(f"attribute {reserved!r} is reserved")
        return key

    # ------------------------------------------------------------------ checks
    def check(self, principal: EntityLike, action: str, resource: EntityLike,
              context: Mapping[str, Any] | None = None) -> Decision:
        """Decide; never raises for a deny, a malformed request or a failing condition."""
        compiled = self._compiled
        version = compiled.version
        try:
            if principal.__class__ is str:
                pkey = principal
                pattrs = None
            elif isinstance(principal, Entity):
                pkey = principal.key
                pattrs = principal.attributes
            else:
                return self._invalid("principal must be an Entity or a 'type:id' string", version)
            if resource.__class__ is str:
                rkey = resource
                rattrs = None
            elif isinstance(resource, Entity):
                rkey = resource.key
                rattrs = resource.attributes
            else:
                return self._invalid("resource must be an Entity or a 'type:id' string", version)
            i = rkey.find(":")
            j = pkey.find(":")
            # Only what could alias matters here: an id-less key, a wildcard or userset
            # principal. Anything else malformed simply matches nothing in the store.
            if i < 1 or j < 1 or "#" in pkey or pkey.endswith(":*") or rkey.endswith(":*"):
                return self._invalid(f"expected 'type:id' entities, got {pkey[:80]!r} and "
                                     f"{rkey[:80]!r}", version)
            rtype = rkey[:i]
            ptype = pkey[:j]
            by_action = compiled.access.get(rtype)
            wild = compiled.wildcards.get(ptype)
            if by_action is None or wild is None:
                unknown = rtype if by_action is None else ptype
                return Decision(False, _DENY, (Reason(
                    "unknown_type", f"type {unknown[:64]!r} is not declared in the policy"),),
                    version)
            if action.__class__ is not str:
                return self._invalid("action must be a string", version)
            acc = by_action.get(action)
            if acc is None:
                acc = compiled.fallback[rtype]
            if (context is not None and context.__class__ is not dict
                    and not isinstance(context, Mapping)):
                return self._invalid("context must be a mapping", version)
            activation: dict[str, Any] | None = None

            for fr in acc.forbids:
                if fr.matchers is not None and not fr.matches(pkey, ptype, wild):
                    continue
                if fr.condition is None:
                    return Decision(False, _DENY, (fr.reason,), version)
                if activation is None:
                    activation = self._activation(pkey, ptype, pkey[j + 1:], pattrs, rkey, rtype,
                                                  rkey[i + 1:], rattrs, action, context,
                                                  acc.needs_principal, acc.needs_resource)
                try:
                    result = fr.condition(activation)
                except CelEvalError as exc:
                    return Decision(False, _DENY, (fr.reason, Reason(
                        "condition_error", f"forbid rule {fr.rule.id!r} could not be evaluated "
                        f"({exc.message}); an erroring forbid denies", fr.rule.id)), version)
                if result is not False:
                    if result is True:
                        return Decision(False, _DENY, (fr.reason,), version)
                    return Decision(False, _DENY, (fr.reason, Reason(
                        "condition_error", f"forbid rule {fr.rule.id!r} returned "
                        f"{type(result).__name__}, not bool; an erroring forbid denies",
                        fr.rule.id)), version)

            if acc.permission is not None and acc.permission(rkey, pkey, wild, None):
                return Decision(True, _ALLOW, acc.allow_reasons, version)

            if acc.groups:
                # permit rules for members of plain relations (RBAC roles): one reverse
                # lookup of the principal's memberships instead of a check per rule
                rev = self.store.reverse
                for group, granting in acc.groups:
                    for holder in (pkey, wild):
                        idx = rev.get(holder)
                        if idx is None:
                            continue
                        held = idx.get(group)
                        if held is None:
                            continue
                        if held.__class__ is str:
                            reason = granting.get(held)
                            if reason is not None:
                                return Decision(True, _ALLOW, (reason,), version)
                            continue
                        for obj in held:
                            reason = granting.get(obj)
                            if reason is not None:
                                return Decision(True, _ALLOW, (reason,), version)

            errors: list[Reason] = []
            for pr in acc.permits:
                if pr.matchers is not None and not pr.matches(pkey, ptype, wild):
                    continue
                if pr.condition is None:
                    return Decision(True, _ALLOW, (pr.reason,), version)
                if activation is None:
                    activation = self._activation(pkey, ptype, pkey[j + 1:], pattrs, rkey, rtype,
                                                  rkey[i + 1:], rattrs, action, context,
                                                  acc.needs_principal, acc.needs_resource)
                try:
                    result = pr.condition(activation)
                except CelEvalError as exc:
                    errors.append(Reason("condition_error",
                                         f"permit rule {pr.rule.id!r} could not be evaluated "
                                         f"({exc.message}); it grants nothing", pr.rule.id))
                    continue
                if result is True:
                    return Decision(True, _ALLOW, (pr.reason,), version)
                if result is not False:
                    errors.append(Reason("condition_error",
                                         f"permit rule {pr.rule.id!r} returned "
                                         f"{type(result).__name__}, not bool; it grants nothing",
                                         pr.rule.id))
            deny_reasons = acc.deny_reasons
            if acc is compiled.fallback[rtype]:
                deny_reasons = (Reason("default_deny", f"no relation path or permit rule grants "
                                                       f"{action[:64]!r} on {rtype}"),)
            if errors:
                return Decision(False, _DENY, (*deny_reasons, *errors), version)
            return Decision(False, _DENY, deny_reasons, version)
        except DepthExceeded as exc:
            return Decision(False, _DENY, (Reason(
                "depth_exceeded", f"more than {self.max_depth} recursive hops (at {exc}); "
                "denied rather than guessed"),), version)
        except RecursionError:
            return Decision(False, _DENY, (Reason(
                "depth_exceeded", "the relationship graph is too deep to evaluate; denied"),),
                version)
        except RuntimeError as exc:
            # a write changed a set this check was iterating: decide again while no
            # writer can run (writers hold the store lock; reads normally take none)
            if "changed size during iteration" in str(exc) and not _retrying.active:
                with self.store.lock:
                    _retrying.active = True
                    try:
                        return self.check(principal, action, resource, context)
                    finally:
                        _retrying.active = False
            log.exception("agentauthz: evaluation failed; denying")
            return Decision(False, _DENY, (Reason(
                "evaluation_error", f"evaluation failed ({type(exc).__name__}); denied"),), version)
        except Exception as exc:  # deny on doubt: a bug must never become an allow
            log.exception("agentauthz: evaluation failed; denying")
            return Decision(False, _DENY, (Reason(
                "evaluation_error", f"evaluation failed ({type(exc).__name__}); denied"),), version)

    def _activation(self, pkey: str, ptype: str, pid: str, pattrs: Mapping[str, Any] | None,
                    rkey: str, rtype: str, rid: str, rattrs: Mapping[str, Any] | None,
                    action: str, context: Mapping[str, Any] | None,
                    needs_principal: bool = True, needs_resource: bool = True) -> dict[str, Any]:
        """What conditions see. An entity view costs a dict: only those read are built."""
        store = self.store
        return {
            "principal": _entity_view(store, pkey, ptype, pid, pattrs)
            if needs_principal else _NO_VIEW,
            "resource": _entity_view(store, rkey, rtype, rid, rattrs)
            if needs_resource else _NO_VIEW,
            "action": action,
            "context": context if context is not None else _NO_VIEW,
        }

    @staticmethod
    def _invalid(message: str, version: str) -> Decision:
        return Decision(False, _DENY, (Reason("invalid_input", message),), version)

    def check_many(self, requests: Sequence[CheckRequest | tuple[Any, ...]]) -> list[Decision]:
        """Decide a batch, in order. Each item is a :class:`CheckRequest` or a tuple of its fields."""
        out = []
        for req in requests:
            if isinstance(req, CheckRequest):
                out.append(self.check(req.principal, req.action, req.resource, req.context))
            elif isinstance(req, tuple) and len(req) in (3, 4):
                out.append(self.check(*req))
            else:
                out.append(self._invalid("a batch item must be a CheckRequest or a tuple "
                                         "(principal, action, resource[, context])",
                                         self._compiled.version))
        return out

    def list_actions(self, principal: EntityLike, resource: EntityLike,
                     context: Mapping[str, Any] | None = None) -> frozenset[str]:
        """Every action ``check`` would allow on ``resource``."""
        key = resource.key if isinstance(resource, Entity) else resource
        if type(key) is not str:
            return frozenset()
        rtype = key.partition(":")[0]
        actions = self._compiled.access.get(rtype, {})
        return frozenset(a for a in actions if self.check(principal, a, resource, context).allowed)

    def authorized_fields(self, principal: EntityLike, action: str, resource: EntityLike,
                          context: Mapping[str, Any] | None = None) -> frozenset[str]:
        """The declared fields of ``resource`` that ``principal`` may ``action``.

        Empty when the action itself is denied. A field without a rule for this
        action follows the resource's decision; a field with one also needs
        its expression to grant.
        """
        if not self.check(principal, action, resource, context).allowed:
            return frozenset()
        compiled = self._compiled
        pkey = principal.key if isinstance(principal, Entity) else principal
        rkey = resource.key if isinstance(resource, Entity) else resource
        rtype = rkey.partition(":")[0]
        wild = pkey.partition(":")[0] + ":*"
        out = set()
        for fname, per_action in compiled.functions.fields.get(rtype, {}).items():
            fn = per_action.get(action)
            try:
                if fn is None or fn(rkey, pkey, wild, None):
                    out.add(fname)
            except DepthExceeded:
                continue
        return frozenset(out)

    def list_resources(self, principal: EntityLike, action: str, resource_type: str,
                       context: Mapping[str, Any] | None = None) -> frozenset[str]:
        """Every known ``resource_type`` entity ``check`` would allow: the data-filtering query."""
        from agentauthz.engine.lookup import list_resources

        return list_resources(self, self._compiled, principal, action, resource_type, context)
