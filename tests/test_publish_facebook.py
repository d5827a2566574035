"""bridge.publish.facebook against the fake Graph API over real HTTP: link posts, photo posts,
the token's expiry, throttling and the other error classes."""

from __future__ import annotations

import json
import socket
from datetime import datetime, timedelta, timezone

import pytest

from bridge.config import parse_config
from bridge.errors import AlreadyPosted, ConfigError, InDoubt, PostRejected, RetryLater, TargetPaused
from bridge.model import Image, Post
from bridge.publish.facebook import LENGTH_RULE, FacebookPublisher, build
from bridge.publish._graph import appsecret_proof
from tests.fakes.facebook import PAGE_ID, PAGE_TOKEN, TOKEN_EXPIRED, FakeGraphPage, graph_error
from tests.fakes.http_fake import BAD_GATEWAY, DROP, GARBLED, GATEWAY_TIMEOUT, HANG, NO_ID

FEED = f"/{PAGE_ID}/feed"
APP_SECRET = "0123456789abcdef0123456789abcdef"

NOW = datetime(2026, 11, 26, 3, 0, tzinfo=timezone.utc)
LINK = "https://www.antaranews.com/berita/4123456/menpora-buka-pon"
POST = Post(text=f"Menpora membuka PON {LINK}", link=LINK)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x01" * 200
IMAGE = Image(data=PNG, mime_type="image/png", url="http://127.0.0.1/f.png")


def make(fake, *, api_base: str | None = None, token: str = PAGE_TOKEN, photo_posts: bool = False,
         timeout: float = 5.0, app_secret: str | None = None) -> FacebookPublisher:
    return FacebookPublisher("kemenpora-fb", api_base=api_base or fake.base_url, version="v25.0", page_id=PAGE_ID,
                             page_token=token, photo_posts=photo_posts, timeout=timeout, clock=lambda: NOW,
                             app_secret=app_secret)


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

    @pytest.mark.parametrize("code", [4, 17, 32, 341, 613])
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
        with pytest.raises(TargetPaused) as caught:
            publisher.publish(POST, "k")
        for needed in ("pages_manage_posts", "pages_read_engagement", "pages_manage_engagement",
                       "pages_read_user_engagement", "pages_show_list", "CREATE_CONTENT"):
            assert needed in str(caught.value)

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
        """Codes 1 and 2 answered with a 4xx say nothing was made: retried."""
        facebook_api.enqueue("POST", FEED, status=400, json=graph_error(
            "An unexpected error has occurred. Please retry your request later.", 2, transient=True))
        with pytest.raises(RetryLater, match="answered 400"):
            publisher.publish(POST, "k")

    def test_server_error_is_in_doubt(self, publisher, facebook_api):
        """A 500 to /feed may come after the post was made: in doubt."""
        facebook_api.enqueue("POST", FEED, status=500, json=graph_error(
            "An unexpected error has occurred. Please retry your request later.", 2, transient=True))
        with pytest.raises(InDoubt, match="answered 500"):
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


class TestOutcomes:
    """After /feed or /photos left, only a post id proves the post exists."""

    def test_read_timeout_is_in_doubt(self, facebook_api):
        """A post whose answer does not come within the timeout may exist: in doubt."""
        facebook_api.fail("POST", FEED, HANG)
        with pytest.raises(InDoubt, match="after receiving the post"):
            make(facebook_api, timeout=0.3).publish(POST, "k")
        assert len(facebook_api.posts) == 1

    def test_dropped_connection_is_in_doubt(self, publisher, facebook_api):
        """A connection closed before any answer is in doubt."""
        facebook_api.fail("POST", FEED, DROP)
        with pytest.raises(InDoubt, match="broke after the post was sent"):
            publisher.publish(POST, "k")

    @pytest.mark.parametrize("fault", [BAD_GATEWAY, GATEWAY_TIMEOUT])
    def test_gateway_errors_are_in_doubt(self, publisher, facebook_api, fault):
        """A proxy's 502 or 504 to /feed is in doubt."""
        facebook_api.fail("POST", FEED, fault)
        with pytest.raises(InDoubt, match=f"answered {fault}"):
            publisher.publish(POST, "k")

    def test_answer_without_id_is_in_doubt(self, publisher, facebook_api):
        """A 200 without a post id is in doubt, not counted as posted."""
        facebook_api.fail("POST", FEED, NO_ID)
        with pytest.raises(InDoubt, match="without a post id"):
            publisher.publish(POST, "k")

    def test_unreadable_answer_is_in_doubt(self, publisher, facebook_api):
        """A 200 whose body is cut off is in doubt."""
        facebook_api.fail("POST", FEED, GARBLED)
        with pytest.raises(InDoubt, match="unreadable"):
            publisher.publish(POST, "k")

    def test_photo_in_doubt_never_falls_back_to_a_link_post(self, facebook_api):
        """A /photos call in doubt stays in doubt: no second post with the link."""
        facebook_api.fail("POST", f"/{PAGE_ID}/photos", GATEWAY_TIMEOUT)
        with pytest.raises(InDoubt):
            make(facebook_api, photo_posts=True).publish(Post(text=POST.text, link=LINK, image=IMAGE), "k")
        assert [r.route for r in facebook_api.requests] == [f"/{PAGE_ID}/photos"]

    def test_refused_connection_is_never_sent(self, facebook_api):
        """A refused port means nothing left: retried."""
        facebook_api.refuse_connections()
        try:
            with pytest.raises(RetryLater, match="could not reach Facebook"):
                make(facebook_api).publish(POST, "k")
        finally:
            facebook_api.accept_connections()
        assert facebook_api.posts == []


class TestFindPost:
    def test_finds_the_post_by_its_text(self, publisher, facebook_api):
        """A post made since the first attempt is found by its text, with its id."""
        facebook_api.now = lambda: NOW + timedelta(seconds=5)
        facebook_api.fail("POST", FEED, HANG)
        with pytest.raises(InDoubt):
            make(facebook_api, timeout=0.3).publish(POST, "k")
        assert publisher.find_post(POST, since=NOW) == facebook_api.posts[0]["id"]
        [read] = facebook_api.routed(f"/{PAGE_ID}/posts")
        assert read.method == "GET" and read.query["fields"] == "id,message,created_time,permalink_url"

    def test_not_there_is_none(self, publisher, facebook_api):
        """A Page without our text answers None, so the post is sent again."""
        facebook_api.now = lambda: NOW
        publisher.publish(Post(text="another story", link=LINK), "k")
        assert publisher.find_post(POST, since=NOW) is None

    def test_older_post_with_the_same_text_is_not_ours(self, publisher, facebook_api):
        """The same text posted well before the first attempt is not taken for this post."""
        facebook_api.now = lambda: NOW - timedelta(hours=3)
        publisher.publish(POST, "k")
        assert publisher.find_post(POST, since=NOW) is None

    def test_follows_the_pages(self, publisher, facebook_api):
        """Past the first page of 25 posts, the next pages are read through the `after` cursor."""
        facebook_api.now = lambda: NOW + timedelta(minutes=1)
        publisher.publish(POST, "k")
        for n in range(30):
            publisher.publish(Post(text=f"berita {n}", link=LINK), "k")
        assert publisher.find_post(POST, since=NOW) == facebook_api.posts[0]["id"]
        assert len(facebook_api.routed(f"/{PAGE_ID}/posts")) == 2

    def test_unreadable_page_cannot_be_asked(self, publisher, facebook_api):
        """A list that cannot be read raises rather than answering "not there"."""
        facebook_api.fail("GET", f"/{PAGE_ID}/posts", GARBLED)
        with pytest.raises(RetryLater, match="unreadable"):
            publisher.find_post(POST, since=NOW)

    def test_verify_after(self, publisher):
        """The pipeline looks for a post in doubt two minutes after it was sent."""
        assert publisher.verify_after == timedelta(minutes=2)


class TestAppSecret:
    @pytest.fixture
    def guarded(self):
        fake = FakeGraphPage(app_secret=APP_SECRET).start()
        yield fake
        fake.stop()

    def test_every_call_carries_the_proof(self, guarded):
        """With app_secret, posting, reading and checking all carry appsecret_proof = HMAC-SHA256(token, secret)."""
        publisher = make(guarded, app_secret=APP_SECRET)
        publisher.verify()
        publisher.publish(POST, "k")
        publisher.find_post(POST, since=NOW)
        proof = appsecret_proof(PAGE_TOKEN, APP_SECRET)
        assert [r.query.get("appsecret_proof") for r in guarded.requests] == [proof] * 3
        assert len(guarded.posts) == 1

    def test_missing_proof_pauses(self, guarded):
        """An app that requires the proof refuses a call without it: the target pauses, naming the secret to set."""
        with pytest.raises(TargetPaused, match="appsecret_proof.*BRIDGE_KEMENPORA_FB_APP_SECRET"):
            make(guarded).publish(POST, "k")
        assert guarded.posts == []

    def test_wrong_secret_pauses(self, guarded):
        """A proof made with the wrong secret pauses the target and never shows the secret."""
        with pytest.raises(TargetPaused, match="Invalid appsecret_proof") as caught:
            make(guarded, app_secret="fedcba9876543210").publish(POST, "k")
        assert "fedcba9876543210" not in str(caught.value)

    def test_app_secret_is_an_optional_secret(self, guarded, tmp_path):
        """app_secret is read like the other secrets when set, and its absence is no problem."""
        raw = {"bridge": {"database": "sqlite:///b.db", "dry_run": False},
               "sources": [{"name": "s", "url": "http://127.0.0.1/rss", "targets": ["fb"]}],
               "targets": {"fb": {"kind": "facebook", "page_id": PAGE_ID, "api_base": guarded.base_url}}}
        environ = {"STATE_DIRECTORY": str(tmp_path), "BRIDGE_FB_PAGE_TOKEN": PAGE_TOKEN}
        assert "app_secret" not in parse_config(raw, environ=environ).targets["fb"].credentials
        config = parse_config(raw, environ={**environ, "BRIDGE_FB_APP_SECRET": APP_SECRET})
        publisher = build(config.targets["fb"], timeout=5)
        publisher.publish(POST, "k")
        assert len(guarded.posts) == 1


class TestVerifyAndConfig:
    def test_verify(self, publisher):
        """verify() names the Page."""
        assert publisher.verify() == f"Kementerian Pemuda dan Olahraga (page {PAGE_ID})"

    def test_missing_token(self):
        """A live target without its Page token is a configuration error naming the variable."""
        with pytest.raises(ConfigError, match="BRIDGE_KEMENPORA_FB_PAGE_TOKEN"):
            FacebookPublisher("kemenpora-fb", api_base="https://graph.facebook.com", version="v25.0", page_id="1",
                              page_token="")
