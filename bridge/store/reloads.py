"""The daemon's answer to a reload, kept in the meta table so `bridge reload` (another process) can read it.

One row, written only by the daemon (its main loop), after every reload, applied or refused: a counter,
the daemon's PID, when the reload began (wall-clock seconds), and the outcome with the daemon's own
reason. A database row rather than a file, so it works the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json

from sqlalchemy import Engine, delete, insert, select

from bridge.store import schema
from bridge.store.db import READ_ONLY

LAST_RELOAD = "last_reload"
"""The meta row's name."""


def record_reload(engine: Engine, *, pid: int, started: float, applied: bool, reason: str) -> int:
    """Store this reload's outcome; returns its number (1 for the database's first reload)."""
    M = schema.meta
    with engine.begin() as conn:
        raw = conn.execute(select(M.c.value).where(M.c.name == LAST_RELOAD)).scalar()
        count = (json.loads(raw).get("count", 0) if raw else 0) + 1
        conn.execute(delete(M).where(M.c.name == LAST_RELOAD))
        conn.execute(insert(M).values(name=LAST_RELOAD, value=json.dumps(
            {"count": count, "pid": pid, "started": started, "applied": applied, "reason": reason})))
    return count


def last_reload(engine: Engine) -> dict | None:
    """The last reload's outcome as record_reload stored it, or None before the first."""
    M = schema.meta
    with engine.connect().execution_options(**READ_ONLY) as conn:
        raw = conn.execute(select(M.c.value).where(M.c.name == LAST_RELOAD)).scalar()
    return json.loads(raw) if raw else None
