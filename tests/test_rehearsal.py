"""`bridge run --dry-run`: a rehearsal reads every source and logs each would-be post; it writes nothing."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys

import pytest
from sqlalchemy.exc import SQLAlchemyError

from bridge.model import DeliveryState, FrozenPost
from bridge.urls import identity_key
from bridge.cli import EXIT_OK, main
from bridge.config import parse_config
from bridge.errors import DatabaseError
from bridge.pipeline import poll
from bridge.rehearsal import Memory, open_read_only, rehearse_round
from bridge.preview import dry_run_publishers, polite_fetcher
from bridge.service import close
from bridge.store.db import create_database_engine
from bridge.store.lock import acquire_run_lock
from bridge.store.migrations import migrate
from tests.helpers import antara_feed, antara_item, env_for, runtime
from tests.test_cli import write_settings
from tests.test_daemon_process import REPO_ROOT, WAIT, Output


def dump(path) -> str:
    """Every table, row and index of a SQLite database, as SQL."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return "\n".join(db.iterdump())


def key_of(n: int) -> str:
    """The story key the feed reader gives story n (its link's identity)."""
    return identity_key(antara_item(n)["link"])


def would_post(out: str) -> list[dict]:
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [e for e in events if e.get("event") == "would post"]


@pytest.fixture
def live(feed_server, x_api, tmp_path, monkeypatch, clock):
    """A live database with a sent, a sending, a failed and a pending delivery, a paused target,
    and a feed now offering two stories the database has never seen."""
    for name, value in env_for(tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("BRIDGE_CONFIG", raising=False)
    feed_server.add("/rss.xml", antara_feed([antara_item(1)]), etag='"v1"')
    path = write_settings(tmp_path, feed_server.url("/rss.xml"), x_api.base_url)
    assert main(["--config", str(path), "run", "--once"]) == EXIT_OK  # story 1: sent
    feed_server.edit("/rss.xml", body=antara_feed([antara_item(n) for n in (1, 2, 3, 4)]), etag='"v2"')
    raw = {"bridge": {"database": "sqlite:///bridge.db", "first_run": "all"},
           "sources": [{"name": "antara", "url": feed_server.url("/rss.xml"), "targets": ["x"]}],
           "targets": {"x": {"kind": "x", "api_base": x_api.base_url}}}
    rt = runtime(raw, tmp_path, clock)
    poll(rt, rt.config.sources[0])  # stories 2, 3, 4: pending
    pending = {d.item.key: d for d in rt.repo.due_deliveries("x", clock(), limit=10)}
    story = [key for key in pending if key.endswith(("berita-2", "berita-3"))]
    assert len(story) == 2
    assert rt.repo.claim(pending[story[0]], clock(), FrozenPost("Menpora 2"))  # a post in flight
    rt.repo.mark_failed(pending[story[1]].id, "X refused it", clock())
    rt.repo.pause_target("x", "X rejected the credentials: regenerate the access token", clock())
    close(rt)
    feed_server.edit("/rss.xml", body=antara_feed([antara_item(n) for n in (1, 2, 3, 4, 5, 6)]), etag='"v3"')
    return path, tmp_path / "bridge.db", x_api


class TestRehearsalChangesNothing:
    def test_run_once_dry_run_leaves_the_database_byte_identical(self, live, capsys):
        """`run --once --dry-run` on a live database logs the two new stories and the one due delivery, and
        its SQL dump is the same before and after: nothing seen, no state, no delivery, no pause changed."""
        path, db, x = live
        before, requests_before = dump(db), len(x.requests)
        capsys.readouterr()
        assert main(["--config", str(path), "run", "--once", "--dry-run"]) == EXIT_OK
        out = capsys.readouterr().out
        assert dump(db) == before
        posts = would_post(out)
        assert sorted((p["item"], p["queued"]) for p in posts) == sorted(
            [(key_of(4), True), (key_of(5), False), (key_of(6), False)])
        assert all(p["target"] == "x" and p["text"] and p["length"] <= p["limit"] == 280 for p in posts)
        assert all(p["held"].startswith("paused: X rejected the credentials") for p in posts)
        assert len(x.requests) == requests_before  # nothing posted, no credentials checked

    def test_dry_run_leaves_held_bursts_doubts_and_a_304_untouched(self, live, feed_server, clock, capsys):
        """A live database that also holds a post in doubt, a held burst and a source last answered 304:
        `run --once --dry-run` (twice, so the second meets the 304) changes not one byte of it."""
        path, db, _ = live
        raw = {"bridge": {"database": "sqlite:///bridge.db", "first_run": "all", "burst_limit": 3},
               "sources": [{"name": "antara", "url": feed_server.url("/rss.xml"), "targets": ["x"]}],
               "targets": {"x": {"kind": "x", "api_base": "http://127.0.0.1:9"}}}
        rt = runtime(raw, db.parent, clock)
        [failed] = rt.repo.delivery_rows([DeliveryState.FAILED])
        rt.repo.mark_in_doubt(failed["id"], "X did not answer within 1s after receiving the post", None, clock())
        feed_server.edit("/rss.xml", body=antara_feed([antara_item(n) for n in range(1, 12)]), etag='"v4"')
        assert poll(rt, rt.config.sources[0], force=True).status == "ok"  # 7 new stories over 3: held
        assert rt.repo.held_stories() == {"antara": 7}
        assert poll(rt, rt.config.sources[0], force=True).status == "not_modified"
        rt.repo.unchanged.flush()  # the 304 written, as the daemon does every 5 s
        close(rt)
        before = dump(db)
        for _ in range(2):
            assert main(["--config", str(path), "run", "--once", "--dry-run"]) == EXIT_OK
        assert dump(db) == before

    def test_a_moved_source_is_on_its_first_run_again(self, live, feed_server, capsys):
        """A source whose url changed is read as a new feed, as a poll would: its first-run policy (here
        skip) decides again, so only the queued delivery would be posted."""
        path, db, _ = live
        feed_server.add("/moved.xml", antara_feed([antara_item(n) for n in (1, 2, 3, 4, 5, 6)]))
        path.write_text(path.read_text().replace("/rss.xml", "/moved.xml").replace('first_run = "all"',
                                                                                    'first_run = "skip"'))
        assert main(["--config", str(path), "run", "--once", "--dry-run"]) == EXIT_OK
        posts = would_post(capsys.readouterr().out)
        assert [(p["item"], p["queued"]) for p in posts] == [(key_of(4), True)]

    def test_it_runs_beside_a_daemon_holding_the_lock(self, live, capsys):
        """A rehearsal takes no run lock: it works while the service holds it."""
        path, db, _ = live
        holder = acquire_run_lock(create_database_engine(f"sqlite:///{db}"))
        try:
            assert main(["--config", str(path), "run", "--once", "--dry-run"]) == EXIT_OK
        finally:
            holder.release()
        assert len(would_post(capsys.readouterr().out)) == 3

    def test_a_missing_database_is_not_created_and_the_first_run_policy_decides(
            self, feed_server, x_api, tmp_path, monkeypatch, capsys):
        """Without a database every source is new to a first run: latest:1 would post the newest story
        only, and no database (nor its folder) appears."""
        monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
        monkeypatch.delenv("BRIDGE_CONFIG", raising=False)
        feed_server.add("/rss.xml", antara_feed([antara_item(1), antara_item(2), antara_item(3)]))
        path = write_settings(tmp_path, feed_server.url("/rss.xml"), x_api.base_url, first_run="latest:1")
        assert main(["--config", str(path), "run", "--once", "--dry-run"]) == EXIT_OK
        posts = would_post(capsys.readouterr().out)
        assert [p["item"] for p in posts] == [key_of(1)]
        assert not (tmp_path / "state").exists()

    def test_the_photo_is_named_not_downloaded(self, feed_server, x_api, tmp_path, monkeypatch, capsys):
        """A story's photo appears in the log by its URL; the rehearsal never fetches it."""
        monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path))
        image = feed_server.url("/photo.jpg")
        feed_server.add("/rss.xml", antara_feed([antara_item(1, image=image)]))
        path = write_settings(tmp_path, feed_server.url("/rss.xml"), x_api.base_url)
        assert main(["--config", str(path), "run", "--once", "--dry-run"]) == EXIT_OK
        (post,) = would_post(capsys.readouterr().out)
        assert post["image_url"] == image and feed_server.requests_to("/photo.jpg") == []


class TestRecipients:
    def test_a_new_story_names_each_recipient(self, feed_server, x_api, tmp_path, monkeypatch, capsys):
        """For a WhatsApp target, the would-be post names every recipient it would be sent to."""
        monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path))
        feed_server.add("/rss.xml", antara_feed([antara_item(1)]))
        path = write_settings(tmp_path, feed_server.url("/rss.xml"), x_api.base_url)
        path.write_text(path.read_text().replace('targets = ["x"]', 'targets = ["wa"]') + """
[targets.wa]
kind = "whatsapp"
phone_number_id = "1234567890"
message_template = "berita_terbaru"
recipients = ["6281234567890", "6289876543210"]
""")
        assert main(["--config", str(path), "run", "--once", "--dry-run"]) == EXIT_OK
        (post,) = would_post(capsys.readouterr().out)
        assert post["target"] == "wa" and post["recipients"] == ["6281234567890", "6289876543210"]


class TestSameLinkTwice:
    def test_a_link_from_two_sources_would_post_once_per_target(self, live, feed_server, capsys):
        """A story the database already delivered, offered again by a second source, and a story two new
        sources both offer, would each be posted once (as the store decides), not once per source."""
        path, db, _ = live
        feed_server.add("/mirror.xml", antara_feed([antara_item(1), antara_item(9)]))
        feed_server.add("/mirror2.xml", antara_feed([antara_item(9)]))
        text = path.read_text()
        for name in ("mirror", "mirror2"):
            text += (f'[[sources]]\nname = "{name}"\nurl = "{feed_server.url(f"/{name}.xml")}"\n'
                     'targets = ["x"]\n')
        path.write_text(text)
        assert main(["--config", str(path), "run", "--once", "--dry-run"]) == EXIT_OK
        posts = would_post(capsys.readouterr().out)
        assert [p["source"] for p in posts if p["item"] == key_of(9)] == ["mirror"]
        assert [p for p in posts if p["item"] == key_of(1)] == []


class TestRehearsalDaemon:
    def test_each_would_be_post_is_logged_once_across_rounds(self, live, clock):
        """Round after round, a rehearsal remembers in memory what it read and logged: only a story that
        appears later is logged again, and the database stays as it was."""
        path, db, _ = live
        before = dump(db)
        config = parse_config(_raw_from(path), environ=env_for(db.parent), dry_run=True)
        repo, memory = open_read_only(config.bridge.database), Memory()
        try:
            with polite_fetcher(config) as fetcher, dry_run_publishers(config, ["x"]) as publishers:
                first = rehearse_round(config, repo, memory, fetcher, publishers, config.sources, clock())
                again = rehearse_round(config, repo, memory, fetcher, publishers, config.sources, clock())
        finally:
            repo.engine.dispose()
        assert len(first) == 3 and again == []
        assert dump(db) == before

    def test_the_daemon_rehearsal_stops_on_sigterm_having_changed_nothing(self, live):
        """`bridge run --dry-run` as a process logs the would-be posts, exits 0 on SIGTERM, and the
        database is as it was."""
        path, db, _ = live
        before = dump(db)
        import os

        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        process = subprocess.Popen([sys.executable, "-m", "bridge", "--config", str(path), "run", "--dry-run"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                   cwd=db.parent)
        try:
            out = Output(process.stdout)
            out.wait_for(lambda e: e.get("event") == "would post", count=3)
            process.send_signal(signal.SIGTERM)
            assert process.wait(WAIT) == 0
        finally:
            if process.poll() is None:
                process.kill()
        assert dump(db) == before


class TestReadOnlyDatabase:
    @pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
    def test_writes_are_refused(self, backend, request, tmp_path, clock):
        """The rehearsal's database connection reads, and refuses any write."""
        url = f"sqlite:///{tmp_path}/bridge.db" if backend == "sqlite" else request.getfixturevalue("postgres_url")
        engine = create_database_engine(url)
        migrate(engine)
        engine.dispose()
        repo = open_read_only(url)
        try:
            assert repo.source_state("antara").initialised is False
            with pytest.raises(SQLAlchemyError):
                repo.pause_target("x", "no", clock())
        finally:
            repo.engine.dispose()

    def test_an_older_schema_is_refused_not_upgraded(self, tmp_path):
        """A database an older bridge wrote is left alone, with what to do to upgrade it."""
        from sqlalchemy import text

        url = f"sqlite:///{tmp_path}/bridge.db"
        engine = create_database_engine(url)
        migrate(engine)
        with engine.begin() as conn:
            conn.execute(text("UPDATE schema_version SET version = 1"))
        engine.dispose()
        before = dump(tmp_path / "bridge.db")
        with pytest.raises(DatabaseError, match="never upgrades it: restart the service"):
            open_read_only(url)
        assert dump(tmp_path / "bridge.db") == before

    def test_a_database_it_cannot_read_is_one_line(self, live, capsys):
        """A database that fails a query mid-rehearsal (here its deliveries table is gone) ends the
        rehearsal with exit 3 and one line, no traceback."""
        path, db, _ = live
        with sqlite3.connect(db) as damaged:
            damaged.execute("DROP TABLE deliveries")
        capsys.readouterr()
        assert main(["--config", str(path), "run", "--once", "--dry-run"]) == 3
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "cannot read database" in err and "Traceback" not in err

    def test_an_absent_database_is_none(self, tmp_path):
        """No file: nothing to read, and nothing is created."""
        assert open_read_only(f"sqlite:///{tmp_path}/none/bridge.db") is None
        assert not (tmp_path / "none").exists()


def _raw_from(path) -> dict:
    import tomllib

    return tomllib.loads(path.read_text())
