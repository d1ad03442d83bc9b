"""``explain``: the whole decision tree, for people.

The compiled closures answer fast but say little. ``explain`` walks the same
policy slowly and records every branch: which relation path granted (with
the concrete objects on the way), which rule denied, which condition failed
and with what values. Its outcome always equals ``check``'s (a property test
holds it to that); it is a separate walk so that the hot path carries no
tracing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentauthz.engine.store import members
from agentauthz.model import Decision, Entity, EntityLike
from agentauthz.policy.cel import CelEvalError
from agentauthz.policy.expressions import (
    Arrow,
    Exclusion,
    Intersection,
    Name,
    PermissionExpr,
    Union,
)

if TYPE_CHECKING:
    from agentauthz.engine.evaluator import Evaluator

__all__ = ["Explanation", "explain"]


@dataclass(slots=True)
class Explanation:
    """One node of a decision tree: what was tried, whether it held, and why."""

    label: str
    granted: bool | None
    detail: str = ""
    children: list[Explanation] = field(default_factory=list)
    decision: Decision | None = None

    def render(self, indent: str = "") -> str:
        mark = {True: "✔", False: "✘", None: "·"}[self.granted]
        line = f"{indent}{mark} {self.label}"
        if self.detail:
            line += f" — {self.detail}"
        out = [line]
        for child in self.children:
            out.append(child.render(indent + "    "))
        return "\n".join(out)

    def __str__(self) -> str:
        return self.render()


class _Walker:
    def __init__(self, ev: Evaluator, pkey: str, wild: str) -> None:
        self.ev = ev
        self.policy = ev.policy
        self.store = ev.store
        self.pkey = pkey
        self.wild = wild
        self.path: set[str] = set()
        self.budget = 2000  # nodes; keeps a pathological graph from printing forever

    def node(self, obj: str, name: str) -> Explanation:
        tname = obj.partition(":")[0]
        info = self.policy.types[tname]
        key = f"{obj}#{name}"
        if key in self.path:
            return Explanation(f"{key}", False, "already on this path (cycle): not granted")
        if len(self.path) >= self.ev.max_depth:
            return Explanation(f"{key}", False, "depth limit reached: not granted")
        self.budget -= 1
        if self.budget < 0:
            return Explanation(f"{key}", None, "explanation truncated")
        self.path.add(key)
        try:
            if name in info.relations:
                return self.relation(obj, name)
            expr = info.permissions[name]
            sub = self.expr(obj, expr)
            return Explanation(f"{tname}.{name} on {obj} = {expr}", sub.granted, children=[sub])
        finally:
            self.path.discard(key)

    def relation(self, obj: str, rname: str) -> Explanation:
        key = f"{obj}#{rname}"
        direct = list(members(self.store.forward.get(obj, {}).get(rname)))
        hit = next((s for s in direct if s in (self.pkey, self.wild)), None)
        exp = Explanation(f"relation {key}", hit is not None)
        if hit is not None:
            exp.detail = f"{self.pkey} is {'matched by ' + hit if hit != self.pkey else 'a direct subject'}"
            return exp
        shown = ", ".join(sorted(direct)[:5]) + (" ..." if len(direct) > 5 else "")
        exp.detail = f"direct subjects: {shown or 'none'}"
        for uobj, kind in self.store.usersets.get(obj, {}).get(rname, ()):
            urel = kind.partition("#")[2]
            child = self.node(uobj, urel)
            child.label = f"userset {uobj}#{urel}: " + child.label
            exp.children.append(child)
            if child.granted:
                exp.granted = True
                break
        return exp

    def expr(self, obj: str, expr: PermissionExpr) -> Explanation:
        if isinstance(expr, Name):
            return self.node(obj, expr.name)
        if isinstance(expr, Arrow):
            targets = sorted(members(self.store.forward.get(obj, {}).get(expr.relation)))
            exp = Explanation(f"{expr} from {obj}", False,
                              f"{expr.relation}: {', '.join(targets[:5]) or 'none'}")
            for t in targets:
                if not self.policy.types[t.partition(':')[0]].has(expr.permission):
                    continue
                child = self.node(t, expr.permission)
                exp.children.append(child)
                if child.granted:
                    exp.granted = True
                    break
            return exp
        if isinstance(expr, Exclusion):
            base = self.expr(obj, expr.base)
            exp = Explanation(str(expr), False, children=[base])
            if base.granted:
                excluded = self.expr(obj, expr.excluded)
                excluded.label = "excluded: " + excluded.label
                exp.children.append(excluded)
                exp.granted = not excluded.granted
            return exp
        children = []
        want = isinstance(expr, Union)
        granted = not want
        for item in expr.items:
            child = self.expr(obj, item)
            children.append(child)
            if child.granted == want:
                granted = want
                break
        assert isinstance(expr, Union | Intersection)
        return Explanation(str(expr), granted, children=children)


def _values(activation: Mapping[str, Any], refs: Any) -> str:
    shown = []
    for ref in refs:
        value: Any = activation.get(ref.variable)
        name = ref.variable
        for part in ref.path:
            name += f".{part}"
            if isinstance(value, Mapping) and part in value:
                value = value[part]
            else:
                value = "<missing>"
                break
        shown.append(f"{name}={value!r}"[:120])
    return ", ".join(dict.fromkeys(shown))


def explain(ev: Evaluator, principal: EntityLike, action: str, resource: EntityLike,
            context: Mapping[str, Any] | None = None) -> Explanation:
    """Decide and explain every branch; the root's ``decision`` is the ``check`` result."""
    decision = ev.check(principal, action, resource, context)
    pkey = principal.key if isinstance(principal, Entity) else str(principal)
    rkey = resource.key if isinstance(resource, Entity) else str(resource)
    root = Explanation(f"{decision.outcome.value.upper()}: {pkey} {action} {rkey}",
                       decision.allowed, decision=decision)
    if any(r.kind in ("invalid_input", "unknown_type") for r in decision.reasons):
        root.children.extend(Explanation(r.kind, False, r.message) for r in decision.reasons)
        return root
    policy = ev.policy
    rtype = rkey.partition(":")[0]
    ptype, _, pid = pkey.partition(":")
    rid = rkey.partition(":")[2]
    walker = _Walker(ev, pkey, ptype + ":*")
    activation = ev._activation(
        pkey, ptype, pid, principal.attributes if isinstance(principal, Entity) else None,
        rkey, rtype, rid, resource.attributes if isinstance(resource, Entity) else None,
        action, context)
    for rule in policy.rules:
        if not rule.applies_to(rtype, action):
            continue
        label = f"{rule.effect} rule {rule.id!r}"
        matched = _principal_matches(ev, rule, pkey, ptype)
        if not matched:
            root.children.append(Explanation(label, None, "principal selector does not match"))
            continue
        if rule.condition is None:
            root.children.append(Explanation(label, True, "applies (no condition)"))
            continue
        refs = _values(activation, rule.condition.references)
        try:
            result = rule.condition(activation)
        except CelEvalError as exc:
            root.children.append(Explanation(
                label, rule.effect == "forbid",
                f"condition `{rule.condition.source}` failed: {exc.message}; "
                + ("an erroring forbid denies" if rule.effect == "forbid"
                   else "an erroring permit grants nothing") + (f" ({refs})" if refs else "")))
            continue
        root.children.append(Explanation(
            label, result is True,
            f"condition `{rule.condition.source}` is {result!r}" + (f" ({refs})" if refs else "")))
    info = policy.types[rtype]
    if action in info.permissions:
        root.children.append(walker.node(rkey, action))
    elif not any(c.granted for c in root.children):
        root.children.append(Explanation(f"{rtype} has no permission {action!r}", False,
                                         "only permit rules can grant it"))
    for reason in decision.reasons:
        if reason.kind in ("depth_exceeded", "evaluation_error"):
            root.children.append(Explanation(reason.kind, False, reason.message))
    return root


def _principal_matches(ev: Evaluator, rule: Any, pkey: str, ptype: str) -> bool:
    if not rule.principals or any(s.kind == "any" for s in rule.principals):
        return True
    for sel in rule.principals:
        if sel.kind == "type" and sel.type == ptype:
            return True
        if sel.kind == "entity" and pkey == f"{sel.type}:{sel.id}":
            return True
        if sel.kind == "userset":
            fn = ev._compiled.functions.functions[(sel.type, sel.relation)]
            if fn(f"{sel.type}:{sel.id}", pkey, ptype + ":*", None):
                return True
    return False
