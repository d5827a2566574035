"""bridge.publish.mastodon against the fake instance over real HTTP: the instance's own limit,
idempotency keys, photos with alt text, and every error class."""

from __future__ import annotations

import socket
from datetime import datetime, timedelta, timezone

import pytest

from bridge.compose import compose
from bridge.errors import ConfigError, PostRejected, RetryLater, TargetPaused
from bridge.model import Image, Item, Post
from bridge.publish.mastodon import LENGTH_RULE, MastodonPublisher, mastodon_length
from tests.fakes.mastodon import ACCESS_TOKEN, INVALID_TOKEN, RATE_LIMITED, instance_v2

NOW = datetime(2026, 11, 26, 3, 0, tzinfo=timezone.utc)
LINK = "https://www.antaranews.com/berita/4123456/menpora-buka-pon-" + "x" * 80
POST = Post(text=f"Menpora membuka PON {LINK}", link=LINK)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x01" * 200


def make(fake, *, instance: str | None = None, token: str = ACCESS_TOKEN, timeout: float = 5.0,
         visibility: str = "public") -> MastodonPublisher:
    return MastodonPublisher("kemenpora-masto", instance=instance or fake.base_url, access_token=token,
                             visibility=visibility, timeout=timeout, clock=lambda: NOW)


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
        assert mastodon_api.media[media_id] == {"data": PNG, "description": "Menpora di PON"}

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

    def test_server_error_retries(self, publisher, mastodon_api):
        """A 5xx is retried (the idempotency key makes the resend safe)."""
        mastodon_api.enqueue("POST", "/api/v1/statuses", status=503, body="<html>Service Unavailable</html>")
        with pytest.raises(RetryLater, match="answered 503"):
            publisher.publish(POST, "k")

    def test_not_found_pauses(self, publisher, mastodon_api):
        """A 404 pauses the target and points at the instance setting."""
        mastodon_api.enqueue("POST", "/api/v1/statuses", status=404, json={"error": "Record not found"})
        with pytest.raises(TargetPaused, match="check instance"):
            publisher.publish(POST, "k")

    def test_timeout(self, mastodon_api):
        """An instance slower than the timeout is retried, never waited for."""
        mastodon_api.enqueue("POST", "/api/v1/statuses", status=200, json={"id": "1"}, delay=5)
        publisher = make(mastodon_api, timeout=0.3)
        publisher._instance_known = True  # only the status call is slow
        with pytest.raises(RetryLater, match=r"could not reach Mastodon .* \(timed out\)"):
            publisher.publish(POST, "k")

    def test_connection_refused(self, mastodon_api):
        """Nothing listening is retried."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        with pytest.raises(RetryLater, match="no connection"):
            make(mastodon_api, instance=f"http://127.0.0.1:{port}").publish(POST, "k")


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
