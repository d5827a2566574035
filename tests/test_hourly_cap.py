"""max_per_hour: at most N posts to a target in any 60 minutes, beside max_per_day; on SQLite and
PostgreSQL, in the delivery round, `bridge status` and the rehearsal's "why it would wait"."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from structlog.testing import capture_logs

from bridge.clock import local_text
from bridge.config import parse_config
from bridge.errors import ConfigError
from bridge.model import FrozenPost, Item
from bridge.pacing import hold_reason
from bridge.pipeline import deliver_due, poll
from bridge.preview import dry_run_publishers, polite_fetcher
from bridge.rehearsal import Memory, open_read_only, rehearse_round
from bridge.service import close
from bridge.status import collect, render
from tests.helpers import antara_feed, antara_item, make_config, runtime

T0 = datetime(2026, 11, 26, 3, 0, tzinfo=timezone.utc)
TZ = "Asia/Jakarta"


def target(**settings):
    raw = make_config({"a": "https://a.id/rss"}, dry_run=True, target=settings)
    return parse_config(raw, environ={}).targets["x"]


def send(repo, times: list[datetime]) -> None:
    """Store one story per time and record it sent to x then."""
    items = [Item(key=f"k{n}", title=f"Judul {n}") for n in range(len(times))]
    repo.store_poll("a", "https://a.id/rss", items, ["x"], now=T0 - timedelta(days=1), skip={}, etag=None,
                    last_modified=None, next_poll_at=None)
    for delivery, at in zip(repo.due_deliveries("x", T0 + timedelta(days=1), limit=100), times, strict=True):
        repo.claim(delivery, at, FrozenPost(delivery.item.title))
        repo.mark_sent(delivery.id, f"id-{delivery.id}", at)


class TestStore:
    def test_nth_latest_sent_at(self, repo):
        """The n-th most recent sent post's time, counting only sent posts of that target; None past the last."""
        send(repo, [T0, T0 + timedelta(minutes=10), T0 + timedelta(minutes=25)])
        assert repo.nth_latest_sent_at("x", 1) == T0 + timedelta(minutes=25)
        assert repo.nth_latest_sent_at("x", 3) == T0
        assert repo.nth_latest_sent_at("x", 4) is None
        assert repo.nth_latest_sent_at("other", 1) is None


class TestHoldReason:
    def test_the_cap_is_a_rolling_hour(self, repo):
        """Three posts in the last hour with max_per_hour = 3 hold the target until the oldest of them
        turns an hour old (named in [bridge] timezone); then the next may go."""
        send(repo, [T0, T0 + timedelta(minutes=10), T0 + timedelta(minutes=20)])
        x = target(max_per_hour=3)
        reason = hold_reason(repo, x, TZ, T0 + timedelta(minutes=30))
        frees = local_text(T0 + timedelta(hours=1), TZ, seconds=True)
        assert reason == f"hourly cap: 3 posts in the last hour (max_per_hour); next post after {frees}"
        assert frees.endswith(" WIB")
        assert hold_reason(repo, x, TZ, T0 + timedelta(minutes=59, seconds=59)) is not None
        assert hold_reason(repo, x, TZ, T0 + timedelta(hours=1, seconds=1)) is None

    def test_it_frees_by_the_oldest_of_the_last_n_posts(self, repo):
        """With more posts in the window than the cap (a lowered cap after a reload), the wait runs from
        the cap-th most recent post: two of the last hour's four must age out for one more under a cap of 3."""
        send(repo, [T0, T0 + timedelta(minutes=5), T0 + timedelta(minutes=15), T0 + timedelta(minutes=20)])
        reason = hold_reason(repo, target(max_per_hour=3), TZ, T0 + timedelta(minutes=30))
        assert reason.endswith(local_text(T0 + timedelta(minutes=65), TZ, seconds=True))

    def test_without_a_cap_nothing_is_held(self, repo):
        """No max_per_hour (the default): any number of posts an hour, within max_per_day."""
        send(repo, [T0 + timedelta(minutes=n) for n in range(5)])
        assert target().max_per_hour is None
        assert hold_reason(repo, target(), TZ, T0 + timedelta(minutes=6)) is None

    def test_the_daily_cap_is_named_first(self, repo):
        """When both caps are reached, the longer wait (the day's) is the reason given."""
        send(repo, [T0, T0 + timedelta(minutes=1)])
        reason = hold_reason(repo, target(max_per_hour=2, max_per_day=2), TZ, T0 + timedelta(minutes=2))
        assert reason.startswith("daily cap of 2 posts reached")


class TestConfig:
    def test_validated_and_documented(self):
        """max_per_hour must be a whole number above 0; a mistyped key gets a did-you-mean."""
        def problems(**settings):
            with pytest.raises(ConfigError) as info:
                target(**settings)
            return info.value.problems

        assert problems(max_per_hour=0) == ["targets.x.max_per_hour: must be greater than 0 (got 0)"]
        assert problems(max_per_hour="5") == ["targets.x.max_per_hour: must be a whole number (got '5')"]
        assert "did you mean 'max_per_hour'?" in problems(max_per_huor=5)[0]
        assert target(max_per_hour=4).max_per_hour == 4


@pytest.fixture
def feeds(feed_server):
    feed_server.add("/rss.xml", antara_feed([antara_item(n) for n in (1, 2, 3, 4)]), etag='"v1"')
    return feed_server


class TestDelivering:
    def test_posts_are_spread_over_the_hours(self, feeds, x_api, tmp_path, clock):
        """Four stories with max_per_hour = 2: two go out now, the others wait (logged once, shown in
        status) and go out an hour later."""
        raw = make_config({"antara": feeds.url("/rss.xml")}, x_base=x_api.base_url,
                          bridge={"first_run": "all"}, target={"max_per_hour": 2})
        rt = runtime(raw, tmp_path, clock)
        try:
            poll(rt, rt.config.sources[0])
            with capture_logs() as logs:
                deliver_due(rt)
                clock.advance(minutes=30)
                deliver_due(rt)
            assert len(x_api.tweets) == 2
            holds = [e["reason"] for e in logs if e["event"] == "deliveries held"]
            assert len(holds) == 1 and holds[0].startswith("hourly cap: 2 posts in the last hour")
            [row] = collect(rt.repo, rt.config, now=clock())["targets"]
            assert row["state"].startswith("hourly cap: 2 posts in the last hour (max_per_hour); next post after ")
            assert row["pending"] == 2
            assert "hourly cap: 2 posts" in render(collect(rt.repo, rt.config, now=clock()))
            clock.advance(minutes=30, seconds=1)
            deliver_due(rt)
            assert len(x_api.tweets) == 4
        finally:
            close(rt)

    def test_the_rehearsal_says_why_it_would_wait(self, feeds, x_api, tmp_path, clock):
        """A rehearsal's would-be posts to a target at its hourly cap carry the cap as why they would wait."""
        raw = make_config({"antara": feeds.url("/rss.xml")}, x_base=x_api.base_url,
                          bridge={"first_run": "all"}, target={"max_per_hour": 1})
        rt = runtime(raw, tmp_path, clock)
        poll(rt, rt.config.sources[0])
        deliver_due(rt)
        close(rt)
        config = parse_config(raw, environ={"STATE_DIRECTORY": str(tmp_path)}, dry_run=True)
        repo = open_read_only(config.bridge.database)
        try:
            with capture_logs() as logs, polite_fetcher(config) as fetcher, \
                    dry_run_publishers(config, config.targets) as publishers:
                rehearse_round(config, repo, Memory(), fetcher, publishers, [], clock())
        finally:
            repo.engine.dispose()
        held = [e["held"] for e in logs if e["event"] == "would post"]
        assert len(held) == 3 and all(h.startswith("hourly cap: 1 post in the last hour") for h in held)
