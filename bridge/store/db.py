"""Opening the database: engine settings that make SQLite safe for a long-running daemon.

- WAL, so `bridge status` can read while the daemon writes.
- synchronous=FULL: a commit of 'sending' or 'sent' that is lost on power failure could mean a
  second post of the same story; FULL makes each commit durable, and we commit a few times per post.
- BEGIN IMMEDIATE for write transactions: a deferred transaction that upgrades from read to write
  gets SQLITE_BUSY at once, busy timeout or not. Read-only callers ask for DEFERRED.
- foreign keys on, and a busy timeout so two writers wait for each other instead of failing.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from bridge.errors import DatabaseError

SQLITE_BUSY_TIMEOUT_SECONDS = 30
READ_ONLY = {"sqlite_begin": "DEFERRED"}
"""Execution options for a connection that only reads (pass to Connection.execution_options)."""


def create_database_engine(url: str) -> Engine:
    """An engine for `url`; for SQLite, creates the file's folder and applies the pragmas above."""
    try:
        parsed = make_url(url)
    except Exception as exc:  # SQLAlchemy raises ArgumentError and others for a malformed URL
        raise DatabaseError(f"bridge.database: {url!r} is not a database URL ({exc})") from None
    if parsed.get_backend_name() != "sqlite":
        try:
            return create_engine(url, pool_pre_ping=True)
        except Exception as exc:  # missing driver, bad options
            raise DatabaseError(f"cannot use database {parsed!r}: {exc}") from None
    if parsed.database and parsed.database != ":memory:":
        try:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseError(f"cannot create the folder for {parsed.database}: {exc}") from None
    engine = create_engine(
        url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False}
    )
    _make_sqlite_safe(engine)
    return engine


def _make_sqlite_safe(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # Let us emit BEGIN ourselves (pysqlite's own transaction handling cannot do IMMEDIATE).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_SECONDS * 1000}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        connection.exec_driver_sql(f"BEGIN {mode}")


def check_connection(engine: Engine) -> None:
    """Raise DatabaseError with a readable reason when the database cannot be opened. A read
    (DEFERRED): another process holding the write lock does not make it wait."""
    try:
        with engine.connect().execution_options(**READ_ONLY) as connection:
            connection.exec_driver_sql("SELECT 1")
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot open database {engine.url!r}: {exc.orig or exc}") from None
