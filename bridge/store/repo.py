"""The only place that reads and writes the tables. Every write is one short transaction.

Times are passed in by the caller (who owns the clock), so tests can move time without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Mapping, Sequence

from sqlalchemy import Connection, Engine, and_, case, func, insert, or_, select, update

from bridge.model import Delivery, DeliveryState, Item, unique_by_key
from bridge.store import schema
from bridge.store.db import READ_ONLY

S, I, D, T = schema.sources, schema.items, schema.deliveries, schema.targets


@dataclass(frozen=True)
class SourceState:
    url: str | None = None
    """The URL last polled under this name (None: never polled)."""
    initialised: bool = False
    etag: str | None = None
    last_modified: str | None = None
    consecutive_failures: int = 0
    next_poll_at: datetime | None = None
    last_items_seen: int | None = None
    """Stories the last successful read found (an html listing that suddenly finds none has drifted)."""


@dataclass(frozen=True)
class NewDeliveries:
    """What storing one poll's items did."""

    new_items: int
    pending: int
    skipped: int
    queued_keys: tuple[str, ...] = ()
    """Keys of the new items that got at least one pending delivery, in feed order."""


@dataclass(frozen=True)
class TargetState:
    paused_reason: str | None = None
    hold_until: datetime | None = None


class Repository:
    def __init__(self, engine: Engine):
        self.engine = engine

    # --- Sources ---------------------------------------------------------------------------------

    def source_state(self, name: str) -> SourceState:
        with self.engine.connect().execution_options(**READ_ONLY) as conn:
            row = conn.execute(select(S).where(S.c.name == name)).mappings().first()
        if row is None:
            return SourceState()
        return SourceState(
            url=row["url"], initialised=bool(row["initialised"]), etag=row["etag"], last_modified=row["last_modified"],
            consecutive_failures=row["consecutive_failures"], next_poll_at=row["next_poll_at"],
            last_items_seen=row["last_items_seen"],
        )

    def restart_source(self, name: str, url: str, now: datetime) -> SourceState:
        """The source now reads another URL: forget validators and backoff, and apply the first-run
        policy again on its next successful poll. Items already seen stay seen."""
        with self.engine.begin() as conn:
            conn.execute(update(S).where(S.c.name == name).values(
                url=url, initialised=False, etag=None, last_modified=None, consecutive_failures=0,
                next_poll_at=None, last_error=None,
            ))
        return SourceState(url=url)

    def store_poll(
        self, source: str, url: str, items: Sequence[Item], targets: Sequence[str], *, now: datetime,
        skip: Mapping[str, str], etag: str | None, last_modified: str | None,
        next_poll_at: datetime | None, recipients: Mapping[str, Sequence[str]] | None = None,
    ) -> NewDeliveries:
        """Record a successful poll: new items, one delivery per target for each, and the source's
        state, in one transaction (so a crash leaves either all of it or none).

        `skip` maps the keys of new items not to post to the reason (first-run policy, catch-up,
        stale): they get `skipped` deliveries. A story whose link identity another item already
        carries to a target gets a `skipped` delivery for that target.

        A target named in `recipients` (WhatsApp) gets one delivery per recipient instead of one."""
        counts = {"new": 0, "pending": 0, "skipped": 0}
        queued: list[str] = []
        with self.engine.begin() as conn:
            known = self._known_keys(conn, source, [item.key for item in items])
            for item in unique_by_key(items):  # one transaction: a repeated key would violate (source, key)
                if item.key in known:
                    continue
                item_id = self._insert_item(conn, source, item, now)
                counts["new"] += 1
                for target, recipient in _outbox_rows(targets, recipients or {}):
                    reason = skip.get(item.key) or self._already_delivered_reason(
                        conn, item.url, target, item_id, recipient)
                    self._insert_delivery(conn, item_id, target, now, reason, recipient)
                    counts["skipped" if reason else "pending"] += 1
                    if not reason and (not queued or queued[-1] != item.key):
                        queued.append(item.key)
            self._save_source(
                conn, source, url, now, initialised=True, last_outcome="ok", last_error=None,
                consecutive_failures=0, next_poll_at=next_poll_at, etag=etag, last_modified=last_modified,
                last_success_at=now, last_items_seen=len(items),
            )
        return NewDeliveries(counts["new"], counts["pending"], counts["skipped"], tuple(queued))

    def known_keys(self, source: str, keys: Sequence[str]) -> set[str]:
        with self.engine.connect().execution_options(**READ_ONLY) as conn:
            return self._known_keys(conn, source, keys)

    def skip_pending_for_keys(self, source: str, keys: Sequence[str], reason: str, now: datetime) -> int:
        """Catch-up: stories already known and still pending are dropped too."""
        with self.engine.begin() as conn:
            ids = select(I.c.id).where(I.c.source == source, I.c.key.in_(list(keys)))
            result = conn.execute(
                update(D).where(D.c.item_id.in_(ids), D.c.state == DeliveryState.PENDING.value)
                .values(state=DeliveryState.SKIPPED.value, last_error=reason, updated_at=now)
            )
            return result.rowcount

    def record_not_modified(self, source: str, url: str, now: datetime, next_poll_at: datetime | None) -> None:
        with self.engine.begin() as conn:
            self._save_source(
                conn, source, url, now, last_outcome="not_modified", last_error=None,
                consecutive_failures=0, next_poll_at=next_poll_at, last_success_at=now,
            )

    def record_poll_failure(
        self, source: str, url: str, error: str, now: datetime, next_poll_at: datetime
    ) -> int:
        """Returns the number of consecutive failures, this one included."""
        with self.engine.begin() as conn:
            failures = (conn.execute(
                select(S.c.consecutive_failures).where(S.c.name == source)
            ).scalar() or 0) + 1
            self._save_source(
                conn, source, url, now, last_outcome="error", last_error=error,
                consecutive_failures=failures, next_poll_at=next_poll_at,
            )
        return failures

    # --- Deliveries ------------------------------------------------------------------------------

    def due_deliveries(self, target: str, now: datetime, limit: int) -> list[Delivery]:
        """Pending deliveries whose time has come, oldest story first."""
        story_time = func.coalesce(I.c.published_at, I.c.first_seen_at)
        query = (
            select(D, I.c.source, I.c.key, I.c.title, I.c.link, I.c.url, I.c.summary,
                   I.c.published_at, I.c.categories, I.c.image_url)
            .join(I, I.c.id == D.c.item_id)
            .where(D.c.target == target, D.c.state == DeliveryState.PENDING.value,
                   or_(D.c.next_attempt_at.is_(None), D.c.next_attempt_at <= now))
            .order_by(story_time, D.c.id).limit(limit)
        )
        with self.engine.connect().execution_options(**READ_ONLY) as conn:
            return [_delivery(row) for row in conn.execute(query).mappings()]

    def claim(self, delivery_id: int, now: datetime) -> bool:
        """pending -> sending, committed before the API call. False if someone else took it."""
        with self.engine.begin() as conn:
            result = conn.execute(
                update(D).where(D.c.id == delivery_id, D.c.state == DeliveryState.PENDING.value)
                .values(state=DeliveryState.SENDING.value, updated_at=now)
            )
            return result.rowcount == 1

    def mark_sent(self, delivery_id: int, remote_id: str | None, now: datetime, note: str | None = None,
                  cost: float = 0.0) -> None:
        self._finish(delivery_id, now, state=DeliveryState.SENT, remote_id=remote_id, sent_at=now,
                     last_error=note, next_attempt_at=None, attempts=D.c.attempts + 1, cost=cost)

    def mark_failed(self, delivery_id: int, error: str, now: datetime, counted: bool = True) -> None:
        self._finish(delivery_id, now, state=DeliveryState.FAILED, last_error=error, next_attempt_at=None,
                     attempts=D.c.attempts + (1 if counted else 0))

    def mark_retry(self, delivery_id: int, error: str, retry_at: datetime, now: datetime, counted: bool) -> None:
        self._finish(delivery_id, now, state=DeliveryState.PENDING, last_error=error, next_attempt_at=retry_at,
                     attempts=D.c.attempts + (1 if counted else 0))

    def mark_skipped(self, delivery_id: int, reason: str, now: datetime) -> None:
        self._finish(delivery_id, now, state=DeliveryState.SKIPPED, last_error=reason, next_attempt_at=None)

    def release(self, delivery_id: int, now: datetime) -> None:
        """sending -> pending untouched (nothing was sent: e.g. the target is paused)."""
        self._finish(delivery_id, now, state=DeliveryState.PENDING)

    def recover_in_doubt(self, resend_safe: set[str], now: datetime) -> tuple[int, int]:
        """After a crash, deliveries still `sending` are in doubt. Where re-sending cannot double-post
        (the network refuses duplicates) they go back to pending; elsewhere they fail with a note, so
        the operator checks the account and re-queues them with `bridge retry` if they are missing."""
        note = "outcome unknown after a crash: check the account, then `bridge retry` if it is missing"
        sending = D.c.state == DeliveryState.SENDING.value
        with self.engine.begin() as conn:
            requeued = conn.execute(
                update(D).where(sending, D.c.target.in_(resend_safe))
                .values(state=DeliveryState.PENDING.value, updated_at=now)
            ).rowcount
            failed = conn.execute(
                update(D).where(sending).values(state=DeliveryState.FAILED.value, last_error=note, updated_at=now)
            ).rowcount
        return requeued, failed

    def requeue(self, delivery_id: int, now: datetime) -> bool:
        """failed -> pending, now (bridge retry)."""
        with self.engine.begin() as conn:
            return conn.execute(
                update(D).where(D.c.id == delivery_id, D.c.state == DeliveryState.FAILED.value)
                .values(state=DeliveryState.PENDING.value, next_attempt_at=None, attempts=0, updated_at=now)
            ).rowcount == 1

    def skip(self, delivery_id: int, reason: str, now: datetime) -> bool:
        """pending -> skipped (bridge skip)."""
        with self.engine.begin() as conn:
            return conn.execute(
                update(D).where(D.c.id == delivery_id, D.c.state == DeliveryState.PENDING.value)
                .values(state=DeliveryState.SKIPPED.value, last_error=reason, updated_at=now)
            ).rowcount == 1

    def sent_since(self, target: str, since: datetime) -> int:
        with self.engine.connect().execution_options(**READ_ONLY) as conn:
            return conn.execute(
                select(func.count()).where(D.c.target == target, D.c.state == DeliveryState.SENT.value,
                                           D.c.sent_at >= since)
            ).scalar_one()

    def spent_since(self, target: str, since: datetime) -> float:
        """USD spent on posts to `target` sent since `since`."""
        with self.engine.connect().execution_options(**READ_ONLY) as conn:
            return float(conn.execute(
                select(func.coalesce(func.sum(D.c.cost), 0.0)).where(
                    D.c.target == target, D.c.state == DeliveryState.SENT.value, D.c.sent_at >= since)
            ).scalar_one())

    def last_sent_at(self, target: str) -> datetime | None:
        with self.engine.connect().execution_options(**READ_ONLY) as conn:
            return conn.execute(select(func.max(D.c.sent_at)).where(D.c.target == target)).scalar()

    # --- Targets ---------------------------------------------------------------------------------

    def target_state(self, name: str) -> TargetState:
        with self.engine.connect().execution_options(**READ_ONLY) as conn:
            row = conn.execute(select(T).where(T.c.name == name)).mappings().first()
        return TargetState(row["paused_reason"], row["hold_until"]) if row else TargetState()

    def pause_target(self, name: str, reason: str, now: datetime) -> None:
        self._save_target(name, paused_reason=reason, paused_at=now)

    def hold_target(self, name: str, until: datetime) -> None:
        self._save_target(name, hold_until=until)

    def clear_pauses(self) -> list[str]:
        """At start-up: the operator restarted, presumably after fixing what the pause asked for."""
        with self.engine.begin() as conn:
            names = list(conn.execute(select(T.c.name).where(T.c.paused_reason.is_not(None))).scalars())
            conn.execute(update(T).values(paused_reason=None, paused_at=None))
        return names

    # --- Status ----------------------------------------------------------------------------------

    def source_rows(self) -> list[dict]:
        item_count = select(func.count()).where(I.c.source == S.c.name).scalar_subquery()
        with self.engine.connect().execution_options(**READ_ONLY) as conn:
            rows = conn.execute(select(S, item_count.label("items")).order_by(S.c.name)).mappings()
            return [dict(row) for row in rows]

    def target_rows(self, day_start: datetime, month_start: datetime | None = None) -> list[dict]:
        """Per target: posted and spent since day_start, spent since month_start, pending, failed,
        pause and hold."""
        sent_today = and_(D.c.state == "sent", D.c.sent_at >= day_start)
        sent_this_month = and_(D.c.state == "sent", D.c.sent_at >= (month_start or day_start))
        counts = (
            select(
                D.c.target,
                func.sum(case((sent_today, 1), else_=0)).label("sent_today"),
                func.sum(case((sent_today, func.coalesce(D.c.cost, 0.0)), else_=0.0)).label("spent_today"),
                func.sum(case((sent_this_month, func.coalesce(D.c.cost, 0.0)), else_=0.0)).label("spent_month"),
                func.sum(case((D.c.state.in_(["pending", "sending"]), 1), else_=0)).label("pending"),
                func.sum(case((D.c.state == "failed", 1), else_=0)).label("failed"),
            ).group_by(D.c.target)
        )
        with self.engine.connect().execution_options(**READ_ONLY) as conn:
            rows = {r["target"]: dict(r) for r in conn.execute(counts).mappings()}
            for r in conn.execute(select(T)).mappings():
                rows.setdefault(r["name"], {"target": r["name"], "sent_today": 0, "pending": 0, "failed": 0,
                                            "spent_today": 0.0, "spent_month": 0.0})
                rows[r["name"]].update(paused_reason=r["paused_reason"], hold_until=r["hold_until"])
        return [rows[name] for name in sorted(rows)]

    def delivery_counts(self) -> list[dict]:
        """How many deliveries each target has in each state (for /metrics)."""
        query = select(D.c.target, D.c.state, func.count().label("count")).group_by(D.c.target, D.c.state)
        with self.engine.connect().execution_options(**READ_ONLY) as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def delivery_rows(self, states: Sequence[DeliveryState], limit: int = 50) -> list[dict]:
        query = (
            select(D.c.id, D.c.target, D.c.recipient, D.c.state, D.c.attempts, D.c.last_error, D.c.next_attempt_at,
                   I.c.source, I.c.title, I.c.link)
            .join(I, I.c.id == D.c.item_id).where(D.c.state.in_([s.value for s in states]))
            .order_by(D.c.id.desc()).limit(limit)
        )
        with self.engine.connect().execution_options(**READ_ONLY) as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    # --- Helpers ---------------------------------------------------------------------------------

    def _known_keys(self, conn: Connection, source: str, keys: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(keys), 500):  # stay under SQLite's bound-parameter limit
            chunk = list(keys[start:start + 500])
            found.update(conn.execute(
                select(I.c.key).where(I.c.source == source, I.c.key.in_(chunk))
            ).scalars())
        return found

    def _insert_item(self, conn: Connection, source: str, item: Item, now: datetime) -> int:
        return conn.execute(insert(I).values(
            source=source, key=item.key, url=item.url, link=item.link, title=item.title,
            summary=item.summary, published_at=item.published, categories="\n".join(item.categories),
            image_url=item.image_url, first_seen_at=now,
        )).inserted_primary_key[0]

    def _already_delivered_reason(self, conn: Connection, url: str | None, target: str, item_id: int,
                                  recipient: str = "") -> str | None:
        if not url:
            return None
        other = conn.execute(
            select(I.c.source, D.c.id).join(D, D.c.item_id == I.c.id)
            .where(I.c.url == url, I.c.id != item_id, D.c.target == target, D.c.recipient == recipient,
                   D.c.state != DeliveryState.FAILED.value).limit(1)
        ).first()
        return f"same link already delivered via {other.source} (delivery {other.id})" if other else None

    def _insert_delivery(self, conn: Connection, item_id: int, target: str, now: datetime, skip_reason: str | None,
                         recipient: str = "") -> None:
        state = DeliveryState.SKIPPED if skip_reason else DeliveryState.PENDING
        conn.execute(insert(D).values(
            item_id=item_id, target=target, state=state.value, attempts=0, last_error=skip_reason,
            created_at=now, updated_at=now, recipient=recipient,
        ))

    def _save_source(self, conn: Connection, name: str, url: str, now: datetime, **values) -> None:
        values = {"url": url, "last_poll_at": now, **values}
        if conn.execute(update(S).where(S.c.name == name).values(**values)).rowcount == 0:
            values.setdefault("initialised", False)
            values.setdefault("consecutive_failures", 0)
            conn.execute(insert(S).values(name=name, **values))

    def _save_target(self, name: str, **values) -> None:
        with self.engine.begin() as conn:
            if conn.execute(update(T).where(T.c.name == name).values(**values)).rowcount == 0:
                conn.execute(insert(T).values(name=name, **values))

    def _finish(self, delivery_id: int, now: datetime, state: DeliveryState, **values) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(D).where(D.c.id == delivery_id).values(state=state.value, updated_at=now, **values))


def _delivery(row) -> Delivery:
    item = Item(
        key=row["key"], title=row["title"], link=row["link"], url=row["url"], summary=row["summary"] or "",
        published=row["published_at"], categories=tuple(filter(None, (row["categories"] or "").split("\n"))),
        image_url=row["image_url"],
    )
    return Delivery(
        id=row["id"], target=row["target"], source=row["source"], state=DeliveryState(row["state"]),
        attempts=row["attempts"], item=item, next_attempt_at=row["next_attempt_at"],
        remote_id=row["remote_id"], last_error=row["last_error"], recipient=row["recipient"] or "",
    )


def _outbox_rows(targets: Sequence[str], recipients: Mapping[str, Sequence[str]]) -> list[tuple[str, str]]:
    """(target, recipient) for each delivery a new story needs: one per recipient where a target has
    recipients, else one with recipient "" (the target itself)."""
    return [(target, recipient) for target in targets for recipient in (recipients.get(target) or [""])]
