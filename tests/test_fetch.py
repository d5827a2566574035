"""bridge.sources.fetch against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import gzip
import socket
import time
import zlib
from email.utils import formatdate

import httpx
import pytest

from bridge import __version__
from bridge.errors import FetchError
from bridge.sources.fetch import FetchLimits, FetchResult, HTTPStatusError, fetch, make_client
from tests.fakes.feed_server import FeedServer, RecordedRequest, Reply

RSS = '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title></channel></rss>'
LIMITS = FetchLimits(connect_timeout=10, total_timeout=10, max_body_bytes=1024 * 1024, max_redirects=5)
"""For fetches that should succeed: room enough for a machine under load (CI beside other jobs)."""
FAST = FetchLimits(connect_timeout=0.5, total_timeout=0.5, max_body_bytes=1024 * 1024, max_redirects=5)
"""For the deadline tests: a 0.5 s total they must end at."""


@pytest.fixture
def client():
    with make_client(LIMITS) as c:
        yield c


def _timed_fetch(client, url, limits=FAST, **kwargs):
    start = time.monotonic()
    try:
        return fetch(client, url, limits, **kwargs), time.monotonic() - start
    except FetchError as exc:
        return exc, time.monotonic() - start


class TestMakeClient:
    def test_client_names_itself_with_our_version(self, feed_server):
        """fetch() through the shared client names itself with our version (FetchLimits' default)."""
        limits = FetchLimits()
        assert limits.user_agent == f"bridge/{__version__} (+https://github.com/kemenpora/bridge)"
        feed_server.add("/rss", RSS)
        with make_client(limits) as c:
            fetch(c, feed_server.url("/rss"), limits)
        assert feed_server.request_log[-1].headers["user-agent"] == limits.user_agent

    def test_default_limits(self):
        """Defaults follow Miniflux: 10 s connect, 20 s in all, 10 MiB decoded, 5 redirects."""
        limits = FetchLimits()
        assert (limits.connect_timeout, limits.total_timeout) == (10.0, 20.0)
        assert (limits.max_body_bytes, limits.max_redirects) == (10 * 1024 * 1024, 5)


class TestFetchOk:
    def test_returns_body_status_and_lowercase_headers(self, feed_server, client):
        """A 200 gives the body, the status, the final URL and headers keyed in lower case."""
        feed_server.add("/rss", RSS, headers={"X-Custom-Thing": "yes"})
        result = fetch(client, feed_server.url("/rss"), LIMITS)
        assert isinstance(result, FetchResult)
        assert (result.status, result.not_modified, result.body) == (200, False, RSS.encode())
        assert result.url == feed_server.url("/rss")
        assert result.headers["content-type"] == "application/rss+xml; charset=utf-8"
        assert result.headers["x-custom-thing"] == "yes"
        assert all(k == k.lower() for k in result.headers)

    def test_sends_user_agent(self, feed_server, client):
        """Every request names the bridge and its version."""
        feed_server.add("/rss", RSS)
        fetch(client, feed_server.url("/rss"), LIMITS)
        assert feed_server.request_log[-1].headers["user-agent"].startswith(f"bridge/{__version__} ")

    def test_unconditional_by_default(self, feed_server, client):
        """Without validators the request carries no conditional headers."""
        feed_server.add("/rss", RSS, etag='"v1"')
        fetch(client, feed_server.url("/rss"), LIMITS)
        sent = feed_server.request_log[-1].headers
        assert "if-none-match" not in sent and "if-modified-since" not in sent

    def test_empty_204_body(self, feed_server, client):
        """A 2xx other than 200 is still a success, with whatever body it had."""
        feed_server.add("/empty", b"", status=204)
        assert fetch(client, feed_server.url("/empty"), LIMITS).body == b""


class TestConditionalGet:
    LM = "Sun, 15 Mar 2020 08:51:04 GMT"

    def test_records_validators_from_200(self, feed_server, client):
        """ETag and Last-Modified of a 200 are returned for the next poll."""
        feed_server.add("/rss", RSS, etag='"abc"', last_modified=self.LM)
        result = fetch(client, feed_server.url("/rss"), LIMITS)
        assert (result.etag, result.last_modified) == ('"abc"', self.LM)

    def test_sends_validators_and_gets_304(self, feed_server, client):
        """Given validators, the request carries If-None-Match/If-Modified-Since and a 304 means not modified."""
        feed_server.add("/rss", RSS, etag='"abc"', last_modified=self.LM)
        result = fetch(client, feed_server.url("/rss"), LIMITS, etag='"abc"', last_modified=self.LM)
        sent = feed_server.request_log[-1].headers
        assert sent["if-none-match"] == '"abc"'
        assert sent["if-modified-since"] == self.LM
        assert (result.status, result.not_modified, result.body) == (304, True, b"")

    def test_if_modified_since_alone(self, feed_server, client):
        """Last-Modified alone is enough for a conditional GET."""
        feed_server.add("/rss", RSS, last_modified=self.LM)
        result = fetch(client, feed_server.url("/rss"), LIMITS, last_modified=self.LM)
        assert result.not_modified
        assert "if-none-match" not in feed_server.request_log[-1].headers

    def test_304_without_validators_keeps_callers(self, feed_server, client):
        """A 304 that omits ETag/Last-Modified keeps the caller's, so the next poll stays conditional."""

        def bare_304(request: RecordedRequest, reply: Reply) -> None:
            reply.start(304, {})

        feed_server.handle("/bare", bare_304)
        result = fetch(client, feed_server.url("/bare"), LIMITS, etag='"old"', last_modified=self.LM)
        assert result.not_modified
        assert (result.etag, result.last_modified) == ('"old"', self.LM)

    def test_edited_feed_returns_new_body_and_validators(self, feed_server, client):
        """After the feed is edited the old ETag no longer matches: 200 with the new body and ETag."""
        feed_server.add("/rss", RSS, etag='"v1"')
        first = fetch(client, feed_server.url("/rss"), LIMITS)
        feed_server.edit("/rss", body=RSS.replace(">t<", ">t2<"), etag='"v2"')
        second = fetch(client, feed_server.url("/rss"), LIMITS, etag=first.etag)
        assert not second.not_modified
        assert b">t2<" in second.body
        assert second.etag == '"v2"'


class TestContentEncoding:
    def test_gzip_body_is_decoded(self, feed_server, client):
        """A gzip-encoded body comes back decoded and we ask only for encodings we can bound."""
        feed_server.add_gzip("/rss.gz", RSS)
        result = fetch(client, feed_server.url("/rss.gz"), LIMITS)
        assert result.body == RSS.encode()
        assert feed_server.request_log[-1].headers["accept-encoding"] == "gzip, deflate"

    def test_concatenated_gzip_members(self, feed_server, client):
        """A gzip stream of several members decodes to all of them joined."""
        body = gzip.compress(b"<rss>") + gzip.compress(b"</rss>")
        feed_server.add("/multi", body, headers={"Content-Encoding": "gzip"})
        assert fetch(client, feed_server.url("/multi"), LIMITS).body == b"<rss></rss>"

    @pytest.mark.parametrize("wbits", [zlib.MAX_WBITS, -zlib.MAX_WBITS], ids=["zlib", "raw"])
    def test_deflate_zlib_and_raw(self, feed_server, client, wbits):
        """"deflate" is decoded whether the server wraps it in zlib (correct) or sends it raw (common)."""
        compressor = zlib.compressobj(6, zlib.DEFLATED, wbits)
        feed_server.add("/d", compressor.compress(RSS.encode()) + compressor.flush(), headers={"Content-Encoding": "deflate"})
        assert fetch(client, feed_server.url("/d"), LIMITS).body == RSS.encode()

    def test_gzip_bomb_stopped_early(self, feed_server, client):
        """A 64 MB gzip bomb is cut off once 1 MiB is decoded, quickly and with a clear reason."""
        feed_server.add_gzip_bomb("/bomb", 64 * 1024 * 1024)
        error, elapsed = _timed_fetch(client, feed_server.url("/bomb"))
        assert isinstance(error, FetchError)
        assert error.reason == f"body larger than {LIMITS.max_body_bytes} bytes"
        assert elapsed < 0.4

    def test_corrupt_gzip(self, feed_server, client):
        """A body that claims gzip but is not gives a FetchError, not a zlib exception."""
        feed_server.add("/bad.gz", b"this is not gzip at all", headers={"Content-Encoding": "gzip"})
        with pytest.raises(FetchError, match="could not decode gzip body"):
            fetch(client, feed_server.url("/bad.gz"), LIMITS)

    def test_trailing_junk_after_gzip_is_ignored(self, feed_server, client):
        """Bytes after the end of a gzip stream are ignored, as browsers do."""
        feed_server.add("/junk.gz", gzip.compress(RSS.encode()) + b"\r\n", headers={"Content-Encoding": "gzip"})
        assert fetch(client, feed_server.url("/junk.gz"), LIMITS).body == RSS.encode()

    def test_unsupported_encoding(self, feed_server, client):
        """An encoding we did not ask for and cannot bound (br) is refused with its name."""
        feed_server.add("/br", b"\x0b\x02\x80", headers={"Content-Encoding": "br"})
        with pytest.raises(FetchError, match="unsupported Content-Encoding 'br'"):
            fetch(client, feed_server.url("/br"), LIMITS)


class TestBodyCap:
    def test_declared_length_over_cap_fails_before_reading(self, feed_server, client):
        """A Content-Length above the cap fails at once, without downloading the body."""
        feed_server.add_huge("/huge", 50 * 1024 * 1024, declare_length=True)
        error, elapsed = _timed_fetch(client, feed_server.url("/huge"))
        assert isinstance(error, FetchError)
        assert error.reason == "body larger than 1048576 bytes"
        assert elapsed < 0.4

    def test_undeclared_length_over_cap_fails_while_streaming(self, feed_server, client):
        """A body without Content-Length is cut off once it passes the cap."""
        feed_server.add_huge("/huge", 50 * 1024 * 1024, declare_length=False)
        error, _ = _timed_fetch(client, feed_server.url("/huge"))
        assert isinstance(error, FetchError)
        assert error.reason == "body larger than 1048576 bytes"

    def test_body_exactly_at_cap_is_accepted(self, feed_server, client):
        """The cap is inclusive: a body of exactly max_body_bytes is fine."""
        feed_server.add_huge("/exact", LIMITS.max_body_bytes, declare_length=False)
        assert len(fetch(client, feed_server.url("/exact"), LIMITS).body) == LIMITS.max_body_bytes


class TestTimeouts:
    def test_trickling_server_is_cut_off_at_total_timeout(self, feed_server, client):
        """A server sending a byte every 50 ms is cut off at the 0.5 s total deadline."""
        feed_server.add_slow("/slow", chunk=b"<", interval=0.05)
        error, elapsed = _timed_fetch(client, feed_server.url("/slow"))
        assert isinstance(error, FetchError)
        assert error.reason == "timed out after 0.5s reading the response body"
        assert 0.45 <= elapsed < 1.5

    def test_silent_server_times_out(self, feed_server, client):
        """A server that accepts and never answers times out at the deadline."""

        def silent(request: RecordedRequest, reply: Reply) -> None:
            reply.stop.wait(10)  # released when the fixture shuts the server down

        feed_server.handle("/silent", silent)
        error, elapsed = _timed_fetch(client, feed_server.url("/silent"))
        assert isinstance(error, FetchError)
        assert error.reason == "timed out after 0.5s waiting for the response headers"
        assert elapsed < 1.5

    def test_deadline_spans_redirects(self, feed_server, client):
        """The deadline covers every hop: a redirect to a trickling server still ends at 0.5 s."""
        feed_server.add_slow("/slow", interval=0.05)
        feed_server.add_redirect("/moved", "/slow")
        error, elapsed = _timed_fetch(client, feed_server.url("/moved"))
        assert isinstance(error, FetchError) and "timed out" in error.reason
        assert elapsed < 1.5

    @pytest.mark.parametrize(("trickle", "phase"), [("headers", "waiting for the response headers"),
                                                    ("body", "reading the response body")])
    def test_trickled_headers_or_body_are_cut_at_a_1s_total_deadline(self, feed_server, trickle, phase):
        """A server trickling its headers (or its body) one byte every 0.2 s is cut at the 1 s total
        deadline, though every single read succeeds well within the per-read timeout."""
        if trickle == "headers":
            feed_server.add_trickling_headers("/slow", interval=0.2)
        else:
            feed_server.add_slow("/slow", chunk=b"<", interval=0.2, chunks=25)
        limits = FetchLimits(connect_timeout=1, total_timeout=1)
        with make_client(limits) as client:
            error, elapsed = _timed_fetch(client, feed_server.url("/slow"), limits)
        assert isinstance(error, FetchError) and error.reason == f"timed out after 1s {phase}"
        assert elapsed < 1.5

    def test_human_reason_with_default_limits(self):
        """The reason reads like "timed out after 20s reading the response body" for the default limit."""
        from bridge.sources.fetch import _remaining

        with pytest.raises(FetchError, match=r"timed out after 20s reading the response body$"):
            _remaining(time.monotonic() - 1, "http://127.0.0.1/x", FetchLimits())


class TestConnectErrors:
    def test_connection_refused(self, client):
        """A closed port gives "could not connect: ..."."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        # The socket is closed: nothing listens on that port now.
        with pytest.raises(FetchError, match="could not connect: ") as info:
            fetch(client, f"http://127.0.0.1:{port}/rss", LIMITS)
        assert not isinstance(info.value, HTTPStatusError)

    def test_unsupported_scheme(self, client):
        """A non-http URL is refused without any I/O."""
        with pytest.raises(FetchError, match="unsupported URL"):
            fetch(client, "ftp://127.0.0.1/feed.xml", LIMITS)

    def test_invalid_url(self, client):
        """A malformed URL is a FetchError, not an httpx exception."""
        with pytest.raises(FetchError):
            fetch(client, "http://[::1/feed", LIMITS)

    def test_broken_http_response(self, feed_server, client):
        """A server that speaks garbage instead of HTTP gives a FetchError naming the problem."""

        def garbage(request: RecordedRequest, reply: Reply) -> None:
            reply.write(b"SPDY/9 what\r\n\r\n")

        feed_server.handle("/garbage", garbage)
        with pytest.raises(FetchError, match="RemoteProtocolError"):
            fetch(client, feed_server.url("/garbage"), LIMITS)


class TestRedirects:
    def test_follows_up_to_the_limit(self, feed_server, client):
        """Five redirects are followed and the result names the final URL."""
        feed_server.add("/final", RSS)
        first = feed_server.add_redirect_chain("/r", 5, "/final")
        result = fetch(client, feed_server.url(first), LIMITS)
        assert result.body == RSS.encode()
        assert result.url == feed_server.url("/final")

    def test_too_many_redirects(self, feed_server, client):
        """A sixth redirect is refused with "too many redirects"."""
        feed_server.add("/final", RSS)
        first = feed_server.add_redirect_chain("/r", 6, "/final")
        with pytest.raises(FetchError, match=r"too many redirects \(more than 5\)"):
            fetch(client, feed_server.url(first), LIMITS)
        assert not feed_server.requests_to("/final")

    def test_redirect_loop(self, feed_server, client):
        """A redirect loop ends at the redirect limit instead of spinning."""
        feed_server.add_redirect("/a", "/b")
        feed_server.add_redirect("/b", "/a")
        with pytest.raises(FetchError, match="too many redirects"):
            fetch(client, feed_server.url("/a"), LIMITS)
        assert len(feed_server.request_log) == LIMITS.max_redirects + 1

    def test_conditional_headers_survive_redirect(self, feed_server, client):
        """A permanent redirect keeps If-None-Match, so the new location can still answer 304."""
        feed_server.add("/new", RSS, etag='"e"')
        feed_server.add_redirect("/old", "/new", status=301)
        result = fetch(client, feed_server.url("/old"), LIMITS, etag='"e"')
        assert result.not_modified
        assert result.url == feed_server.url("/new")

    def test_redirect_without_location(self, feed_server, client):
        """A 302 without Location is an HTTP error, not a success with an empty body."""
        feed_server.add("/nowhere", b"", status=302)
        with pytest.raises(HTTPStatusError, match="HTTP 302 Found") as info:
            fetch(client, feed_server.url("/nowhere"), LIMITS)
        assert info.value.status == 302


class TestHTTPErrors:
    def test_503_with_retry_after_seconds(self, feed_server, client):
        """A 503 reads "HTTP 503 Service Unavailable" and carries Retry-After in seconds."""
        feed_server.add_status("/busy", 503, {"Retry-After": "120"})
        with pytest.raises(HTTPStatusError) as info:
            fetch(client, feed_server.url("/busy"), LIMITS)
        error = info.value
        assert isinstance(error, FetchError)
        assert error.reason == "HTTP 503 Service Unavailable"
        assert (error.status, error.retry_after_seconds) == (503, 120.0)

    def test_429_with_retry_after_date(self, feed_server, client):
        """A Retry-After given as an HTTP date is measured against the server's own Date header."""

        def limited(request: RecordedRequest, reply: Reply) -> None:
            reply.start(429, {"Retry-After": formatdate(time.time() + 60, usegmt=True), "Content-Length": "0"})

        feed_server.handle("/limited", limited)
        with pytest.raises(HTTPStatusError) as info:
            fetch(client, feed_server.url("/limited"), LIMITS)
        assert info.value.reason == "HTTP 429 Too Many Requests"
        assert 58 <= info.value.retry_after_seconds <= 62

    def test_500_without_retry_after(self, feed_server, client):
        """A 500 has no retry hint."""
        feed_server.add_status("/boom", 500)
        with pytest.raises(HTTPStatusError, match="HTTP 500 Internal Server Error") as info:
            fetch(client, feed_server.url("/boom"), LIMITS)
        assert info.value.retry_after_seconds is None

    def test_404(self, feed_server, client):
        """A missing feed is "HTTP 404 Not Found"."""
        with pytest.raises(HTTPStatusError, match="HTTP 404 Not Found"):
            fetch(client, feed_server.url("/missing"), LIMITS)

    def test_unparseable_retry_after(self, feed_server, client):
        """A Retry-After we cannot read is ignored rather than guessed."""
        feed_server.add_status("/busy", 503, {"Retry-After": "soon-ish"})
        with pytest.raises(HTTPStatusError) as info:
            fetch(client, feed_server.url("/busy"), LIMITS)
        assert info.value.retry_after_seconds is None

    @pytest.mark.parametrize("garbage", ["\u00b2", "\u00b9\u00b2\u00b3", "12.5", "-1", "0x10", "1e9"])
    def test_retry_after_garbage_is_ignored_not_raised(self, feed_server, client, garbage):
        """A Retry-After of superscript digits (str.isdigit() says yes, float() says no) or any other
        garbage is ignored: the fetch fails with its HTTP status, never with a ValueError."""
        feed_server.add_status("/busy", 503, {"Retry-After": garbage})
        with pytest.raises(HTTPStatusError) as info:
            fetch(client, feed_server.url("/busy"), LIMITS)
        assert info.value.retry_after_seconds is None

    def test_error_message_names_url_and_reason(self, feed_server, client):
        """str(error) is "<url>: <reason>", a line an operator can act on."""
        feed_server.add_status("/busy", 503)
        with pytest.raises(FetchError) as info:
            fetch(client, feed_server.url("/busy"), LIMITS)
        assert str(info.value) == f"{feed_server.url('/busy')}: HTTP 503 Service Unavailable"


class TestFakeServer:
    def test_records_requests_and_shuts_down(self):
        """The fake server logs each request and stops accepting connections when closed."""
        with FeedServer() as server:
            server.add("/x", "hi", content_type="text/plain")
            assert httpx.get(server.url("/x")).text == "hi"
            assert server.request_log[0].path == "/x"
            url = server.url("/x")
        with pytest.raises(httpx.ConnectError):
            httpx.get(url, timeout=1)
