"""A fake Mastodon instance on 127.0.0.1 with Mastodon's real entity shapes and error bodies
(`{"error": "..."}`), its rate-limit headers, and its Idempotency-Key behaviour: a repeated key
returns the status created the first time instead of a second one.

Use the `mastodon_api` fixture."""

from __future__ import annotations

import itertools
import re
from datetime import datetime, timezone

import pytest
import regex

from tests.fakes.http_fake import Answer, FakeServer, Request

ACCESS_TOKEN = "mst-FAKEaccessTOKEN0123456789abcdefABCDEF"
INVALID_TOKEN = {"error": "The access token is invalid"}
RATE_LIMITED = {"error": "Too many requests"}
ACCOUNT = {"id": "109876543210", "username": "kemenpora", "acct": "kemenpora", "display_name": "Kemenpora RI",
           "locked": False, "bot": True, "url": "https://mastodon.example/@kemenpora"}
_URL = re.compile(r"https?://\S+")
_CLUSTER = regex.compile(r"\X")


def _length(text: str, url_weight: int) -> int:
    """Mastodon's StatusLengthValidator: grapheme clusters, each link counted as url_weight."""
    return len(_CLUSTER.findall(_URL.sub("x" * url_weight, text)))


def instance_v2(max_characters: int = 500, url_weight: int = 23) -> dict:
    return {
        "domain": "mastodon.example", "title": "Mastodon", "version": "4.3.2", "source_url": "https://github.com/mastodon/mastodon",
        "configuration": {
            "urls": {"streaming": "wss://mastodon.example"},
            "accounts": {"max_featured_tags": 10},
            "statuses": {"max_characters": max_characters, "max_media_attachments": 4,
                         "characters_reserved_per_url": url_weight},
            "media_attachments": {"supported_mime_types": ["image/jpeg", "image/png", "image/gif", "image/webp"],
                                  "image_size_limit": 16777216, "image_matrix_limit": 33177600},
        },
        "registrations": {"enabled": False, "approval_required": False, "message": None},
    }


class FakeMastodon(FakeServer):
    """`statuses` holds every status created: {"id", "text", "visibility", "media", "key"}; `media` the uploads."""

    def __init__(self, token: str = ACCESS_TOKEN, max_characters: int = 500, url_weight: int = 23):
        super().__init__()
        self.token = token
        self.instance = instance_v2(max_characters, url_weight)
        self.statuses: list[dict] = []
        self.media: dict[str, dict] = {}
        self._by_key: dict[str, dict] = {}
        self._ids = itertools.count(113456789012345678)
        self.rate_limit_reset = "2026-11-26T03:05:00.000Z"

    def route(self, method: str, path: str) -> str:
        return path.rstrip("/") or "/"  # Rails routes /api/v2/instance/ like /api/v2/instance

    def handle(self, request: Request) -> Answer:
        if (request.method, request.route) == ("GET", "/api/v2/instance"):
            return Answer(200, self.instance)
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return Answer(401, dict(INVALID_TOKEN))
        headers = {"X-RateLimit-Limit": "300", "X-RateLimit-Remaining": "299",
                   "X-RateLimit-Reset": self.rate_limit_reset}
        body = request.body if isinstance(request.body, dict) else {}
        if (request.method, request.route) == ("GET", "/api/v1/accounts/verify_credentials"):
            return Answer(200, dict(ACCOUNT), headers=headers)
        if (request.method, request.route) == ("POST", "/api/v2/media"):
            return self._media(body, headers)
        if (request.method, request.route) == ("POST", "/api/v1/statuses"):
            return self._status(body, request.headers.get("Idempotency-Key"), headers)
        return Answer(404, {"error": "Record not found"})

    def _media(self, body: dict, headers: dict) -> Answer:
        data = body.get("file")
        if not isinstance(data, bytes) or not data:
            return Answer(422, {"error": "Validation failed: File can't be blank"})
        media_id = str(next(self._ids))
        self.media[media_id] = {"data": data, "description": body.get("description")}
        return Answer(200, {"id": media_id, "type": "image", "url": f"https://files.mastodon.example/{media_id}.png",
                            "preview_url": f"https://files.mastodon.example/{media_id}_small.png",
                            "remote_url": None, "description": body.get("description"),
                            "blurhash": "UFBWY:8_0Jxv4mx]t8t64.%M-:IUWGWAt6M}", "meta": {}}, headers=headers)

    def _status(self, body: dict, key: str | None, headers: dict) -> Answer:
        if key and key in self._by_key:  # Mastodon returns the status the key already created
            return Answer(200, self._entity(self._by_key[key]), headers=headers)
        text = body.get("status") or ""
        media_ids = body.get("media_ids[]") or []
        if not text.strip() and not media_ids:
            return Answer(422, {"error": "Validation failed: Text can't be blank"})
        statuses = self.instance["configuration"]["statuses"]
        if _length(text, statuses["characters_reserved_per_url"]) > statuses["max_characters"]:
            return Answer(422, {"error": f"Validation failed: Text character limit of "
                                         f"{statuses['max_characters']} exceeded"})
        if any(m not in self.media for m in media_ids):
            return Answer(422, {"error": "Validation failed: Media attachments are invalid"})
        status = {"id": str(next(self._ids)), "text": text, "visibility": body.get("visibility", "public"),
                  "media": list(media_ids), "key": key}
        self.statuses.append(status)
        if key:
            self._by_key[key] = status
        return Answer(200, self._entity(status), headers=headers)

    def _entity(self, status: dict) -> dict:
        return {"id": status["id"], "created_at": datetime(2026, 11, 26, 3, 0, tzinfo=timezone.utc).isoformat(),
                "in_reply_to_id": None, "sensitive": False, "spoiler_text": "", "visibility": status["visibility"],
                "language": "id", "uri": f"https://mastodon.example/users/kemenpora/statuses/{status['id']}",
                "url": f"https://mastodon.example/@kemenpora/{status['id']}", "content": f"<p>{status['text']}</p>",
                "account": dict(ACCOUNT), "media_attachments": [{"id": m, "type": "image"} for m in status["media"]],
                "mentions": [], "tags": [], "emojis": [], "card": None, "poll": None}


@pytest.fixture
def mastodon_api():
    """A running fake Mastodon instance; stopped after the test."""
    fake = FakeMastodon().start()
    try:
        yield fake
    finally:
        fake.stop()
