"""A fake Bluesky PDS on 127.0.0.1 speaking XRPC with the real shapes: sessions with JWTs, blobs,
createRecord, and `{"error": "Name", "message": "..."}` errors.

It checks what a PDS checks: the app password, the access token (expired ones get ExpiredToken),
the text's 300 graphemes and 3000 bytes, the upload limit (5 MiB) and, at createRecord, the card
thumbnail's limit (1,000,000 bytes), and, beyond a PDS, that every facet's byte range really covers
its link. Use the `bluesky_api` fixture.

Where each behaviour comes from (the lexicons in github.com/bluesky-social/atproto, lexicons/, as
shipped with the atproto 0.0.73 SDK's generated models, read 2026-12):
- app.bsky.feed.post: text maxGraphemes 300 / maxLength 3000; createdAt required (datetime);
  langs maxLength 3, each a language tag; facets are app.bsky.richtext.facet.
- app.bsky.richtext.facet#tag: tag maxGraphemes 64, maxLength 640 (bytes). A record breaking a
  lexicon limit is refused at createRecord with 400 InvalidRequest "Invalid app.bsky.feed.post
  record: ...".
- app.bsky.embed.external: thumb is a blob, accept image/*, maxSize 1000000; the PDS checks at
  createRecord that the blob was uploaded and fits (400 InvalidRequest / BlobNotFound otherwise).
- com.atproto.repo.listRecords (query): repo and collection required, limit 1..100 (default 50),
  cursor, reverse; answers {records: [{uri, cid, value}], cursor?}, newest first; a bad parameter
  is 400 InvalidRequest.
- uploadBlob: the PDS sniffs the blob's type from its bytes and falls back to the Content-Type
  the client gave (the PDS's blob transactor, packages/pds in the same repository). It takes any
  blob up to the PDS's upload limit, `blobUploadLimit`, 5 MiB by default (packages/pds/src/config/
  config.ts), past which xrpc-server answers 413 PayloadTooLarge "request entity too large"
  (packages/xrpc-server/src/util.ts). A record's own limits are not checked here: "Blob
  restrictions (mimetype, size, etc) are enforced when the reference is created"
  (lexicons/com/atproto/repo/uploadBlob.json), so a 1,000,001-byte thumbnail uploads fine and the
  post that references it is refused, "blob too big (maximum 1000000, got ...)" (lex-schema's
  BlobSchema). Repository commit d6296a1c, 2026-08-20, read 2026-12.
- XRPC errors are {"error": "Name", "message": "..."} (the XRPC HTTP spec, atproto.com/specs/xrpc)."""

from __future__ import annotations

import base64
import itertools
import json
import time

import pytest
import regex

from tests.fakes.http_fake import Answer, FakeServer, Request

HANDLE = "kemenpora.bsky.social"
APP_PASSWORD = "abcd-efgh-ijkl-mnop"
DID = "did:plc:kemenporafake0000000000"
BAD_LOGIN = {"error": "AuthenticationRequired", "message": "Invalid identifier or password"}
EXPIRED = {"error": "ExpiredToken", "message": "Token has expired"}
_CLUSTER = regex.compile(r"\X")
BLOB_UPLOAD_LIMIT = 5 * 1024 * 1024
"""The PDS's default blobUploadLimit."""
THUMB_MAX_SIZE = 1_000_000
"""app.bsky.embed.external#external thumb: maxSize."""


def _jwt(kind: str, n: int) -> str:
    """A JWT the SDK can read the expiry of (it checks the real clock, so real time is used here)."""
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    payload = {"scope": "com.atproto.appPass" if kind == "access" else "com.atproto.refresh", "sub": DID,
               "iat": int(time.time()), "exp": int(time.time()) + 7200, "jti": f"{kind}-{n}"}
    return f"{part({'typ': 'at+jwt', 'alg': 'ES256K'})}.{part(payload)}.c2lnbmF0dXJl"


def _sniff(data: bytes) -> str | None:
    for magic, mime in ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"),
                        (b"GIF87a", "image/gif"), (b"GIF89a", "image/gif")):
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


class FakeBluesky(FakeServer):
    """`posts` holds every record created; `sessions` counts createSession calls."""

    def __init__(self):
        super().__init__()
        self.posts: list[dict] = []
        self.blobs: dict[str, bytes] = {}
        self.sessions = 0
        self.refreshes = 0
        self._n = itertools.count(1)
        self.access = self.refresh = ""

    def expire_access_token(self) -> None:
        """The session's access token runs out, as it does after two hours."""
        self.access = "expired"

    def route(self, method: str, path: str) -> str:
        return path.removeprefix("/xrpc/")

    def handle(self, request: Request) -> Answer:
        body = request.body if isinstance(request.body, dict) else {}
        auth = request.headers.get("Authorization", "")
        if request.route == "com.atproto.server.createSession":
            if body.get("identifier") != HANDLE or body.get("password") != APP_PASSWORD:
                return Answer(401, dict(BAD_LOGIN))
            self.sessions += 1
            return Answer(200, self._session())
        if request.route == "com.atproto.server.refreshSession":
            if not self.refresh or auth != f"Bearer {self.refresh}":
                return Answer(400, {"error": "ExpiredToken", "message": "Token has been revoked"})
            self.refreshes += 1
            return Answer(200, self._session())
        if not auth.startswith("Bearer "):
            return Answer(401, {"error": "AuthMissing", "message": "Authentication Required"})
        if auth != f"Bearer {self.access}":
            return Answer(400, dict(EXPIRED))
        if request.route == "com.atproto.repo.uploadBlob":
            return self._upload(request)
        if request.route == "com.atproto.repo.createRecord":
            return self._create(body)
        if request.method == "GET" and request.route == "com.atproto.repo.listRecords":
            return self._list(request.query)
        return Answer(501, {"error": "MethodNotImplemented", "message": "Method Not Implemented"})

    def _session(self) -> dict:
        n = next(self._n)
        self.access, self.refresh = _jwt("access", n), _jwt("refresh", n)
        return {"did": DID, "handle": HANDLE, "accessJwt": self.access, "refreshJwt": self.refresh,
                "active": True, "email": "humas@kemenpora.go.id", "emailConfirmed": True}

    def _upload(self, request: Request) -> Answer:
        data = request.body if isinstance(request.body, bytes) else b""
        if len(data) > BLOB_UPLOAD_LIMIT:
            return Answer(413, {"error": "PayloadTooLarge", "message": "request entity too large"})
        ref = f"bafkreifake{len(self.blobs):04d}"
        self.blobs[ref] = data
        return Answer(200, {"blob": {"$type": "blob", "ref": {"$link": ref},
                                     "mimeType": _sniff(data) or request.headers.get("Content-Type", "*/*"),
                                     "size": len(data)}})

    def _list(self, query: dict) -> Answer:
        if not query.get("repo") or not query.get("collection"):
            missing = "repo" if not query.get("repo") else "collection"
            return Answer(400, {"error": "InvalidRequest", "message": f'Error: Params must have the property "{missing}"'})
        try:
            limit = int(query.get("limit", 50))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 100:
            return Answer(400, {"error": "InvalidRequest", "message": "Error: limit must be between 1 and 100"})
        if query["repo"] not in (DID, HANDLE):
            return Answer(400, {"error": "InvalidRequest", "message": f"Could not find repo: {query['repo']}"})
        records = [p for p in reversed(self.posts) if query["collection"] == "app.bsky.feed.post"]
        if query.get("reverse") == "true":
            records.reverse()
        if query.get("cursor"):
            records = [p for p in records if (p["rkey"] < query["cursor"]) != (query.get("reverse") == "true")]
        page = records[:limit]
        answer = {"records": [{"uri": f"at://{DID}/app.bsky.feed.post/{p['rkey']}", "cid": f"bafyreifake{p['rkey']}",
                               "value": p["record"]} for p in page]}
        if len(records) > limit:
            answer["cursor"] = page[-1]["rkey"]
        return Answer(200, answer)

    def _create(self, body: dict) -> Answer:
        record = body.get("record") or {}
        text = record.get("text", "")
        if len(_CLUSTER.findall(text)) > 300 or len(text.encode()) > 3000:
            return Answer(400, {"error": "InvalidRequest", "message": "Invalid app.bsky.feed.post record: "
                                "Record/text must not be longer than 300 graphemes"})
        problem = self._lexicon_problem(record)
        if problem:
            return Answer(400, {"error": "InvalidRequest", "message": f"Invalid app.bsky.feed.post record: {problem}"})
        raw = text.encode()
        for facet in record.get("facets") or []:
            start, end = facet["index"]["byteStart"], facet["index"]["byteEnd"]
            for feature in facet["features"]:
                covered = raw[start:end].decode("utf-8", "replace")
                wanted = feature.get("uri") or "#" + feature.get("tag", "")
                if covered != wanted:
                    return Answer(400, {"error": "InvalidRequest", "message": f"facet covers {covered!r}"})
        rkey = f"3lfake{len(self.posts):07d}"
        self.posts.append({"repo": body.get("repo"), "record": record, "rkey": rkey})
        return Answer(200, {"uri": f"at://{DID}/app.bsky.feed.post/{rkey}", "cid": f"bafyreifake{rkey}",
                            "commit": {"cid": "bafyreicommit", "rev": rkey}, "validationStatus": "valid"})


    def _lexicon_problem(self, record: dict) -> str | None:
        if not isinstance(record.get("createdAt"), str):
            return 'Record must have the property "createdAt"'
        langs = record.get("langs") or []
        if len(langs) > 3:
            return "Record/langs must not have more than 3 elements"
        for i, facet in enumerate(record.get("facets") or []):
            for j, feature in enumerate(facet.get("features") or []):
                tag = feature.get("tag")
                if tag is None:
                    continue
                if len(_CLUSTER.findall(tag)) > 64:
                    return f"Record/facets/{i}/features/{j}/tag must not be longer than 64 graphemes"
                if len(tag.encode()) > 640:
                    return f"Record/facets/{i}/features/{j}/tag must not be longer than 640 characters"
        thumb = ((record.get("embed") or {}).get("external") or {}).get("thumb")
        if thumb is not None:
            ref = (thumb.get("ref") or {}).get("$link")
            if ref not in self.blobs:
                return f"Could not find blob: {ref}"
            size = max(len(self.blobs[ref]), thumb.get("size", 0))
            if size > THUMB_MAX_SIZE:
                return f"Record/embed/external/thumb blob too big (maximum {THUMB_MAX_SIZE}, got {size})"
            if not str(thumb.get("mimeType", "")).startswith("image/"):
                return f"Record/embed/external/thumb has the wrong mime type {thumb.get('mimeType')!r}"
        return None


@pytest.fixture
def bluesky_api():
    """A running fake Bluesky PDS; stopped after the test."""
    fake = FakeBluesky().start()
    try:
        yield fake
    finally:
        fake.stop()
