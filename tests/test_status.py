"""`bridge status`: late, failing and paused sources and targets, at a glance and as JSON."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bridge.config import parse_config
from bridge.status import collect, render
from bridge.store.db import create_database_engine
from bridge.store.migrations import migrate
from bridge.store.repo import Repository
from tests.helpers import make_config


@pytest.fixture
def setup(db_url, tmp_path):
    """A migrated SQLite database and a config with sources a (5m), b (5m) and c (never polled)."""
    engine = create_database_engine(db_url)
    migrate(engine)
    raw = make_config({"a": "https://a.id/rss", "b": "https://b.id/rss", "c": "https://c.id/rss"}, dry_run=True)
    config = parse_config(raw, environ={"STATE_DIRECTORY": str(tmp_path)})
    yield Repository(engine), config
    engine.dispose()


def test_states_of_sources(setup, clock):
    """A source overdue by more than its interval is late, one with failures is failing, others ok."""
    repo, config = setup
    now = clock()
    repo.store_poll("a", "https://a.id/rss", [], ["x"], now=now - timedelta(minutes=30), skip={},
                    etag=None, last_modified=None, next_poll_at=now - timedelta(minutes=25))
    repo.record_poll_failure("b", "https://b.id/rss", "HTTP 503", now, now + timedelta(minutes=10))
    report = collect(repo, config, now=now)
    states = {s["name"]: s["state"] for s in report["sources"]}
    assert states == {"a": "late", "b": "failing", "c": "never polled"}
    table = render(report)
    assert "LATE" in table and "FAILING" in table


def test_a_source_just_due_is_not_late(setup, clock):
    """A poll a minute overdue (jitter, a busy worker) is not called late."""
    repo, config = setup
    now = clock()
    repo.store_poll("a", "https://a.id/rss", [], ["x"], now=now - timedelta(minutes=6), skip={},
                    etag=None, last_modified=None, next_poll_at=now - timedelta(minutes=1))
    assert collect(repo, config, now=now)["sources"][0]["state"] == "ok"


def test_a_removed_source_is_marked(setup, clock):
    """A source still in the database but gone from settings.toml shows as removed."""
    repo, config = setup
    repo.store_poll("gone", "https://g.id/rss", [], ["x"], now=clock(), skip={}, etag=None,
                    last_modified=None, next_poll_at=clock() - timedelta(days=1))
    sources = {s["name"]: s for s in collect(repo, config, now=clock())["sources"]}
    assert sources["gone"]["state"] == "removed" and not sources["gone"]["configured"]


def test_a_paused_target_is_shown(setup, clock):
    """A paused target shows PAUSED with its reason."""
    repo, config = setup
    repo.pause_target("x", "X rejected the credentials: regenerate the access token", clock())
    report = collect(repo, config, now=clock())
    assert report["targets"][0]["state"].startswith("PAUSED: X rejected the credentials")


def test_status_reads_while_a_write_transaction_is_open(setup, clock):
    """With the daemon in the middle of a write (the write lock held), status still reads at once."""
    repo, config = setup
    repo.pause_target("x", "reason", clock())
    with repo.engine.begin() as writer:  # BEGIN IMMEDIATE: holds SQLite's write lock
        writer.exec_driver_sql("UPDATE targets SET paused_reason = 'changing' WHERE name = 'x'")
        other = create_database_engine(str(repo.engine.url))
        try:
            report = collect(Repository(other), config, now=clock())
        finally:
            other.dispose()
    assert report["targets"][0]["state"] == "PAUSED: reason"  # the last committed state, not blocked


def test_times_are_in_the_configured_timezone_with_the_zone_named(db_url, tmp_path, clock):
    """Status shows its time and a target's quiet-hours end in [bridge] timezone (WIB), and JSON keeps ISO 8601 with +07:00."""
    import json as jsonlib

    from bridge.status import to_json

    engine = create_database_engine(db_url)
    migrate(engine)
    now = clock()
    local_hour = (now.hour + 7) % 24
    window = f"{local_hour:02d}:00-{(local_hour + 2) % 24:02d}:00"
    raw = make_config({"a": "https://a.id/rss"}, dry_run=True, bridge={"timezone": "Asia/Jakarta"})
    raw["targets"]["x"]["quiet_hours"] = window
    config = parse_config(raw, environ={"STATE_DIRECTORY": str(tmp_path)})
    try:
        report = collect(Repository(engine), config, now=now)
    finally:
        engine.dispose()
    ends = f"{(local_hour + 2) % 24:02d}:00 WIB"
    assert report["targets"][0]["state"].startswith("quiet hours until ") and report["targets"][0]["state"].endswith(ends)
    assert render(report).splitlines()[0].endswith(" WIB")
    assert jsonlib.loads(to_json(report))["now"].endswith("+07:00")
