"""The decision cache: cachetools in front of any backend, invalidated by versions.

A cached decision is keyed by the request *and* by the state it was decided
on: the backend's ``version()`` (the local backend: policy hash and store
version, which every relationship or attribute write bumps) and the cache's
own generation, which :meth:`DecisionCache.invalidate` bumps (policy reloads,
revocations, writes made through the authorizer to a remote backend). A
change therefore makes every older entry unreachable at once: a revoked grant
is never answered from the cache. Time (``ttl``) only bounds what a backend
that cannot report a version may miss.

Requests the cache cannot key exactly are not cached: a context that is not
plain data, or an entity passed with attributes. Values are keyed with their
types, because conditions distinguish ``true`` from ``1``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from cachetools import LRUCache

from agentauthz.errors import ConfigurationError
from agentauthz.model import Decision

__all__ = ["CacheStats", "DecisionCache"]

_TRANSIENT: Final = frozenset({"backend_error", "evaluation_error"})
_MAX_FREEZE_DEPTH: Final = 8
_MAX_FREEZE_ITEMS: Final = 256


class _Uncacheable(Exception):
    pass


def _freeze(value: Any, depth: int = 0) -> Hashable:
    kind = value.__class__
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return (kind.__name__, value)
    if depth >= _MAX_FREEZE_DEPTH:
        raise _Uncacheable
    if isinstance(value, Mapping):
        if len(value) > _MAX_FREEZE_ITEMS:
            raise _Uncacheable
        try:
            items = sorted(value.items())
        except TypeError:
            raise _Uncacheable from None
        return ("map", tuple((k, _freeze(v, depth + 1)) for k, v in items))
    if kind is list or kind is tuple:
        if len(value) > _MAX_FREEZE_ITEMS:
            raise _Uncacheable
        return ("list", tuple(_freeze(v, depth + 1) for v in value))
    raise _Uncacheable


@dataclass(frozen=True, slots=True)
class CacheStats:
    hits: int
    misses: int
    bypassed: int
    size: int

    @property
    def hit_ratio(self) -> float:
        """Hits over lookups; 0.0 before the first lookup."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class DecisionCache:
    """A bounded, expiring, thread-safe cache of decisions.

    ``maxsize`` entries at most (least recently used evicted first), each for
    ``ttl`` seconds at most. Reads take no lock: a lookup that races an
    eviction is a miss. Writes hold a lock.
    """

    def __init__(self, maxsize: int = 10_000, ttl: float = 30.0) -> None:
        if not isinstance(maxsize, int) or maxsize < 1:
            raise ConfigurationError("DecisionCache(maxsize=...) must be a positive integer")
        if not isinstance(ttl, int | float) or ttl <= 0:
            raise ConfigurationError("DecisionCache(ttl=...) must be a positive number of seconds")
        self.maxsize = maxsize
        self.ttl = float(ttl)
        # cachetools' TTLCache spends a microsecond per read on expiry bookkeeping, more than
        # a local check costs; LRU order plus an expiry stamp per entry gives the same bound
        self._entries: LRUCache[Hashable, tuple[Decision, float]] = LRUCache(maxsize)
        self._lock = threading.Lock()
        self._generation = 0
        self._hits = 0
        self._misses = 0
        self._bypassed = 0

    def key(self, version: Hashable | None, principal: object, action: object,
            resource: object, context: Mapping[str, Any] | None) -> Hashable | None:
        """The cache key of a request, or ``None`` when it cannot be cached exactly."""
        if principal.__class__ is not str or resource.__class__ is not str \
                or action.__class__ is not str:
            self._bypassed += 1
            return None
        if context is None:
            return (self._generation, version, principal, action, resource)
        try:
            frozen = _freeze(context)
        except (_Uncacheable, RecursionError):
            self._bypassed += 1
            return None
        return (self._generation, version, principal, action, resource, frozen)

    def get(self, key: Hashable) -> Decision | None:
        try:
            entry = self._entries.get(key)
        except KeyError:  # evicted by a concurrent write mid-lookup
            entry = None
        if entry is None:
            self._misses += 1
            return None
        decision, expires = entry
        if expires < _monotonic():
            self._misses += 1
            return None
        self._hits += 1
        return decision

    def put(self, key: Hashable, decision: Decision) -> None:
        reasons = decision.reasons
        if reasons and reasons[0].kind in _TRANSIENT:
            return  # an outage must not outlive itself (failures put their reason first)
        entry = (decision, _monotonic() + self.ttl)
        with self._lock:
            self._entries[key] = entry

    def invalidate(self) -> None:
        """Make every cached decision unreachable (and free them)."""
        with self._lock:
            self._generation += 1
            self._entries.clear()

    def stats(self) -> CacheStats:
        return CacheStats(self._hits, self._misses, self._bypassed, len(self._entries))

    @property
    def hit_ratio(self) -> float:
        return self.stats().hit_ratio

    def __len__(self) -> int:
        return len(self._entries)


_monotonic = time.monotonic
