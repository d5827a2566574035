"""Feed dates as the README promises, through the whole poll: a time written without a zone is in the
source's `timezone`; an unreadable `published` beside a readable `updated` takes the latter; a story
with no date is as old, for max_age, as the bridge's first sight of its link."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from bridge.model import DeliveryState
from bridge.pipeline import deliver_due, poll
from bridge.service import close
from tests.helpers import make_config, runtime

UTC = timezone.utc


def rss(*items: tuple[str, str | None]) -> str:
    """RSS 2.0 whose items are (link, pubDate or None)."""
    entries = "".join(
        f"<item><title>Berita {link.rsplit('/', 1)[-1]}</title><link>{link}</link>"
        + (f"<pubDate>{date}</pubDate>" if date else "") + "</item>"
        for link, date in items)
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>{entries}</channel></rss>'


def stored_dates(rt) -> dict[str, datetime | None]:
    rows = rt.repo.engine.connect().exec_driver_sql("select key, published_at from items").all()
    return {key: datetime.fromisoformat(str(p) + "+00:00") if p else None for key, p in rows}


@pytest.fixture
def bridge(feed_server, x_api, tmp_path, clock):
    runtimes = []

    def start(feeds: dict[str, str], first_run: str = "all", **source):
        raw = make_config(feeds, x_base=x_api.base_url, bridge={"first_run": first_run}, source=source)
        runtimes.append(runtime(raw, tmp_path, clock))
        return runtimes[-1]

    yield start
    for rt in runtimes:
        close(rt)


class TestZonelessDates:
    def test_zoneless_times_are_in_the_source_timezone(self, feed_server, bridge):
        """"2025-03-03 10:00:00" and "Mon, 03 Mar 2025 10:00:00" (no zone) are 10:00 in the source's
        zone (WITA, +08), not 10:00 UTC and not unknown; dates that name a zone keep it."""
        feed_server.add("/rss", rss(
            ("https://site.example/a/iso", "2025-03-03 10:00:00"),
            ("https://site.example/a/rfc822", "Mon, 03 Mar 2025 10:00:00"),
            ("https://site.example/a/day", "2025-03-03"),
            ("https://site.example/a/gmt", "Mon, 03 Mar 2025 10:00:00 GMT"),
        ))
        rt = bridge({"s": feed_server.url("/rss")}, timezone="Asia/Makassar")
        poll(rt, rt.config.sources[0])
        assert stored_dates(rt) == {
            "site.example/a/iso": datetime(2025, 3, 3, 2, 0, tzinfo=UTC),
            "site.example/a/rfc822": datetime(2025, 3, 3, 2, 0, tzinfo=UTC),
            "site.example/a/day": datetime(2025, 3, 2, 16, 0, tzinfo=UTC),  # midnight in Makassar
            "site.example/a/gmt": datetime(2025, 3, 3, 10, 0, tzinfo=UTC),
        }

    def test_json_feed_zoneless_date_in_the_source_timezone(self, feed_server, bridge):
        """A JSON Feed date_published without an offset is read in the source's zone too."""
        feed_server.add("/feed.json", json.dumps({
            "version": "https://jsonfeed.org/version/1.1", "title": "t",
            "items": [{"id": "1", "url": "https://site.example/j/1", "title": "a",
                       "date_published": "2025-03-03T10:00:00"}],
        }), content_type="application/feed+json")
        rt = bridge({"s": feed_server.url("/feed.json")})  # Asia/Jakarta, the default
        poll(rt, rt.config.sources[0])
        assert stored_dates(rt) == {"1": datetime(2025, 3, 3, 3, 0, tzinfo=UTC)}


class TestUpdatedStandsIn:
    def test_unreadable_published_uses_updated(self, feed_server, bridge):
        """An Atom entry whose <published> cannot be read, and a JSON Feed item whose date_published
        cannot, take their readable updated / date_modified."""
        feed_server.add("/atom", """<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>
          <entry><id>urn:a</id><title>a</title><link href="https://site.example/a"/>
            <published>kemarin sore</published><updated>2025-03-03T10:00:00+07:00</updated></entry>
          <entry><id>urn:b</id><title>b</title><link href="https://site.example/b"/>
            <published>2025-03-01T08:00:00+07:00</published><updated>2025-03-03T10:00:00+07:00</updated></entry>
        </feed>""", content_type="application/atom+xml")
        feed_server.add("/feed.json", json.dumps({
            "version": "https://jsonfeed.org/version/1.1", "title": "t",
            "items": [{"id": "j", "url": "https://site.example/j", "title": "j",
                       "date_published": "not a date", "date_modified": "2025-03-03T10:00:00+07:00"}],
        }), content_type="application/feed+json")
        rt = bridge({"atom": feed_server.url("/atom"), "json": feed_server.url("/feed.json")})
        for source in rt.config.sources:
            poll(rt, source)
        assert stored_dates(rt) == {
            "urn:a": datetime(2025, 3, 3, 3, 0, tzinfo=UTC),
            "urn:b": datetime(2025, 3, 1, 1, 0, tzinfo=UTC),  # a readable published still wins
            "j": datetime(2025, 3, 3, 3, 0, tzinfo=UTC),
        }


class TestUndatedMaxAge:
    def test_undated_story_is_as_old_as_its_first_sighting(self, feed_server, x_api, bridge, clock):
        """With max_age 2d, an undated story whose link the bridge first saw (through another source)
        three days ago is skipped as stale, never posted; an undated story never seen before is posted."""
        old_link, new_link = "https://site.example/berita/lama", "https://site.example/berita/baru"
        feed_server.add("/a", rss((old_link, None)))
        feed_server.add("/b", rss(("https://site.example/berita/awal", None)))
        rt = bridge({"a": feed_server.url("/a"), "b": feed_server.url("/b")}, first_run="skip", max_age="2d")
        a, b = rt.config.sources
        poll(rt, a)  # first runs: both only remember
        poll(rt, b)
        clock.advance(days=3)
        feed_server.edit("/b", body=rss((old_link, None), (new_link, None)))
        assert poll(rt, b).items_new == 2
        rows = {(r["source"], r["link"]): r for r in rt.repo.delivery_rows(list(DeliveryState))}
        assert rows[("b", old_link)]["state"] == DeliveryState.SKIPPED.value
        assert rows[("b", old_link)]["last_error"].startswith("stale: no date, first seen ")
        assert rows[("b", new_link)]["state"] == DeliveryState.PENDING.value
        deliver_due(rt)
        assert [t["text"] for t in x_api.tweets] == [f"Berita baru {new_link}"]

    def test_undated_story_never_seen_is_new_now(self, feed_server, bridge, clock):
        """An undated story first seen in this poll is not stale, whatever max_age says."""
        feed_server.add("/a", rss(("https://site.example/berita/x", None)))
        rt = bridge({"a": feed_server.url("/a")}, max_age="1h")
        outcome = poll(rt, rt.config.sources[0])
        assert outcome.items_new == 1 and outcome.deliveries_created == 1
