"""Versioned schema changes: an ordered list of steps, applied once each, in one transaction.

Step N brings a database from version N-1 to N. Steps are never edited once released; a change to
schema.py comes with a new step, so an upgrade keeps every seen item.
"""

from __future__ import annotations

from typing import Callable

from sqlalchemy import Connection, Engine, func, insert, inspect, select, update
from sqlalchemy.exc import SQLAlchemyError

from bridge.errors import DatabaseError
from bridge.store import schema


def _v1_initial_tables(connection: Connection) -> None:
    for table in (schema.sources, schema.items, schema.deliveries, schema.targets):
        table.create(connection)


MIGRATIONS: list[Callable[[Connection], None]] = [_v1_initial_tables]
LATEST_VERSION = len(MIGRATIONS)


def current_version(connection: Connection) -> int:
    if not inspect(connection).has_table("schema_version"):
        return 0
    return connection.execute(select(func.max(schema.schema_version.c.version))).scalar() or 0


def migrate(engine: Engine) -> int:
    """Bring the database to LATEST_VERSION; return the version found before."""
    try:
        with engine.begin() as connection:
            found = current_version(connection)
            if found > LATEST_VERSION:
                raise DatabaseError(
                    f"the database is at schema version {found}, newer than this bridge knows "
                    f"({LATEST_VERSION}): upgrade bridge, or point bridge.database at another file"
                )
            if found == 0:
                schema.schema_version.create(connection, checkfirst=True)
                connection.execute(insert(schema.schema_version).values(version=0))
            for version in range(found + 1, LATEST_VERSION + 1):
                MIGRATIONS[version - 1](connection)
                connection.execute(update(schema.schema_version).values(version=version))
            return found
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot prepare database {engine.url!r}: {exc.orig or exc}") from None
