"""A fake Mastodon instance on 127.0.0.1 with Mastodon's real entity shapes and error bodies
(`{"error": "..."}`), its rate-limit headers, and its Idempotency-Key behaviour.

Where each behaviour comes from (docs.joinmastodon.org, mastodon/documentation, read 2026-12, for
Mastodon 4.3):
- POST /api/v1/statuses (methods/statuses): an `Idempotency-Key` repeated within one hour returns
  the status the key created; after the hour the key is forgotten and the same request creates a
  second status. Attaching media that has not finished processing: 422 "Cannot attach files that
  have not finished processing. Try again in a moment!" (Mastodon's media_attachments.validations
  .not_ready).
- POST /api/v2/media (methods/media): 200 with the attachment for an image processed at once; 202
  with `url: null` for a GIF, video or audio file processed asynchronously. GET /api/v1/media/:id:
  206 while it is processed, 200 once it is (the token's owner only; 404 otherwise), 422 "There
  was an error processing the media attachment" when processing failed (`processing_fails`).
  Checked against mastodon/documentation content/en/methods/media.md, commit 2903485d, 2026-07-02.
- GET /api/v1/accounts/verify_credentials (methods/accounts): the token's account; 401 without a
  valid token.
- GET /api/v1/accounts/:id/statuses (methods/accounts): newest first; `limit` defaults to 20 and
  is capped at 40 (Rails' limit_param), `max_id` pages back; without a token only public statuses
  are shown, a bad token is 401, an unknown account 404. `content` is the status's HTML as Mastodon
  renders it: links as <a href> with the invisible/ellipsis spans, hashtags as links, line breaks as
  <br />, blank lines as paragraphs.

Time comes from the test's injected clock (`clock` fixture). Use the `mastodon_api` fixture."""

from __future__ import annotations

import html
import itertools
import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest
import regex

from tests.fakes.http_fake import Answer, FakeServer, Request

ACCESS_TOKEN = "mst-FAKEaccessTOKEN0123456789abcdefABCDEF"
INVALID_TOKEN = {"error": "The access token is invalid"}
RATE_LIMITED = {"error": "Too many requests"}
ACCOUNT = {"id": "109876543210", "username": "kemenpora", "acct": "kemenpora", "display_name": "Kemenpora RI",
           "locked": False, "bot": True, "url": "https://mastodon.example/@kemenpora"}
_URL = re.compile(r"https?://\S+")
IDEMPOTENCY_KEPT = timedelta(hours=1)
"""How long Mastodon keeps an Idempotency-Key (methods/statuses)."""
NOT_READY = {"error": "Cannot attach files that have not finished processing. Try again in a moment!"}
STATUSES_DEFAULT_LIMIT, STATUSES_MAX_LIMIT = 20, 40
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

    def __init__(self, token: str = ACCESS_TOKEN, max_characters: int = 500, url_weight: int = 23,
                 clock: Callable[[], datetime] | None = None):
        super().__init__()
        self.clock = clock or (lambda: datetime(2026, 11, 26, 3, 0, tzinfo=timezone.utc))
        self.processing_polls = 1
        """How many GET /api/v1/media/:id a GIF or video answers 206 (processing) before it is ready."""
        self.processing_fails = False
        """When True, a GIF or video's processing fails: GET /api/v1/media/:id answers 422 once it is done."""
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
        if request.method == "GET" and (match := re.fullmatch(r"/api/v1/accounts/(\w+)/statuses", request.route)):
            return self._account_statuses(request, match.group(1))
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return Answer(401, dict(INVALID_TOKEN))
        headers = {"X-RateLimit-Limit": "300", "X-RateLimit-Remaining": "299",
                   "X-RateLimit-Reset": self.rate_limit_reset}
        body = request.body if isinstance(request.body, dict) else {}
        if (request.method, request.route) == ("GET", "/api/v1/accounts/verify_credentials"):
            return Answer(200, dict(ACCOUNT), headers=headers)
        if (request.method, request.route) == ("POST", "/api/v2/media"):
            return self._media(body, headers)
        if request.method == "GET" and (match := re.fullmatch(r"/api/v1/media/(\w+)", request.route)):
            return self._media_status(match.group(1), headers)
        if (request.method, request.route) == ("POST", "/api/v1/statuses"):
            return self._status(body, request.headers.get("Idempotency-Key"), headers)
        return Answer(404, {"error": "Record not found"})

    def _account_statuses(self, request: Request, account_id: str) -> Answer:
        authorization = request.headers.get("Authorization")
        if authorization is not None and authorization != f"Bearer {self.token}":
            return Answer(401, dict(INVALID_TOKEN))
        if account_id != ACCOUNT["id"]:
            return Answer(404, {"error": "Record not found"})
        try:  # Rails' limit_param: params[:limit].to_i.abs, at most 40
            limit = min(abs(int(request.query.get("limit", STATUSES_DEFAULT_LIMIT))), STATUSES_MAX_LIMIT)
        except ValueError:
            limit = 0
        shown = [s for s in reversed(self.statuses) if authorization or s["visibility"] == "public"]
        if "max_id" in request.query:
            shown = [s for s in shown if int(s["id"]) < int(request.query["max_id"])]
        return Answer(200, [self._entity(s) for s in shown[:limit]])

    def _media(self, body: dict, headers: dict) -> Answer:
        data = body.get("file")
        if not isinstance(data, bytes) or not data:
            return Answer(422, {"error": "Validation failed: File can't be blank"})
        media_id = str(next(self._ids))
        kind = "gifv" if data.startswith((b"GIF87a", b"GIF89a")) else "image"
        self.media[media_id] = {"data": data, "description": body.get("description"), "type": kind,
                                "polls_left": self.processing_polls if kind == "gifv" else 0}
        return Answer(202 if kind == "gifv" else 200, self._attachment(media_id), headers=headers)

    def _media_status(self, media_id: str, headers: dict) -> Answer:
        media = self.media.get(media_id)
        if media is None:
            return Answer(404, {"error": "Record not found"})
        if media["polls_left"] > 0:
            answer = Answer(206, self._attachment(media_id), headers=headers)
            media["polls_left"] -= 1
            return answer
        if self.processing_fails and media["type"] != "image":
            return Answer(422, {"error": "Validation failed: File content type is invalid, File is invalid"},
                          headers=headers)
        return Answer(200, self._attachment(media_id), headers=headers)

    def _attachment(self, media_id: str) -> dict:
        media = self.media[media_id]
        ready = media["polls_left"] == 0
        return {"id": media_id, "type": media["type"],
                "url": f"https://files.mastodon.example/{media_id}.png" if ready else None,
                "preview_url": f"https://files.mastodon.example/{media_id}_small.png",
                "remote_url": None, "description": media["description"],
                "blurhash": "UFBWY:8_0Jxv4mx]t8t64.%M-:IUWGWAt6M}", "meta": {}}

    def _status(self, body: dict, key: str | None, headers: dict) -> Answer:
        now = self.clock()
        if key and key in self._by_key and now - self._by_key[key]["created_at"] < IDEMPOTENCY_KEPT:
            return Answer(200, self._entity(self._by_key[key]), headers=headers)  # the status the key created
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
        if any(self.media[m]["polls_left"] > 0 for m in media_ids):
            return Answer(422, dict(NOT_READY))
        status = {"id": str(next(self._ids)), "text": text, "visibility": body.get("visibility", "public"),
                  "media": list(media_ids), "key": key, "created_at": now}
        self.statuses.append(status)
        if key:
            self._by_key[key] = status
        return Answer(200, self._entity(status), headers=headers)

    def _entity(self, status: dict) -> dict:
        return {"id": status["id"], "created_at": status["created_at"].strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "in_reply_to_id": None, "sensitive": False, "spoiler_text": "", "visibility": status["visibility"],
                "language": "id", "uri": f"https://mastodon.example/users/kemenpora/statuses/{status['id']}",
                "url": f"https://mastodon.example/@kemenpora/{status['id']}", "content": render_content(status["text"]),
                "account": dict(ACCOUNT), "media_attachments": [self._attachment(m) for m in status["media"]],
                "mentions": [], "tags": [], "emojis": [], "card": None, "poll": None}


def _link(url: str) -> str:
    """Mastodon's TextFormatter.shortened_link: the scheme and www. invisible, 30 characters shown."""
    prefix = re.match(r"https?://(www\.)?", url).group(0)
    rest = url[len(prefix):]
    shown, hidden = rest[:30], rest[30:]
    ellipsis = ' class="ellipsis"' if hidden else ""
    return (f'<a href="{html.escape(url)}" target="_blank" rel="nofollow noopener" translate="no">'
            f'<span class="invisible">{html.escape(prefix)}</span><span{ellipsis}>{html.escape(shown)}</span>'
            f'<span class="invisible">{html.escape(hidden)}</span></a>')


def render_content(text: str) -> str:
    """A status's text as Mastodon renders it to `content` (TextFormatter, 4.x)."""
    def line(raw: str) -> str:
        out, position = [], 0
        for match in re.finditer(r"https?://\S+|(?<![\w/])#\w+", raw):
            out.append(html.escape(raw[position:match.start()], quote=False))
            token = match.group(0)
            if token.startswith("#"):
                out.append(f'<a href="https://mastodon.example/tags/{token[1:].lower()}" class="mention hashtag" '
                           f'rel="tag">#<span>{html.escape(token[1:])}</span></a>')
            else:
                out.append(_link(token))
            position = match.end()
        out.append(html.escape(raw[position:], quote=False))
        return "".join(out)
    paragraphs = [p for p in re.split(r"\n\s*\n", text.strip()) if p]
    return "".join(f"<p>{'<br />'.join(line(l) for l in p.split(chr(10)))}</p>" for p in paragraphs)


@pytest.fixture
def mastodon_api(clock):
    """A running fake Mastodon instance on the test's clock; stopped after the test."""
    fake = FakeMastodon(clock=clock).start()
    try:
        yield fake
    finally:
        fake.stop()
