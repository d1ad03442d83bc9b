"""``list_resources``: which entities of a type may this principal act on?

This is the data-filtering query (e.g. a RAG search's pre-retrieval filter),
so it walks the reverse index from the principal outwards instead of
checking every object: ``document.read = owner | parent->read`` becomes
"documents whose owner is me, plus documents whose parent is a folder I can
read", each step a set union over the reverse index.

Cycles in data (folders inside folders) are solved by iterating to the
least fixed point, which is what ``check`` computes one object at a time.
Rules are then applied exactly as ``check`` applies them: forbid rules
filter the candidates, permit rules with conditions are evaluated per known
entity of the type (conditions have no index).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from agentauthz.engine.store import MemoryStore, members
from agentauthz.model import Entity, EntityLike
from agentauthz.policy.expressions import (
    Arrow,
    Exclusion,
    Intersection,
    Name,
    PermissionExpr,
)
from agentauthz.policy.schema import Policy

if TYPE_CHECKING:
    from agentauthz.engine.evaluator import Evaluator, _Compiled

__all__ = ["list_resources"]

MAX_ROUNDS: Final = 1000


class _Lookup:
    def __init__(self, policy: Policy, store: MemoryStore, pkey: str, wild: str) -> None:
        self.policy = policy
        self.store = store
        self.holders = (pkey, wild)
        self.memo: dict[tuple[str, str], set[str]] = {}
        self.previous: dict[tuple[str, str], set[str]] = {}
        self.in_progress: set[tuple[str, str]] = set()
        self.cut = False

    def solve(self, rtype: str, name: str) -> tuple[set[str], bool]:
        """The objects, and whether the iteration converged (exclusion inside a data
        cycle can oscillate; the caller then verifies each object with ``check``)."""
        result: set[str] = set()
        for _ in range(MAX_ROUNDS):
            self.memo = {}
            self.cut = False
            result = self.objects(rtype, name)
            if not self.cut or self.memo == self.previous:
                return result, True
            self.previous = self.memo
        return result, False

    def objects(self, tname: str, name: str) -> set[str]:
        key = (tname, name)
        found = self.memo.get(key)
        if found is not None:
            return found
        if key in self.in_progress:
            self.cut = True
            return self.previous.get(key, set())
        self.in_progress.add(key)
        try:
            info = self.policy.types[tname]
            if name in info.relations:
                result = self._relation(tname, name)
            else:
                result = self._expr(tname, info.permissions[name])
        finally:
            self.in_progress.discard(key)
        self.memo[key] = result
        return result

    def _relation(self, tname: str, rname: str) -> set[str]:
        rev = self.store.reverse
        tr = f"{tname}#{rname}"
        out: set[str] = set()
        for holder in self.holders:
            idx = rev.get(holder)
            if idx is not None:
                out.update(members(idx.get(tr)))
        for st in self.policy.types[tname].relations[rname].usersets:
            assert st.relation is not None
            for x in self.objects(st.type, st.relation):
                idx = rev.get(f"{x}#{st.relation}")
                if idx is not None:
                    out.update(members(idx.get(tr)))
        return out

    def _expr(self, tname: str, expr: PermissionExpr) -> set[str]:
        if isinstance(expr, Name):
            return set(self.objects(tname, expr.name))
        if isinstance(expr, Arrow):
            rel = self.policy.types[tname].relations[expr.relation]
            rev = self.store.reverse
            tr = f"{tname}#{expr.relation}"
            out: set[str] = set()
            for target_type in rel.direct_types:
                if not self.policy.types[target_type].has(expr.permission):
                    continue
                for t in self.objects(target_type, expr.permission):
                    idx = rev.get(t)
                    if idx is not None:
                        out.update(members(idx.get(tr)))
            return out
        if isinstance(expr, Exclusion):
            return self._expr(tname, expr.base) - self._expr(tname, expr.excluded)
        sets = [self._expr(tname, item) for item in expr.items]
        if isinstance(expr, Intersection):
            return set.intersection(*sets)
        return set().union(*sets)


def list_resources(evaluator: Evaluator, compiled: _Compiled, principal: EntityLike, action: str,
                   resource_type: str, context: Mapping[str, Any] | None) -> frozenset[str]:
    pkey = principal.key if isinstance(principal, Entity) else principal
    if type(pkey) is not str or type(action) is not str or type(resource_type) is not str:
        return frozenset()
    ptype, sep, pid = pkey.partition(":")
    policy = compiled.policy
    if (not sep or not pid or "#" in pkey or pid == "*" or ptype not in policy.types
            or resource_type not in policy.types):
        return frozenset()
    acc = compiled.access[resource_type].get(action) or compiled.fallback[resource_type]
    store = evaluator.store
    wild = ptype + ":*"
    found: set[str] = set()
    if acc.permission is not None:
        found, exact = _Lookup(policy, store, pkey, wild).solve(resource_type, action)
        # check bounds recursion by max_depth; the fixed point does not, so where the
        # permission can recurse through data, each object is confirmed by check
        recursive = (resource_type, action) in compiled.functions.recursive
        if acc.forbids or not exact or recursive:
            found = {o for o in found
                     if evaluator.check(principal, action, o, context).allowed}
    if _any_permit_may_apply(store, acc, pkey, ptype, wild):
        # a permit rule can grant any entity of the type: check the rest one by one
        rest = store.entities(resource_type) - found
        found.update(o for o in rest if evaluator.check(principal, action, o, context).allowed)
    return frozenset(found)


def _any_permit_may_apply(store: MemoryStore, acc: Any, pkey: str, ptype: str, wild: str) -> bool:
    for group, granting in acc.groups:
        for holder in (pkey, wild):
            idx = store.reverse.get(holder)
            if idx is not None and any(o in granting for o in members(idx.get(group))):
                return True
    return any(pr.matchers is None or pr.matches(pkey, ptype, wild) for pr in acc.permits)
