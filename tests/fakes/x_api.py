"""A fake X API v2 on 127.0.0.1, speaking real HTTP with X's real response shapes.

It checks OAuth 1.0a like X does: the consumer key and access token must be the configured ones,
and the HMAC-SHA1 signature must match the request *as received* (method, the URL from the Host
header and path, the query). A client that signs one URL and sends another gets a 401 here.

Where each behaviour comes from:
- POST /2/tweets, GET /2/users/me, POST /2/media/upload, POST /2/media/metadata: request and answer
  shapes from X's published OpenAPI spec (github.com/xdevplatform/xdk, specs/openapi.json, commit
  84c26540, 2026-07-25). MediaUploadRequest is `additionalProperties: false` with exactly `media`,
  `media_category` (required) and `additional_owners`; an unknown or missing field gets the spec's
  InvalidRequestProblem (type https://api.x.com/2/problems/invalid-request, title, detail,
  parameter) with status 400.
- The spec's other request checks, played as the same 400 problem: CreatePostsRequest is
  `additionalProperties: false` (so is CreatePostsMedia), `media.media_ids` holds 1 to 4 ids of
  `^[0-9]{1,19}$`; CreateMediaMetadataRequest's `id` has that pattern too and
  `metadata.alt_text.text` is at most 1000 characters (maxLength).
- Duplicate text: 403 "You are not allowed to create a Tweet with duplicate content." (X API v2
  "Error codes" page, docs.x.com, read 2026-11; no numeric code in v2).
- Usage capped (`usage_capped = True`): 429 with the problem type
  https://api.twitter.com/2/problems/usage-capped, title UsageCapExceeded (docs.x.com "Error codes",
  read 2026-12; design.md "Facts to build on": an exhausted balance or cap is a 429, not a 402).
- Rate-limit headers x-rate-limit-limit/-remaining/-reset (docs.x.com "Rate limits", 2026-11).

The HTTP plumbing is tests/fakes/http_fake.py's FakeServer, as for every network's fake; the
`x_api` fixture (registered in tests/conftest.py) gives each test a running one.
"""

from __future__ import annotations

import itertools
import re
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
from oauthlib.oauth1.rfc5849 import signature as oauth_signature
from oauthlib.oauth1.rfc5849.utils import parse_authorization_header, unescape

from tests.fakes.http_fake import Answer, FakeServer, Request

CREDENTIALS = {
    "consumer_key": "ck-FAKEconsumerKEY0123",
    "consumer_secret": "cs-FAKEconsumerSECRET0123456789abcdef",
    "access_token": "1445880000000000000-FAKEaccessTOKEN0123",
    "access_token_secret": "ats-FAKEaccessTOKENsecret0123456789",
}

DUPLICATE_DETAIL = "You are not allowed to create a Tweet with duplicate content."
UNAUTHORIZED = {"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"}
NOT_FOUND = {"title": "Not Found Error", "type": "about:blank", "status": 404,
             "detail": "Sorry, that page does not exist."}
ME = {"id": "2244994945", "name": "Kemenpora RI", "username": "kemenpora"}
USAGE_CAPPED = {"title": "UsageCapExceeded", "detail": "Usage cap exceeded: Monthly product cap",
                "type": "https://api.twitter.com/2/problems/usage-capped", "period": "Monthly", "scope": "Product"}
MEDIA_UPLOAD_FIELDS = {"media", "media_category", "additional_owners"}
"""MediaUploadRequest's properties in the OpenAPI spec (additionalProperties: false)."""
MEDIA_CATEGORIES = {"tweet_image", "tweet_video", "tweet_gif", "dm_image", "dm_video", "dm_gif", "subtitles"}
CREATE_POST_FIELDS = {"card_uri", "community_id", "direct_message_deep_link", "edit_options", "for_super_followers_only",
                      "geo", "made_with_ai", "media", "nullcast", "paid_partnership", "poll", "quote_tweet_id", "reply",
                      "reply_settings", "share_with_followers", "text"}
"""CreatePostsRequest's properties (additionalProperties: false)."""
POST_MEDIA_FIELDS = {"call_to_actions", "description", "embeddable", "media_ids", "preview_media_id",
                     "tagged_user_ids", "title"}
"""CreatePostsMedia's properties (additionalProperties: false)."""
ALT_TEXT_MAX = 1000
"""CreateMediaMetadataMetadataAltText.text maxLength."""
_MEDIA_ID = re.compile(r"[0-9]{1,19}")


def invalid_request(detail: str, parameter: str) -> dict:
    """The spec's InvalidRequestProblem."""
    return {"type": "https://api.x.com/2/problems/invalid-request", "title": "Invalid Request",
            "detail": detail, "parameter": parameter, "status": 400}


class FakeXApi(FakeServer):
    """X API v2: `enqueue` scripts the next answers of a route (served only to requests that pass
    the OAuth check); `requests` records every request, with `auth_problem` set when it failed."""

    def __init__(self, credentials: dict[str, str] | None = None):
        super().__init__()
        self.credentials = dict(credentials or CREDENTIALS)
        self.posted: dict[str, str] = {}  # text -> id, to refuse duplicates like X
        self.tweets: list[dict] = []  # every created post: id, text, media_ids
        self.media: dict[str, dict] = {}  # media id -> {"data", "media_type", "category", "alt_text"}
        self.usage_capped = False
        """When True, every call is refused with 429 usage-capped, as when the credits run out."""
        self.rate_limit: dict[str, int] | None = None
        """When set ({"limit", "remaining", "reset"}), sent as x-rate-limit-* headers on each created
        post, with "remaining" counting down as X's does."""
        self._ids = itertools.count(1445880548472328192)

    def route(self, method: str, path: str) -> str:
        """The path from "/2/" on: api_base may carry a prefix (a proxy's /proxy/x)."""
        return path[path.find("/2/"):] if "/2/" in path else path

    def refuse(self, request: Request) -> Answer | None:
        request.auth_problem = self.check_oauth(request.method, request.path, request.headers)
        return Answer(401, dict(UNAUTHORIZED)) if request.auth_problem else None

    # --- Behaviour -------------------------------------------------------------------------------

    def handle(self, request: Request) -> Answer:
        method, route, body = request.method, request.route, request.body
        if self.usage_capped:
            return Answer(429, dict(USAGE_CAPPED))
        if (method, route) == ("POST", "/2/tweets"):
            return self._create_tweet(body)
        if (method, route) == ("POST", "/2/media/upload"):
            return self._upload_media(body)
        if (method, route) == ("POST", "/2/media/metadata"):
            return self._media_metadata(body)
        if (method, route) == ("GET", "/2/users/me"):
            return Answer(200, {"data": dict(ME)})
        return Answer(404, dict(NOT_FOUND))

    def _create_tweet(self, body: object) -> Answer:
        if problem := _create_post_problem(body):
            return Answer(400, invalid_request(*problem))
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text:
            return Answer(400, {"errors": [{"parameters": {"text": [str(text)]},
                                              "message": "text must not be empty"}],
                                  "title": "Invalid Request",
                                  "detail": "One or more parameters to your request was invalid.",
                                  "type": "https://api.twitter.com/2/problems/invalid-request"})
        if text in self.posted:
            return Answer(403, {"detail": DUPLICATE_DETAIL, "type": "about:blank", "title": "Forbidden",
                                  "status": 403})
        media_ids = ((body.get("media") or {}).get("media_ids") or []) if isinstance(body, dict) else []
        if any(media_id not in self.media for media_id in media_ids):
            return Answer(400, {"errors": [{"parameters": {"media.media_ids": media_ids},
                                              "message": "Your media IDs are invalid."}],
                                  "title": "Invalid Request",
                                  "detail": "One or more parameters to your request was invalid.",
                                  "type": "https://api.twitter.com/2/problems/invalid-request"})
        tweet_id = str(next(self._ids))
        self.posted[text] = tweet_id
        self.tweets.append({"id": tweet_id, "text": text, "media_ids": list(media_ids)})
        headers = {}
        if self.rate_limit is not None:
            self.rate_limit["remaining"] = max(0, self.rate_limit["remaining"] - 1)
            headers = {f"x-rate-limit-{k}": str(v) for k, v in self.rate_limit.items()}
        return Answer(201, {"data": {"id": tweet_id, "text": text, "edit_history_tweet_ids": [tweet_id]}},
                        headers=headers)

    def _upload_media(self, body: object) -> Answer:
        """Simple (one request) upload, multipart: exactly the spec's fields, `media` the raw bytes."""
        fields = body if isinstance(body, dict) else {}
        unknown = sorted(set(fields) - MEDIA_UPLOAD_FIELDS)
        if unknown:
            return Answer(400, invalid_request(f"The request has an unknown field: {unknown[0]}", unknown[0]))
        media = fields.get("media")
        if not isinstance(media, bytes) or not media:
            return Answer(400, invalid_request("The `media` field is required.", "media"))
        category = fields.get("media_category")
        if category not in MEDIA_CATEGORIES:
            return Answer(400, invalid_request(f"The `media_category` field must be one of {sorted(MEDIA_CATEGORIES)}.",
                                               "media_category"))
        media_id = str(next(self._ids))
        self.media[media_id] = {"data": media, "category": category, "alt_text": None}
        return Answer(200, {"data": {"id": media_id, "media_key": f"3_{media_id}", "size": len(media),
                                       "expires_after_secs": 86400,
                                       "image": {"image_type": "image/png", "w": 800, "h": 533}}})

    def _media_metadata(self, body: object) -> Answer:
        media_id = body.get("id") if isinstance(body, dict) else None
        if not isinstance(media_id, str) or not _MEDIA_ID.fullmatch(media_id):
            return Answer(400, invalid_request("The `id` field must match ^[0-9]{1,19}$.", "id"))
        alt = (((body.get("metadata") or {}).get("alt_text") or {}).get("text"))
        if isinstance(alt, str) and len(alt) > ALT_TEXT_MAX:
            return Answer(400, invalid_request(f"The `metadata.alt_text.text` field is longer than {ALT_TEXT_MAX} "
                                               "characters.", "metadata.alt_text.text"))
        if media_id not in self.media:
            return Answer(400, {"errors": [{"message": "media id not found"}], "title": "Invalid Request",
                                  "detail": "One or more parameters to your request was invalid.",
                                  "type": "https://api.twitter.com/2/problems/invalid-request"})
        alt_text = (((body.get("metadata") or {}).get("alt_text") or {}).get("text"))
        self.media[media_id]["alt_text"] = alt_text
        return Answer(200, {"data": {"id": media_id, "associated_metadata": {"alt_text": {"text": alt_text}}}})

    def check_oauth(self, method: str, path: str, headers: dict[str, str]) -> str | None:
        """Why this request's OAuth 1.0a header is not valid, or None when it is."""
        header = headers.get("Authorization", "")
        if not header.startswith("OAuth "):
            return "no OAuth Authorization header"
        params = {key: unescape(value) for key, value in parse_authorization_header(header)}
        if params.get("oauth_signature_method") != "HMAC-SHA1":
            return f"unexpected signature method {params.get('oauth_signature_method')!r}"
        if params.get("oauth_consumer_key") != self.credentials["consumer_key"]:
            return "unknown consumer key"
        if params.get("oauth_token") != self.credentials["access_token"]:
            return "unknown access token"
        received = f"http://{headers.get('Host', '')}{path}"  # the URL as it reached us
        collected = oauth_signature.collect_parameters(
            uri_query=urlsplit(received).query, headers={"Authorization": header}, exclude_oauth_signature=True
        )
        base = oauth_signature.signature_base_string(
            method, oauth_signature.base_string_uri(received), oauth_signature.normalize_parameters(collected)
        )
        secrets = SimpleNamespace(client_secret=self.credentials["consumer_secret"],
                                  resource_owner_secret=self.credentials["access_token_secret"])
        expected = oauth_signature.sign_hmac_sha1_with_client(base, secrets)
        if not oauth_signature.safe_string_equals(expected, params.get("oauth_signature", "")):
            return f"signature does not match the received URL {received}"
        return None


def _create_post_problem(body: object) -> tuple[str, str] | None:
    """What CreatePostsRequest's schema refuses in a POST /2/tweets body, as (detail, parameter)."""
    if not isinstance(body, dict):
        return "The request body must be a JSON object.", "body"
    if unknown := sorted(set(body) - CREATE_POST_FIELDS):
        return f"The request has an unknown field: {unknown[0]}", unknown[0]
    media = body.get("media")
    if media is None:
        return None
    if not isinstance(media, dict) or (unknown := sorted(set(media) - POST_MEDIA_FIELDS)):
        return "The `media` field has an unknown field.", "media"
    ids = media.get("media_ids")
    if not isinstance(ids, list) or not 1 <= len(ids) <= 4:
        return "The `media.media_ids` field must hold 1 to 4 ids.", "media.media_ids"
    if not all(isinstance(i, str) and _MEDIA_ID.fullmatch(i) for i in ids):
        return "The `media.media_ids` ids must match ^[0-9]{1,19}$.", "media.media_ids"
    return None


@pytest.fixture
def x_api():
    """A running fake X API; stopped after the test."""
    fake = FakeXApi().start()
    try:
        yield fake
    finally:
        fake.stop()
