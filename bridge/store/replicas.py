"""The processes running `bridge run` on this database: registered at start, renewed by a heartbeat,
removed at stop. A replica that died without leaving is told apart by its old heartbeat.

`bridge status` lists the live ones with the hash of their settings (so an operator sees a replica
left on old settings after an edit) and what each holds: the sources it polled last and the posts
it is sending. Several replicas share one PostgreSQL; with SQLite the run lock keeps it to one.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, func, insert, select, update

from bridge.store import schema
from bridge.store.db import READ_ONLY
from bridge.store.schema import indexed

REPLICA_BEAT_INTERVAL = timedelta(seconds=30)
"""How often a running daemon renews its row."""
REPLICA_GONE_AFTER = timedelta(minutes=2)
"""A row not renewed for this long belongs to a process that is gone (killed, host down)."""

R = schema.replicas


def register(engine: Engine, replica_id: str, *, host: str, pid: int, version: str, settings: str,
             now: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(delete(R).where(R.c.id == replica_id))
        conn.execute(insert(R).values(id=replica_id, host=host, pid=pid, version=version, settings=settings,
                                      started_at=now, heartbeat_at=now))


def beat(engine: Engine, replica_id: str, now: datetime, settings: str | None = None) -> None:
    """Renew the heartbeat (and, after a reload, the settings' hash)."""
    values = {"heartbeat_at": now, **({"settings": settings} if settings else {})}
    with engine.begin() as conn:
        conn.execute(update(R).where(R.c.id == replica_id).values(**values))


def leave(engine: Engine, replica_id: str) -> None:
    with engine.begin() as conn:
        conn.execute(delete(R).where(R.c.id == replica_id))


def live_replicas(engine: Engine, now: datetime) -> list[dict]:
    """The replicas whose heartbeat is recent, oldest first; the tables's few other rows are ignored."""
    with engine.connect().execution_options(**READ_ONLY) as conn:
        rows = conn.execute(select(R).where(R.c.heartbeat_at >= now - REPLICA_GONE_AFTER)
                            .order_by(R.c.started_at)).mappings()
        return [dict(row) for row in rows]


def holdings(engine: Engine) -> dict[str, dict[str, int]]:
    """What each replica holds now, by replica id: `sources` it took the last poll of (a lease on
    the source's row: shared polls) and `posting`, deliveries it has claimed and is sending. On
    SQLite's single daemon neither names anybody (its claims are under the key None)."""
    S, D = schema.sources, schema.deliveries
    held: dict[str, dict[str, int]] = {}
    with engine.connect().execution_options(**READ_ONLY) as conn:
        for replica, count in conn.execute(select(S.c.polled_by, func.count()).where(S.c.polled_by.is_not(None))
                                           .group_by(S.c.polled_by)):
            held.setdefault(replica, {"sources": 0, "posting": 0})["sources"] = count
        # Through the state index: the posts in flight are a handful, the table is years of history.
        sending = indexed(select(D.c.claimed_by, func.count()).where(D.c.state == "sending"),
                          D, schema.IX_DELIVERIES_STATE_TARGET)
        for replica, count in conn.execute(sending.group_by(D.c.claimed_by)):
            held.setdefault(replica, {"sources": 0, "posting": 0})["posting"] = count
    return held


def forget_gone(engine: Engine, now: datetime, keep: timedelta = timedelta(days=1)) -> int:
    """Remove rows of replicas gone for more than `keep` (kept a day to show a recent crash)."""
    with engine.begin() as conn:
        return conn.execute(delete(R).where(R.c.heartbeat_at < now - keep)).rowcount
