"""bridge.urls: one identity per story URL."""

from __future__ import annotations

import pytest

from bridge.urls import identity_key, identity_url, shareable_url


class TestIdentityUrl:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("HTTPS://WWW.Antaranews.COM/berita/1", "antaranews.com/berita/1"),
            ("http://example.com:80/a", "example.com/a"),
            ("https://example.com:443/a", "example.com/a"),
            ("https://example.com:8443/a", "example.com:8443/a"),
            ("http://example.com:443/a", "example.com:443/a"),
        ],
    )
    def test_drops_scheme_and_www_lowercases_host_and_drops_default_ports(self, raw, expected):
        """Scheme and a leading "www." are dropped, the host lower-cased, and a port that is the scheme's default too."""
        assert identity_url(raw) == expected

    def test_keeps_path_case(self):
        """The path is case-sensitive on most servers, so its case is kept."""
        assert identity_url("https://Example.com/Berita/ABC") == "example.com/Berita/ABC"

    def test_one_spelling_of_escapes(self):
        """Escapes are compared as RFC 3986 does: hex case, escaped unreserved characters and raw
        non-ASCII characters do not make another address; an escaped reserved character does."""
        same = [("https://x.id/a%2fb", "https://x.id/a%2Fb"), ("https://x.id/%7Euser", "https://x.id/~user"),
                ("https://x.id/berita/%c3%bc", "https://x.id/berita/ü"), ("https://x.id/s?q=%e4%bd%a0", "https://x.id/s?q=你"),
                ("https://x.id/a#%7e", "https://x.id/a#~")]
        for one, other in same:
            assert identity_url(one) == identity_url(other), (one, other)
        assert identity_url("https://x.id/a%2Fb") != identity_url("https://x.id/a/b")
        assert identity_url("https://x.id/s?q=a%26b") != identity_url("https://x.id/s?q=a&b")
        assert identity_url("https://x.id/a%zz%2") == "x.id/a%zz%2"  # not escapes: kept as written

    def test_keeps_fragment(self):
        """Single-page feeds list stories that differ only by fragment, so it is part of the identity."""
        assert identity_url("https://example.com/a#2") == "example.com/a#2"
        assert identity_url("https://example.com/a#2") != identity_url("https://example.com/a#3")
        assert identity_url("https://example.com/a/?p=1&utm_source=x#Top") == "example.com/a?p=1#Top"
        assert identity_url("https://example.com/a#") == "example.com/a"

    @pytest.mark.parametrize(
        "raw",
        [
            "https://example.com/a?utm_source=rss&utm_medium=feed&utm_campaign=x",
            "https://example.com/a?UTM_Source=rss",
            "https://example.com/a?fbclid=IwAR0abc",
            "https://example.com/a?gclid=xyz",
            "https://example.com/a?FBCLID=IwAR0abc&Utm_Term=t",
            "https://example.com/a?utm_content",
            "https://example.com/a?utm%5Fsource=x",
        ],
    )
    def test_drops_tracking_parameters(self, raw):
        """utm_* (any case), fbclid and gclid are removed, and an emptied query leaves no "?"."""
        assert identity_url(raw) == "example.com/a"

    def test_keeps_other_parameters_in_order(self):
        """Parameters that are not tracking stay, in their original order."""
        raw = "https://example.com/read.php?z=1&utm_source=x&a=2&fbclid=f&m=3"
        assert identity_url(raw) == "example.com/read.php?z=1&a=2&m=3"

    def test_keeps_parameter_spelling(self):
        """Kept parameters are not re-encoded: %20, "+" and bare names stay as written."""
        raw = "https://example.com/s?q=a%20b&r=c+d&flag&e="
        assert identity_url(raw) == "example.com/s?q=a%20b&r=c+d&flag&e="

    def test_drops_empty_query_pieces(self):
        """Stray "&" and a lone "?" add nothing and are removed."""
        assert identity_url("https://example.com/a?&x=1&&") == "example.com/a?x=1"
        assert identity_url("https://example.com/a?") == "example.com/a"

    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("https://example.com/a/", "example.com/a"),
            ("https://example.com/a//", "example.com/a"),
            ("https://example.com/", "example.com"),
            ("https://example.com", "example.com"),
            ("https://example.com/?p=1", "example.com?p=1"),
        ],
    )
    def test_trailing_slash_and_root_are_consistent(self, raw, expected):
        """A trailing slash is dropped, so "/a/" equals "/a" and the root is always bare."""
        assert identity_url(raw) == expected

    def test_same_story_different_spellings_match(self):
        """Different spellings of one article normalise to the same string."""
        spellings = [
            "https://www.antaranews.com/berita/1358622/x",
            "HTTPS://www.antaranews.com:443/berita/1358622/x/",
            "http://antaranews.com/berita/1358622/x?utm_source=twitter",
            "  https://WWW.antaranews.com/berita/1358622/x?fbclid=abc  ",
        ]
        assert len({identity_url(s) for s in spellings}) == 1

    @pytest.mark.parametrize(
        "raw",
        ["", "   ", "ftp://example.com/a", "javascript:alert(1)", "mailto:a@example.com", "example.com/a",
         "//example.com/a", "/relative/path", "http://", "http://:80/", "https://example.com:99999/",
         "https://example.com:abc/", "data:text/html,hi", "http://[::1/"],
    )
    def test_rejects_empty_and_non_http(self, raw):
        """Empty, relative, non-http(s) and malformed inputs give None."""
        assert identity_url(raw) is None

    def test_rejects_non_string(self):
        """A non-string (None from a missing field) gives None instead of raising."""
        assert identity_url(None) is None  # type: ignore[arg-type]

    def test_ipv6_host_keeps_brackets(self):
        """An IPv6 literal host keeps its brackets and non-default port."""
        assert identity_url("http://[::1]:8080/feed/") == "[::1]:8080/feed"
        assert identity_url("http://[2001:DB8::1]:80/") == "[2001:db8::1]"

    def test_keeps_userinfo(self):
        """Credentials in the URL are part of the address and are kept."""
        assert identity_url("https://user:pw@Example.com/a") == "user:pw@example.com/a"

    def test_is_idempotent(self):
        """A key made from an identity is that identity: keying twice changes nothing."""
        once = identity_url("HTTP://Example.com:80/a/b/?x=1&utm_source=y#f")
        assert once == "example.com/a/b?x=1#f"
        assert identity_key(once) == once


class TestIdentityKey:
    def test_scheme_and_www_moves_keep_the_key(self):
        """http://www.site/a and https://site/a/ are one story's guid before and after a move."""
        assert identity_key("http://www.site.example/a") == identity_key("https://site.example/a/") == "site.example/a"

    @pytest.mark.parametrize("guid", ["12345", "tag:antaranews.com,2026:1", "urn:uuid:1b2c", "site.example/a",
                                      "ftp://site.example/a", "kemenpora:detail:42"])
    def test_non_url_guid_stays_verbatim(self, guid):
        """A guid that is not an http(s) URL is kept exactly as the feed wrote it."""
        assert identity_key(guid) == guid

    def test_surrounding_whitespace_is_not_part_of_a_key(self):
        """Whitespace around a guid is dropped, as feeds pad CDATA guids."""
        assert identity_key("  12345\n") == "12345"


class TestShareableUrl:
    @pytest.mark.parametrize(
        ("published", "shared"),
        [
            ("https://www.antaranews.com/berita/1/a?utm_source=antaranews&utm_medium=rss", "https://www.antaranews.com/berita/1/a"),
            ("https://news.detik.com/berita/d-1/x#utm_anchor", "https://news.detik.com/berita/d-1/x"),
            ("https://setkab.go.id/Presiden-Terima/?p=1&fbclid=abc", "https://setkab.go.id/Presiden-Terima/?p=1"),
            ("https://Example.com/Path/", "https://Example.com/Path/"),
        ],
    )
    def test_tracking_and_fragment_removed_rest_kept(self, published, shared):
        """Posts drop click-tracking parameters and the fragment but keep the site's own spelling."""
        assert shareable_url(published) == shared
