"""The poll cycle: sources on different hosts polled at once, one host at a time, one summary line
per cycle, quiet lines for polls that found nothing, and no markup from a feed in a post."""

from __future__ import annotations

import threading

import pytest
from structlog.testing import capture_logs

from bridge.config import parse_config
from bridge.errors import ConfigError
from bridge.pipeline import deliver_due, poll
from bridge.pipeline.cycle import PollTally, by_host, poll_cycle
from bridge.service import close, run_once
from bridge.store.lock import acquire_run_lock
from tests.helpers import antara_feed, antara_item, make_config, runtime
from tests.test_pipeline import World, world  # noqa: F401 (fixture)

FEED = antara_feed([antara_item(n) for n in (1, 2, 3)])


def on_localhost(url: str) -> str:
    """The same server under another host name: to the bridge's politeness, another site."""
    return url.replace("127.0.0.1", "localhost")


class TestConcurrency:
    def test_sources_on_different_hosts_are_polled_at_once(self, feed_server, tmp_path, clock):
        """Two sources on two hosts are fetched at the same time: each answer waits for the other's request."""
        both_asked = threading.Barrier(2, timeout=10)

        def answer(_request, reply):
            try:
                both_asked.wait()
            except threading.BrokenBarrierError:  # polled one after the other
                reply.start(503, {"Content-Length": "0"})
                return
            body = FEED.encode()
            reply.start(200, {"Content-Type": "application/rss+xml", "Content-Length": str(len(body))})
            reply.write(body)

        feed_server.handle("/a.xml", answer)
        feed_server.handle("/b.xml", answer)
        rt = runtime(make_config({"a": feed_server.url("/a.xml"), "b": on_localhost(feed_server.url("/b.xml"))},
                                 dry_run=True), tmp_path, clock)
        try:
            tally = PollTally()
            poll_cycle(rt, rt.config.enabled_sources, tally, force=True)
            assert tally.take() == {"polled": 2, "unchanged": 0, "failed": 0, "new": 6, "queued": 0, "failing": 0}
        finally:
            close(rt)

    def test_sources_on_one_host_are_polled_one_after_another(self):
        """Sources are grouped by host (one worker reads a host's sources in turn), busiest host first."""
        raw = make_config({"a": "https://one.example/a", "b": "https://two.example/b",
                           "c": "https://ONE.example/c"}, dry_run=True)
        config = parse_config(raw, environ={})
        groups = by_host(config.sources)
        assert [[s.name for s in group] for group in groups] == [["a", "c"], ["b"]]

    def test_poll_concurrency_is_a_checked_setting(self):
        """[bridge] poll_concurrency defaults to 16 and must be a whole number from 1 to 256."""
        assert parse_config(make_config({"a": "https://one.example/a"}, dry_run=True), environ={}).bridge.poll_concurrency == 16
        for bad in (0, 257, "8"):
            with pytest.raises(ConfigError, match="poll_concurrency"):
                parse_config(make_config({"a": "https://one.example/a"}, dry_run=True, bridge={"poll_concurrency": bad}),
                             environ={})


class TestRunOnce:
    def test_run_once_polls_every_source_and_logs_one_summary(self, feed_server, tmp_path, clock):
        """`run --once` polls all sources through the cycle; the second run finds nothing new and says
        so in its summary line, with each unchanged poll at debug only."""
        feed_server.add("/a.xml", FEED, etag='"a1"')
        feed_server.add("/b.xml", FEED, etag='"b1"')
        feed_server.add("/gone.xml", "", status=404)
        raw = make_config({"a": feed_server.url("/a.xml"), "b": on_localhost(feed_server.url("/b.xml")),
                           "gone": feed_server.url("/gone.xml")}, dry_run=True)
        for expected in ({"polled": 3, "unchanged": 0, "failed": 1, "new": 6, "failing": 1},
                         {"polled": 3, "unchanged": 2, "failed": 1, "new": 0, "failing": 1}):
            rt = runtime(raw, tmp_path, clock)
            lock = acquire_run_lock(rt.repo.engine)
            try:
                with capture_logs() as logs:
                    run_once(rt, lock)
            finally:
                close(rt)
                lock.release()
            summary = [e for e in logs if e["event"] == "poll cycle"]
            assert len(summary) == 1 and summary[0]["log_level"] == "info"
            assert {k: summary[0][k] for k in expected} == expected and summary[0]["sources"] == 3
            polled = {e["source"]: e["log_level"] for e in logs if e["event"] == "polled"}
            if expected["new"]:
                assert polled == {"a": "info", "b": "info"}
            else:
                assert polled == {"a": "debug", "b": "debug"}
            assert [e["log_level"] for e in logs if e["event"] == "poll failed"] == ["warning"]


class TestQuietLogs:
    def test_a_source_that_reads_again_says_so_at_info(self, world):  # noqa: F811
        """After failures, the first good poll (even a 304) logs "source reads again" at info."""
        world.start()
        world.cycle()
        world.feeds.edit("/rss/terkini.xml", status=503)
        world.cycle()
        world.feeds.edit("/rss/terkini.xml", status=200)
        with capture_logs() as logs:
            poll(world.rt, world.rt.config.sources[0], force=True)
        again = [e for e in logs if e["event"] == "source reads again"]
        assert again and again[0]["log_level"] == "info" and again[0]["after_failures"] == 1


class TestNoMarkupInPosts:
    PAYLOADS = [
        "<script>alert('x1')</script>Judul",
        '<img src="https://127.0.0.1/x.png" onerror="alert(\'x2\')">Judul',
        '<a href="javascript:alert(\'x4\')" onclick="alert(\'x5\')">Judul</a>',
        "<svg><script>alert('x6')</script></svg><style>body{}</style>Judul",
    ]

    def test_script_and_event_handlers_in_a_feed_never_reach_a_post(self, world):  # noqa: F811
        """feedparser's sanitiser is off: our reduction to text alone keeps <script>, onerror and
        javascript: out of titles and summaries, whether the feed writes them in CDATA or escaped."""
        entries = []
        for n, payload in enumerate(self.PAYLOADS):
            entries.append(f"""<item><title><![CDATA[{payload} {n}]]></title>
<link>https://www.antaranews.com/berita/{n}/a</link><guid>https://www.antaranews.com/berita/{n}/a</guid>
<description><![CDATA[{payload} ringkasan {n}]]></description></item>""")
            entries.append(f"""<item><title>{payload.replace('<', '&lt;').replace('>', '&gt;')} e{n}</title>
<link>https://www.antaranews.com/berita/e{n}/a</link><guid>https://www.antaranews.com/berita/e{n}/a</guid>
<description>{payload.replace('<', '&lt;').replace('>', '&gt;')} ringkasan</description></item>""")
        body = ('<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>t</title>'
                f'<link>https://www.antaranews.com</link>{"".join(entries)}</channel></rss>')
        world.feeds.edit("/rss/terkini.xml", body=body.encode())
        world.start(bridge={"first_run": "all"}, target={"max_per_day": 100, "min_interval": "0s"},
                    source={"template": "{title} {summary} {url}"})
        world.cycle()
        while deliver_due(world.rt):
            pass
        tweets = world.tweets()
        assert len(tweets) == 2 * len(self.PAYLOADS)
        for text in tweets:
            lowered = text.lower()
            assert "<" not in text and ">" not in text, text
            for marker in ("script", "onerror", "onclick", "javascript:", "alert("):
                assert marker not in lowered, text
            assert "Judul" in text


    def test_json_feed_titles_with_markup_are_read_as_text(self):
        """A JSON Feed's title and summary (plain text by its spec) lose tags a CMS leaked into them."""
        import json

        from bridge.sources.feed import parse_feed

        doc = {"version": "https://jsonfeed.org/version/1.1", "items": [{
            "id": "1", "url": "https://www.antaranews.com/berita/1/a",
            "title": "<script>alert('x')</script>Judul <b>tebal</b>",
            "summary": '<img src=x onerror="alert(1)">Ringkasan, harga <5% naik'}]}
        [item] = parse_feed(json.dumps(doc).encode(), url="https://www.antaranews.com/feed.json")
        assert item.title == "Judul tebal"
        assert item.summary == "Ringkasan, harga <5% naik"


class TestDaemonSummary:
    def test_the_daemon_sums_its_polls_up_in_one_info_line(self, feed_server, tmp_path, clock):
        """The daemon's polls count towards its periodic summary: polled, unchanged, failed, new."""
        from bridge.daemon import Daemon, _poll_source

        feed_server.add("/a.xml", FEED, etag='"a1"')
        feed_server.add("/gone.xml", "", status=404)
        rt = runtime(make_config({"a": feed_server.url("/a.xml"),
                                  "gone": on_localhost(feed_server.url("/gone.xml"))}, dry_run=True), tmp_path, clock)
        seconds = [100.0]
        daemon = Daemon(rt, monotonic=lambda: seconds[0])
        try:
            for _ in range(3):
                clock.advance(minutes=5)
                _poll_source(daemon, rt, "a")
                _poll_source(daemon, rt, "gone")
            seconds[0] += 600
            with capture_logs() as logs:
                daemon._summarise()
                daemon._summarise()
        finally:
            daemon.close()
        first, second = [e for e in logs if e["event"] == "polls summary"]
        assert first["log_level"] == "info" and first["period_s"] == 600 and second["period_s"] == 0
        assert {k: first[k] for k in ("polled", "unchanged", "failed", "new", "failing")} == {
            "polled": 5, "unchanged": 2, "failed": 2, "new": 3, "failing": 1}  # the 3rd failing poll: in backoff
        assert (second["polled"], second["failing"]) == (0, 1)  # counts reset; a failing source stays failing
