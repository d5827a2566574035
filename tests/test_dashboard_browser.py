"""The PR office's page in a real browser: Debian's Chromium, headless, loads `/` from a running
`bridge run` whose fakes have been posted to, finds the posts, the queue and the chart, and makes
no request beyond 127.0.0.1. Skipped when Chromium is missing, unless BRIDGE_REQUIRE_BROWSER=1
(CI's `.ci/run` installs it and sets that). BRIDGE_SCREENSHOT=path keeps the screenshot there
(how docs/dashboard.png is made)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.fakes.telegram import BOT_TOKEN
from tests.fakes.whatsapp import ACCESS_TOKEN as WHATSAPP_TOKEN, PHONE_NUMBER_ID, RECIPIENTS
from tests.fakes.mastodon import ACCESS_TOKEN as MASTODON_TOKEN
from tests.helpers import antara_feed, antara_item, env_for
from tests.test_dashboard import Page
from tests.test_daemon_process import REPO_ROOT, WAIT, Output, free_port

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
if BROWSER is None and os.environ.get("BRIDGE_REQUIRE_BROWSER") != "1":
    pytest.skip("no chromium (apt install chromium; CI requires it)", allow_module_level=True)

TITLES = ["Menpora buka Kejuaraan Nasional Pencak Silat Pelajar 2026",
          "Kemenpora gelar pelatihan kepemimpinan pemuda di Makassar",
          "Timnas U-20 berlatih di Stadion Madya jelang Piala Asia",
          "Deputi Pembudayaan Olahraga tinjau Desain Besar Olahraga Nasional"]


BROWSER_OWN = ("clients2.google.com", "update.googleapis.com", "accounts.google.com")
"""Chromium's own services (network time, component updates, sign-in), which it calls whatever the
page, despite --disable-background-networking; they reach the proxy and are refused like the rest."""


def host_of(request: str) -> str:
    target = request.split(" ", 1)[1]
    return target.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]


class RecordingProxy:
    """The browser's proxy for every address but loopback: records each request, answers 403. A
    page that loads nothing from elsewhere leaves it empty."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _refuse(self) -> None:
                proxy.requests.append(f"{self.command} {self.path}")
                self.send_response(403)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = do_CONNECT = do_HEAD = do_PUT = do_OPTIONS = _refuse

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def settings_text(feed: str, down: str, fakes: dict, port: int) -> str:
    return f"""
[bridge]
database = "sqlite:///bridge.db"
first_run = "all"
delivery_interval = "1s"
health_listen = "127.0.0.1:{port}"

[[sources]]
name = "kemenpora-berita"
url = "{feed}"
targets = ["x", "telegram", "mastodon", "whatsapp"]

[[sources]]
name = "deputi4"
url = "{down}"
targets = ["x"]

[targets.x]
kind = "x"
api_base = "{fakes['x'].base_url}"
max_per_day = 3

[targets.telegram]
kind = "telegram"
api_base = "{fakes['telegram'].base_url}"
chat_id = "@kemenpora"

[targets.mastodon]
kind = "mastodon"
instance = "{fakes['mastodon'].base_url}"

[targets.whatsapp]
kind = "whatsapp"
api_base = "{fakes['whatsapp'].base_url}"
phone_number_id = "{PHONE_NUMBER_ID}"
message_template = "berita_terbaru"
recipients = {list(RECIPIENTS)!r}
""".replace("'", '"')


def chromium(*args: str, profile: Path, proxy: RecordingProxy) -> subprocess.CompletedProcess:
    return subprocess.run(
        [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
         f"--user-data-dir={profile}", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-default-apps", "--disable-extensions", "--disable-domain-reliability",
         "--metrics-recording-only", "--no-default-browser-check", "--disable-features=Translate,MediaRouter",
         f"--proxy-server={proxy.url}",
         # Belt and braces: a name other than 127.0.0.1 resolves nowhere, so nothing can leave.
         "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1", *args],
        capture_output=True, text=True, timeout=120)


@pytest.fixture
def running(feed_server, x_api, telegram_api, mastodon_api, whatsapp_api, tmp_path):
    feed_server.add("/rss.xml", antara_feed([antara_item(n, title=t) for n, t in enumerate(TITLES, 1)]))
    feed_server.add("/down.xml", "unavailable", status=503)
    port = free_port()
    fakes = {"x": x_api, "telegram": telegram_api, "mastodon": mastodon_api, "whatsapp": whatsapp_api}
    settings = tmp_path / "settings.toml"
    settings.write_text(settings_text(feed_server.url("/rss.xml"), feed_server.url("/down.xml"), fakes, port))
    env = {**os.environ, **env_for(tmp_path), "PYTHONPATH": str(REPO_ROOT), "BRIDGE_TELEGRAM_BOT_TOKEN": BOT_TOKEN,
           "BRIDGE_MASTODON_ACCESS_TOKEN": MASTODON_TOKEN, "BRIDGE_WHATSAPP_ACCESS_TOKEN": WHATSAPP_TOKEN}
    env.pop("BRIDGE_CONFIG", None)
    process = subprocess.Popen([sys.executable, "-m", "bridge", "--config", str(settings), "run"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    out = Output(process.stdout)
    Output(process.stderr)
    try:
        # 4 stories: x posts its daily cap of 3 (one waits), telegram and mastodon 4, whatsapp 4 x 2.
        out.wait_for(lambda e: e.get("event") == "posted", count=3 + 4 + 4 + 4 * len(RECIPIENTS))
        out.wait_for(lambda e: e.get("event") == "poll failed" and e.get("source") == "deputi4")
        yield f"http://127.0.0.1:{port}/"
    finally:
        process.kill()
        process.wait(WAIT)


def test_the_page_in_chromium(running, tmp_path):
    """Chromium shows today's posts per network, the queue and the chart, and asks nothing of any
    address but 127.0.0.1; a 1366x768 screenshot is taken."""
    assert BROWSER, "BRIDGE_REQUIRE_BROWSER=1 but no chromium: apt install chromium"
    proxy = RecordingProxy()
    try:
        dom = chromium("--dump-dom", running, profile=tmp_path / "profile", proxy=proxy)
        shot = Path(os.environ.get("BRIDGE_SCREENSHOT") or tmp_path / "dashboard.png").resolve()
        taken = chromium(f"--screenshot={shot}", "--window-size=1366,768", running,
                         profile=tmp_path / "profile", proxy=proxy)
    finally:
        proxy.close()
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = Page(dom.stdout)
    posts = page.all("tr", class_="post")
    assert len(posts) == 3 + 4 + 4 + 4  # whatsapp: one row per story, with its recipients
    assert {t for t in TITLES} <= {e["text"] for e in page.all("a") if e["attrs"].get("href", "").startswith("/story/")}
    queued = page.all("tr", class_="queued")
    assert any(r["text"].startswith("Menunggu") and "daily cap of 3" in r["text"] for r in queued)
    assert page.all("svg", class_="chart") and len(page.all("g", class_="series")) == 4
    failing = page.one("tr", data_source="deputi4")
    assert "gagal" in failing["text"]
    from_the_page = [r for r in proxy.requests if host_of(r) not in BROWSER_OWN]
    assert from_the_page == [], "\n".join(r[:90] for r in from_the_page)
    assert taken.returncode == 0 and shot.stat().st_size > 10_000, taken.stderr[-2000:]
