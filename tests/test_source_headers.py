"""A source's own `user_agent` and `headers`: for sites that refuse default clients, sent with
every request made for that source (listing, pages, story pages), validated at load, and a
Cookie or Authorization value never reaches the log."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from bridge.config import parse_config
from bridge.errors import ConfigError
from bridge.pipeline import poll
from bridge.service import close
from tests.helpers import antara_feed, antara_item, runtime
from tests.sites import KemenporaSite

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0"


def raw_for(url: str, x_base: str, **source) -> dict:
    return {"bridge": {"database": "sqlite:///bridge.db", "dry_run": True, "first_run": "all"},
            "sources": [{"name": "picky", "url": url, "targets": ["x"], **source}],
            "targets": {"x": {"kind": "x", "api_base": x_base}}}


def refuse_default_clients(server, path: str, body: str, content_type: str = "application/rss+xml") -> None:
    """A site that answers 403 to anything but a browser-like User-Agent with the session cookie."""
    def handler(request, reply):
        ok = request.headers.get("user-agent") == BROWSER and "sesi=abc123secret" in request.headers.get("cookie", "")
        data = body.encode() if ok else b"Forbidden"
        reply.start(200 if ok else 403, {"Content-Type": content_type if ok else "text/plain",
                                         "Content-Length": str(len(data))})
        reply.write(data)

    server.handle(path, handler)


def test_a_site_refusing_the_default_client_is_read_with_the_sources_headers(feed_server, x_api, tmp_path, clock):
    """Without its headers the source fails with 403; with user_agent and a Cookie it is read, and the
    cookie's value is redacted from every log line."""
    refuse_default_clients(feed_server, "/rss.xml", antara_feed([antara_item(1), antara_item(2)]))
    plain = runtime(raw_for(feed_server.url("/rss.xml"), x_api.base_url), tmp_path / "a", clock)
    try:
        assert poll(plain, plain.config.sources[0]).status == "error"
    finally:
        close(plain)
    from bridge import logs

    raw = raw_for(feed_server.url("/rss.xml"), x_api.base_url, user_agent=BROWSER,
                  headers={"Cookie": "sesi=abc123secret", "Referer": "https://www.antaranews.com/"})
    rt = runtime(raw, tmp_path / "b", clock)
    logs.set_secrets(rt.config.secrets())
    try:
        with capture_logs(processors=[logs._redact_event]) as lines:
            outcome = poll(rt, rt.config.sources[0])
        assert outcome.status == "ok" and outcome.items_new == 2
        request = feed_server.requests_to("/rss.xml")[-1]
        assert request.headers["referer"] == "https://www.antaranews.com/"
        assert "abc123secret" in rt.config.secrets()
        assert "abc123secret" not in repr(lines)
        assert logs.redact("cookie was sesi=abc123secret") != "cookie was sesi=abc123secret"
    finally:
        logs.set_secrets([])
        close(rt)


def test_story_pages_and_next_pages_get_the_headers_too(feed_server, x_api, tmp_path, clock):
    """An html source's listing, its next page and each new story's page are all asked for with them."""
    site = KemenporaSite(feed_server)
    raw = raw_for(site.listing_url, x_api.base_url, kind="html", preset="kemenpora", max_pages=2,
                  user_agent=BROWSER, headers={"X-Requested-By": "bridge-kemenpora"})
    raw["bridge"]["page_delay"] = "0s"  # the pacer's spacing is tested elsewhere, with an injected sleeper
    rt = runtime(raw, tmp_path, clock)
    try:
        poll(rt, rt.config.sources[0])
        asked = [r for r in feed_server.request_log]
        assert asked and all(r.headers.get("user-agent") == BROWSER for r in asked)
        assert all(r.headers.get("x-requested-by") == "bridge-kemenpora" for r in asked)
        assert any(r.path.startswith("/detail/") for r in asked) and any(r.path == "/berita/2" for r in asked)
    finally:
        close(rt)


@pytest.mark.parametrize("source, expected", [
    ({"headers": {"If-None-Match": "x"}}, "headers.If-None-Match: the bridge sets If-None-Match itself"),
    ({"headers": {"Accept-Encoding": "br"}}, "the bridge sets Accept-Encoding itself"),
    ({"headers": {"User-Agent": "x"}}, 'write it as user_agent = "..."'),
    ({"headers": {"Bad Name": "x"}}, "is not a header name"),
    ({"headers": {"X-A": "one\ntwo"}}, "must be a string of one line"),
    ({"headers": {"X-A": 5}}, "must be a string of one line"),
    ({"headers": "Referer: x"}, "must be a table like headers ="),
    ({"user_agent": "Mozilla\r\nX-Evil: 1"}, "user_agent: must be one line"),
])
def test_bad_headers_are_named_with_the_fix(source, expected):
    with pytest.raises(ConfigError) as raised:
        parse_config(raw_for("https://a.id/rss", "https://api.x.com", **source), environ={})
    assert expected in str(raised.value)


def test_the_validators_stay_the_bridges(feed_server, x_api, tmp_path, clock):
    """The source's headers never replace the conditional GET: a second poll is a 304."""
    feed_server.add("/rss.xml", antara_feed([antara_item(1)]), etag='"v1"')
    rt = runtime(raw_for(feed_server.url("/rss.xml"), x_api.base_url, user_agent=BROWSER), tmp_path, clock)
    try:
        poll(rt, rt.config.sources[0])
        clock.advance(minutes=10)
        assert poll(rt, rt.config.sources[0], force=True).status == "not_modified"
        assert feed_server.requests_to("/rss.xml")[-1].headers["if-none-match"] == '"v1"'
    finally:
        close(rt)
