"""`bridge backup PATH`: a consistent copy of the SQLite database, taken while the daemon runs.

SQLite's online backup API (sqlite3.Connection.backup) copies the database as one read
transaction sees it: in WAL mode that snapshot includes every commit made before it began, those
still in bridge.db-wal too, and writers go on meanwhile (copying bridge.db with cp would miss
the WAL's commits, or catch a page half-written). The source is opened read-only, so a backup can
never change the database or create one. The copy is written to a temporary file beside PATH,
checked (PRAGMA quick_check), made a single self-contained file (journal_mode=DELETE: no -wal
beside it) and flushed, then renamed onto PATH: PATH is either the whole backup or untouched.

PostgreSQL has pg_dump for this; `bridge backup` prints the command instead of copying.
"""

from __future__ import annotations

import os
import shlex
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bridge.errors import BridgeError, DatabaseError
from bridge.store.lock import LOCK_SUFFIX, sqlite_file

BUSY_TIMEOUT_SECONDS = 30
"""How long the copy may wait for a lock (only while another process recovers the WAL)."""
COMPANIONS = ("", "-wal", "-shm", "-journal", LOCK_SUFFIX)
"""The database's own files: a backup written onto one of them would destroy what it copies."""


class PostgresBackup(BridgeError):
    """The database is PostgreSQL: the message is the pg_dump command that backs it up."""


@dataclass(frozen=True)
class Backup:
    source: Path
    path: Path
    bytes: int


def backup_database(url: str, destination: Path, *, overwrite: bool = False) -> Backup:
    """Copy the database at `url` to `destination`. Raises DatabaseError when the database cannot be
    read, BridgeError when `destination` cannot be written (or exists, unless `overwrite`), and
    PostgresBackup for a PostgreSQL URL."""
    source = _sqlite_path(url)
    if source is None:
        raise _not_sqlite(url, destination)
    destination = Path(destination).expanduser().absolute()
    _check_destination(source, destination, overwrite)
    if not source.is_file():
        raise DatabaseError(f"no database at {source}: `bridge run` creates it (check [bridge] database)")
    descriptor, temporary = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".partial",
                                             dir=destination.parent)
    os.close(descriptor)
    try:
        _copy(source, Path(temporary), destination)
        _fsync(Path(temporary))
        _put_in_place(Path(temporary), destination, overwrite)
    finally:
        for suffix in ("", "-wal", "-shm", "-journal"):  # what a failed copy may leave beside it
            Path(temporary + suffix).unlink(missing_ok=True)
    _fsync_folder(destination.parent)
    return Backup(source=source, path=destination, bytes=destination.stat().st_size)


def _sqlite_path(url: str) -> Path | None:
    """The database file, also for an SQLite URI filename (`sqlite:///file:/path/bridge.db?uri=true`)."""
    path = sqlite_file(url)
    if path is not None and str(path).startswith("file:") and "uri=true" in url.partition("?")[2].split("&"):
        return Path(str(path)[len("file:"):])
    return path


def _check_destination(source: Path, destination: Path, overwrite: bool) -> None:
    """Refuse, before copying anything, a PATH that cannot or must not be written."""
    if destination.is_dir():
        raise BridgeError(f"{destination} is a folder: name the backup file, e.g. {destination / 'bridge.db'}")
    real = destination.resolve()
    if any(real == Path(str(source.resolve()) + suffix) for suffix in COMPANIONS):
        raise BridgeError(f"{destination} is the database's own file: write the backup somewhere else")
    if destination.exists() and not overwrite:
        raise BridgeError(f"{destination} exists: choose another name, or pass --force to replace it")
    if not destination.parent.is_dir():
        raise BridgeError(f"cannot write {destination}: its folder {destination.parent} does not exist")
    if not os.access(destination.parent, os.W_OK | os.X_OK):
        raise BridgeError(f"cannot write {destination}: its folder {destination.parent} is not writable "
                          "by this user")


def _copy(source: Path, temporary: Path, destination: Path) -> None:
    try:
        reader = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_SECONDS)
    except sqlite3.Error as exc:
        raise DatabaseError(f"cannot open {source} to back it up: {exc}") from None
    try:
        writer = sqlite3.connect(temporary, timeout=BUSY_TIMEOUT_SECONDS)
        try:
            try:
                _check_is_bridge_database(reader, source)
                reader.backup(writer)  # every page in one step: one snapshot, never restarted by a writer
                verdict = writer.execute("PRAGMA quick_check").fetchone()[0]
                writer.execute("PRAGMA journal_mode=DELETE")  # one file, nothing beside it
            except sqlite3.Error as exc:
                raise _copy_error(exc, source, destination) from None
            if verdict != "ok":
                raise DatabaseError(f"the copy of {source} fails SQLite's quick_check ({verdict}): the "
                                    "database itself may be damaged; nothing was written")
        finally:
            writer.close()
    finally:
        reader.close()


def _check_is_bridge_database(reader: sqlite3.Connection, source: Path) -> None:
    try:
        found = reader.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
                               ).fetchone()
    except sqlite3.DatabaseError as exc:
        raise DatabaseError(f"cannot read {source}: {exc}") from None
    if found is None:
        raise DatabaseError(f"{source} is not a bridge database (no schema_version table)")


def _copy_error(exc: sqlite3.Error, source: Path, destination: Path) -> BridgeError:
    """A full disk can only be the backup's (the database is only read); anything else is the
    database's problem (exit 3)."""
    reason = " ".join(str(exc).split())
    if "full" in reason.lower():
        return BridgeError(f"cannot write {destination}: the disk holding it is full ({reason}); nothing was written")
    return DatabaseError(f"cannot back up {source} to {destination}: {reason}")


def _put_in_place(temporary: Path, destination: Path, overwrite: bool) -> None:
    """Rename onto PATH. Without `overwrite`, a hard link (refused if PATH appeared meanwhile), so a
    file created during the copy is never replaced; filesystems without hard links get the rename."""
    try:
        if overwrite:
            os.replace(temporary, destination)
            return
        try:
            os.link(temporary, destination)
        except FileExistsError:
            raise BridgeError(f"{destination} exists: choose another name, or pass --force to replace it") from None
        except OSError:  # no hard links here (FAT, some network filesystems)
            if destination.exists():
                raise BridgeError(f"{destination} exists: choose another name, or pass --force to replace it"
                                  ) from None
            os.replace(temporary, destination)
    except OSError as exc:
        raise BridgeError(f"cannot write {destination}: {exc.strerror or exc}") from None


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fsync_folder(folder: Path) -> None:
    """The rename itself survives a power cut only once the folder is flushed too."""
    try:
        _fsync(folder)
    except OSError:
        pass  # some filesystems cannot fsync a folder; the file itself is flushed


def _not_sqlite(url: str, destination: Path) -> BridgeError:
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
    except Exception:  # a URL SQLAlchemy cannot read: say what we can
        return BridgeError(f"`bridge backup` copies SQLite databases only; back up {url.split('://')[0]} "
                           "with its own tools")
    if parsed.get_backend_name() == "sqlite":
        return BridgeError("an in-memory database has nothing to back up")
    if parsed.get_backend_name() != "postgresql":
        return BridgeError(f"`bridge backup` copies SQLite databases only; back up {parsed.get_backend_name()} "
                           "with its own tools")
    password = " (it asks for the password, or reads it from ~/.pgpass or $PGPASSWORD)" if parsed.password else ""
    return PostgresBackup(f"the database is PostgreSQL: back it up with pg_dump, while the bridge runs: "
                          f"{pg_dump_command(url, destination)}{password}")


def pg_dump_command(url: str, destination: Path) -> str:
    """pg_dump's command for the bridge's PostgreSQL URL, as a shell line: libpq's URL (no +driver),
    without the password: a command line is seen by every user of the machine (ps) and kept in shell
    histories."""
    from sqlalchemy.engine import URL, make_url

    parsed = make_url(url)
    libpq = URL.create("postgresql", username=parsed.username, host=parsed.host, port=parsed.port,
                       database=parsed.database, query=parsed.query)
    return f"pg_dump -Fc -f {shlex.quote(str(destination))} {shlex.quote(libpq.render_as_string(hide_password=False))}"
