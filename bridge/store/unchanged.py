"""Unchanged polls (304, or the same body) recorded in batches, not one fsync'd commit each.

A poll that finds nothing new changes only a source's timing: when it was last polled, last read
successfully, and polled next. With thousands of sources that is thousands of durable commits per
cycle saying nothing happened. So such a poll is kept here in memory and written with the others
in one transaction (one UPDATE, executemany) at most every FLUSH_SECONDS, at the end of a
`run --once` cycle, by the daemon's heartbeat, and when the daemon stops.

Why this is safe: a crash loses at most FLUSH_SECONDS of "last polled" times, never a story, a
delivery or a state change. Stories and deliveries are stored by Repository.store_poll at once;
a poll whose outcome differs from the source's stored one (a recovery after failures, the first
304 after a fresh read, a new URL) is written at once too (pipeline/polling.py decides). A flush
never overwrites newer state: it only touches a source whose stored outcome is still the one
buffered ("not_modified", or "ok" for the same body again) and whose stored poll time is not later than the buffered one, and any other write
of a source drops what is buffered for it (Repository._save_source).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine, bindparam, or_, update

from bridge.store import schema

S = schema.sources

FLUSH_SECONDS = 5.0
"""Unchanged polls wait in memory at most this long (while polls go on) before they are written."""

_FLUSH = (
    update(S)
    .where(S.c.name == bindparam("b_name"), S.c.last_outcome == bindparam("b_outcome"),
           or_(S.c.last_poll_at.is_(None), S.c.last_poll_at <= bindparam("b_now", type_=S.c.last_poll_at.type)))
    .values(last_poll_at=bindparam("b_now", type_=S.c.last_poll_at.type),
            last_success_at=bindparam("b_now", type_=S.c.last_success_at.type),
            next_poll_at=bindparam("b_next", type_=S.c.next_poll_at.type))
)


class UnchangedPolls:
    """The buffer. Thread-safe: polls record from many threads, the heartbeat and stop flush."""

    def __init__(self, engine: Engine, *, every: float = FLUSH_SECONDS,
                 monotonic: Callable[[], float] = time.monotonic):
        self.engine = engine
        self.every = every
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[datetime, datetime | None, str]] = {}
        self._since: float | None = None

    def record(self, source: str, now: datetime, next_poll_at: datetime | None, outcome: str) -> None:
        """`source` was polled at `now` and nothing changed: its stored outcome is still `outcome`
        ("not_modified" for a 304, "ok" for the same body again). Written with the batch."""
        with self._lock:
            self._pending[source] = (now, next_poll_at, outcome)
            if self._since is None:
                self._since = self._monotonic()
            due = self._monotonic() - self._since >= self.every
        if due:
            self.flush()

    def discard(self, source: str) -> None:
        """Another write of `source` is newer than what waits here for it."""
        with self._lock:
            self._pending.pop(source, None)

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def flush(self) -> int:
        """Write every buffered poll in one transaction; returns how many were written. On a
        database error they go back into the buffer (unless newer ones came) and the error is raised."""
        with self._lock:
            batch, self._pending, self._since = self._pending, {}, None
        if not batch:
            return 0
        rows = [{"b_name": name, "b_now": now, "b_next": next_at, "b_outcome": outcome}
                for name, (now, next_at, outcome) in batch.items()]
        try:
            with self.engine.begin() as conn:
                conn.execute(_FLUSH, rows)
        except Exception:
            with self._lock:
                for name, value in batch.items():
                    self._pending.setdefault(name, value)
                if self._since is None:
                    self._since = self._monotonic()
            raise
        return len(rows)
