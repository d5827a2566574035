"""Reading a source by kind (feed, html, auto), with autodiscovery, pagination, story pages and
drift, through real HTTP to the local feed server."""

from __future__ import annotations

from datetime import datetime

import pytest

from bridge.config import parse_config
from bridge.errors import FeedParseError, NoStoriesFound
from bridge.sources.fetch import FetchLimits, make_client
from bridge.sources.polite import HostPacer, PoliteFetcher
from bridge.sources.read import add_story_pages, looks_like_html, read_source
from tests.helpers import antara_feed, antara_item
from tests.sites import PAGE_1, PAGE_2, KemenporaSite

LIMITS = FetchLimits(connect_timeout=2, total_timeout=5)


def source(url: str, **keys):
    raw = {"bridge": {"dry_run": True}, "targets": {"x": {"kind": "x"}},
           "sources": [{"name": "site", "url": url, "targets": ["x"], **keys}]}
    return parse_config(raw, environ={}).sources[0]


class FakeSleep:
    """Records the waits asked for instead of waiting; time moves by what was asked."""

    def __init__(self):
        self.now, self.waits = 100.0, []

    def __call__(self, seconds: float) -> None:
        self.waits.append(round(seconds, 3))
        self.now += seconds


@pytest.fixture
def sleeper():
    return FakeSleep()


@pytest.fixture
def fetcher(sleeper):
    client = make_client(LIMITS)
    yield PoliteFetcher(client, LIMITS, HostPacer(2.0, sleep=sleeper, monotonic=lambda: sleeper.now))
    client.close()


@pytest.fixture
def site(feed_server):
    return KemenporaSite(feed_server)


class TestKinds:
    def test_auto_reads_a_feed_as_a_feed(self, feed_server, fetcher):
        """kind auto on a feed URL reads the feed, keeping its conditional-GET validators."""
        feed_server.add("/rss.xml", antara_feed([antara_item(1)]), etag='"e1"')
        read = read_source(fetcher, source(feed_server.url("/rss.xml")))
        assert read.read_as == "feed" and len(read.items) == 1 and read.etag == '"e1"'

    def test_auto_follows_an_advertised_feed(self, feed_server, fetcher):
        """An HTML page with <link rel=alternate type=application/rss+xml> has that feed read instead."""
        feed_server.add("/rss.xml", antara_feed([antara_item(1), antara_item(2)]))
        feed_server.add("/", '<!DOCTYPE html><html><head><link rel="alternate" type="application/rss+xml" '
                             'title="Berita" href="/rss.xml"></head><body><p>Halo</p></body></html>',
                        content_type="text/html", etag='"page"')
        read = read_source(fetcher, source(feed_server.url("/")))
        assert read.read_as == "feed " + feed_server.url("/rss.xml") and len(read.items) == 2
        assert read.etag is None  # the page's validators say nothing about the feed

    def test_auto_with_preset_uses_the_feed_keeping_story_identity(self, site, feed_server, fetcher):
        """The day the site advertises a feed, auto reads it, and its stories keep the ids the listing gave them."""
        feed_server.add("/feed", antara_feed([{**antara_item(1), "link": site.url(PAGE_1[12345][0] + "-baru")}]))
        feed_server.edit("/berita", body=site.page("berita.html").replace(
            "<head>", f'<head><link rel="alternate" type="application/rss+xml" href="{feed_server.url("/feed")}">'))
        read = read_source(fetcher, source(site.listing_url, preset="kemenpora"))
        assert [i.key for i in read.items] == ["kemenpora:detail:12345"]

    def test_auto_page_without_feed_or_selectors_is_an_error(self, feed_server, fetcher):
        """A plain page, no advertised feed, no preset: an error that says what to configure."""
        feed_server.add("/", "<html><body><p>Halo</p></body></html>", content_type="text/html")
        with pytest.raises(FeedParseError, match='kind = "html"'):
            read_source(fetcher, source(feed_server.url("/")))

    def test_html_preset_reads_the_listing(self, site, fetcher):
        """kind html with the kemenpora preset reads every main-listing story with its +07:00 day."""
        read = read_source(fetcher, source(site.listing_url, kind="html", preset="kemenpora"))
        assert read.read_as == "html"
        assert [(i.title, i.published) for i in read.items] == [
            (title, datetime.fromisoformat(date)) for _, title, date in PAGE_1.values()]

    @pytest.mark.parametrize("body,html", [(b"<!DOCTYPE html><html>", True), (b"\xef\xbb\xbf <html lang=id>", True),
                                           (b'<?xml version="1.0"?>\n<!-- x -->\n<html xmlns="">', True),
                                           (b'<?xml version="1.0"?><rss version="2.0">', False), (b"{}", False)])
    def test_html_sniffing(self, body, html):
        """HTML documents are told from feeds by their first markup, not by Content-Type."""
        assert looks_like_html(body) is html


class TestPagination:
    def test_max_pages_follows_next_links(self, site, fetcher, sleeper):
        """max_pages 2 reads page 2 too, politely after the first; the default reads page 1 only."""
        read = read_source(fetcher, source(site.listing_url, preset="kemenpora", max_pages=2))
        assert len(read.items) == len(PAGE_1) + len(PAGE_2) and sleeper.waits == [2.0]
        assert len(read_source(fetcher, source(site.listing_url, preset="kemenpora")).items) == len(PAGE_1)

    def test_unreadable_later_page_keeps_the_first(self, site, feed_server, fetcher):
        """A next page that fails ends the walk; page 1's stories are kept."""
        feed_server.add_status("/berita/2", 500)
        read = read_source(fetcher, source(site.listing_url, preset="kemenpora", max_pages=3))
        assert len(read.items) == len(PAGE_1)


class TestDrift:
    def test_no_rows_where_there_were_stories(self, site, fetcher):
        """A listing that finds no stories after finding some raises, saying the layout may have changed."""
        site.show("redesigned.html")
        with pytest.raises(NoStoriesFound) as info:
            read_source(fetcher, source(site.listing_url, preset="kemenpora"), previously_seen=4)
        assert info.value.reason.startswith("no stories found: the page layout may have changed")

    def test_no_rows_on_a_first_read(self, site, fetcher):
        """A first read with no rows is reported too, pointing at the url and selectors."""
        site.show("redesigned.html")
        with pytest.raises(NoStoriesFound, match="check its url and the selectors"):
            read_source(fetcher, source(site.listing_url, preset="kemenpora"))


class TestStoryPages:
    def test_only_asked_stories_fetched_one_by_one_politely(self, site, fetcher, sleeper):
        """Pages are read only for the keys asked, spaced by the delay; a missing page keeps the listing's data."""
        src = source(site.listing_url, preset="kemenpora")
        read = read_source(fetcher, src)
        keys = {"kemenpora:detail:12345", "kemenpora:detail:12344"}  # 12344's page is a 404
        items = {i.key: i for i in add_story_pages(fetcher, src, read, keys)}
        assert sorted(site.story_requests()) == sorted(PAGE_1[n][0] for n in (12345, 12344))
        assert sleeper.waits == [2.0, 2.0]
        assert items["kemenpora:detail:12345"].summary.startswith("Menteri Pemuda dan Olahraga")
        assert items["kemenpora:detail:12345"].image_url.endswith("/silat_besar.jpg")
        assert items["kemenpora:detail:12344"] == {i.key: i for i in read.items}["kemenpora:detail:12344"]

    def test_story_pages_off(self, site, fetcher):
        """story_pages = false reads no story page."""
        src = source(site.listing_url, preset="kemenpora", story_pages=False)
        read = read_source(fetcher, src)
        assert add_story_pages(fetcher, src, read, {i.key for i in read.items}) == read.items
        assert site.story_requests() == []


class TestHostPacer:
    def test_delay_per_host_and_only_for_follow_ups(self, sleeper):
        """Follow-up requests to one host wait out the delay; other hosts and scheduled fetches do not."""
        pacer = HostPacer(2.0, sleep=sleeper, monotonic=lambda: sleeper.now)
        for url, polite in [("http://a.id/1", False), ("http://a.id/2", True), ("http://b.id/1", True),
                            ("http://a.id/3", False)]:
            with pacer.turn(url, polite=polite):
                sleeper.now += 0.5  # the request takes half a second
        assert sleeper.waits == [2.0]

    def test_a_request_that_never_connected_makes_no_one_wait(self, fetcher, sleeper):
        """Story pages on a host that cannot be reached (refused) fail without spacing the next
        request: the site saw nothing to be spared from. One that answered (a 404) is spaced."""
        import socket

        from bridge.errors import FetchError

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]  # nothing listens here once closed
        for n in range(3):
            with pytest.raises(FetchError, match="could not connect"):
                fetcher.get(f"http://127.0.0.1:{port}/berita/{n}")
        assert sleeper.waits == []
