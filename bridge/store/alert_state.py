"""What the operator has been told: the problems alerted and not yet cleared, and the last digest.

Kept in the meta table (one JSON row each), so a restart neither repeats an alert nor forgets to
say that a problem cleared. Written only by the process that sends alerts (the daemon, `run --once`).
"""

from __future__ import annotations

import json

from sqlalchemy import Engine, delete, insert, select

from bridge.store import schema
from bridge.store.db import READ_ONLY

ACTIVE = "alerts_active"
LAST_DIGEST = "alerts_last_digest"


def _read(engine: Engine, name: str):
    with engine.connect().execution_options(**READ_ONLY) as conn:
        raw = conn.execute(select(schema.meta.c.value).where(schema.meta.c.name == name)).scalar()
    return json.loads(raw) if raw else None


def _write(engine: Engine, name: str, value) -> None:
    M = schema.meta
    with engine.begin() as conn:
        conn.execute(delete(M).where(M.c.name == name))
        conn.execute(insert(M).values(name=name, value=json.dumps(value, sort_keys=True)))


def active_alerts(engine: Engine) -> dict[str, dict]:
    """Problem key -> {"text": what was said, "since": ISO time it was first seen}."""
    return _read(engine, ACTIVE) or {}


def save_active_alerts(engine: Engine, active: dict[str, dict]) -> None:
    _write(engine, ACTIVE, active)


def last_digest(engine: Engine) -> str | None:
    """The local date (YYYY-MM-DD) of the last daily digest sent, or None."""
    return _read(engine, LAST_DIGEST)


def save_last_digest(engine: Engine, day: str) -> None:
    _write(engine, LAST_DIGEST, day)


TOKEN_CHECKS = "alerts_token_checks"


def token_checks(engine: Engine) -> dict[str, dict]:
    """Target -> {"checked": ISO time, "expires": ISO time or None, "problem": text or None}."""
    return _read(engine, TOKEN_CHECKS) or {}


def save_token_checks(engine: Engine, checks: dict[str, dict]) -> None:
    _write(engine, TOKEN_CHECKS, checks)
