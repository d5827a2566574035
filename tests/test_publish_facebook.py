"""bridge.publish.facebook against the fake Graph API over real HTTP: link posts, photo posts,
the token's expiry, throttling and the other error classes."""

from __future__ import annotations

import json
import socket
from datetime import datetime, timedelta, timezone

import pytest

from bridge.errors import AlreadyPosted, ConfigError, PostRejected, RetryLater, TargetPaused
from bridge.model import Image, Post
from bridge.publish.facebook import LENGTH_RULE, FacebookPublisher
from tests.fakes.facebook import PAGE_ID, PAGE_TOKEN, TOKEN_EXPIRED, graph_error

NOW = datetime(2026, 11, 26, 3, 0, tzinfo=timezone.utc)
LINK = "https://www.antaranews.com/berita/4123456/menpora-buka-pon"
POST = Post(text=f"Menpora membuka PON {LINK}", link=LINK)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x01" * 200
IMAGE = Image(data=PNG, mime_type="image/png", url="http://127.0.0.1/f.png")


def make(fake, *, api_base: str | None = None, token: str = PAGE_TOKEN, photo_posts: bool = False,
         timeout: float = 5.0) -> FacebookPublisher:
    return FacebookPublisher("kemenpora-fb", api_base=api_base or fake.base_url, version="v25.0", page_id=PAGE_ID,
                             page_token=token, photo_posts=photo_posts, timeout=timeout, clock=lambda: NOW)


@pytest.fixture
def publisher(facebook_api):
    publisher = make(facebook_api)
    yield publisher
    publisher.close()


class TestPublish:
    def test_link_post(self, publisher, facebook_api):
        """A story is posted to /{version}/{page-id}/feed with message and link, the token in a header."""
        post_id = publisher.publish(POST, "k")
        [post] = facebook_api.posts
        assert post_id == post["id"] and (post["message"], post["link"]) == (POST.text, LINK)
        request = facebook_api.requests[0]
        assert request.path == f"/v25.0/{PAGE_ID}/feed" and "access_token" not in request.body

    def test_photo_post(self, facebook_api):
        """With photo_posts on, the photo is uploaded to /photos with the text as its caption."""
        post_id = make(facebook_api, photo_posts=True).publish(Post(text=POST.text, link=LINK, image=IMAGE), "k")
        [post] = facebook_api.posts
        assert post_id == post["id"] and post["photo"] == PNG and post["message"] == POST.text

    def test_photo_posts_without_photo_is_a_link_post(self, facebook_api):
        """With photo_posts on but no photo, the story goes as a link post."""
        make(facebook_api, photo_posts=True).publish(POST, "k")
        assert facebook_api.posts[0]["link"] == LINK

    def test_refused_photo_falls_back_to_link(self, facebook_api):
        """A photo Facebook refuses is left out: the link post goes out and the reason is kept."""
        publisher = make(facebook_api, photo_posts=True)
        publisher.publish(Post(text=POST.text, link=LINK, image=Image(data=b"GIF89a", mime_type="image/gif", url="u")), "k")
        assert facebook_api.posts[0]["link"] == LINK and "#324" in publisher.image_problem

    def test_long_text_within_the_limit(self, publisher, facebook_api):
        """A text at Facebook's 63,206-character limit is posted whole."""
        text = "a" * (LENGTH_RULE.max_length - len(LINK) - 1) + " " + LINK
        publisher.publish(Post(text=text, link=LINK), "k")
        assert LENGTH_RULE.measure(facebook_api.posts[0]["message"]) == LENGTH_RULE.max_length


class TestErrors:
    def test_expired_token_pauses(self, publisher, facebook_api):
        """Code 190 pauses the target, saying to generate a long-lived Page token, never showing the token."""
        facebook_api.enqueue("POST", f"/{PAGE_ID}/feed", status=400, json=TOKEN_EXPIRED)
        with pytest.raises(TargetPaused, match=r"Session has expired.*190/463.*long-lived Page token.*BRIDGE_KEMENPORA_FB_PAGE_TOKEN"):
            publisher.publish(POST, "k")

    def test_wrong_token_pauses(self, facebook_api):
        """A token the Graph API cannot parse pauses the target."""
        with pytest.raises(TargetPaused, match="refused the access token") as caught:
            make(facebook_api, token="EAAGsomeOtherToken000").publish(POST, "k")
        assert "someOtherToken" not in str(caught.value)

    @pytest.mark.parametrize("code", [4, 17, 32, 613])
    def test_throttling_defers(self, publisher, facebook_api, code):
        """Throttling codes defer the post without counting an attempt."""
        facebook_api.enqueue("POST", f"/{PAGE_ID}/feed", status=400,
                             json=graph_error("(#32) Page request limit reached", code))
        with pytest.raises(RetryLater, match="throttling") as caught:
            publisher.publish(POST, "k")
        assert caught.value.retry_at == NOW + timedelta(minutes=30) and not caught.value.counts_as_attempt

    def test_throttling_waits_as_long_as_meta_says(self, publisher, facebook_api):
        """estimated_time_to_regain_access in X-Business-Use-Case-Usage sets the wait."""
        usage = {PAGE_ID: [{"type": "pages", "call_count": 100, "total_cputime": 20, "total_time": 25,
                            "estimated_time_to_regain_access": 12}]}
        facebook_api.enqueue("POST", f"/{PAGE_ID}/feed", status=400, json=graph_error("(#80001) There have been too "
                             "many calls to this Page account.", 80001), headers={"X-Business-Use-Case-Usage": json.dumps(usage)})
        with pytest.raises(RetryLater) as caught:
            publisher.publish(POST, "k")
        assert caught.value.retry_at == NOW + timedelta(minutes=12)

    def test_duplicate_is_already_posted(self, publisher, facebook_api):
        """Code 506 (duplicate status message) counts as posted."""
        publisher.publish(POST, "k")
        with pytest.raises(AlreadyPosted, match="506"):
            publisher.publish(POST, "k")

    def test_permission_pauses(self, publisher, facebook_api):
        """A missing permission (code 200) pauses the target, naming the permissions needed."""
        facebook_api.enqueue("POST", f"/{PAGE_ID}/feed", status=403, json=graph_error(
            "(#200) The user hasn't authorized the application to perform this action", 200))
        with pytest.raises(TargetPaused, match="pages_manage_posts"):
            publisher.publish(POST, "k")

    def test_unknown_page_pauses(self, facebook_api):
        """A page id the token cannot reach pauses the target and points at page_id."""
        publisher = FacebookPublisher("fb", api_base=facebook_api.base_url, version="v25.0", page_id="999",
                                      page_token=PAGE_TOKEN, clock=lambda: NOW)
        with pytest.raises(TargetPaused, match="check page_id"):
            publisher.publish(POST, "k")

    def test_invalid_parameter_rejects(self, publisher, facebook_api):
        """Another code-100 error rejects the post with Facebook's message."""
        facebook_api.enqueue("POST", f"/{PAGE_ID}/feed", status=400, json=graph_error(
            "(#100) The link is invalid", 100, type_="OAuthException"))
        with pytest.raises(PostRejected, match=r"\(400\): \(#100\) The link is invalid \[code 100, fbtrace_id"):
            publisher.publish(POST, "k")

    def test_transient_retries(self, publisher, facebook_api):
        """Codes 1 and 2 and 5xx answers are retried."""
        facebook_api.enqueue("POST", f"/{PAGE_ID}/feed", status=500, json=graph_error(
            "An unexpected error has occurred. Please retry your request later.", 2, transient=True))
        with pytest.raises(RetryLater, match="answered 500"):
            publisher.publish(POST, "k")

    def test_policy_block_pauses(self, publisher, facebook_api):
        """Code 368 (blocked for a policy violation) pauses the target."""
        facebook_api.enqueue("POST", f"/{PAGE_ID}/feed", status=400, json=graph_error(
            "It looks like you were misusing this feature by going too fast.", 368))
        with pytest.raises(TargetPaused, match="policy violation"):
            publisher.publish(POST, "k")

    def test_connection_refused(self, facebook_api):
        """Nothing listening is retried."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        with pytest.raises(RetryLater, match="could not reach Facebook"):
            make(facebook_api, api_base=f"http://127.0.0.1:{port}").publish(POST, "k")


class TestVerifyAndConfig:
    def test_verify(self, publisher):
        """verify() names the Page."""
        assert publisher.verify() == f"Kementerian Pemuda dan Olahraga (page {PAGE_ID})"

    def test_missing_token(self):
        """A live target without its Page token is a configuration error naming the variable."""
        with pytest.raises(ConfigError, match="BRIDGE_KEMENPORA_FB_PAGE_TOKEN"):
            FacebookPublisher("kemenpora-fb", api_base="https://graph.facebook.com", version="v25.0", page_id="1",
                              page_token="")
