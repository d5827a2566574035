"""`bridge reload`: validates first, signals the running daemon, and exits with the daemon's own answer."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bridge.cli import EXIT_PROBLEM, main
from bridge.store.reloads import last_reload, record_reload
from tests.fakes.x_api import CREDENTIALS
from tests.helpers import antara_feed, antara_item, env_for
from tests.test_daemon_process import WAIT, settings_text
from tests.test_run_lock import Bridge

SECOND_TARGET = """
[targets.x2]
kind = "x"
api_base = "{base}"
"""


@pytest.fixture
def bridge(tmp_path, feed_server, x_api):
    """A settings file for one feed and the fake X API; daemons started through it are killed after."""
    setup = Bridge(tmp_path, feed_server, x_api)
    yield setup
    setup.close()


def reload(bridge, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(bridge._command("reload", *args), capture_output=True, text=True,
                          env={**bridge.env, **(env or {})}, cwd=bridge.tmp_path, timeout=WAIT * 2)


class TestReloadAgainstADaemon:
    def test_a_good_edit_is_applied_and_used(self, bridge, feed_server, x_api):
        """After a good edit `bridge reload` exits 0 with the daemon's answer, and the daemon polls the added source."""
        process, listener, out = bridge.start_daemon()
        feed_server.add("/olahraga.xml", antara_feed([antara_item(7)]))
        port = int(bridge.settings.read_text().split('health_listen = "127.0.0.1:')[1].split('"')[0])
        bridge.settings.write_text(settings_text({"antara": feed_server.url("/rss.xml"),
                                                  "olahraga": feed_server.url("/olahraga.xml")}, x_api.base_url, port))
        result = reload(bridge)
        assert result.returncode == 0, result.stderr
        assert f"reload applied by the daemon (PID {process.pid}): polling 2 source(s)" in result.stdout
        out.wait_for(lambda e: e.get("event") == "polled" and e.get("source") == "olahraga")
        assert process.poll() is None

    def test_a_bad_edit_is_refused_by_the_cli_without_signalling(self, bridge):
        """A broken settings.toml makes `bridge reload` exit 2 with the problem, and the daemon is not signalled."""
        process, listener, out = bridge.start_daemon()
        good = bridge.settings.read_text()
        bridge.settings.write_text(good.replace('first_run = "all"', 'first_run = "all"\npoll_interval = "often"'))
        result = reload(bridge)
        assert result.returncode == 2
        assert "bridge.poll_interval" in result.stderr and "Traceback" not in result.stderr
        bridge.settings.write_text(good)
        assert reload(bridge).returncode == 0  # the first reload the daemon answered is this one
        out.wait_for(lambda e: e.get("event") == "reloaded")
        assert not any(e.get("event", "").startswith("reload refused") for e in out.events())

    def test_a_reload_the_daemon_refuses_exits_1_with_its_reason(self, bridge, x_api):
        """Settings this shell can load but the daemon cannot (a secret only here) exit 1 with the daemon's reason."""
        process, listener, out = bridge.start_daemon()
        bridge.settings.write_text(bridge.settings.read_text().replace(
            'targets = ["x"]', 'targets = ["x", "x2"]') + SECOND_TARGET.format(base=x_api.base_url))
        only_here = {f"BRIDGE_X2_{name.upper()}": value for name, value in CREDENTIALS.items()}
        result = reload(bridge, env=only_here)
        assert result.returncode == EXIT_PROBLEM, result.stderr
        (line,) = result.stderr.splitlines()
        assert f"reload refused by the daemon (PID {process.pid})" in line
        assert "still running on the previous settings" in line and "BRIDGE_X2_" in line
        assert process.poll() is None

    def test_two_reloads_racing_both_get_the_daemons_answer(self, bridge):
        """Two `bridge reload` started together each wait for a reload begun after its own signal, and both exit 0."""
        bridge.start_daemon()
        racers = [subprocess.Popen(bridge._command("reload"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, env=bridge.env, cwd=bridge.tmp_path) for _ in range(2)]
        for racer in racers:
            racer.wait(WAIT * 2)
        assert [r.returncode for r in racers] == [0, 0], [r.stderr.read() for r in racers]


class TestReloadWithoutADaemon:
    def test_no_daemon_running_is_one_line_and_exit_1(self, tmp_path, monkeypatch, capsys, feed_server, x_api):
        """`bridge reload` with no daemon on the database says so in one line and exits 1."""
        for name, value in env_for(tmp_path).items():
            monkeypatch.setenv(name, value)
        monkeypatch.chdir(tmp_path)
        path = tmp_path / "settings.toml"
        path.write_text(settings_text({"antara": feed_server.url("/rss.xml")}, x_api.base_url, 1))
        assert main(["--config", str(path), "reload"]) == EXIT_PROBLEM
        (line,) = capsys.readouterr().err.splitlines()
        assert "no bridge is running on" in line

    def test_the_answer_row_counts_reloads(self, repo):
        """Each recorded reload gets the next number, and the last one is what is read back."""
        assert last_reload(repo.engine) is None
        assert record_reload(repo.engine, pid=1, started=10.0, applied=False, reason="bad") == 1
        assert record_reload(repo.engine, pid=1, started=11.0, applied=True, reason="good") == 2
        assert last_reload(repo.engine) == {"count": 2, "pid": 1, "started": 11.0, "applied": True, "reason": "good"}


def test_help_names_poll_and_reload(capsys):
    """`bridge --help` lists the poll and reload commands."""
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    commands = {line.split()[0] for line in out.splitlines() if line.startswith("    ") and line.split()}
    assert {"poll", "reload"} <= commands


class TestPostgresDaemonPid:
    """On PostgreSQL there is no lock file: the PID comes from this host's row in the replicas table."""

    def test_reload_finds_the_daemon_without_pid(self, bridge, postgres_url):
        """`bridge reload` with no --pid on a PostgreSQL database signals the daemon holding its lock."""
        from sqlalchemy import create_engine

        from bridge.store.schema import metadata

        engine = create_engine(postgres_url)
        metadata.drop_all(engine)  # a fresh store in this run's schema
        engine.dispose()
        bridge.settings.write_text(bridge.settings.read_text().replace(
            'database = "sqlite:///bridge.db"', f'database = "{postgres_url}"'))
        process, listener, out = bridge.start_daemon()
        result = reload(bridge)
        assert result.returncode == 0, result.stderr
        assert f"reload applied by the daemon (PID {process.pid})" in result.stdout

    def test_a_daemon_on_another_host_is_named_not_signalled(self, postgres_url):
        """A replica registered from another host gives one line naming that host: its PID means
        nothing here. (Replicas replaced the run lock on PostgreSQL, issue 13: the PID comes from
        the replicas table now, not from the lock's session.)"""
        import socket

        from bridge.clock import utc_now
        from bridge.errors import BridgeError
        from bridge.reloading import daemon_pid
        from bridge.store import replicas
        from bridge.store.db import create_database_engine
        from bridge.store.migrations import migrate
        from tests.conftest import _drop_all

        engine = create_database_engine(postgres_url)
        _drop_all(engine)
        migrate(engine)
        try:
            replicas.register(engine, "far", host="elsewhere", pid=4242, version="0", settings="s", now=utc_now())
            with pytest.raises(BridgeError, match="runs on host elsewhere \\(PID 4242\\)"):
                daemon_pid(postgres_url, engine)
            replicas.register(engine, "near", host=socket.gethostname(), pid=4343, version="0", settings="s",
                              now=utc_now())
            assert daemon_pid(postgres_url, engine) == 4343  # this host's replica, the other ignored
            replicas.register(engine, "near2", host=socket.gethostname(), pid=4444, version="0", settings="s",
                              now=utc_now())
            with pytest.raises(BridgeError, match="2 bridge replicas run on this host .*4343, 4444.*--pid"):
                daemon_pid(postgres_url, engine)
            for name in ("far", "near", "near2"):
                replicas.leave(engine, name)
            with pytest.raises(BridgeError, match="no bridge is running"):
                daemon_pid(postgres_url, engine)
        finally:
            _drop_all(engine)
            engine.dispose()



AS_SHUT_OUT = """
import sys
sys.path.insert(0, {repo!r})
from bridge.config import load_config
from bridge.errors import ConfigError
from bridge.secrets import load_credentials
from pathlib import Path

problems = []
found = load_credentials("x", ("access_token",), {{"CREDENTIALS_DIRECTORY": {cred!r}}}, problems)
print("problems:", problems)
load_config(Path({settings!r}), dry_run=None, secrets=False, environ={{"CREDENTIALS_DIRECTORY": {cred!r}}})
print("validated without secrets")
try:
    load_config(Path({settings!r}), dry_run=None, environ={{"CREDENTIALS_DIRECTORY": {cred!r}}})
except ConfigError as exc:
    print("with secrets:", exc)
"""


def test_secrets_in_a_folder_this_process_may_not_enter(tmp_path):
    """In a process that may not look into the credentials folder (what ExecReload= met under
    systemd 252): reading a secret is one problem line saying so, not a PermissionError; `bridge
    reload`'s validation (secrets=False) does not touch the folder and passes. Root is made to obey
    the folder's permissions by dropping its CAP_DAC_* capabilities (setpriv)."""
    import os
    import shutil

    from tests.test_cli import write_settings
    from tests.test_daemon_process import REPO_ROOT

    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and util-linux's setpriv to make a folder this process may not enter")
    cred = tmp_path / "credentials"
    cred.mkdir(mode=0o700)
    os.chown(cred, 65534, 65534)  # nobody's: root without CAP_DAC_* may not look in
    settings = write_settings(tmp_path, "https://a.id/rss", "https://api.x.com")
    code = AS_SHUT_OUT.format(repo=str(REPO_ROOT), cred=str(cred), settings=str(settings))
    done = subprocess.run([setpriv, "--bounding-set", "-dac_override,-dac_read_search", sys.executable, "-c", code],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "permission denied" in done.stdout and "service user" in done.stdout
    assert "validated without secrets" in done.stdout
    assert "with secrets:" in done.stdout and "Traceback" not in done.stderr
