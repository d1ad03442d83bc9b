"""The change feed: one Redis stream per namespace, followed by every worker.

Every change to shared state — relationships, attributes, revocations,
break-glass grants, policy reloads, invalidations — is written to Redis
together with one stream entry, by one Lua script, so the change and its
entry exist together or not at all. The script also numbers the entry from a
counter (``seq``): entries are consecutive, so a reader knows when it missed
one (the stream is capped, and a reader that fell behind by more than the
cap finds a gap).

Each worker runs one subscriber thread. It loads a snapshot, then reads the
stream from the position the snapshot was taken at (``XREAD BLOCK``) and
applies each entry to the process's copies. The worker is **ready** only
while

- the snapshot is loaded and every entry since applied in order, and
- the subscriber heard from Redis within ``max_silence`` seconds (an empty
  ``XREAD`` that timed out counts: it says nothing happened).

A dropped connection, a gap, an entry that fails to apply, or silence makes
it not ready at once; decisions that need shared state then deny with
reason ``state_store_unavailable``. The thread reconnects with backoff,
loads a fresh snapshot (replaying the entries written meanwhile: applying an
entry twice changes nothing), and the worker is ready again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Final, Protocol

import redis
from redis.exceptions import RedisError

__all__ = ["Feed", "FeedHandler"]

log = logging.getLogger("agentauthz.scale")

_monotonic = time.monotonic
_BATCH: Final = 512
_BACKOFF_FIRST: Final = 0.05
_BACKOFF_MAX: Final = 1.0


class FeedHandler(Protocol):
    """What the feed keeps up to date."""

    def snapshot(self, client: redis.Redis, first: bool) -> None:
        """Load the whole shared state from Redis into this process's copies."""
        ...

    def apply(self, kind: str, data: str) -> None:
        """Apply one entry (it may already be reflected: applying twice must change nothing)."""
        ...


class _Gap(Exception):
    pass


class Feed:
    """Follows one namespace's stream in a daemon thread (see the module docstring)."""

    def __init__(self, client: redis.Redis, seq_key: str, stream_key: str,
                 handler: FeedHandler, *, block: float, max_silence: float) -> None:
        self._client = client
        self._seq_key = seq_key
        self._stream_key = stream_key
        self._handler = handler
        self._block_ms = max(1, int(block * 1000))
        self._max_silence = max_silence
        self.ok_until = 0.0
        """The monotonic time until which this process's copies count as current."""
        self._synced = False
        self._losses = 0  # bumped by lost(): a read that began before it vouches for nothing
        self._last_id = "0-0"
        self._seq = 0
        self._applied = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._first = True
        self.why = "not yet synchronised"
        """Why the feed is not ready (last reason)."""
        self.resyncs = 0
        """How many times a snapshot was loaded (1 after a clean start)."""
        self.on_applied: Callable[[str, str], None] | None = None
        """Called after each entry is applied, with its kind and data (for measurements)."""

    # ------------------------------------------------------------- readiness
    def ready(self) -> bool:
        return _monotonic() < self.ok_until

    def lost(self, why: str) -> None:
        """Stop vouching for this process's copies until the next snapshot."""
        if self._synced:
            log.warning("agentauthz: shared state feed lost (%s); denying decisions that need "
                        "it until resynchronised", why)
        self._synced = False
        self._losses += 1
        self.ok_until = 0.0
        self.why = why

    # ------------------------------------------------------------- lifecycle
    def sync(self) -> None:
        """Load the first snapshot in the caller's thread (raises what Redis raises)."""
        self._resync()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="agentauthz-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._synced = False
        self.ok_until = 0.0
        self.why = "closed"
        try:
            self._client.connection_pool.disconnect()  # wakes a blocked XREAD
        except (RedisError, OSError):
            pass
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self._block_ms / 1000 + 2.0)

    # ---------------------------------------------------------- own writes
    def wait(self, seq: int, timeout: float) -> bool:
        """Wait until the entry numbered ``seq`` has been applied here."""
        with self._cond:
            return self._cond.wait_for(lambda: self._applied >= seq, timeout)

    # ----------------------------------------------------------------- loop
    def _run(self) -> None:
        pause = _BACKOFF_FIRST
        while not self._stop.is_set():
            try:
                if not self._synced:
                    self._resync()
                    pause = _BACKOFF_FIRST
                self._read(self._block_ms)
            except _Gap as exc:
                self.lost(str(exc))  # resynchronise at once
            except (RedisError, OSError) as exc:
                if self._stop.is_set():
                    break
                self.lost(f"{type(exc).__name__}: {exc}")
                self._stop.wait(pause)
                pause = min(pause * 2, _BACKOFF_MAX)
            except Exception as exc:  # a bad entry or a bug: never vouch for what we could not apply
                if self._stop.is_set():
                    break  # closed under a blocked read
                log.exception("agentauthz: applying the shared state feed failed")
                self.lost(f"applying the feed failed ({type(exc).__name__}: {exc})")
                self._stop.wait(pause)
                pause = min(pause * 2, _BACKOFF_MAX)

    def _resync(self) -> None:
        self.ok_until = 0.0
        losses = self._losses
        pipe = self._client.pipeline(transaction=True)
        pipe.xrevrange(self._stream_key, "+", "-", count=1)
        pipe.get(self._seq_key)
        last, counter = pipe.execute()
        if last:
            last_id, fields = last[0]
            seq = int(fields["s"])
        else:
            last_id, seq = "0-0", int(counter or 0)
        self._handler.snapshot(self._client, self._first)
        self._first = False
        self._last_id, self._seq = last_id, seq
        while self._read(None):  # catch up with what was written while loading
            pass
        if losses != self._losses:
            raise _Gap("lost while loading the snapshot")
        self._synced = True
        self.resyncs += 1
        with self._cond:
            self._applied = self._seq
            self._cond.notify_all()
        if losses == self._losses:
            self.ok_until = _monotonic() + self._max_silence
        if self.resyncs > 1:
            log.warning("agentauthz: shared state feed resynchronised (snapshot %d)",
                        self.resyncs)

    def _read(self, block: int | None) -> int:
        """Apply the next entries; how many there were."""
        losses = self._losses
        response: Any = self._client.xread({self._stream_key: self._last_id}, count=_BATCH,
                                           block=block)
        heard = _monotonic()
        applied = 0
        handler = self._handler
        hook = self.on_applied
        for _stream, entries in response or ():
            for entry_id, fields in entries:
                seq = int(fields["s"])
                if seq != self._seq + 1:
                    if seq <= self._seq:
                        self._last_id = entry_id
                        continue  # numbered before the snapshot position: already in it
                    raise _Gap(f"missed feed entries {self._seq + 1} to {seq - 1}")
                kind, data = fields["k"], fields["d"]
                handler.apply(kind, data)
                self._last_id, self._seq = entry_id, seq
                applied += 1
                if hook is not None:
                    hook(kind, data)
        if applied:
            with self._cond:
                self._applied = self._seq
                self._cond.notify_all()
        if self._synced and losses == self._losses:
            self.ok_until = heard + self._max_silence
        return applied
