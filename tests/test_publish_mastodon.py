"""bridge.publish.mastodon against the fake instance over real HTTP: the instance's own limit,
idempotency keys, photos with alt text, and every error class."""

from __future__ import annotations

import socket
from datetime import datetime, timedelta, timezone

import pytest

from bridge.compose import compose
from bridge.errors import ConfigError, InDoubt, PostRejected, RetryLater, TargetPaused
from bridge.model import Image, Item, Post
from bridge.publish.mastodon import LENGTH_RULE, MastodonPublisher, mastodon_length
from tests.fakes.http_fake import BAD_GATEWAY, DROP, GARBLED, GATEWAY_TIMEOUT, HANG, LATE, NO_ID
from tests.fakes.mastodon import ACCESS_TOKEN, INVALID_TOKEN, RATE_LIMITED, instance_v2

NOW = datetime(2026, 11, 26, 3, 0, tzinfo=timezone.utc)
LINK = "https://www.antaranews.com/berita/4123456/menpora-buka-pon-" + "x" * 80
POST = Post(text=f"Menpora membuka PON {LINK}", link=LINK)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x01" * 200


GIF = b"GIF89a" + b"\x03" * 200


def make(fake, *, instance: str | None = None, token: str = ACCESS_TOKEN, timeout: float = 5.0,
         visibility: str = "public", clock=lambda: NOW, sleep=None) -> MastodonPublisher:
    return MastodonPublisher("kemenpora-masto", instance=instance or fake.base_url, access_token=token,
                             visibility=visibility, timeout=timeout, clock=clock,
                             sleep=sleep or (lambda seconds: pytest.fail("slept for real")))


@pytest.fixture
def publisher(mastodon_api):
    publisher = make(mastodon_api)
    yield publisher
    publisher.close()


class TestLengthRule:
    def test_counts_graphemes_and_links(self):
        """A link counts 23 whatever its length, and a family emoji or an accented letter counts one."""
        assert mastodon_length(f"Baca {LINK}") == 5 + 23
        assert mastodon_length("👨‍👩‍👧 e\u0301") == 3
        assert mastodon_length("antaranews.com") == 14  # no protocol: Mastodon does not shorten it

    def test_default_until_the_instance_answers(self, mastodon_api):
        """Before any post the rule is Mastodon's default, 500 characters."""
        assert LENGTH_RULE.max_length == 500

    def test_instance_limit_read_once(self, mastodon_api):
        """The instance's max_characters and URL weight are read lazily, once, and used to compose."""
        mastodon_api.instance = instance_v2(max_characters=1000, url_weight=30)
        publisher = make(mastodon_api)
        assert publisher.length_rule.max_length == 1000 and publisher.length_rule.measure(LINK) == 30
        publisher.length_rule
        assert len(mastodon_api.routed("/api/v2/instance")) == 1

    def test_instance_unreachable_keeps_defaults(self, mastodon_api):
        """When /api/v2/instance fails, 500/23 apply and the post still goes out."""
        mastodon_api.enqueue("GET", "/api/v2/instance", status=503, json={"error": "Service Unavailable"})
        publisher = make(mastodon_api)
        assert publisher.length_rule.max_length == 500
        assert publisher.publish(POST, "k")

    def test_at_the_edge(self, publisher, mastodon_api):
        """A post composed to exactly the instance's limit is accepted with its link whole; one more is refused."""
        item = Item(key="k", title="Atlet " * 200, link=LINK)
        post = compose("{title} {url}", item, source="antara", rule=publisher.length_rule)
        assert publisher.length_rule.measure(post.text) <= 500 and post.text.endswith(LINK)
        publisher.publish(post, "k1")
        with pytest.raises(PostRejected, match="character limit of 500 exceeded"):
            publisher.publish(Post(text="a" * 501), "k2")


class TestPublish:
    def test_status_with_idempotency_key(self, publisher, mastodon_api):
        """A status is posted with the delivery's Idempotency-Key and the configured visibility; its id returned."""
        remote_id = publisher.publish(POST, "bridge-delivery-7")
        [status] = mastodon_api.statuses
        assert remote_id == status["id"] and status["text"] == POST.text and status["visibility"] == "public"
        assert mastodon_api.routed("/api/v1/statuses")[0].headers["Idempotency-Key"] == "bridge-delivery-7"

    def test_same_key_posts_once(self, publisher, mastodon_api):
        """A retry with the same key (after a crash or a lost answer) returns the first status, not a second."""
        first = publisher.publish(POST, "bridge-delivery-7")
        assert publisher.publish(POST, "bridge-delivery-7") == first and len(mastodon_api.statuses) == 1

    def test_visibility(self, mastodon_api):
        """visibility = "unlisted" is sent as such."""
        make(mastodon_api, visibility="unlisted").publish(POST, "k")
        assert mastodon_api.statuses[0]["visibility"] == "unlisted"

    def test_photo_with_alt_text(self, publisher, mastodon_api):
        """A photo is uploaded with its alt text and attached to the status."""
        image = Image(data=PNG, mime_type="image/png", url="http://127.0.0.1/f.png", alt_text="Menpora di PON")
        publisher.publish(Post(text=POST.text, link=LINK, image=image), "k")
        [status] = mastodon_api.statuses
        [media_id] = status["media"]
        assert mastodon_api.media[media_id]["data"] == PNG and mastodon_api.media[media_id]["description"] == "Menpora di PON"

    def test_failed_upload_posts_without_photo(self, publisher, mastodon_api):
        """When the upload fails, the status goes out without the photo and says why."""
        mastodon_api.enqueue("POST", "/api/v2/media", status=422, json={"error": "Validation failed: File type not supported"})
        image = Image(data=PNG, mime_type="image/png", url="http://127.0.0.1/f.png")
        publisher.publish(Post(text=POST.text, image=image), "k")
        assert mastodon_api.statuses[0]["media"] == [] and "File type not supported" in publisher.image_problem


class TestErrors:
    def test_unauthorized_pauses(self, mastodon_api):
        """A 401 pauses the target, naming the variable and the scopes, never the token."""
        with pytest.raises(TargetPaused, match=r"BRIDGE_KEMENPORA_MASTO_ACCESS_TOKEN.*write:statuses") as caught:
            make(mastodon_api, token="mst-someOtherToken0000").publish(POST, "k")
        assert "The access token is invalid" in str(caught.value) and "someOtherToken" not in str(caught.value)

    def test_forbidden_pauses(self, publisher, mastodon_api):
        """A 403 (a token without the write scope) pauses the target."""
        mastodon_api.enqueue("POST", "/api/v1/statuses", status=403,
                             json={"error": "This action is outside the authorized scopes"})
        with pytest.raises(TargetPaused, match="outside the authorized scopes"):
            publisher.publish(POST, "k")

    def test_rate_limit_waits_for_reset(self, publisher, mastodon_api):
        """A 429 waits until X-RateLimit-Reset (an ISO time) and does not count as an attempt."""
        mastodon_api.enqueue("POST", "/api/v1/statuses", status=429, json=RATE_LIMITED, headers={
            "X-RateLimit-Limit": "300", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "2026-11-26T03:04:30.000Z"})
        with pytest.raises(RetryLater, match="rate limit") as caught:
            publisher.publish(POST, "k")
        assert caught.value.retry_at == NOW + timedelta(minutes=4, seconds=30) and not caught.value.counts_as_attempt

    def test_rate_limit_without_reset(self, publisher, mastodon_api):
        """A 429 whose reset is missing or past waits five minutes."""
        mastodon_api.enqueue("POST", "/api/v1/statuses", status=429, json=RATE_LIMITED)
        with pytest.raises(RetryLater) as caught:
            publisher.publish(POST, "k")
        assert caught.value.retry_at == NOW + timedelta(minutes=5)

    def test_unprocessable_rejects(self, publisher, mastodon_api):
        """A 422 rejects the post with Mastodon's message."""
        mastodon_api.enqueue("POST", "/api/v1/statuses", status=422, json={"error": "Validation failed: Text can't be blank"})
        with pytest.raises(PostRejected, match=r"refused the post \(422\): Validation failed: Text can't be blank"):
            publisher.publish(POST, "k")

    @pytest.mark.parametrize("status", [500, 502, 503, 504])
    def test_server_error_on_a_status_is_in_doubt(self, publisher, mastodon_api, status):
        """A 500-504 to POST /api/v1/statuses leaves the status in doubt (it may have been made)."""
        mastodon_api.enqueue("POST", "/api/v1/statuses", status=status, body="<html>Service Unavailable</html>")
        with pytest.raises(InDoubt, match=f"answered {status}.*may exist"):
            publisher.publish(POST, "k")

    def test_other_server_error_is_retried(self, publisher, mastodon_api):
        """A 507 to POST /api/v1/statuses says nothing was made: retried."""
        mastodon_api.enqueue("POST", "/api/v1/statuses", status=507, body="<html>Insufficient Storage</html>")
        with pytest.raises(RetryLater, match="answered 507"):
            publisher.publish(POST, "k")

    def test_server_error_on_a_read_is_retried(self, publisher, mastodon_api):
        """A 503 to a call that makes nothing (verify_credentials) is retried, never in doubt."""
        mastodon_api.enqueue("GET", "/api/v1/accounts/verify_credentials", status=503, body="<html>down</html>")
        with pytest.raises(RetryLater, match="answered 503"):
            publisher.verify()

    @pytest.mark.parametrize(("fault", "reason"), [
        (DROP, "connection to Mastodon broke after the post was sent"), (GARBLED, "unreadable"),
        (NO_ID, "without a status id"), (BAD_GATEWAY, "answered 502"), (GATEWAY_TIMEOUT, "answered 504"),
        (LATE, "did not answer within 0.5s after receiving the post"),
        (HANG, "did not answer within 0.5s after receiving the post"),
    ])
    def test_lost_answer_is_in_doubt(self, mastodon_api, fault, reason):
        """The instance made the status and its answer was lost: in doubt, and the status exists once."""
        publisher = make(mastodon_api, timeout=0.5)
        publisher._instance_known = True
        mastodon_api.fail("POST", "/api/v1/statuses", fault)
        with pytest.raises(InDoubt, match=reason):
            publisher.publish(POST, "k")
        assert len(mastodon_api.statuses) == 1

    def test_not_found_pauses(self, publisher, mastodon_api):
        """A 404 pauses the target and points at the instance setting."""
        mastodon_api.enqueue("POST", "/api/v1/statuses", status=404, json={"error": "Record not found"})
        with pytest.raises(TargetPaused, match="check instance"):
            publisher.publish(POST, "k")

    def test_timeout(self, mastodon_api):
        """An instance slower than the timeout after receiving the status leaves it in doubt, never waited for."""
        mastodon_api.enqueue("POST", "/api/v1/statuses", status=200, json={"id": "1"}, delay=5)
        publisher = make(mastodon_api, timeout=0.3)
        publisher._instance_known = True  # only the status call is slow
        with pytest.raises(InDoubt, match=r"^Mastodon did not answer within 0.3s after receiving the post$"):
            publisher.publish(POST, "k")

    def test_connection_refused(self, mastodon_api):
        """Nothing listening is retried."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        with pytest.raises(RetryLater, match=f"^could not reach Mastodon at http://127.0.0.1:{port}: Connection refused$"):
            make(mastodon_api, instance=f"http://127.0.0.1:{port}").publish(POST, "k")


class TestKeyWindow:
    def test_fake_forgets_a_key_after_an_hour(self, mastodon_api, clock):
        """Within the hour a repeated key returns the first status; after it the same request makes a second."""
        publisher = make(mastodon_api, clock=clock)
        first = publisher.publish(POST, "bridge-1-7")
        clock.advance(minutes=59)
        assert publisher.publish(POST, "bridge-1-7") == first
        clock.advance(minutes=2)
        assert publisher.publish(POST, "bridge-1-7") != first and len(mastodon_api.statuses) == 2

    def test_window_within_the_hour(self):
        """The publisher trusts the key for less than the hour the instance keeps it."""
        assert MastodonPublisher.duplicate_safe_for < timedelta(hours=1)


class TestFindPost:
    def test_finds_the_status_after_the_key_window(self, mastodon_api, clock):
        """After the key's hour, the status lost in doubt is found among the account's own statuses by text and link."""
        publisher = make(mastodon_api, clock=clock)
        since = clock()
        mastodon_api.fail("POST", "/api/v1/statuses", DROP)
        with pytest.raises(InDoubt):
            publisher.publish(POST, "k")
        clock.advance(hours=2)
        assert publisher.find_post(POST, since=since) == mastodon_api.statuses[0]["id"]
        [read] = mastodon_api.routed("/api/v1/accounts/109876543210/statuses")
        assert read.headers["Authorization"] == f"Bearer {ACCESS_TOKEN}" and read.query["limit"] == "40"

    def test_not_found_when_absent(self, publisher, mastodon_api):
        """No status with the post's text: None (the pipeline then sends it)."""
        publisher.publish(Post(text="Berita lain https://example.id/x", link="https://example.id/x"), "k")
        assert publisher.find_post(POST, since=NOW) is None

    def test_older_status_is_not_it(self, mastodon_api, clock):
        """A status with the same text made before `since` (an earlier story) does not count."""
        publisher = make(mastodon_api, clock=clock)
        publisher.publish(POST, "k")
        clock.advance(minutes=10)
        assert publisher.find_post(POST, since=clock()) is None

    def test_text_with_hashtags_and_lines_matches(self, publisher, mastodon_api):
        """Mastodon's HTML (hashtag links, link spans, line breaks, escaped characters) reads back as the posted text."""
        post = Post(text=f"Menpora & <PON> #Olahraga\n\nBaca: {LINK}", link=LINK)
        remote = publisher.publish(post, "k")
        assert publisher.find_post(post, since=NOW) == remote

    def test_pages_back_until_since(self, publisher, mastodon_api):
        """The status is found behind a full page of newer ones (max_id paging)."""
        remote = publisher.publish(POST, "k")
        for n in range(45):
            publisher.publish(Post(text=f"lain {n}"), f"k{n}")
        assert publisher.find_post(POST, since=NOW) == remote
        assert len(mastodon_api.routed("/api/v1/accounts/109876543210/statuses")) == 2

    def test_fake_caps_the_limit_and_checks_the_token(self, publisher, mastodon_api):
        """The fake, like Mastodon, gives at most 40 statuses whatever the limit, and refuses a bad token."""
        import requests
        for n in range(45):
            publisher.publish(Post(text=f"lain {n}"), f"k{n}")
        url = f"{mastodon_api.base_url}/api/v1/accounts/109876543210/statuses"
        good = {"Authorization": f"Bearer {ACCESS_TOKEN}"}
        assert len(requests.get(url, params={"limit": 100}, headers=good, timeout=5).json()) == 40
        assert len(requests.get(url, headers=good, timeout=5).json()) == 20
        assert requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=5).status_code == 401

    def test_cannot_ask_is_a_publish_error(self, publisher, mastodon_api):
        """When the account cannot be read now, find_post raises a PublishError (the pipeline asks later)."""
        mastodon_api.enqueue("GET", "/api/v1/accounts/verify_credentials", status=503, body="down")
        with pytest.raises(RetryLater):
            publisher.find_post(POST, since=NOW)


class TestProcessedMedia:
    def test_gif_is_polled_until_processed(self, mastodon_api):
        """A GIF answered 202 is polled at GET /api/v1/media/:id until ready, then attached."""
        slept = []
        publisher = make(mastodon_api, sleep=slept.append)
        mastodon_api.processing_polls = 2
        image = Image(data=GIF, mime_type="image/gif", url="http://127.0.0.1/a.gif", alt_text="animasi")
        publisher.publish(Post(text=POST.text, link=LINK, image=image), "k")
        [status] = mastodon_api.statuses
        assert len(status["media"]) == 1 and publisher.image_problem is None
        assert len(mastodon_api.routed(f"/api/v1/media/{status['media'][0]}")) == 3 and sum(slept) == 6

    def test_not_ready_in_time_posts_without_it(self, mastodon_api):
        """A GIF still processed after the bounded wait is left out: the status goes out and says why."""
        slept = []
        publisher = make(mastodon_api, sleep=slept.append)
        mastodon_api.processing_polls = 1000
        image = Image(data=GIF, mime_type="image/gif", url="http://127.0.0.1/a.gif", alt_text="animasi")
        publisher.publish(Post(text=POST.text, link=LINK, image=image), "k")
        assert [s["media"] for s in mastodon_api.statuses] == [[]]
        assert "not processed" in publisher.image_problem and sum(slept) == 30

    def test_failed_processing_posts_without_it(self, mastodon_api):
        """A GIF whose processing fails (422 from GET /api/v1/media/:id) is left out: the status goes out and says why."""
        publisher = make(mastodon_api, sleep=lambda seconds: None)
        mastodon_api.processing_polls, mastodon_api.processing_fails = 1, True
        image = Image(data=GIF, mime_type="image/gif", url="http://127.0.0.1/a.gif", alt_text="animasi")
        publisher.publish(Post(text=POST.text, link=LINK, image=image), "k")
        assert [s["media"] for s in mastodon_api.statuses] == [[]]
        assert "File is invalid" in publisher.image_problem

    def test_fake_refuses_an_unprocessed_attachment(self, publisher, mastodon_api):
        """The fake, like Mastodon, refuses a status attaching media still processed, with 422."""
        mastodon_api.processing_polls = 5
        attachment = publisher._client.media_post(GIF, mime_type="image/gif", file_name="a.gif")
        with pytest.raises(PostRejected, match="have not finished processing"):
            publisher._call("POST /api/v1/statuses", lambda: publisher._client.status_post(
                "x", media_ids=[attachment["id"]]))


class TestVerifyAndConfig:
    def test_verify(self, publisher, mastodon_api):
        """verify() names the account as @user@instance."""
        assert publisher.verify() == f"@kemenpora@{mastodon_api.base_url.split('://')[1]}"

    def test_verify_bad_token(self, mastodon_api):
        """verify() with a bad token pauses."""
        mastodon_api.enqueue("GET", "/api/v1/accounts/verify_credentials", status=401, json=INVALID_TOKEN)
        with pytest.raises(TargetPaused):
            make(mastodon_api).verify()

    def test_missing_token(self):
        """A live target without a token is a configuration error naming the variable."""
        with pytest.raises(ConfigError, match="BRIDGE_KEMENPORA_MASTO_ACCESS_TOKEN"):
            MastodonPublisher("kemenpora-masto", instance="https://mastodon.social", access_token="")
