"""One daemon per database: `bridge run` and `bridge run --once` hold the run lock, a second is refused.

The process tests start real `bridge run` subprocesses as systemd would (see test_daemon_process.py)
and wait on events (READY=1, a request reaching the fake X API) with timeouts; nothing sleeps.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from sqlalchemy import create_engine, text

from bridge.service import prepare
from bridge.store.lock import RunLockHeld, acquire_run_lock, lock_path
from tests.helpers import antara_feed, antara_item, env_for, runtime, wait_until
from tests.test_daemon_process import REPO_ROOT, WAIT, NotifyListener, Output, free_port, settings_text

REFUSAL_BOUND = 5.0
"""A second `bridge run` process must end within this many seconds of its start. The lock itself
answers at once (TestLockObject checks 0.1 s); the process's own start-up (interpreter, imports,
reading settings.toml) takes 0.8 to 1 s here, more on a loaded machine. A refusal that waited for the
lock instead would take as long as the daemon lives: WAIT and more."""


class Bridge:
    """`bridge run` processes on one settings file and database in `tmp_path`."""

    def __init__(self, tmp_path, feeds, x_api):
        feeds.add("/rss.xml", antara_feed([antara_item(1), antara_item(2)]))
        self.tmp_path, self.x = tmp_path, x_api
        self.settings = tmp_path / "settings.toml"
        self.settings.write_text(settings_text({"antara": feeds.url("/rss.xml")}, x_api.base_url, free_port()))
        self.env = {**os.environ, **env_for(tmp_path), "PYTHONPATH": str(REPO_ROOT)}
        self.env.pop("BRIDGE_CONFIG", None)
        self.processes: list[subprocess.Popen] = []
        self.listeners: list[NotifyListener] = []

    def start_daemon(self) -> tuple[subprocess.Popen, NotifyListener, Output]:
        listener = NotifyListener()
        self.listeners.append(listener)
        process = subprocess.Popen(self._command("run"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env={**self.env, "NOTIFY_SOCKET": listener.name}, cwd=self.tmp_path)
        self.processes.append(process)
        out = Output(process.stdout)
        listener.wait_for("READY=1")
        return process, listener, out

    def run(self, *args: str) -> tuple[subprocess.CompletedProcess, float]:
        started = time.monotonic()
        result = subprocess.run(self._command(*args), capture_output=True, text=True, env=self.env,
                                cwd=self.tmp_path, timeout=WAIT)
        return result, time.monotonic() - started

    def states(self) -> list[str]:
        with sqlite3.connect(self.tmp_path / "bridge.db") as db:
            return [state for (state,) in db.execute("SELECT state FROM deliveries ORDER BY id")]

    def _command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "bridge", "--config", str(self.settings), *args]

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait(WAIT)
        for listener in self.listeners:
            listener.close()


@pytest.fixture
def bridge(tmp_path, feed_server, x_api):
    """A settings file for one feed and the fake X API; daemons started through it are killed after."""
    setup = Bridge(tmp_path, feed_server, x_api)
    yield setup
    setup.close()


class TestOneDaemonPerDatabase:
    def test_a_second_daemon_is_refused_at_once_naming_the_first(self, bridge):
        """A second `bridge run` on the same SQLite file exits 3 at once, not waiting for the lock, with
        one line naming the running one's PID and what to do instead."""
        first, _, _ = bridge.start_daemon()
        second, elapsed = bridge.run("run")
        assert second.returncode == 3, second.stderr
        assert elapsed < REFUSAL_BOUND
        (line,) = second.stderr.splitlines()
        assert f"PID {first.pid}" in line
        assert "systemctl reload bridge" in line and "systemctl stop bridge" in line
        assert "Traceback" not in second.stderr
        assert first.poll() is None  # the running daemon is untouched
        assert lock_path(bridge.tmp_path / "bridge.db").read_text().split()[0] == str(first.pid)

    def test_of_three_daemons_started_together_exactly_one_runs(self, bridge):
        """Three `bridge run` started at the same moment race for the lock: one runs, the others exit 3."""
        listeners = [NotifyListener() for _ in range(3)]
        bridge.listeners += listeners
        racers = [subprocess.Popen(bridge._command("run"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   text=True, env={**bridge.env, "NOTIFY_SOCKET": listener.name},
                                   cwd=bridge.tmp_path) for listener in listeners]
        bridge.processes += racers
        assert wait_until(lambda: sum(p.poll() is not None for p in racers) == 2, WAIT), "the losers did not exit"
        (winner,) = [n for n, p in enumerate(racers) if p.poll() is None]
        assert listeners[winner].wait_for("READY=1")
        for n, loser in enumerate(racers):
            if n != winner:
                assert loser.returncode == 3
                assert "another bridge is already running" in loser.stderr.read()

    def test_run_once_beside_the_daemon_leaves_its_post_in_flight_alone(self, bridge):
        """`bridge run --once` beside a daemon that is posting is refused (exit 3), and the daemon's
        `sending` row is not settled as if a crash had left it."""
        bridge.x.enqueue("POST", "/2/tweets", status=201, delay=WAIT,
                         json={"data": {"id": "1", "text": "slow", "edit_history_tweet_ids": ["1"]}})
        first, _, _ = bridge.start_daemon()
        assert wait_until(lambda: bridge.x.routed("/2/tweets"), WAIT), "the daemon never started posting"
        assert sorted(bridge.states()) == ["pending", "sending"]
        once, elapsed = bridge.run("run", "--once")
        assert once.returncode == 3 and f"PID {first.pid}" in once.stderr
        assert elapsed < REFUSAL_BOUND
        assert sorted(bridge.states()) == ["pending", "sending"]
        assert len(bridge.x.routed("/2/tweets")) == 1

    def test_the_lock_dies_with_its_holder(self, bridge):
        """A daemon killed with SIGKILL leaves no lock behind: the next `bridge run --once` runs and posts."""
        first, _, _ = bridge.start_daemon()
        first.send_signal(signal.SIGKILL)
        first.wait(WAIT)
        third, _ = bridge.run("run", "--once")
        assert third.returncode == 0, third.stderr
        assert set(bridge.states()) == {"sent"}

    def test_status_and_retry_work_beside_the_daemon(self, bridge):
        """Commands that read or change one row take no lock: `status` and `skip` answer beside the daemon."""
        bridge.start_daemon()
        status, _ = bridge.run("status")
        assert status.returncode == 0, status.stderr
        skip, _ = bridge.run("skip", "999")
        assert skip.returncode == 1 and "no pending delivery with that id" in skip.stdout


class TestLockObject:
    def test_a_released_lock_can_be_taken_again(self, tmp_path):
        """The lock is refused at once, not waited for, even within one process, until released."""
        engine = create_engine(f"sqlite:///{tmp_path}/bridge.db")
        first = acquire_run_lock(engine)
        started = time.monotonic()
        with pytest.raises(RunLockHeld, match=f"PID {os.getpid()}"):
            acquire_run_lock(engine)
        assert time.monotonic() - started < 0.1  # refused, never waited for
        first.release()
        with acquire_run_lock(engine) as again:
            assert again.held
        assert not again.held

    @pytest.mark.parametrize("url,path", [
        ("sqlite:////var/lib/bridge/bridge.db", "/var/lib/bridge/bridge.db"),
        ("sqlite:///state/bridge.db?timeout=5", "state/bridge.db"),
        ("sqlite+pysqlite:////x/b.db", "/x/b.db"),
        ("sqlite://", None), ("sqlite:///:memory:", None), ("sqlite:///file:b?mode=memory&uri=true", None),
        ("sqlite:///file:/var/lib/bridge/bridge.db?mode=rwc&uri=true", "/var/lib/bridge/bridge.db"),
        ("sqlite:///file:weird.db", "file:weird.db"),  # without uri=true SQLite takes the name as written
        ("postgresql+psycopg://bridge@db/bridge", None),
    ])
    def test_the_sqlite_file_is_read_from_the_url_without_sqlalchemy(self, url, path):
        """The file a SQLite URL names (locked before SQLAlchemy loads), None for memory or another database."""
        from pathlib import Path

        from bridge.store.lock import sqlite_file

        assert sqlite_file(url) == (Path(path) if path else None)

    def test_an_in_memory_database_needs_no_lock(self):
        """Nothing else can open an in-memory database, so two locks on one never conflict."""
        engine = create_engine("sqlite://")
        assert acquire_run_lock(engine).held and acquire_run_lock(engine).held

    def test_recovery_refuses_without_the_lock(self, feed_server, tmp_path, clock):
        """Start-up recovery runs only for the lock's holder: a released lock is refused."""
        from tests.helpers import make_config

        rt = runtime(make_config({"a": feed_server.url("/a.xml")}), tmp_path, clock)
        lock = acquire_run_lock(rt.repo.engine)
        lock.release()
        with pytest.raises(RuntimeError, match="run lock"):
            prepare(rt, lock)
        rt.repo.engine.dispose()


class TestPostgresLock:
    def test_advisory_lock_is_exclusive_and_names_its_holder(self, postgres_url):
        """On PostgreSQL a second lock is refused naming the holder's PID, which pg_stat_activity shows
        too; released, it can be taken again."""
        one, two = create_engine(postgres_url), create_engine(postgres_url)
        try:
            first = acquire_run_lock(one)
            with pytest.raises(RunLockHeld, match=f"PID {os.getpid()}") as refused:
                acquire_run_lock(two)
            assert "systemctl stop bridge" in str(refused.value)
            with two.connect() as conn:
                names = conn.execute(text("SELECT application_name FROM pg_stat_activity")).scalars().all()
            assert f"bridge run pid={os.getpid()} host=" in " ".join(names)
            first.release()
            acquire_run_lock(two).release()
        finally:
            one.dispose()
            two.dispose()

    def test_bridges_in_other_schemas_do_not_refuse_each_other(self, postgres_url):
        """The key is per schema: a bridge (or test run) in another schema of the database is not refused."""
        schema = f"bridge_test_other_{os.getpid()}"
        engine = create_engine(postgres_url)
        other = create_engine(postgres_url.rsplit("options=", 1)[0] + f"options=-csearch_path%3D{schema}")
        with engine.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {schema}"))
        try:
            with acquire_run_lock(engine), acquire_run_lock(other) as second:
                assert second.held
        finally:
            with engine.begin() as conn:
                conn.execute(text(f"DROP SCHEMA IF EXISTS {schema}"))
            engine.dispose()
            other.dispose()

    def test_the_advisory_lock_dies_with_its_holder(self, postgres_url):
        """A process holding the lock and killed with SIGKILL releases it: the server ends its session."""
        code = ("import sys; from sqlalchemy import create_engine; from bridge.store.lock import acquire_run_lock;"
                f"lock = acquire_run_lock(create_engine({postgres_url!r})); print('locked', flush=True);"
                "sys.stdin.read()")
        holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
        engine = create_engine(postgres_url)
        try:
            assert holder.stdout.readline().strip() == "locked"
            with pytest.raises(RunLockHeld, match=f"PID {holder.pid}"):
                acquire_run_lock(engine)
            holder.kill()
            holder.wait(WAIT)
            assert wait_until(lambda: _can_lock(engine), WAIT), "the lock outlived its holder"
        finally:
            if holder.poll() is None:
                holder.kill()
            engine.dispose()


def _can_lock(engine) -> bool:
    try:
        acquire_run_lock(engine).release()
        return True
    except RunLockHeld:
        return False
