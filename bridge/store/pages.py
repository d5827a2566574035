"""Read-only queries for the PR office's page (bridge/dashboard), beside what `bridge status` reads.

Each is bounded so the page stays fast on a store of years: posts by (target, sent_at) since a
local day through ix_deliveries_target_sent_at, one story by its id, and the newest stories by the
primary key. None reads the whole history, and none takes a write lock (READ_ONLY: DEFERRED).
"""

from __future__ import annotations

from datetime import datetime
from typing import Sequence

from sqlalchemy import Engine, and_, case, func, select

from bridge.model import DeliveryState
from bridge.store import schema
from bridge.store.db import READ_ONLY

I, D = schema.items, schema.deliveries

RECENT_STORIES = 10_000
"""How far back (in stories, newest first) "last new story" of a source is looked for: weeks of
every source this bridge reads (the page shows 14 days), yet a short range of the primary key at
any store size."""


def sent_since(engine: Engine, targets: Sequence[str], since: datetime, limit: int) -> list[dict]:
    """Posts each target made since `since`, newest first, at most `limit` per target, with their
    story's title, link and source."""
    rows: list[dict] = []
    with engine.connect().execution_options(**READ_ONLY) as conn:
        for target in targets:  # one index range per target: (target, sent_at >= since)
            query = (
                select(D.c.id, D.c.item_id, D.c.target, D.c.recipient, D.c.remote_id, D.c.sent_at,
                       I.c.title, I.c.link, I.c.source)
                .join(I, I.c.id == D.c.item_id)
                .where(D.c.target == target, D.c.sent_at >= since, D.c.state == DeliveryState.SENT.value)
                .order_by(D.c.sent_at.desc()).limit(limit)
            )
            rows += [dict(r) for r in conn.execute(query).mappings()]
    return rows


def sent_per_day(engine: Engine, targets: Sequence[str], bounds: Sequence[datetime]) -> dict[str, list[int]]:
    """Per target, how many posts it made in each [bounds[i], bounds[i+1]) (the chart's local days),
    counted in the database over the index range (target, sent_at from bounds[0])."""
    columns = [func.coalesce(func.sum(case((and_(D.c.sent_at >= start, D.c.sent_at < end), 1), else_=0)), 0)
               for start, end in zip(bounds, bounds[1:])]
    found: dict[str, list[int]] = {}
    with engine.connect().execution_options(**READ_ONLY) as conn:
        for target in targets:
            row = conn.execute(select(*columns).where(
                D.c.target == target, D.c.sent_at >= bounds[0], D.c.sent_at < bounds[-1],
                D.c.state == DeliveryState.SENT.value)).one()
            found[target] = [int(n) for n in row]
    return found


def newest_story_times(engine: Engine, window: int = RECENT_STORIES) -> dict[str, datetime]:
    """When each source last brought a new story, among the newest `window` stories (ids grow as
    stories are first seen, so this is a range of the primary key, not a scan of every story)."""
    with engine.connect().execution_options(**READ_ONLY) as conn:
        top = conn.execute(select(func.max(I.c.id))).scalar()
        if top is None:
            return {}
        # Grouped by `source || ''`, not the column: grouping by the column lets SQLite walk the
        # whole (source, key) index for its order instead of the primary key's short range.
        grouped = I.c.source + ""
        query = (select(func.min(I.c.source), func.max(I.c.first_seen_at))
                 .where(I.c.id > top - window).group_by(grouped))
        return {source: seen for source, seen in conn.execute(query)}


def story(engine: Engine, item_id: int) -> dict | None:
    """One story and all its deliveries (by target, then recipient); None when there is no such id."""
    with engine.connect().execution_options(**READ_ONLY) as conn:
        item = conn.execute(select(I.c.id, I.c.source, I.c.title, I.c.link, I.c.first_seen_at,
                                   I.c.published_at).where(I.c.id == item_id)).mappings().first()
        if item is None:
            return None
        deliveries = conn.execute(
            select(D.c.id, D.c.target, D.c.recipient, D.c.state, D.c.remote_id, D.c.sent_at, D.c.last_error,
                   D.c.last_attempt_at, D.c.next_attempt_at)
            .where(D.c.item_id == item_id).order_by(D.c.target, D.c.recipient)).mappings()
        return {**dict(item), "deliveries": [dict(d) for d in deliveries]}
