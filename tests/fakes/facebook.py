"""A fake Graph API for a Facebook Page on 127.0.0.1: /{version}/{page-id}/feed and /photos with
the real answers (`{"id": "PAGE_POST"}`, `{"id", "post_id"}`) and the real error shape
`{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}`. Use the `facebook_api` fixture."""

from __future__ import annotations

import itertools

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


class FakeGraphPage(FakeServer):
    """`posts` holds every Page post: {"id", "message", "link", "photo"}."""

    def __init__(self, token: str = PAGE_TOKEN, page_id: str = PAGE_ID, version: str = VERSION):
        super().__init__()
        self.token, self.page_id, self.version = token, page_id, version
        self.posts: list[dict] = []
        self._ids = itertools.count(987654321000)

    def route(self, method: str, path: str) -> str:
        return path.removeprefix(f"/{self.version}")

    def handle(self, request: Request) -> Answer:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return Answer(400, dict(INVALID_TOKEN))
        body = request.body if isinstance(request.body, dict) else {}
        page = f"/{self.page_id}"
        if (request.method, request.route) == ("GET", page):
            return Answer(200, {"id": self.page_id, "name": "Kementerian Pemuda dan Olahraga"})
        if request.route not in (f"{page}/feed", f"{page}/photos"):
            return Answer(400, graph_error(f"Unsupported post request. Object with ID '{request.route.split('/')[1]}' "
                                           "does not exist, cannot be loaded due to missing permissions, or does not "
                                           "support this operation.", 100, 33, "GraphMethodException"))
        if request.route.endswith("/photos"):
            photo = body.get("source")
            if not isinstance(photo, bytes) or not photo.startswith((b"\xff\xd8\xff", b"\x89PNG")):
                return Answer(400, graph_error("(#324) Requires upload file", 324))
            post_id = f"{self.page_id}_{next(self._ids)}"
            self.posts.append({"id": post_id, "message": body.get("caption"), "link": None, "photo": photo})
            return Answer(200, {"id": str(next(self._ids)), "post_id": post_id})
        message = body.get("message")
        if not message and not body.get("link"):
            return Answer(400, graph_error("(#100) Missing message or attachment.", 100))
        if any(p["message"] == message for p in self.posts[-1:]):
            return Answer(400, graph_error("(#506) Duplicate status message", 506))
        post_id = f"{self.page_id}_{next(self._ids)}"
        self.posts.append({"id": post_id, "message": message, "link": body.get("link"), "photo": None})
        return Answer(200, {"id": post_id})


@pytest.fixture
def facebook_api():
    """A running fake Graph API for one Page; stopped after the test."""
    fake = FakeGraphPage().start()
    try:
        yield fake
    finally:
        fake.stop()
