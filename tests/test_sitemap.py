"""kind = "sitemap" (and kind "auto" finding one): a sitemap, an index followed to its newest
children, a Google News sitemap; hostile and oversized sitemaps refused without harm. Against a fake
ministry site on 127.0.0.1 and the fake X API."""

from __future__ import annotations

import gzip
from datetime import datetime, timezone

import pytest
from structlog.testing import capture_logs

from bridge.cli import EXIT_OK, EXIT_PROBLEM, main
from bridge.errors import FeedParseError
from bridge.pipeline import deliver_due, poll
from bridge.service import close, prepare
from bridge.sources import sitemap
from bridge.sources.presets import KEMENPORA
from bridge.sources.sitemap import (
    looks_like_sitemap, newest_children, parse_sitemap, read_sitemap, robots_sitemaps,
)
from bridge.store.lock import acquire_run_lock
from tests.helpers import env_for, make_config, runtime
from tests.sites import SitemapSite, news_sitemap, sitemap_index, urlset

UTC = timezone.utc
BASE = "https://www.kemenpora.go.id"


def entries(body: str, **kwargs):
    return parse_sitemap(body.encode(), BASE + "/sitemap.xml", **kwargs)


def read(body: str, layout=None, get=None):
    return read_sitemap(get or (lambda url: pytest.fail(f"fetched {url}")), body.encode(), BASE + "/sitemap.xml",
                        layout=layout, tz="Asia/Jakarta", source="s", max_bytes=10 * 1024 * 1024)


class TestReading:
    def test_plain_sitemap_gives_links_keys_and_lastmod_dates(self):
        """Each <url> is a story keyed by its link's identity, dated by <lastmod> in the source's zone
        when it has no time (and then marked for the page's time); image:loc is its photo."""
        result = read(urlset([(BASE + "/berita/1/a", "2025-12-01"), (BASE + "/berita/2/b/", "2025-12-02T10:00:00+07:00"),
                              ("http://www.kemenpora.go.id/berita/3/c?utm_source=x", None)],
                             image=BASE + "/img/a.jpg"))
        assert [i.key for i in result.items] == ["kemenpora.go.id/berita/1/a", "kemenpora.go.id/berita/2/b",
                                                 "kemenpora.go.id/berita/3/c"]
        first, second, third = result.items
        assert first.published == datetime(2025, 11, 30, 17, 0, tzinfo=UTC) and first.key in result.day_only
        assert second.published == datetime(2025, 12, 2, 3, 0, tzinfo=UTC) and second.key not in result.day_only
        assert third.published is None and third.link == "http://www.kemenpora.go.id/berita/3/c"
        assert first.image_url == BASE + "/img/a.jpg" and second.image_url is None
        assert all(i.title == "" for i in result.items)  # the story page gives it
        assert not result.index and result.description == ""

    def test_google_news_sitemap_gives_title_and_publication_date(self):
        """news:title and news:publication_date are the story's title and date."""
        result = read(news_sitemap([(BASE + "/detail/12345/silat", "Menpora Buka Kejurnas &amp; Silat",
                                     "2025-12-01T09:30:00+07:00")]))
        [item] = result.items
        assert item.title == "Menpora Buka Kejurnas & Silat"
        assert item.published == datetime(2025, 12, 1, 2, 30, tzinfo=UTC) and not result.day_only

    def test_preset_id_pattern_keys_the_story(self):
        """With a preset, the story's key is its id (kemenpora: /detail/{id}), as for its html listing."""
        result = read(urlset([(BASE + "/detail/12345/menpora-buka", None)]), layout=KEMENPORA)
        assert result.items[0].key == "kemenpora:detail:12345"

    def test_index_follows_its_newest_children_only(self):
        """An index is followed to its MAX_CHILD_SITEMAPS newest children by lastmod (undated last)."""
        children = [(f"{BASE}/s-{n}.xml", f"2025-1{n}-01") for n in range(3)] + [(BASE + "/pages.xml", None)]
        assert newest_children(entries(sitemap_index(children)).entries, BASE, limit=2) == [
            BASE + "/s-2.xml", BASE + "/s-1.xml"]
        undated = [(f"{BASE}/s-{n}.xml", None) for n in range(4)]
        assert newest_children(entries(sitemap_index(undated)).entries, BASE, limit=2) == [
            BASE + "/s-3.xml", BASE + "/s-2.xml"]

    def test_unreadable_child_is_skipped(self):
        """A child that fails costs only its stories (read next poll); the others are read."""
        from bridge.errors import FetchError

        class Result:
            def __init__(self, url, body):
                self.url, self.body = url, body.encode()

        def get(url):
            if url.endswith("broken.xml"):
                raise FetchError(url, "HTTP 500")
            return Result(url, urlset([(BASE + "/berita/9/x", None)]))

        with capture_logs() as logs:
            result = read(sitemap_index([(BASE + "/ok.xml", "2025-12-01"), (BASE + "/broken.xml", "2025-12-02")]),
                          get=get)
        assert [i.key for i in result.items] == ["kemenpora.go.id/berita/9/x"] and result.index
        assert result.description == f"index: newest 1 of 2: {BASE}/ok.xml"
        assert any(e["event"].startswith("child sitemap unreadable") for e in logs)

    def test_a_sitemap_is_known_by_its_root_element(self):
        """A document is a sitemap by its root element (after a declaration and comments); a feed
        that mentions <urlset> in its text is not."""
        assert looks_like_sitemap(b'<?xml version="1.0"?>\n<!-- <rss> -->\n<sitemapindex xmlns="x"></sitemapindex>')
        assert looks_like_sitemap(gzip.compress(b"<urlset/>"))
        assert not looks_like_sitemap(b'<?xml version="1.0"?><rss version="2.0"><channel><title><![CDATA[<urlset>]]>'
                                      b"</title></channel></rss>")
        assert not looks_like_sitemap(b"<!DOCTYPE html><html><body><urlset></urlset></body></html>")

    def test_robots_sitemap_lines(self):
        """robots.txt's Sitemap: lines (any case, relative ones resolved) are read in order."""
        body = b"User-agent: *\nsitemap: /s1.xml\nSITEMAP:https://x.example/s2.xml # two\nDisallow: /\nSitemap: ftp://x/y\n"
        assert robots_sitemaps(body, "https://x.example/robots.txt") == ["https://x.example/s1.xml",
                                                                          "https://x.example/s2.xml"]


class TestHostile:
    @pytest.mark.parametrize("body,why", [
        ('<?xml version="1.0"?><!DOCTYPE urlset [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;">]>'
         '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>&b;</loc></url></urlset>',
         "declares an entity"),
        ('<?xml version="1.0"?><!DOCTYPE urlset [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
         '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>&x;</loc></url></urlset>',
         "declares an entity"),
        ('<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>https://a/1</loc></url>',
         "not a well-formed sitemap"),
        ("\x00\xff garbage <urlset >", "not a well-formed sitemap"),
        ("<!DOCTYPE html><html><body>Not found</body></html>", "got an HTML page"),
        ('<rss version="2.0"><channel><title><![CDATA[<urlset>]]></title></channel></rss>', "root element is <rss>"),
        ("just text", "no <urlset> or <sitemapindex> root"),
    ], ids=["billion-laughs", "external-entity", "truncated", "garbage", "html", "rss", "text"])
    def test_refused_with_a_reason(self, body, why):
        """Entity declarations, external entities, broken XML and non-sitemaps are refused, saying why."""
        with pytest.raises(FeedParseError) as info:
            entries(body)
        assert why in info.value.reason

    def test_too_many_urls_are_cut_with_a_warning(self, monkeypatch):
        """A sitemap listing more than MAX_SITEMAP_URLS is read up to it, with a warning."""
        monkeypatch.setattr(sitemap, "MAX_SITEMAP_URLS", 5)
        with capture_logs() as logs:
            result = read(urlset([(f"{BASE}/berita/{n}/x", None) for n in range(20)]))
        assert len(result.items) == 5
        assert any(e["event"].startswith("sitemap lists more URLs than are read") for e in logs)

    def test_long_texts_are_cut(self):
        """A <loc> or title of megabytes is cut to MAX_TEXT_CHARS while parsing."""
        result = read(news_sitemap([(BASE + "/b/" + "x" * 100_000, "t" * 100_000, "2025-12-01")]))
        [item] = result.items
        assert len(item.link) <= sitemap.MAX_TEXT_CHARS and len(item.title) <= sitemap.MAX_TEXT_CHARS

    def test_gzipped_sitemap_inflated_under_the_cap(self):
        """A sitemap.xml.gz is read; one that inflates past the byte cap is refused."""
        body = gzip.compress(urlset([(BASE + "/berita/1/a", None)]).encode())
        assert len(parse_sitemap(body, BASE + "/s.xml.gz", max_bytes=10_000).entries) == 1
        bomb = gzip.compress(b"<urlset>" + b" " * 5_000_000)
        with pytest.raises(FeedParseError, match="larger than 100000 bytes"):
            parse_sitemap(bomb, BASE + "/s.xml.gz", max_bytes=100_000)


# --- end to end ---------------------------------------------------------------------------------


@pytest.fixture
def site(feed_server):
    return SitemapSite(feed_server)


@pytest.fixture
def bridge(site, x_api, tmp_path, clock):
    """start(url, **source) starts the bridge on one database; starting again is a restart."""
    runtimes = []

    def start(url: str, bridge_settings: dict | None = None, **source):
        if runtimes:
            close(runtimes.pop())
        raw = make_config({"kementerian": url}, x_base=x_api.base_url,
                          bridge={"page_delay": "0s", **(bridge_settings or {})}, source={"kind": "sitemap", **source})
        rt = runtime(raw, tmp_path, clock)
        prepare(rt, acquire_run_lock(rt.repo.engine))
        runtimes.append(rt)
        return rt

    yield start
    for rt in runtimes:
        close(rt)


def cycle(rt):
    outcome = poll(rt, rt.config.sources[0], force=True)
    deliver_due(rt)
    return outcome


class TestPipeline:
    def test_news_sitemap_new_story_posted_once_with_its_page(self, bridge, site, x_api):
        """The first poll only remembers; a story added to the news sitemap is posted once with its
        news:title, its page read once (for summary and photo); a restart posts nothing again."""
        rt = bridge(site.url("/news-sitemap.xml"))
        first = cycle(rt)
        assert first.first_run and first.items_new == 3 and x_api.tweets == [] and site.page_requests() == []
        site.publish("/berita/4/berita-baru", "Berita baru hari ini", "2025-12-04T08:00:00+07:00")
        assert cycle(rt).items_new == 1
        assert [t["text"] for t in x_api.tweets] == [f"Berita baru hari ini {site.url('/berita/4/berita-baru')}"]
        assert site.page_requests() == ["/berita/4/berita-baru"]
        rt2 = bridge(site.url("/news-sitemap.xml"))
        assert cycle(rt2).items_new == 0 and len(x_api.tweets) == 1 and len(site.page_requests()) == 1

    def test_index_read_through_its_newest_child_and_titles_from_pages(self, bridge, site, x_api, monkeypatch):
        """An index is read through its newest children (not the undated pages sitemap); a story
        without news:title takes its page's og:title."""
        monkeypatch.setattr(sitemap, "MAX_CHILD_SITEMAPS", 2)
        rt = bridge(site.url("/sitemap.xml"))
        cycle(rt)
        fetched = {r.path for r in site.server.request_log}
        assert {"/sitemap-2025-12.xml", "/sitemap-2025-11.xml"} <= fetched and "/sitemap-pages.xml" not in fetched
        site.publish("/berita/4/tanpa-judul", "Judul dari halaman berita", "2025-12-04T08:00:00+07:00")
        cycle(rt)
        assert [t["text"] for t in x_api.tweets] == [f"Judul dari halaman berita {site.url('/berita/4/tanpa-judul')}"]
        [(summary, published)] = rt.repo.engine.connect().exec_driver_sql(
            "select summary, published_at from items where key like '%tanpa-judul'").all()
        assert summary == "Ringkasan Judul dari halaman berita."
        # the page's time (the sitemap gave the day only)
        assert datetime.fromisoformat(str(published) + "+00:00") == datetime(2025, 12, 4, 1, 0, tzinfo=UTC)

    def test_index_keeps_no_validators_a_urlset_does(self, bridge, site, feed_server):
        """An index is asked for in full each poll (its children change without it); a plain
        sitemap's ETag is used for a conditional GET."""
        feed_server.edit("/sitemap.xml", etag='"idx"')
        feed_server.edit("/news-sitemap.xml", etag='"news"')
        for path in ("/sitemap.xml", "/news-sitemap.xml"):
            rt = bridge(site.url(path))
            cycle(rt)
            cycle(rt)
        assert all("if-none-match" not in r.headers for r in feed_server.requests_to("/sitemap.xml"))
        assert feed_server.requests_to("/news-sitemap.xml")[-1].headers.get("if-none-match") == '"news"'

    def test_oversized_and_garbage_sitemaps_fail_the_poll_and_mark_nothing(self, bridge, site, feed_server):
        """A sitemap over max_feed_bytes, or garbage, is a poll error; nothing is stored or posted."""
        feed_server.add_huge("/huge.xml", 3 * 1024 * 1024)
        feed_server.add("/garbage.xml", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 10, content_type="application/xml")
        rt = bridge(site.url("/huge.xml"), bridge_settings={"max_feed_bytes": 1024 * 1024})
        outcome = cycle(rt)
        assert outcome.status == "error" and "larger than" in outcome.error
        rt = bridge(site.url("/garbage.xml"))
        outcome = cycle(rt)
        assert outcome.status == "error" and "not a sitemap" in outcome.error
        assert rt.repo.engine.connect().exec_driver_sql("select count(*) from items").scalar() == 0


class TestAuto:
    def test_auto_finds_the_news_sitemap_in_robots_txt(self, bridge, site, x_api):
        """kind auto on a page with no feed link and no preset reads the site's sitemap from robots.txt,
        the news sitemap first, and posts its new stories."""
        rt = bridge(site.url("/"), kind="auto")
        cycle(rt)
        site.publish("/berita/4/baru", "Berita baru", "2025-12-04T08:00:00+07:00")
        cycle(rt)
        assert [t["text"] for t in x_api.tweets] == [f"Berita baru {site.url('/berita/4/baru')}"]

    def test_auto_falls_back_to_sitemap_xml_and_then_says_why_not(self, bridge, site, feed_server):
        """Without robots.txt, /sitemap.xml is tried; without either, the poll fails saying what was looked for."""
        feed_server.add_status("/robots.txt", 404)
        rt = bridge(site.url("/"), kind="auto")
        assert cycle(rt).items_new == 5  # the index's three children: 3 + 1 + 1 stories
        feed_server.add_status("/sitemap.xml", 404)
        outcome = cycle(rt)
        assert outcome.status == "error" and "has no sitemap (robots.txt, /sitemap.xml)" in outcome.error

    def test_preview_says_which_sitemap_it_found(self, site, x_api, tmp_path, capsys, monkeypatch):
        """`bridge preview` of a kind auto source names the sitemap it read and shows each story."""
        for name, value in env_for(tmp_path).items():
            monkeypatch.setenv(name, value)
        settings = tmp_path / "settings.toml"
        settings.write_text(f"""
[bridge]
database = "sqlite:///bridge.db"
dry_run = true
page_delay = "0s"
[[sources]]
name = "kementerian"
url = "{site.url('/')}"
targets = ["x"]
[targets.x]
kind = "x"
api_base = "{x_api.base_url}"
""")
        assert main(["--config", str(settings), "preview", "kementerian", "--no-pages"]) == EXIT_OK
        out = capsys.readouterr().out
        assert f"read as sitemap {site.url('/news-sitemap.xml')}; 3 stories" in out
        assert "title: Berita ke-3 dari kementerian" in out
        settings.write_text(settings.read_text().replace(site.url("/"), site.url("/sitemap.xml"))
                            .replace('targets = ["x"]\n[targets', 'kind = "sitemap"\ntargets = ["x"]\n[targets'))
        assert main(["--config", str(settings), "preview", "kementerian", "--no-pages"]) == EXIT_OK
        assert f"read as sitemap (index: newest 3 of 3: {site.url('/sitemap-2025-12.xml')}" in capsys.readouterr().out

    def test_a_sitemap_url_under_auto_is_read_as_one(self, bridge, site):
        """kind auto pointed at a sitemap reads it as a sitemap (not as a broken feed)."""
        rt = bridge(site.url("/news-sitemap.xml"), kind="auto")
        assert cycle(rt).items_new == 3


def test_unreadable_source_preview_exits_1(site, x_api, tmp_path, capsys, monkeypatch, feed_server):
    """A kind sitemap source whose sitemap is garbage: preview says why, exit 1."""
    for name, value in env_for(tmp_path).items():
        monkeypatch.setenv(name, value)
    feed_server.add("/bad.xml", "<html><body>oops</body></html>", content_type="text/html")
    settings = tmp_path / "settings.toml"
    settings.write_text(f"""
[bridge]
database = "sqlite:///bridge.db"
dry_run = true
[[sources]]
name = "bad"
url = "{site.url('/bad.xml')}"
kind = "sitemap"
targets = ["x"]
[targets.x]
kind = "x"
api_base = "{x_api.base_url}"
""")
    assert main(["--config", str(settings), "preview", "bad"]) == EXIT_PROBLEM
    assert "not a sitemap: got an HTML page" in capsys.readouterr().out


class TestNeverCrashes:
    def test_corpus_files_are_read_or_refused(self):
        """Every file of the shared feed corpora, read as a sitemap, gives stories or a FeedParseError."""
        from tests.test_corpora import FILES

        if not FILES:
            pytest.skip("corpora not found (set BRIDGE_CORPORA)")
        for path in FILES:
            try:
                read_sitemap(lambda url: pytest.fail(f"fetched {url}"), path.read_bytes(), BASE + "/s.xml",
                             layout=None, tz="Asia/Jakarta", source="s", max_bytes=10 * 1024 * 1024)
            except FeedParseError:
                pass

    def test_mangled_sitemaps_are_read_or_refused(self):
        """Thousands of byte-level mutations of a real-shaped news sitemap (fixed seed) each give
        stories or a FeedParseError, never another exception."""
        import random

        rng = random.Random(14)
        good = news_sitemap([(f"{BASE}/berita/{n}/x", f"Judul {n} &amp; <![CDATA[cdata]]>", "2025-12-01T10:00:00+07:00")
                             for n in range(5)]).encode()
        tokens = [b"<", b">", b"&", b"]]>", b"<!ENTITY e 'x'>", b"\x00", b"\xff", b"&#0;", b"<url>", b"</loc>",
                  b"<news:title>", b"xmlns:news='x'", b"<!DOCTYPE urlset SYSTEM 'http://127.0.0.1:9/x.dtd'>"]
        for _ in range(3000):
            body = bytearray(good)
            for _ in range(rng.randint(1, 4)):
                at = rng.randrange(len(body))
                if rng.random() < 0.5:
                    body[at:at + rng.randint(0, 20)] = rng.choice(tokens)
                else:
                    del body[at:at + rng.randint(1, 50)]
            try:
                result = parse_sitemap(bytes(body), BASE + "/s.xml")
            except FeedParseError:
                continue
            assert all(isinstance(e.loc, str) and e.loc for e in result.entries)
