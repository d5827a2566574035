"""Versioned schema changes.

A new database is created whole from schema.py and stamped with the latest version. An older one
is brought up step by step: UPGRADES[N] takes a database from version N-1 to N, in the same
transaction as the version bump. Steps are never edited once released; a change to schema.py comes
with a new step, so an upgrade keeps every seen item.
"""

from __future__ import annotations

from typing import Callable

from sqlalchemy import Connection, Engine, func, insert, inspect, select, text, update
from sqlalchemy.exc import SQLAlchemyError

from bridge.errors import DatabaseError
from bridge.store import schema


def _v2_delivery_cost(connection: Connection) -> None:
    """What each sent post cost (USD), for the daily budget and `bridge status`."""
    connection.execute(text("ALTER TABLE deliveries ADD COLUMN cost FLOAT"))


UPGRADES: dict[int, Callable[[Connection], None]] = {2: _v2_delivery_cost}
LATEST_VERSION = max(UPGRADES, default=1)


def current_version(connection: Connection) -> int:
    if not inspect(connection).has_table("schema_version"):
        return 0
    return connection.execute(select(func.max(schema.schema_version.c.version))).scalar() or 0


def migrate(engine: Engine) -> int:
    """Bring the database to LATEST_VERSION; return the version found before (0: it was empty)."""
    try:
        with engine.begin() as connection:
            found = current_version(connection)
            if found > LATEST_VERSION:
                raise DatabaseError(
                    f"the database is at schema version {found}, newer than this bridge knows "
                    f"({LATEST_VERSION}): upgrade bridge, or point bridge.database at another file"
                )
            if found == 0:
                schema.metadata.create_all(connection)
                connection.execute(insert(schema.schema_version).values(version=LATEST_VERSION))
                return found
            for version in range(found + 1, LATEST_VERSION + 1):
                UPGRADES[version](connection)
                connection.execute(update(schema.schema_version).values(version=version))
            return found
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot prepare database {engine.url!r}: {exc.orig or exc}") from None
