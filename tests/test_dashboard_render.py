"""The PR office's page in pieces: each network's live-post URL, Indonesian and English dates and
money, escaping of what feeds and networks hand us, the chart, and the language setting."""

from __future__ import annotations

from datetime import date, datetime, timezone
from types import SimpleNamespace

import pytest

from bridge.config import parse_config
from bridge.dashboard import render
from bridge.dashboard.chart import svg_chart
from bridge.dashboard.strings import TEXT, Words
from bridge.errors import ConfigError
from bridge.publish import post_url
from tests.test_dashboard import Page


def target(kind: str, api_base: str = "", **options):
    return SimpleNamespace(kind=kind, api_base=api_base, options=options)


class TestPostUrls:
    def test_x(self):
        """X: https://x.com/i/web/status/{id}, whatever api_base says."""
        assert post_url(target("x", "http://127.0.0.1:1"), "1445880548472328192") == \
            "https://x.com/i/web/status/1445880548472328192"

    def test_telegram_public_private_and_none(self):
        """Telegram: t.me/{channel}/{id} for @channel, t.me/c/{id}/{msg} for -100{id}, none for a user."""
        assert post_url(target("telegram", chat_id="@kemenpora"), "101") == "https://t.me/kemenpora/101"
        assert post_url(target("telegram", chat_id="-1001234567890"), "7") == "https://t.me/c/1234567890/7"
        assert post_url(target("telegram", chat_id="12345"), "7") is None

    def test_mastodon(self):
        """Mastodon: the instance's /web/statuses/{id}."""
        assert post_url(target("mastodon", "https://mastodon.social/"), "1134") == \
            "https://mastodon.social/web/statuses/1134"

    def test_bluesky(self):
        """Bluesky: bsky.app/profile/{handle}/post/{rkey} from the at:// URI; not a URI: no link."""
        uri = "at://did:plc:abc/app.bsky.feed.post/3lfake0000000"
        assert post_url(target("bluesky", handle="kemenpora.bsky.social"), uri) == \
            "https://bsky.app/profile/kemenpora.bsky.social/post/3lfake0000000"
        assert post_url(target("bluesky", handle="h"), "3lfake") is None

    def test_facebook(self):
        """Facebook: /{page}/posts/{post} for a Page post id, /{id} otherwise."""
        assert post_url(target("facebook"), "123456789_987654321000") == \
            "https://www.facebook.com/123456789/posts/987654321000"
        assert post_url(target("facebook"), "555") == "https://www.facebook.com/555"

    def test_whatsapp_has_none(self):
        """WhatsApp: a message has no public address."""
        assert post_url(target("whatsapp"), "wamid.HBgN") is None

    def test_a_hostile_id_stays_in_its_path_segment(self):
        """A remote id with slashes, quotes or '?' is percent-encoded, never a new path or query."""
        assert post_url(target("x"), '1/../"?a=<b>') == "https://x.com/i/web/status/1%2F..%2F%22%3Fa%3D%3Cb%3E"


class TestWords:
    def test_indonesian_date(self):
        """'Selasa, 1 Desember 2026 14.05 WIB': day and month names, a dot in the time, the zone named."""
        words = Words("id", "Asia/Jakarta")
        assert words.when(datetime(2026, 12, 1, 7, 5, tzinfo=timezone.utc)) == "Selasa, 1 Desember 2026 14.05 WIB"
        assert words.when(datetime(2026, 11, 30, 7, 5, tzinfo=timezone.utc)) == "Senin, 30 November 2026 14.05 WIB"
        assert Words("id", "Asia/Jayapura").when(datetime(2026, 8, 16, 15, 0, tzinfo=timezone.utc)) == \
            "Senin, 17 Agustus 2026 00.00 WIT"
        assert words.short_day(date(2026, 12, 1)) == "1 Des"

    def test_english_date_and_an_unnamed_zone(self):
        """English names and a colon; a zone without an abbreviation shows its offset."""
        words = Words("en", "Asia/Makassar")
        assert words.when(datetime(2026, 12, 1, 7, 5, tzinfo=timezone.utc)) == "Tuesday, 1 December 2026 15:05 WITA"
        assert Words("en", "Asia/Kolkata").when(datetime(2026, 12, 1, 7, 5, tzinfo=timezone.utc)).endswith("12:35 IST")
        assert Words("en", "America/Sao_Paulo").when(datetime(2026, 12, 1, 7, 5, tzinfo=timezone.utc)).endswith(" -03:00")

    def test_money(self):
        """US$ with a decimal comma in Indonesian, a point in English."""
        assert Words("id", "UTC").money(1234.5) == "US$1.234,50"
        assert Words("en", "UTC").money(1234.5) == "US$1,234.50"

    def test_both_languages_have_every_word(self):
        """One table: every key in both languages, so no page shows a missing word."""
        assert set(TEXT["id"]) == set(TEXT["en"])


class TestEscaping:
    def test_a_javascript_link_from_a_feed_is_not_a_link(self):
        """A story whose link is javascript: shows the words, never a link to it."""
        words = Words("id", "UTC")
        story = {"title": '"><script>x</script>', "source": "s<1>", "link": "javascript:alert(1)",
                 "first_seen_at": datetime(2026, 12, 1, tzinfo=timezone.utc), "deliveries": []}
        page = Page(render.story_html(story, words))
        assert not page.all("script") and page.one("h1")["text"] == '"><script>x</script>'
        assert [a["attrs"]["href"] for a in page.all("a")] == ["/"]

    def test_chart_escapes_names_and_scales(self):
        """Network names are escaped in the SVG; the top of the axis is the peak, rounded up to even."""
        days = [date(2026, 12, n) for n in range(1, 15)]
        svg = svg_chart(days, {'x<"y>': [0] * 13 + [5]}, lambda d: f"{d.day}", "label & co")
        page = Page(svg)
        assert page.one("g")["attrs"]["data-network"] == 'x<"y>'
        assert [t["text"] for t in page.all("text")][:3] == ["0", "3", "6"]
        assert "label &amp; co" in svg


class TestLanguageSetting:
    RAW = {"sources": [{"name": "a", "url": "http://127.0.0.1/a.xml", "targets": ["x"]}],
           "targets": {"x": {"kind": "x"}}}

    def test_default_and_english(self):
        """Indonesian unless [bridge] language = "en"."""
        assert parse_config({"bridge": {"dry_run": True}, **self.RAW}, environ={}).bridge.language == "id"
        config = parse_config({"bridge": {"dry_run": True, "language": "en"}, **self.RAW}, environ={})
        assert config.bridge.language == "en"

    def test_another_language_is_refused(self):
        """language = "fr" is a config error naming the choices."""
        with pytest.raises(ConfigError) as error:
            parse_config({"bridge": {"dry_run": True, "language": "fr"}, **self.RAW}, environ={})
        assert "bridge.language: 'fr' is not one of 'id', 'en'" in str(error.value)
