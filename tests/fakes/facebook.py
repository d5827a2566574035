"""A fake Graph API for a Facebook Page on 127.0.0.1: /{version}/{page-id}/feed and /photos with
the real answers (`{"id": "PAGE_POST"}`, `{"id", "post_id"}`), the Page's posts read back with
GET /{page-id}/posts, and the real error shape `{"error": {"message", "type", "code",
"error_subcode", "fbtrace_id"}}`. Use the `facebook_api` fixture.

Where its behaviour comes from:
- Pages API "Posts" guide (developers.facebook.com/docs/pages-api/posts, read 2026-12): publish with
  POST /{page-id}/feed, `message` and `link`; the permissions pages_manage_engagement,
  pages_manage_posts, pages_read_engagement, pages_read_user_engagement and the CREATE_CONTENT task.
  "Get Started" (docs/pages-api/getting-started) adds pages_show_list.
- Graph API reference, Page Feed and Page Post (docs/graph-api/reference/page/feed, /pagepost, v25.0):
  reading /{page-id}/posts gives `{"data": [...], "paging": {"cursors": {"before", "after"}, "next"}}`,
  newest first, the fields named in `fields` (id, message, created_time, permalink_url, ...), and
  takes `since` (a Unix time), `limit` and the `after` cursor. `link` (with caption, description,
  name, object_id, source, type) is deprecated on these edges since v3.3, answered here with code 12.
  Asking for a field the node does not have is code 100.
- Graph API "Securing Requests" (docs/graph-api/security#appsecret_proof): with "Require App Secret"
  on, every call needs `appsecret_proof` = hex HMAC-SHA256 of the access token keyed with the app
  secret. Without it Graph answers code 100 "API calls from the server require an appsecret_proof
  argument", with a wrong one "Invalid appsecret_proof provided in the API argument" (both
  GraphMethodException; the wording as reported by users, e.g. markbates/goth#96, SammyK/
  LaravelFacebookSdk#186). `FakeGraphPage(app_secret=...)` turns it on.
- Facebook Login "Debugging access tokens" (developers.facebook.com/docs/facebook-login/guides/
  access-tokens/debugging, read 2026-12) and the Graph reference for /debug_token (v25.0):
  GET /debug_token?input_token=... with a valid token of the same app answers `{"data": {"app_id",
  "type", "application", "data_access_expires_at", "expires_at", "is_valid", "scopes", ...}}`;
  `expires_at` 0 means the token does not expire (a Page token from a long-lived user token).
  `token_expires_at` (a Unix time, 0 by default) and `token_valid` play it.
- Code 506 "Duplicate status message" for the same text posted twice in a row, as the existing tests
  have it (not found in current documentation).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
from datetime import datetime, timezone
from urllib.parse import urlencode

import pytest

from tests.fakes.http_fake import Answer, FakeServer, Request

PAGE_ID = "123456789"
PAGE_TOKEN = "EAAGfakePageAccessToken0123456789abcdefghijkl"
VERSION = "v25.0"


def graph_error(message: str, code: int, subcode: int | None = None, type_: str = "OAuthException",
                transient: bool = False) -> dict:
    error = {"message": message, "type": type_, "code": code, "fbtrace_id": "AbCdEfGhIjKlMnOp"}
    if subcode is not None:
        error["error_subcode"] = subcode
    if transient:
        error["is_transient"] = True
    return {"error": error}


TOKEN_EXPIRED = graph_error("Error validating access token: Session has expired on Tuesday, 24-Nov-26 "
                            "09:00:00 PST. The current time is Thursday, 26-Nov-26 03:00:00 PST.", 190, 463)
INVALID_TOKEN = graph_error("Invalid OAuth access token - Cannot parse access token", 190)


POST_FIELDS = {"id", "message", "created_time", "permalink_url", "story", "updated_time", "full_picture",
               "status_type", "is_published", "from", "attachments"}
"""Fields this fake's Page Post node has (a subset of the real node's)."""
DEPRECATED_POST_FIELDS = {"link", "caption", "description", "name", "object_id", "source", "type"}
MISSING_PROOF = graph_error("API calls from the server require an appsecret_proof argument", 100,
                            type_="GraphMethodException")
INVALID_PROOF = graph_error("Invalid appsecret_proof provided in the API argument", 100, type_="GraphMethodException")


def graph_time(moment: datetime) -> str:
    """Graph's created_time: "2026-11-26T03:00:05+0000"."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+0000")


class FakeGraphPage(FakeServer):
    """`posts` holds every Page post, oldest first: {"id", "message", "link", "photo", "created_time"}.
    `now` is when a new post is made (the real time unless a test sets it)."""

    def __init__(self, token: str = PAGE_TOKEN, page_id: str = PAGE_ID, version: str = VERSION,
                 app_secret: str | None = None):
        super().__init__()
        self.token, self.page_id, self.version, self.app_secret = token, page_id, version, app_secret
        self.posts: list[dict] = []
        self.token_expires_at, self.token_valid = 0, True
        self.now = lambda: datetime.now(timezone.utc)
        self._ids = itertools.count(987654321000)

    def route(self, method: str, path: str) -> str:
        return path.removeprefix(f"/{self.version}")

    def refuse(self, request: Request) -> Answer | None:
        if self.app_secret is None:
            return None
        proof = request.query.get("appsecret_proof")
        if not proof:
            return Answer(400, MISSING_PROOF)
        expected = hmac.new(self.app_secret.encode(), self.token.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(proof, expected):
            return Answer(400, INVALID_PROOF)
        return None

    def handle(self, request: Request) -> Answer:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return Answer(400, dict(INVALID_TOKEN))
        body = request.body if isinstance(request.body, dict) else {}
        page = f"/{self.page_id}"
        if (request.method, request.route) == ("GET", page):
            return Answer(200, {"id": self.page_id, "name": "Kementerian Pemuda dan Olahraga"})
        if (request.method, request.route) == ("GET", f"{page}/posts"):
            return self._list_posts(request.query)
        if (request.method, request.route) == ("GET", "/debug_token"):
            return self._debug_token(request.query)
        if request.route not in (f"{page}/feed", f"{page}/photos"):
            return Answer(400, graph_error(f"Unsupported post request. Object with ID '{request.route.split('/')[1]}' "
                                           "does not exist, cannot be loaded due to missing permissions, or does not "
                                           "support this operation.", 100, 33, "GraphMethodException"))
        if request.route.endswith("/photos"):
            photo = body.get("source")
            if not isinstance(photo, bytes) or not photo.startswith((b"\xff\xd8\xff", b"\x89PNG")):
                return Answer(400, graph_error("(#324) Requires upload file", 324))
            post_id = f"{self.page_id}_{next(self._ids)}"
            self.posts.append({"id": post_id, "message": body.get("caption"), "link": None, "photo": photo,
                               "created_time": self.now()})
            return Answer(200, {"id": str(next(self._ids)), "post_id": post_id})
        message = body.get("message")
        if not message and not body.get("link"):
            return Answer(400, graph_error("(#100) Missing message or attachment.", 100))
        if any(p["message"] == message for p in self.posts[-1:]):
            return Answer(400, graph_error("(#506) Duplicate status message", 506))
        post_id = f"{self.page_id}_{next(self._ids)}"
        self.posts.append({"id": post_id, "message": message, "link": body.get("link"), "photo": None,
                           "created_time": self.now()})
        return Answer(200, {"id": post_id})

    def _debug_token(self, query: dict[str, str]) -> Answer:
        if "input_token" not in query:
            return Answer(400, graph_error("(#100) The parameter input_token is required", 100,
                                           type_="GraphMethodException"))
        if query["input_token"] != self.token:
            return Answer(200, {"data": {"error": {"code": 190, "message": "Invalid OAuth access token."},
                                         "is_valid": False, "scopes": []}})
        return Answer(200, {"data": {
            "app_id": "1234567890123", "type": "PAGE", "application": "Kemenpora Bridge",
            "data_access_expires_at": 0, "expires_at": self.token_expires_at, "is_valid": self.token_valid,
            "issued_at": 1795000000, "profile_id": self.page_id,
            "scopes": ["pages_manage_posts", "pages_read_engagement", "pages_show_list"], "user_id": "10215241773831025"}})

    def _list_posts(self, query: dict[str, str]) -> Answer:
        fields = [f for f in (query.get("fields") or "id,message,created_time").split(",") if f]
        for name in fields:
            if name in DEPRECATED_POST_FIELDS:
                return Answer(400, graph_error(f"(#12) {name} field is deprecated for versions v3.3 and higher", 12))
            if name not in POST_FIELDS:
                return Answer(400, graph_error(f"(#100) Tried accessing nonexisting field ({name}) on node type "
                                               "(PagePost)", 100))
        try:
            limit = min(int(query.get("limit") or 25), 100)
            since = int(query["since"]) if "since" in query else None
            start = int(query["after"]) if "after" in query else 0
        except ValueError:
            return Answer(400, graph_error("(#100) Invalid parameter", 100))
        newest_first = [p for p in reversed(self.posts)
                        if since is None or p["created_time"].timestamp() >= since]
        window = newest_first[start:start + limit]
        data = []
        for post in window:
            full = {"id": post["id"], "message": post["message"], "created_time": graph_time(post["created_time"]),
                    "permalink_url": f"https://www.facebook.com/{post['id'].replace('_', '/posts/')}"}
            data.append({name: full[name] for name in fields if name in full and full[name] is not None})
        answer: dict = {"data": data}
        if window:
            end = start + len(window)
            answer["paging"] = {"cursors": {"before": str(start), "after": str(end)}}
            if end < len(newest_first):
                answer["paging"]["next"] = (f"https://graph.facebook.com/{self.version}/{self.page_id}/posts?"
                                            + urlencode({**query, "after": str(end)}))
        return Answer(200, answer)


@pytest.fixture
def facebook_api():
    """A running fake Graph API for one Page; stopped after the test."""
    fake = FakeGraphPage().start()
    try:
        yield fake
    finally:
        fake.stop()
