"""A disabled source in the daemon: no poll job, removed by a reload that disables it, and a queued run skipped."""

from __future__ import annotations

from bridge import daemon as daemon_module
from bridge.config import parse_config
from bridge.daemon import describe
from tests.helpers import antara_feed, antara_item, env_for, make_config, wait_until
from tests.test_daemon_scheduling import WAIT, release, start_daemon, stop  # noqa: F401 (release: a fixture)


def two_sources(feed_server, x_api, disabled: str | None):
    raw = make_config({"a": feed_server.url("/a.xml"), "b": feed_server.url("/b.xml")}, x_base=x_api.base_url)
    for table in raw["sources"]:
        table["enabled"] = table["name"] != disabled
    return raw


def test_the_daemon_schedules_no_poll_for_a_disabled_source(feed_server, x_api, tmp_path, release):
    """A disabled source gets no poll job, a reload that disables another removes its job, and
    re-enabling brings it back; the status line counts the disabled ones."""
    feed_server.add("/a.xml", antara_feed([antara_item(1)]))
    feed_server.add("/b.xml", antara_feed([antara_item(2)]))
    daemon = start_daemon(two_sources(feed_server, x_api, "b"), tmp_path)
    try:
        assert daemon.polls.plan.names() == ["a"]
        assert describe(daemon.rt.config).startswith("polling 1 source(s) (1 disabled)")
        configs = iter([two_sources(feed_server, x_api, "a"), two_sources(feed_server, x_api, None)])
        daemon._reload_config = lambda: parse_config(next(configs), environ=env_for(tmp_path))
        assert daemon.reload()
        assert daemon.polls.plan.names() == ["b"]
        assert daemon.reload()
        assert daemon.polls.plan.names() == ["a", "b"]
    finally:
        stop(daemon, release)


def test_a_queued_poll_of_a_source_disabled_meanwhile_reads_nothing(feed_server, x_api, tmp_path, release):
    """A poll run that waited in the queue while a reload disabled its source does not fetch it."""
    feed_server.add("/a.xml", antara_feed([antara_item(1)]))
    feed_server.add("/b.xml", antara_feed([antara_item(2)]))
    daemon = start_daemon(two_sources(feed_server, x_api, "b"), tmp_path)  # as after the reload
    try:
        daemon_module._poll_source(daemon, daemon.rt, "b")  # the run queued before it
        daemon_module._poll_source(daemon, daemon.rt, "a")
        # "a" is read by this call or by its own scheduled poll running meanwhile (which then holds
        # the site's poll slot, and this call leaves it the work): either way, soon.
        assert wait_until(lambda: feed_server.requests_to("/a.xml"), timeout=WAIT)
        assert feed_server.requests_to("/b.xml") == []
    finally:
        stop(daemon, release)
