"""bridge.sources.feed: feed bodies (RSS, Atom, JSON Feed) into Items."""

from __future__ import annotations

import json
import time
import tracemalloc
from datetime import datetime, timedelta, timezone
from pathlib import Path

import feedparser
import pytest

from bridge.errors import FeedParseError
from bridge.model import Item
from bridge.sources import feed
from bridge.sources.defuse import MAX_ATTRIBUTES, MAX_PERSON_BYTES, defuse
from bridge.sources.feed import parse_feed, register_date_parser
from bridge.sources.text import first_image_src, html_to_text, plain_text
from bridge.sources.fetch import FetchLimits, fetch, make_client

FIXTURES = Path(__file__).parent / "fixtures" / "feeds"
FEED_URL = "https://feeds.example.id/rss/terkini.xml"
UTC = timezone.utc


def read(name: str, url: str = FEED_URL, headers: dict[str, str] | None = None) -> list[Item]:
    return parse_feed((FIXTURES / name).read_bytes(), url=url, headers=headers)


def rss(items: str, *, channel: str = "<title>T</title>", namespaces: str = "") -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0" {namespaces}><channel>{channel}'
        f"{items}</channel></rss>"
    ).encode("utf-8")


class TestAntara:
    def test_reads_items_with_guid_keys(self):
        """Antara's guid (equal to the link, isPermaLink=false) is the key, as its URL identity."""
        items = read("antara_terkini.xml")
        assert [i.key for i in items] == [
            "antaranews.com/berita/1358622/menpora-minta-atlet-jaga-kebugaran-selama-libur-kompetisi",
            "antaranews.com/berita/1358610/timnas-u-19-tetap-berlatih-di-jakarta",
        ]

    def test_image_from_img_in_cdata_description(self):
        """The photo, present only as an <img> in the CDATA description, becomes image_url."""
        first, second = read("antara_terkini.xml")
        assert first.image_url == "https://img.antaranews.com/cache/800x533/2020/03/15/menpora.jpg"
        assert second.image_url == "https://feeds.example.id/cache/800x533/2020/03/15/timnas.jpg"  # relative src

    def test_summary_is_plain_text(self):
        """The description loses its <img> and &nbsp;, keeps the "…" and has single spaces."""
        first, second = read("antara_terkini.xml")
        assert first.summary == (
            "Jakarta (ANTARA) - Menteri Pemuda dan Olahraga meminta para atlet nasional tetap menjaga "
            "kebugaran selama kompetisi diliburkan …"
        )
        assert "  " not in second.summary and "\xa0" not in second.summary and "<" not in second.summary

    def test_plus_0700_date_to_utc(self):
        """"Sun, 15 Mar 2020 15:51:04 +0700" becomes 08:51:04 UTC, an aware datetime."""
        assert read("antara_terkini.xml")[0].published == datetime(2020, 3, 15, 8, 51, 4, tzinfo=UTC)

    def test_link_kept_and_url_is_its_identity(self):
        """The link to post drops the utm_* parameters but keeps the site's spelling; url is its identity."""
        second = read("antara_terkini.xml")[1]
        assert second.link == "https://www.antaranews.com/berita/1358610/timnas-u-19-tetap-berlatih-di-jakarta"
        assert second.url == "antaranews.com/berita/1358610/timnas-u-19-tetap-berlatih-di-jakarta"

    def test_categories(self):
        """Each item's <category> becomes a category."""
        assert [i.categories for i in read("antara_terkini.xml")] == [("Olahraga",), ("Sepak Bola",)]


class TestDetik:
    def test_enclosure_image_preferred(self):
        """An image/png enclosure wins over the HTML-escaped <img> in the description."""
        first = read("detik_news.xml")[0]
        assert first.image_url == "https://akcdn.detik.net.id/community/media/visual/2024/10/14/pekan-olahraga.png?w=300"

    def test_escaped_img_when_no_enclosure(self):
        """Without an enclosure, the HTML-escaped <img> in the description gives the image."""
        second = read("detik_news.xml")[1]
        assert second.image_url == "https://akcdn.detik.net.id/community/media/visual/2024/10/14/emas.jpeg?w=300"

    def test_summary_and_title_from_escaped_html_and_cdata(self):
        """The escaped <img> is dropped from the summary and the CDATA title is plain text."""
        first = read("detik_news.xml")[0]
        assert first.title == "Kemenpora Gelar Pekan Olahraga Pelajar di Jakarta"
        assert first.summary == "Jakarta - Kementerian Pemuda dan Olahraga menggelar pekan olahraga pelajar tingkat nasional."

    def test_fragment_dropped_from_link_kept_in_url(self):
        """The link to post drops the fragment; the url identity keeps it (stories may differ only by it)."""
        first = read("detik_news.xml")[0]
        assert "#" not in first.link
        assert first.url == "news.detik.com/berita/d-7589012/kemenpora-gelar-pekan-olahraga-pelajar-di-jakarta#utm_anchor"


class TestOtherIndonesianShapes:
    def test_okezone_image_jpg_media_content(self):
        """Okezone's media:content with the unregistered type image/jpg is accepted."""
        (item,) = read("okezone.xml")
        assert item.image_url == "https://img.okezone.com/content/2024/10/14/43/3075001/paralimpiade.jpg"

    def test_republika_padded_categories_and_nested_media(self):
        """Republika's padded CDATA categories are stripped; nested media:title does not replace the title."""
        (item,) = read("republika.xml")
        assert item.categories == ("Olahraga", "Pencak Silat")
        assert item.title == "Menpora Buka Kejuaraan Pencak Silat Nasional"
        assert item.image_url == "https://static.republika.co.id/uploads/images/inpicture_slide/silat.jpg"

    def test_republika_summary_prefers_description(self):
        """The description is the summary even when content:encoded is present."""
        (item,) = read("republika.xml")
        assert item.summary == "Menpora membuka kejuaraan pencak silat nasional di Jakarta."

    def test_bbc_cdata_title_and_gmt_date(self):
        """BBC's CDATA title has its entity decoded; its GMT date is read as UTC; media:thumbnail is the image."""
        (item,) = read("bbc_indonesia.xml")
        assert item.title == "Indonesia & Malaysia sepakati kerja sama olahraga"
        assert item.published == datetime(2024, 10, 14, 5, 12, tzinfo=UTC)
        assert item.image_url == "https://ichef.bbci.co.uk/ace/ws/240/cpsprodpb/abcd/live/olahraga.jpg"

    def test_wordpress_feed(self):
        """A WordPress feed: numeric-entity title, repeated categories once, image from content:encoded."""
        (item,) = read("setkab_wordpress.xml")
        assert item.key == "setkab.go.id?p=123456"
        assert item.title == "Presiden Terima Atlet Peraih Medali “Asian Games”"
        assert item.categories == ("Berita", "Olahraga")
        assert item.image_url == "https://setkab.go.id/wp-content/uploads/2024/10/atlet.jpg"
        assert item.url == "setkab.go.id/presiden-terima-atlet-peraih-medali-asian-games"
        assert item.summary.endswith("Senin (14/10). […]")


class TestAtom:
    def test_relative_links_resolve_against_xml_base(self):
        """Relative Atom links resolve against xml:base."""
        first, second = read("atom.xml")
        assert first.link == "https://www.kemenpora.go.id/detail/21001/menpora-resmikan-gor-baru"
        assert second.link == "https://www.kemenpora.go.id/detail/21000/angka-partisipasi"

    def test_titles_html_stripped_text_kept(self):
        """A type="html" title loses its tags; a type="text" title keeps a literal "<"."""
        first, second = read("atom.xml")
        assert first.title == "Menpora resmikan GOR baru"
        assert second.title == "A < B: angka partisipasi naik"

    def test_ids_dates_and_images(self):
        """Atom ids are keys, published wins over updated, rel=enclosure and xhtml <img> give images."""
        first, second = read("atom.xml")
        assert first.key == "tag:kemenpora.go.id,2024:detail/21001"
        assert first.published == datetime(2024, 10, 14, 0, 30, tzinfo=UTC)
        assert second.published == datetime(2024, 10, 13, 10, 0, tzinfo=UTC)
        assert first.image_url == "https://www.kemenpora.go.id/uploads/gor-baru.jpg"
        assert second.image_url == "https://www.kemenpora.go.id/uploads/grafik.png"
        assert second.summary == "Angka partisipasi olahraga naik."


class TestJsonFeed:
    def test_version_1_1(self):
        """A JSON Feed 1.1 item gives key, title, plain summary, tags, image and UTC date."""
        first = read("jsonfeed_1_1.json")[0]
        assert first.key == "21002"
        assert first.title == "Peringatan Hari Olahraga Nasional"
        assert first.summary == "Haornas digelar di Jakarta."
        assert first.categories == ("Haornas", "Olahraga")
        assert first.image_url == "https://www.kemenpora.go.id/uploads/haornas-cover.jpg"
        assert first.published == datetime(2024, 9, 9, 1, 0, tzinfo=UTC)
        assert first.url == "kemenpora.go.id/detail/21002/hari-olahraga-nasional"

    def test_numeric_id_relative_url_banner_and_title_from_text(self):
        """A numeric id, a relative url, banner_image and an untitled item borrowing its text."""
        second = read("jsonfeed_1_1.json")[1]
        assert second.key == "21001"
        assert second.link == "https://feeds.example.id/detail/21001/menpora-resmikan-gor-baru"
        assert second.image_url == "https://feeds.example.id/uploads/gor-banner.jpg"
        assert second.title.startswith("Menpora meresmikan gedung olahraga baru")
        assert len(second.title) <= feed.TITLE_FROM_SUMMARY_CHARS and second.title.endswith("…")

    def test_date_without_offset_is_not_guessed(self):
        """A date_published without an offset gives published=None rather than a guessed zone."""
        third = read("jsonfeed_1_1.json")[2]
        assert third.published is None
        assert third.summary == "Teks"
        assert third.image_url == "https://feeds.example.id/rss/img/relatif.png"

    def test_version_1_0_with_image_attachment(self):
        """A JSON Feed 1.0 item reads the same way; an image attachment is its image."""
        (item,) = read("jsonfeed_1_0.json")
        assert item.key == "example.org/2019/1"
        assert item.published == datetime(2019, 8, 5, 17, 0, tzinfo=UTC)
        assert item.image_url == "https://example.org/1.png"

    def test_detected_by_content_type(self):
        """application/feed+json is read as JSON even with leading whitespace."""
        body = b"\n\n  " + (FIXTURES / "jsonfeed_1_0.json").read_bytes()
        assert len(parse_feed(body, url=FEED_URL, headers={"Content-Type": "application/feed+json"})) == 1

    @pytest.mark.parametrize(
        "body",
        [b"{not json", b'{"error": "not found"}', b'{"version": "https://jsonfeed.org/version/1.1", "items": 5}',
         b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 100_000],
        ids=["invalid", "not-a-feed", "items-not-list", "deep-array", "deep-object"],
    )
    def test_bad_json_is_a_feed_parse_error(self, body):
        """Invalid JSON, JSON that is not a feed, and deeply nested JSON raise FeedParseError."""
        with pytest.raises(FeedParseError):
            parse_feed(body, url=FEED_URL, headers={"content-type": "application/json"})

    def test_hostile_item_values_are_ignored(self):
        """Items of the wrong type, and fields of the wrong type, are skipped without raising."""
        doc = {"version": "https://jsonfeed.org/version/1.1", "items": [
            5, None, {"id": True, "title": ["x"], "url": 7, "tags": "a", "content_text": "ok", "attachments": [3]},
        ]}
        (item,) = parse_feed(json.dumps(doc).encode(), url=FEED_URL)
        assert item.summary == "ok" and item.key.startswith("sha256:")


class TestKeys:
    def test_guid_is_stripped(self):
        """Whitespace around a guid is not part of the key."""
        (item,) = parse_feed(rss("<item><guid isPermaLink='false'>\n  abc-123  \n</guid><title>x</title></item>"), url=FEED_URL)
        assert item.key == "abc-123"

    def test_relative_guid_is_not_resolved(self):
        """A guid that looks like a relative URL stays as written, so the key does not depend on the feed URL."""
        body = rss("<item><guid>12345</guid><title>x</title></item>")
        assert parse_feed(body, url="https://a.example/rss")[0].key == "12345"
        assert parse_feed(body, url="https://b.example/feed/")[0].key == "12345"

    def test_guid_that_is_not_a_url_is_not_a_link(self):
        """A permalink guid that is no URL does not become a made-up link."""
        (item,) = parse_feed(rss("<item><guid>12345</guid><title>x</title></item>"), url=FEED_URL)
        assert item.link is None and item.url is None

    def test_key_stable_when_title_and_date_change(self):
        """Editing an item's title and date keeps its key (guid)."""
        before = rss("<item><guid>g1</guid><title>Old</title><pubDate>Mon, 14 Oct 2024 10:00:00 GMT</pubDate></item>")
        after = rss("<item><guid>g1</guid><title>New</title><pubDate>Tue, 15 Oct 2024 10:00:00 GMT</pubDate></item>")
        assert parse_feed(before, url=FEED_URL)[0].key == parse_feed(after, url=FEED_URL)[0].key == "g1"

    def test_link_identity_without_guid(self):
        """Without a guid the key is the link's identity, so tracking parameters do not change it."""
        a = rss("<item><title>Old</title><link>https://Example.com/a/?utm_source=x</link></item>")
        b = rss("<item><title>New</title><link>https://example.com/a</link></item>")
        assert parse_feed(a, url=FEED_URL)[0].key == parse_feed(b, url=FEED_URL)[0].key == "example.com/a"

    def test_url_guid_keeps_its_key_when_the_site_moves(self):
        """A guid that is an http(s) URL is keyed by its identity: http://www. and https:// bare give one key."""
        before = rss("<item><guid>http://www.site.example/berita/1</guid><title>t</title></item>")
        after = rss("<item><guid>https://site.example/berita/1/</guid><title>t</title></item>")
        assert parse_feed(before, url=FEED_URL)[0].key == parse_feed(after, url=FEED_URL)[0].key == "site.example/berita/1"

    def test_url_guids_differing_by_fragment_are_two_stories(self):
        """Single-page feeds give stories that differ only by fragment: both are kept, under two keys."""
        body = rss("<item><guid>https://site.example/live#2</guid><title>two</title></item>"
                   "<item><guid>https://site.example/live#3</guid><title>three</title></item>")
        assert [i.key for i in parse_feed(body, url=FEED_URL)] == ["site.example/live#2", "site.example/live#3"]

    def test_json_feed_url_id_is_keyed_by_identity(self):
        """A JSON Feed id that is an http(s) URL is reduced to its identity too."""
        body = b'{"version": "https://jsonfeed.org/version/1.1", "items": [{"id": "HTTP://WWW.Site.example/a/", "title": "t"}]}'
        assert parse_feed(body, url=FEED_URL)[0].key == "site.example/a"

    def test_hash_without_guid_or_link(self):
        """Without guid or link the key is a sha256 of title and text, the same on every run."""
        body = rss("<item><title>Judul</title><description>Teks</description></item>")
        first, again = parse_feed(body, url=FEED_URL)[0].key, parse_feed(body, url=FEED_URL)[0].key
        assert first == again == "sha256:" + __import__("hashlib").sha256("Judul\nTeks".encode()).hexdigest()

    def test_duplicate_entries_give_one_item(self):
        """A feed listing one guid twice gives one item, the first."""
        body = rss("<item><guid>g</guid><title>one</title></item><item><guid>g</guid><title>two</title></item>")
        assert [i.title for i in parse_feed(body, url=FEED_URL)] == ["one"]

    def test_empty_entries_are_dropped(self):
        """An entry with no title, text or link has nothing to post and is skipped."""
        body = rss("<item><category>x</category></item><item><title>kept</title></item>")
        assert [i.title for i in parse_feed(body, url=FEED_URL)] == ["kept"]


class TestLinksAndText:
    def test_relative_link_resolves_against_feed_url(self):
        """A relative <link> is made absolute against the feed's URL."""
        (item,) = parse_feed(rss("<item><title>x</title><link>/berita/1</link></item>"), url=FEED_URL)
        assert item.link == "https://feeds.example.id/berita/1"

    def test_javascript_link_dropped(self):
        """A javascript: link is not kept: it cannot be posted."""
        (item,) = parse_feed(rss("<item><title>x</title><link>javascript:alert(1)</link></item>"), url=FEED_URL)
        assert item.link is None and item.url is None

    def test_untitled_item_takes_summary_start(self):
        """An item without a title borrows about 100 characters of its summary, cut at a word."""
        words = " ".join(["kata"] * 60)
        (item,) = parse_feed(rss(f"<item><guid>u</guid><description>{words}</description></item>"), url=FEED_URL)
        assert item.title.endswith("…") and len(item.title) <= 100
        assert item.title[:-1].strip().split(" ") == ["kata"] * len(item.title[:-1].strip().split(" "))

    def test_huge_summary_is_clipped(self):
        """A summary past MAX_SUMMARY_CHARS is cut to it, ending with "…"."""
        (item,) = parse_feed(rss(f"<item><guid>u</guid><title>t</title><description>{'ab ' * 10000}</description></item>"), url=FEED_URL)
        assert len(item.summary) <= feed.MAX_SUMMARY_CHARS and item.summary.endswith("…")

    def test_sanitizer_is_off_lazy_image_found(self):
        """data-src survives (feedparser's sanitiser would strip it), so lazy-loaded images are found."""
        body = rss('<item><guid>u</guid><title>t</title><description><![CDATA[<img src="data:image/gif;base64,R0lG" '
                   'data-src="https://cdn.example.id/real.jpg">Teks]]></description></item>')
        assert parse_feed(body, url=FEED_URL)[0].image_url == "https://cdn.example.id/real.jpg"

    def test_script_and_style_never_reach_the_summary(self):
        """With the sanitiser off, script and style content is still dropped from plain text."""
        body = rss("<item><guid>u</guid><title>t</title><description><![CDATA[<script>alert('x')</script>"
                   "<style>p{}</style><p>Aman</p>]]></description></item>")
        assert parse_feed(body, url=FEED_URL)[0].summary == "Aman"

    def test_utf8_without_declaration_or_content_type(self):
        """A UTF-8 feed with no encoding declaration and no Content-Type is not read as Latin-1."""
        body = '<rss version="2.0"><channel><item><guid>u</guid><title>Kejuaraan “Nasional” — 2024</title></item></channel></rss>'
        (item,) = parse_feed(body.encode("utf-8"), url=FEED_URL, headers={"ETag": '"x"'})
        assert item.title == "Kejuaraan “Nasional” — 2024"

    def test_rss_served_as_text_html(self):
        """An RSS feed served with Content-Type text/html (a common misconfiguration) still reads."""
        (item,) = read("okezone.xml", headers={"Content-Type": "text/html"})
        assert item.title == "Kemenpora Apresiasi Prestasi Atlet Paralimpiade"


class TestHtmlToText:
    @pytest.mark.parametrize(
        ("markup", "text"),
        [
            ("Judul &amp; <b>berita</b>&nbsp;x", "Judul & berita x"),
            ("<p>satu</p><p>dua</p>", "satu dua"),
            ("a<br>b<br/>c", "a b c"),
            ("ber<b>ita</b>", "berita"),
            ("<script>var x = '<p>';</script>teks", "teks"),
            ("  spasi \n\t  ganda  ", "spasi ganda"),
            ("&#8220;kutip&#8221; &hellip;", "“kutip” …"),
            ("<![if !supportLists]>x<![endif]>", "x"),
            ("<p>tidak ditutup", "tidak ditutup"),
            ("", ""),
            ("<div>a<script>s</script></div><template><p>t</p></template>c", "a c"),
            ("<style><p>x</p></style>k", "k"),
            ("<table><tr><td>1</td><td>2</td></tr></table>", "1 2"),
            ("<ul><li>a<li>b</ul>", "a b"),
            ("<p>é\x07</p>ü", "é ü"),
        ],
    )
    def test_plain_text(self, markup, text):
        """Tags go, entities decode, blocks separate words, whitespace collapses, broken markup degrades."""
        assert html_to_text(markup) == text

    @pytest.mark.parametrize(("text", "plain"), [("a\x00b\x1f c", "ab c"), ("x\ud800y", "x\ufffdy"),
                                                 ("é\u00a0\u00a0ü\x7f", "é ü")])
    def test_plain_text_drops_control_characters_and_replaces_surrogates(self, text, plain):
        """Control characters go, a lone surrogate (which UTF-8 cannot store) becomes U+FFFD, and
        no-break spaces collapse like any whitespace, in ASCII text and in text beyond it."""
        assert plain_text(text) == plain

    def test_lone_less_than_is_text(self):
        """A "<" that starts no tag ("A < B") stays in the text."""
        assert html_to_text("A < B &lt; C") == "A < B < C"

    def test_attribute_entities_decoded_in_image_src(self):
        """An &amp; in an <img src> query string is decoded, as a browser would."""
        assert first_image_src('<img alt="x" src="/i.jpg?w=300&amp;h=200">') == "/i.jpg?w=300&h=200"

    @pytest.mark.parametrize("markup", ["<a" * 200_000, "</" * 200_000, "<!--" + "x" * 400_000, '<img src="' * 50_000,
                                        "<script>" * 100_000, "<![" * 100_000])
    def test_hostile_markup_is_linear(self, markup):
        """Unclosed and repeated constructs are scanned in linear time (well under a second here)."""
        start = time.monotonic()
        html_to_text(markup)
        first_image_src(markup)
        assert time.monotonic() - start < 2

    def test_first_image_src(self):
        """The first <img> with a real source is found; data: placeholders are skipped."""
        assert first_image_src('<p>x</p><IMG SRC=" /a.jpg "><img src="/b.jpg">') == "/a.jpg"
        assert first_image_src('<img src="data:image/png;base64,AAAA">') is None
        assert first_image_src("no image") is None


class TestDates:
    @pytest.fixture(autouse=True)
    def _no_registered_parsers(self, monkeypatch):
        monkeypatch.setattr(feed, "_DATE_PARSERS", [])

    def test_indonesian_and_misread_dates_are_none(self):
        """Dates feedparser cannot read, or reads wrongly (day-first, WIB taken as UTC), give None."""
        items = {i.key: i.published for i in read("indonesian_dates.xml")}
        assert items == {
            "agustus": None, "kamis": None, "okt-wib": None, "en-wib": None, "day-first": None,
            "good": datetime(2024, 10, 14, 3, 0, tzinfo=UTC),
        }

    def test_registered_parser_reads_what_feedparser_cannot(self):
        """A parser registered with register_date_parser is tried first and its answer used, in UTC."""
        wib = timezone(timedelta(hours=7))

        def wib_parser(raw: str):
            return datetime(2024, 10, 14, 10, 0, tzinfo=wib) if raw.endswith("WIB") else None

        register_date_parser(wib_parser)
        register_date_parser(wib_parser)  # registering twice is harmless
        items = {i.key: i.published for i in read("indonesian_dates.xml")}
        assert items["okt-wib"] == items["en-wib"] == datetime(2024, 10, 14, 3, 0, tzinfo=UTC)
        assert items["day-first"] is None
        assert feed._DATE_PARSERS == [wib_parser]

    def test_broken_or_naive_parser_is_ignored(self):
        """A registered parser that raises, or returns a naive datetime, does not decide the date."""
        register_date_parser(lambda raw: 1 / 0)
        register_date_parser(lambda raw: datetime(2000, 1, 1))
        assert {i.key: i.published for i in read("indonesian_dates.xml")}["good"] == datetime(2024, 10, 14, 3, tzinfo=UTC)

    def test_updated_when_no_published_and_none_when_neither(self):
        """An Atom entry with only <updated> uses it; an item with no date has published=None."""
        assert read("atom.xml")[1].published == datetime(2024, 10, 13, 10, tzinfo=UTC)
        assert parse_feed(rss("<item><guid>x</guid><title>t</title></item>"), url=FEED_URL)[0].published is None


class TestNotAFeed:
    def test_html_page(self):
        """An HTML page is a FeedParseError that says so."""
        with pytest.raises(FeedParseError, match="HTML page"):
            read("not_a_feed.html", headers={"content-type": "text/html; charset=utf-8"})

    @pytest.mark.parametrize("body", [b"", b"   \n", b"\x00\x01\x02garbage\xff", b"Service Unavailable",
                                      b'<?xml version="1.0"?><opml version="2.0"><body/></opml>'])
    def test_garbage_empty_and_non_feed_xml(self, body):
        """Empty bodies, garbage and XML that is not a feed raise FeedParseError."""
        with pytest.raises(FeedParseError) as info:
            parse_feed(body, url=FEED_URL)
        assert info.value.url == FEED_URL and info.value.reason

    def test_empty_valid_feed(self):
        """A valid feed without items gives []."""
        assert parse_feed(rss(""), url=FEED_URL) == []
        assert parse_feed(b'<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title></feed>', url=FEED_URL) == []

    def test_ill_formed_feed_with_entries_is_kept(self):
        """A feed with a bare "&" (not well-formed) still yields its entries."""
        body = rss("<item><guid>a</guid><title>Tom & Jerry</title></item><item><guid>b</guid><title>two</title></item>")
        assert [i.title for i in parse_feed(body, url=FEED_URL)] == ["Tom & Jerry", "two"]


class TestEntityExpansion:
    def test_billion_laughs_not_expanded(self):
        """The classic billion-laughs feed parses quickly and its entities stay unexpanded."""
        start = time.monotonic()
        (item,) = read("billion_laughs.xml")
        assert time.monotonic() - start < 2
        assert item.key == "bomb"
        assert len(item.title) < 100 and "lol" in item.title

    @pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-32"])
    def test_quadratic_blowup_stays_small(self, encoding):
        """A 26 KB feed that would expand to 40 MB of text (feedparser's lenient path) stays small in memory."""
        body = ('<?xml version="1.0" encoding="%s"?>\n<!DOCTYPE rss [\n<!ENTITY a "%s">\n]>\n'
                '<rss version="2.0"><channel><title>q</title><item><guid>q</guid><title>t</title>'
                "<description>%s</description></item></channel></rss>") % (encoding, "x" * 20_000, "&a;" * 2_000)
        tracemalloc.start()
        try:
            (item,) = parse_feed(body.encode(encoding), url=FEED_URL)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert "x" * 1000 not in item.summary
        assert peak < 20 * 1024 * 1024

    def test_declaration_hidden_after_comment_is_removed(self):
        """An entity declared after a comment containing "<a" (which defeats feedparser's own stripping) is removed too."""
        body = ('<?xml version="1.0"?><!-- <a --><!DOCTYPE rss [<!ENTITY e "%s">]><rss version="2.0"><channel>'
                "<item><guid>g</guid><title>&e;&e;&e;</title></item></channel></rss>") % ("y" * 50)
        (item,) = parse_feed(body.encode(), url=FEED_URL)
        assert "yyyyy" not in item.title


class TestPersonFields:
    """feedparser's e-mail regex on author-like fields is quadratic and holds the GIL: their text is capped first."""

    PADDING = "a" * 100_000  # letters only: the regex's worst case (a 96 KB author froze the daemon 63 s)

    @pytest.mark.parametrize("element", ["author", "dc:creator", "managingEditor", "webMaster", "itunes:author",
                                         "dc:publisher"])
    def test_100_kb_person_field_parses_quickly_and_the_stories_are_read(self, element):
        """A feed with a 100 KB author-like field parses within a hang guard and every story reads right."""
        where = "channel" if element in ("managingEditor", "webMaster") else "item"
        field = f"<{element}>{self.PADDING}</{element}>"
        body = rss(f"<item><guid>g1</guid><title>Satu</title><link>https://x.example/1</link>"
                   f"{field if where == 'item' else ''}</item><item><guid>g2</guid><title>Dua</title></item>",
                   channel="<title>T</title>" + (field if where == "channel" else ""),
                   namespaces=' xmlns:dc="http://purl.org/dc/elements/1.1/"'
                              ' xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd"')
        start = time.monotonic()
        items = parse_feed(body, url=FEED_URL)
        assert time.monotonic() - start < 2
        assert [(i.key, i.title) for i in items] == [("g1", "Satu"), ("g2", "Dua")]
        assert items[0].link == "https://x.example/1"

    def test_capped_author_is_still_usable(self):
        """The capped author keeps its name and address, as feedparser reads them from the first KB."""
        body = rss(f"<item><guid>g</guid><title>t</title><author>redaksi@antaranews.com (Redaksi Antara) "
                   f"{self.PADDING}</author></item>")
        capped, headers = defuse(body, {"content-type": "application/xml"})
        entry = feedparser.parse(capped, response_headers=headers).entries[0]
        assert entry.author_detail.email == "redaksi@antaranews.com"
        assert entry.author_detail.name.startswith("Redaksi Antara")
        assert len(entry.author) <= MAX_PERSON_BYTES

    @pytest.mark.parametrize("field", [f"<dc:creator><![CDATA[{PADDING}]]></dc:creator>",
                                       f"<author><name>{PADDING}</name><email>{PADDING}</email></author>"])
    def test_cdata_and_atom_person_names_are_capped(self, field):
        """A CDATA dc:creator and an Atom author's name and email are cut to MAX_PERSON_BYTES each."""
        capped, _ = defuse(rss(f"<item><guid>g</guid>{field}</item>"), {"content-type": "application/xml"})
        assert len(capped) < 3 * MAX_PERSON_BYTES + 500

    @pytest.mark.parametrize("split", ["<b/>", "<!-- -->", "]]><![CDATA[", "<?pi?>"])
    def test_text_split_by_markup_is_capped_as_a_whole(self, split):
        """Child tags, comments, CDATA sections or PIs cutting a huge author into short runs do not evade the cap."""
        padding = split.join(["a" * 900] * 120)  # 108 KB of letters in runs under the cap
        author = f"<![CDATA[{padding}]]>" if "CDATA" in split else padding
        body = rss(f"<item><guid>g1</guid><title>Satu</title><author>x@y.id {author}</author></item>"
                   "<item><guid>g2</guid><title>Dua</title></item>")
        start = time.monotonic()
        items = parse_feed(body, url=FEED_URL)
        assert time.monotonic() - start < 2
        assert [i.title for i in items] == ["Satu", "Dua"]

    def test_unclosed_person_elements_stay_linear(self):
        """Many unclosed person tags and CDATA sections in a megabyte are defused in one linear pass."""
        body = rss("<item><guid>g</guid><title>t</title>" + "<author><![CDATA[x<dc:creator>" * 50_000 + "</item>")
        start = time.monotonic()
        defuse(body, {"content-type": "application/xml"})
        assert time.monotonic() - start < 2

    def test_small_feed_is_passed_through_untouched(self):
        """A feed whose person fields are short is handed to feedparser byte for byte."""
        body = rss("<item><guid>g</guid><title>t</title><author>a@b.id (A)</author><dc:creator>B</dc:creator></item>")
        assert defuse(body, {"content-type": "application/xml"})[0] is body

    @pytest.mark.parametrize("text", ["a" + "é" * 2_000, "&amp;" * 1_000, "&#233;" * 1_000])
    def test_cut_never_splits_a_character_or_an_entity(self, text):
        """The cut ends on a whole UTF-8 character and a whole reference, so the feed stays well-formed."""
        body = rss(f"<item><guid>g</guid><title>t</title><author>{text}</author></item>")
        capped, headers = defuse(body, {"content-type": "application/xml"})
        capped.decode("utf-8")
        assert not feedparser.parse(capped, response_headers=headers).bozo


class TestManyAttributes:
    """feedparser's SAX attribute lookup is linear per attribute: a tag's attributes are capped first."""

    @pytest.mark.parametrize("loose", [False, True])
    def test_tag_with_25000_attributes_parses_quickly(self, loose):
        """A 200 KB start tag of attributes (about 10 s before the cap) parses within a hang guard, strict or lenient, and the stories read right."""
        attributes = " ".join(f'a{i}="b"' for i in range(25_000))
        body = rss(f'<item><guid>g1</guid><title>Satu</title><enclosure url="https://x.example/1.jpg" '
                   f'type="image/jpeg" {attributes}/></item><item><guid>g2</guid><title>Dua</title></item>'
                   + ("&" if loose else ""))
        start = time.monotonic()
        items = parse_feed(body, url=FEED_URL)
        assert time.monotonic() - start < 2
        assert [i.title for i in items] == ["Satu", "Dua"] and items[0].image_url == "https://x.example/1.jpg"

    def test_namespace_declarations_survive_the_cap(self):
        """The cut keeps every xmlns declaration, even one written after the extra attributes."""
        attributes = " ".join(f'a{i}="b"' for i in range(MAX_ATTRIBUTES + 50))
        body = (f'<rss version="2.0" {attributes} xmlns:dc="http://purl.org/dc/elements/1.1/"><channel><title>T</title>'
                "<item><guid>g</guid><title>t</title><dc:subject>Olahraga</dc:subject></item></channel></rss>").encode()
        capped, _ = defuse(body, {"content-type": "application/xml"})
        assert capped.count(b'="b"') == MAX_ATTRIBUTES - 1  # version="2.0" is one of those kept
        assert parse_feed(body, url=FEED_URL)[0].categories == ("Olahraga",)

    def test_tags_within_the_cap_are_untouched(self):
        """Ordinary tags, and values full of "=" (query strings), are left byte for byte."""
        query = "&amp;".join(f"k{i}=v" for i in range(200))
        body = rss(f'<item><guid>g</guid><title>t</title><enclosure url="https://x.example/a?{query}" type="image/jpeg" '
                   + " ".join(f'a{i}="b"' for i in range(MAX_ATTRIBUTES - 2)) + "/></item>")
        assert defuse(body, {"content-type": "application/xml"})[0] is body


class TestImpossibleCharacters:
    @pytest.mark.parametrize("ref", ["&#xD800;", "&#xdfff;", "&#55296;", "&#0;", "&#x110000;", "&#99999999999;"])
    def test_reference_to_impossible_code_point(self, ref):
        """A character reference to a surrogate, NUL or beyond U+10FFFF costs one character, not the whole feed."""
        body = ('<rss version="2.0"><channel><title>t</title><item><guid>g1</guid><title>a %s b</title></item>'
                "<item><guid>g2</guid><title>&#233;</title></item></channel></rss>") % ref
        first, second = parse_feed(body.encode(), url=FEED_URL)
        assert first.title == "a \ufffd b" and second.title == "é"


    def test_lone_surrogates_in_json_feed(self, repo):
        """Lone surrogates that JSON allows are replaced, so the items can be stored as UTF-8."""
        body = (b'{"version": "https://jsonfeed.org/version/1.1", "title": "t", "items": [{"id": "a\\ud800",'
                b' "url": "https://x.id/\\ud800", "title": "x\\udfff", "tags": ["\\ud800"]}]}')
        items = parse_feed(body, url=FEED_URL)
        stored = repo.store_poll("s", FEED_URL, items, ["x"], now=datetime.now(timezone.utc), skip={},
                                 etag=None, last_modified=None, next_poll_at=None)
        assert stored.new_items == 1


class TestFetchThenParse:
    def test_fetched_gzip_feed_parses(self, feed_server):
        """A gzip-served Antara feed goes through fetch and parse_feed with the response headers."""
        feed_server.add_gzip("/rss/terkini.xml", (FIXTURES / "antara_terkini.xml").read_bytes())
        limits = FetchLimits(total_timeout=2)
        with make_client(limits) as client:
            result = fetch(client, feed_server.url("/rss/terkini.xml"), limits)
        items = parse_feed(result.body, url=result.url, headers=result.headers)
        assert len(items) == 2
        assert items[1].image_url == feed_server.url("/cache/800x533/2020/03/15/timnas.jpg")
