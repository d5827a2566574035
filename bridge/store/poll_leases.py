"""Shared polls (issue 13, item 4): replicas on one PostgreSQL take each source's poll in turn.

A replica about to poll a source takes it with one conditional UPDATE of the source's row: only a
source whose next_poll_at has come (by the caller's `due_by`) is taken, and taking it moves
next_poll_at one interval on and records the replica in polled_by, in the same statement. Two
replicas asking at the same moment cannot both get it: the second UPDATE waits for the first's row
lock, then re-checks next_poll_at (READ COMMITTED re-evaluates the WHERE on the updated row) and
finds it no longer due. So a source is polled once per interval, by whichever replica asks first
once it is due; the poll's own writes (store_poll, record_not_modified, a failure's backoff) then
set next_poll_at as they always did.

The pipeline (pipeline/shared_polls.py) decides who should ask when; SQLite never takes leases (one
daemon per database, the run lock), so its polls cost no extra write.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, or_, select, update

from bridge.store import schema
from bridge.store.db import READ_ONLY

S = schema.sources


@dataclass(frozen=True)
class Turn:
    taken: bool
    """True: this replica polls the source now (its lease is taken)."""
    next_poll_at: datetime | None
    """When the source is due next, as stored (after the take when taken)."""
    polled_by: str | None = None
    """Who took its latest poll."""
    known: bool = False
    """The source has its row (it was polled, or asked for, before)."""
    url: str | None = None
    """The URL the store last read it at (a configured URL unlike it: the source moved)."""


def take(engine: Engine, name: str, url: str, replica: str, *, now: datetime, due_by: datetime,
         next_poll_at: datetime) -> Turn:
    """Take the source's poll if it is due by `due_by` (or never scheduled): next_poll_at becomes
    `next_poll_at`, polled_by `replica`, atomically. A source never polled gets its row first (with
    its first-run policy still to apply), so two replicas' first polls of it are told apart too."""
    # Most asks find the source not due (another replica's turn, or not yet): one read says so,
    # without a write transaction. The UPDATE below checks again, so the read decides nothing alone.
    seen = state(engine, name)
    if seen.next_poll_at is not None and seen.next_poll_at > due_by:
        return seen
    taking = (update(S).where(S.c.name == name, or_(S.c.next_poll_at.is_(None), S.c.next_poll_at <= due_by))
              .values(next_poll_at=next_poll_at, polled_by=replica))
    with engine.begin() as conn:
        if not seen.known:
            # Another replica may insert it this very moment: the second insert does nothing.
            conn.execute(_insert(conn).values(name=name, url=url, initialised=False, consecutive_failures=0)
                         .on_conflict_do_nothing(index_elements=[S.c.name]))
        if conn.execute(taking).rowcount == 1:
            return Turn(True, next_poll_at, replica, True, seen.url)
    return state(engine, name)


def _insert(conn):
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    return dialect_insert(S)


def state(engine: Engine, name: str) -> Turn:
    """The source's schedule as stored (not taken)."""
    with engine.connect().execution_options(**READ_ONLY) as conn:
        row = conn.execute(select(S.c.next_poll_at, S.c.polled_by, S.c.url).where(S.c.name == name)).first()
    if row is None:
        return Turn(False, None)
    return Turn(False, row.next_poll_at, row.polled_by, True, row.url)
