"""bridge.publish.telegram against the fake Bot API over real HTTP: messages, photos, length, errors."""

from __future__ import annotations

import socket
from datetime import datetime, timedelta, timezone

import pytest

from bridge.compose import compose
from bridge.errors import ConfigError, InDoubt, PostRejected, RetryLater, TargetPaused
from bridge.model import Image, Item, Post
from bridge.publish.telegram import LENGTH_RULE, PHOTO_LENGTH_RULE, TelegramPublisher, utf16_length
from tests.fakes.http_fake import BAD_GATEWAY, DROP, GARBLED, GATEWAY_TIMEOUT, HANG, NO_ID
from tests.fakes.telegram import BOT_TOKEN, CHAT_NOT_FOUND, KICKED, bad_request, flood

NOW = datetime(2026, 11, 26, 3, 0, tzinfo=timezone.utc)
LINK = "https://www.antaranews.com/berita/4123456/menpora-buka-pon"
POST = Post(text=f"Menpora <buka> PON & Peparnas {LINK}", link=LINK)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x01" * 200


def make(fake, *, api_base: str | None = None, token: str = BOT_TOKEN, chat_id: str = "@kemenpora",
         timeout: float = 5.0) -> TelegramPublisher:
    return TelegramPublisher("kemenpora-tg", api_base=api_base or fake.base_url, chat_id=chat_id, bot_token=token,
                             timeout=timeout, clock=lambda: NOW)


@pytest.fixture
def publisher(telegram_api):
    publisher = make(telegram_api)
    yield publisher
    publisher.close()


def with_photo(post: Post, data: bytes = PNG) -> Post:
    return Post(text=post.text, link=post.link, image=Image(data=data, mime_type="image/png", url="http://127.0.0.1/f.png"))


class TestLengthRule:
    def test_utf16_units(self):
        """Telegram counts UTF-16 code units: an emoji outside the BMP is 2, an Indonesian letter 1."""
        assert utf16_length("Menpora") == 7 and utf16_length("🏸") == 2 and utf16_length("é") == 1

    def test_message_and_caption_limits(self):
        """A message may hold 4096 units, a photo's caption 1024."""
        assert (LENGTH_RULE.max_length, PHOTO_LENGTH_RULE.max_length) == (4096, 1024)

    def test_message_at_the_edge(self, publisher, telegram_api):
        """A composed message of exactly 4096 units is accepted whole, with its link intact."""
        item = Item(key="k", title="Atlet " * 2000, link=LINK)
        post = compose("{title} {url}", item, source="antara", rule=LENGTH_RULE)
        assert utf16_length(post.text) <= 4096 and post.text.endswith(LINK)
        publisher.publish(post, "k")
        assert telegram_api.messages[0]["text"] == post.text

    def test_over_the_edge_is_rejected(self, publisher, telegram_api):
        """A text of 4097 units is refused by Telegram and rejected, not retried."""
        with pytest.raises(PostRejected, match="message is too long"):
            publisher.publish(Post(text="a" * 4097), "k")


class TestPublish:
    def test_message_with_link_preview(self, publisher, telegram_api):
        """Text goes as an HTML message, escaped so it arrives as written, with the link previewed."""
        assert publisher.publish(POST, "k") == "101"
        [message] = telegram_api.messages
        assert message["text"] == POST.text and message["parse_mode"] == "HTML"
        assert message["preview"] == {"is_disabled": False, "url": LINK}
        assert telegram_api.requests[0].body["text"] == f"Menpora &lt;buka&gt; PON &amp; Peparnas {LINK}"

    def test_photo_with_caption(self, publisher, telegram_api):
        """A post with a photo uploads its bytes with sendPhoto and the text as the caption."""
        assert publisher.publish(with_photo(POST), "k") == "101"
        [message] = telegram_api.messages
        assert message["photo"] == PNG and message["caption"] == POST.text and publisher.image_problem is None

    def test_refused_photo_falls_back_to_message(self, publisher, telegram_api):
        """A photo Telegram cannot process is left out: the text goes as a message and the reason is kept."""
        assert publisher.publish(with_photo(POST, b"GIF89a" + b"\0" * 50), "k") == "101"
        assert [m["photo"] for m in telegram_api.messages] == [None]
        assert "IMAGE_PROCESS_FAILED" in publisher.image_problem

    def test_text_too_long_for_a_caption(self, publisher, telegram_api):
        """A text over 1024 units with a photo goes as a message without the photo."""
        publisher.publish(with_photo(Post(text="a" * 1025)), "k")
        assert [r.route for r in telegram_api.requests] == ["sendMessage"]
        assert "caption" in publisher.image_problem

    def test_numeric_chat_id(self, telegram_api):
        """A numeric chat id is sent as given."""
        make(telegram_api, chat_id="-1001234567890").publish(POST, "k")
        assert telegram_api.requests[0].body["chat_id"] == "-1001234567890"


class TestErrors:
    def test_flood_control(self, publisher, telegram_api):
        """A 429 waits parameters.retry_after seconds and does not count as an attempt."""
        telegram_api.enqueue("POST", "sendMessage", status=429, json=flood(35))
        with pytest.raises(RetryLater, match="flood control") as caught:
            publisher.publish(POST, "k")
        assert caught.value.retry_at == NOW + timedelta(seconds=35) and not caught.value.counts_as_attempt

    def test_bad_token_pauses(self, telegram_api):
        """A token Telegram does not know pauses the target, naming the variable and never the token."""
        with pytest.raises(TargetPaused, match="BRIDGE_KEMENPORA_TG_BOT_TOKEN") as caught:
            make(telegram_api, token="7000000001:AAsomeOtherTokenValue").publish(POST, "k")
        assert "AAsomeOtherTokenValue" not in str(caught.value)

    def test_bot_removed_from_channel_pauses(self, publisher, telegram_api):
        """A 403 (bot no longer in the channel) pauses the target, saying to add it as an administrator."""
        telegram_api.enqueue("POST", "sendMessage", status=403, json=KICKED)
        with pytest.raises(TargetPaused, match="administrator"):
            publisher.publish(POST, "k")

    def test_unknown_chat_pauses(self, telegram_api):
        """A chat Telegram does not know pauses the target: every post would fail the same way."""
        with pytest.raises(TargetPaused, match="check chat_id"):
            make(telegram_api, chat_id="@nobody").publish(POST, "k")

    def test_migrated_group_pauses(self, publisher, telegram_api):
        """A group that became a supergroup pauses the target, naming the new chat_id."""
        telegram_api.enqueue("POST", "sendMessage", status=400, json={
            **bad_request("group chat was upgraded to a supergroup chat"),
            "parameters": {"migrate_to_chat_id": -1009876543210}})
        with pytest.raises(TargetPaused, match='chat_id = "-1009876543210"'):
            publisher.publish(POST, "k")

    def test_bad_request_rejects(self, publisher, telegram_api):
        """Another 400 rejects the post with Telegram's description."""
        telegram_api.enqueue("POST", "sendMessage", status=400, json=bad_request("message text is empty"))
        with pytest.raises(PostRejected, match=r"refused the post \(400\): Bad Request: message text is empty"):
            publisher.publish(POST, "k")

    def test_server_error_on_a_check_retries(self, publisher, telegram_api):
        """A 5xx to getMe, which creates nothing, is simply retried."""
        telegram_api.enqueue("POST", "getMe", status=502, body="<html>Bad Gateway</html>")
        with pytest.raises(RetryLater, match="answered 502"):
            publisher.verify()

    def test_timeout_on_a_check_retries(self, telegram_api):
        """A getMe slower than the timeout is retried: nothing was created."""
        telegram_api.fail("POST", "getMe", HANG)
        with pytest.raises(RetryLater, match=r"^Telegram did not answer within 0.3s$"):
            make(telegram_api, timeout=0.3).verify()

    def test_connection_refused(self, telegram_api):
        """Nothing listening is retried, with the reason in a few words and no token."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        with pytest.raises(RetryLater, match=f"could not reach Telegram at http://127.0.0.1:{port}: Connection refused"):
            make(telegram_api, api_base=f"http://127.0.0.1:{port}").publish(POST, "k")


class TestOutcomes:
    """After sendMessage or sendPhoto left, only Telegram's answer proves what happened."""

    def test_read_timeout_is_in_doubt(self, telegram_api):
        """A message whose answer does not come within the timeout may exist: in doubt, not retried."""
        telegram_api.fail("POST", "sendMessage", HANG)
        with pytest.raises(InDoubt, match="did not answer within 0.3s after receiving the post"):
            make(telegram_api, timeout=0.3).publish(POST, "k")
        assert len(telegram_api.messages) == 1

    def test_dropped_connection_is_in_doubt(self, publisher, telegram_api):
        """A connection closed before any answer is in doubt."""
        telegram_api.fail("POST", "sendMessage", DROP)
        with pytest.raises(InDoubt, match="broke after the post was sent"):
            publisher.publish(POST, "k")

    @pytest.mark.parametrize("fault", [BAD_GATEWAY, GATEWAY_TIMEOUT])
    def test_gateway_errors_are_in_doubt(self, publisher, telegram_api, fault):
        """A proxy's 502 or 504 to sendMessage is in doubt: Telegram may have posted behind it."""
        telegram_api.fail("POST", "sendMessage", fault)
        with pytest.raises(InDoubt, match=f"answered {fault} to sendMessage"):
            publisher.publish(POST, "k")

    def test_server_error_is_in_doubt(self, publisher, telegram_api):
        """A 500 to sendMessage is in doubt."""
        telegram_api.enqueue("POST", "sendMessage", status=500, json={
            "ok": False, "error_code": 500, "description": "Internal Server Error"})
        with pytest.raises(InDoubt, match="answered 500"):
            publisher.publish(POST, "k")

    def test_ok_without_message_id_is_in_doubt(self, publisher, telegram_api):
        """ok: true without a message_id proves nothing: in doubt, not counted as posted."""
        telegram_api.enqueue("POST", "sendMessage", status=200, json={"ok": True, "result": {}})
        with pytest.raises(InDoubt, match="named no message id"):
            publisher.publish(POST, "k")

    @pytest.mark.parametrize("fault", [GARBLED, NO_ID])
    def test_answer_that_is_not_the_bot_api_is_in_doubt(self, publisher, telegram_api, fault):
        """A 2xx that is not the Bot API's answer (cut off, or an empty object) is in doubt."""
        telegram_api.fail("POST", "sendMessage", fault)
        with pytest.raises(InDoubt, match="unreadable"):
            publisher.publish(POST, "k")

    def test_photo_in_doubt_never_falls_back_to_a_message(self, publisher, telegram_api):
        """A sendPhoto in doubt stays in doubt: no second message with the text alone."""
        telegram_api.fail("POST", "sendPhoto", GATEWAY_TIMEOUT)
        with pytest.raises(InDoubt, match="sendPhoto"):
            publisher.publish(with_photo(POST), "k")
        assert [r.route for r in telegram_api.requests] == ["sendPhoto"]

    def test_refused_connection_is_never_sent(self, telegram_api):
        """A refused port means nothing left: retried."""
        telegram_api.refuse_connections()
        try:
            with pytest.raises(RetryLater, match="could not reach Telegram"):
                make(telegram_api).publish(POST, "k")
        finally:
            telegram_api.accept_connections()
        assert telegram_api.messages == []


class TestMissingRights:
    def test_no_admin_rights_pauses(self, publisher, telegram_api):
        """A bot that is no channel administrator (400 "need administrator rights") pauses the target with what to fix."""
        telegram_api.rights = "member"
        with pytest.raises(TargetPaused, match=r"need administrator rights.*administrator of the channel"):
            publisher.publish(POST, "k")

    def test_no_right_to_post_messages_pauses(self, publisher, telegram_api):
        """A bot without the right to post messages (400 "not enough rights") pauses the target."""
        telegram_api.rights = "no_text"
        with pytest.raises(TargetPaused, match="not enough rights to send text messages"):
            publisher.publish(POST, "k")

    def test_no_right_to_send_photos_posts_the_text(self, publisher, telegram_api):
        """A bot that may send text but not photos (a group's can_send_photos off) posts the text alone, saying why."""
        telegram_api.rights = "no_photos"
        message_id = publisher.publish(with_photo(POST), "k")
        assert [r.route for r in telegram_api.requests] == ["sendPhoto", "sendMessage"]
        assert [(m.get("text"), m["photo"]) for m in telegram_api.messages] == [(POST.text, None)]
        assert message_id == str(telegram_api.messages[0]["message_id"])
        assert "not enough rights to send photos" in publisher.image_problem

    def test_no_right_to_send_anything_pauses(self, publisher, telegram_api):
        """A bot that may send neither photos nor text pauses the target once the text alone is refused too."""
        telegram_api.rights = "no_text"
        with pytest.raises(TargetPaused, match="not enough rights to send text messages"):
            publisher.publish(with_photo(POST), "k")
        assert [r.route for r in telegram_api.requests] == ["sendPhoto", "sendMessage"]
        assert telegram_api.messages == []


class TestVerifyAndConfig:
    def test_verify(self, publisher):
        """verify() names the bot and the channel it posts to."""
        assert publisher.verify() == "@kemenpora_bridge_bot in @kemenpora"

    def test_verify_unknown_chat(self, telegram_api):
        """verify() with an unknown chat pauses rather than rejecting a post."""
        telegram_api.enqueue("POST", "getChat", status=400, json=CHAT_NOT_FOUND)
        with pytest.raises(TargetPaused, match="check chat_id"):
            make(telegram_api).verify()

    def test_missing_token(self):
        """A live target without a token is a configuration error naming the variable."""
        with pytest.raises(ConfigError, match="BRIDGE_KEMENPORA_TG_BOT_TOKEN"):
            TelegramPublisher("kemenpora-tg", api_base="https://api.telegram.org", chat_id="@k", bot_token="")
