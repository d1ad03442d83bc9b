"""The relationship store: tuples and entity attributes, in memory, indexed both ways.

Layout (all keys are plain strings, so a check never builds a tuple):

``forward``   ``"document:42"`` -> ``{"owner": direct subjects ("user:alice", "user:*")}``
``usersets``  ``"folder:7"``    -> ``{"viewer": [("team:eng", "team#member"), ...]}``
``reverse``   ``"user:alice"``  -> ``{"document#owner": objects, ...}``
              (usersets are reverse-indexed under their full text, ``"team:eng#member"``)

The forward maps are keyed by the entity string itself, whose hash Python
caches on the string: a check hops from object to object without building
a single new key.

A value that holds one subject or object is the bare string; it becomes a
set when a second one arrives. Most relations have one subject (a document's
parent, its owner), so this halves the memory of a large store.

The store knows nothing of the schema: callers validate relationships
against the policy before writing (the :class:`~agentauthz.engine.Evaluator`
does). Every write bumps :attr:`version`, which decision caches key on.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeAlias

from agentauthz.model import Relationship

__all__ = ["MemoryStore", "RelationTuple", "StoreListener"]

RelationTuple: TypeAlias = tuple[str, str, str]
"""``(resource, relation, subject)`` as validated strings."""

StoreListener: TypeAlias = Callable[[int], None]
"""Called with the new version after every write."""

_intern = sys.intern


def _add(index: dict[str, Any], key: str, value: str) -> bool:
    cur = index.get(key)
    if cur is None:
        index[key] = value
        return True
    if cur.__class__ is str:
        if cur == value:
            return False
        index[key] = {cur, value}
        return True
    if value in cur:
        return False
    cur.add(value)
    return True


def _discard(index: dict[str, Any], key: str, value: str) -> bool:
    cur = index.get(key)
    if cur is None:
        return False
    if cur.__class__ is str:
        if cur != value:
            return False
        del index[key]
        return True
    if value not in cur:
        return False
    cur.discard(value)
    if len(cur) == 1:
        index[key] = next(iter(cur))
    elif not cur:  # pragma: no cover - sets never drop below one entry here
        del index[key]
    return True


def members(value: str | set[str] | None) -> Iterable[str]:
    """Iterate a bare-string-or-set index value."""
    if value is None:
        return ()
    if value.__class__ is str:
        return (value,)
    return value


class MemoryStore:
    """Relationships and attributes in memory.

    Writes hold :attr:`lock` and apply a batch removals first, then additions.
    Reads take no lock: a check that runs during a write sees the state before,
    after, or partway through the batch (removals first, so partway never holds
    a tuple that neither end holds). The evaluator re-runs, under the lock, a
    check whose iteration a write disturbed.
    """

    def __init__(self) -> None:
        self.forward: dict[str, dict[str, Any]] = {}
        self.usersets: dict[str, dict[str, list[tuple[str, str]]]] = {}
        self.reverse: dict[str, dict[str, Any]] = {}
        self.by_type: dict[str, set[str]] = {}
        self.attributes: dict[str, dict[str, Any]] = {}
        self._count = 0
        self._version = 0
        self.lock = threading.RLock()
        self._listeners: list[StoreListener] = []

    # ------------------------------------------------------------------ reads
    @property
    def version(self) -> int:
        """Changes on every write; equal versions mean equal contents."""
        return self._version

    def __len__(self) -> int:
        return self._count

    def has(self, rel: RelationTuple) -> bool:
        resource, relation, subject = rel
        if "#" in subject:
            obj, _, srel = subject.rpartition("#")
            entries = self.usersets.get(resource, {}).get(relation, ())
            return any(u[0] == obj and u[1].endswith("#" + srel) for u in entries)
        return subject in members(self.forward.get(resource, {}).get(relation))

    def relationships(self, *, resource: str | None = None, relation: str | None = None,
                      subject: str | None = None) -> Iterator[Relationship]:
        """Every stored relationship matching the given fields (``None`` matches any)."""
        with self.lock:
            items = list(self._iter_tuples())
        for r, rel, s in items:
            if ((resource is None or r == resource) and (relation is None or rel == relation)
                    and (subject is None or s == subject)):
                yield Relationship(r, rel, s)

    def _iter_tuples(self) -> Iterator[RelationTuple]:
        for resource, by_relation in self.forward.items():
            for relation, value in by_relation.items():
                for s in members(value):
                    yield resource, relation, s
        for resource, by_relation in self.usersets.items():
            for relation, entries in by_relation.items():
                for obj, tr in entries:
                    yield resource, relation, f"{obj}#{tr.partition('#')[2]}"

    def get_attributes(self, entity: str) -> dict[str, Any]:
        """A copy of the stored attributes of ``entity`` (empty if none)."""
        view = self.attributes.get(entity)
        if view is None:
            return {}
        return {k: v for k, v in view.items() if k not in ("id", "type")}

    def entities(self, type_: str) -> frozenset[str]:
        """Every entity of ``type_`` the store has seen (as resource, subject, or with attributes)."""
        return frozenset(self.by_type.get(type_, ()))

    # ----------------------------------------------------------------- writes
    def subscribe(self, listener: StoreListener) -> Callable[[], None]:
        """Call ``listener(version)`` after each write; returns a function that unsubscribes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def write(self, add: Iterable[RelationTuple] = (), remove: Iterable[RelationTuple] = ()) -> int:
        """Apply validated tuples in one batch; returns the number of changes."""
        changed = 0
        with self.lock:
            for rel in remove:
                changed += self._remove(rel)
            changed += self._add_many(add)
            if changed:
                self._bump()
        return changed

    def set_attributes(self, entity: str, attributes: Mapping[str, Any] | None) -> None:
        """Replace the attributes of ``entity`` (``None`` or empty removes them)."""
        with self.lock:
            self._set_attributes(entity, attributes)
            self._bump()

    def set_many_attributes(self, items: Iterable[tuple[str, Mapping[str, Any] | None]]) -> None:
        with self.lock:
            for entity, attributes in items:
                self._set_attributes(entity, attributes)
            self._bump()

    def clear(self) -> None:
        with self.lock:
            self.forward.clear()
            self.usersets.clear()
            self.reverse.clear()
            self.by_type.clear()
            self.attributes.clear()
            self._count = 0
            self._bump()

    def _set_attributes(self, entity: str, attributes: Mapping[str, Any] | None) -> None:
        type_, _, id_ = entity.partition(":")
        if attributes:
            view = {"id": id_, "type": type_}
            view.update({k: v for k, v in attributes.items() if k not in ("id", "type")})
            self.attributes[_intern(entity)] = view
            self._known(type_, entity)
        else:
            self.attributes.pop(entity, None)

    def _bump(self) -> None:
        self._version += 1
        for listener in tuple(self._listeners):
            listener(self._version)

    def _known(self, type_: str, key: str) -> None:
        known = self.by_type.get(type_)
        if known is None:
            known = self.by_type[type_] = set()
        known.add(key)

    def _add_many(self, rels: Iterable[RelationTuple]) -> int:
        """The bulk-load path: one frame for the batch, each repeated string interned once."""
        forward, usersets, reverse = self.forward, self.usersets, self.reverse
        known_type = self._known
        type_relation: dict[tuple[str, str], str] = {}
        added = 0
        for resource, relation, subject in rels:
            resource = _intern(resource)
            relation = _intern(relation)
            rtype = resource[: resource.index(":")]
            if "#" in subject:
                obj, _, srel = subject.rpartition("#")
                by_relation = usersets.get(resource)
                if by_relation is None:
                    by_relation = usersets[resource] = {}
                    known_type(rtype, resource)
                entries = by_relation.get(relation)
                if entries is None:
                    entries = by_relation[relation] = []
                stype = obj[: obj.index(":")]
                kind = _intern(f"{stype}#{srel}")
                if any(e[0] == obj and e[1] == kind for e in entries):
                    continue
                entries.append((_intern(obj), kind))
                known_type(stype, obj)
            else:
                subject = _intern(subject)
                by_relation = forward.get(resource)
                if by_relation is None:
                    by_relation = forward[resource] = {}
                    known_type(rtype, resource)
                if not _add(by_relation, relation, subject):
                    continue
            rev = reverse.get(subject)
            if rev is None:
                rev = reverse[_intern(subject)] = {}
                stype, _, sid = subject.partition(":")
                if sid != "*" and "#" not in subject:
                    known_type(stype, subject)
            tr = type_relation.get((rtype, relation))
            if tr is None:
                tr = type_relation[(rtype, relation)] = _intern(f"{rtype}#{relation}")
            _add(rev, tr, resource)
            added += 1
        self._count += added
        return added

    def _remove(self, rel: RelationTuple) -> int:
        resource, relation, subject = rel
        if "#" in subject:
            obj, _, srel = subject.rpartition("#")
            by_relation = self.usersets.get(resource, {})
            entries = by_relation.get(relation, [])
            kept = [e for e in entries if not (e[0] == obj and e[1].endswith("#" + srel))]
            if len(kept) == len(entries):
                return 0
            if kept:
                by_relation[relation] = kept
            else:
                del by_relation[relation]
                if not by_relation:
                    del self.usersets[resource]
        else:
            by_relation = self.forward.get(resource, {})
            if not _discard(by_relation, relation, subject):
                return 0
            if not by_relation:
                self.forward.pop(resource, None)
        rev = self.reverse.get(subject)
        if rev is not None:
            _discard(rev, f"{resource[: resource.index(':')]}#{relation}", resource)
            if not rev:
                del self.reverse[subject]
        self._count -= 1
        return 1
