"""Compile a policy's permission expressions into closures over a store.

Every relation and permission ``T.n`` becomes one function::

    fn(obj: str, subject: str, wildcard: str, state: _State | None) -> bool

``obj`` is ``"T:id"``, ``subject`` the principal's ``"type:id"``, and
``wildcard`` its ``"type:*"`` (so ``user:*`` grants match every user and
nothing else). The closures read the store's dicts directly; nothing is
parsed or allocated per call on the common path.

Recursion in data (a folder whose parent is a folder...) can only happen
along edges inside a cycle of the *type graph*. Only those edges are
guarded: they carry a ``_State`` that remembers the objects on the current
path (a revisit is "not granted", which is the least fixed point for
union, intersection and arrows), memoises objects already proven not to
grant, and bounds the depth. Edges outside type cycles pay nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, TypeAlias

from agentauthz.engine.store import MemoryStore
from agentauthz.policy.expressions import (
    Arrow,
    Exclusion,
    Intersection,
    Name,
    PermissionExpr,
    Union,
)
from agentauthz.policy.schema import Policy

__all__ = ["CheckFn", "DepthExceeded", "compile_policy"]

DEFAULT_MAX_DEPTH: Final = 50


class DepthExceeded(Exception):
    """A check followed more than ``max_depth`` recursive hops."""


class _State:
    __slots__ = ("cuts", "failed", "max_depth", "path")

    def __init__(self, max_depth: int) -> None:
        self.path: set[str] = set()
        self.failed: set[str] = set()
        self.cuts = 0
        self.max_depth = max_depth


CheckFn: TypeAlias = Callable[[str, str, str, "_State | None"], bool]
Node: TypeAlias = tuple[str, str]


def _type_graph(policy: Policy) -> dict[Node, set[Node]]:
    graph: dict[Node, set[Node]] = {}
    for tname, info in policy.types.items():
        for rname, rinfo in info.relations.items():
            graph[(tname, rname)] = {(s.type, s.relation) for s in rinfo.usersets
                                     if s.relation is not None}
        for pname, expr in info.permissions.items():
            graph[(tname, pname)] = _expr_edges(policy, tname, expr)
    return graph


def _expr_edges(policy: Policy, tname: str, expr: PermissionExpr) -> set[Node]:
    if isinstance(expr, Name):
        return {(tname, expr.name)}
    if isinstance(expr, Arrow):
        rel = policy.types[tname].relations[expr.relation]
        return {(t, expr.permission) for t in rel.direct_types if policy.types[t].has(expr.permission)}
    if isinstance(expr, Exclusion):
        return _expr_edges(policy, tname, expr.base) | _expr_edges(policy, tname, expr.excluded)
    out: set[Node] = set()
    for item in expr.items:
        out |= _expr_edges(policy, tname, item)
    return out


def _components(graph: dict[Node, set[Node]]) -> dict[Node, int]:
    """Tarjan's strongly connected components, iteratively; cyclic nodes get a component id."""
    index: dict[Node, int] = {}
    low: dict[Node, int] = {}
    on_stack: set[Node] = set()
    stack: list[Node] = []
    comp: dict[Node, int] = {}
    counter = 0
    for root in graph:
        if root in index:
            continue
        work: list[tuple[Node, list[Node]]] = [(root, sorted(graph.get(root, ())))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, succ = work[-1]
            if succ:
                nxt = succ.pop()
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(graph.get(nxt, ()))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                members = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    members.append(top)
                    if top == node:
                        break
                cyclic = len(members) > 1 or node in graph.get(node, ())
                if cyclic:
                    for m in members:
                        comp[m] = index[node]
    return comp


class _Compiler:
    def __init__(self, policy: Policy, store: MemoryStore, max_depth: int) -> None:
        self.policy = policy
        self.store = store
        self.max_depth = max_depth
        self.fns: dict[Node, CheckFn] = {}
        self.cells: dict[Node, list[CheckFn]] = {}
        self.in_progress: set[Node] = set()
        self.component = _components(_type_graph(policy))

    def get(self, node: Node) -> CheckFn:
        fn = self.fns.get(node)
        if fn is not None:
            return fn
        if node in self.in_progress:
            cell = self.cells.setdefault(node, [])
            return lambda o, s, w, st: cell[0](o, s, w, st)
        self.in_progress.add(node)
        tname, name = node
        info = self.policy.types[tname]
        fn = (self._relation(tname, name) if name in info.relations
              else self._expr(tname, info.permissions[name]))
        self.in_progress.discard(node)
        self.fns[node] = fn
        if node in self.cells:
            self.cells[node].append(fn)
        return fn

    def hop(self, source: Node, target: Node) -> CheckFn:
        """The function for ``target``, guarded when the edge closes a type cycle."""
        fn = self.get(target)
        comp = self.component.get(source)
        if comp is None or self.component.get(target) != comp:
            return fn
        suffix = "#" + target[1]
        max_depth = self.max_depth

        def guarded(obj: str, subj: str, wild: str, state: _State | None) -> bool:
            if state is None:
                state = _State(max_depth)
            key = obj + suffix
            if key in state.path:
                state.cuts += 1
                return False
            if key in state.failed:
                return False
            if len(state.path) >= state.max_depth:
                raise DepthExceeded(key)
            cuts = state.cuts
            state.path.add(key)
            try:
                result = fn(obj, subj, wild, state)
            finally:
                state.path.discard(key)
            if not result and state.cuts == cuts:
                state.failed.add(key)
            return result

        return guarded

    def _relation(self, tname: str, rname: str) -> CheckFn:
        rinfo = self.policy.types[tname].relations[rname]
        fwd_get = self.store.forward.get
        if not rinfo.usersets and not rinfo.wildcard_types:
            # no wildcard can be stored here (writes are validated): one probe, not two
            def exact(obj: str, subj: str, wild: str, state: _State | None) -> bool:
                rels = fwd_get(obj)
                if rels is None:
                    return False
                s = rels.get(rname)
                if s is None:
                    return False
                if s.__class__ is str:
                    return bool(s == subj)
                return subj in s

            return exact
        if not rinfo.usersets:
            def direct(obj: str, subj: str, wild: str, state: _State | None) -> bool:
                rels = fwd_get(obj)
                if rels is None:
                    return False
                s = rels.get(rname)
                if s is None:
                    return False
                if s.__class__ is str:
                    return bool(s == subj or s == wild)
                return subj in s or wild in s

            return direct
        dispatch: dict[str, CheckFn] = {}
        for st in rinfo.usersets:
            assert st.relation is not None
            dispatch[f"{st.type}#{st.relation}"] = self.hop((tname, rname),
                                                            (st.type, st.relation))
        us_get = self.store.usersets.get
        dispatch_get = dispatch.get
        only_usersets = not (rinfo.direct_types or rinfo.wildcard_types)
        if only_usersets and len(dispatch) == 1:
            ((only_kind, only_fn),) = dispatch.items()
            utype, _, urel = only_kind.partition("#")
            target = self.policy.types[utype].relations.get(urel)
            if target is not None and not target.usersets and not target.wildcard_types:
                # `team#member` where member holds plain subjects: the principal's own
                # reverse entry lists its teams, and store strings compare by identity
                rev_get = self.store.reverse.get

                def member_of_userset(obj: str, subj: str, wild: str,
                                      state: _State | None) -> bool:
                    by_relation = us_get(obj)
                    if by_relation is None:
                        return False
                    entries = by_relation.get(rname)
                    if not entries:
                        return False
                    held = rev_get(subj)
                    if held is None:
                        return False
                    groups = held.get(only_kind)
                    if groups is None:
                        return False
                    if groups.__class__ is str:
                        for uobj, _kind in entries:
                            if uobj is groups or uobj == groups:
                                return True
                        return False
                    for uobj, _kind in entries:
                        if uobj in groups:
                            return True
                    return False

                return member_of_userset

            def one_userset(obj: str, subj: str, wild: str, state: _State | None) -> bool:
                by_relation = us_get(obj)
                if by_relation is None:
                    return False
                entries = by_relation.get(rname)
                if entries:
                    # stored data fits the schema (checked at write and at policy swap),
                    # so every entry here is of the one allowed kind
                    for uobj, _kind in entries:
                        if only_fn(uobj, subj, wild, state):
                            return True
                return False

            return one_userset

        def with_usersets(obj: str, subj: str, wild: str, state: _State | None) -> bool:
            if not only_usersets:
                rels = fwd_get(obj)
                if rels is not None:
                    s = rels.get(rname)
                    if s is not None:
                        if s.__class__ is str:
                            if s == subj or s == wild:
                                return True
                        elif subj in s or wild in s:
                            return True
            by_relation = us_get(obj)
            if by_relation is None:
                return False
            entries = by_relation.get(rname)
            if entries:
                for uobj, kind in entries:
                    f = dispatch_get(kind)
                    if f is not None and f(uobj, subj, wild, state):
                        return True
            return False

        return with_usersets

    def _expr(self, tname: str, expr: PermissionExpr) -> CheckFn:
        if isinstance(expr, Name):
            return self.get((tname, expr.name))
        if isinstance(expr, Arrow):
            return self._arrow(tname, expr)
        if isinstance(expr, Exclusion):
            base, excluded = self._expr(tname, expr.base), self._expr(tname, expr.excluded)

            def exclusion(obj: str, subj: str, wild: str, state: _State | None) -> bool:
                return base(obj, subj, wild, state) and not excluded(obj, subj, wild, state)

            return exclusion
        if isinstance(expr, Union):
            fused = self._fused_union(tname, expr)
            if fused is not None:
                return fused
        parts = tuple(self._expr(tname, item) for item in expr.items)
        if isinstance(expr, Union):
            if len(parts) == 2:
                a, b = parts

                def union2(obj: str, subj: str, wild: str, state: _State | None) -> bool:
                    return a(obj, subj, wild, state) or b(obj, subj, wild, state)

                return union2

            def union(obj: str, subj: str, wild: str, state: _State | None) -> bool:
                return any(p(obj, subj, wild, state) for p in parts)

            return union
        assert isinstance(expr, Intersection)

        def intersection(obj: str, subj: str, wild: str, state: _State | None) -> bool:
            return all(p(obj, subj, wild, state) for p in parts)

        return intersection

    def _fused_union(self, tname: str, expr: Union) -> CheckFn | None:
        """A union whose direct relations and arrows read the object's relations once.

        ``owner | parent->read`` looks the document up once, checks ``owner`` and
        follows ``parent`` from the same dict. Union is commutative, so reordering
        its items changes no answer.
        """
        info = self.policy.types[tname]
        direct: list[str] = []
        arrows: list[tuple[str, CheckFn]] = []
        others: list[CheckFn] = []
        for item in expr.items:
            if isinstance(item, Name) and item.name in info.relations \
                    and not info.relations[item.name].usersets:
                direct.append(item.name)
                continue
            if isinstance(item, Arrow):
                rel = info.relations[item.relation]
                targets = [t for t in rel.direct_types if self.policy.types[t].has(item.permission)]
                if len(targets) == 1:
                    source = (tname, self._owner_name(tname, item))
                    arrows.append((item.relation, self.hop(source, (targets[0], item.permission))))
                    continue
            others.append(self._expr(tname, item))
        if len(direct) + len(arrows) < 2:
            return None
        names, follows, rest = tuple(direct), tuple(arrows), tuple(others)
        fwd_get = self.store.forward.get
        wildcards = any(info.relations[n].wildcard_types for n in names)
        if len(names) == 1 and len(follows) == 1 and not rest and not wildcards:
            # the commonest shape, `owner | parent->read`, without the loops
            (name,) = names
            ((rel_name, target),) = follows

            def rel_or_arrow(obj: str, subj: str, wild: str, state: _State | None) -> bool:
                rels = fwd_get(obj)
                if rels is None:
                    return False
                s = rels.get(name)
                if s is not None:
                    if s.__class__ is str:
                        if s == subj:
                            return True
                    elif subj in s:
                        return True
                t = rels.get(rel_name)
                if t is None:
                    return False
                if t.__class__ is str:
                    return target(t, subj, wild, state)
                for x in t:
                    if target(x, subj, wild, state):
                        return True
                return False

            return rel_or_arrow

        def union_fused(obj: str, subj: str, wild: str, state: _State | None) -> bool:
            rels = fwd_get(obj)
            if rels is not None:
                for name in names:
                    s = rels.get(name)
                    if s is not None:
                        if s.__class__ is str:
                            if s == subj or s == wild:
                                return True
                        elif subj in s or wild in s:
                            return True
                for rel_name, target in follows:
                    t = rels.get(rel_name)
                    if t is not None:
                        if t.__class__ is str:
                            if target(t, subj, wild, state):
                                return True
                        else:
                            for x in t:
                                if target(x, subj, wild, state):
                                    return True
            return any(f(obj, subj, wild, state) for f in rest)

        return union_fused

    def _arrow(self, tname: str, expr: Arrow) -> CheckFn:
        rinfo = self.policy.types[tname].relations[expr.relation]
        source = (tname, self._owner_name(tname, expr))
        targets = {t: self.hop(source, (t, expr.permission)) for t in sorted(rinfo.direct_types)
                   if self.policy.types[t].has(expr.permission)}
        rel_name = expr.relation
        fwd_get = self.store.forward.get
        if len(targets) == 1:
            (target,) = targets.values()

            def arrow_one(obj: str, subj: str, wild: str, state: _State | None) -> bool:
                rels = fwd_get(obj)
                if rels is None:
                    return False
                t = rels.get(rel_name)
                if t is None:
                    return False
                if t.__class__ is str:
                    return target(t, subj, wild, state)
                return any(target(x, subj, wild, state) for x in t)

            return arrow_one
        by_type = targets.get

        def arrow_many(obj: str, subj: str, wild: str, state: _State | None) -> bool:
            rels = fwd_get(obj)
            if rels is None:
                return False
            t = rels.get(rel_name)
            if t is None:
                return False
            for x in ((t,) if t.__class__ is str else t):
                f = by_type(x[: x.index(":")])
                if f is not None and f(x, subj, wild, state):
                    return True
            return False

        return arrow_many

    def _owner_name(self, tname: str, expr: Arrow) -> str:
        """The permission of ``tname`` whose expression contains this arrow (for cycle edges)."""
        for pname, pexpr in self.policy.types[tname].permissions.items():
            if _contains(pexpr, expr):
                return pname
        for fields in self.policy.types[tname].fields.values():
            for fexpr in fields.values():
                if _contains(fexpr, expr):
                    return f"field:{expr.relation}"
        return expr.relation  # pragma: no cover - every arrow belongs to some expression


def _contains(expr: PermissionExpr, leaf: Arrow) -> bool:
    if isinstance(expr, Arrow):
        return expr is leaf
    if isinstance(expr, Name):
        return False
    if isinstance(expr, Exclusion):
        return _contains(expr.base, leaf) or _contains(expr.excluded, leaf)
    return any(_contains(i, leaf) for i in expr.items)


def _reaching_cycles(graph: dict[Node, set[Node]], cyclic: set[Node]) -> frozenset[Node]:
    """Nodes from which a cyclic node can be reached (depth-limited checks start there)."""
    reaches: set[Node] = set(cyclic)
    changed = True
    while changed:
        changed = False
        for node, succ in graph.items():
            if node not in reaches and succ & reaches:
                reaches.add(node)
                changed = True
    return frozenset(reaches)


class CompiledPolicy:
    """Closures for every relation and permission, plus field expressions."""

    def __init__(self, policy: Policy, store: MemoryStore, max_depth: int) -> None:
        compiler = _Compiler(policy, store, max_depth)
        self.recursive: frozenset[Node] = _reaching_cycles(_type_graph(policy),
                                                           set(compiler.component))
        """Relations and permissions whose checks can recurse through data (and so hit
        the depth limit)."""
        self.functions: dict[Node, CheckFn] = {}
        for tname, info in policy.types.items():
            for name in (*info.relations, *info.permissions):
                self.functions[(tname, name)] = compiler.get((tname, name))
        self.fields: dict[str, dict[str, dict[str, CheckFn]]] = {
            tname: {fname: {action: compiler._expr(tname, fexpr)
                            for action, fexpr in per_action.items()}
                    for fname, per_action in info.fields.items()}
            for tname, info in policy.types.items()
        }
        self.max_depth = max_depth


def compile_policy(policy: Policy, store: MemoryStore,
                   max_depth: int = DEFAULT_MAX_DEPTH) -> CompiledPolicy:
    """Compile ``policy`` against ``store``; the closures see later writes to the store."""
    return CompiledPolicy(policy, store, max_depth)
