"""Revocation: agents, tasks and single credentials, effective on the next decision.

A revocation is a fact keyed by what it revokes: ``("agent", "agent:bot")``,
``("task", "<task id>")`` or ``("credential", "<credential id>")``. Revoking a
task revokes every credential derived from it, because each credential
carries the ids of its whole chain and the check asks about all of them.

Decisions consult the store on every delegated check, before any cache, so a
revocation can never be answered from a cached allow. Entries may carry an
expiry (``until``): a credential that has expired anyway need not be
remembered past its expiry, which keeps the store bounded.

:class:`MemoryRevocationStore` is the in-process default; a shared store
(Redis) implements the same :class:`RevocationStore` protocol so that every
process sees a revocation at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from agentauthz.errors import InvalidInputError

__all__ = ["MemoryRevocationStore", "Revocation", "RevocationKind", "RevocationStore", "first_revoked"]

RevocationKind = Literal["agent", "task", "credential"]
_KINDS: frozenset[str] = frozenset(("agent", "task", "credential"))


@dataclass(frozen=True, slots=True)
class Revocation:
    """One revoked thing: what, why, when, and until when it must be remembered."""

    kind: RevocationKind
    id: str
    reason: str
    revoked_at: float
    until: float | None = None


@runtime_checkable
class RevocationStore(Protocol):
    """Where revocations live. Every method must be safe to call from many threads."""

    def revoke(self, kind: RevocationKind, id: str, *, reason: str = "",
               until: float | None = None) -> Revocation:
        """Record a revocation; effective for the next decision in every reader."""
        ...

    def revoked(self, kind: RevocationKind, ids: Iterable[str]) -> Revocation | None:
        """The first of ``ids`` revoked as ``kind``, or ``None``."""
        ...

    def list(self, kind: RevocationKind | None = None) -> list[Revocation]:
        """Every live revocation (of one kind, if given)."""
        ...


class MemoryRevocationStore:
    """Revocations in a dict: immediate within one process, gone when it exits."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._entries: dict[str, dict[str, Revocation]] = {kind: {} for kind in _KINDS}
        self._lock = threading.Lock()
        self._clock = clock
        self._writes = 0

    def revoke(self, kind: RevocationKind, id: str, *, reason: str = "",
               until: float | None = None) -> Revocation:
        entry = self._new(kind, id, reason, until)
        self._remember(entry)
        return entry

    def _new(self, kind: RevocationKind, id: str, reason: str, until: float | None) -> Revocation:
        if kind not in _KINDS:
            raise InvalidInputError(f"revocation kind must be one of {sorted(_KINDS)}, got {kind!r}")
        if type(id) is not str or not id:
            raise InvalidInputError("a revocation needs a non-empty string id")
        return Revocation(kind, id, reason, self._clock(), until)

    def _remember(self, entry: Revocation) -> None:
        with self._lock:
            self._entries[entry.kind][entry.id] = entry
            self._writes += 1
            if self._writes % 1024 == 0:
                self._prune()

    def _replace(self, entries: Iterable[Revocation]) -> None:
        """Hold exactly ``entries`` (a shared store's copy, after resynchronising)."""
        fresh: dict[str, dict[str, Revocation]] = {kind: {} for kind in _KINDS}
        for entry in entries:
            fresh[entry.kind][entry.id] = entry
        with self._lock:
            self._entries = fresh

    def revoked(self, kind: RevocationKind, ids: Iterable[str]) -> Revocation | None:
        return first_revoked(self._entries, kind, ids)

    def list(self, kind: RevocationKind | None = None) -> list[Revocation]:
        with self._lock:
            self._prune()
            kinds = _KINDS if kind is None else (kind,)
            return sorted((e for k in kinds for e in self._entries.get(k, {}).values()),
                          key=lambda e: e.revoked_at)

    def _prune(self) -> None:
        now = self._clock()
        for entries in self._entries.values():
            for id in [i for i, e in entries.items() if e.until is not None and e.until < now]:
                del entries[id]


def first_revoked(entries: Mapping[str, Mapping[str, Revocation]], kind: str,
                  ids: Iterable[str]) -> Revocation | None:
    """The first of ``ids`` that ``entries`` (kind -> id -> revocation) holds as ``kind``."""
    by_id = entries.get(kind)
    if not by_id:
        return None
    for id in ids:
        entry = by_id.get(id)
        if entry is not None:
            return entry
    return None
