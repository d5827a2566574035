"""The replicas table: each `bridge run` registers, renews its heartbeat and leaves; `bridge status`
lists the live ones and flags one running other settings than settings.toml says."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from bridge.config import parse_config
from bridge.config.fingerprint import settings_fingerprint
from bridge.daemon import Daemon
from bridge.daemon_jobs import renew_replica
from bridge.status import collect, render
from bridge.store import replicas
from tests.helpers import antara_feed, antara_item, env_for, make_config, runtime

T0 = datetime(2026, 11, 26, 3, 0, tzinfo=timezone.utc)


def test_register_beat_leave_on_both_databases(repo):
    """A registered replica is live while its heartbeat is fresh; one whose heartbeat stopped drops out
    after REPLICA_GONE_AFTER and its row is forgotten a day later; leaving removes it at once."""
    engine = repo.engine
    replicas.register(engine, "a", host="web1", pid=11, version="0.1.0", settings="abc", now=T0)
    replicas.register(engine, "b", host="web2", pid=22, version="0.1.0", settings="abc", now=T0)
    later = T0 + replicas.REPLICA_GONE_AFTER + timedelta(seconds=1)
    replicas.beat(engine, "a", later - timedelta(seconds=5), settings="def")
    live = replicas.live_replicas(engine, later)
    assert [(r["host"], r["settings"]) for r in live] == [("web1", "def")]
    assert replicas.forget_gone(engine, later) == 0  # b stopped a moment ago: its row is kept a day
    assert replicas.forget_gone(engine, T0 + timedelta(days=2)) == 2
    replicas.register(engine, "c", host="web1", pid=33, version="0.1.0", settings="x", now=T0)
    replicas.leave(engine, "c")
    assert replicas.live_replicas(engine, T0) == []


def test_the_fingerprint_ignores_secrets_and_follows_settings(tmp_path):
    raw = make_config({"a": "https://a.id/rss"}, x_base="https://api.x.com")
    with_secrets = parse_config(raw, environ=env_for(tmp_path))
    other_secrets = parse_config(raw, environ={**env_for(tmp_path), "BRIDGE_X_ACCESS_TOKEN": "another"})
    assert settings_fingerprint(with_secrets) == settings_fingerprint(other_secrets)
    raw["bridge"]["poll_interval"] = "7m"
    assert settings_fingerprint(parse_config(raw, environ=env_for(tmp_path))) != settings_fingerprint(with_secrets)


def test_the_daemon_is_listed_by_status_and_leaves_at_close(feed_server, x_api, tmp_path, clock):
    """A started daemon is in `bridge status` with its host and PID; settings.toml edited but not
    reloaded shows DIFFERENT; a closed daemon leaves the list."""
    import os
    import socket

    feed_server.add("/a.xml", antara_feed([antara_item(1)]))
    raw = make_config({"a": feed_server.url("/a.xml")}, x_base=x_api.base_url)
    daemon = Daemon(runtime(raw, tmp_path, clock))
    try:
        daemon.start()
        report = collect(daemon.rt.repo, daemon.rt.config, clock())
        [me] = report["replicas"]
        assert (me["host"], me["pid"], me["same_settings"]) == (socket.gethostname(), os.getpid(), True)
        assert "DIFFERENT" not in render(report)
        raw["bridge"]["poll_interval"] = "9m"  # edited, not reloaded
        edited = parse_config(raw, environ=env_for(tmp_path))
        text = render(collect(daemon.rt.repo, edited, clock()))
        assert "DIFFERENT from settings.toml: reload it" in text and socket.gethostname() in text
        clock.advance(minutes=10)
        assert collect(daemon.rt.repo, edited, clock())["replicas"] == []  # heartbeat stale: not live
        renew_replica(daemon)
        assert len(collect(daemon.rt.repo, edited, clock())["replicas"]) == 1
        engine = daemon.rt.repo.engine
        daemon.stop()
    finally:
        daemon.close()
    from bridge.store.db import create_database_engine

    again = create_database_engine(str(engine.url))
    try:
        assert replicas.live_replicas(again, clock()) == []
    finally:
        again.dispose()


def test_status_and_the_daemon_fingerprint_a_live_file_alike(tmp_path):
    """`bridge status` reads settings without secrets, the daemon with them: the same file gives the
    same fingerprint, or every live daemon would show as DIFFERENT."""
    raw = make_config({"a": "https://a.id/rss"}, x_base="https://api.x.com", dry_run=False)
    raw["alerts"] = {"targets": ["x"], "smtp": "smtp://mail.kemenpora.go.id:587", "email_from": "b@kemenpora.go.id",
                     "email_to": ["it@kemenpora.go.id"]}
    env = {**env_for(tmp_path), "BRIDGE_ALERTS_SMTP_USER": "u", "BRIDGE_ALERTS_SMTP_PASSWORD": "p",
           "BRIDGE_DASHBOARD_TOKEN": "t0ken-t0ken"}
    daemon_view = parse_config(raw, environ=env)
    status_view = parse_config(raw, environ=env, secrets=False)
    assert daemon_view.bridge.dashboard_token and not status_view.bridge.dashboard_token
    assert settings_fingerprint(daemon_view) == settings_fingerprint(status_view)


def test_status_shows_what_each_replica_holds(repo, tmp_path):
    """`bridge status` gives each live replica the sources it polled last and the posts it is sending;
    on SQLite's single daemon, every source and every post in flight."""
    from sqlalchemy import text

    from bridge.model import Item

    engine, now = repo.engine, T0
    for n, source in enumerate(("a", "b", "c")):
        repo.store_poll(source, f"https://{source}.id/rss", [Item(key=f"{source}1", title="Judul", link=None)],
                        ("x",), now=now, skip={}, etag=None, last_modified=None,
                        next_poll_at=now + timedelta(minutes=5))
    replicas.register(engine, "r1", host="web1", pid=11, version="0.1.0", settings="s", now=now)
    replicas.register(engine, "r2", host="web2", pid=22, version="0.1.0", settings="s", now=now)
    with engine.begin() as conn:
        conn.execute(text("UPDATE sources SET polled_by = 'r1' WHERE name IN ('a', 'b')"))
        conn.execute(text("UPDATE sources SET polled_by = 'r2' WHERE name = 'c'"))
        conn.execute(text("UPDATE deliveries SET state = 'sending', claimed_by = 'r2' WHERE id = "
                          "(SELECT min(id) FROM deliveries)"))
    config = parse_config(make_config({"a": "https://a.id/rss"}, x_base="https://api.x.com"),
                          environ=env_for(tmp_path))
    report = collect(repo, config, now)
    held = {r["host"]: (r["sources"], r["posting"]) for r in report["replicas"]}
    if engine.dialect.name == "postgresql":
        assert held == {"web1": (2, 0), "web2": (1, 1)}
    else:  # one daemon per database: it holds everything
        assert held == {"web1": ("all", 1), "web2": ("all", 1)}
    lines = render(report).splitlines()
    header = next(line for line in lines if line.startswith("daemon"))
    assert re.split(r"\s{2,}", header)[5:7] == ["polls", "posting"]
    web2 = next(line for line in lines if line.startswith("web2"))
    assert re.split(r"\s{2,}", web2)[5:7] == (["1", "1"] if engine.dialect.name == "postgresql" else ["all", "1"])
