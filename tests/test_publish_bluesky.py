"""bridge.publish.bluesky against the fake PDS over real HTTP: graphemes, byte-offset facets, link
cards with thumbnails, one session reused and refreshed, and every error class."""

from __future__ import annotations

import socket
from datetime import datetime, timedelta, timezone

import pytest

from bridge.compose import compose
from bridge.errors import ConfigError, PostRejected, RetryLater, TargetPaused
from bridge.model import Image, Item, Post
from bridge.publish.bluesky import BlueskyPublisher, LENGTH_RULE, bluesky_length
from tests.fakes.bluesky import APP_PASSWORD, BAD_LOGIN, DID, HANDLE

NOW = datetime(2026, 11, 26, 3, 0, tzinfo=timezone.utc)
LINK = "https://www.antaranews.com/berita/4123456/menpora-buka-pon"
POST = Post(text=f"Menpora 🏸 buka PON — Peparnas {LINK} #Kemenpora", link=LINK, title="Menpora buka PON",
            summary="Jakarta (ANTARA) - Menteri Pemuda dan Olahraga membuka PON.")
PNG = b"\x89PNG\r\n\x1a\n" + b"\x01" * 200


def make(fake, *, service: str | None = None, password: str = APP_PASSWORD, timeout: float = 5.0):
    return BlueskyPublisher("kemenpora-bsky", service=service or fake.base_url, handle=HANDLE,
                            app_password=password, timeout=timeout, clock=lambda: NOW)


@pytest.fixture
def publisher(bluesky_api):
    publisher = make(bluesky_api)
    yield publisher
    publisher.close()


class TestLengthRule:
    def test_graphemes_and_bytes(self):
        """A family emoji counts one grapheme; text heavy in bytes counts a tenth of its bytes when more."""
        assert bluesky_length("👨‍👩‍👧" + "a" * 20) == 21 and bluesky_length("abc") == 3
        assert bluesky_length("👨‍👩‍👧" * 100) == 180  # 1800 bytes: over 300 graphemes' worth of bytes

    def test_at_the_edge(self, publisher, bluesky_api):
        """A post composed to 300 graphemes is accepted with its link whole; 301 is refused."""
        item = Item(key="k", title="Atlet " * 100, link=LINK)
        post = compose("{title} {url}", item, source="antara", rule=LENGTH_RULE)
        assert 295 <= bluesky_length(post.text) <= 300 and post.text.endswith(LINK)
        publisher.publish(post, "k")
        with pytest.raises(PostRejected, match="longer than 300 graphemes"):
            publisher.publish(Post(text="a" * 301), "k2")


class TestPublish:
    def test_facets_by_byte_offsets(self, publisher, bluesky_api):
        """The link and the hashtag get facets whose UTF-8 byte ranges cover them exactly (after an emoji)."""
        uri = publisher.publish(POST, "k")
        [post] = bluesky_api.posts
        assert uri == f"at://{DID}/app.bsky.feed.post/{post['rkey']}" and post["repo"] == DID
        features = [f["features"][0] for f in post["record"]["facets"]]
        assert features == [{"$type": "app.bsky.richtext.facet#link", "uri": LINK},
                            {"$type": "app.bsky.richtext.facet#tag", "tag": "Kemenpora"}]
        assert post["record"]["langs"] == ["id"]

    def test_link_card_with_thumbnail(self, publisher, bluesky_api):
        """The story's link becomes a card with its title, summary and the photo as thumbnail blob."""
        image = Image(data=PNG, mime_type="image/png", url="http://127.0.0.1/f.png")
        publisher.publish(Post(text=POST.text, link=LINK, title=POST.title, summary=POST.summary, image=image), "k")
        external = bluesky_api.posts[0]["record"]["embed"]["external"]
        assert (external["uri"], external["title"], external["description"]) == (LINK, POST.title, POST.summary)
        assert bluesky_api.blobs[external["thumb"]["ref"]["$link"]] == PNG

    def test_card_without_photo(self, publisher, bluesky_api):
        """Without a photo the card has no thumbnail and no blob is uploaded."""
        publisher.publish(POST, "k")
        assert "thumb" not in bluesky_api.posts[0]["record"]["embed"]["external"] and not bluesky_api.blobs

    def test_oversized_thumbnail_is_left_out(self, publisher, bluesky_api):
        """A thumbnail the PDS refuses as too large is left out; the post and its card go out."""
        image = Image(data=b"\xff\xd8\xff" + b"\0" * 1_000_001, mime_type="image/jpeg", url="http://127.0.0.1/f.jpg")
        publisher.publish(Post(text=POST.text, link=LINK, title="t", image=image), "k")
        assert "BlobTooLarge" in publisher.image_problem and len(bluesky_api.posts) == 1

    def test_session_reused(self, publisher, bluesky_api):
        """Three posts cost one createSession."""
        for n in range(3):
            publisher.publish(Post(text=f"berita {n}"), f"k{n}")
        assert bluesky_api.sessions == 1 and len(bluesky_api.posts) == 3

    def test_expired_session_refreshed(self, publisher, bluesky_api):
        """An expired access token is refreshed with refreshSession, not a new login, and the post goes out."""
        publisher.publish(Post(text="satu"), "k1")
        bluesky_api.expire_access_token()
        publisher.publish(Post(text="dua"), "k2")
        assert (bluesky_api.sessions, bluesky_api.refreshes, len(bluesky_api.posts)) == (1, 1, 2)

    def test_refused_refresh_logs_in_again(self, publisher, bluesky_api):
        """When the refresh token is refused too, the publisher logs in once more."""
        publisher.publish(Post(text="satu"), "k1")
        bluesky_api.expire_access_token()
        bluesky_api.refresh = "revoked"
        publisher.publish(Post(text="dua"), "k2")
        assert (bluesky_api.sessions, len(bluesky_api.posts)) == (2, 2)


class TestErrors:
    def test_bad_app_password_pauses(self, bluesky_api):
        """A refused login pauses the target, naming the variable and never the password."""
        with pytest.raises(TargetPaused, match=r"BRIDGE_KEMENPORA_BSKY_APP_PASSWORD.*App passwords") as caught:
            make(bluesky_api, password="wrong-pass-word-0000").publish(POST, "k")
        assert "Invalid identifier or password" in str(caught.value) and "wrong-pass-word" not in str(caught.value)

    def test_rate_limited_login(self, bluesky_api):
        """A 429 on createSession waits for ratelimit-reset and does not count as an attempt."""
        reset = int((NOW + timedelta(minutes=3)).timestamp())
        bluesky_api.enqueue("POST", "com.atproto.server.createSession", status=429,
                            json={"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"},
                            headers={"ratelimit-limit": "30", "ratelimit-remaining": "0", "ratelimit-reset": str(reset),
                                     "ratelimit-policy": "30;w=300"})
        with pytest.raises(RetryLater) as caught:
            make(bluesky_api).publish(POST, "k")
        assert caught.value.retry_at == NOW + timedelta(minutes=3) and not caught.value.counts_as_attempt

    def test_rate_limited_post_without_reset(self, publisher, bluesky_api):
        """A 429 without a reset waits five minutes."""
        bluesky_api.enqueue("POST", "com.atproto.repo.createRecord", status=429,
                            json={"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"})
        with pytest.raises(RetryLater) as caught:
            publisher.publish(POST, "k")
        assert caught.value.retry_at == NOW + timedelta(minutes=5)

    def test_invalid_record_rejected(self, publisher, bluesky_api):
        """A 400 InvalidRequest rejects the post with the PDS's message."""
        bluesky_api.enqueue("POST", "com.atproto.repo.createRecord", status=400,
                            json={"error": "InvalidRequest", "message": "Invalid app.bsky.feed.post record"})
        with pytest.raises(PostRejected, match=r"\(400\): InvalidRequest: Invalid app.bsky.feed.post record"):
            publisher.publish(POST, "k")

    def test_server_error_retries(self, publisher, bluesky_api):
        """A 500 or a 502 is retried."""
        bluesky_api.enqueue("POST", "com.atproto.repo.createRecord", status=500,
                            json={"error": "InternalServerError", "message": "Internal Server Error"})
        with pytest.raises(RetryLater, match="answered 500"):
            publisher.publish(POST, "k")
        bluesky_api.enqueue("POST", "com.atproto.repo.createRecord", status=502, body="<html>Bad Gateway</html>")
        with pytest.raises(RetryLater, match="502"):
            publisher.publish(POST, "k")

    def test_timeout(self, bluesky_api):
        """A PDS slower than the timeout is retried."""
        bluesky_api.enqueue("POST", "com.atproto.server.createSession", status=200, json={}, delay=5)
        with pytest.raises(RetryLater, match="timed out"):
            make(bluesky_api, timeout=0.3).publish(POST, "k")

    def test_connection_refused(self, bluesky_api):
        """Nothing listening is retried."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        with pytest.raises(RetryLater, match="could not reach Bluesky"):
            make(bluesky_api, service=f"http://127.0.0.1:{port}").publish(POST, "k")


class TestVerifyAndConfig:
    def test_verify(self, publisher):
        """verify() logs in and names the handle and DID."""
        assert publisher.verify() == f"@{HANDLE} ({DID})"

    def test_verify_bad_login(self, bluesky_api):
        """verify() with a refused login pauses."""
        bluesky_api.enqueue("POST", "com.atproto.server.createSession", status=401, json=BAD_LOGIN)
        with pytest.raises(TargetPaused):
            make(bluesky_api).verify()

    def test_missing_password(self):
        """A live target without its app password is a configuration error naming the variable."""
        with pytest.raises(ConfigError, match="BRIDGE_KEMENPORA_BSKY_APP_PASSWORD"):
            BlueskyPublisher("kemenpora-bsky", service="https://bsky.social", handle=HANDLE, app_password="")
