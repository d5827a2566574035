"""Posts on X done right, end to end against the fake X API: photos, pacing, budget, quiet hours,
stale stories, hashtags. Time is the injected clock; nothing sleeps."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import structlog

from bridge.errors import ConfigError
from bridge.model import DeliveryState
from bridge.pipeline import deliver_due, poll
from bridge.publish.x import x_weighted_length
from bridge.service import close, prepare
from bridge.store.lock import acquire_run_lock
from tests.helpers import WIB, antara_feed, antara_item, make_config, runtime

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x01" * 200
JPEG = b"\xff\xd8\xff\xe0" + b"\x02" * 300
GIF = b"GIF89a" + b"\x03" * 300


class Site:
    """A news feed and its photos on the local feed server, the fake X API, and the bridge."""

    def __init__(self, feeds, x, tmp_path, clock):
        self.feeds, self.x, self.tmp_path, self.clock = feeds, x, tmp_path, clock
        self.rt = None
        feeds.add("/rss.xml", antara_feed([antara_item(99)]))

    def photo(self, n: int, body: bytes = JPEG, content_type: str = "image/jpeg") -> str:
        self.feeds.add(f"/foto/{n}.jpg", body, content_type=content_type)
        return self.feeds.url(f"/foto/{n}.jpg")

    def start(self, **config):
        """Start the bridge and let it see the feed once (one old story): a first run posts nothing."""
        raw = make_config({"antara": self.feeds.url("/rss.xml")}, x_base=self.x.base_url, **config)
        self.rt = runtime(raw, self.tmp_path, self.clock)
        prepare(self.rt, acquire_run_lock(self.rt.repo.engine))
        poll(self.rt, self.rt.config.sources[0], force=True)
        return self.rt

    def publish(self, *stories) -> None:
        self.feeds.edit("/rss.xml", body=antara_feed(list(stories)))
        poll(self.rt, self.rt.config.sources[0], force=True)

    def tweets(self) -> list[dict]:
        return self.x.tweets

    def close(self) -> None:
        close(self.rt)


@pytest.fixture
def site(feed_server, x_api, tmp_path, clock):
    site = Site(feed_server, x_api, tmp_path, clock)
    yield site
    if site.rt:
        site.close()


def stamp(moment: datetime) -> str:
    return str(int(moment.timestamp()))


class TestPhotos:
    def test_photo_uploaded_with_alt_text_and_attached(self, site):
        """A story's photo is downloaded, uploaded through api_base, given the title as alt text, and attached."""
        site.start()
        site.publish(antara_item(1, image=site.photo(1, PNG, "image/png")))
        deliver_due(site.rt)
        [tweet] = site.tweets()
        [media_id] = tweet["media_ids"]
        media = site.x.media[media_id]
        assert media["data"] == PNG and media["category"] == "tweet_image"
        assert media["alt_text"] == "Menpora dorong atlet muda berprestasi, berita nomor 1"
        upload = next(r for r in site.x.requests if r.route == "/2/media/upload")
        assert upload.auth_problem is None  # signed with OAuth 1.0a for the URL it reached

    def test_upload_sends_exactly_the_spec_fields(self, site):
        """POST /2/media/upload carries exactly `media` and `media_category` (the spec forbids any other field)."""
        site.start()
        site.publish(antara_item(1, image=site.photo(1, JPEG, "image/jpg")))
        deliver_due(site.rt)
        [upload] = site.x.routed("/2/media/upload")
        assert set(upload.body) == {"media", "media_category"} and upload.body["media"] == JPEG
        assert site.tweets()[0]["media_ids"]

    def test_fake_refuses_unknown_upload_fields(self, x_api):
        """The fake answers an upload with a field outside the spec with the spec's 400 invalid-request problem."""
        import requests
        from requests_oauthlib import OAuth1

        from tests.fakes.x_api import CREDENTIALS
        auth = OAuth1(CREDENTIALS["consumer_key"], CREDENTIALS["consumer_secret"], CREDENTIALS["access_token"],
                      CREDENTIALS["access_token_secret"])
        response = requests.post(f"{x_api.base_url}/2/media/upload", auth=auth, timeout=5,
                                 data={"media_category": "tweet_image", "media_type": "image/png"},
                                 files={"media": ("photo", PNG, "image/png")})
        assert response.status_code == 400
        assert response.json()["type"] == "https://api.x.com/2/problems/invalid-request"
        assert response.json()["parameter"] == "media_type" and x_api.media == {}

    def test_gif_left_out_with_a_log_line(self, site):
        """A GIF (it would need X's chunked upload) is not uploaded: the post goes out without it and the log says why."""
        site.start()
        site.publish(antara_item(1, image=site.photo(1, GIF, "image/gif")))
        with structlog.testing.capture_logs() as logs:
            deliver_due(site.rt)
        assert [t["media_ids"] for t in site.tweets()] == [[]] and site.x.routed("/2/media/upload") == []
        assert any(e["event"] == "photo not attached" and "chunked upload" in e["reason"] for e in logs)

    @pytest.mark.parametrize("problem", ["missing", "not an image", "too big"])
    def test_bad_photo_never_loses_the_post(self, site, problem):
        """A missing, non-image or oversized photo is left out, the reason logged, and the story still posted."""
        site.start()
        if problem == "missing":
            url = site.feeds.url("/foto/none.jpg")
            site.feeds.add_status("/foto/none.jpg", 404)
        elif problem == "not an image":
            url = site.photo(1, b"<html>Not found</html>", "image/jpeg")
        else:
            site.feeds.add_huge("/foto/huge.jpg", 6 * 1024 * 1024)
            url = site.feeds.url("/foto/huge.jpg")
        site.publish(antara_item(1, image=url))
        with structlog.testing.capture_logs() as logs:
            deliver_due(site.rt)
        assert [t["media_ids"] for t in site.tweets()] == [[]]
        [warning] = [e for e in logs if e["event"] == "photo not attached"]
        assert warning["image_url"] == url and warning["reason"]

    def test_upload_failure_posts_without_photo(self, site):
        """When X's media upload fails, the post goes out without the photo and says why in the log."""
        site.start()
        site.x.enqueue("POST", "/2/media/upload", status=503, json={"title": "Service Unavailable"})
        site.publish(antara_item(1, image=site.photo(1)))
        with structlog.testing.capture_logs() as logs:
            deliver_due(site.rt)
        assert [t["media_ids"] for t in site.tweets()] == [[]]
        assert any(e["event"] == "photo not attached" and "503" in e["reason"] for e in logs)

    def test_alt_text_failure_keeps_the_photo(self, site):
        """If only the alt text cannot be set, the photo is still attached."""
        site.start()
        site.x.enqueue("POST", "/2/media/metadata", status=500, json={"title": "Internal Error"})
        site.publish(antara_item(1, image=site.photo(1)))
        deliver_due(site.rt)
        assert len(site.tweets()[0]["media_ids"]) == 1

    @pytest.mark.parametrize("where", ["target", "source"])
    def test_images_false_turns_photos_off(self, site, where):
        """`images = false` on the target or the source posts text only and downloads nothing."""
        site.start(**{where: {"images": False}})
        site.publish(antara_item(1, image=site.photo(1)))
        deliver_due(site.rt)
        assert site.tweets()[0]["media_ids"] == [] and not site.feeds.requests_to("/foto/1.jpg")


class TestPacing:
    def test_oldest_story_first(self, site):
        """Stories found together go out oldest first."""
        site.start()
        site.publish(antara_item(1), antara_item(3), antara_item(2))
        deliver_due(site.rt)
        assert ["nomor 3" in t["text"] for t in site.tweets()] == [True, False, False]
        assert "nomor 1" in site.tweets()[-1]["text"]

    def test_429_mid_batch_defers_the_rest_until_reset(self, site):
        """A 429 in the middle of a batch holds the rest, without a crash, and they go out after the reset."""
        site.start()
        site.publish(antara_item(1), antara_item(2), antara_item(3))
        reset = site.clock() + timedelta(minutes=12)
        site.x.enqueue("POST", "/2/tweets", status=201, json={"data": {"id": "1", "text": "x"}})
        site.x.enqueue("POST", "/2/tweets", status=429, json={"title": "Too Many Requests", "status": 429,
                                                              "detail": "Too Many Requests", "type": "about:blank"},
                       headers={"x-rate-limit-limit": "100", "x-rate-limit-remaining": "0",
                                "x-rate-limit-reset": stamp(reset)})
        deliver_due(site.rt)
        assert len([r for r in site.x.requests if r.route == "/2/tweets"]) == 2
        site.clock.advance(minutes=11)
        deliver_due(site.rt)
        assert len(site.tweets()) == 0  # the scripted 201 was not recorded as a real post; nothing new yet
        site.clock.advance(minutes=2)
        deliver_due(site.rt)
        assert len(site.tweets()) == 2

    def test_quota_used_up_on_success_waits_for_reset(self, site):
        """A 201 whose x-rate-limit-remaining is 0 holds the next post until x-rate-limit-reset."""
        site.start()
        reset = site.clock() + timedelta(minutes=15)
        site.x.rate_limit = {"limit": 100, "remaining": 1, "reset": int(reset.timestamp())}
        site.publish(antara_item(1), antara_item(2))
        deliver_due(site.rt)
        assert len(site.tweets()) == 1
        site.clock.advance(minutes=16)
        site.x.rate_limit = None
        deliver_due(site.rt)
        assert len(site.tweets()) == 2

    def test_daily_budget_lets_exactly_what_fits(self, site):
        """A $0.50 day at $0.20 per link post lets exactly two posts out and keeps the rest pending."""
        site.start(target={"budget_per_day": 0.50})
        site.publish(*(antara_item(n) for n in (1, 2, 3, 4)))
        deliver_due(site.rt)
        deliver_due(site.rt)
        assert len(site.tweets()) == 2
        assert len(site.rt.repo.due_deliveries("x", site.clock(), 10)) == 2
        assert site.rt.repo.spent_since("x", site.clock() - timedelta(hours=1)) == pytest.approx(0.40)
        site.clock.advance(days=1)  # a new local day, a new budget
        deliver_due(site.rt)
        assert len(site.tweets()) == 4

    def test_budget_counts_the_alt_text_calls(self, site):
        """Each photo's alt-text call is billed ($0.005): a $0.40 day fits one link post with a photo, not two."""
        site.start(target={"budget_per_day": 0.40})
        site.publish(*(antara_item(n, image=site.photo(n, PNG, "image/png")) for n in (1, 2)))
        deliver_due(site.rt)
        assert len(site.tweets()) == 1
        assert site.rt.repo.spent_since("x", site.clock() - timedelta(hours=1)) == pytest.approx(0.205)

    def test_budget_edge_counts_post_without_link_at_its_price(self, site):
        """A post without a URL costs price_per_post, so a budget can fit exactly that."""
        site.start(target={"budget_per_day": 0.03, "template": "{title}"})
        site.publish(antara_item(1), antara_item(2), antara_item(3))
        deliver_due(site.rt)
        assert len(site.tweets()) == 2

    def test_quiet_hours_across_midnight(self, site, clock):
        """Posts found at 23:00 WIB wait for the end of a 22:00-05:00 window, then go out spaced by min_interval."""
        clock.now = datetime(2026, 11, 26, 23, 0, tzinfo=WIB).astimezone(timezone.utc)
        site.start(target={"quiet_hours": "22:00-05:00", "min_interval": "10m"})
        site.publish(antara_item(1), antara_item(2))
        deliver_due(site.rt)
        clock.now = datetime(2026, 11, 27, 4, 59, tzinfo=WIB).astimezone(timezone.utc)
        deliver_due(site.rt)
        assert site.tweets() == []
        clock.now = datetime(2026, 11, 27, 5, 0, tzinfo=WIB).astimezone(timezone.utc)
        deliver_due(site.rt)
        assert len(site.tweets()) == 1
        clock.advance(minutes=10)
        deliver_due(site.rt)
        assert len(site.tweets()) == 2


class TestStories:
    def test_story_older_than_max_age_is_skipped(self, site):
        """With max_age = "2d", a new story dated three days ago is recorded as skipped, never posted."""
        site.start(source={"max_age": "2d"})
        old = antara_item(1, published=site.clock() - timedelta(days=3))
        site.publish(old, antara_item(2))
        deliver_due(site.rt)
        assert len(site.tweets()) == 1 and "nomor 2" in site.tweets()[0]["text"]
        skipped = site.rt.repo.delivery_rows([DeliveryState.SKIPPED])
        assert any(row["last_error"].startswith("stale") for row in skipped)

    def test_hashtags_from_settings_and_categories(self, site):
        """Configured hashtags and the story's categories become valid CamelCase tags."""
        site.start(source={"hashtags": ["Kemenpora", "pemuda & olahraga"], "category_hashtags": True})
        site.publish(antara_item(1, categories=("Sepak Bola", "kemenpora")))
        deliver_due(site.rt)
        text = site.tweets()[0]["text"]
        assert text.endswith("#Kemenpora #PemudaOlahraga #SepakBola")

    def test_hashtags_dropped_before_the_title_is_shortened(self, site):
        """A long Indonesian title keeps more of itself: tags go first, and the link stays whole."""
        site.start(source={"hashtags": ["Kemenpora", "Olahraga"]})
        title = ("Menteri Pemuda dan Olahraga Republik Indonesia meresmikan gelanggang olahraga baru bagi "
                 "atlet muda di Surabaya, Jawa Timur, dan mengajak seluruh pemuda untuk berprestasi di "
                 "tingkat nasional maupun internasional demi mengharumkan nama bangsa dan negara")
        site.publish(antara_item(1, title=title))
        deliver_due(site.rt)
        text = site.tweets()[0]["text"]
        assert "#" not in text and x_weighted_length(text) <= 280
        assert "https://www.antaranews.com/berita/4000001/menpora-berita-1" in text


class TestConfig:
    def test_template_without_room_for_the_link_is_a_config_error(self, tmp_path, clock):
        """A template whose own text leaves no room for a link is refused at start."""
        raw = make_config({"a": "https://example.com/rss"}, target={"template": "x" * 270 + " {url}"})
        with pytest.raises(ConfigError, match="no room for the link"):
            runtime(raw, tmp_path, clock)

    def test_new_target_keys_are_validated(self, tmp_path, clock):
        """Bad quiet hours, a negative budget and a non-list of hashtags are reported with their key paths."""
        raw = make_config({"a": "https://example.com/rss"}, target={"quiet_hours": "late", "budget_per_day": -1},
                          source={"hashtags": "Kemenpora", "max_age": "old"})
        with pytest.raises(ConfigError) as info:
            runtime(raw, tmp_path, clock)
        text = "\n".join(info.value.problems)
        for key in ("targets.x.quiet_hours", "targets.x.budget_per_day", "(a).hashtags", "(a).max_age"):
            assert key in text
