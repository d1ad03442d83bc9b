"""A relationship store that survives restarts: SQLite on disk, the memory indexes in front.

Reads never touch SQLite: the store loads every row into the in-memory
indexes when it opens, and each write goes to SQLite (one transaction per
batch) before it reaches memory. A write that fails on disk raises
:class:`~agentauthz.errors.StoreError` and leaves memory unchanged.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from agentauthz.engine.store import MemoryStore, RelationTuple
from agentauthz.errors import StoreError

__all__ = ["SQLiteStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS relationships (
    resource TEXT NOT NULL, relation TEXT NOT NULL, subject TEXT NOT NULL,
    PRIMARY KEY (resource, relation, subject)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS attributes (entity TEXT PRIMARY KEY, body TEXT NOT NULL);
"""


def _encode(value: Any) -> Any:
    """Timestamps and durations keep their CEL types across a restart."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise TypeError("attribute timestamps must carry a time zone")
        return {"$timestamp": value.isoformat()}
    if isinstance(value, timedelta):
        return {"$duration": [value.days, value.seconds, value.microseconds]}
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"cannot store an attribute of type {type(value).__name__}")


def _decode(obj: dict[str, Any]) -> Any:
    if len(obj) == 1:
        if "$timestamp" in obj:
            return datetime.fromisoformat(obj["$timestamp"])
        if "$duration" in obj:
            days, seconds, micros = obj["$duration"]
            return timedelta(days=days, seconds=seconds, microseconds=micros)
    return obj


class SQLiteStore(MemoryStore):
    """A :class:`MemoryStore` persisted to a SQLite file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self.path = os.fspath(path)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.executescript(_SCHEMA)
            rows = self._db.execute("SELECT resource, relation, subject FROM relationships")
            MemoryStore.write(self, rows)
            for entity, body in self._db.execute("SELECT entity, body FROM attributes"):
                MemoryStore._set_attributes(self, entity, json.loads(body, object_hook=_decode))
        except (sqlite3.Error, json.JSONDecodeError) as exc:
            raise StoreError(f"cannot open relationship store {self.path!r}: {exc}") from exc

    def write(self, add: Iterable[RelationTuple] = (), remove: Iterable[RelationTuple] = ()) -> int:
        adds, removes = list(add), list(remove)
        with self.lock:
            try:
                self._db.execute("BEGIN")
                self._db.executemany(
                    "DELETE FROM relationships WHERE resource=? AND relation=? AND subject=?",
                    removes)
                self._db.executemany("INSERT OR IGNORE INTO relationships VALUES (?, ?, ?)", adds)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise StoreError(f"cannot write to {self.path!r}: {exc}") from exc
            return super().write(adds, removes)

    def set_attributes(self, entity: str, attributes: Mapping[str, Any] | None) -> None:
        self.set_many_attributes([(entity, attributes)])

    def set_many_attributes(self, items: Iterable[tuple[str, Mapping[str, Any] | None]]) -> None:
        batch = list(items)
        with self.lock:
            try:
                self._db.execute("BEGIN")
                for entity, attributes in batch:
                    if attributes:
                        self._db.execute("INSERT OR REPLACE INTO attributes VALUES (?, ?)",
                                         (entity, json.dumps(dict(attributes), default=_encode)))
                    else:
                        self._db.execute("DELETE FROM attributes WHERE entity=?", (entity,))
                self._db.execute("COMMIT")
            except (sqlite3.Error, TypeError, ValueError) as exc:
                self._rollback()
                raise StoreError(f"cannot write attributes to {self.path!r}: {exc}") from exc
            super().set_many_attributes(batch)

    def clear(self) -> None:
        with self.lock:
            try:
                self._db.executescript("DELETE FROM relationships; DELETE FROM attributes;")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot clear {self.path!r}: {exc}") from exc
            super().clear()

    def close(self) -> None:
        self._db.close()

    def _rollback(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass
