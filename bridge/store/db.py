"""Opening the database: engine settings that make SQLite safe for a long-running daemon.

- WAL, so `bridge status` can read while the daemon writes.
- synchronous=FULL: a commit of 'sending' or 'sent' that is lost on power failure could mean a
  second post of the same story; FULL makes each commit durable, and we commit a few times per post.
- BEGIN IMMEDIATE for write transactions: a deferred transaction that upgrades from read to write
  gets SQLITE_BUSY at once, busy timeout or not. Read-only callers ask for DEFERRED.
- foreign keys on, and a busy timeout so two writers wait for each other instead of failing.
- auto_vacuum=INCREMENTAL, so space freed by pruning old stories can be given back to the disk
  (store/maintenance.py); it takes effect in a new file, or an old one after its one VACUUM.
- table hints rendered: the hot queries name their index (schema.indexed), which SQLAlchemy's
  SQLite compiler would silently drop.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects.sqlite.base import SQLiteCompiler
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from bridge.errors import DatabaseError

SQLITE_BUSY_TIMEOUT_SECONDS = 30
POOL_SIZE = 12
"""Server connections kept open (PostgreSQL): one per scheduler worker thread (APScheduler's default
pool of 10) plus the heartbeat and the health endpoint, so no job waits for another's connection."""
POOL_OVERFLOW = 4
"""Extra connections opened for a burst (a reload's new runtime, the CLI beside the daemon's jobs)."""
POOL_TIMEOUT_SECONDS = 10
"""How long a checkout waits when all are in use: a job then fails with a database error and runs
again, instead of hanging past the watchdog (SQLAlchemy's default is 30 s)."""
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
            return create_engine(url, pool_pre_ping=True, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW,
                                 pool_timeout=POOL_TIMEOUT_SECONDS)
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
    engine.dialect.statement_compiler = _HintedSQLiteCompiler
    return engine


class _HintedSQLiteCompiler(SQLiteCompiler):
    """Renders Select.with_hint(table, "INDEXED BY ix", "sqlite") after the table's name."""

    def get_from_hint_text(self, table, text: str) -> str:
        return text


def _make_sqlite_safe(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # Let us emit BEGIN ourselves (pysqlite's own transaction handling cannot do IMMEDIATE).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_SECONDS * 1000}")
        if cursor.execute("PRAGMA page_count").fetchone()[0] == 0:
            # A new file: before its first table (an old one switches once, store/maintenance.py).
            cursor.execute("PRAGMA auto_vacuum=INCREMENTAL")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_SECONDS * 1000}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        connection.exec_driver_sql(f"BEGIN {mode}")


MIN_FREE_BYTES = 1024 * 1024
"""Less free space than this beside a SQLite file: its next write fails with 'database or disk is full'."""

_CAUSES = (
    ("readonly", "{db} is read-only: let the service user write the file and its folder "
                 "(chmod/chown, chattr -i, or mount it read-write)"),
    ("unable to open", "cannot open {db}: check that its folder exists and the service user may read "
                       "and write both"),
    ("disk is full", "the disk holding {db} is full: free space there, then restart the bridge"),
    ("disk i/o", "{db} cannot be read or written (disk I/O error): check the disk and the file"),
    ("locked", "{db} is locked by another process (a `sqlite3` shell or a backup holding it?): "
               "end that process, or wait for it"),
)


def explain(exc: BaseException, url) -> str:
    """A database error in one line: the cause, and what fixes it (whitespace collapsed)."""
    reason = " ".join(str(getattr(exc, "orig", None) or exc).split())
    database = str(url)
    for needle, text in _CAUSES:
        if needle in reason.lower():
            return f"{text.format(db=database)} ({reason})"
    return f"cannot use {database}: {reason}"


def unwritable_reason(engine: Engine) -> str | None:
    """Why the daemon could not write a SQLite database now, found without writing or taking a lock
    (the kernel's write permission check refuses root too on an immutable file or read-only mount);
    None when it can, or for another database.

    Never by opening the file: closing any descriptor of it drops every POSIX lock this process
    holds on it, SQLite's included (a documented way to corrupt a database). A process whose
    connections then look unlocked lets another one, closing its last connection, checkpoint and
    delete the -wal file under them: /healthz, which asks this, made the daemon's database
    "malformed" when `bridge status` ran beside it."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    path = Path(url.database)
    effective = os.access in os.supports_effective_ids  # the service user's rights, as open() would use
    if not path.exists():
        return None  # not created yet: `bridge run` creates it
    if not os.access(path, os.W_OK, effective_ids=effective):
        return explain(OSError("attempt to write a readonly database: " + _why_not_writable(path)), url)
    try:
        import shutil

        if shutil.disk_usage(path.parent).free < MIN_FREE_BYTES:
            return explain(OSError("database or disk is full"), url)
    except OSError:
        pass
    return None


def _why_not_writable(path: Path) -> str:
    try:
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return os.strerror(errno.EROFS)
    except OSError:
        pass
    return os.strerror(errno.EACCES)  # a mode, an owner or an immutable flag (chattr +i)


def check_connection(engine: Engine) -> None:
    """Raise DatabaseError with a readable reason when the database cannot be opened. A read
    (DEFERRED): another process holding the write lock does not make it wait."""
    try:
        with engine.connect().execution_options(**READ_ONLY) as connection:
            connection.exec_driver_sql("SELECT 1")
    except SQLAlchemyError as exc:
        raise DatabaseError(explain(exc, repr(engine.url))) from None
