"""Keeping the store fast and small for years: statistics, retention, and giving space back.

- maintain(): SQLite's planner statistics current (PRAGMA optimize; a first, bounded ANALYZE where
  there are none), and an old file switched once to incremental auto-vacuum. The hot queries name
  their index anyway (schema.indexed); statistics help every other query. PostgreSQL needs nothing:
  autovacuum analyses as tables change (and migrate() analyses after an upgrade).
- prune(): stories first seen more than `keep` ago lose what only a person reading them needs (their
  text, summary, photo; their deliveries' frozen posts and errors), in short batches so no write
  waits long behind it (the heartbeat, a mark_sent after a post). Every row stays, with its key,
  its link identity and its deliveries' states: a story pruned years ago is still known by its key
  in its feed and by its link from any other source, so it is never posted again. A delivery not
  settled yet (pending, sending, in doubt, held) is never pruned, nor its story. A batch is bounded
  by rows and by time (it shrinks when batches run long: a slow disk, a busy machine), and the
  write lock is left free for PRUNE_REST_SECONDS after each: SQLite's waiting writers retry on a
  timer (up to 100 ms apart), so a pruner that took the lock again at once would starve them for
  seconds (measured: 7.5 s at 1 M stories, bench/bench_store.py).
- reclaim(): SQLite gives the pages pruning freed back to the disk, a few at a time.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from contextlib import contextmanager
from datetime import datetime, timedelta

import structlog
from sqlalchemy import Connection, Engine, Table, and_, insert, select, update

from bridge.model import DeliveryState
from bridge.store import schema
from bridge.store.outbox import PRUNED, WAITING

log = structlog.get_logger("bridge")

I, D, M = schema.items, schema.deliveries, schema.meta
ANALYSIS_LIMIT = 1000
"""Rows ANALYZE samples per index (SQLite's analysis_limit): statistics good enough in milliseconds,
however large the file."""
PRUNE_BATCH = 200
"""The most stories pruned per transaction (with their deliveries): tens of milliseconds of write
lock each on an idle machine."""
PRUNE_BATCH_SECONDS = 0.04
"""What a batch aims to take: the next batch is sized from the last one's pace (PRUNE_BATCH at
most, PRUNE_BATCH_MIN at least), so no write waits much longer behind one (goal: under 100 ms)."""
PRUNE_BATCH_MIN = 10
PRUNE_REST_SECONDS = 0.12
"""The write lock left free after each batch: longer than SQLite's longest busy-handler sleep
(100 ms), so a writer that waited through the batch gets its turn before the next."""
RECLAIM_PAGES = 256
"""Pages (4 KiB each) given back to the disk per transaction."""
PRUNED_THROUGH = "pruned_through_item"
"""meta row: the highest item id pruned so far; the next prune starts after it."""


def maintain(engine: Engine) -> None:
    """At start-up and periodically (the daemon's maintenance job): statistics current, and an old
    SQLite file switched to incremental auto-vacuum (one VACUUM: it rewrites the file, so it waits
    for a start-up, where nothing else writes)."""
    if engine.dialect.name != "sqlite":
        return
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        raw.execute(f"PRAGMA analysis_limit={ANALYSIS_LIMIT}")
        analysed = raw.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").fetchone()
        # optimize analyses only tables whose statistics are missing or stale (0x10002: all of them
        # looked at, SQLite 3.46+; older ones ignore the extra bit, hence the first ANALYZE here).
        raw.execute("PRAGMA optimize=0x10002" if analysed else "ANALYZE")
        if raw.execute("PRAGMA auto_vacuum").fetchone()[0] != 2 and raw.execute("PRAGMA page_count").fetchone()[0]:
            log.info("database: switching to incremental auto-vacuum (one VACUUM, once)", database=str(engine.url))
            raw.execute("PRAGMA auto_vacuum=INCREMENTAL")
            try:
                raw.execute("VACUUM")
            except sqlite3.OperationalError as exc:  # another process reading or writing: next start
                log.warning("database: VACUUM put off to the next start; old stories are still pruned, "
                            "their space reused but not given back", error=str(exc))


def prune(engine: Engine, keep: timedelta | None, now: datetime, *,
          stopping: Callable[[], bool] = lambda: False, batch: int = PRUNE_BATCH,
          rest: Callable[[float], object] = time.sleep, pace: float = PRUNE_BATCH_SECONDS,
          monotonic: Callable[[], float] = time.monotonic) -> int:
    """Prune stories first seen before `now - keep` (None: keep everything); how many were pruned.
    Stops early, between batches, once `stopping()` says so; the next run goes on from there.
    Batches hold at most `batch` stories and aim at `pace` seconds each; `rest(seconds)` is called
    between them (the daemon's waits on its stop flag, so a stop does not wait for it)."""
    if keep is None:
        return 0
    cutoff = now - keep
    pruned = 0
    size = batch
    first = True
    while not stopping():
        if not first:
            rest(PRUNE_REST_SECONDS)
            if stopping():
                break
        first = False
        started = monotonic()
        with _writing(engine) as conn:
            mark = int(conn.execute(select(M.c.value).where(M.c.name == PRUNED_THROUGH)).scalar() or 0)
            # Item ids grow with first_seen_at, so the oldest unpruned stories come next by id:
            # stop at the first one still young (never scanning the young ones' history).
            rows = conn.execute(select(I.c.id, I.c.first_seen_at).where(I.c.id > mark)
                                .order_by(I.c.id).limit(size)).all()
            old = []
            for row in rows:
                if row.first_seen_at >= cutoff:
                    break
                old.append(row.id)
            if not old:
                break
            waiting = set(conn.execute(select(D.c.item_id).where(D.c.item_id.in_(old), D.c.state.in_(WAITING)))
                          .scalars())
            _strip(conn, I, I.c.id.in_([i for i in old if i not in waiting]), _item_blanks)
            _strip(conn, D, and_(D.c.item_id.in_(old), D.c.state.not_in(WAITING)), _delivery_blanks)
            _save_mark(conn, mark, old[-1])
            pruned += len(old)
        if len(old) < size:  # reached the young stories, or the end
            break
        size = next_batch_size(size, monotonic() - started, pace, batch)
    if pruned:
        log.info("pruned old stories: their keys and links are kept, so none is posted again",
                 stories=pruned, older_than=cutoff.isoformat())
    return pruned


def next_batch_size(size: int, took: float, pace: float, most: int) -> int:
    """The next batch's stories: this one's, scaled to take `pace` seconds at this one's pace,
    within [PRUNE_BATCH_MIN, most]; it grows back at most twofold per batch."""
    scaled = size * pace / took if took > 0 else most
    return max(min(PRUNE_BATCH_MIN, most), min(most, 2 * size, int(scaled)))


def _item_blanks(row) -> dict:
    return {"title": "", "summary": "", "link": None, "image_url": None, "categories": ""}


def _delivery_blanks(row) -> dict:
    # A failed one says why it can no longer be retried (`bridge retry`); others keep no note.
    note = PRUNED if row["state"] == DeliveryState.FAILED.value else None
    return {"post_text": None, "post_image_url": None, "post_alt_text": None, "last_error": note}


@contextmanager
def _writing(engine: Engine):
    """A write transaction; on SQLite with foreign keys off (set before BEGIN: within one it is
    ignored), so _strip may delete an item and insert it again without cascading to its deliveries."""
    if engine.dialect.name != "sqlite":
        with engine.begin() as conn:
            yield conn
        return
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        raw.execute("PRAGMA foreign_keys=OFF")
        try:
            with conn.begin():
                yield conn
        finally:
            raw.execute("PRAGMA foreign_keys=ON")


def _strip(conn: Connection, table: Table, where, blanks: Callable[[dict], dict]) -> None:
    """Blank the bulky columns of `table`'s rows matching `where`. On SQLite each row is deleted and
    written again, same id, without them: an UPDATE that shrinks rows leaves every page as large
    as it was, while a delete empties pages, which SQLite then frees (reclaim gives them back)."""
    if conn.dialect.name != "sqlite":  # MVCC: autovacuum frees the old row versions for new rows
        groups: dict[tuple, list[int]] = {}
        for row in conn.execute(select(table.c.id, *_state(table)).where(where)).mappings():
            groups.setdefault(tuple(blanks(row).items()), []).append(row["id"])
        for values, ids in groups.items():
            conn.execute(update(table).where(table.c.id.in_(ids)).values(**dict(values)))
        return
    # The driver's own cursor, in this transaction: the rows go back exactly as stored, every
    # column the table has (whatever later versions add), with no per-value conversion.
    selected = conn.execute(select(table.c.id).where(where)).scalars().all()
    if not selected:
        return
    cursor = conn.connection.driver_connection.cursor()
    marks = ", ".join("?" * len(selected))
    cursor.execute(f"SELECT * FROM {table.name} WHERE id IN ({marks})", selected)
    names = [column[0] for column in cursor.description]
    rows = [dict(zip(names, values)) for values in cursor.fetchall()]
    cursor.execute(f"DELETE FROM {table.name} WHERE id IN ({marks})", selected)
    cursor.executemany(f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                       [tuple({**row, **blanks(row)}[name] for name in names) for row in rows])
    cursor.close()


def _state(table: Table) -> list:
    return [table.c.state] if "state" in table.c else []


def _save_mark(conn, before: int, mark: int) -> None:
    if before or conn.execute(select(M.c.name).where(M.c.name == PRUNED_THROUGH)).first():
        conn.execute(update(M).where(M.c.name == PRUNED_THROUGH).values(value=str(mark)))
    else:
        conn.execute(insert(M).values(name=PRUNED_THROUGH, value=str(mark)))


def reclaim(engine: Engine, *, stopping: Callable[[], bool] = lambda: False) -> int:
    """SQLite: give free pages back to the disk, RECLAIM_PAGES per transaction; how many were given."""
    if engine.dialect.name != "sqlite":
        return 0
    given = 0
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        if raw.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
            return 0
        while not stopping():
            free = raw.execute("PRAGMA freelist_count").fetchone()[0]
            if not free:
                break
            # executescript steps the pragma to its end (execute() would free one page), in a
            # transaction of its own: the write lock is held for these pages only.
            raw.executescript(f"PRAGMA incremental_vacuum({RECLAIM_PAGES});")
            after = raw.execute("PRAGMA freelist_count").fetchone()[0]
            if after >= free:
                break
            given += free - after
    return given
