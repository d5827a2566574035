"""The PR office's page, over real HTTP to the daemon's health server on 127.0.0.1: what went out
today with links to the live posts, the queue, the sources, spend, the chart, one story, both
languages, escaping of hostile titles, and the page's security headers."""

from __future__ import annotations

import html

import base64
import re
import urllib.error
import urllib.request
from datetime import timedelta
from html.parser import HTMLParser

import pytest

from bridge.config import parse_config
from bridge.daemon import Daemon, _deliver, _poll_source
from bridge.errors import NO_STORIES_FOUND
from bridge.model import DeliveryState
from bridge.service import build_runtime, open_repository
from tests.fakes.bluesky import HANDLE as BLUESKY_HANDLE
from tests.fakes.facebook import PAGE_ID
from tests.fakes.whatsapp import RECIPIENTS
from tests.helpers import antara_feed, antara_item
from tests.test_daemon import FakeMonotonic, free_port
from tests.test_networks import networks  # noqa: F401 (the six network fakes, as a fixture)

HOSTILE = '<script>alert("x")</script> Menpora & "atlet" \'muda\' <b>bold</b>'
HOSTILE_IN_FEED = html.escape(HOSTILE, quote=False)
"""As a feed carries it so that the story's title *is* that text: escaped (a raw <script> in a title
is markup the feed reader reduces to its text; an escaped one is text about markup, and stays)."""


class Page(HTMLParser):
    """The parts of a page the tests look at: each element with its attributes and text."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.elements: list[dict] = []
        self._open: list[dict] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        element = {"tag": tag, "attrs": dict(attrs), "text": ""}
        self.elements.append(element)
        if tag not in ("meta", "br", "circle", "rect", "line", "polyline"):
            self._open.append(element)

    def handle_endtag(self, tag):
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i]["tag"] == tag:
                del self._open[i:]
                break

    def handle_data(self, data):
        for element in self._open:
            element["text"] += data

    def all(self, tag: str, **attrs) -> list[dict]:
        return [e for e in self.elements if e["tag"] == tag
                and all(e["attrs"].get(k.rstrip("_").replace("_", "-")) == v for k, v in attrs.items())]

    def one(self, tag: str, **attrs) -> dict:
        found = self.all(tag, **attrs)
        assert len(found) == 1, (tag, attrs, found)
        return found[0]


def get(url: str, headers: dict | None = None) -> tuple[int, dict, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


class Office:
    """A daemon whose one source goes to all six networks' fakes, with its health server on."""

    def __init__(self, feeds, networks, tmp_path, clock):
        self.feeds, self.networks, self.tmp_path, self.clock = feeds, networks, tmp_path, clock
        self.daemon = None
        feeds.add("/rss.xml", antara_feed([antara_item(1, title=HOSTILE_IN_FEED), antara_item(2)]))
        feeds.add("/down.xml", "nope", status=500)

    def start(self, bridge: dict | None = None, targets: dict | None = None, sources: list | None = None,
              secrets: dict | None = None) -> str:
        tables = {name: {**n.table, **(targets or {}).get(name, {})} for name, n in self.networks.items()}
        raw = {"bridge": {"database": "sqlite:///bridge.db", "first_run": "all",
                          "health_listen": f"127.0.0.1:{free_port()}", **(bridge or {})},
               "sources": [{"name": "antara", "url": self.feeds.url("/rss.xml"), "targets": list(tables)},
                           *(sources or [])],
               "targets": tables}
        environ = {"STATE_DIRECTORY": str(self.tmp_path)}
        for network in self.networks.values():
            environ.update(network.secrets)
        config = parse_config(raw, environ={**environ, **(secrets or {})})
        self.daemon = Daemon(build_runtime(config, open_repository(config), clock=self.clock),
                             monotonic=FakeMonotonic())
        self.daemon._start_health(config)
        return f"http://{self.daemon.health.address}"

    def run(self, *sources: str) -> None:
        for source in sources or ("antara",):
            self.daemon._job(_poll_source, source)
        self.daemon._job(_deliver)

    def close(self) -> None:
        if self.daemon:
            if self.daemon.health:
                self.daemon.health.close()
            self.daemon.close()


@pytest.fixture
def office(feed_server, networks, tmp_path, clock):  # noqa: F811 (pytest's fixture by name)
    office = Office(feed_server, networks, tmp_path, clock)
    yield office
    office.close()


def live_links(page: Page, network: str) -> list[str]:
    section = page.one("section", data_network=network)
    start = page.elements.index(section)
    end = next((i for i, e in enumerate(page.elements) if i > start and e["tag"] == "section"), len(page.elements))
    return [e["attrs"]["href"] for e in page.elements[start:end]
            if e["tag"] == "a" and not e["attrs"]["href"].startswith("/story/")]


class TestOverview:
    def test_today_per_network_with_live_links(self, office):
        """Every network lists today's posts with a link to the live post in that network's form;
        WhatsApp says how many recipients each story reached."""
        base = office.start()
        office.run()
        status, headers, body = get(base + "/")
        assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
        page = Page(body)
        assert re.fullmatch(r"https://x\.com/i/web/status/\d+", live_links(page, "x")[0])
        assert re.fullmatch(r"https://t\.me/kemenpora/\d+", live_links(page, "telegram")[0])
        mastodon = office.networks["mastodon"].fake.base_url.rstrip("/")
        assert re.fullmatch(re.escape(mastodon) + r"/web/statuses/\d+", live_links(page, "mastodon")[0])
        assert re.fullmatch(rf"https://bsky\.app/profile/{re.escape(BLUESKY_HANDLE)}/post/[\w-]+",
                            live_links(page, "bluesky")[0])
        assert re.fullmatch(rf"https://www\.facebook\.com/{PAGE_ID}/posts/\w+", live_links(page, "facebook")[0])
        for network in ("x", "telegram", "mastodon", "bluesky", "facebook"):
            assert len(live_links(page, network)) == 2, network
        whatsapp = page.one("section", data_network="whatsapp")
        assert live_links(page, "whatsapp") == []
        assert whatsapp["text"].count(f"terkirim ke {len(RECIPIENTS)} dari {len(RECIPIENTS)} penerima") == 2

    def test_hostile_title_is_text_not_markup(self, office):
        """A title with <script>, <b> and quotes is shown as its text: no element, no broken attribute."""
        base = office.start()
        office.run()
        body = get(base + "/")[2]
        page = Page(body)
        assert page.all("script") == [] and page.all("b") == []
        titles = [e["text"] for e in page.all("a") if e["attrs"]["href"].startswith("/story/")]
        assert titles.count(HOSTILE) == 6  # once per network
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in body
        story = get(base + "/story/1")[2]
        assert Page(story).one("h1")["text"] == HOSTILE and Page(story).all("script") == []

    def test_indonesian_by_default(self, office):
        """Words and dates are Indonesian: 'Kamis, 26 November 2026 10.00 WIB', the page reloads every minute."""
        base = office.start()
        office.run()
        page = Page(get(base + "/")[2])
        assert page.one("html")["attrs"]["lang"] == "id"
        assert page.one("meta", http_equiv="refresh")["attrs"]["content"] == "60"
        assert "Diperbarui Kamis, 26 November 2026 10.00 WIB" in page.one("p", class_="muted")["text"]
        assert page.one("h2", id="today")["text"] == "Hari ini: Kamis, 26 November 2026"
        assert page.one("h2", id="queue")["text"] == "Antrean"
        times = [e["text"] for e in page.all("td", class_="time")]
        assert "10.00" in times

    def test_english_with_the_setting(self, office):
        """[bridge] language = "en": English words and dates, 24-hour time with a colon."""
        base = office.start(bridge={"language": "en", "timezone": "Asia/Makassar"})
        office.run()
        page = Page(get(base + "/")[2])
        assert page.one("html")["attrs"]["lang"] == "en"
        assert "Updated Thursday, 26 November 2026 11:00 WITA" in page.one("p", class_="muted")["text"]
        assert page.one("h2", id="today")["text"] == "Today: Thursday, 26 November 2026"
        assert "view post" in page.one("section", data_network="x")["text"]
        assert "reached 2 of 2 recipients" in page.one("section", data_network="whatsapp")["text"]

    def test_chart_of_fourteen_days_per_network(self, office, clock):
        """The chart is inline SVG drawn by the server: a line per network over 14 days, today's count last."""
        base = office.start()
        office.run()
        clock.advance(days=3)
        office.feeds.edit("/rss.xml", body=antara_feed([antara_item(1, title=HOSTILE_IN_FEED), antara_item(2),
                                                        antara_item(3)]))
        office.run()
        page = Page(get(base + "/")[2])
        svg = page.one("svg", class_="chart")
        assert svg["attrs"]["role"] == "img"
        series = page.all("g", class_="series")
        assert sorted(g["attrs"]["data-network"] for g in series) == sorted(office.networks)
        x_points = [e["text"] for e in page.all("title") if e["text"].startswith("x ")]
        assert len(x_points) == 14
        assert x_points[-1] == "x 29 Nov: 1" and x_points[-4] == "x 26 Nov: 2" and x_points[0] == "x 16 Nov: 0"

    def test_queue_sources_and_spend(self, office, clock):
        """The queue shows pending (with why it waits), held, in doubt and failed with the command that
        settles each; sources show failing, disabled, drift and held; spend shows the day's budget."""
        base = office.start(
            targets={"x": {"quiet_hours": "09:00-12:00", "budget_per_day": 5}},
            sources=[{"name": "down", "url": office.feeds.url("/down.xml"), "targets": ["x"]},
                     {"name": "off", "url": office.feeds.url("/down.xml"), "targets": ["x"], "enabled": False},
                     {"name": "drifted", "url": office.feeds.url("/down.xml"), "targets": ["x"]},
                     {"name": "burst", "url": office.feeds.url("/rss.xml"), "targets": ["telegram"],
                      "first_run": "skip", "burst_limit": 1}])
        office.run("antara", "burst", "down")
        rt = office.daemon.rt
        office.feeds.edit("/rss.xml", body=antara_feed([antara_item(n) for n in (1, 2, 3, 4)]))
        office.daemon._job(_poll_source, "burst")  # two new stories over a limit of 1: held
        sent = [r for r in rt.repo.delivery_rows([DeliveryState.SENT]) if r["target"] == "mastodon"]
        rt.repo.mark_in_doubt(sent[0]["id"], "Mastodon answered 502", None, clock())
        rt.repo.mark_failed(sent[1]["id"], "Mastodon refused the post (422): too long", clock())
        rt.repo.record_poll_failure("drifted", office.feeds.url("/down.xml"), NO_STORIES_FOUND + ": selectors",
                                    clock(), clock() + timedelta(minutes=5))
        page = Page(get(base + "/")[2])
        rows = [(r["text"]) for r in page.all("tr", class_="queued")]
        pending = [r for r in rows if r.startswith("Menunggu")]
        assert len(pending) == 2 and all("quiet hours until" in r and "bridge skip" in r for r in pending)
        assert any(r.startswith("Ditahan") and "bridge release burst" in r for r in rows)
        assert any(r.startswith("Belum pasti") and "bridge resolve" in r for r in rows)
        assert any(r.startswith("Gagal") and f"bridge retry {sent[1]['id']}" in r for r in rows)
        assert page.all("code")  # commands are shown as code
        tiles = [e["text"] for e in page.all("span") if "tile" in e["attrs"].get("class", "")]
        assert tiles[1:] == ["2 menunggu", "3 perlu dilihat", "3 sumber bermasalah"]  # off is disabled: no problem
        states = {r["attrs"]["data-source"]: r["text"] for r in page.all("tr", class_="source")}
        assert "baik" in states["antara"]
        assert "gagal 1x berturut-turut" in states["down"] and "HTTP 500" in states["down"]
        assert "dinonaktifkan" in states["off"]
        assert "tata letak situs berubah?" in states["drifted"] and "berubah" not in states["antara"]
        assert "lonjakan ditahan (2 berita)" in states["burst"]
        assert "Kamis, 26 November 2026 10.00 WIB" in states["antara"]  # its last new story
        spend = {r["attrs"]["data-target"]: r["text"] for r in page.all("tr", class_="target")}
        assert "US$0,00 dari US$5,00" in spend["x"] and "quiet hours until" in spend["x"]


class TestStoryPage:
    def test_one_story_across_networks(self, office):
        """/story/{id} lists each delivery of the story: network (and recipient), state, time, live link."""
        base = office.start()
        office.run()
        status, headers, body = get(base + "/story/2")
        assert status == 200
        page = Page(body)
        rows = page.all("tr", class_="delivery")
        assert len(rows) == 5 + len(RECIPIENTS)
        assert all(r["attrs"]["data-state"] == "sent" and "terkirim" in r["text"] for r in rows)
        links = [e["attrs"]["href"] for e in page.all("a") if e["text"] == "lihat posting"]
        assert len(links) == 5 and any(link.startswith("https://t.me/kemenpora/") for link in links)
        assert page.one("a", href=antara_item(2)["link"])["text"] == "berita asli"
        whatsapp = sorted(r["text"].split("terkirim")[0] for r in rows if r["text"].startswith("whatsapp"))
        assert whatsapp == sorted(f"whatsapp {n[:4]}…{n[-4:]}" for n in RECIPIENTS)  # the middle hidden
        assert not any(n in body for n in RECIPIENTS)

    def test_unknown_story_is_404(self, office):
        """An id no story has, and a path that is not a page, answer 404 with a page that says so."""
        base = office.start()
        office.run()
        status, _, body = get(base + "/story/999999")
        assert status == 404 and "Berita 999999 tidak ada." in Page(body).one("p", class_="bad")["text"]
        assert get(base + "/story/abc")[0] == 404
        assert get(base + "/story/1/x")[0] == 404


class TestSafety:
    def test_security_headers_and_nothing_loaded(self, office):
        """No script, nothing loaded from elsewhere, a CSP that allows neither, nosniff, no referrer."""
        base = office.start()
        office.run()
        status, headers, body = get(base + "/")
        csp = headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "script-src" not in csp and "'unsafe-inline'" not in csp
        assert headers["X-Content-Type-Options"] == "nosniff" and headers["Referrer-Policy"] == "no-referrer"
        page = Page(body)
        assert not page.all("script") and not page.all("link") and not page.all("img") and not page.all("iframe")
        assert all("style" not in e["attrs"] and not any(a.startswith("on") for a in e["attrs"])
                   for e in page.elements)
        assert len(page.all("style")) == 1
        from bridge.dashboard.render import STYLE_HASH

        assert f"style-src '{STYLE_HASH}'" in csp

    def test_page_never_takes_the_write_lock(self, office):
        """The page answers while another connection holds SQLite's write lock (it only reads)."""
        base = office.start()
        office.run()
        engine = office.daemon.rt.repo.engine
        with engine.begin() as conn:  # BEGIN IMMEDIATE: the write lock, held while the page is read
            conn.exec_driver_sql("SELECT 1")
            assert get(base + "/")[0] == 200 and get(base + "/story/1")[0] == 200

    def test_healthz_and_metrics_stay(self, office):
        """/healthz and /metrics answer as before beside the page."""
        base = office.start()
        assert get(base + "/metrics")[0] == 200
        assert get(base + "/healthz")[0] == 503  # the scheduler never ran


class TestToken:
    """Off loopback every page but /healthz and /metrics needs the token (refusal() decides)."""

    def test_loopback_needs_none(self):
        """127.0.0.1, ::1 and localhost serve the page without a token."""
        from bridge.dashboard import refusal

        assert refusal("127.0.0.1", None, None) is None and refusal("::1", "t", None) is None
        assert refusal("localhost", None, None) is None

    def test_lan_without_a_token_set_is_refused(self):
        """A LAN address with no token in the secrets: 403, saying how to set one."""
        from bridge.dashboard import refusal

        status, _, body = refusal("192.168.1.10", None, None)
        assert status == 403 and b"BRIDGE_DASHBOARD_TOKEN" in body

    def test_lan_needs_the_token(self):
        """Basic (any user, the token as password) or Bearer with the token passes; else 401 asking for it."""
        from bridge.dashboard import refusal

        basic = "Basic " + base64.b64encode(b"humas:s3cret").decode()
        assert refusal("0.0.0.0", "s3cret", basic) is None
        assert refusal("0.0.0.0", "s3cret", "Bearer s3cret") is None
        status, headers, _ = refusal("0.0.0.0", "s3cret", "Bearer wrong")
        assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
        assert refusal("10.0.0.1", "s3cret", None)[0] == 401
        assert refusal("10.0.0.1", "s3cret", "Basic !!notbase64")[0] == 401

    def test_token_from_the_environment(self, tmp_path):
        """BRIDGE_DASHBOARD_TOKEN (or $CREDENTIALS_DIRECTORY/dashboard/token) is the token, redacted in logs."""
        raw = {"bridge": {"dry_run": True, "health_listen": "0.0.0.0:9108"},
               "sources": [{"name": "a", "url": "http://127.0.0.1/a.xml", "targets": ["x"]}],
               "targets": {"x": {"kind": "x"}}}
        config = parse_config(raw, environ={"BRIDGE_DASHBOARD_TOKEN": "s3cret"})
        assert config.bridge.dashboard_token == "s3cret" and "s3cret" in config.secrets()
        (tmp_path / "dashboard").mkdir()
        (tmp_path / "dashboard" / "token").write_text("from-file\n")
        config = parse_config(raw, environ={"CREDENTIALS_DIRECTORY": str(tmp_path)})
        assert config.bridge.dashboard_token == "from-file"
        assert "from-file" not in repr(config.bridge)

    def test_over_http_off_loopback(self, office, monkeypatch):
        """Served off loopback (the check made to answer so for 127.0.0.1), the page and story pages
        want the token while /healthz and /metrics answer without it."""
        import bridge.dashboard

        monkeypatch.setattr(bridge.dashboard, "is_loopback", lambda host: False)
        base = office.start(secrets={"BRIDGE_DASHBOARD_TOKEN": "s3cret"})
        office.run()
        status, headers, _ = get(base + "/")
        assert status == 401 and headers["WWW-Authenticate"] == 'Basic realm="bridge"'
        assert get(base + "/story/1")[0] == 401 and get(base + "/nope")[0] == 401
        basic = {"Authorization": "Basic " + base64.b64encode(b"humas:s3cret").decode()}
        assert get(base + "/", basic)[0] == 200 and get(base + "/story/1", basic)[0] == 200
        assert get(base + "/", {"Authorization": "Basic " + base64.b64encode(b"humas:wrong").decode()})[0] == 401
        assert get(base + "/metrics")[0] == 200 and get(base + "/healthz")[0] in (200, 503)
