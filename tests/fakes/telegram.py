"""A fake Telegram Bot API on 127.0.0.1 with the real answer shapes: `{"ok": true, "result": ...}` or
`{"ok": false, "error_code", "description", "parameters"}`.

Where its behaviour comes from:
- The Bot API reference, https://core.telegram.org/bots/api ("Making requests": the answer object,
  `ok`, `description`, `error_code`, `parameters`; ResponseParameters: `retry_after`,
  `migrate_to_chat_id`; sendMessage: text 1-4096 characters after entities parsing,
  `link_preview_options`; sendPhoto: caption 0-1024 characters, photo at most 10 MB; the Message
  object with `message_id`), read 2026-12.
- The answers of a bot that lost its rights in a channel, as the real API sends them (HTTP 400):
  "Bad Request: need administrator rights in the channel chat" (reported in teloxide#450,
  2021-09-27, after the "Post Messages" right is removed) and "Bad Request: not enough rights to send
  text messages to the chat" (python-telegram-bot#3956, pyTelegramBotAPI#2068, 2023-10-31).
  `rights` plays them: "admin" (default) posts, "member" answers the first, "no_text" the second
  (and "not enough rights to send photos to the chat" to a photo), "no_photos" only that last one:
  since Bot API 6.5 (2023-02-03) a group's ChatPermissions carry `can_send_photos` apart from
  `can_send_messages`, so a bot may post text where it may not post photos. The photo wording is
  the one tucnak/telebot's errors.go (ErrNoRightsToSendPhoto, HTTP 400) and bots that fall back to
  text on it match.

It checks what Telegram checks: the token in the path, the chat, the text's length in UTF-16 code
units (4096 for a message, 1024 for a caption), HTML entities, and that a photo was uploaded.
Use the `telegram_api` fixture."""

from __future__ import annotations

import html
import itertools
import re

import pytest

from tests.fakes.http_fake import Answer, FakeServer, Request

BOT_TOKEN = "7000000001:AAFakeBotTokenForTests0123456789abcd"
CHANNEL = {"id": -1001234567890, "title": "Kemenpora RI", "username": "kemenpora", "type": "channel"}
BOT = {"id": 7000000001, "is_bot": True, "first_name": "Kemenpora Bridge", "username": "kemenpora_bridge_bot",
       "can_join_groups": True, "can_read_all_group_messages": False, "supports_inline_queries": False}
UNAUTHORIZED = {"ok": False, "error_code": 401, "description": "Unauthorized"}
KICKED = {"ok": False, "error_code": 403, "description": "Forbidden: bot is not a member of the channel chat"}
CHAT_NOT_FOUND = {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}
NEED_ADMIN = {"ok": False, "error_code": 400, "description": "Bad Request: need administrator rights in the channel chat"}
NO_TEXT_RIGHTS = {"ok": False, "error_code": 400,
                  "description": "Bad Request: not enough rights to send text messages to the chat"}
NO_PHOTO_RIGHTS = {"ok": False, "error_code": 400,
                   "description": "Bad Request: not enough rights to send photos to the chat"}
_ENTITY_PROBLEM = re.compile(r"<|&(?!lt;|gt;|amp;|quot;)")
_PHOTO_MAGIC = (b"\xff\xd8\xff", b"\x89PNG")


def flood(retry_after: int) -> dict:
    return {"ok": False, "error_code": 429, "description": f"Too Many Requests: retry after {retry_after}",
            "parameters": {"retry_after": retry_after}}


def bad_request(description: str) -> dict:
    return {"ok": False, "error_code": 400, "description": f"Bad Request: {description}"}


def _utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class FakeTelegram(FakeServer):
    """`messages` holds every message posted: {"message_id", "text" or "caption", "photo", "preview"}."""

    def __init__(self, token: str = BOT_TOKEN):
        super().__init__()
        self.token = token
        self.messages: list[dict] = []
        self.rights = "admin"
        """"admin": may post; "member": no admin rights; "no_text": may not send messages or photos;
        "no_photos": may send text messages but not photos."""
        self._ids = itertools.count(101)

    def route(self, method: str, path: str) -> str:
        return path.rsplit("/", 1)[-1]  # /bot<token>/sendMessage -> sendMessage

    def handle(self, request: Request) -> Answer:
        if not request.path.startswith(f"/bot{self.token}/"):
            return Answer(401, dict(UNAUTHORIZED))
        body = request.body if isinstance(request.body, dict) else {}
        if request.route == "getMe":
            return Answer(200, {"ok": True, "result": dict(BOT)})
        if request.route not in ("getChat", "sendMessage", "sendPhoto"):
            return Answer(404, {"ok": False, "error_code": 404, "description": "Not Found"})
        if str(body.get("chat_id")) not in (f"@{CHANNEL['username']}", str(CHANNEL["id"])):
            return Answer(400, dict(CHAT_NOT_FOUND))
        if request.route == "getChat":
            return Answer(200, {"ok": True, "result": dict(CHANNEL)})
        if self.rights == "member":
            return Answer(400, dict(NEED_ADMIN))
        if self.rights == "no_text":
            return Answer(400, dict(NO_TEXT_RIGHTS if request.route == "sendMessage" else NO_PHOTO_RIGHTS))
        if self.rights == "no_photos" and request.route == "sendPhoto":
            return Answer(400, dict(NO_PHOTO_RIGHTS))
        if request.route == "sendMessage":
            return self._send_message(body)
        return self._send_photo(body)

    def _checked_text(self, text: object, limit: int, what: str) -> str | Answer:
        if not isinstance(text, str) or (what == "message" and not text.strip()):
            return Answer(400, bad_request(f"{what} text is empty"))
        if body_problem := _ENTITY_PROBLEM.search(text):
            return Answer(400, bad_request(f"can't parse entities: Unsupported start tag at byte offset "
                                           f"{len(text[:body_problem.start()].encode())}"))
        plain = html.unescape(text)
        if _utf16(plain) > limit:
            return Answer(400, bad_request(f"{what} is too long"))
        return plain

    def _send_message(self, body: dict) -> Answer:
        text = self._checked_text(body.get("text"), 4096, "message")
        if isinstance(text, Answer):
            return text
        message = {"message_id": next(self._ids), "text": text, "photo": None,
                   "preview": body.get("link_preview_options"), "parse_mode": body.get("parse_mode")}
        self.messages.append(message)
        return Answer(200, {"ok": True, "result": {
            "message_id": message["message_id"], "sender_chat": dict(CHANNEL), "chat": dict(CHANNEL),
            "date": 1795660800, "text": text}})

    def _send_photo(self, body: dict) -> Answer:
        photo = body.get("photo")
        if not isinstance(photo, bytes):
            return Answer(400, bad_request("there is no photo in the request"))
        if not photo.startswith(_PHOTO_MAGIC):
            return Answer(400, bad_request("IMAGE_PROCESS_FAILED"))
        caption = self._checked_text(body.get("caption", ""), 1024, "message caption")
        if isinstance(caption, Answer):
            return caption
        message = {"message_id": next(self._ids), "caption": caption, "photo": photo, "preview": None,
                   "parse_mode": body.get("parse_mode")}
        self.messages.append(message)
        return Answer(200, {"ok": True, "result": {
            "message_id": message["message_id"], "sender_chat": dict(CHANNEL), "chat": dict(CHANNEL),
            "date": 1795660800, "caption": caption,
            "photo": [{"file_id": "AgACAgUAAxkDAAIBZ2fake", "file_unique_id": "AQADfake", "file_size": len(photo),
                       "width": 320, "height": 213}]}})


@pytest.fixture
def telegram_api():
    """A running fake Telegram Bot API; stopped after the test."""
    fake = FakeTelegram().start()
    try:
        yield fake
    finally:
        fake.stop()
