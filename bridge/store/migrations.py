"""Versioned schema changes.

A new database is created whole from schema.py and stamped with the latest version. An older one
is brought up step by step: UPGRADES[N] takes a database from version N-1 to N, in the same
transaction as the version bump. Steps are never edited once released; a change to schema.py comes
with a new step, so an upgrade keeps every seen item.
"""

from __future__ import annotations

import re
import secrets
from typing import Callable

from sqlalchemy import Connection, Engine, bindparam, column, func, insert, inspect, select, table, text, update
from sqlalchemy.exc import SQLAlchemyError

from bridge.errors import DatabaseError
from bridge.store import schema
from bridge.urls import identity_url, normal_escapes


def _v2_delivery_cost(connection: Connection) -> None:
    """What each sent post cost (USD), for the daily budget and `bridge status`."""
    connection.execute(text("ALTER TABLE deliveries ADD COLUMN cost FLOAT"))


_V3_SQLITE_DELIVERIES = """
CREATE TABLE deliveries (
    id INTEGER NOT NULL,
    item_id INTEGER NOT NULL,
    target VARCHAR(200) NOT NULL,
    state VARCHAR(20) NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at DATETIME,
    remote_id TEXT,
    last_error TEXT,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL,
    sent_at DATETIME,
    cost FLOAT,
    recipient VARCHAR(64) DEFAULT '' NOT NULL,
    PRIMARY KEY (id),
    CONSTRAINT uq_deliveries_item_target_recipient UNIQUE (item_id, target, recipient),
    FOREIGN KEY(item_id) REFERENCES items (id) ON DELETE CASCADE
)"""
_V2_DELIVERY_COLUMNS = ("id, item_id, target, state, attempts, next_attempt_at, remote_id, last_error, "
                        "created_at, updated_at, sent_at, cost")


def _v3_delivery_recipient(connection: Connection) -> None:
    """One delivery per recipient (WhatsApp): a recipient column, "" for every other target, and
    uniqueness over (item_id, target, recipient) instead of (item_id, target)."""
    if connection.dialect.name != "sqlite":
        connection.execute(text("ALTER TABLE deliveries ADD COLUMN recipient VARCHAR(64) DEFAULT '' NOT NULL"))
        connection.execute(text("ALTER TABLE deliveries DROP CONSTRAINT uq_deliveries_item_target"))
        connection.execute(text("ALTER TABLE deliveries ADD CONSTRAINT uq_deliveries_item_target_recipient "
                                "UNIQUE (item_id, target, recipient)"))
        return
    # SQLite cannot drop a constraint: copy the rows (ids kept) into a new table. Nothing references
    # deliveries, so renaming and dropping it leaves every other table as it was.
    connection.execute(text("ALTER TABLE deliveries RENAME TO deliveries_v2"))
    connection.execute(text("DROP INDEX IF EXISTS ix_deliveries_state_target"))
    connection.execute(text("DROP INDEX IF EXISTS ix_deliveries_target_sent_at"))
    connection.execute(text(_V3_SQLITE_DELIVERIES))
    connection.execute(text(f"INSERT INTO deliveries ({_V2_DELIVERY_COLUMNS}, recipient) "
                            f"SELECT {_V2_DELIVERY_COLUMNS}, '' FROM deliveries_v2"))
    connection.execute(text("DROP TABLE deliveries_v2"))
    connection.execute(text("CREATE INDEX ix_deliveries_state_target ON deliveries (state, target)"))
    connection.execute(text("CREATE INDEX ix_deliveries_target_sent_at ON deliveries (target, sent_at)"))


def _v4_frozen_posts_and_installation_id(connection: Connection) -> None:
    """The post as first sent, kept with its delivery (so re-sends are identical), when it was tried,
    and a random installation id for idempotency keys."""
    for name, kind in (("post_text", "TEXT"), ("post_image_url", "TEXT"), ("post_alt_text", "TEXT"),
                         ("first_attempt_at", _datetime_type(connection)),
                         ("last_attempt_at", _datetime_type(connection))):
        connection.execute(text(f"ALTER TABLE deliveries ADD COLUMN {name} {kind}"))
    schema.meta.create(connection, checkfirst=True)
    if connection.execute(select(schema.meta.c.value).where(schema.meta.c.name == INSTALLATION_ID)).first() is None:
        _stamp_installation_id(connection)


def _datetime_type(connection: Connection) -> str:
    return "DATETIME" if connection.dialect.name == "sqlite" else "TIMESTAMP WITHOUT TIME ZONE"


INSTALLATION_ID = "installation_id"


def _stamp_installation_id(connection: Connection) -> None:
    connection.execute(insert(schema.meta).values(name=INSTALLATION_ID, value=secrets.token_hex(8)))


# The columns this step reads, declared here: the step must keep working whatever schema.py becomes.
_ITEMS_KEYS = table("items", column("id"), column("source"), column("key"), column("url"))
_UPDATE_BATCH = 1_000


def url_identity_keys(connection: Connection) -> None:
    """Keys and urls become URL identities (urls.identity_url: no scheme, no "www."), as the readers
    now make them, so a known story is still known under its new key and posted no second time.

    Only a key that is an http(s) URL changes (a guid "12345" or "kemenpora:detail:1" stays).
    When several rows of one source reduce to one key (a site already moved once and its stories
    were stored twice), the oldest row (lowest id) takes it and the others keep their old key:
    they are duplicates already seen, and every row and its deliveries are kept. Done row by row
    in Python, not in SQL, so the rule is exactly the readers' on SQLite and PostgreSQL alike.
    """
    _rekey(connection, identity_url, lambda url: identity_url(url) or url)


def url_spellings(connection: Connection) -> None:
    """Keys and urls that are URL identities take the one spelling of escapes identity_url now
    gives (urls.normal_escapes: %2f -> %2F, %7e -> ~, ü -> %C3%BC), so a story stored under one
    spelling is still known when its feed writes the other.

    Only a value that is already a URL identity (identity_url's own output, a host with a dot or
    a port first) is respelt, and only its escapes: a guid that is not a URL ("12345",
    "tag:x,2026:1", "post/ü") stays exactly as stored, as the readers keep it. Collisions: as
    url_identity_keys."""
    _rekey(connection, _respelt, lambda url: _respelt(url) or url)
    if connection.dialect.name == "postgresql":  # "starts with" through an index (schema.py)
        for index in schema.items.indexes:
            if index.name.endswith("_pattern"):
                index.create(connection, checkfirst=True)


def _respelt(value: str) -> str | None:
    host, rest = _HOST_AND_REST.match(value).groups()
    if "://" in value or not rest or ("." not in host and ":" not in host):
        return None
    if identity_url(f"http://{host}/") != host:  # not a host as identity_url writes one
        return None
    return host + normal_escapes(rest)


_HOST_AND_REST = re.compile(r"([^/?#]*)(.*)", re.DOTALL)


def _rekey(connection: Connection, new_key: Callable[[str], str | None], new_url: Callable[[str], str]) -> None:
    rows = connection.execute(select(_ITEMS_KEYS).order_by(_ITEMS_KEYS.c.id)).all()
    # Every key as stored: a new key is only given when no row holds it, so no UPDATE can break
    # uq_items_source_key whatever order they run in (an identity never equals an old URL key,
    # which has a scheme, so the keys given up need not be released).
    taken = {(row.source, row.key) for row in rows}
    changes = []
    for row in rows:
        key = row.key
        identity = new_key(key)
        if identity and identity != key and (row.source, identity) not in taken:
            taken.add((row.source, identity))
            key = identity
        url = new_url(row.url) if row.url else row.url
        if key != row.key or url != row.url:
            changes.append({"b_id": row.id, "b_key": key, "b_url": url})
    statement = (update(_ITEMS_KEYS).where(_ITEMS_KEYS.c.id == bindparam("b_id"))
                 .values(key=bindparam("b_key"), url=bindparam("b_url")))
    for start in range(0, len(changes), _UPDATE_BATCH):
        connection.execute(statement, changes[start:start + _UPDATE_BATCH])


def _v6_charges(connection: Connection) -> None:
    """What a network bills besides posts (X's alt-text and credentials calls), for the budget."""
    schema.charges.create(connection, checkfirst=True)


def _v8_replicas(connection: Connection) -> None:
    """Who runs `bridge run` on this database (store/replicas.py)."""
    schema.replicas.create(connection, checkfirst=True)


_V7_SQLITE_TRIGGERS = (
    """CREATE TRIGGER IF NOT EXISTS tr_items_counted AFTER INSERT ON items BEGIN
        INSERT INTO item_counts (source, stored) VALUES (NEW.source, 1)
        ON CONFLICT (source) DO UPDATE SET stored = stored + 1; END""",
    """CREATE TRIGGER IF NOT EXISTS tr_items_uncounted AFTER DELETE ON items BEGIN
        UPDATE item_counts SET stored = stored - 1 WHERE source = OLD.source; END""",
    """CREATE TRIGGER IF NOT EXISTS tr_deliveries_counted AFTER INSERT ON deliveries BEGIN
        INSERT INTO delivery_counts (target, state, deliveries) VALUES (NEW.target, NEW.state, 1)
        ON CONFLICT (target, state) DO UPDATE SET deliveries = deliveries + 1; END""",
    """CREATE TRIGGER IF NOT EXISTS tr_deliveries_recounted AFTER UPDATE OF state ON deliveries
        WHEN OLD.state <> NEW.state BEGIN
        UPDATE delivery_counts SET deliveries = deliveries - 1 WHERE target = OLD.target AND state = OLD.state;
        INSERT INTO delivery_counts (target, state, deliveries) VALUES (NEW.target, NEW.state, 1)
        ON CONFLICT (target, state) DO UPDATE SET deliveries = deliveries + 1; END""",
    """CREATE TRIGGER IF NOT EXISTS tr_deliveries_uncounted AFTER DELETE ON deliveries BEGIN
        UPDATE delivery_counts SET deliveries = deliveries - 1 WHERE target = OLD.target AND state = OLD.state; END""",
)
_V7_POSTGRESQL_TRIGGERS = (
    """CREATE OR REPLACE FUNCTION bridge_count_items() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO item_counts (source, stored) VALUES (NEW.source, 1)
            ON CONFLICT (source) DO UPDATE SET stored = item_counts.stored + 1;
        ELSE
            UPDATE item_counts SET stored = stored - 1 WHERE source = OLD.source;
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE OR REPLACE FUNCTION bridge_count_deliveries() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'UPDATE' AND OLD.state = NEW.state THEN
            RETURN NULL;
        END IF;
        IF TG_OP IN ('UPDATE', 'DELETE') THEN
            UPDATE delivery_counts SET deliveries = deliveries - 1 WHERE target = OLD.target AND state = OLD.state;
        END IF;
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
            INSERT INTO delivery_counts (target, state, deliveries) VALUES (NEW.target, NEW.state, 1)
            ON CONFLICT (target, state) DO UPDATE SET deliveries = delivery_counts.deliveries + 1;
        END IF;
        RETURN NULL;
    END $$""",
    "DROP TRIGGER IF EXISTS tr_items_counted ON items",
    "CREATE TRIGGER tr_items_counted AFTER INSERT OR DELETE ON items FOR EACH ROW EXECUTE PROCEDURE bridge_count_items()",
    "DROP TRIGGER IF EXISTS tr_deliveries_counted ON deliveries",
    "CREATE TRIGGER tr_deliveries_counted AFTER INSERT OR DELETE OR UPDATE OF state ON deliveries "
    "FOR EACH ROW EXECUTE PROCEDURE bridge_count_deliveries()",
)


_V7_INDEXES = {
    "ix_items_url": "items (url)", "ix_deliveries_state_target": "deliveries (state, target)",
    "ix_deliveries_target_sent_at": "deliveries (target, sent_at)", "ix_charges_target_at": "charges (target, at)",
}


def _v7_running_counts(connection: Connection) -> None:
    """Totals per source and per (target, state), kept current by triggers whatever code inserts or
    updates the rows, so status and metrics never count the whole history; counted once here."""
    for counts in (schema.item_counts, schema.delivery_counts):
        counts.create(connection, checkfirst=True)
    # The hot queries name these indexes (schema.indexed): make sure every database has each one.
    for name, table_columns in _V7_INDEXES.items():
        connection.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {name} ON {table_columns}")
    for ddl in (_V7_SQLITE_TRIGGERS if connection.dialect.name == "sqlite" else _V7_POSTGRESQL_TRIGGERS):
        connection.exec_driver_sql(ddl)
    connection.execute(text("DELETE FROM item_counts"))
    connection.execute(text("DELETE FROM delivery_counts"))
    connection.execute(text("INSERT INTO item_counts (source, stored) SELECT source, count(*) FROM items GROUP BY source"))
    connection.execute(text("INSERT INTO delivery_counts (target, state, deliveries) "
                            "SELECT target, state, count(*) FROM deliveries GROUP BY target, state"))


_V9_POSTGRESQL_COUNT_DELIVERIES = """CREATE OR REPLACE FUNCTION bridge_count_deliveries() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'UPDATE' AND OLD.state = NEW.state THEN
            RETURN NULL;
        END IF;
        -- The two counters of one state change are touched in the order of their state names, so two
        -- transactions moving deliveries of one target in opposite directions (a claim pending ->
        -- sending, a retry sending -> pending, on two replicas) lock them in the same order: no deadlock.
        IF TG_OP = 'UPDATE' AND NEW.state < OLD.state THEN
            INSERT INTO delivery_counts (target, state, deliveries) VALUES (NEW.target, NEW.state, 1)
            ON CONFLICT (target, state) DO UPDATE SET deliveries = delivery_counts.deliveries + 1;
            UPDATE delivery_counts SET deliveries = deliveries - 1 WHERE target = OLD.target AND state = OLD.state;
            RETURN NULL;
        END IF;
        IF TG_OP IN ('UPDATE', 'DELETE') THEN
            UPDATE delivery_counts SET deliveries = deliveries - 1 WHERE target = OLD.target AND state = OLD.state;
        END IF;
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
            INSERT INTO delivery_counts (target, state, deliveries) VALUES (NEW.target, NEW.state, 1)
            ON CONFLICT (target, state) DO UPDATE SET deliveries = delivery_counts.deliveries + 1;
        END IF;
        RETURN NULL;
    END $$"""


def _v9_delivery_leases(connection: Connection) -> None:
    """Leased claims for several replicas on one PostgreSQL (issue 13): who claimed a delivery and
    until when; on PostgreSQL the counting trigger locks its two counters in a fixed order.
    Self-contained (it names its columns and DDL here), so it can be renumbered."""
    if not inspect(connection).has_table("deliveries"):
        return
    present = {c["name"] for c in inspect(connection).get_columns("deliveries")}
    for name, kind in (("claimed_by", "VARCHAR(36)"), ("lease_until", _datetime_type(connection))):
        if name not in present:
            connection.execute(text(f"ALTER TABLE deliveries ADD COLUMN {name} {kind}"))
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(_V9_POSTGRESQL_COUNT_DELIVERIES)


# The columns step 11 reads, declared here for the same reason as _ITEMS_KEYS.
_V11_DELIVERIES = table("deliveries", column("id"), column("item_id"), column("target"), column("recipient"),
                       column("state"), column("link_key"))
_V11_OLDEST_CARRIED_COPIES = text("""
    SELECT id, url FROM (
        SELECT d.id AS id, i.url AS url,
               ROW_NUMBER() OVER (PARTITION BY d.target, d.recipient, i.url ORDER BY d.id) AS copy
        FROM deliveries d JOIN items i ON i.id = d.item_id
        WHERE d.state IN ('sending', 'sent', 'in_doubt') AND i.url IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM items j WHERE j.url = i.url AND j.source = i.source AND j.id <> i.id)
    ) ranked WHERE copy = 1""")
"""Per (target, recipient, link), the oldest delivery carried whose story's link no other story of
its source shares: the one that holds the link (whether the link names an article is Python's
rule, urls.names_a_page, applied to each row by outbox.link_key)."""


def _v11_shared_polls_and_carried_links(connection: Connection) -> None:
    """Issue 13, items 4 and 5. sources.polled_by: which replica took a source's latest poll (the
    replicas share the polls). deliveries.link_key and the partial unique index over (target,
    recipient, link_key) of the deliveries carried (sending, sent, in doubt): the "same link already
    on this target" rule held by the database, so two sources' copies cannot both go out whatever
    runs concurrently. Existing deliveries are given their link as the claim gives it (an article
    link, one story of its source with it), and where several carried copies of one link are on one
    target already (posted before this rule, or by the race it closes) the oldest (lowest id) holds
    it, the others keep their state and hold nothing: nothing is re-sent or changed but the key."""
    from bridge.store.outbox import link_key

    for table_name, name, kind in (("sources", "polled_by", "VARCHAR(36)"), ("deliveries", "link_key", "VARCHAR(64)")):
        # Only where missing: a database stamped with an older version may have the columns already.
        if name not in {c["name"] for c in inspect(connection).get_columns(table_name)}:
            connection.execute(text(f"ALTER TABLE {table_name} ADD COLUMN {name} {kind}"))
    # A database stamped with an older version may hold keys already: given afresh, by one rule.
    connection.execute(text("DROP INDEX IF EXISTS uq_deliveries_carried_link"))
    connection.execute(update(_V11_DELIVERIES).where(_V11_DELIVERIES.c.link_key.is_not(None)).values(link_key=None))
    statement = (update(_V11_DELIVERIES).where(_V11_DELIVERIES.c.id == bindparam("b_id"))
                 .values(link_key=bindparam("b_link")))
    # Streamed in batches (a server-side cursor on PostgreSQL), so a store of millions of deliveries
    # is never all in memory; the window's sort is done before the first row comes, so the
    # updates between batches do not change what it reads.
    result = connection.execute(_V11_OLDEST_CARRIED_COPIES.execution_options(stream_results=True))
    for rows in result.partitions(_UPDATE_BATCH):
        changes = [{"b_id": row.id, "b_link": key} for row in rows if (key := link_key(row.url)) is not None]
        if changes:
            connection.execute(statement, changes)
    connection.execute(text("CREATE UNIQUE INDEX IF NOT EXISTS uq_deliveries_carried_link ON deliveries "
                            "(target, recipient, link_key) WHERE link_key IS NOT NULL "
                            "AND state IN ('sending', 'sent', 'in_doubt')"))


UPGRADES: dict[int, Callable[[Connection], None]] = {
    2: _v2_delivery_cost, 3: _v3_delivery_recipient, 4: _v4_frozen_posts_and_installation_id,
    5: url_identity_keys, 6: _v6_charges, 7: _v7_running_counts, 8: _v8_replicas, 9: _v9_delivery_leases,
    10: url_spellings, 11: _v11_shared_polls_and_carried_links,
}
LATEST_VERSION = max(UPGRADES, default=1)


def current_version(connection: Connection) -> int:
    if not inspect(connection).has_table("schema_version"):
        return 0
    return connection.execute(select(func.max(schema.schema_version.c.version))).scalar() or 0


def _serialise_migrations(connection) -> None:
    """On PostgreSQL, one migration at a time per schema: processes starting together (replicas, a
    `bridge status` beside a restart) would otherwise both create or alter the same tables, and one
    fails. The lock is the transaction's, so it ends with the commit or the rollback. SQLite needs
    none: BEGIN IMMEDIATE already lets one writer in."""
    if connection.dialect.name != "postgresql":
        return
    from bridge.store.lock import advisory_key

    schema = connection.execute(text("SELECT coalesce(current_schema(), current_setting('search_path'))")).scalar()
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": advisory_key(schema, "migration")})


def migrate(engine: Engine) -> int:
    """Bring the database to LATEST_VERSION; return the version found before (0: it was empty)."""
    try:
        with engine.begin() as connection:
            _serialise_migrations(connection)
            found = current_version(connection)
            if found > LATEST_VERSION:
                raise DatabaseError(
                    f"the database is at schema version {found}, newer than this bridge knows "
                    f"({LATEST_VERSION}): upgrade bridge, or point bridge.database at another file"
                )
            if found == 0:
                schema.metadata.create_all(connection)
                _v7_running_counts(connection)  # triggers are not tables: create_all makes none
                _v9_delivery_leases(connection)  # the trigger as it is now (its columns exist already)
                connection.execute(insert(schema.schema_version).values(version=LATEST_VERSION))
                _stamp_installation_id(connection)
                return found
            for version in range(found + 1, LATEST_VERSION + 1):
                UPGRADES[version](connection)
                connection.execute(update(schema.schema_version).values(version=version))
            if found < LATEST_VERSION and connection.dialect.name != "sqlite":
                # Fresh statistics for the new shape (autovacuum keeps them), of the bridge's own tables
                # only: a bare ANALYZE reads every schema of a shared database, and its locks on the
                # catalogues deadlock with other processes' DDL there.
                tables = ", ".join(table.name for table in schema.metadata.sorted_tables)
                connection.execute(text(f"ANALYZE {tables}"))
            return found
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot prepare database {engine.url!r}: {exc.orig or exc}") from None
