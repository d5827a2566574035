"""The only place that reads and writes the tables. Every write is one short transaction.

Times are passed in by the caller (who owns the clock), so tests can move time without sleeping.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Mapping, Sequence

from sqlalchemy import Connection, Engine, Integer, bindparam, case, func, insert, literal, select, update

from bridge.model import DeliveryState, Item, unique_by_key
from bridge.urls import fragment_free, may_be_identity
from bridge.store import schema
from bridge.store.db import READ_ONLY
from bridge.store.fragments import on_same_pages, same_title
from bridge.store.outbox import Outbox, shared_store
from bridge.store.state_read import StateReader
from bridge.store.schema import IX_DELIVERIES_STATE_TARGET, IX_DELIVERIES_TARGET_SENT_AT, in_batches, indexed
from bridge.store.unchanged import UnchangedPolls

S, I, D, T = schema.sources, schema.items, schema.deliveries, schema.targets
IC, DC = schema.item_counts, schema.delivery_counts
_STATUS_COUNTS = {"pending": "pending", "sending": "pending", "failed": "failed", "in_doubt": "in_doubt",
                  "held": "held"}
"""delivery_counts' states as `bridge status` shows them (a post in flight counts as pending)."""
_UPDATE_SOURCE = update(S).where(S.c.name == bindparam("source_name"))
"""One source's row, its SET clause made from the parameters' keys: built once, so SQLAlchemy
compiles it once per set of columns instead of building and hashing a new statement each poll."""
_KEYS_STORED = select(I.c.key).where(I.c.source == bindparam("source"),
                                     I.c.key.in_(bindparam("keys", expanding=True)))
"""Which of these keys of a source are stored (built once, like _UPDATE_SOURCE)."""
_ANY_STORED = indexed(select(I.c.id).where(I.c.source == bindparam("source")).limit(1),
                      I, schema.IX_ITEMS_SOURCE_KEY)
"""Whether a source has any story stored."""
_DELIVERIES_FOR_KEYS = insert(D).from_select(
    ["item_id", "target", "recipient", "state", "attempts", "last_error", "created_at", "updated_at"],
    # No CAST around the parameters: SQLite's CAST(? AS DATETIME) makes a number of the text.
    # INDEXED BY: statistics that call (source, key) unselective could otherwise have SQLite walk
    # the whole table in id order to spare the ORDER BY its sort.
    indexed(select(I.c.id, bindparam("d_target", type_=D.c.target.type),
                   bindparam("d_recipient", type_=D.c.recipient.type), bindparam("d_state", type_=D.c.state.type),
                   literal(0, Integer), bindparam("d_reason", type_=D.c.last_error.type),
                   bindparam("d_now", type_=D.c.created_at.type), bindparam("d_now", type_=D.c.updated_at.type))
            .where(I.c.source == bindparam("source"), I.c.key.in_(bindparam("keys", expanding=True)))
            .order_by(I.c.id), I, schema.IX_ITEMS_SOURCE_KEY))
"""One delivery for each of these stories of a source, all to one target and recipient in one
state (store_poll's groups), in the order they were stored."""


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
    last_outcome: str | None = None
    """"ok", "not_modified" or "error": how the last poll written ended."""


@dataclass(frozen=True)
class NewDeliveries:
    """What storing one poll's items did."""

    new_items: int
    pending: int
    skipped: int
    queued_keys: tuple[str, ...] = ()
    """Keys of the new items that got at least one pending delivery, in feed order."""
    held: int = 0
    """Deliveries stored as `held` (a burst waiting for the operator)."""


@dataclass(frozen=True)
class TargetState:
    paused_reason: str | None = None
    hold_until: datetime | None = None


class Repository(Outbox):
    """Sources, stories and targets here; the outbox's deliveries in store/outbox.py."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._poll_writes = threading.Lock()
        """Polls store one at a time in this process: concurrent polls would otherwise wait for
        SQLite's write lock in its busy handler, which sleeps up to 100 ms between tries."""
        self.unchanged = UnchangedPolls(engine)
        """Polls that changed only a source's timing, written in batches (store/unchanged.py)."""
        self._states = StateReader(engine)
        """The read every poll starts with (store/state_read.py says why it is not a Connection's)."""

    # --- Sources ---------------------------------------------------------------------------------

    def source_state(self, name: str) -> SourceState:
        row = self._states.read(name)
        if row is None:
            return SourceState()
        url, initialised, etag, last_modified, failures, next_poll_at, items_seen, outcome = row
        return SourceState(
            url=url, initialised=bool(initialised), etag=etag, last_modified=last_modified,
            consecutive_failures=failures, next_poll_at=next_poll_at, last_items_seen=items_seen,
            last_outcome=outcome,
        )

    def restart_source(self, name: str, old_url: str, url: str, *, due_now: bool = False) -> SourceState | None:
        """The source now reads `url` instead of `old_url`: forget validators and backoff, and apply
        the first-run policy again on its next successful poll. Items already seen stay seen.

        A compare-and-set on the old URL, so of two replicas (or threads) noticing the move at once
        one restarts it: None for the other. next_poll_at is left alone (on PostgreSQL it is the
        lease of a poll under way) unless `due_now`."""
        self.unchanged.discard(name)
        values = dict(url=url, initialised=False, etag=None, last_modified=None, consecutive_failures=0,
                      last_error=None, **({"next_poll_at": None} if due_now else {}))
        with self.engine.begin() as conn:
            moved = conn.execute(update(S).where(S.c.name == name, S.c.url == old_url).values(**values)).rowcount
        return SourceState(url=url) if moved else None

    def store_poll(
        self, source: str, url: str, items: Sequence[Item], targets: Sequence[str], *, now: datetime,
        skip: Mapping[str, str], etag: str | None, last_modified: str | None,
        next_poll_at: datetime | None, recipients: Mapping[str, Sequence[str]] | None = None,
        hold: str | None = None, initialise: bool = True, filtered: Mapping[str, Mapping[str, str]] | None = None,
    ) -> NewDeliveries:
        """Record a successful poll: new items, one delivery per target for each, and the source's
        state, in one transaction (so a crash leaves either all of it or none).

        `skip` maps the keys of new items not to post to the reason (first-run policy, catch-up,
        stale): they get `skipped` deliveries. With `hold` (a burst), the others are `held` with that
        reason instead of `pending`. `filtered` maps a new item's key to the targets its keyword
        filters refuse it to, and why: those deliveries alone are `skipped`. `initialise` False (a
        first read that found nothing) leaves the source's first-run policy for its next read. The same story from another source is judged
        when it is sent (same_story_elsewhere), not here, so a copy that fails never blocks it.

        A target named in `recipients` (WhatsApp) gets one delivery per recipient instead of one."""
        counts = {"new": 0, "pending": 0, "skipped": 0, "held": 0}
        queued: list[str] = []
        rows = _outbox_rows(targets, recipients or {})
        with self._poll_writes, self.engine.begin() as conn:
            self._source_turn(conn, source)
            known = self._known_keys(conn, source, [item.key for item in items], titles_of(items))
            # unique_by_key: one transaction, so a repeated key would violate (source, key).
            new = [item for item in unique_by_key(items) if item.key not in known]
            self._insert_items(conn, source, new, now)
            groups: dict[tuple[str, str, str, str | None], list[str]] = {}
            for item in new:
                refused = (filtered or {}).get(item.key, {})
                pending = False
                for target, recipient in rows:
                    reason = skip.get(item.key) or refused.get(target)
                    state = DeliveryState.SKIPPED if reason else (DeliveryState.HELD if hold else DeliveryState.PENDING)
                    groups.setdefault((target, recipient, state.value, reason or hold), []).append(item.key)
                    counts["skipped" if reason else ("held" if hold else "pending")] += 1
                    pending = pending or state is DeliveryState.PENDING
                if pending:
                    queued.append(item.key)
            counts["new"] = len(new)
            self._insert_deliveries(conn, source, groups, now)
            self._save_source(
                conn, source, url, now, last_outcome="ok", last_error=None,
                **({"initialised": True} if initialise else {}),
                consecutive_failures=0, next_poll_at=next_poll_at, etag=etag, last_modified=last_modified,
                last_success_at=now, last_items_seen=len(items),
            )
        return NewDeliveries(counts["new"], counts["pending"], counts["skipped"], tuple(queued), counts["held"])

    def _source_turn(self, conn: Connection, source: str) -> None:
        """On PostgreSQL, one process at a time stores a poll of `source` (a transaction-level
        advisory lock, released at commit), so the next one's known-keys read, a statement later
        under READ COMMITTED, sees what the first stored: two processes polling one source at once
        (`run --once` beside a replica) store its new stories once, the second without an error.
        SQLite's BEGIN IMMEDIATE already serialises the writers."""
        if not shared_store(self.engine):
            return
        from bridge.store.lock import hold_for_transaction

        hold_for_transaction(conn, f"source {source}")

    def known_keys(self, source: str, keys: Sequence[str], titles: Mapping[str, str] | None = None) -> set[str]:
        """The keys of `source` already stored. Given `titles` (every key of this read -> its title),
        also a key that differs from a stored one only by its fragment, with the same title (see
        _known_by_fragment)."""
        with self.engine.connect().execution_options(**READ_ONLY) as conn:
            return self._known_keys(conn, source, keys, titles)

    def first_seen_by_url(self, urls: Sequence[str]) -> dict[str, datetime]:
        """When the bridge first saw each of these links (urls.identity_url), through any source:
        how old a story without a date is, for max_age."""
        found: dict[str, datetime] = {}
        wanted = list(dict.fromkeys(urls))
        with self.engine.connect().execution_options(**READ_ONLY) as conn:
            for batch in in_batches(wanted):
                query = select(I.c.url, func.min(I.c.first_seen_at)).where(I.c.url.in_(batch)).group_by(I.c.url)
                found.update({url: when for url, when in conn.execute(query)})
        return found

    def skip_pending_for_keys(self, source: str, keys: Sequence[str], reason: str, now: datetime) -> int:
        """Catch-up: stories already known and still pending are dropped too."""
        with self.engine.begin() as conn:
            ids = select(I.c.id).where(I.c.source == source, I.c.key.in_(list(keys)))
            result = conn.execute(
                update(D).where(D.c.item_id.in_(ids), D.c.state == DeliveryState.PENDING.value)
                .values(state=DeliveryState.SKIPPED.value, last_error=reason, updated_at=now)
            )
            return result.rowcount

    def release_held(self, source: str, now: datetime) -> int:
        """`bridge release SOURCE`: the source's held burst goes out (oldest first, within pacing)."""
        return self._change_held(source, now, state=DeliveryState.PENDING.value, last_error=None)

    def skip_held(self, source: str, reason: str, now: datetime) -> int:
        """`bridge catchup SOURCE`: the source's held burst is dropped."""
        return self._change_held(source, now, state=DeliveryState.SKIPPED.value, last_error=reason)

    def _change_held(self, source: str, now: datetime, **values) -> int:
        with self.engine.begin() as conn:
            ids = select(I.c.id).where(I.c.source == source)
            return conn.execute(
                update(D).where(D.c.item_id.in_(ids), D.c.state == DeliveryState.HELD.value)
                .values(updated_at=now, next_attempt_at=None, **values)
            ).rowcount

    def held_stories(self) -> dict[str, int]:
        """Per source, how many stories wait in a held burst."""
        query = indexed(select(I.c.source, func.count(func.distinct(D.c.item_id)))
                        .join(I, I.c.id == D.c.item_id).where(D.c.state == DeliveryState.HELD.value)
                        .group_by(I.c.source), D, IX_DELIVERIES_STATE_TARGET)
        with self.engine.connect().execution_options(**READ_ONLY) as conn:
            return {source: count for source, count in conn.execute(query)}

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

    def paused_targets(self) -> list[str]:
        with self.engine.connect().execution_options(**READ_ONLY) as conn:
            return list(conn.execute(select(T.c.name).where(T.c.paused_reason.is_not(None))
                                     .order_by(T.c.name)).scalars())

    def unpause(self, name: str) -> str | None:
        """`bridge unpause TARGET`: lift the target's pause (for every replica); the reason it had, or None."""
        with self.engine.begin() as conn:
            reason = conn.execute(select(T.c.paused_reason).where(T.c.name == name)).scalar()
            if reason is None:
                return None
            conn.execute(update(T).where(T.c.name == name).values(paused_reason=None, paused_at=None))
        return reason

    # --- Status ----------------------------------------------------------------------------------

    def source_rows(self) -> list[dict]:
        """Every source's state and how many stories it ever stored (a running total: no count)."""
        query = (select(S, func.coalesce(IC.c.stored, 0).label("items"))
                 .outerjoin(IC, IC.c.source == S.c.name).order_by(S.c.name))
        with self.engine.connect().execution_options(**READ_ONLY) as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    def target_rows(self, day_start: datetime, month_start: datetime | None = None) -> list[dict]:
        """Per target: posted and spent since day_start, spent since month_start, pending, failed,
        pause and hold. Costs this month's posts and a few running totals, not the history."""
        month_start = min(month_start or day_start, day_start)
        sent_today = D.c.sent_at >= day_start
        with self.engine.connect().execution_options(**READ_ONLY) as conn:
            rows: dict[str, dict] = {}
            for r in conn.execute(select(DC)).mappings():
                row = rows.setdefault(r["target"], _blank_target(r["target"]))
                if r["state"] in _STATUS_COUNTS:
                    row[_STATUS_COUNTS[r["state"]]] += r["deliveries"]
            for r in conn.execute(select(T)).mappings():
                rows.setdefault(r["name"], _blank_target(r["name"]))
                rows[r["name"]].update(paused_reason=r["paused_reason"], hold_until=r["hold_until"])
            for name, row in rows.items():
                month = conn.execute(indexed(select(
                    func.coalesce(func.sum(case((sent_today, 1), else_=0)), 0),
                    func.coalesce(func.sum(case((sent_today, func.coalesce(D.c.cost, 0.0)), else_=0.0)), 0.0),
                    func.coalesce(func.sum(func.coalesce(D.c.cost, 0.0)), 0.0),
                ).where(D.c.target == name, D.c.sent_at >= month_start, D.c.state == DeliveryState.SENT.value),
                    D, IX_DELIVERIES_TARGET_SENT_AT)).one()
                row["sent_today"] = int(month[0])
                # What the network billed besides the posts counts too.
                row["spent_today"] = float(month[1]) + self._charged_since(conn, name, day_start)
                row["spent_month"] = float(month[2]) + self._charged_since(conn, name, month_start)
        return [rows[name] for name in sorted(rows)]

    def delivery_counts(self) -> list[dict]:
        """How many deliveries each target has in each state (for /metrics): the running totals."""
        query = select(DC.c.target, DC.c.state, DC.c.deliveries.label("count")).where(DC.c.deliveries > 0)
        with self.engine.connect().execution_options(**READ_ONLY) as conn:
            return [dict(r) for r in conn.execute(query.order_by(DC.c.target, DC.c.state)).mappings()]

    def delivery_rows(self, states: Sequence[DeliveryState], limit: int = 50) -> list[dict]:
        """The newest `limit` deliveries in these states. Read per (target, state) that has any
        (the running totals say which): in (state, target) each one's rows come in id order, so
        each read stops after `limit` rows however many failures years have piled up."""
        columns = (D.c.id, D.c.target, D.c.recipient, D.c.state, D.c.attempts, D.c.last_error, D.c.next_attempt_at,
                   D.c.last_attempt_at, I.c.source, I.c.title, I.c.link)
        found: list[dict] = []
        with self.engine.connect().execution_options(**READ_ONLY) as conn:
            pairs = conn.execute(select(DC.c.target, DC.c.state).where(
                DC.c.state.in_([s.value for s in states]), DC.c.deliveries > 0)).all()
            for target, state in pairs:
                query = indexed(select(*columns).join(I, I.c.id == D.c.item_id)
                                .where(D.c.state == state, D.c.target == target)
                                .order_by(D.c.id.desc()).limit(limit), D, IX_DELIVERIES_STATE_TARGET)
                found += [dict(r) for r in conn.execute(query).mappings()]
        return sorted(found, key=lambda row: row["id"], reverse=True)[:limit]

    # --- Helpers ---------------------------------------------------------------------------------

    def _known_keys(self, conn: Connection, source: str, keys: Sequence[str],
                    titles: Mapping[str, str] | None = None) -> set[str]:
        found: set[str] = set()
        for batch in in_batches(keys):
            found.update(conn.execute(_KEYS_STORED, {"source": source, "keys": batch}).scalars())
        if titles:
            found |= self._known_by_fragment(conn, source, [k for k in keys if k not in found], titles)
        return found

    def _known_by_fragment(self, conn: Connection, source: str, keys: Sequence[str],
                           titles: Mapping[str, str]) -> set[str]:
        """New URL keys that differ from a stored key of `source` only by the fragment (added,
        dropped or changed) and carry the same title: the site changed its anchor (`#comments`,
        `#utm_anchor`), not the story. Not where this read lists several stories on one
        fragment-free link: there the fragment is what tells them apart (page#1, page#2)."""
        candidates = [key for key in keys if key in titles and may_be_identity(key)]
        # A source with no story stored yet (its first read: a cold cycle is a thousand of them)
        # has no page to compare with; one lookup of its index says so, before any key is split
        # (identity_url on every key of a 50-story read costs more than the lookup).
        if not candidates or conn.execute(_ANY_STORED, {"source": source}).first() is None:
            return set()
        wanted: dict[str, list[str]] = {}
        for key in candidates:
            if (base := fragment_free(key)) is not None:
                wanted.setdefault(base, []).append(key)
        # How many keys of this read are on each wanted page: only a key whose part before "#" is
        # that page can be (fragment_free gives either None or exactly that part).
        sharing = dict.fromkeys(wanted, 0)
        for key in titles:
            base = key.partition("#")[0]
            if base in sharing and fragment_free(key) == base:
                sharing[base] += 1
        wanted = {base: found for base, found in wanted.items() if sharing[base] == 1}
        found: set[str] = set()
        if not wanted:
            return found
        for condition in on_same_pages(conn, I.c.key, list(wanted)):
            pages = indexed(select(I.c.key, I.c.title).where(I.c.source == source, condition),
                            I, schema.IX_ITEMS_SOURCE_KEY)
            for stored, title in conn.execute(pages):
                for key in wanted.get(stored.partition("#")[0], ()):  # only page and page#...: on_page
                    if stored != key and same_title(title, titles[key]):
                        found.add(key)
        return found

    def _insert_items(self, conn: Connection, source: str, items: Sequence[Item], now: datetime) -> None:
        """Insert `items` with one executemany."""
        if items:
            conn.execute(insert(I), [
                dict(source=source, key=item.key, url=item.url, link=item.link, title=item.title,
                     summary=item.summary, published_at=item.published, categories="\n".join(item.categories),
                     image_url=item.image_url, first_seen_at=now) for item in items])

    def _insert_deliveries(self, conn: Connection, source: str,
                           groups: Mapping[tuple[str, str, str, str | None], Sequence[str]], now: datetime) -> None:
        """The deliveries of stories just stored: for each (target, recipient, state, reason), one
        INSERT ... SELECT over the stories' keys (per in_batches), in the order the stories were stored.
        The database reads the item ids itself: no row per delivery crosses from Python, and the
        ids need not be read back."""
        for (target, recipient, state, reason), keys in groups.items():
            for batch in in_batches(keys):
                conn.execute(_DELIVERIES_FOR_KEYS, {
                    "source": source, "keys": batch, "d_target": target,
                    "d_recipient": recipient, "d_state": state, "d_reason": reason, "d_now": now})

    def _save_source(self, conn: Connection, name: str, url: str, now: datetime, **values) -> None:
        self.unchanged.discard(name)  # this write is newer than a buffered unchanged poll
        values = {"url": url, "last_poll_at": now, **values}
        if conn.execute(_UPDATE_SOURCE, {"source_name": name, **values}).rowcount == 0:
            values.setdefault("initialised", False)
            values.setdefault("consecutive_failures", 0)
            conn.execute(insert(S), {"name": name, **values})

    def _save_target(self, name: str, **values) -> None:
        with self.engine.begin() as conn:
            if conn.execute(update(T).where(T.c.name == name).values(**values)).rowcount == 0:
                conn.execute(insert(T).values(name=name, **values))


def _blank_target(name: str) -> dict:
    return {"target": name, "sent_today": 0, "pending": 0, "failed": 0, "in_doubt": 0, "held": 0,
            "spent_today": 0.0, "spent_month": 0.0}


def _outbox_rows(targets: Sequence[str], recipients: Mapping[str, Sequence[str]]) -> list[tuple[str, str]]:
    """(target, recipient) for each delivery a new story needs: one per recipient where a target has
    recipients, else one with recipient "" (the target itself)."""
    return [(target, recipient) for target in targets for recipient in (recipients.get(target) or [""])]


def titles_of(items: Sequence[Item]) -> dict[str, str]:
    """Every key of a read -> its title, for known_keys."""
    return {item.key: item.title for item in items}

