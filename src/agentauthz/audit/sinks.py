"""Where audit records go: memory (tests), stdlib ``logging``, a hash-chained JSON-lines file.

Every sink implements :class:`~agentauthz.typing.AuditSink` — one method,
``emit(record)`` — and none may block or fail the decision path: the
:class:`~agentauthz.audit.Auditor` catches what a sink raises, and the
buffered file sink never waits on the disk (a full buffer counts the record
in ``dropped`` and logs at ERROR: never silently).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import deque
from typing import Any, Final

from agentauthz.audit.chain import Chain, resume
from agentauthz.audit.records import AuditRecord
from agentauthz.errors import ConfigurationError

__all__ = ["JsonlFileSink", "LoggingSink", "MemorySink"]

log = logging.getLogger("agentauthz.audit")

_REPORT_EVERY: Final = 60.0


class _Throttle:
    """Log a recurring problem at most once per interval, with the count since."""

    __slots__ = ("_interval", "_last", "_lock", "_suppressed")

    def __init__(self, interval: float = _REPORT_EVERY) -> None:
        self._interval = interval
        self._last = -interval
        self._suppressed = 0
        self._lock = threading.Lock()

    def __call__(self, level: int, message: str, *args: Any) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last < self._interval:
                self._suppressed += 1
                return
            suppressed, self._suppressed, self._last = self._suppressed, 0, now
        if suppressed:
            message += f" (and {suppressed} more like it since the last report)"
        log.log(level, message, *args)


class MemorySink:
    """Keeps the newest ``maxlen`` records in memory: for tests and small tools.

    A record pushed out by a newer one is counted in ``dropped`` and
    reported once a minute at WARNING.
    """

    def __init__(self, maxlen: int = 100_000) -> None:
        if not (isinstance(maxlen, int) and maxlen > 0):
            raise ConfigurationError("MemorySink maxlen must be a positive number of records")
        self.maxlen = maxlen
        self.dropped = 0
        self._records: deque[AuditRecord] = deque(maxlen=maxlen)
        self._report = _Throttle()

    def emit(self, record: AuditRecord) -> None:
        records = self._records
        if len(records) == self.maxlen:
            self.dropped += 1
            self._report(logging.WARNING, "agentauthz audit: MemorySink is full (%d records); "
                         "the oldest records are being dropped", self.maxlen)
        records.append(record)

    @property
    def records(self) -> list[AuditRecord]:
        """The records, oldest first (a copy)."""
        return list(self._records)

    def clear(self) -> None:
        self._records.clear()

    def __len__(self) -> int:
        return len(self._records)

    def __repr__(self) -> str:
        return f"<MemorySink {len(self._records)} records>"


class LoggingSink:
    """Logs each record to ``logger`` (default ``agentauthz.decisions``).

    The message is one readable line; the record's rendered, redacted form
    is in the log record's ``extra`` as ``agentauthz`` (``record.agentauthz``
    in a formatter or handler). Nothing is rendered when the logger would
    drop the message. Denials log at ``deny_level`` (default: ``level``).
    """

    def __init__(self, logger: str | logging.Logger = "agentauthz.decisions", *,
                 level: int = logging.INFO, deny_level: int | None = None) -> None:
        self.logger = logging.getLogger(logger) if isinstance(logger, str) else logger
        self.level = level
        self.deny_level = level if deny_level is None else deny_level

    def emit(self, record: AuditRecord) -> None:
        level = self.level if record.decision.allowed else self.deny_level
        logger = self.logger
        if not logger.isEnabledFor(level):
            return
        data = record.to_dict()
        reasons = data["reasons"]
        why = reasons[0]["message"] if reasons else ""
        what = f"tool {data['tool']}: " if record.kind == "tool" else ""
        logger.log(level, "%s%s %s %s %s (%s) [%s]", what, data["outcome"].upper(),
                   data["principal"], data["action"], data["resource"], why, data["id"],
                   extra={"agentauthz": data})

    def __repr__(self) -> str:
        return f"<LoggingSink {self.logger.name}>"


class JsonlFileSink:
    """Appends records to a JSON-lines file, hash-chained (see :mod:`agentauthz.audit.chain`).

    ``emit`` only queues the record; a background thread renders, chains and
    writes queued records in batches (about every ``interval`` seconds, or
    sooner when the queue fills up). At most ``buffer`` records wait; beyond
    that a record is counted in ``dropped`` and reported at ERROR (once a
    minute) — never silently. A record that cannot be rendered or written is
    counted in ``failed`` and reported the same way.

    Restart: the sink resumes the chain after the last record of the file
    (or of ``path.1`` when the file is new). Rotation: with ``rotate_bytes``,
    a file that reaches that size is renamed ``path.1`` (older ones shift to
    ``path.2``…, at most ``backups`` kept) and the new file chains on from
    it; a file renamed by another tool (logrotate) is noticed and reopened,
    the chain continuing. Verify across rotated files oldest first:
    ``agentauthz audit verify path.2 path.1 path``.

    One writer per file: two processes appending to the same file interleave
    two chains and break both. Give each process its own file.
    """

    def __init__(self, path: str | os.PathLike[str], *, rotate_bytes: int | None = None,
                 backups: int | None = None, buffer: int = 10_000, interval: float = 0.2,
                 fsync: bool = False) -> None:
        if rotate_bytes is not None and not (isinstance(rotate_bytes, int) and rotate_bytes > 0):
            raise ConfigurationError("rotate_bytes must be a positive number of bytes or None")
        if backups is not None and not (isinstance(backups, int) and backups > 0):
            raise ConfigurationError("backups must be a positive number of files or None")
        if not (isinstance(buffer, int) and buffer > 0):
            raise ConfigurationError("buffer must be a positive number of records")
        if not interval > 0:
            raise ConfigurationError("interval must be a positive number of seconds")
        self.path = os.fspath(path)
        self.rotate_bytes = rotate_bytes
        self.backups = backups
        self.buffer = buffer
        self.interval = interval
        self.fsync = fsync
        self.dropped = 0
        """Records refused because the buffer was full."""
        self.failed = 0
        """Records that could not be rendered or written."""
        self.written = 0
        self._queue: deque[AuditRecord | threading.Event] = deque()
        self._wake = threading.Event()
        self._closed = False
        self._report = _Throttle()
        self._lock = threading.Lock()  # the file, the chain: the writer's, and close()'s
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            raise ConfigurationError(f"audit file {self.path!r}: directory {directory!r} does "
                                     "not exist")
        self._chain = Chain()
        self._file = self._open()
        self._thread = threading.Thread(target=self._run, name=f"agentauthz-audit:{self.path}",
                                        daemon=True)
        self._thread.start()
        atexit.register(self.close)

    # ---------------------------------------------------------------- file
    def _resume(self) -> tuple[Chain, bool]:
        """The chain after the last record on disk, and whether the file ends a line."""
        state = resume(self.path)
        if state is None and not _nonempty(self.path):
            state = resume(f"{self.path}.1")  # a new file after a rotation: chain on from it
            if state is not None:
                state = (state[0], True)
        return state if state is not None else (Chain(), not _nonempty(self.path))

    def _open(self) -> Any:
        self._chain, ends_with_newline = self._resume()
        f = open(self.path, "ab")  # noqa: SIM115  (closed by close())
        if not ends_with_newline:
            log.error("agentauthz audit: %s ends in a partial line (a write was cut short); "
                      "appending after it, `audit verify` will report it", self.path)
            f.write(b"\n")
        stat = os.fstat(f.fileno())
        self._ino, self._size = stat.st_ino, stat.st_size
        return f

    def _rotate(self) -> None:
        self._file.close()
        path = self.path
        free = 1
        while os.path.exists(f"{path}.{free}"):
            free += 1
        for i in range(free, 1, -1):
            os.replace(f"{path}.{i - 1}", f"{path}.{i}")
        os.replace(path, f"{path}.1")
        if self.backups is not None:
            for i in range(self.backups + 1, free + 1):
                if os.path.exists(f"{path}.{i}"):
                    os.remove(f"{path}.{i}")
        self._file = open(path, "ab")  # noqa: SIM115
        self._ino, self._size = os.fstat(self._file.fileno()).st_ino, 0

    def _reopen_if_moved(self) -> None:
        try:
            moved = os.stat(self.path).st_ino != self._ino
        except FileNotFoundError:
            moved = True
        if moved:
            self._file.close()
            self._file = open(self.path, "ab")  # noqa: SIM115
            stat = os.fstat(self._file.fileno())
            self._ino, self._size = stat.st_ino, stat.st_size

    # ---------------------------------------------------------------- emit
    def emit(self, record: AuditRecord) -> None:
        queue = self._queue
        if len(queue) >= self.buffer or self._closed:
            self._refuse()
            return
        queue.append(record)
        if len(queue) > self.buffer >> 1:
            self._wake.set()

    def _refuse(self) -> None:
        self.dropped += 1
        why = "is closed" if self._closed else f"buffer is full ({self.buffer} records)"
        self._report(logging.ERROR, "agentauthz audit: %s %s: a record was dropped "
                     "(%d dropped so far)", self.path, why, self.dropped)

    # -------------------------------------------------------------- writer
    def _run(self) -> None:
        wake = self._wake
        while True:
            wake.wait(self.interval)
            wake.clear()
            try:
                self._drain()
            except Exception:  # never let the writer die: report, and go on with the next batch
                log.exception("agentauthz audit: the writer of %s failed", self.path)
            if self._closed and (not self._queue or self._file.closed):
                return

    def _drain(self) -> None:
        queue = self._queue
        if not queue:
            return
        with self._lock:
            if self._file.closed:
                return
            try:
                self._reopen_if_moved()
            except OSError as exc:
                self._report(logging.ERROR, "agentauthz audit: cannot reopen %s: %s",
                             self.path, exc)
            while queue:
                item = queue.popleft()
                if isinstance(item, threading.Event):
                    self._sync()
                    item.set()
                    continue
                self._write(item)
            self._sync()

    def _write(self, record: AuditRecord) -> None:
        chain = self._chain
        try:
            line = chain.seal(record.to_dict())
        except Exception as exc:  # a record that cannot be rendered: count it, keep going
            self.failed += 1
            self._report(logging.ERROR, "agentauthz audit: a record for %s could not be "
                         "rendered (%s: %s)", self.path, type(exc).__name__, exc)
            return
        try:
            data = (line + "\n").encode("ascii")
            self._file.write(data)
            self.written += 1
            self._size += len(data)
            if self.rotate_bytes is not None and self._size >= self.rotate_bytes:
                self._file.flush()
                self._rotate()
        except (OSError, ValueError) as exc:
            self.failed += 1
            self._report(logging.ERROR, "agentauthz audit: writing %s failed (%s)", self.path,
                         exc)
            self._recover()

    def _recover(self) -> None:
        """After a failed write: reopen the file, take the chain from what reached the disk."""
        try:
            self._file.close()  # flushes what it can
        except (OSError, ValueError):
            pass
        try:
            self._file = self._open()
        except OSError as exc:
            self._report(logging.ERROR, "agentauthz audit: cannot reopen %s (%s)", self.path,
                         exc)

    def _sync(self) -> None:
        try:
            self._file.flush()
            if self.fsync:
                os.fsync(self._file.fileno())
        except (OSError, ValueError) as exc:
            self._report(logging.ERROR, "agentauthz audit: flushing %s failed (%s)",
                         self.path, exc)

    # ------------------------------------------------------------ control
    def flush(self, timeout: float | None = 10.0) -> bool:
        """Write every record queued so far; whether that finished within ``timeout``."""
        if self._closed:
            return not self._queue
        done = threading.Event()
        self._queue.append(done)  # past the buffer bound: a flush marker is never refused
        self._wake.set()
        return done.wait(timeout)

    def close(self, timeout: float | None = 10.0) -> None:
        """Write what is queued, stop the writer, close the file. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        lost = 0
        with self._lock:
            alive = self._thread.is_alive()
            while self._queue:
                item = self._queue.popleft()
                if isinstance(item, threading.Event):
                    item.set()
                elif alive:  # the writer is stuck: what it has not written is lost, say so
                    lost += 1
                else:
                    self._write(item)
            self._sync()
            self._file.close()
        if lost:
            self.failed += lost
            log.error("agentauthz audit: %s closed with %d records not written", self.path,
                      lost)
        atexit.unregister(self.close)

    def __enter__(self) -> JsonlFileSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<JsonlFileSink {self.path} written={self.written} dropped={self.dropped} "
                f"failed={self.failed}>")


def _nonempty(path: str) -> bool:
    try:
        return os.path.getsize(path) > 0
    except OSError:
        return False
