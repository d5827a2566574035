"""End to end through real HTTP: feed server -> fetch -> read -> store -> compose -> fake X API."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from bridge.model import DeliveryState, Post
from bridge.pipeline import RETRY_AFTER_MAX, deliver_due, freeze_post, poll
from bridge.publish.x import x_weighted_length
from bridge.service import close, prepare
from bridge.store.lock import acquire_run_lock
from tests.helpers import antara_feed, antara_item, make_config, runtime


@pytest.fixture
def world(feed_server, x_api, tmp_path, clock):
    """A feed with three stories on the local feed server, and a live X target on the fake X API."""
    stories = [antara_item(n) for n in (1, 2, 3)]
    feed_server.add("/rss/terkini.xml", antara_feed(stories), etag='"v1"')
    return World(feed_server, x_api, tmp_path, clock, stories)


class World:
    def __init__(self, feeds, x, tmp_path, clock, stories):
        self.feeds, self.x, self.tmp_path, self.clock, self.stories = feeds, x, tmp_path, clock, stories
        self.rt = None

    def start(self, **config):
        """(Re)start the bridge on the same database, like a process restart."""
        if self.rt:
            close(self.rt)
        raw = make_config({"antara": self.feeds.url("/rss/terkini.xml")}, x_base=self.x.base_url, **config)
        self.rt = runtime(raw, self.tmp_path, self.clock)
        prepare(self.rt, acquire_run_lock(self.rt.repo.engine))
        return self.rt

    def cycle(self):
        outcome = poll(self.rt, self.rt.config.sources[0], force=True)
        deliver_due(self.rt)
        return outcome

    def publish(self, stories):
        """The site publishes: the feed now holds these stories (and a new ETag)."""
        self.stories = stories
        self.feeds.edit("/rss/terkini.xml", body=antara_feed(stories), etag=f'"v{len(stories)}-{id(stories)}"')

    def tweets(self):
        return [r.body["text"] for r in self.x.requests if r.route == "/2/tweets" and r.method == "POST"]


class TestOncePerStory:
    def test_first_run_posts_nothing_then_new_stories_once(self, world):
        """The first poll only remembers; a story added later is posted once, across restarts."""
        world.start()
        outcome = world.cycle()
        assert outcome.first_run and outcome.items_new == 3 and world.tweets() == []
        world.publish([antara_item(4)] + world.stories)
        world.cycle()
        assert len(world.tweets()) == 1 and "nomor 4" in world.tweets()[0]
        world.start()  # restart
        world.cycle()
        world.cycle()
        assert len(world.tweets()) == 1

    def test_edited_title_or_date_is_not_a_new_story(self, world):
        """A story whose title and date change keeps its key and is not posted again."""
        world.start()
        world.cycle()
        edited = [dict(s, title=s["title"] + " (diperbarui)", published=s["published"] + timedelta(hours=1))
                  for s in world.stories]
        world.publish(list(reversed(edited)))
        world.cycle()
        assert world.tweets() == []

    def test_site_moving_to_https_and_bare_host_posts_nothing_again(self, world):
        """Ten known stories whose guids and links move from http://www. to https:// bare (with a
        trailing slash) queue nothing; a story new in the moved feed is still posted, once."""
        known = [dict(s, link=s["link"].replace("https://www.", "http://www.")) for s in
                 (antara_item(n) for n in range(1, 11))]
        world.publish(known)
        world.start()
        assert world.cycle().items_new == 10
        moved = [dict(s, link=s["link"].replace("http://www.", "https://") + "/") for s in [antara_item(11)] + known]
        world.publish(moved)
        outcome = world.cycle()
        assert (outcome.items_seen, outcome.items_new, outcome.deliveries_created) == (11, 1, 1)
        assert len(world.tweets()) == 1 and "nomor 11" in world.tweets()[0]
        assert world.rt.repo.due_deliveries("x", world.clock(), 100) == []

    @pytest.mark.parametrize("policy,expected", [("latest:2", 2), ("all", 3)])
    def test_first_run_policies(self, world, policy, expected):
        """first_run latest:N posts the newest N stories, all posts every story, oldest first."""
        world.start(bridge={"first_run": policy})
        world.cycle()
        tweets = world.tweets()
        assert len(tweets) == expected
        assert "nomor 1" in tweets[-1]  # story 1 is the newest, so it goes out last

    def test_new_url_under_an_old_name_is_a_first_run(self, world):
        """Pointing a source at another feed applies first_run again instead of posting that feed's backlog."""
        world.start()
        world.cycle()
        world.feeds.add("/rss/olahraga.xml", antara_feed([antara_item(n) for n in (7, 8, 9)]))
        world.feeds.add_status("/rss/terkini.xml", 404)
        raw = make_config({"antara": world.feeds.url("/rss/olahraga.xml")}, x_base=world.x.base_url)
        rt = runtime(raw, world.tmp_path, world.clock)
        world.feeds.edit("/rss/olahraga.xml", status=503)
        assert poll(rt, rt.config.sources[0], force=True).status == "error"  # a failed first try changes nothing
        world.feeds.edit("/rss/olahraga.xml", status=200)
        outcome = poll(rt, rt.config.sources[0], force=True)
        deliver_due(rt)
        assert outcome.first_run and outcome.items_new == 3 and world.tweets() == []
        close(rt)

    def test_conditional_get(self, world):
        """An unchanged feed is asked for with If-None-Match, answered 304, and not parsed."""
        world.start()
        world.cycle()
        outcome = world.cycle()
        assert outcome.status == "not_modified"
        assert world.feeds.requests_to("/rss/terkini.xml")[-1].headers.get("if-none-match") == '"v1"'

    def test_same_story_from_two_sources_posted_once(self, world):
        """Two sources carrying the same link post it once to X."""
        world.feeds.add("/rss/olahraga.xml", antara_feed(world.stories[:1]))
        raw = make_config({"antara": world.feeds.url("/rss/terkini.xml"),
                           "olahraga": world.feeds.url("/rss/olahraga.xml")},
                          x_base=world.x.base_url, bridge={"first_run": "all"})
        rt = runtime(raw, world.tmp_path, world.clock)
        for source in rt.config.sources:
            poll(rt, source)
        deliver_due(rt)
        assert len(world.tweets()) == 3
        close(rt)


FIXTURE_FEEDS = sorted(p for p in (Path(__file__).parent / "fixtures" / "feeds").iterdir()
                       if p.name not in {"not_a_feed.html", "billion_laughs.xml"})


@pytest.mark.parametrize("path", FIXTURE_FEEDS, ids=lambda p: p.name)
def test_real_feed_shapes_post_each_story_once_within_280(path, feed_server, x_api, tmp_path, clock):
    """Feeds shaped like Antara's, detik's, Okezone's, Republika's, BBC's, WordPress, Atom and JSON Feed
    are posted story by story, each within 280, and a restart posts nothing again."""
    content_type = "application/feed+json" if path.suffix == ".json" else "application/rss+xml"
    feed_server.add("/feed", path.read_bytes(), content_type=content_type)
    raw = make_config({"site": feed_server.url("/feed")}, x_base=x_api.base_url, bridge={"first_run": "all"})
    for restart in range(2):
        rt = runtime(raw, tmp_path, clock)
        prepare(rt, acquire_run_lock(rt.repo.engine))
        outcome = poll(rt, rt.config.sources[0], force=True)
        deliver_due(rt)
        close(rt)
        tweets = [r.body["text"] for r in x_api.requests if r.route == "/2/tweets"]
        if restart == 0:
            assert outcome.items_new == outcome.items_seen > 0
            assert len(tweets) == outcome.deliveries_created > 0
            first_tweets = tweets
    assert tweets == first_tweets
    assert all(0 < x_weighted_length(t) <= 280 for t in tweets)


class TestComposing:
    def test_long_story_fits_in_280_with_the_link_intact(self, world):
        """A very long title is shortened with an ellipsis; the post fits X's 280 and keeps the full link."""
        world.start(bridge={"first_run": "all"})
        long_title = "Kementerian Pemuda dan Olahraga " * 20
        world.publish([antara_item(9, title=long_title)])
        world.cycle()
        [tweet] = world.tweets()
        assert x_weighted_length(tweet) <= 280
        assert tweet.endswith("https://www.antaranews.com/berita/4000009/menpora-berita-9")
        assert "…" in tweet


class TestXOutcomes:
    def _one_pending(self, world):
        world.start()
        world.cycle()
        world.publish([antara_item(4)] + world.stories)

    def test_duplicate_counts_as_sent(self, world):
        """X's 403 duplicate-content answer marks the delivery sent and stops retries."""
        self._one_pending(world)
        world.x.enqueue("POST", "/2/tweets", status=403, json={
            "detail": "You are not allowed to create a Tweet with duplicate content.",
            "type": "about:blank", "title": "Forbidden", "status": 403})
        world.cycle()
        world.clock.advance(hours=1)
        deliver_due(world.rt)
        assert len(world.tweets()) == 1
        assert world.rt.repo.target_rows(world.clock() - timedelta(days=1))[0]["sent_today"] == 1

    def test_rate_limit_holds_until_reset(self, world):
        """A 429 keeps the post pending and holds the target until x-rate-limit-reset."""
        self._one_pending(world)
        reset = int((world.clock() + timedelta(minutes=10)).timestamp())
        world.x.enqueue("POST", "/2/tweets", status=429, json={"title": "Too Many Requests", "detail": "Too Many Requests",
                                                               "type": "about:blank", "status": 429},
                        headers={"x-rate-limit-limit": "100", "x-rate-limit-remaining": "0",
                                 "x-rate-limit-reset": str(reset)})
        world.cycle()
        world.clock.advance(minutes=9)
        deliver_due(world.rt)
        assert len(world.tweets()) == 1  # only the refused attempt
        world.clock.advance(minutes=2)
        deliver_due(world.rt)
        assert len(world.tweets()) == 2 and len(world.x.posted) == 1

    def test_server_errors_leave_the_post_in_doubt_until_the_operator(self, world):
        """5xx answers to POST /2/tweets leave the post in doubt: re-sent after growing waits, then the operator decides, never failed."""
        world.start(bridge={"max_attempts": 3})
        world.cycle()
        world.publish([antara_item(4)] + world.stories)
        for _ in range(3):
            world.x.enqueue("POST", "/2/tweets", status=503, json={"title": "Service Unavailable"})
        world.cycle()
        deliver_due(world.rt)  # too early: backoff
        assert len(world.x.routed("/2/tweets")) == 1
        world.clock.advance(minutes=1)
        deliver_due(world.rt)
        world.clock.advance(minutes=2)
        deliver_due(world.rt)
        assert len(world.x.routed("/2/tweets")) == 3
        world.clock.advance(hours=2)
        deliver_due(world.rt)
        assert len(world.x.routed("/2/tweets")) == 3 and world.x.tweets == []
        assert world.rt.repo.delivery_rows([DeliveryState.FAILED]) == []
        [doubt] = world.rt.repo.delivery_rows([DeliveryState.IN_DOUBT])
        assert doubt["next_attempt_at"] is None and "bridge resolve" in doubt["last_error"]

    def test_bad_credentials_pause_the_target(self, world):
        """A 401 pauses the target, keeps the post pending, and a restart lifts the pause."""
        self._one_pending(world)
        world.x.enqueue("POST", "/2/tweets", status=401, json={"title": "Unauthorized", "type": "about:blank",
                                                               "status": 401, "detail": "Unauthorized"})
        world.cycle()
        assert world.rt.repo.target_state("x").paused_reason
        deliver_due(world.rt)
        assert len(world.tweets()) == 1
        world.start()
        deliver_due(world.rt)
        assert len(world.tweets()) == 2 and len(world.x.posted) == 1

    def test_invalid_post_fails_and_others_go_on(self, world):
        """A 400 fails that delivery with X's message; the next story is still posted."""
        world.start()
        world.cycle()
        world.publish([antara_item(5), antara_item(4)] + world.stories)
        world.x.enqueue("POST", "/2/tweets", status=400, json={
            "errors": [{"parameters": {"text": ["x"]}, "message": "Text is invalid"}],
            "title": "Invalid Request", "detail": "One or more parameters to your request was invalid.",
            "type": "https://api.twitter.com/2/problems/invalid-request"})
        world.cycle()
        assert len(world.tweets()) == 2 and len(world.x.posted) == 1


class TestCrashSafety:
    def test_crash_between_sending_and_sent_posts_once(self, world):
        """A delivery left in `sending` by a crash after X accepted it ends up sent, with one tweet on X."""
        world.start()
        world.cycle()
        world.publish([antara_item(4)] + world.stories)
        poll(world.rt, world.rt.config.sources[0], force=True)
        [delivery] = world.rt.repo.due_deliveries("x", world.clock(), 10)
        x = world.rt.publishers["x"]
        frozen = freeze_post(world.rt, x, delivery)
        world.rt.repo.claim(delivery, world.clock(), frozen)
        # X got the post, then the process died before recording `sent`:
        x.publish(Post(text=frozen.text), "k")
        world.start()  # restart: the delivery is in doubt, and X's duplicate check settles the re-send
        deliver_due(world.rt)
        assert len(world.x.posted) == 1
        [row] = world.rt.repo.target_rows(world.clock() - timedelta(days=1))
        assert row["sent_today"] == 1 and row["spent_today"] == pytest.approx(0.20)  # what was paid then

    def test_resend_after_crash_uses_the_frozen_text(self, world):
        """A template changed between the crash and the restart does not change the re-sent text: X refuses the duplicate."""
        world.start()
        world.cycle()
        world.publish([antara_item(4)] + world.stories)
        poll(world.rt, world.rt.config.sources[0], force=True)
        [delivery] = world.rt.repo.due_deliveries("x", world.clock(), 10)
        x = world.rt.publishers["x"]
        frozen = freeze_post(world.rt, x, delivery)
        world.rt.repo.claim(delivery, world.clock(), frozen)
        x.publish(Post(text=frozen.text), "k")
        world.start(target={"template": "BARU: {title} {url}"})
        deliver_due(world.rt)
        assert [t["text"] for t in world.x.tweets] == [frozen.text]
        assert world.rt.repo.delivery_rows([DeliveryState.SENT])[0]["id"] == delivery.id


class TestPacing:
    def test_min_interval_and_daily_cap(self, world):
        """Posts to a target are spaced by min_interval and stop at max_per_day until the next local day."""
        world.start(bridge={"first_run": "all"}, target={"min_interval": "10m", "max_per_day": 2})
        world.cycle()
        assert len(world.tweets()) == 1
        deliver_due(world.rt)
        assert len(world.tweets()) == 1
        world.clock.advance(minutes=10)
        deliver_due(world.rt)
        assert len(world.tweets()) == 2
        world.clock.advance(minutes=10)
        deliver_due(world.rt)
        assert len(world.tweets()) == 2  # cap reached
        world.clock.advance(days=1)
        deliver_due(world.rt)
        assert len(world.tweets()) == 3


class TestSources:
    def test_failing_source_backs_off_and_does_not_stop_others(self, world):
        """A source answering 500 is recorded with its reason and backed off; the other source still posts."""
        world.feeds.add_status("/broken.xml", 500)
        raw = make_config({"broken": world.feeds.url("/broken.xml"), "antara": world.feeds.url("/rss/terkini.xml")},
                          x_base=world.x.base_url, bridge={"first_run": "all", "poll_interval": "5m"})
        rt = runtime(raw, world.tmp_path, world.clock)
        broken, antara = rt.config.sources
        assert poll(rt, broken).status == "error"
        assert poll(rt, antara).status == "ok"
        deliver_due(rt)
        assert len(world.tweets()) == 3
        world.clock.advance(minutes=1)
        assert poll(rt, broken).status == "skipped_backoff"
        world.clock.advance(minutes=5)
        assert poll(rt, broken).status == "error"
        assert rt.repo.source_state("broken").consecutive_failures == 2
        # the second failure waits twice the interval
        assert rt.repo.source_state("broken").next_poll_at == world.clock() + timedelta(minutes=10)
        close(rt)

    @pytest.mark.parametrize("asked", ["86400", "1" + "0" * 20])
    def test_retry_after_is_capped_and_the_log_says_so(self, world, asked):
        """A Retry-After beyond RETRY_AFTER_MAX waits only the cap, and the poll's log line names what was asked."""
        world.feeds.add_status("/busy.xml", 503, {"Retry-After": asked})
        rt = runtime(make_config({"busy": world.feeds.url("/busy.xml")}, x_base=world.x.base_url),
                     world.tmp_path, world.clock)
        with capture_logs() as logs:
            assert poll(rt, rt.config.sources[0]).status == "error"
        assert rt.repo.source_state("busy").next_poll_at == world.clock() + RETRY_AFTER_MAX
        [line] = [entry for entry in logs if entry["event"] == "poll failed"]
        assert line["retry_after_capped_s"] == int(asked) and line["retry_in_s"] == RETRY_AFTER_MAX.total_seconds()
        close(rt)

    def test_retry_after_under_the_cap_is_honoured(self, world):
        """A Retry-After under the cap is waited in full, longer than the backoff, and is not called capped."""
        world.feeds.add_status("/busy.xml", 429, {"Retry-After": "7200"})
        rt = runtime(make_config({"busy": world.feeds.url("/busy.xml")}, x_base=world.x.base_url),
                     world.tmp_path, world.clock)
        with capture_logs() as logs:
            poll(rt, rt.config.sources[0])
        assert rt.repo.source_state("busy").next_poll_at == world.clock() + timedelta(hours=2)
        assert "retry_after_capped_s" not in [e for e in logs if e["event"] == "poll failed"][0]
        close(rt)

    def test_not_a_feed_is_an_error_that_marks_nothing(self, world):
        """An HTML page where a feed was expected is a logged error, and nothing is stored or posted."""
        world.feeds.add("/page", "<html><body><p>Halo</p></body></html>", content_type="text/html")
        raw = make_config({"page": world.feeds.url("/page")}, x_base=world.x.base_url)
        rt = runtime(raw, world.tmp_path, world.clock)
        outcome = poll(rt, rt.config.sources[0])
        assert outcome.status == "error" and not rt.repo.source_state("page").initialised
        close(rt)

    def test_catchup_marks_everything_seen(self, world):
        """A catch-up records the feed's stories and drops pending ones without posting."""
        world.start()
        world.cycle()
        world.publish([antara_item(5), antara_item(4)] + world.stories)
        poll(world.rt, world.rt.config.sources[0], catchup=True, force=True)
        deliver_due(world.rt)
        assert world.tweets() == []


class TestDryRun:
    def test_dry_run_posts_nothing(self, world):
        """In dry run no request reaches X, and deliveries are recorded as skipped, not sent."""
        world.start(dry_run=True, bridge={"first_run": "all"})
        world.cycle()
        assert world.x.requests == []
        assert world.rt.repo.target_rows(world.clock() - timedelta(days=1))[0]["sent_today"] == 0
        assert world.rt.repo.due_deliveries("x", world.clock(), 10) == []
