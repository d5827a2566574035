"""One daemon per database: the run lock `bridge run` and `bridge run --once` hold for their whole life.

Two processes delivering from one database would each settle the other's `sending` rows at start-up
as "left by a crash" and post them again. So whoever polls and delivers first takes an exclusive
lock that the kernel or the server drops when the process dies (no stale lock to clean up after a
SIGKILL or a power cut), and a second one is refused at once, naming the holder:

- SQLite: flock() on a file beside the database (`bridge.db.lock`, in the same state directory,
  which is the only place systemd's ProtectSystem=strict lets the service write). The holder
  writes its PID into it, for the refusal message only: the lock is the flock, not the file.
- PostgreSQL: a session-level advisory lock on a connection of its own, held open for the process's
  life. Its application_name carries the PID and host, so the refusal (and pg_stat_activity) can
  name the holder.
- SQLite in memory: nothing to share, so nothing to lock.

PostgreSQL is shared instead (issue 13): `bridge run` there takes no run lock (lock_database gives
a shared, unlocked RunLock), and several replicas run side by side. What the lock guarded is
guarded row by row: deliveries are claimed with a lease (store/outbox.py), each target's pacing
decision and claim are taken under a transaction-level advisory lock (Outbox.target_turn), and a
job only one replica should run at a time (store maintenance, alerts) takes job_turn() here.
acquire_run_lock() still takes the exclusive advisory lock on PostgreSQL, for callers that want
one process alone (none in `bridge run` now).

Commands that read, or change one row in one transaction (status, check, preview, retry, skip,
catchup, poll, reload), take no lock and work beside the daemon.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from bridge.errors import DatabaseError

if TYPE_CHECKING:
    from sqlalchemy import Engine

LOCK_SUFFIX = ".lock"
"""The SQLite lock file is the database's path plus this."""
APPLICATION_NAME_PREFIX = "bridge run"
"""PostgreSQL application_name of the lock's connection: "bridge run pid=1234 host=name"."""
WHAT_TO_DO = ("to apply changed settings to the running service use `systemctl reload bridge`; "
              "to run this command instead, stop the service first: `systemctl stop bridge`")


class RunLockHeld(DatabaseError):
    """Another bridge process polls and delivers from this database."""

    def __init__(self, database: str, holder: str):
        self.holder = holder
        super().__init__(f"another bridge is already running on {database} ({holder}): {WHAT_TO_DO}")


class RunLock:
    """A held run lock. release() (or leaving a `with` block) gives it back; so does the process's death."""

    def __init__(self, description: str, release=None, *, shared: bool = False):
        self.description = description
        self._release = release
        self.held = True
        self.shared = shared
        """True on a store replicas share (PostgreSQL): nothing is locked, and start-up recovery
        touches only claims whose lease ran out (service.prepare)."""

    def release(self) -> None:
        if self.held and self._release is not None:
            self._release()
        self.held = False

    def __del__(self) -> None:
        # A lock nobody refers to any more guards nothing: give it back rather than leak it. (At
        # interpreter exit this may find its modules gone; the kernel releases the lock anyway.)
        try:
            self.release()
        except Exception:
            pass

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"RunLock({self.description!r}, held={self.held})"


def acquire_run_lock(engine: Engine) -> RunLock:
    """Take the database's run lock now, or raise RunLockHeld naming the holder (never waits)."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:" or "mode=memory" in str(url):
            return RunLock("in-memory database: nothing to lock")
        return _lock_sqlite_file(Path(url.database))
    if url.get_backend_name() == "postgresql":
        return _lock_postgres(engine)
    raise DatabaseError(f"bridge does not know how to lock a {url.get_backend_name()} database: "
                        "use SQLite or PostgreSQL")


def run_lock_for(engine: Engine) -> RunLock:
    """What `bridge run` holds: the exclusive run lock on SQLite; on PostgreSQL, where replicas
    share the store, a shared RunLock that locks nothing."""
    if engine.url.get_backend_name() == "postgresql":
        return RunLock(f"shared by replicas: {engine.url!r} ({holder_name()})", shared=True)
    return acquire_run_lock(engine)


def lock_database(url: str) -> tuple[Engine, RunLock]:
    """An engine for `url` and its run lock (run_lock_for), taken before anything else touches the
    database. A SQLite file is locked before SQLAlchemy is even imported (a quarter of a second),
    so a refused `bridge run` ends as soon as it has read its settings."""
    database = sqlite_file(url)
    lock = _lock_sqlite_file(database) if database else None
    from bridge.store.db import create_database_engine

    try:
        engine = create_database_engine(url)
    except BaseException:
        if lock:
            lock.release()
        raise
    try:
        return engine, lock or run_lock_for(engine)
    except BaseException:
        engine.dispose()
        raise


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (`sqlite:///relative.db`, `sqlite:////absolute.db`, a `?query`
    after it), or None for another database or an in-memory one. Read without SQLAlchemy."""
    scheme, separator, rest = url.partition("://")
    if not separator or scheme.split("+")[0] != "sqlite" or not rest.startswith("/"):
        return None
    path, _, query = rest[1:].partition("?")
    if path.startswith("file:") and "uri=true" in query.split("&"):
        path = path[len("file:"):]  # an SQLite URI filename: the path follows `file:`
    if not path or path == ":memory:" or "mode=memory" in url:
        return None
    return Path(path)


def holder_name() -> str:
    """What the lock's holder says about itself: its PID and host."""
    return f"pid={os.getpid()} host={socket.gethostname()}"


# --- SQLite ---------------------------------------------------------------------------------------


def lock_path(database: Path) -> Path:
    return database.with_name(database.name + LOCK_SUFFIX)


def _lock_sqlite_file(database: Path) -> RunLock:
    path = lock_path(database)
    try:
        database.parent.mkdir(parents=True, exist_ok=True)  # a first start: the state folder may be new
    except OSError as exc:
        raise DatabaseError(f"cannot create the folder for {database}: {exc.strerror or exc}") from None
    try:
        # Never unlinked: removing a file another process is about to flock would let two hold "it".
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise DatabaseError(f"cannot open the run lock {path}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(fd)
        os.close(fd)
        raise RunLockHeld(str(database), holder) from None
    except OSError as exc:
        os.close(fd)
        raise DatabaseError(f"cannot lock {path}: {exc.strerror or exc}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n{holder_name()}\n".encode(), 0)

    def release() -> None:
        # Emptied first, so a reader never names a PID that no longer holds it.
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    return RunLock(f"{path} ({holder_name()})", release)


def _read_holder(fd: int) -> str:
    content = os.pread(fd, 4096, 0).decode(errors="replace").split()
    if content and content[0].isdigit():
        return f"PID {content[0]}" + (f", {content[2]}" if len(content) > 2 else "")
    return "PID unknown: it is starting or stopping"


# --- PostgreSQL -----------------------------------------------------------------------------------


def advisory_key(schema: str, purpose: str = "run lock") -> int:
    """A signed 64-bit key per schema and purpose: advisory locks are per database, and bridges (or
    test runs) in different schemas of one database must not refuse each other."""
    digest = hashlib.sha256(f"bridge {purpose} {schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def schema_of(conn) -> str:
    """The connection's schema (current_schema() is NULL while no schema on the search_path exists
    yet: the path names it then), for advisory_key."""
    from sqlalchemy import text

    return conn.execute(text("SELECT coalesce(current_schema(), current_setting('search_path'))")).scalar()


def hold_for_transaction(conn, purpose: str) -> None:
    """PostgreSQL: wait for the transaction-level advisory lock of `purpose` in this schema; it is
    released by the transaction's commit or rollback (a target's turn, a source's poll store)."""
    from sqlalchemy import text

    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": advisory_key(schema_of(conn), purpose)})


@contextmanager
def job_turn(engine: Engine, job: str) -> Iterator[bool]:
    """Whether this process may run `job` now: always on SQLite (one process); on PostgreSQL, True
    for the one replica that got the job's session advisory lock (pg_try_advisory_lock, never
    waited for), held until the block ends or the session dies. A replica that gets False skips
    this run of the job: another replica is doing it."""
    if engine.url.get_backend_name() != "postgresql":
        yield True
        return
    from sqlalchemy import text

    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        key = advisory_key(schema_of(conn), f"job {job}")
        ours = conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar()
        try:
            yield bool(ours)
        finally:
            if ours:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})


def _lock_postgres(engine: Engine) -> RunLock:
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.pool import NullPool

    # A connection of its own, outside the pool: the lock lives exactly as long as this session.
    lock_engine = create_engine(engine.url, poolclass=NullPool)
    try:
        conn = lock_engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(text("SELECT set_config('application_name', :name, false)"),
                     {"name": f"{APPLICATION_NAME_PREFIX} {holder_name()}"[:63]})
        # current_schema() is NULL when no schema on the search_path exists yet: the path names it then.
        schema = conn.execute(text("SELECT coalesce(current_schema(), current_setting('search_path'))")).scalar()
        key = advisory_key(schema)
        taken = conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar()
    except SQLAlchemyError as exc:
        lock_engine.dispose()
        raise DatabaseError(f"cannot take the run lock on {engine.url!r}: {exc.orig or exc}") from None
    if not taken:
        holder = _postgres_holder(conn, key)
        conn.close()
        lock_engine.dispose()
        raise RunLockHeld(repr(engine.url), holder)

    def release() -> None:
        try:
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
        except SQLAlchemyError:
            pass  # the session is gone, and the lock with it
        conn.close()
        lock_engine.dispose()

    return RunLock(f"advisory lock {key} on {engine.url!r} ({holder_name()})", release)


def _postgres_holder(conn, key: int) -> str:
    """The holder's application_name (our PID and host) and its server-side PID, from pg_locks."""
    row = _holder_row(conn, key)
    if row is None:
        return "PID unknown: it is starting or stopping"
    name, backend_pid, address = row
    said = _said_pid_host(name)
    if said:
        pid, host = said
        return f"PID {pid}, host={host}" if host else f"PID {pid}"
    return f"PID unknown: server backend {backend_pid} from {address or 'a local socket'}"


def _holder_row(conn, key: int):
    from sqlalchemy import text

    classid, objid = (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF
    return conn.execute(text(
        "SELECT a.application_name, a.pid, a.client_addr FROM pg_locks l "
        "JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = :classid AND l.objid = :objid "
        "AND l.objsubid = 1 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    ), {"classid": classid, "objid": objid}).first()


def _said_pid_host(name: str | None) -> tuple[int, str] | None:
    """(PID, host) from an application_name "bridge run pid=1234 host=name", else None."""
    prefix = APPLICATION_NAME_PREFIX + " pid="
    if not name or not name.startswith(prefix):
        return None
    pid, _, rest = name[len(prefix):].partition(" ")
    return (int(pid), rest.removeprefix("host=")) if pid.isdigit() else None
