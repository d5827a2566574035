"""The daemon never drops SQLite's own file locks.

POSIX advisory locks belong to a process and a file, not to a descriptor: closing *any* descriptor
of the database file drops every lock the process holds on it, SQLite's included ("How To Corrupt
An SQLite Database File", section 2.2, sqlite.org/howtocorrupt.html). In WAL mode every open
connection holds a read lock on the database file, and a connection closing takes an exclusive
lock to learn whether it is the last one; if it gets it, it checkpoints and deletes the -wal file.
So one open()/close() of bridge.db in the daemon (the writability check behind /healthz did that)
let `bridge status`, closing beside it, delete the daemon's write-ahead log under it: the daemon's
next rounds failed with "database disk image is malformed" or "disk I/O error" until a restart.

These tests take the daemon's side (this process, its engine's connections open) and another
process's side (a subprocess opening and closing the database), and look at the kernel's locks.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from sqlalchemy import text

from bridge.config import parse_config
from bridge.status import judge
from bridge.store.db import create_database_engine, unwritable_reason
from bridge.store.opening import open_repository
from tests.helpers import env_for, make_config

# SQLite's lock bytes (os_unix.c): readers lock a byte in [SHARED_FIRST, SHARED_FIRST + SHARED_SIZE).
PENDING_BYTE = 0x40000000
SHARED_FIRST = PENDING_BYTE + 2
SHARED_SIZE = 510


def holders_of_read_locks(path) -> set[int]:
    """The PIDs the kernel says hold a lock on SQLite's shared range of `path` (F_GETLK, asked
    from a child so that this process's own locks are reported too)."""
    probe = textwrap.dedent(f"""
        import fcntl, os, struct
        fd = os.open({str(path)!r}, os.O_RDONLY)  # F_GETLK asks; it needs no write access
        query = struct.pack("hhqqi", fcntl.F_WRLCK, os.SEEK_SET, {SHARED_FIRST}, {SHARED_SIZE}, 0)
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, query)
        kind, _, _, _, pid = struct.unpack("hhqqi", answer)
        print(pid if kind != fcntl.F_UNLCK else 0)
    """)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return {int(out)} - {0}


def open_and_close_elsewhere(path) -> None:
    """What `bridge status` does beside the daemon: a read, then its last connection closes."""
    script = f"import sqlite3; c = sqlite3.connect({str(path)!r}); c.execute('SELECT count(*) FROM t').fetchone(); c.close()"
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True)


def count_elsewhere(path) -> tuple[int, str]:
    script = (f"import sqlite3; c = sqlite3.connect({str(path)!r}); "
              "print(c.execute('SELECT count(*) FROM t').fetchone()[0]); "
              "print(c.execute('PRAGMA integrity_check').fetchone()[0])")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    return int(out[0]), out[1]


@pytest.fixture
def live(tmp_path):
    """A WAL database with a row not yet checkpointed, and this process's connection open to it."""
    path = tmp_path / "bridge.db"
    engine = create_database_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))
    connection = engine.connect()
    connection.execute(text("SELECT count(*) FROM t")).scalar()
    assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    yield path, engine, connection
    connection.close()
    engine.dispose()


def test_an_open_connection_holds_its_read_lock(live):
    """The premise, on this kernel: an open WAL connection shows up as a reader of the file."""
    path, _, _ = live
    assert holders_of_read_locks(path) == {os.getpid()}


def test_the_writability_check_keeps_sqlites_locks(live):
    path, engine, _ = live
    assert unwritable_reason(engine) is None
    assert holders_of_read_locks(path) == {os.getpid()}


def test_a_status_beside_a_health_check_leaves_the_write_ahead_log_alone(live):
    """/healthz's check, then another process's open and close: the -wal file is still there, the
    next write lands in it, and a third process reads every row of an intact database."""
    path, engine, connection = live
    assert unwritable_reason(engine) is None
    open_and_close_elsewhere(path)
    assert (path.parent / "bridge.db-wal").exists()
    connection.execute(text("INSERT INTO t VALUES (2)"))
    connection.commit()
    assert count_elsewhere(path) == (2, "ok")


def test_health_judgement_in_the_daemon_keeps_the_locks(tmp_path):
    """The whole /healthz judgement (status.judge) on an open repository leaves its readers locked."""
    path = tmp_path / "bridge.db"
    config = parse_config(make_config({"antara": "http://127.0.0.1:9/rss.xml"}), environ=env_for(tmp_path))
    repo = open_repository(config)
    try:
        with repo.engine.connect() as conn:
            conn.execute(text("SELECT 1")).scalar()
        held = repo.engine.connect()  # a pooled connection stays open, as the daemon's do
        held.execute(text("SELECT count(*) FROM items")).scalar()
        assert holders_of_read_locks(path) == {os.getpid()}
        judge(repo, config)
        assert holders_of_read_locks(path) == {os.getpid()}
        held.close()
    finally:
        repo.engine.dispose()


def test_an_immutable_file_is_still_found_without_opening_it(live):
    """The check still tells a file nobody may write (chattr +i binds root too), and still without
    dropping the locks."""
    path, engine, _ = live
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("this filesystem cannot make a file immutable (chattr +i)")
    try:
        reason = unwritable_reason(engine)
        assert holders_of_read_locks(path) == {os.getpid()}
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)
    assert reason and "read-only" in reason and "let the service user write" in reason
