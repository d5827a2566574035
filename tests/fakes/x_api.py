"""A fake X API v2 on 127.0.0.1, speaking real HTTP with X's real response shapes.

It checks OAuth 1.0a like X does: the consumer key and access token must be the configured ones,
and the HMAC-SHA1 signature must match the request *as received* (method, the URL from the Host
header and path, the query). A client that signs one URL and sends another gets a 401 here.

Use the `x_api` fixture:  `from tests.fakes.x_api import x_api  # noqa: F401`
"""

from __future__ import annotations

import email.policy
import itertools
import json
from email.parser import BytesParser
import threading
from collections import deque
from dataclasses import dataclass, field
from types import SimpleNamespace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
from oauthlib.oauth1.rfc5849 import signature as oauth_signature
from oauthlib.oauth1.rfc5849.utils import parse_authorization_header, unescape

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


@dataclass
class Scripted:
    """One queued answer for a route."""

    status: int
    json: object = None
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Recorded:
    """One request as the server received it."""

    method: str
    path: str
    """The full path as received, with any api_base prefix and the query."""
    route: str
    """The path from "/2/" on, without the query: what the fake dispatches on."""
    headers: dict[str, str]
    json: object
    auth_problem: str | None = None
    """Why the OAuth check failed, or None when it passed."""


class FakeXApi:
    """The server. `enqueue` scripts the next answers of a route; `requests` records every request."""

    def __init__(self, credentials: dict[str, str] | None = None):
        self.credentials = dict(credentials or CREDENTIALS)
        self.requests: list[Recorded] = []
        self.posted: dict[str, str] = {}  # text -> id, to refuse duplicates like X
        self.tweets: list[dict] = []  # every created post: id, text, media_ids
        self.media: dict[str, dict] = {}  # media id -> {"data", "media_type", "category", "alt_text"}
        self.rate_limit: dict[str, int] | None = None
        """When set ({"limit", "remaining", "reset"}), sent as x-rate-limit-* headers on each created
        post, with "remaining" counting down as X's does."""
        self._queues: dict[tuple[str, str], deque[Scripted]] = {}
        self._ids = itertools.count(1445880548472328192)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        # A short poll interval: shutdown() waits up to one interval, at every test's teardown.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeXApi:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping on a scripted delay
        self._server.shutdown()
        self._server.server_close()

    def enqueue(self, method: str, route: str, *, status: int, json: object = None, body: bytes | str | None = None,
                headers: dict[str, str] | None = None, delay: float = 0.0) -> None:
        """Answer the next `method route` request (once it passed the OAuth check) with this instead
        of the normal behaviour; `delay` seconds before answering, to trigger client timeouts."""
        raw = body.encode() if isinstance(body, str) else body
        answer = Scripted(status, json, raw, dict(headers or {}), delay)
        with self._lock:
            self._queues.setdefault((method.upper(), route), deque()).append(answer)

    # --- Behaviour -------------------------------------------------------------------------------

    def answer(self, method: str, route: str, body: object) -> Scripted:
        with self._lock:
            queue = self._queues.get((method, route))
            if queue:
                return queue.popleft()
            if (method, route) == ("POST", "/2/tweets"):
                return self._create_tweet(body)
            if (method, route) == ("POST", "/2/media/upload"):
                return self._upload_media(body)
            if (method, route) == ("POST", "/2/media/metadata"):
                return self._media_metadata(body)
            if (method, route) == ("GET", "/2/users/me"):
                return Scripted(200, {"data": dict(ME)})
        return Scripted(404, dict(NOT_FOUND))

    def _create_tweet(self, body: object) -> Scripted:
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text:
            return Scripted(400, {"errors": [{"parameters": {"text": [str(text)]},
                                              "message": "text must not be empty"}],
                                  "title": "Invalid Request",
                                  "detail": "One or more parameters to your request was invalid.",
                                  "type": "https://api.twitter.com/2/problems/invalid-request"})
        if text in self.posted:
            return Scripted(403, {"detail": DUPLICATE_DETAIL, "type": "about:blank", "title": "Forbidden",
                                  "status": 403})
        media_ids = ((body.get("media") or {}).get("media_ids") or []) if isinstance(body, dict) else []
        if any(media_id not in self.media for media_id in media_ids):
            return Scripted(400, {"errors": [{"parameters": {"media.media_ids": media_ids},
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
        return Scripted(201, {"data": {"id": tweet_id, "text": text, "edit_history_tweet_ids": [tweet_id]}},
                        headers=headers)

    def _upload_media(self, body: object) -> Scripted:
        """Simple (one request) upload, multipart: a `media` part with the raw bytes."""
        media = body.get("media") if isinstance(body, dict) else None
        if not isinstance(media, bytes) or not media:
            return Scripted(400, {"errors": [{"message": "media must be provided"}], "title": "Invalid Request",
                                  "detail": "One or more parameters to your request was invalid.",
                                  "type": "https://api.twitter.com/2/problems/invalid-request"})
        media_id = str(next(self._ids))
        self.media[media_id] = {"data": media, "media_type": body.get("media_type"),
                                "category": body.get("media_category"), "alt_text": None}
        return Scripted(200, {"data": {"id": media_id, "media_key": f"3_{media_id}", "size": len(media),
                                       "expires_after_secs": 86400,
                                       "image": {"image_type": body.get("media_type"), "w": 800, "h": 533}}})

    def _media_metadata(self, body: object) -> Scripted:
        media_id = body.get("id") if isinstance(body, dict) else None
        if media_id not in self.media:
            return Scripted(400, {"errors": [{"message": "media id not found"}], "title": "Invalid Request",
                                  "detail": "One or more parameters to your request was invalid.",
                                  "type": "https://api.twitter.com/2/problems/invalid-request"})
        alt_text = (((body.get("metadata") or {}).get("alt_text") or {}).get("text"))
        self.media[media_id]["alt_text"] = alt_text
        return Scripted(200, {"data": {"id": media_id, "associated_metadata": {"alt_text": {"text": alt_text}}}})

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


def _parse_body(raw: bytes, content_type: str) -> object:
    """JSON as a dict; multipart/form-data as {name: text, or bytes for file parts}."""
    if content_type.startswith("multipart/form-data"):
        message = BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
        parts = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            parts[name] = payload if part.get_filename() else payload.decode()
        return parts
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _handler_for(fake: FakeXApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _serve(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = _parse_body(raw, self.headers.get("Content-Type", ""))
            path_only = urlsplit(self.path).path
            route = path_only[path_only.find("/2/"):] if "/2/" in path_only else path_only
            headers = dict(self.headers.items())
            problem = fake.check_oauth(self.command, self.path, headers)
            with fake._lock:
                fake.requests.append(Recorded(self.command, self.path, route, headers, body, problem))
            answer = Scripted(401, dict(UNAUTHORIZED)) if problem else fake.answer(self.command, route, body)
            if answer.delay and fake._stopping.wait(answer.delay):
                return
            self._send(answer)

        def _send(self, answer: Scripted) -> None:
            payload = answer.body if answer.body is not None else json.dumps(answer.json).encode()
            content_type = "text/html; charset=utf-8" if answer.body is not None else "application/json; charset=utf-8"
            try:
                self.send_response(answer.status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test): nothing to tell it

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep test output quiet

    return Handler


@pytest.fixture
def x_api():
    """A running fake X API; stopped after the test."""
    fake = FakeXApi().start()
    try:
        yield fake
    finally:
        fake.stop()
