"""The outbox: every read and write of deliveries (and of what networks billed), for the
Repository (store/repo.py), which inherits it; with repo.py the only place that reads and writes
the tables. Every write is one short transaction.

Times are passed in by the caller (who owns the clock), so tests can move time without sleeping.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from datetime import datetime
from typing import Iterator

import structlog
from sqlalchemy import Connection, Engine, and_, case, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from bridge.model import Delivery, DeliveryState, FrozenPost, Item
from bridge.store import schema
from bridge.store.db import READ_ONLY
from bridge.store.schema import (
    IX_CHARGES_TARGET_AT, IX_DELIVERIES_ITEM, IX_DELIVERIES_STATE_TARGET, IX_DELIVERIES_TARGET_SENT_AT, IX_ITEMS_URL,
    in_batches, indexed,
)
from bridge.store.fragments import on_page, on_same_pages, same_title
from bridge.urls import fragment_free, names_a_page

I, D, M, C, R = schema.items, schema.deliveries, schema.meta, schema.charges, schema.replicas
CARRIED = (DeliveryState.SENT.value, DeliveryState.SENDING.value, DeliveryState.IN_DOUBT.value)
"""States in which a delivery has (or may have) put its story on the account."""
WAITING = (DeliveryState.PENDING.value, DeliveryState.SENDING.value, DeliveryState.IN_DOUBT.value,
           DeliveryState.HELD.value)
"""States of a delivery not settled yet: never pruned (store/maintenance.py)."""
PRUNED = "pruned: older than [bridge] keep, its text is gone"
"""The note a failed delivery keeps once pruned: with no text left, it cannot be retried."""
STOPPED_WHILE_POSTING = "outcome unknown: the bridge stopped while posting"
LEASE_RAN_OUT = "outcome unknown: the replica posting it stopped or lost touch (its claim's lease ran out)"


def shared_store(engine: Engine) -> bool:
    """True where several replicas share the store (PostgreSQL): claims are leased and each target's
    pacing decision is taken under a lock of the cluster. SQLite's run lock allows one process."""
    return engine.dialect.name == "postgresql"

log = structlog.get_logger("bridge")


@contextmanager
def _same(conn: Connection) -> Iterator[Connection]:
    """A transaction already open (a target's turn), used as it is."""
    yield conn


def link_key(url: str | None) -> str | None:
    """What a delivery of a story with this link (urls.identity_url) holds on its target, or None for
    a link that names no article (a site's home page). A digest: an index entry of a fixed size,
    however long the URL (PostgreSQL refuses B-tree entries over a third of a page)."""
    if not url or not names_a_page(url):
        return None
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


class Outbox:
    """Deliveries through their states, posts frozen and settled, spend. Needs `self.engine`."""

    engine: Engine

    def due_deliveries(self, target: str, now: datetime, limit: int, *, in_doubt: bool = True) -> list[Delivery]:
        """Deliveries whose time has come, oldest story first: pending ones, and (with `in_doubt`)
        deliveries in doubt whose next check is due (those without one wait for the operator)."""
        story_time = func.coalesce(I.c.published_at, I.c.first_seen_at)
        due_now = or_(D.c.next_attempt_at.is_(None), D.c.next_attempt_at <= now)
        # The states as an IN list on (state, target): the index reaches the few rows waiting,
        # never the target's history.
        if in_doubt:
            states = and_(D.c.state.in_([DeliveryState.PENDING.value, DeliveryState.IN_DOUBT.value]),
                          or_(D.c.state == DeliveryState.PENDING.value, D.c.next_attempt_at.is_not(None)))
        else:
            states = D.c.state.in_([DeliveryState.PENDING.value])
        query = indexed(
            select(D, I.c.source, I.c.key, I.c.title, I.c.link, I.c.url, I.c.summary,
                   I.c.published_at, I.c.categories, I.c.image_url)
            .join(I, I.c.id == D.c.item_id)
            .where(D.c.target == target, states, due_now)
            .order_by(story_time, D.c.id).limit(limit), D, IX_DELIVERIES_STATE_TARGET)
        with self.engine.connect().execution_options(**READ_ONLY) as conn:
            return [_delivery(row) for row in conn.execute(query).mappings()]

    @contextmanager
    def target_turn(self, target: str) -> Iterator[Connection | None]:
        """One replica at a time decides whether `target` may post and claims its delivery: on
        PostgreSQL a transaction holding a transaction-level advisory lock keyed by the target, in
        which the claim is written (pass the connection to claim()); the lock ends with its commit,
        so the next replica's pacing reads see this claim. Only ever one target's lock at a time, so
        two turns cannot deadlock. SQLite: None (one process, one delivery round: nothing to share)."""
        if not shared_store(self.engine):
            yield None
            return
        from bridge.store.lock import hold_for_transaction

        with self.engine.begin() as conn:
            hold_for_transaction(conn, f"target {target}")
            yield conn

    def claim(self, delivery: Delivery, now: datetime, post: FrozenPost, *, attempt: bool = True,
              claimer: str | None = None, lease_until: datetime | None = None,
              conn: Connection | None = None) -> bool:
        """pending (or in_doubt) -> sending, committed before the API call, with the post frozen:
        the first claim stores its text, photo and cost; later ones keep what is stored. `attempt`
        False for a claim that only looks the post up on the account. False if the delivery is no
        longer in the state it was read in (the operator, or another replica, changed it meanwhile):
        the UPDATE names the state it was read in, and PostgreSQL re-checks that under the row's
        lock, so of two replicas claiming one delivery exactly one wins. `claimer` and
        `lease_until` record who holds it and until when (see recover_in_doubt). `conn`: write in
        that transaction (a target_turn's)."""
        first = D.c.post_text.is_(None)
        values = dict(
            state=DeliveryState.SENDING.value, updated_at=now,
            post_text=func.coalesce(D.c.post_text, post.text),
            post_image_url=case((first, post.image_url), else_=D.c.post_image_url),
            post_alt_text=case((first, post.alt_text), else_=D.c.post_alt_text),
            cost=case((first, post.cost), else_=D.c.cost),
            first_attempt_at=func.coalesce(D.c.first_attempt_at, now),
        )
        if attempt:
            values["last_attempt_at"] = now
        if claimer is not None:
            values.update(claimed_by=claimer, lease_until=lease_until)
        try:
            if conn is not None:
                with conn.begin_nested():  # a savepoint: a link already taken leaves the turn usable
                    return self._claim_in(conn, delivery, values)
            with self.engine.begin() as own:
                return self._claim_in(own, delivery, values)
        except IntegrityError:
            # uq_deliveries_carried_link: another source's copy of this article took the link on this
            # target after same_story_elsewhere looked (two sources, two replicas, the same moment).
            self._skip_taken_link(delivery, now, conn)
            return False

    def _claim_in(self, conn: Connection, delivery: Delivery, values: dict) -> bool:
        if delivery.state is DeliveryState.PENDING:  # one in doubt keeps what it holds: it may be out
            values = {**values, "link_key": self._link_to_hold(conn, delivery)}
        statement = update(D).where(D.c.id == delivery.id, D.c.state == delivery.state.value).values(**values)
        return conn.execute(statement).rowcount == 1

    def _link_to_hold(self, conn: Connection, delivery: Delivery) -> str | None:
        """The link a pending delivery takes on its target when claimed: only an article's link
        (link_key) that no other story of the same source shares (a listing every item points to
        names no article; within one source the story key alone decides, see same_story_elsewhere)."""
        key = link_key(delivery.item.url)
        if key is None:
            return None
        stories = conn.execute(indexed(select(I.c.id).where(I.c.url == delivery.item.url,
                                                           I.c.source == delivery.source).limit(2),
                                       I, IX_ITEMS_URL)).all()
        return key if len(stories) <= 1 else None

    def _skip_taken_link(self, delivery: Delivery, now: datetime, turn: Connection | None = None) -> None:
        key = link_key(delivery.item.url)
        with (_same(turn) if turn is not None else self.engine.begin()) as conn:
            holder = conn.execute(
                select(D.c.id, I.c.source).join(I, I.c.id == D.c.item_id)
                .where(D.c.target == delivery.target, D.c.recipient == delivery.recipient, D.c.link_key == key,
                       D.c.state.in_(CARRIED))).first()
            via = f"via {holder.source} (delivery {holder.id})" if holder else "via another source"
            reason = f"same link already delivered {via}"
            conn.execute(update(D).where(D.c.id == delivery.id, D.c.state == delivery.state.value)
                         .values(state=DeliveryState.SKIPPED.value, last_error=reason, updated_at=now))
        log.info("post skipped: same story already delivered", outcome="skipped", reason=reason,
                 target=delivery.target, source=delivery.source, delivery=delivery.id, url=delivery.item.link)

    def renew_lease(self, delivery_id: int, claimer: str, lease_until: datetime) -> bool:
        """A post that takes longer than its lease keeps it: False if the claim is no longer ours
        (its lease ran out and another replica put it in doubt)."""
        with self.engine.begin() as conn:
            return conn.execute(
                update(D).where(D.c.id == delivery_id, D.c.claimed_by == claimer,
                                D.c.state == DeliveryState.SENDING.value).values(lease_until=lease_until)
            ).rowcount == 1

    def record_attempt(self, delivery_id: int, now: datetime) -> None:
        """A claimed delivery is about to be sent again (after looking for it found nothing)."""
        with self.engine.begin() as conn:
            conn.execute(update(D).where(D.c.id == delivery_id).values(last_attempt_at=now, updated_at=now))

    def mark_sent(self, delivery_id: int, remote_id: str | None, now: datetime, note: str | None = None) -> None:
        """Sent: the cost stays what was stored when the post was frozen (an "already posted"
        answer settles a post that was paid for then)."""
        self._finish(delivery_id, now, state=DeliveryState.SENT, remote_id=remote_id, sent_at=now,
                     last_error=note, next_attempt_at=None, attempts=D.c.attempts + 1)

    def mark_failed(self, delivery_id: int, error: str, now: datetime, counted: bool = True) -> None:
        self._finish(delivery_id, now, state=DeliveryState.FAILED, last_error=error, next_attempt_at=None,
                     attempts=D.c.attempts + (1 if counted else 0))

    def mark_retry(self, delivery_id: int, error: str, retry_at: datetime, now: datetime, counted: bool) -> None:
        self._finish(delivery_id, now, state=DeliveryState.PENDING, last_error=error, next_attempt_at=retry_at,
                     attempts=D.c.attempts + (1 if counted else 0))

    def mark_in_doubt(self, delivery_id: int, reason: str, next_check_at: datetime | None, now: datetime,
                      counted: bool = True) -> None:
        """The post may be on the account. `next_check_at` None: only the operator can settle it."""
        self._finish(delivery_id, now, state=DeliveryState.IN_DOUBT, last_error=reason,
                     next_attempt_at=next_check_at, attempts=D.c.attempts + (1 if counted else 0))

    def mark_skipped(self, delivery_id: int, reason: str, now: datetime) -> None:
        self._finish(delivery_id, now, state=DeliveryState.SKIPPED, last_error=reason, next_attempt_at=None)

    def release(self, delivery_id: int, now: datetime) -> None:
        """sending -> pending untouched (nothing was sent: e.g. the target is paused)."""
        self._finish(delivery_id, now, state=DeliveryState.PENDING)

    def postpone(self, delivery_id: int, until: datetime, now: datetime) -> None:
        """A delivery in doubt is looked for on the account only once the network has had time to show it."""
        with self.engine.begin() as conn:
            conn.execute(update(D).where(D.c.id == delivery_id, D.c.state == DeliveryState.IN_DOUBT.value)
                         .values(next_attempt_at=until, updated_at=now))

    def recover_in_doubt(self, now: datetime) -> int:
        """Deliveries still `sending` whose post was interrupted between "about to call the network"
        and its answer become in doubt, due now, settled by the same rules as any other post in doubt.

        SQLite: at start-up, in the process that holds the run lock, every `sending` row is such a
        leftover. PostgreSQL (several replicas): only a claim whose lease ran out, or whose replica
        is no longer live (it left, or its heartbeat stopped), or that has no lease (claimed before
        leases, or by hand); a live peer's post in flight is never touched. Safe to run by every
        replica at any time: the UPDATE re-checks each row under its lock."""
        sending = D.c.state == DeliveryState.SENDING.value
        if not shared_store(self.engine):
            where, note = sending, STOPPED_WHILE_POSTING
        else:
            from bridge.store.replicas import REPLICA_GONE_AFTER

            live = select(R.c.id).where(R.c.heartbeat_at >= now - REPLICA_GONE_AFTER)
            where = and_(sending, or_(D.c.lease_until.is_(None), D.c.lease_until < now,
                                      D.c.claimed_by.is_(None), D.c.claimed_by.not_in(live.scalar_subquery())))
            note = LEASE_RAN_OUT
        with self.engine.begin() as conn:
            return conn.execute(
                update(D).where(where)
                .values(state=DeliveryState.IN_DOUBT.value, last_error=note, next_attempt_at=now, updated_at=now,
                        claimed_by=None, lease_until=None)
            ).rowcount

    def same_story_elsewhere(self, delivery: Delivery) -> str | None:
        """Why this delivery's story is already on its target through ANOTHER source (the same
        article in two feeds), or None. Only links that name one article count: not a site's home
        page, not a link that several stories of this source share (a listing or podcast page every
        item points to). Within one source the story key alone decides. The same title on the same
        page under another #fragment is the same article too (bridge/store/fragments.py)."""
        return self.carried_elsewhere(delivery.item.url, delivery.source, delivery.target, delivery.recipient,
                                      title=delivery.item.title)

    def carried_elsewhere(self, url: str | None, source: str, target: str, recipient: str = "",
                          stories_with_url: int = 1, title: str | None = None) -> str | None:
        """Read only: why a story of `source` with this link is already on `target` through another
        source (see same_story_elsewhere), or None. `stories_with_url`: how many stories of `source`
        carry the link, counting any not stored yet (a rehearsal asks before storing)."""
        if not url or not names_a_page(url):
            return None
        with self.engine.connect().execution_options(**READ_ONLY) as conn:
            # Through the link's index, in two steps, so no statistics can turn a join round
            # (every post of the target first): the few stories with this link, then the
            # deliveries of those from other sources, by (item_id, target).
            stories = conn.execute(indexed(select(I.c.id, I.c.source).where(I.c.url == url), I, IX_ITEMS_URL)).all()
            if max(sum(row.source == source for row in stories), stories_with_url) > 1:
                return None
            page = fragment_free(url) if title else None
            if page is not None:  # the same title on the same page, linked with another #fragment
                stories += [row for condition in on_same_pages(conn, I.c.url, [page])
                            for row in conn.execute(indexed(select(I.c.id, I.c.source, I.c.url, I.c.title)
                                                            .where(condition), I, IX_ITEMS_URL))
                            if row.url != url and on_page(row.url, page) and row.source != source
                            and same_title(row.title, title)]
            copies = {row.id: row.source for row in stories if row.source != source}
            ids, other = list(copies), None
            for batch in in_batches(ids):
                other = conn.execute(indexed(
                    select(D.c.item_id, D.c.id).where(D.c.item_id.in_(batch), D.c.target == target,
                                                      D.c.recipient == recipient, D.c.state.in_(CARRIED))
                    .order_by(D.c.id).limit(1), D, IX_DELIVERIES_ITEM)).first()
                if other:
                    break
        if other is None:
            return None
        return f"same link already delivered via {copies[other.item_id]} (delivery {other.id})"

    def installation_id(self) -> str:
        """This database's random id (see schema.meta), for idempotency keys."""
        if not hasattr(self, "_installation_id"):
            with self.engine.connect().execution_options(**READ_ONLY) as conn:
                self._installation_id = conn.execute(
                    select(M.c.value).where(M.c.name == "installation_id")).scalar() or ""
        return self._installation_id

    def requeue(self, delivery_id: int, now: datetime) -> bool:
        """failed or in doubt -> pending, now (bridge retry). A post in doubt is sent again with the
        text it was first sent with: the operator looked and it is not on the account. A failed
        delivery pruned of its story's text is not re-queued (it would post an empty story)."""
        retryable = (DeliveryState.FAILED.value, DeliveryState.IN_DOUBT.value)
        with self.engine.begin() as conn:
            return conn.execute(
                update(D).where(D.c.id == delivery_id, D.c.state.in_(retryable),
                                or_(D.c.last_error.is_(None), D.c.last_error != PRUNED))
                .values(state=DeliveryState.PENDING.value, next_attempt_at=None, attempts=0, updated_at=now)
            ).rowcount == 1

    def skip(self, delivery_id: int, reason: str, now: datetime) -> bool:
        """pending -> skipped (bridge skip)."""
        with self.engine.begin() as conn:
            return conn.execute(
                update(D).where(D.c.id == delivery_id, D.c.state == DeliveryState.PENDING.value)
                .values(state=DeliveryState.SKIPPED.value, last_error=reason, updated_at=now)
            ).rowcount == 1

    def resolve_sent(self, delivery_id: int, now: datetime) -> bool:
        """in doubt -> sent (bridge resolve ID --sent): the operator found the post on the account."""
        with self.engine.begin() as conn:
            return conn.execute(
                update(D).where(D.c.id == delivery_id, D.c.state == DeliveryState.IN_DOUBT.value)
                .values(state=DeliveryState.SENT.value, sent_at=func.coalesce(D.c.last_attempt_at, now),
                        next_attempt_at=None, last_error="marked sent by the operator (`bridge resolve`)",
                        updated_at=now)
            ).rowcount == 1

    def sent_since(self, target: str, since: datetime, *, in_flight: bool = False) -> int:
        """Posts sent to `target` since `since`: the rows of (target, sent_at) after it, not the
        target's history. `in_flight`: and those being sent now or in doubt (tried since `since`),
        which the pacing counts: a peer replica's post in flight, or one that may be on the account,
        is one of the day's posts (as the budget counts them). One statement, so one snapshot: a post
        turning from sending to sent between two reads is counted once, not never."""
        sent = indexed(select(func.count()).select_from(D).where(
            D.c.target == target, D.c.sent_at >= since, D.c.state == DeliveryState.SENT.value),
            D, IX_DELIVERIES_TARGET_SENT_AT)
        if in_flight:
            sending = indexed(select(func.count()).select_from(D).where(
                D.c.state.in_([DeliveryState.IN_DOUBT.value, DeliveryState.SENDING.value]), D.c.target == target,
                D.c.last_attempt_at >= since), D, IX_DELIVERIES_STATE_TARGET)
            sent = select(sent.scalar_subquery() + sending.scalar_subquery())
        with self.engine.connect().execution_options(**READ_ONLY) as conn:
            return conn.execute(sent).scalar_one()

    def nth_latest_sent_at(self, target: str, n: int) -> datetime | None:
        """When the n-th most recent post to `target` was sent (max_per_hour: when the window frees)."""
        with self.engine.connect().execution_options(**READ_ONLY) as conn:
            # Backwards along (target, sent_at) from the newest: n rows read, not the history.
            return conn.execute(indexed(
                select(D.c.sent_at).where(D.c.target == target, D.c.state == DeliveryState.SENT.value,
                                          D.c.sent_at.is_not(None))
                .order_by(D.c.sent_at.desc()).limit(1).offset(n - 1), D, IX_DELIVERIES_TARGET_SENT_AT)
            ).scalar()

    def spent_since(self, target: str, since: datetime) -> float:
        """USD spent on posts to `target` since `since`: those sent, and those in doubt or in flight
        (they may have been billed; the budget must not be passed by guessing they were not)."""
        cost = func.coalesce(func.sum(D.c.cost), 0.0)
        # Three sums, each on its own index: sent ones by time, the few in doubt or in flight by
        # state, the other billed calls; in one statement, so one snapshot (a post turning from
        # sending to sent while they are read is counted once, not never).
        sent = indexed(select(cost).where(D.c.target == target, D.c.sent_at >= since,
                                          D.c.state == DeliveryState.SENT.value), D, IX_DELIVERIES_TARGET_SENT_AT)
        maybe = indexed(select(cost).where(
            D.c.state.in_([DeliveryState.IN_DOUBT.value, DeliveryState.SENDING.value]), D.c.target == target,
            D.c.last_attempt_at >= since), D, IX_DELIVERIES_STATE_TARGET)
        charged = indexed(select(func.coalesce(func.sum(C.c.amount), 0.0)).where(C.c.target == target, C.c.at >= since),
                          C, IX_CHARGES_TARGET_AT)
        with self.engine.connect().execution_options(**READ_ONLY) as conn:
            row = conn.execute(select(sent.scalar_subquery(), maybe.scalar_subquery(), charged.scalar_subquery())).one()
            return float(row[0]) + float(row[1]) + float(row[2])

    def add_charge(self, target: str, amount: float, what: str, now: datetime) -> None:
        """A billed call besides the post itself (X's alt text, its credentials check)."""
        if amount:
            with self.engine.begin() as conn:
                conn.execute(insert(C).values(target=target, at=now, amount=amount, what=what))

    def _charged_since(self, conn: Connection, target: str, since: datetime) -> float:
        return float(conn.execute(indexed(select(func.coalesce(func.sum(C.c.amount), 0.0))
                                          .where(C.c.target == target, C.c.at >= since),
                                          C, IX_CHARGES_TARGET_AT)).scalar_one())

    def last_sent_at(self, target: str, *, in_flight: bool = False) -> datetime | None:
        """When `target` last posted; `in_flight`: counting a post being sent now from its claim
        (one statement, one snapshot, as in sent_since)."""
        # The last entry of (target, sent_at): one index step (NULLs sort first, so max skips them).
        last = indexed(select(func.max(D.c.sent_at)).where(D.c.target == target), D, IX_DELIVERIES_TARGET_SENT_AT)
        with self.engine.connect().execution_options(**READ_ONLY) as conn:
            if not in_flight:
                return conn.execute(last).scalar()
            sending = indexed(select(func.max(D.c.last_attempt_at)).where(
                D.c.state == DeliveryState.SENDING.value, D.c.target == target), D, IX_DELIVERIES_STATE_TARGET)
            row = conn.execute(select(last.scalar_subquery(), sending.scalar_subquery())).one()
            return max(filter(None, row), default=None)

    def _finish(self, delivery_id: int, now: datetime, state: DeliveryState, **values) -> None:
        """The end of a claim (or an operator's change): the lease goes with it."""
        with self.engine.begin() as conn:
            conn.execute(update(D).where(D.c.id == delivery_id).values(
                state=state.value, updated_at=now, claimed_by=None, lease_until=None, **values))


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
        frozen=None if row["post_text"] is None else FrozenPost(
            text=row["post_text"], image_url=row["post_image_url"], alt_text=row["post_alt_text"] or "",
            cost=row["cost"] or 0.0),
        first_attempt_at=row["first_attempt_at"], last_attempt_at=row["last_attempt_at"],
    )
