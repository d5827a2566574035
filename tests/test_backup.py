"""`bridge backup PATH`: a consistent copy of the SQLite database while it is written, put in place
atomically, and one that restores; PostgreSQL gets the pg_dump command instead."""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import pytest

from bridge.cli import EXIT_DATABASE, EXIT_OK, EXIT_PROBLEM, main
from bridge.config import load_config
from bridge.store.backup import backup_database, pg_dump_command
from bridge.store.opening import open_repository
from tests.test_cli import site, write_settings  # noqa: F401 (site: a fixture)


def bridge_database(tmp_path) -> tuple[Path, str]:
    """A database as `bridge run` creates it (WAL), with a table of numbered rows beside the bridge's."""
    path = write_settings(tmp_path, "http://127.0.0.1:9/rss.xml", "http://127.0.0.1:9", dry_run=True)
    config = load_config(path, environ={"STATE_DIRECTORY": str(tmp_path)})
    open_repository(config).engine.dispose()
    database = tmp_path / "bridge.db"
    with closing(sqlite3.connect(database)) as conn:  # closed: the table is in bridge.db itself
        conn.execute("CREATE TABLE numbers (n INTEGER PRIMARY KEY, padding TEXT)")
        conn.commit()
    return database, config.bridge.database


def writer(database: Path) -> sqlite3.Connection:
    """Another process's connection, as the daemon's: WAL, and no checkpoint, so commits stay in
    bridge.db-wal (a copy of bridge.db alone would miss them)."""
    conn = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    assert conn.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
    conn.execute("PRAGMA wal_autocheckpoint=0")
    return conn


def numbers(database: Path) -> list[int]:
    with closing(sqlite3.connect(database)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return [n for (n,) in conn.execute("SELECT n FROM numbers ORDER BY n")]


def test_backup_holds_every_committed_row_and_nothing_uncommitted(tmp_path):
    """Rows committed only to the WAL are in the copy, a transaction still open elsewhere (holding
    the write lock) neither blocks the backup nor appears in it, and the copy passes integrity_check."""
    database, url = bridge_database(tmp_path)
    conn = writer(database)
    for n in range(1, 501):
        conn.execute("INSERT INTO numbers VALUES (?, ?)", (n, "x" * 200))
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO numbers VALUES (501, 'not committed')")

    backup_database(url, tmp_path / "copy.db")

    conn.execute("COMMIT")
    assert numbers(tmp_path / "copy.db") == list(range(1, 501))
    shutil.copyfile(database, tmp_path / "file-only.db")  # what `cp bridge.db` would have kept
    assert len(numbers(tmp_path / "file-only.db")) < 500
    assert not (tmp_path / "copy.db-wal").exists()  # one self-contained file
    conn.close()


def test_backup_while_another_connection_keeps_writing(tmp_path):
    """With a writer committing all the while, the copy is one moment of the database: every row
    committed before the backup began and no gap after it, and it passes integrity_check."""
    database, url = bridge_database(tmp_path)
    conn = writer(database)
    committed, started, stop = [0], threading.Event(), threading.Event()

    def write() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            conn.execute("INSERT INTO numbers VALUES (?, ?)", (n, "y" * 500))
            committed[0] = n
            if n == 300:
                started.set()

    thread = threading.Thread(target=write)
    thread.start()
    try:
        assert started.wait(30)
        before = committed[0]
        backup_database(url, tmp_path / "copy.db")
    finally:
        stop.set()
        thread.join()
    copied = numbers(tmp_path / "copy.db")
    assert len(copied) >= before and copied == list(range(1, len(copied) + 1))
    conn.close()


def test_an_sqlite_uri_filename_is_backed_up(tmp_path):
    """A database named as an SQLite URI filename (`sqlite:///file:/path?uri=true`) is found and copied."""
    database, _ = bridge_database(tmp_path)
    backup_database(f"sqlite:///file:{database}?mode=ro&uri=true", tmp_path / "copy.db")
    assert numbers(tmp_path / "copy.db") == []


def test_an_existing_file_is_kept_unless_forced(tmp_path, monkeypatch, capsys):
    """`bridge backup PATH` refuses an existing PATH (exit 1, file untouched); --force replaces it."""
    database, _ = bridge_database(tmp_path)
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path))
    settings = tmp_path / "settings.toml"
    target = tmp_path / "backup.db"
    target.write_bytes(b"an older backup")
    assert main(["--config", str(settings), "backup", str(target)]) == EXIT_PROBLEM
    assert target.read_bytes() == b"an older backup"
    assert "exists: choose another name, or pass --force" in capsys.readouterr().err
    assert main(["--config", str(settings), "backup", str(target), "--force"]) == EXIT_OK
    assert numbers(target) == []
    assert f"-> {target}" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir() if "partial" in p.name) == []


def test_a_failed_backup_leaves_path_as_it_was(tmp_path, monkeypatch, capsys):
    """A database that cannot be read exits 3 in one line; even with --force PATH keeps its old
    backup, and no partial file is left beside it."""
    database, _ = bridge_database(tmp_path)
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path))
    for name in ("bridge.db-wal", "bridge.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    database.write_bytes(b"not a database at all" * 100)
    target = tmp_path / "backup.db"
    target.write_bytes(b"an older backup")
    assert main(["--config", str(tmp_path / "settings.toml"), "backup", str(target), "--force"]) == EXIT_DATABASE
    err = capsys.readouterr().err
    assert err.startswith("bridge: database: ") and err.count("\n") == 1 and "Traceback" not in err
    assert target.read_bytes() == b"an older backup"
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []


def test_no_database_is_created_by_a_backup(tmp_path, monkeypatch, capsys):
    """Before `bridge run` has created the database, a backup exits 3 and creates neither it nor PATH."""
    settings = write_settings(tmp_path, "http://127.0.0.1:9/rss.xml", "http://127.0.0.1:9", dry_run=True)
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path))
    assert main(["--config", str(settings), "backup", str(tmp_path / "backup.db")]) == EXIT_DATABASE
    assert "no database at" in capsys.readouterr().err
    assert not (tmp_path / "bridge.db").exists() and not (tmp_path / "backup.db").exists()


def test_the_database_itself_is_never_the_destination(tmp_path, monkeypatch, capsys):
    """PATH naming the database (or its WAL), even with --force, is refused and the database kept."""
    database, _ = bridge_database(tmp_path)
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path))
    for path in (database, tmp_path / "bridge.db-wal"):
        assert main(["--config", str(tmp_path / "settings.toml"), "backup", str(path), "--force"]) == EXIT_PROBLEM
        assert "the database's own file" in capsys.readouterr().err
    assert numbers(database) == []


def test_postgresql_gets_the_pg_dump_command_without_its_password(tmp_path, monkeypatch, capsys):
    """For a PostgreSQL database the command is printed, libpq's URL without +psycopg or the password."""
    settings = tmp_path / "settings.toml"
    settings.write_text('[bridge]\ndatabase = "postgresql+psycopg://bridge:s3cret@db.local:5433/bridge?sslmode=require"\n'
                        'dry_run = true\n[[sources]]\nname = "a"\nurl = "https://a.example/rss"\ntargets = ["x"]\n'
                        '[targets.x]\nkind = "x"\n')
    assert main(["--config", str(settings), "backup", "/var/backups/bridge.dump"]) == EXIT_PROBLEM
    err = capsys.readouterr().err
    assert "pg_dump -Fc -f /var/backups/bridge.dump 'postgresql://bridge@db.local:5433/bridge?sslmode=require'" in err
    assert "s3cret" not in err and err.count("\n") == 1
    assert pg_dump_command("postgresql+psycopg://u@h/d", Path("a b.dump")) == "pg_dump -Fc -f 'a b.dump' postgresql://u@h/d"


def test_a_restored_backup_is_the_bridge_as_it_was(site, tmp_path, capsys):
    """Restored with the bridge stopped, a backup shows the same status, and what it recorded as
    posted is not posted again."""
    path, _, x = site
    assert main(["--config", str(path), "run", "--once"]) == EXIT_OK
    assert len(x.posted) == 2
    backup = tmp_path / "backups" / "bridge.db"
    backup.parent.mkdir()
    assert main(["--config", str(path), "backup", str(backup)]) == EXIT_OK
    capsys.readouterr()
    assert main(["--config", str(path), "status", "--json"]) == EXIT_OK
    before = json.loads(capsys.readouterr().out)

    for name in ("bridge.db", "bridge.db-wal", "bridge.db-shm"):  # the restore, as the README says
        (tmp_path / name).unlink(missing_ok=True)
    shutil.copyfile(backup, tmp_path / "bridge.db")

    assert main(["--config", str(path), "status", "--json"]) == EXIT_OK
    after = json.loads(capsys.readouterr().out)
    assert [t["posted_today"] for t in after["targets"]] == [t["posted_today"] for t in before["targets"]] == [2]
    assert [(s["name"], s["items"]) for s in after["sources"]] == [(s["name"], s["items"]) for s in before["sources"]]
    assert main(["--config", str(path), "run", "--once"]) == EXIT_OK
    assert len(x.posted) == 2


@pytest.mark.parametrize("argv", [["backup", "--help"], ["--help"]])
def test_help_shows_backup(argv, capsys):
    """`bridge --help` lists backup, and `bridge backup --help` says what it does and its exit codes."""
    with pytest.raises(SystemExit):
        main(argv)
    out = capsys.readouterr().out
    assert "backup" in out and ("Exit 3" in out or argv == ["--help"])
