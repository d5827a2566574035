"""Builders shared by the end-to-end tests: realistic feeds, configs and runtimes."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from xml.sax.saxutils import escape

from bridge.config import parse_config
from bridge.service import build_runtime, open_repository
from tests.fakes.x_api import CREDENTIALS

WIB = timezone(timedelta(hours=7))


def antara_item(n: int, title: str | None = None, published: datetime | None = None,
                image: str | None = None, categories: tuple[str, ...] = ()) -> dict:
    """One story; `image` should be a URL on a local test server (tests never leave 127.0.0.1)."""
    published = published or datetime(2026, 11, 26, 8, 0, tzinfo=WIB) - timedelta(hours=n)
    return {
        "title": title or f"Menpora dorong atlet muda berprestasi, berita nomor {n}",
        "link": f"https://www.antaranews.com/berita/{4000000 + n}/menpora-berita-{n}",
        "published": published,
        "description": f"Jakarta (ANTARA) - Cerita ke-{n} tentang olahraga nasional&nbsp;dan pemuda …",
        "image": image,
        "categories": categories,
    }


def antara_feed(items: list[dict]) -> str:
    """RSS 2.0 shaped like Antara's: guid isPermaLink=false equal to the link, the photo only as an
    <img> in the CDATA description."""
    entries = []
    for item in items:
        img = f'<img src="{item["image"]}" />' if item.get("image") else ""
        categories = "".join(f"<category><![CDATA[ {c} ]]></category>" for c in item.get("categories", ()))
        entries.append(f"""
    <item>
      <title><![CDATA[{item['title']}]]></title>
      <link>{escape(item['link'])}</link>
      <guid isPermaLink="false">{escape(item.get('guid', item['link']))}</guid>
      <pubDate>{format_datetime(item['published'])}</pubDate>{categories}
      <description><![CDATA[{img}
        {item['description']}]]></description>
    </item>""")
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:atom="http://www.w3.org/2005/Atom">
  <channel>
    <title>ANTARA News - Berita Terkini</title>
    <link>https://www.antaranews.com</link>
    <language>id</language>
    <description>Berita terkini</description>{''.join(entries)}
  </channel>
</rss>"""


def make_config(feed_urls: dict[str, str], *, x_base: str | None = None, dry_run: bool = False,
                bridge: dict | None = None, target: dict | None = None, source: dict | None = None):
    raw = {
        "bridge": {"database": "sqlite:///bridge.db", "dry_run": dry_run, **(bridge or {})},
        "sources": [{"name": name, "url": url, "targets": ["x"], **(source or {})} for name, url in feed_urls.items()],
        "targets": {"x": {"kind": "x", "api_base": x_base or "https://api.x.com", **(target or {})}},
    }
    return raw


def env_for(tmp_path) -> dict[str, str]:
    return {
        "STATE_DIRECTORY": str(tmp_path),
        "BRIDGE_X_CONSUMER_KEY": CREDENTIALS["consumer_key"],
        "BRIDGE_X_CONSUMER_SECRET": CREDENTIALS["consumer_secret"],
        "BRIDGE_X_ACCESS_TOKEN": CREDENTIALS["access_token"],
        "BRIDGE_X_ACCESS_TOKEN_SECRET": CREDENTIALS["access_token_secret"],
    }


class FakeMonotonic:
    """An injected monotonic clock (heartbeats, flush spacing, poll plans): moved by hand via `now`."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


class InjectedSleep:
    """A sleep that only moves its own monotonic clock: the politeness delays between story pages
    are kept (and can be asserted through `slept`) without a test waiting through them."""

    def __init__(self) -> None:
        self.now, self.slept = 1000.0, []

    def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def monotonic(self) -> float:
        return self.now


def runtime(raw: dict, tmp_path, clock):
    """A runtime as the daemon builds it; a new one on the same tmp_path is a restart. Its pacer's
    waits between follow-up requests to one host are injected (rt.pacer._sleep.slept lists them)."""
    from bridge.sources.polite import HostPacer

    config = parse_config(raw, environ=env_for(tmp_path))
    rt = build_runtime(config, open_repository(config), clock=clock)
    sleep = InjectedSleep()
    rt.pacer = HostPacer(config.bridge.page_delay.total_seconds(), sleep=sleep, monotonic=sleep.monotonic)
    return rt


def wait_until(predicate, timeout: float) -> bool:
    """True as soon as `predicate()` is, False after `timeout` seconds: for an event in another
    process or thread that no callback announces (a request reaching a fake, a process exiting)."""
    deadline = time.monotonic() + timeout
    tick = threading.Event()
    while not predicate():
        if time.monotonic() > deadline:
            return False
        tick.wait(0.01)
    return True
