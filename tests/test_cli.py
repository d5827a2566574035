"""The command line: exit codes, messages, logs and signals, as an operator sees them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from bridge.cli import EXIT_CONFIG, EXIT_DATABASE, EXIT_OK, EXIT_PROBLEM, main
from tests.fakes.x_api import CREDENTIALS
from tests.helpers import antara_feed, antara_item, env_for

REPO_ROOT = Path(__file__).resolve().parents[1]


def write_settings(tmp_path, feed_url: str, x_base: str, *, dry_run: bool = False, first_run: str = "all",
                   extra_bridge: str = "") -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(f"""
[bridge]
database = "sqlite:///bridge.db"
dry_run = {str(dry_run).lower()}
first_run = "{first_run}"
{extra_bridge}
[[sources]]
name = "antara"
url = "{feed_url}"
targets = ["x"]
[targets.x]
kind = "x"
api_base = "{x_base}"
""")
    return path


@pytest.fixture
def site(feed_server, x_api, tmp_path, monkeypatch):
    """A feed with two stories, the fake X API, secrets in the environment and a settings file."""
    feed_server.add("/rss.xml", antara_feed([antara_item(1), antara_item(2)]))
    for name, value in env_for(tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("BRIDGE_CONFIG", raising=False)
    path = write_settings(tmp_path, feed_server.url("/rss.xml"), x_api.base_url)
    return path, feed_server, x_api


def test_help_names_every_command(capsys):
    """`bridge --help` lists run, check, status, preview, catchup, retry and skip."""
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0
    for command in ("run", "check", "status", "preview", "catchup", "retry", "skip", "--config", "exit codes"):
        assert command in out


def test_invalid_config_exits_2_listing_every_problem(tmp_path, capsys):
    """A broken settings file exits 2 and prints each problem with its key path."""
    path = tmp_path / "settings.toml"
    path.write_text('[bridge]\npoll_interval = "often"\n[[sources]]\nname = "a"\nurl = "https://a.id/rss"\n'
                    'targets = ["y"]\n')
    assert main(["--config", str(path), "check"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "bridge.poll_interval" in err and "no target named 'y'" in err


def test_missing_secret_is_named(site, monkeypatch, capsys):
    """A live target without its access token refuses to start and names the variable."""
    path, _, _ = site
    monkeypatch.delenv("BRIDGE_X_ACCESS_TOKEN")
    assert main(["--config", str(path), "run", "--once"]) == EXIT_CONFIG
    assert "BRIDGE_X_ACCESS_TOKEN" in capsys.readouterr().err


def test_unusable_database_exits_3(site, tmp_path, capsys):
    """A database that cannot be opened exits 3 with the reason."""
    path, feeds, x = site
    blocker = tmp_path / "file"
    blocker.write_text("")
    path.write_text(path.read_text().replace("sqlite:///bridge.db", f"sqlite:///{blocker}/sub/bridge.db"))
    assert main(["--config", str(path), "run", "--once"]) == EXIT_DATABASE
    assert "database" in capsys.readouterr().err


def test_run_once_posts_and_logs_json_without_secrets(site, capsys):
    """`run --once` posts each story once, logs JSON lines off a terminal, and no secret appears even at debug."""
    path, _, x = site
    assert main(["--config", str(path), "--log-level", "debug", "run", "--once"]) == EXIT_OK
    assert main(["--config", str(path), "--log-level", "debug", "run", "--once"]) == EXIT_OK
    assert len(x.posted) == 2
    out = capsys.readouterr().out
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    posted = [e for e in events if e.get("event") == "posted"]
    assert len(posted) == 2 and all(e["target"] == "x" and e["source"] == "antara" for e in posted)
    assert all("duration_ms" in e and "item" in e for e in posted)
    for secret in CREDENTIALS.values():
        assert secret not in out


def test_run_once_exits_0_when_a_source_fails(site, capsys):
    """A source that cannot be read is logged, and `run --once` still exits 0."""
    path, feeds, _ = site
    feeds.add_status("/rss.xml", 503)
    assert main(["--config", str(path), "run", "--once"]) == EXIT_OK
    assert "HTTP 503" in capsys.readouterr().out


def test_dry_run_flag_posts_nothing(site, capsys):
    """`run --once --dry-run` logs what it would post and sends nothing to X."""
    path, _, x = site
    assert main(["--config", str(path), "run", "--once", "--dry-run"]) == EXIT_OK
    assert x.requests == []
    assert "would post" in capsys.readouterr().out


def test_status_after_a_run(site, capsys):
    """`status` shows the source's poll and the target's counts, as a table and as JSON."""
    path, _, _ = site
    main(["--config", str(path), "run", "--once"])
    capsys.readouterr()
    assert main(["--config", str(path), "status"]) == EXIT_OK
    table = capsys.readouterr().out
    assert "antara" in table and "SOURCES" in table and "TARGETS" in table
    assert main(["--config", str(path), "status", "--json"]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert report["targets"][0]["posted_today"] == 2
    assert report["sources"][0]["outcome"] == "ok" and report["sources"][0]["items"] == 2


def test_status_before_any_run(site, capsys):
    """`status` on a fresh install says to start the daemon first instead of failing obscurely."""
    path, _, _ = site
    assert main(["--config", str(path), "status"]) == EXIT_DATABASE
    assert "bridge run" in capsys.readouterr().err


def test_check_verifies_credentials(site, capsys):
    """`check` lists sources and targets and prints the X account's handle."""
    path, _, _ = site
    assert main(["--config", str(path), "check"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "source antara" in out and "@kemenpora" in out


def test_check_counts_against_the_budget(site, capsys):
    """X bills GET /2/users/me ($0.010): a `check` of a live X target shows in today's spend."""
    path, _, _ = site
    main(["--config", str(path), "run", "--once"])
    capsys.readouterr()
    spent = lambda: json.loads((main(["--config", str(path), "status", "--json"]), capsys.readouterr().out)[1]
                               )["targets"][0]["spent_today"]
    before = spent()
    assert main(["--config", str(path), "check"]) == EXIT_OK
    capsys.readouterr()
    assert spent() == pytest.approx(before + 0.010)


def test_check_fails_on_rejected_credentials(site, capsys):
    """`check` exits non-zero when X rejects the credentials."""
    path, _, x = site
    x.enqueue("GET", "/2/users/me", status=401, json={"title": "Unauthorized", "type": "about:blank",
                                                      "status": 401, "detail": "Unauthorized"})
    assert main(["--config", str(path), "check"]) == EXIT_PROBLEM
    assert "PROBLEM" in capsys.readouterr().out


def test_catchup_then_run_posts_nothing(site, capsys):
    """`catchup` marks the feed's stories seen, so a run with first_run=all posts none of them."""
    path, _, x = site
    assert main(["--config", str(path), "catchup", "antara"]) == EXIT_OK
    assert main(["--config", str(path), "run", "--once"]) == EXIT_OK
    assert x.posted == {}
    assert main(["--config", str(path), "catchup", "nope"]) == EXIT_CONFIG


def test_retry_and_skip(site, capsys):
    """`retry` re-queues a failed delivery and `skip` refuses one that is not pending."""
    path, _, x = site
    for _ in range(2):
        x.enqueue("POST", "/2/tweets", status=400, json={"errors": [{"message": "bad text"}],
                                                         "title": "Invalid Request", "detail": "invalid",
                                                         "type": "https://api.twitter.com/2/problems/invalid-request"})
    main(["--config", str(path), "run", "--once"])
    capsys.readouterr()
    main(["--config", str(path), "status", "--json"])
    failures = json.loads(capsys.readouterr().out)["recent_failures"]
    assert len(failures) == 2
    assert main(["--config", str(path), "retry", str(failures[0]["id"])]) == EXIT_OK
    assert main(["--config", str(path), "skip", str(failures[1]["id"])]) == EXIT_PROBLEM
    assert main(["--config", str(path), "run", "--once"]) == EXIT_OK
    assert len(x.posted) == 1


def test_sigterm_stops_the_daemon_cleanly(site, tmp_path):
    """`bridge run` under SIGTERM finishes its work and exits 0."""
    path, _, x = site
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "bridge", "--config", str(path), "run"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    lines: list[str] = []
    posted = threading.Event()

    def read() -> None:
        for line in process.stdout:
            lines.append(line)
            if '"posted"' in line and sum('"posted"' in item for item in lines) == 2:
                posted.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert posted.wait(30), "".join(lines) + process.stderr.read() if process.poll() is not None else "".join(lines)
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    reader.join(5)
    assert any('"stopped"' in line for line in lines)
    assert len(x.posted) == 2


def test_check_fails_on_unknown_placeholder(site, capsys):
    """`check` refuses a template with an unknown placeholder, naming the key and the placeholder."""
    path, _, _ = site
    path.write_text(path.read_text().replace('kind = "x"', 'kind = "x"\ntemplate = "{judul} {url}"'))
    assert main(["--config", str(path), "check"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "targets.x.template" in err and "judul" in err


def test_status_lists_configured_targets_before_any_delivery(site, capsys):
    """A target with nothing delivered yet is still listed, with zeros, so an operator sees it exists."""
    path, feeds, _ = site
    feeds.add("/rss.xml", antara_feed([]))
    main(["--config", str(path), "run", "--once"])
    capsys.readouterr()
    assert main(["--config", str(path), "status", "--json"]) == EXIT_OK
    [target] = json.loads(capsys.readouterr().out)["targets"]
    assert target["name"] == "x" and target["posted_today"] == 0 and target["state"] == "ok"


def test_status_of_a_live_service_says_live_without_credentials(site, monkeypatch, capsys):
    """`status` on a live config reads no credentials and reports dry_run false, not a rehearsal."""
    path, _, _ = site
    main(["--config", str(path), "run", "--once"])
    for name in list(os.environ):
        if name.startswith("BRIDGE_X_"):
            monkeypatch.delenv(name)
    capsys.readouterr()
    assert main(["--config", str(path), "status", "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["dry_run"] is False
    assert main(["--config", str(path), "status"]) == EXIT_OK
    assert "dry run" not in capsys.readouterr().out


def _db_file(tmp_path) -> Path:
    return tmp_path / "bridge.db"


def test_health_exit_codes_on_real_databases(site, tmp_path, capsys):
    """`bridge health` exits 2 before any run, 0 after a good run, 1 once a source failed 3 polls in a row."""
    import sqlite3

    path, feeds, _ = site
    assert main(["--config", str(path), "health"]) == 2
    assert "broken: database" in capsys.readouterr().out
    assert main(["--config", str(path), "run", "--once"]) == EXIT_OK
    capsys.readouterr()
    assert main(["--config", str(path), "health"]) == 0
    assert capsys.readouterr().out.startswith("ok:")
    with sqlite3.connect(_db_file(tmp_path)) as conn:
        conn.execute("UPDATE sources SET consecutive_failures = 3, last_error = 'HTTP 503'")
    assert main(["--config", str(path), "health"]) == 1
    out = capsys.readouterr().out
    assert out.splitlines() == ["degraded: source antara failing: 3 polls in a row, last: HTTP 503"]
    assert main(["--config", str(path), "check"]) == EXIT_PROBLEM
    assert "PROBLEM: source antara failing" in capsys.readouterr().out
    assert main(["--config", str(path), "status"]) == EXIT_OK


def test_health_says_broken_for_a_schema_too_old(site, tmp_path, capsys):
    """A database at an older schema version than this bridge's makes `bridge health` exit 2 naming the fix."""
    import sqlite3

    path, _, _ = site
    assert main(["--config", str(path), "run", "--once"]) == EXIT_OK
    capsys.readouterr()
    with sqlite3.connect(_db_file(tmp_path)) as conn:
        conn.execute("UPDATE schema_version SET version = version - 1")
    assert main(["--config", str(path), "health"]) == 2
    assert "run `bridge run` once to upgrade it" in capsys.readouterr().out


def test_status_and_health_do_not_wait_for_a_held_write_lock(site, tmp_path, capsys):
    """With another connection holding the write lock (BEGIN IMMEDIATE), `status` and `health` answer within 3 s."""
    import sqlite3
    import time

    path, _, _ = site
    assert main(["--config", str(path), "run", "--once"]) == EXIT_OK
    capsys.readouterr()
    holder = sqlite3.connect(_db_file(tmp_path), isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        assert main(["--config", str(path), "status", "--json"]) == EXIT_OK
        assert main(["--config", str(path), "health"]) == 0
        assert time.monotonic() - started < 3
    finally:
        holder.execute("ROLLBACK")
        holder.close()


@pytest.fixture
def immutable(tmp_path):
    """Makes a file read-only even for root (chattr +i, which ext4 and xfs honour; chmod does not bind
    root), and undoes it at teardown; skips where the filesystem has no immutable flag."""
    made = []

    def make(path: Path) -> None:
        if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
            pytest.skip("this filesystem cannot make a file immutable (chattr +i)")
        made.append(path)

    yield make
    for path in made:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_read_only_database_gives_one_line_and_exit_3(site, tmp_path, immutable, capsys):
    """A database file that cannot be written stops `run --once` with exit 3 and one line naming the fix; health says broken."""
    path, _, _ = site
    assert main(["--config", str(path), "run", "--once"]) == EXIT_OK
    capsys.readouterr()
    immutable(_db_file(tmp_path))
    assert main(["--config", str(path), "run", "--once"]) == EXIT_DATABASE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "read-only" in err and "let the service user write" in err
    assert main(["--config", str(path), "health"]) == 2
    assert "broken: database:" in capsys.readouterr().out
    assert main(["--config", str(path), "status"]) == EXIT_OK
    assert capsys.readouterr().err.startswith("bridge: database:")


def test_unreadable_database_gives_status_one_line_and_exit_3(site, tmp_path, capsys):
    """A database file that is not SQLite makes `status` exit 3 with one line, no traceback."""
    path, _, _ = site
    _db_file(tmp_path).write_bytes(b"not a database " * 100)
    assert main(["--config", str(path), "status"]) == EXIT_DATABASE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "file is not a database" in err and "Traceback" not in err


def test_ctrl_c_during_preview_exits_130_without_traceback(site, tmp_path):
    """SIGINT while `preview` reads a slow feed exits 130 with one line and no traceback."""
    path, feeds, _ = site
    feeds.add_slow("/rss.xml", interval=0.05)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "bridge", "--config", str(path), "preview", "antara"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        import time

        time.sleep(1.5)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines() == [err.strip()] and "interrupted" in err


def test_closed_pipe_exits_quietly(site, tmp_path):
    """`bridge status | head -0`: a reader that closes the pipe early gets no traceback on stderr."""
    path, _, _ = site
    assert main(["--config", str(path), "run", "--once"]) == EXIT_OK
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line
    result = subprocess.run([sys.executable, "-m", "bridge", "--config", str(path), "status"], stdout=write,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path, timeout=30)
    os.close(write)
    assert result.stderr == "" and result.returncode == EXIT_OK


def test_ctrl_c_during_run_once_exits_130_without_traceback(site, tmp_path):
    """SIGINT while `run --once` reads a slow feed exits 130 with one line and no traceback."""
    path, feeds, _ = site
    feeds.add_slow("/rss.xml", interval=0.05)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "bridge", "--config", str(path), "run", "--once"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        import time

        time.sleep(2)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert "Traceback" not in err + out and "interrupted" in err


def test_health_says_broken_when_the_database_disk_is_full(site, monkeypatch, capsys):
    """With under 1 MiB free beside the database (as `df` would report a full disk), `bridge health` exits 2 naming the fix."""
    import shutil
    from collections import namedtuple

    path, _, _ = site
    assert main(["--config", str(path), "run", "--once"]) == EXIT_OK
    capsys.readouterr()
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _path: usage(10**9, 10**9, 4096))
    assert main(["--config", str(path), "health"]) == 2
    assert "is full: free space there" in capsys.readouterr().out


def test_a_broken_install_is_one_line_naming_the_fix(site, tmp_path):
    """A dependency that cannot be imported (here twitter_text, needed to post to X) ends the command
    with one line that says to install again, exit 1, and no traceback."""
    path, _, _ = site
    code = ("import sys; sys.modules['twitter_text'] = None; from bridge.cli import main; "
            f"sys.exit(main(['--config', {str(path)!r}, 'run', '--once']))")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                            timeout=60, check=False)
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr + result.stdout
    assert len(lines) == 1 and "dependency is missing or broken" in lines[0] and "install" in lines[0]
