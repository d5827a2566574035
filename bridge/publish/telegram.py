"""Publishing to a Telegram channel through the Bot API (sendMessage, sendPhoto), with httpx.

The only module that knows Telegram's URLs, parameters and error shapes. The bot must be an
administrator of the channel allowed to post. Every answer is `{"ok": ..., "result" | "error_code",
"description", "parameters"}`; `parameters.retry_after` says how long flood control lasts.

The bot token is part of every URL (`/bot<token>/method`), so no URL ever goes into a message.

Outcomes (bridge.errors): sendMessage and sendPhoto create a message, so once the request may have
left, a lost answer (read timeout, dropped connection, a 500/502/503/504, a 2xx that is not the Bot
API's answer or names no message_id) is InDoubt: a bot cannot read back its channel's history, so
the operator settles it. getMe and getChat create nothing and are simply retried.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from datetime import datetime, timedelta
from urllib.parse import quote

import httpx

from bridge.clock import utc_now
from bridge.errors import ConfigError, InDoubt, PostRejected, PublishError, RetryLater, TargetPaused
from bridge.model import Post
from bridge.publish._http import MAY_HAVE_ACTED, json_body, scrub
from bridge.publish._http_httpx import DeadlineClient, transport_problem
from bridge.publish.limits import (
    TELEGRAM_CAPTION_MAX, TELEGRAM_LENGTH_RULE, TELEGRAM_MAX_IMAGE_BYTES, TELEGRAM_MESSAGE_MAX,
    TELEGRAM_PHOTO_LENGTH_RULE, utf16_length,
)
from bridge.secrets import credential_env_var

MESSAGE_MAX = TELEGRAM_MESSAGE_MAX
CAPTION_MAX = TELEGRAM_CAPTION_MAX
MAX_IMAGE_BYTES = TELEGRAM_MAX_IMAGE_BYTES
FLOOD_WAIT_FALLBACK = timedelta(seconds=60)
"""How long to wait after a 429 that names no retry_after."""
FLOOD_WAIT_CEILING = 7 * 24 * 3600
"""Seconds: a retry_after beyond this is read as this (a real flood wait is seconds to hours; 10**20
would overflow the date arithmetic). The pipeline caps the hold further (NETWORK_HOLD_MAX)."""
MISSING_RIGHTS = ("need administrator rights", "not enough rights", "have no rights to send",
                  "have no write access", "chat_write_forbidden", "chat_admin_required")
"""Descriptions of a 400 that says the bot may not post in the chat (its admin rights, or its right to
post messages, were taken away): every post would fail the same way, so the target pauses."""
PHOTO_RIGHTS = ("rights to send photos", "chat_send_photos_forbidden")
"""A sendPhoto refused because the bot may not send photos there ("not enough rights to send photos
to the chat"): since Bot API 6.5 a group's permissions carry can_send_photos apart from
can_send_messages, so the text alone may still go. Nothing was sent: the post goes without the
photo, and a bot that may not send text either is paused by the sendMessage that follows."""


LENGTH_RULE = TELEGRAM_LENGTH_RULE
PHOTO_LENGTH_RULE = TELEGRAM_PHOTO_LENGTH_RULE


def post_url(remote_id: str, target) -> str | None:
    """Where a sent message can be seen: t.me/{channel}/{message_id} for a public channel (chat_id
    "@name"), t.me/c/{id}/{message_id} for a private one (-100{id}, members only); none for a chat
    Telegram gives no link to (a group or a user by number)."""
    chat = str(target.options.get("chat_id", ""))
    if not remote_id or not chat:
        return None
    if chat.startswith("@"):
        return f"https://t.me/{quote(chat[1:], safe='')}/{quote(remote_id, safe='')}"
    if chat.startswith("-100") and chat[4:].isdigit():
        return f"https://t.me/c/{chat[4:]}/{quote(remote_id, safe='')}"
    return None


def build(target, *, timeout: float, clock=None) -> "TelegramPublisher":
    return TelegramPublisher(target.name, api_base=target.api_base, chat_id=target.options["chat_id"],
                             bot_token=target.credentials.get("bot_token", ""), timeout=timeout,
                             clock=clock or utc_now)


class TelegramPublisher:
    """Posts to one Telegram channel (or group) as its bot. Satisfies bridge.publish.Publisher."""

    kind = "telegram"
    length_rule = LENGTH_RULE
    photo_length_rule = PHOTO_LENGTH_RULE
    max_image_bytes = MAX_IMAGE_BYTES
    duplicate_safe_for = None
    """The Bot API has no idempotency key and accepts the same text twice."""

    def __init__(self, name: str, *, api_base: str, chat_id: str, bot_token: str, timeout: float = 20.0,
                 clock: Callable[[], datetime] = utc_now):
        self.name = name
        self._token_var = credential_env_var(name, "bot_token")
        if not bot_token:
            raise ConfigError([f"targets.{name}: bot_token is missing (set {self._token_var})"])
        self._base = api_base.rstrip("/")
        self._chat_id = str(chat_id)
        self._token = bot_token
        self._timeout = timeout
        self._clock = clock
        self._http = DeadlineClient(deadline=timeout)  # each call bounded in total, not per read
        self.hold_until: datetime | None = None
        self.image_problem: str | None = None

    def publish(self, post: Post, idempotency_key: str) -> str:
        """Send the photo with the text as its caption, or the text alone with a link preview; return
        the message id. A photo Telegram refuses is left out and the text goes as a message."""
        del idempotency_key  # Telegram has none
        self.hold_until = None
        self.image_problem = None
        text = html.escape(post.text, quote=False)  # HTML parse mode: only <, > and & are special
        if post.image is not None:
            if utf16_length(post.text) > CAPTION_MAX:
                self.image_problem = f"the text is longer than a photo caption ({CAPTION_MAX} characters)"
            else:
                try:
                    return self._message_id("sendPhoto", self._call(
                        "sendPhoto", data={"chat_id": self._chat_id, "caption": text, "parse_mode": "HTML"},
                        files={"photo": ("photo", post.image.data, post.image.mime_type)}))
                except PostRejected as error:  # the photo (its size, its dimensions): post the text alone
                    # Only a refusal falls back: an InDoubt photo may be in the channel already, and a
                    # second message would double it.
                    self.image_problem = error.message
        payload: dict = {"chat_id": self._chat_id, "text": text, "parse_mode": "HTML"}
        if post.link:
            payload["link_preview_options"] = {"is_disabled": False, "url": post.link}
        return self._message_id("sendMessage", self._call("sendMessage", json=payload))

    def verify(self) -> str:
        """Check the token (getMe) and that the bot can see the chat (getChat)."""
        bot = self._call("getMe", json={}, posting=False)
        chat = self._call("getChat", json={"chat_id": self._chat_id}, posting=False)
        where = f"@{chat['username']}" if chat.get("username") else str(chat.get("title") or self._chat_id)
        return f"@{bot.get('username', '?')} in {where}"

    def close(self) -> None:
        self._http.close()

    def _message_id(self, method: str, result: dict) -> str:
        message_id = result.get("message_id")
        if message_id is None:
            # ok: true without the Message: it probably exists, but nothing proves it. In doubt.
            raise InDoubt(f"Telegram accepted {method} but named no message id")
        return str(message_id)

    def _call(self, method: str, *, posting: bool = True, **request) -> dict:
        try:
            response = self._http.post(f"{self._base}/bot{self._token}/{method}", **request)
        except httpx.TransportError as error:
            raise scrub(transport_problem("Telegram", self._base, error, self._timeout, creates=posting),
                        [self._token]) from None
        body = json_body(response)
        if response.is_success and body.get("ok") is True:
            result = body.get("result")
            return result if isinstance(result, dict) else {}
        if response.is_success:  # 2xx that is not the Bot API's answer: a proxy's page, or cut off
            if posting:
                raise InDoubt(f"Telegram's answer to {method} was unreadable; the message may have been sent")
            raise RetryLater(f"Telegram's answer to {method} was unreadable")
        raise scrub(self._error(method, response.status_code, body, posting), [self._token])

    def _error(self, method: str, status: int, body: dict, posting: bool) -> PublishError:
        description = str(body.get("description") or f"HTTP {status}")
        parameters = body.get("parameters") if isinstance(body.get("parameters"), dict) else {}
        if status == 429:
            wait = parameters.get("retry_after")
            delay = (timedelta(seconds=min(wait, FLOOD_WAIT_CEILING)) if isinstance(wait, (int, float)) and wait > 0
                     else FLOOD_WAIT_FALLBACK)
            retry_at = self._clock() + delay
            return RetryLater(f"Telegram flood control on {method} ({description}); next try after "
                              f"{retry_at:%Y-%m-%d %H:%M:%S} UTC", retry_at=retry_at, counts_as_attempt=False)
        if status in MAY_HAVE_ACTED and posting:
            return InDoubt(f"Telegram answered {status} to {method} ({description}); the message may have been sent")
        if status >= 500:
            return RetryLater(f"Telegram answered {status} to {method}: {description}")
        if status in (401, 404):  # a revoked token is 401; a malformed one makes the URL unknown, 404
            return TargetPaused(f"Telegram rejected the bot token of target {self.name!r} ({description}): "
                                f"check {self._token_var} (the token @BotFather gave) and api_base ({self._base})")
        if status == 403:
            return TargetPaused(f"Telegram refused {method} in chat {self._chat_id} for target {self.name!r} "
                                f"({description}): add the bot to the channel as an administrator allowed "
                                "to post messages")
        if "migrate_to_chat_id" in parameters:
            return TargetPaused(f"the chat of target {self.name!r} moved ({description}): set "
                                f"chat_id = \"{parameters['migrate_to_chat_id']}\" in settings.toml")
        if method == "sendPhoto" and any(words in description.lower() for words in PHOTO_RIGHTS):
            return PostRejected(f"the bot of target {self.name!r} may not send photos in chat {self._chat_id} "
                                f"({description}): posted the text alone; allow it to send photos to attach them")
        if any(words in description.lower() for words in MISSING_RIGHTS):
            return TargetPaused(f"the bot of target {self.name!r} may not post in chat {self._chat_id} "
                                f"({description}): make it an administrator of the channel with the right to "
                                "post messages (and to send photos)")
        if "chat not found" in description.lower():
            return TargetPaused(f"Telegram does not know chat {self._chat_id} of target {self.name!r} "
                                f"({description}): check chat_id (\"@channelname\" or the numeric id) and "
                                "that the bot is a member")
        if posting:
            return PostRejected(f"Telegram refused the post ({status}): {description}")
        return TargetPaused(f"Telegram refused {method} ({status}) for target {self.name!r}: {description}")
