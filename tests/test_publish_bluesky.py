"""bridge.publish.bluesky against the fake PDS over real HTTP: graphemes, byte-offset facets, link
cards with thumbnails, one session reused and refreshed, and every error class."""

from __future__ import annotations

import socket
from datetime import datetime, timedelta, timezone

import pytest

from bridge.compose import compose
from bridge.errors import ConfigError, InDoubt, PostRejected, RetryLater, TargetPaused
from bridge.model import Image, Item, Post
from bridge.publish.bluesky import BlueskyPublisher, LENGTH_RULE, bluesky_length
from tests.fakes.bluesky import APP_PASSWORD, BAD_LOGIN, DID, HANDLE
from tests.fakes.http_fake import BAD_GATEWAY, DROP, GARBLED, GATEWAY_TIMEOUT, HANG, LATE, NO_ID

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

    def test_photo_without_a_link_is_said_left_out(self, publisher, bluesky_api):
        """A photo on a post without a link has no card to go on: it is left out, and the publisher says why."""
        image = Image(data=PNG, mime_type="image/png", url="http://127.0.0.1/f.png")
        publisher.publish(Post(text="Menpora membuka PON", image=image), "k")
        assert "link card" in publisher.image_problem and not bluesky_api.blobs and len(bluesky_api.posts) == 1

    def test_oversized_thumbnail_is_left_out(self, publisher, bluesky_api):
        """A photo over the card thumbnail's 1,000,000 bytes is left out before upload (the PDS would take the
        blob and refuse the whole post at createRecord); the post and its card go out."""
        image = Image(data=b"\xff\xd8\xff" + b"\0" * 1_000_001, mime_type="image/jpeg", url="http://127.0.0.1/f.jpg")
        publisher.publish(Post(text=POST.text, link=LINK, title="t", image=image), "k")
        assert "1,000,000" in publisher.image_problem and len(bluesky_api.posts) == 1
        assert "thumb" not in bluesky_api.posts[0]["record"]["embed"]["external"] and not bluesky_api.blobs

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

    @pytest.mark.parametrize("status", [500, 502, 503, 504])
    def test_server_error_on_create_is_in_doubt(self, publisher, bluesky_api, status):
        """A 500-504 to createRecord leaves the post in doubt (the PDS may have committed it)."""
        bluesky_api.enqueue("POST", "com.atproto.repo.createRecord", status=status, body="<html>Bad Gateway</html>")
        with pytest.raises(InDoubt, match=f"answered {status}.*may exist"):
            publisher.publish(POST, "k")

    def test_other_server_error_is_retried(self, publisher, bluesky_api):
        """A 501 to createRecord says nothing was made: retried."""
        bluesky_api.enqueue("POST", "com.atproto.repo.createRecord", status=501,
                            json={"error": "MethodNotImplemented", "message": "Method Not Implemented"})
        with pytest.raises(RetryLater, match="answered 501"):
            publisher.publish(POST, "k")

    def test_server_error_on_upload_is_not_in_doubt(self, publisher, bluesky_api):
        """A 503 to uploadBlob (a blob nobody sees) leaves the photo out; the post itself goes out."""
        bluesky_api.enqueue("POST", "com.atproto.repo.uploadBlob", status=503, body="<html>down</html>")
        image = Image(data=PNG, mime_type="image/png", url="http://127.0.0.1/f.png")
        publisher.publish(Post(text=POST.text, link=LINK, title=POST.title, image=image), "k")
        assert "503" in publisher.image_problem and len(bluesky_api.posts) == 1

    def test_timeout(self, bluesky_api):
        """A PDS slower than the timeout at login (which creates nothing) is retried."""
        bluesky_api.enqueue("POST", "com.atproto.server.createSession", status=200, json={}, delay=5)
        with pytest.raises(RetryLater, match=r"^Bluesky did not answer within 0.3s$"):
            make(bluesky_api, timeout=0.3).publish(POST, "k")

    @pytest.mark.parametrize(("fault", "reason"), [
        (DROP, "connection to Bluesky broke after the post was sent"), (GARBLED, "unreadable"),
        (NO_ID, "unreadable|without the record's uri"), (BAD_GATEWAY, "answered 502"),
        (GATEWAY_TIMEOUT, "answered 504"), (LATE, "did not answer within 0.5s after receiving the post"),
        (HANG, "did not answer within 0.5s after receiving the post"),
    ])
    def test_lost_answer_on_create_is_in_doubt(self, bluesky_api, fault, reason):
        """The PDS made the record and its answer was lost: in doubt, and the record exists once."""
        publisher = make(bluesky_api, timeout=0.5)
        publisher.verify()
        bluesky_api.fail("POST", "com.atproto.repo.createRecord", fault)
        with pytest.raises(InDoubt, match=reason):
            publisher.publish(POST, "k")
        assert len(bluesky_api.posts) == 1

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


class TestFindPost:
    def test_finds_the_record_lost_in_doubt(self, bluesky_api):
        """A record whose answer was lost is found by listRecords on our DID: same text, same card link, since the attempt."""
        publisher = make(bluesky_api)
        bluesky_api.fail("POST", "com.atproto.repo.createRecord", DROP)
        with pytest.raises(InDoubt):
            publisher.publish(POST, "k")
        assert publisher.find_post(POST, since=NOW) == f"at://{DID}/app.bsky.feed.post/{bluesky_api.posts[0]['rkey']}"
        [listed] = bluesky_api.routed("com.atproto.repo.listRecords")
        assert listed.query == {"repo": DID, "collection": "app.bsky.feed.post", "limit": "100"}

    def test_absent_is_none(self, publisher, bluesky_api):
        """No record with the post's text: None (the pipeline sends it)."""
        publisher.publish(Post(text="Berita lain"), "k")
        assert publisher.find_post(POST, since=NOW) is None

    def test_older_record_is_not_it(self, bluesky_api):
        """A record with the same text created before `since` does not count."""
        publisher = make(bluesky_api)
        publisher.publish(POST, "k")
        assert publisher.find_post(POST, since=NOW + timedelta(seconds=1)) is None

    def test_same_text_other_link_is_not_it(self, publisher, bluesky_api):
        """The same text with another card link is another post."""
        publisher.publish(Post(text=POST.text, link="https://example.id/lain"), "k")
        assert publisher.find_post(POST, since=NOW) is None

    def test_pages_with_the_cursor(self, publisher, bluesky_api):
        """Behind more than a page of newer records, the cursor reaches it."""
        target = publisher.publish(POST, "k")
        for n in range(105):
            publisher.publish(Post(text=f"lain {n}"), f"k{n}")
        assert publisher.find_post(POST, since=NOW) == target
        assert len(bluesky_api.routed("com.atproto.repo.listRecords")) == 2

    def test_fake_checks_list_records_params(self, publisher, bluesky_api):
        """The fake, like a PDS, refuses listRecords without collection or with a limit over 100."""
        import httpx
        publisher.verify()
        url = f"{bluesky_api.base_url}/xrpc/com.atproto.repo.listRecords"
        auth = {"Authorization": f"Bearer {bluesky_api.access}"}
        assert httpx.get(url, params={"repo": DID}, headers=auth).status_code == 400
        assert httpx.get(url, params={"repo": DID, "collection": "app.bsky.feed.post", "limit": 101},
                         headers=auth).status_code == 400

    def test_pipeline_contract(self):
        """Bluesky refuses no duplicate, so posts in doubt are looked for after verify_after."""
        assert BlueskyPublisher.duplicate_safe_for is None and BlueskyPublisher.verify_after > timedelta(0)


class TestTagLimits:
    LONG = "A" * 65

    def test_over_long_tag_dropped_from_text_and_facets(self, publisher, bluesky_api, caplog):
        """A #hashtag over 64 graphemes is dropped from the text and the facets, with a debug log; the rest stays."""
        import logging
        caplog.set_level(logging.DEBUG, logger="bridge.publish.bluesky")
        publisher.publish(Post(text=f"Menpora #{self.LONG} buka PON #Kemenpora {LINK}", link=LINK), "k")
        record = bluesky_api.posts[0]["record"]
        assert record["text"] == f"Menpora buka PON #Kemenpora {LINK}"
        assert [f["features"][0].get("tag") for f in record["facets"]] == [None, "Kemenpora"]
        assert any("hashtag dropped" in r.getMessage() and r.levelno == logging.DEBUG for r in caplog.records)

    def test_tag_over_640_bytes_dropped(self, publisher, bluesky_api):
        """A tag within 64 graphemes but over 640 bytes (conjoining Hangul jamo) is dropped too."""
        heavy = "\u1100" * 214 + "\u1161"  # one grapheme, 645 bytes
        publisher.publish(Post(text=f"Berita #{heavy}"), "k")
        assert bluesky_api.posts[0]["record"]["text"] == "Berita"

    def test_found_after_a_tag_was_dropped(self, publisher, bluesky_api):
        """find_post compares with the text as sent, without the dropped tag."""
        post = Post(text=f"Menpora #{self.LONG} {LINK}", link=LINK)
        uri = publisher.publish(post, "k")
        assert publisher.find_post(post, since=NOW) == uri

    @pytest.mark.parametrize(("tag", "reason"), [("B" * 65, "64 graphemes"), ("e" + "\u0301" * 330, "640")])
    def test_fake_refuses_an_over_long_tag_facet(self, publisher, bluesky_api, tag, reason):
        """The fake, like the lexicon, refuses a tag facet over 64 graphemes or 640 bytes at createRecord."""
        from atproto import models
        text = f"#{tag}"
        facet = models.AppBskyRichtextFacet.Main(
            index=models.AppBskyRichtextFacet.ByteSlice(byte_start=0, byte_end=len(text.encode())),
            features=[models.AppBskyRichtextFacet.Tag(tag=tag)])
        publisher.verify()
        with pytest.raises(Exception, match=reason):
            publisher._client.send_post(text, profile_identify=DID, facets=[facet])

    def test_fake_refuses_an_oversized_thumb(self, publisher, bluesky_api):
        """The fake checks the card's thumbnail blob at createRecord: it must be uploaded and at most 1,000,000 bytes."""
        from atproto import models
        from atproto_client.models.blob_ref import BlobRef, IpldLink
        publisher.verify()
        blob = BlobRef(mime_type="image/png", size=1_000_001, ref=IpldLink(link="bafkreinope"))
        embed = models.AppBskyEmbedExternal.Main(external=models.AppBskyEmbedExternal.External(
            uri=LINK, title="t", description="d", thumb=blob))
        with pytest.raises(Exception, match="Could not find blob"):
            publisher._client.send_post("x", profile_identify=DID, embed=embed)
        uploaded = publisher._client.upload_blob(PNG).blob
        blob = BlobRef(mime_type="image/png", size=1_000_001, ref=uploaded.ref)
        embed = models.AppBskyEmbedExternal.Main(external=models.AppBskyEmbedExternal.External(
            uri=LINK, title="t", description="d", thumb=blob))
        with pytest.raises(Exception, match="too big"):
            publisher._client.send_post("x", profile_identify=DID, embed=embed)


class TestLangsConfig:
    def parse(self, langs):
        from bridge.config import parse_config
        raw = {"bridge": {"database": "sqlite:///b.db", "dry_run": True},
               "sources": [{"name": "antara", "url": "https://www.antaranews.com/rss/terkini.xml", "targets": ["b"]}],
               "targets": {"b": {"kind": "bluesky", "handle": HANDLE, "langs": langs}}}
        return parse_config(raw, environ={})

    def test_valid_tags(self):
        """Up to three BCP-47 tags are accepted as given."""
        assert self.parse(["id", "en-US", "zh-Hant"]).targets["b"].options["langs"] == ("id", "en-US", "zh-Hant")

    def test_more_than_three(self):
        """More than three languages is a configuration problem (the lexicon takes at most 3)."""
        with pytest.raises(ConfigError, match="targets.b.langs: at most 3 languages"):
            self.parse(["id", "en", "ms", "jv"])

    @pytest.mark.parametrize("tag", ["indonesian", "en_US", "", "e"])
    def test_not_bcp47(self, tag):
        """A value that is not a BCP-47 tag is a configuration problem naming it."""
        with pytest.raises(ConfigError, match=f"targets.b.langs: not a BCP-47 language tag: '{tag}'"):
            self.parse([tag])
