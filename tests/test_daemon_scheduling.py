"""Nothing blocks the daemon: polls never deliver, a busy site frees its worker, late jobs are quiet.

The daemon's real scheduler runs in-process here, on the real clock (APScheduler has no other), with
servers that hang until the test lets them go; the tests wait for events with timeouts.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import pytest
from apscheduler.schedulers.background import BackgroundScheduler

from bridge import scheduler_logs
from bridge.clock import utc_now
from bridge.daemon import Daemon
from bridge.sources.polite import HostPacer
from tests.helpers import antara_feed, antara_item, make_config, runtime, wait_until

WAIT = 10
"""Seconds an expected event may take; a fetch that hangs is held far longer (20 s timeout)."""


def hang_until(release: threading.Event):
    """A route handler that answers nothing until the test sets `release` (or the server stops)."""

    def handler(request, reply) -> None:
        while not (release.is_set() or reply.stop.is_set()):
            release.wait(0.05)

    return handler


@pytest.fixture
def release():
    """Set at the end of a test, so every hanging handler returns and the daemon can stop."""
    event = threading.Event()
    yield event
    event.set()


def start_daemon(raw, tmp_path, *, hold_delivery: bool = False) -> Daemon:
    """A daemon on the real clock with its jobs scheduled and its scheduler running (no signals,
    no health endpoint). `hold_delivery`: the deliver job's first run is an hour away, so only a
    wake can run it."""
    daemon = Daemon(runtime(raw, tmp_path, utc_now))
    daemon._schedule(daemon.rt.config, None)
    if hold_delivery:
        daemon.run_job_soon("deliver", timedelta(hours=1))
    daemon.start_jobs()
    return daemon


def stop(daemon: Daemon, release: threading.Event) -> None:
    release.set()
    daemon.stop(grace=timedelta(seconds=WAIT))
    daemon.close()


def polls(daemon: Daemon, source: str) -> float:
    return sum(sample.value for metric in daemon.metrics.polls.collect() for sample in metric.samples
               if sample.name.endswith("_total") and sample.labels["source"] == source)


def busy_polls(daemon: Daemon) -> float:
    return sum(sample.value for metric in daemon.metrics.hosts_busy.collect() for sample in metric.samples
               if sample.name.endswith("_total"))


class TestPollsNeverDeliver:
    def test_a_poll_returns_before_its_stories_are_posted_and_wakes_the_delivery_job(
            self, feed_server, x_api, tmp_path, release):
        """A poll that queued stories ends without posting; the delivery job, woken at once instead of
        an hour later, posts them while the poll is already done."""
        feed_server.add("/a.xml", antara_feed([antara_item(1), antara_item(2)]))
        x_api.enqueue("POST", "/2/tweets", status=201, delay=1,
                      json={"data": {"id": "7", "text": "slow", "edit_history_tweet_ids": ["7"]}})
        raw = make_config({"a": feed_server.url("/a.xml")}, x_base=x_api.base_url,
                          bridge={"first_run": "all", "delivery_interval": "1h"})
        daemon = start_daemon(raw, tmp_path, hold_delivery=True)
        try:
            assert wait_until(lambda: x_api.routed("/2/tweets"), WAIT), "the delivery job was not woken"
            assert polls(daemon, "a") == 1  # the poll had returned before the first post went out
            assert wait_until(lambda: len(x_api.routed("/2/tweets")) == 2, WAIT)
        finally:
            stop(daemon, release)

    def test_a_network_that_does_not_answer_does_not_hold_up_the_next_poll(
            self, feed_server, x_api, tmp_path, release):
        """While X keeps a post waiting, the source that queued it is polled again as soon as it is due."""
        feed_server.add("/a.xml", antara_feed([antara_item(1)]))
        x_api.enqueue("POST", "/2/tweets", status=201, delay=3,
                      json={"data": {"id": "7", "text": "slow", "edit_history_tweet_ids": ["7"]}})
        raw = make_config({"a": feed_server.url("/a.xml")}, x_base=x_api.base_url, bridge={"first_run": "all"})
        daemon = start_daemon(raw, tmp_path)
        try:
            assert wait_until(lambda: x_api.routed("/2/tweets"), WAIT)
            daemon.poll_soon("a")
            assert wait_until(lambda: len(feed_server.requests_to("/a.xml")) == 2, WAIT), \
                "the poll job was still busy posting"
        finally:
            stop(daemon, release)


class TestBusySites:
    def test_a_source_that_never_answers_does_not_delay_another(self, feed_server, x_api, tmp_path, release):
        """A source whose server hangs does not keep a source on another site from being polled."""
        feed_server.handle("/hangs.xml", hang_until(release))
        feed_server.add("/quick.xml", antara_feed([antara_item(1)]))
        other_site = feed_server.url("/quick.xml").replace("127.0.0.1", "localhost")
        raw = make_config({"hangs": feed_server.url("/hangs.xml"), "quick": other_site}, x_base=x_api.base_url)
        daemon = start_daemon(raw, tmp_path)
        try:
            assert wait_until(lambda: polls(daemon, "quick") == 1, WAIT)
            assert polls(daemon, "hangs") == 0  # still waiting for its answer
        finally:
            stop(daemon, release)

    def test_twelve_sources_on_one_slow_site_leave_a_worker_for_another_site(
            self, feed_server, x_api, tmp_path, release):
        """Twelve sources on a site that hangs hold one worker between them, not the whole pool: a
        source on another site is polled at once, and the busy ones wait without fetching."""
        slow = {f"slow{n}": feed_server.url(f"/slow{n}.xml") for n in range(12)}
        for n in range(12):
            feed_server.handle(f"/slow{n}.xml", hang_until(release))
        feed_server.add("/quick.xml", antara_feed([antara_item(1)]))
        raw = make_config({**slow, "quick": feed_server.url("/quick.xml").replace("127.0.0.1", "localhost")},
                          x_base=x_api.base_url)
        daemon = start_daemon(raw, tmp_path)
        try:
            assert wait_until(lambda: polls(daemon, "quick") == 1, WAIT), "no worker left for the other site"
            assert wait_until(lambda: busy_polls(daemon) >= 11, WAIT), "the other slow sources did not run"
            assert len([r for r in feed_server.request_log if r.path.startswith("/slow")]) == 1
        finally:
            stop(daemon, release)


class TestPollSlot:
    def test_the_slot_is_taken_without_waiting_and_given_back(self):
        """A second poll of a busy host is told so at once; once the first ends, the host is free."""
        pacer = HostPacer(0)
        with pacer.poll_slot("https://kemenpora.go.id/berita") as first:
            with pacer.poll_slot("https://KEMENPORA.go.id/rss") as second, \
                    pacer.poll_slot("https://deputi1.kemenpora.go.id/") as other:
                assert first and not second and other
            with pacer.poll_slot("https://kemenpora.go.id/x") as still_busy:
                assert not still_busy
        with pacer.poll_slot("https://kemenpora.go.id/berita") as again:
            assert again


    def test_a_reload_keeps_the_sites_poll_slots(self, feed_server, x_api, tmp_path):
        """A poll in flight during a reload keeps its site: the new runtime shares the pacer, with the
        new page_delay."""
        from bridge.config import parse_config
        from tests.helpers import env_for

        raw = make_config({"a": feed_server.url("/a.xml")}, x_base=x_api.base_url)
        changed = make_config({"a": feed_server.url("/a.xml")}, x_base=x_api.base_url, bridge={"page_delay": "7s"})
        daemon = Daemon(runtime(raw, tmp_path, utc_now),
                        reload_config=lambda: parse_config(changed, environ=env_for(tmp_path)))
        try:
            old = daemon.rt
            with old.pacer.poll_slot(feed_server.url("/a.xml")):
                assert daemon.reload()
                with daemon.rt.pacer.poll_slot(feed_server.url("/a.xml")) as free:
                    assert not free
            assert daemon.rt.pacer is old.pacer and daemon.rt.pacer.delay == 7
        finally:
            daemon.close()


class TestStillRunningWarning:
    @pytest.fixture
    def busy_job(self):
        """A real scheduler whose job is made due again while its only instance still runs."""
        inside, release = threading.Event(), threading.Event()
        scheduler = BackgroundScheduler()
        scheduler.add_job(lambda: (inside.set(), release.wait(WAIT)), "interval", hours=1, id="busy",
                          name="poll busy", max_instances=1, next_run_time=utc_now())
        scheduler.start()

        def make_due_again() -> None:
            assert inside.wait(WAIT)
            scheduler.modify_job("busy", next_run_time=utc_now())

        yield make_due_again
        release.set()
        scheduler.shutdown(wait=True)

    def records(self, caplog) -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == scheduler_logs.SCHEDULER_LOGGER
                and scheduler_logs.STILL_RUNNING in r.getMessage()]

    def test_is_a_debug_line_counted_per_job(self, busy_job, caplog):
        """APScheduler's "maximum number of running instances reached" comes out at debug level, and
        the job's name is counted."""
        skipped: list[str] = []
        still_running = scheduler_logs.install(skipped.append)
        caplog.set_level(logging.DEBUG)
        try:
            busy_job()
            assert wait_until(lambda: self.records(caplog), WAIT)
        finally:
            scheduler_logs.remove(still_running)
        assert {r.levelname for r in self.records(caplog)} == {"DEBUG"}
        assert skipped and skipped[0] == "poll busy"

    def test_is_silent_above_debug_while_other_warnings_stay(self, busy_job, caplog):
        """At info level the line is dropped (still counted); APScheduler's other warnings are untouched."""
        skipped: list[str] = []
        still_running = scheduler_logs.install(skipped.append)
        caplog.set_level(logging.INFO)
        try:
            busy_job()
            assert wait_until(lambda: skipped, WAIT)
            logging.getLogger(scheduler_logs.SCHEDULER_LOGGER).warning(
                'Run time of job "%s" was missed by %s', "poll a", "0:00:02")
        finally:
            scheduler_logs.remove(still_running)
        assert self.records(caplog) == []
        assert [r.levelname for r in caplog.records if "was missed by" in r.getMessage()] == ["WARNING"]


class TestPathologicalFeed:
    def test_a_huge_author_does_not_hold_the_daemon(self, feed_server, x_api, tmp_path, release):
        """A feed with a 100 KB <author> (quadratic in feedparser's e-mail regex) leaves another source's
        poll on time and /healthz answering."""
        huge = antara_feed([antara_item(1)]).replace(
            "<title><![CDATA[", "<author>" + "a" * 100_000 + "</author><title><![CDATA[", 1)
        feed_server.add("/huge.xml", huge)
        feed_server.add("/b.xml", antara_feed([antara_item(2)]))
        other_host = feed_server.url("/b.xml").replace("127.0.0.1", "localhost")  # not the same site's turn
        raw = make_config({"huge": feed_server.url("/huge.xml"), "b": other_host}, x_base=x_api.base_url)
        daemon = start_daemon(raw, tmp_path, hold_delivery=True)
        try:
            daemon._beat()
            assert wait_until(lambda: polls(daemon, "b") >= 1 and polls(daemon, "huge") >= 1, timeout=5)
            healthy, reason = daemon.health_check()
            assert healthy, reason
        finally:
            stop(daemon, release)
