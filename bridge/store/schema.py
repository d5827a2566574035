"""The tables, as SQLAlchemy Core objects (portable: SQLite today, PostgreSQL for replicas later).

This is the schema at the newest version: store/migrations.py creates it whole in a new database and
brings older databases up to it; a change here must come with a new upgrade step there.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timezone

from sqlalchemy import (
    Boolean, Column, DateTime, Float, ForeignKey, Index, Integer, MetaData, String, Table, Text,
    UniqueConstraint, event, text,
)
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes in, aware UTC datetimes out, on every backend (SQLite keeps no zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use an aware UTC datetime")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=timezone.utc)


metadata = MetaData()


def postgresql_options(index: Index, **options) -> Index:
    """Gives `index` its PostgreSQL-only options (`ops=`, `where=`: what `postgresql_ops=` and
    `postgresql_where=` would) just before it is created on PostgreSQL, not here: a dialect's
    keyword arguments make SQLAlchemy import that dialect to check them, and the PostgreSQL one is
    ~3 MB of a daemon that runs on SQLite. Every CREATE INDEX goes through the event (create_all,
    `index.create()`), so PostgreSQL's DDL is the same as with the keyword arguments."""

    @event.listens_for(index, "before_create")
    def _before_create(target: Index, connection, **_kw) -> None:
        if connection.dialect.name == "postgresql":
            for name, value in options.items():
                target.dialect_kwargs[f"postgresql_{name}"] = value

    return index


schema_version = Table(
    "schema_version", metadata,
    Column("version", Integer, nullable=False),
)

# Per-source polling state: conditional-GET validators, backoff, last outcome.
sources = Table(
    "sources", metadata,
    Column("name", String(200), primary_key=True),
    Column("url", Text, nullable=False),
    Column("etag", Text),
    Column("last_modified", Text),
    # True once a poll succeeded: from then on new items are posted (the first-run policy applied once).
    Column("initialised", Boolean, nullable=False, default=False),
    Column("last_poll_at", UTCDateTime),
    Column("last_success_at", UTCDateTime),
    Column("last_outcome", String(40)),
    Column("last_error", Text),
    Column("consecutive_failures", Integer, nullable=False, default=0),
    Column("next_poll_at", UTCDateTime),
    Column("last_items_seen", Integer),
    # The replica that took the source's latest poll (schema version 11): on PostgreSQL the replicas
    # share the polls, each taking a source by advancing next_poll_at (store/poll_leases.py).
    Column("polled_by", String(36)),
)

# Every story ever seen. (source, key) is its identity; url is the link identity (urls.identity_url) for cross-source dedupe.
items = Table(
    "items", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(200), nullable=False),
    Column("key", Text, nullable=False),
    Column("url", Text),
    Column("link", Text),
    Column("title", Text, nullable=False),
    Column("summary", Text, nullable=False, default=""),
    Column("published_at", UTCDateTime),
    Column("categories", Text, nullable=False, default=""),
    Column("image_url", Text),
    Column("first_seen_at", UTCDateTime, nullable=False),
    UniqueConstraint("source", "key", name="uq_items_source_key"),
    Index("ix_items_url", "url"),
)
# PostgreSQL reads "starts with" (LIKE 'page#%', store/fragments.py) through an index only when it
# compares bytes: text_pattern_ops. SQLite reads it as a range of the plain indexes above.
# The key's alone: with the source too, the planner would read equalities through it instead of
# uq_items_source_key.
for _name, _columns, _ops in (("ix_items_key_pattern", ("key",), {"key": "text_pattern_ops"}),
                              ("ix_items_url_pattern", ("url",), {"url": "text_pattern_ops"})):
    postgresql_options(Index(_name, *(items.c[c] for c in _columns)), ops=_ops).ddl_if(dialect="postgresql")

# The outbox: one row per (item, target, recipient). See model.DeliveryState for the states.
deliveries = Table(
    "deliveries", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("item_id", Integer, ForeignKey("items.id", ondelete="CASCADE"), nullable=False),
    Column("target", String(200), nullable=False),
    Column("state", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime),
    Column("remote_id", Text),
    Column("last_error", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    Column("cost", Float),  # USD, for sent posts (schema version 2)
    # Whom it goes to, for a target that sends each story to several recipients (WhatsApp); "" for
    # every other target, so (item_id, target, recipient) stays unique on every backend (schema version 3).
    Column("recipient", String(64), nullable=False, default="", server_default=""),
    # The post as first sent (schema version 4): every re-send uses these bytes, never a new
    # composition, so a changed template cannot turn X's duplicate check off.
    Column("post_text", Text),
    Column("post_image_url", Text),
    Column("post_alt_text", Text),
    Column("first_attempt_at", UTCDateTime),
    Column("last_attempt_at", UTCDateTime),
    # Who claimed it (a replicas.id) and until when the claim holds (schema version 9): on
    # PostgreSQL only a `sending` row whose lease ran out (or whose replica is gone) is in doubt; a
    # live peer's post in flight is never touched. NULL on SQLite, whose run lock allows one process.
    Column("claimed_by", String(36)),
    Column("lease_until", UTCDateTime),
    # The article link this delivery holds on its target (schema version 11): a digest of the link's
    # identity (outbox.link_key), set when a pending delivery is claimed if its link names one article
    # of its source. uq_deliveries_carried_link lets one delivery per (target, recipient) hold a link
    # while it is sending, sent or in doubt, so two sources' copies cannot both go out.
    Column("link_key", String(64)),
    UniqueConstraint("item_id", "target", "recipient", name="uq_deliveries_item_target_recipient"),
    Index("ix_deliveries_state_target", "state", "target"),
    Index("ix_deliveries_target_sent_at", "target", "sent_at"),
)

CARRIED_LINK_WHERE = "link_key IS NOT NULL AND state IN ('sending', 'sent', 'in_doubt')"
"""The deliveries that hold their link: those whose story is (or may be) on the account. A failed,
skipped, pending or held copy holds nothing, so it never blocks another source's copy."""
postgresql_options(Index("uq_deliveries_carried_link", deliveries.c.target, deliveries.c.recipient, deliveries.c.link_key,
                         unique=True, sqlite_where=text(CARRIED_LINK_WHERE)), where=text(CARRIED_LINK_WHERE))

# What a target's network billed besides its posts (schema version 6): X charges per alt-text call
# and per credentials check. The daily budget counts these with the posts' own costs.
charges = Table(
    "charges", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("target", String(200), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("amount", Float, nullable=False),
    Column("what", String(64), nullable=False),
    Index("ix_charges_target_at", "target", "at"),
)

# Facts about this database itself (schema version 4), e.g. its random installation id, which makes
# idempotency keys unique across installations: a recreated database never reuses an old key.
meta = Table(
    "meta", metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# The processes running `bridge run` on this database (schema version 8): each registers at start,
# renews its heartbeat and leaves at stop, so `bridge status` says who runs where, with which settings.
# The ground for several replicas on one PostgreSQL (issue 13); on SQLite there is one at most.
replicas = Table(
    "replicas", metadata,
    Column("id", String(36), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("version", String(32), nullable=False),
    Column("settings", String(16), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("heartbeat_at", UTCDateTime, nullable=False),
)

# Running totals (schema version 7), kept by triggers on items and deliveries (migrations.py), so
# `bridge status` and /metrics read a handful of rows instead of counting years of history.
item_counts = Table(
    "item_counts", metadata,
    Column("source", String(200), primary_key=True),
    Column("stored", Integer, nullable=False),
)
delivery_counts = Table(
    "delivery_counts", metadata,
    Column("target", String(200), primary_key=True),
    Column("state", String(20), primary_key=True),
    Column("deliveries", Integer, nullable=False),
)

# The indexes the hot queries name (SQLite's INDEXED BY, see store/db.py), so that no statistics,
# missing or skewed, can send them scanning a table's whole history. SQLite names the index of a
# UNIQUE constraint itself: sqlite_autoindex_<table>_<n>, n counting the table's unique constraints.
IX_ITEMS_SOURCE_KEY = "sqlite_autoindex_items_1"
IX_ITEMS_URL = "ix_items_url"
IX_DELIVERIES_ITEM = "sqlite_autoindex_deliveries_1"
IX_DELIVERIES_STATE_TARGET = "ix_deliveries_state_target"
IX_DELIVERIES_TARGET_SENT_AT = "ix_deliveries_target_sent_at"
IX_CHARGES_TARGET_AT = "ix_charges_target_at"


def indexed(query, table: Table, index: str):
    """`query` reading `table` through `index` on SQLite (other databases ignore the hint)."""
    return query.with_hint(table, f"INDEXED BY {index}", "sqlite")


IN_LIST_BATCH = 500
"""Values per IN (...) list: SQLite's bound-parameter limit is 999 in older builds."""


def in_batches(values: Sequence) -> Iterator[list]:
    """`values` in lists of at most IN_LIST_BATCH, for one IN (...) each."""
    for start in range(0, len(values), IN_LIST_BATCH):
        yield list(values[start:start + IN_LIST_BATCH])


# Per-target state that outlives a restart: a pause the operator must clear, a rate-limit hold.
targets = Table(
    "targets", metadata,
    Column("name", String(200), primary_key=True),
    Column("paused_reason", Text),
    Column("paused_at", UTCDateTime),
    Column("hold_until", UTCDateTime),
)
