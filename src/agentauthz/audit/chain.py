"""The hash chain of the JSON-lines audit file, and its verification.

Each line is one record with three chain fields: ``seq`` (1, 2, 3… across
rotated files), ``prev`` (the previous record's hash; 64 zeros for the
first) and ``hash``::

    hash = sha256(prev + canonical(record without "hash"))

where the canonical form is JSON with sorted keys, no white space and
ASCII only (other characters as ``\\u`` escapes). A line is the canonical form
with ``hash`` appended. Editing a record breaks its hash; dropping, reordering or inserting
one breaks the link (``prev``) and the numbering (``seq``) of the next.
:func:`verify` walks the files in order and names the first bad line and
what happened there.

What a chain does not prove on its own: that nobody removed records from the
*end* (the tail of a file, or the newest file), nor that someone who can
rewrite the whole file did not recompute every hash after an edit. Keep the
last hash :func:`verify` reports (``head``) somewhere the writer cannot
change — a ticket, another log store — and compare.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["GENESIS", "Chain", "VerifyResult", "canonical", "resume", "verify"]

GENESIS: Final = "0" * 64
"""The ``prev`` of the first record of a chain."""

_TAIL: Final = 1 << 20


def canonical(record: dict[str, Any]) -> str:
    """The form a record is hashed in: sorted keys, no white space, ASCII (``\\u`` escapes)."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


def _digest(prev: str, body: str) -> str:
    return hashlib.sha256((prev + body).encode("ascii")).hexdigest()


class Chain:
    """The writer's side: the last ``seq`` and hash, and how to seal the next record."""

    __slots__ = ("head", "seq")

    def __init__(self, seq: int = 0, head: str = GENESIS) -> None:
        self.seq = seq
        self.head = head

    def seal(self, record: dict[str, Any]) -> str:
        """Number and link ``record`` (adds ``seq`` and ``prev``); return its line, no newline."""
        record["seq"] = self.seq + 1
        record["prev"] = self.head
        body = canonical(record)
        digest = _digest(self.head, body)
        self.seq += 1
        self.head = digest
        return f'{body[:-1]},"hash":"{digest}"}}'


def resume(path: str | os.PathLike[str]) -> tuple[Chain, bool] | None:
    """The chain state after the last record of ``path`` (``None``: no record there).

    The flag says whether the file ends in a newline; when it does not (a
    write cut short), the writer must start a new line before appending.
    """
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            if size == 0:
                return None
            f.seek(max(0, size - _TAIL))
            tail = f.read()
    except FileNotFoundError:
        return None
    ends_with_newline = tail.endswith(b"\n")
    for raw in reversed(tail.splitlines()):
        record = _parse(raw)
        if isinstance(record, dict):
            return Chain(record["seq"], record["hash"]), ends_with_newline
    return None


def _parse(raw: bytes) -> dict[str, Any] | str:
    """A record with well-formed chain fields, or why the line is not one."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "garbled: not UTF-8 text"
    stripped = text.strip()
    if not stripped:
        return "garbled: a blank line"
    try:
        record = json.loads(stripped)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(stripped) - 1 or "Unterminated" in exc.msg:
            return "truncated: the line ends before the record does"
        return f"garbled: not JSON ({exc.msg} at column {exc.pos + 1})"
    if not isinstance(record, dict):
        return "garbled: not a JSON object"
    seq, prev, digest = record.get("seq"), record.get("prev"), record.get("hash")
    if type(seq) is not int or not isinstance(prev, str) or not isinstance(digest, str) \
            or len(digest) != 64:
        return "garbled: no chain fields (seq, prev, hash)"
    return record


def _consistent(record: dict[str, Any]) -> bool:
    body = dict(record)
    digest = body.pop("hash")
    return bool(_digest(record["prev"], canonical(body)) == digest)


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """What :func:`verify` found. True when the chain is intact.

    ``problem`` is ``None`` or one of ``edited``, ``dropped``, ``reordered``,
    ``inserted``, ``truncated``, ``garbled``, ``unreadable``; ``file`` and
    ``line`` (1-based) name the first bad line. ``head`` is the hash of the
    last record that verified: anchor it elsewhere to detect a cut tail.
    """

    ok: bool
    records: int
    head: str | None
    problem: str | None = None
    file: str | None = None
    line: int | None = None
    message: str = ""

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        if self.ok:
            return f"ok: {self.records} records, chain intact; head {self.head}"
        where = f"{self.file}:{self.line}: " if self.line is not None else \
            (f"{self.file}: " if self.file else "")
        return f"{where}{self.problem}: {self.message}"


_Line = tuple[str, int, bytes]


def _lines(paths: Sequence[str]) -> Iterator[_Line]:
    for path in paths:
        with open(path, "rb") as f:
            for number, raw in enumerate(f, 1):
                yield path, number, raw


class _Reader:
    """The lines of every file in order, with one line of look-ahead."""

    def __init__(self, paths: Sequence[str]) -> None:
        self._it = _lines(paths)
        self._next: _Line | None = None
        self.index = -1

    def __iter__(self) -> _Reader:
        return self

    def __next__(self) -> _Line:
        if self._next is not None:
            line, self._next = self._next, None
        else:
            line = next(self._it)
        self.index += 1
        return line

    def peek(self) -> _Line | None:
        if self._next is None:
            self._next = next(self._it, None)
        return self._next


def verify(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *,
           partial: bool = False) -> VerifyResult:
    """Verify the chain across ``paths``, oldest file first (``log.2``, ``log.1``, ``log``).

    With ``partial``, the first record may continue a chain whose start is
    not among the files (older files deleted by retention); otherwise a
    chain must start at record 1.
    """
    names = [os.fspath(paths)] if isinstance(paths, str | os.PathLike) else \
        [os.fspath(p) for p in paths]
    for name in names:
        try:
            with open(name, "rb"):
                pass
        except OSError as exc:
            return VerifyResult(False, 0, None, "unreadable", name, None,
                                f"cannot read the file ({exc.strerror or exc})")
    try:
        return _verify(names, partial)
    except OSError as exc:
        return VerifyResult(False, 0, None, "unreadable", None, None, str(exc))


def _verify(names: list[str], partial: bool) -> VerifyResult:
    head, seq = GENESIS, 0
    before_head = GENESIS  # the head before the last accepted record
    last: tuple[str, int] | None = None
    count = 0
    reader = _Reader(names)

    def bad(problem: str, where: tuple[str, int] | None, message: str) -> VerifyResult:
        file, line = where if where is not None else (None, None)
        return VerifyResult(False, count, head if count else None, problem, file, line, message)

    for path, number, raw in reader:
        here = (path, number)
        record = _parse(raw)
        if isinstance(record, str):
            problem, _, why = record.partition(": ")
            return bad(problem, here, why)
        rseq, rprev, rhash = record["seq"], record["prev"], record["hash"]
        if not _consistent(record):
            if count and type(rseq) is int and rseq <= seq:
                return bad("inserted", here, f"this line claims to be record {rseq}, which "
                           "is already in the chain, and does not match its hash")
            following = reader.peek()
            nxt = _parse(following[2]) if following is not None else None
            if isinstance(nxt, dict) and nxt["prev"] != rhash and nxt["prev"] == head \
                    and count:
                return bad("inserted", here, "this line is not part of the chain: its hash "
                           "does not match its content, and the next record chains from the "
                           "one before it")
            return bad("edited", here, f"record {rseq} does not match its hash: its content "
                       "was changed after it was written")
        if count == 0 and (rprev != GENESIS or rseq != 1):
            if not partial:
                gap = "record 1 is" if rseq == 2 else f"records 1 to {rseq - 1} are"
                return bad("dropped", here, f"the chain starts at record {rseq}: {gap} "
                           "missing (if they were rotated into other files, pass those "
                           "first; or verify with --partial)")
            seq, head = rseq - 1, rprev
        if rprev != head:
            if rseq <= seq:
                if rprev == before_head and last is not None:
                    return bad("inserted", last, f"this record is not part of the chain: the "
                               f"next one (record {rseq}, {path}:{number}) chains from the "
                               "record before it")
                copy = _find(names, "hash", rhash, stop=reader.index)
                if copy is not None:
                    return bad("inserted", here, f"a copy of record {rseq} "
                               f"({copy[0]}:{copy[1]}), replayed out of place")
                return bad("reordered", here, f"record {rseq} comes after record {seq}: "
                           "records are out of order")
            if rseq == seq + 1:
                return bad("edited", last, f"record {seq} was changed and its hash "
                           f"recomputed: the next record ({path}:{number}) still chains "
                           "from the original")
            missing = seq + 1
            later = _find(names, "seq", missing, start=reader.index + 1)
            if later is not None:
                return bad("reordered", here, f"record {rseq} comes right after record {seq}; "
                           f"record {missing} is later, at {later[0]}:{later[1]}")
            gap = f"record {missing}" if rseq == missing + 1 else \
                f"records {missing} to {rseq - 1}"
            return bad("dropped", here, f"{gap} missing before this line")
        if rseq != seq + 1:
            return bad("edited", here, f"record numbered {rseq} follows record {seq}")
        before_head, head, seq, last = head, rhash, rseq, here
        count += 1
    return VerifyResult(True, count, head if count else None)


def _find(names: list[str], field: str, value: object, *, start: int = 0,
          stop: int | None = None) -> tuple[str, int] | None:
    """The first record (by position, in ``[start, stop)``) whose ``field`` is ``value``."""
    for index, (path, number, raw) in enumerate(_lines(names)):
        if stop is not None and index >= stop:
            return None
        if index < start:
            continue
        record = _parse(raw)
        if isinstance(record, dict) and record[field] == value:
            return path, number
    return None
