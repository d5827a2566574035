"""One source at a time: `enabled = false`, `bridge poll SOURCE`, and catch-ups that leave a backoff alone."""

from __future__ import annotations

import json
import sqlite3
import subprocess

import pytest

from bridge.cli import EXIT_OK, EXIT_PROBLEM, main
from bridge.config import parse_config
from tests.helpers import antara_feed, antara_item, env_for, make_config
from tests.test_daemon_process import WAIT
from tests.test_run_lock import Bridge


def write_two_sources(tmp_path, feeds, x_api, *, enabled: str = "false") -> str:
    path = tmp_path / "settings.toml"
    path.write_text(f"""
[bridge]
database = "sqlite:///bridge.db"
dry_run = false
first_run = "all"
[[sources]]
name = "antara"
url = "{feeds.url('/rss.xml')}"
targets = ["x"]
[[sources]]
name = "paused"
url = "{feeds.url('/paused.xml')}"
targets = ["x"]
enabled = {enabled}
[targets.x]
kind = "x"
api_base = "{x_api.base_url}"
""")
    return str(path)


@pytest.fixture
def two(feed_server, x_api, tmp_path, monkeypatch):
    """Two feeds, "antara" and "paused" (enabled = false), the fake X API and secrets in the environment."""
    feed_server.add("/rss.xml", antara_feed([antara_item(1)]))
    feed_server.add("/paused.xml", antara_feed([antara_item(5), antara_item(6)]))
    for name, value in env_for(tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("BRIDGE_CONFIG", raising=False)
    return write_two_sources(tmp_path, feed_server, x_api), feed_server, x_api


def source_row(tmp_path, name: str) -> tuple:
    with sqlite3.connect(tmp_path / "bridge.db") as db:
        return db.execute("SELECT consecutive_failures, next_poll_at, last_error FROM sources WHERE name = ?",
                          (name,)).fetchone()


def deliveries(tmp_path) -> list[tuple]:
    with sqlite3.connect(tmp_path / "bridge.db") as db:
        return db.execute("SELECT i.source, i.key, d.state FROM deliveries d JOIN items i ON i.id = d.item_id "
                          "ORDER BY d.id").fetchall()


def last_line(capsys) -> str:
    """The command's own line: it comes after the log's JSON lines (stdout off a terminal)."""
    return capsys.readouterr().out.splitlines()[-1]


class TestEnabled:
    def test_enabled_defaults_to_true_and_must_be_a_boolean(self):
        """A source is enabled unless `enabled = false`; a non-boolean is refused naming the key."""
        raw = make_config({"a": "https://example.com/rss"})
        assert parse_config(raw, environ={}, dry_run=True).sources[0].enabled is True
        raw["sources"][0]["enabled"] = False
        config = parse_config(raw, environ={}, dry_run=True)
        assert config.sources[0].enabled is False and config.enabled_sources == ()
        raw["sources"][0]["enabled"] = "no"
        with pytest.raises(Exception, match=r"sources\[0\] \(a\)\.enabled"):
            parse_config(raw, environ={}, dry_run=True)

    def test_run_once_reads_no_disabled_source(self, two, capsys):
        """`run --once` never fetches a disabled source, and posts only the enabled one's stories."""
        path, feeds, x = two
        assert main(["--config", path, "run", "--once"]) == EXIT_OK
        assert feeds.requests_to("/paused.xml") == []
        assert len(x.posted) == 1

    def test_a_disabled_sources_queued_posts_still_go_out(self, two, tmp_path, capsys):
        """Stories a source queued before it was disabled keep their state and are delivered."""
        path, feeds, x = two
        write_two_sources(tmp_path, feeds, x, enabled="true")
        assert main(["--config", path, "poll", "paused"]) == EXIT_OK
        assert [state for source, _, state in deliveries(tmp_path) if source == "paused"] == ["pending", "pending"]
        write_two_sources(tmp_path, feeds, x, enabled="false")
        assert main(["--config", path, "run", "--once"]) == EXIT_OK
        assert len(feeds.requests_to("/paused.xml")) == 1  # only the poll read it
        assert len(x.posted) == 3  # antara's story and both of paused's

    def test_status_shows_a_disabled_source_as_disabled(self, two, capsys):
        """`bridge status` and `--json` call a disabled source "disabled", never polled or late."""
        path, _, _ = two
        main(["--config", path, "run", "--once"])
        capsys.readouterr()
        assert main(["--config", path, "status", "--json"]) == EXIT_OK
        states = {s["name"]: s["state"] for s in json.loads(capsys.readouterr().out)["sources"]}
        assert states == {"antara": "ok", "paused": "disabled"}
        main(["--config", path, "status"])
        assert "DISABLED" in capsys.readouterr().out

    def test_the_rehearsal_reads_no_disabled_source(self, two, capsys):
        """`run --once --dry-run` does not read a disabled source."""
        path, feeds, _ = two
        assert main(["--config", path, "run", "--once", "--dry-run"]) == EXIT_OK
        assert feeds.requests_to("/paused.xml") == [] and feeds.requests_to("/rss.xml")

    def test_catchup_and_poll_refuse_a_disabled_source(self, two, capsys):
        """`catchup` and `poll` of a disabled source exit 1 with one line saying it is disabled; a plain
        `catchup` skips it."""
        path, feeds, _ = two
        for command in ("catchup", "poll"):
            assert main(["--config", path, command, "paused"]) == EXIT_PROBLEM
            (line,) = capsys.readouterr().err.splitlines()
            assert "disabled (enabled = false" in line
        assert main(["--config", path, "catchup"]) == EXIT_OK
        assert feeds.requests_to("/paused.xml") == []


class TestPoll:
    def test_poll_prints_the_outcome_and_never_posts(self, two, tmp_path, capsys):
        """`bridge poll` stores and queues the new stories, prints one line of counts, and posts nothing."""
        path, feeds, x = two
        assert main(["--config", path, "poll", "antara"]) == EXIT_OK
        assert last_line(capsys) == "antara: ok: 1 stories, 1 new, 1 queued, first run"
        assert x.posted == {} and [s for *_, s in deliveries(tmp_path)] == ["pending"]
        feeds.edit("/rss.xml", body=antara_feed([antara_item(2), antara_item(1)]))
        assert main(["--config", path, "poll", "antara"]) == EXIT_OK
        assert last_line(capsys) == "antara: ok: 2 stories, 1 new, 1 queued"

    def test_poll_says_not_modified(self, two, capsys):
        """A 304 answer to the conditional GET prints "not modified" and exits 0."""
        path, feeds, _ = two
        feeds.edit("/rss.xml", etag='"v1"')
        main(["--config", path, "poll", "antara"])
        capsys.readouterr()
        assert main(["--config", path, "poll", "antara"]) == EXIT_OK
        assert last_line(capsys) == "antara: not modified since the last poll"

    def test_poll_error_exits_1_and_leaves_the_backoff(self, two, tmp_path, capsys):
        """A failed `bridge poll` prints the reason, exits 1 and leaves the source's failures and next poll as
        they were; a successful one clears them."""
        path, feeds, _ = two
        feeds.add_status("/rss.xml", 500)
        main(["--config", path, "run", "--once"])  # a scheduled-style poll: records the failure
        before = source_row(tmp_path, "antara")
        assert before[0] == 1
        capsys.readouterr()
        assert main(["--config", path, "poll", "antara"]) == EXIT_PROBLEM
        line = last_line(capsys)
        assert line.startswith("antara: error: ") and "500" in line
        assert source_row(tmp_path, "antara") == before
        feeds.add("/rss.xml", antara_feed([antara_item(1)]))
        assert main(["--config", path, "poll", "antara"]) == EXIT_OK
        assert source_row(tmp_path, "antara")[0] == 0

    def test_catchup_of_an_unreachable_source_leaves_its_backoff(self, two, tmp_path, capsys):
        """A catch-up whose fetch fails exits 1 and does not push the source's backoff further."""
        path, feeds, _ = two
        feeds.add_status("/rss.xml", 503)
        main(["--config", path, "run", "--once"])
        before = source_row(tmp_path, "antara")
        assert main(["--config", path, "catchup", "antara"]) == EXIT_PROBLEM
        assert source_row(tmp_path, "antara") == before

    def test_unknown_source(self, two, capsys):
        """`bridge poll nope` exits 2 naming the configured sources."""
        path, _, _ = two
        assert main(["--config", path, "poll", "nope"]) == 2
        assert "no source named 'nope' (sources: antara, paused)" in capsys.readouterr().err


class TestPollBesideTheDaemon:
    def test_poll_works_beside_the_daemon_which_posts_what_it_queued(self, tmp_path, feed_server, x_api):
        """`bridge poll` beside a running daemon takes no lock, queues a new story, and the daemon posts it."""
        bridge = Bridge(tmp_path, feed_server, x_api)
        try:
            bridge.start_daemon()
            from tests.helpers import wait_until
            assert wait_until(lambda: len(x_api.posted) == 2, WAIT)
            feed_server.edit("/rss.xml", body=antara_feed([antara_item(3), antara_item(1), antara_item(2)]))
            result, _ = bridge.run("poll", "antara")
            assert result.returncode == 0, result.stderr
            assert result.stdout.splitlines()[-1] == "antara: ok: 3 stories, 1 new, 1 queued"
            assert wait_until(lambda: len(x_api.posted) == 3, WAIT)
        finally:
            bridge.close()

    def test_two_polls_racing_queue_each_story_once(self, tmp_path, feed_server, x_api):
        """Two `bridge poll` of one source started together store and queue each story exactly once."""
        bridge = Bridge(tmp_path, feed_server, x_api)
        try:
            racers = [subprocess.Popen(bridge._command("poll", "antara"), stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True, env=bridge.env, cwd=tmp_path)
                      for _ in range(2)]
            for racer in racers:
                racer.wait(WAIT)
            assert [r.returncode for r in racers] == [0, 0], [r.stderr.read() for r in racers]
            assert sorted(key for _, key, _ in deliveries(tmp_path)) == sorted(
                {key for _, key, _ in deliveries(tmp_path)})
            assert len(deliveries(tmp_path)) == 2
        finally:
            bridge.close()
