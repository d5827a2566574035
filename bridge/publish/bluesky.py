"""Publishing to a Bluesky account through the atproto SDK.

The only module that knows Bluesky's XRPC methods, record shapes and error names. What matters:
- Length: a post's text may hold 300 graphemes and 3000 UTF-8 bytes; the rule counts both.
- Links are rich text: a link facet marks each URL by its UTF-8 *byte* offsets (not characters),
  and the story's link becomes an external card (title, description, the photo as a thumbnail
  blob of at most 1,000,000 bytes).
- Tag facets: a tag may hold 64 graphemes and 640 bytes (app.bsky.richtext.facet#tag); a longer
  #hashtag is dropped from the text and the facets (logged at debug), never sent to be refused.
- Outcomes: createRecord whose answer was lost (read timeout, closed connection, 500-504, an
  unreadable answer or one without the record's uri) is in doubt; nothing refuses a duplicate
  record, so find_post() looks for it among the account's app.bsky.feed.post records
  (com.atproto.repo.listRecords) by text, link and createdAt. We write createdAt ourselves, from the
  injected clock, so that comparison uses one clock.
- Sessions: createSession is tightly rate-limited (30 per 5 minutes, 300 a day per account), so
  we log in once, keep the session, refresh it (refreshSession) when its access token expired,
  and only log in again when the refresh itself is refused.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import httpx

from atproto import Client, models
from atproto_client.exceptions import (
    AtProtocolError, BadRequestError, ModelError, NetworkError, RateLimitExceededError, RequestErrorBase,
    UnauthorizedError,
)
from atproto_client.models.common import XrpcError
from atproto_client.request import Request
from bridge._pkg_resources import light
from bridge.clock import utc_now
from bridge.deadline import deadline_transport, total_deadline
from bridge.errors import ConfigError, InDoubt, PostRejected, PublishError, RetryLater, TargetPaused
from bridge.model import Post
from bridge.publish._http import MAY_HAVE_ACTED, from_iso, scrub
from bridge.publish._http_httpx import transport_problem
from bridge.publish.graphemes import grapheme_count
from bridge.publish.limits import (  # noqa: F401 (bluesky_length: this network's count, named here too)
    BLUESKY_LENGTH_RULE, BLUESKY_MAX_GRAPHEMES, BLUESKY_MAX_IMAGE_BYTES, BLUESKY_MAX_TEXT_BYTES, bluesky_length,
)
from bridge.secrets import credential_env_var

with light():  # the stand-in pkg_resources for twitter-text (bridge/_pkg_resources.py)
    from twitter_text import extract_urls_with_indices  # noqa: E402

log = logging.getLogger("bridge.publish.bluesky")

MAX_GRAPHEMES = BLUESKY_MAX_GRAPHEMES
MAX_TEXT_BYTES = BLUESKY_MAX_TEXT_BYTES
MAX_IMAGE_BYTES = BLUESKY_MAX_IMAGE_BYTES
CARD_DESCRIPTION_MAX = 300
"""Characters of the story's summary shown on the link card (the card is a preview, not the story)."""
RATE_LIMIT_FALLBACK = timedelta(minutes=5)
"""How long to wait after a 429 without a ratelimit-reset header."""
MAX_TAG_GRAPHEMES = 64
MAX_TAG_BYTES = 640
"""app.bsky.richtext.facet#tag: tag maxGraphemes 64, maxLength 640 (UTF-8 bytes)."""
POST_COLLECTION = "app.bsky.feed.post"
FIND_PAGE = 100
FIND_PAGES = 3
"""find_post reads listRecords 100 records at a time (the lexicon's maximum), at most 3 pages back."""
VERIFY_AFTER = timedelta(minutes=2)
"""A record is in the repo as soon as createRecord commits; a little slack for a busy PDS."""
_SESSION_EXPIRED = {"ExpiredToken", "InvalidToken"}
_HASHTAG = re.compile(r"(?<!\S)#(\w*[^\W\d]\w*)")


LENGTH_RULE = BLUESKY_LENGTH_RULE


def _tag_fits(tag: str) -> bool:
    return grapheme_count(tag) <= MAX_TAG_GRAPHEMES and len(tag.encode("utf-8")) <= MAX_TAG_BYTES


def without_oversized_tags(text: str) -> str:
    """The text less any #hashtag whose tag is over the lexicon's limits (each dropped is logged at
    debug): Bluesky would refuse the whole post for its facet, and a tag it cannot link is noise."""
    def drop(match: re.Match) -> str:
        if _tag_fits(match.group(1)):
            return match.group(0)
        log.debug("hashtag dropped: over Bluesky's tag limits (%d graphemes, %d bytes)", MAX_TAG_GRAPHEMES,
                  MAX_TAG_BYTES, extra={"tag_graphemes": grapheme_count(match.group(1))})
        return ""
    cleaned = _HASHTAG.sub(drop, text)
    if cleaned == text:
        return text
    return "\n".join(re.sub(r"[ \t]{2,}", " ", line).strip() for line in cleaned.split("\n"))


def facets_for(text: str) -> list:
    """Link facets for every http(s) URL and tag facets for every #hashtag, by UTF-8 byte offsets."""
    def byte_slice(start: int, end: int):
        return models.AppBskyRichtextFacet.ByteSlice(byte_start=len(text[:start].encode()),
                                                     byte_end=len(text[:end].encode()))
    facets = [
        models.AppBskyRichtextFacet.Main(index=byte_slice(*url["indices"]),
                                         features=[models.AppBskyRichtextFacet.Link(uri=url["url"])])
        for url in extract_urls_with_indices(text, extract_urls_without_protocol=False)
    ]
    facets += [
        models.AppBskyRichtextFacet.Main(index=byte_slice(*match.span()),
                                         features=[models.AppBskyRichtextFacet.Tag(tag=match.group(1))])
        for match in _HASHTAG.finditer(text) if _tag_fits(match.group(1))
    ]
    return facets


def post_url(remote_id: str, target) -> str | None:
    """Where a sent post can be seen: bsky.app/profile/{handle}/post/{rkey}, the rkey being the last
    part of the at:// URI publish() returned (at://did/app.bsky.feed.post/rkey)."""
    if not remote_id or not remote_id.startswith("at://"):
        return None
    handle = target.options.get("handle") or remote_id[len("at://"):].split("/", 1)[0]
    rkey = remote_id.rstrip("/").rsplit("/", 1)[-1]
    return f"https://bsky.app/profile/{quote(handle, safe='')}/post/{quote(rkey, safe='')}"


def build(target, *, timeout: float, clock=None) -> "BlueskyPublisher":
    return BlueskyPublisher(target.name, service=target.api_base, handle=target.options["handle"],
                            app_password=target.credentials.get("app_password", ""),
                            langs=target.options.get("langs") or ("id",), timeout=timeout, clock=clock or utc_now)


class _DeadlineRequest(Request):
    """atproto's Request (its arguments go to httpx.Client) with every XRPC call bounded in total:
    connect, request, headers and body within `timeout` seconds, however slowly the PDS trickles.
    The SDK sends each call through _send_request (a non-streamed httpx request), so the deadline
    opens there; the SDK's clones (_new_instance) pass the same arguments back and keep it."""

    def __init__(self, **kwargs):
        kwargs.setdefault("transport", deadline_transport())
        super().__init__(**kwargs)

    def _send_request(self, method: str, url: str, **kwargs) -> httpx.Response:
        with total_deadline(self._client_kwargs["timeout"]):
            return super()._send_request(method, url, **kwargs)


class BlueskyPublisher:
    """Posts to one Bluesky account with an app password. Satisfies bridge.publish.Publisher."""

    kind = "bluesky"
    length_rule = LENGTH_RULE
    max_image_bytes = MAX_IMAGE_BYTES
    duplicate_safe_for = None
    """createRecord takes the same text twice: a post in doubt is looked for (find_post) instead."""
    verify_after = VERIFY_AFTER

    def __init__(self, name: str, *, service: str, handle: str, app_password: str, langs=("id",),
                 timeout: float = 20.0, clock: Callable[[], datetime] = utc_now):
        self.name = name
        self._password_var = credential_env_var(name, "app_password")
        if not app_password:
            raise ConfigError([f"targets.{name}: app_password is missing (set {self._password_var})"])
        self._service = service.rstrip("/")
        self._handle = handle.lstrip("@")
        self._password = app_password
        self._langs = list(langs)
        self._clock = clock
        self._timeout = timeout
        self._client = Client(base_url=self._service, request=_DeadlineRequest(timeout=timeout))
        self._did: str | None = None
        self.hold_until: datetime | None = None
        self.image_problem: str | None = None

    def publish(self, post: Post, idempotency_key: str) -> str:
        """Post the text with its facets and a link card; return the post's at:// URI."""
        del idempotency_key  # createRecord has none
        self.hold_until = None
        self.image_problem = None
        embed = self._card(post) if post.link else None
        if post.image is not None and not post.link:
            self.image_problem = "Bluesky shows a story's photo only on its link card, and this post has no link"
        text = without_oversized_tags(post.text)
        self._ensure_session()
        record = models.AppBskyFeedPost.Record(created_at=_iso(self._clock()), text=text,
                                               facets=facets_for(text) or None, embed=embed, langs=self._langs)
        response = self._call("createRecord", lambda: self._client.app.bsky.feed.post.create(self._did, record),
                              creates=True)
        uri = getattr(response, "uri", None)
        if not uri:
            raise InDoubt("Bluesky answered createRecord without the record's uri")
        return str(uri)

    def find_post(self, post: Post, since: datetime) -> str | None:
        """The at:// URI of the account's post with this text (and link card) created at or after
        `since`, or None. Reads com.atproto.repo.listRecords (app.bsky.feed.post, newest first)."""
        text = without_oversized_tags(post.text)
        since = since.replace(microsecond=since.microsecond // 1000 * 1000)  # createdAt has milliseconds
        cursor = None
        for _ in range(FIND_PAGES):
            self._ensure_session()
            params = {"repo": self._did, "collection": POST_COLLECTION, "limit": FIND_PAGE}
            if cursor:
                params["cursor"] = cursor
            page = self._call("listRecords", lambda: self._client.com.atproto.repo.list_records(params))
            for record in page.records:
                value = _as_dict(record.value)
                created = from_iso(value.get("createdAt"))
                if created is None:
                    continue
                if created < since:
                    return None  # newest first: everything further back is older
                if value.get("text") == text and _card_uri(value) == (post.link or None):
                    return str(record.uri)
            cursor = page.cursor
            if not cursor or not page.records:
                return None
        return None

    def _card(self, post: Post):
        thumb = None
        if post.image is not None and len(post.image.data) > MAX_IMAGE_BYTES:
            # uploadBlob would take it (the PDS checks a blob's limits only when a record references it),
            # and createRecord would then refuse the whole post: leave the picture out instead.
            self.image_problem = (f"the photo has {len(post.image.data):,} bytes, more than a link card's "
                                  f"thumbnail may ({MAX_IMAGE_BYTES:,})")
        elif post.image is not None:
            try:
                thumb = self._call("uploadBlob", lambda: self._client.upload_blob(post.image.data)).blob
            except (RetryLater, PostRejected) as error:  # a card without its picture still links the story
                self.image_problem = error.message
        description = " ".join(post.summary.split())
        if len(description) > CARD_DESCRIPTION_MAX:
            description = description[:CARD_DESCRIPTION_MAX - 1].rsplit(" ", 1)[0] + "…"
        return models.AppBskyEmbedExternal.Main(external=models.AppBskyEmbedExternal.External(
            uri=post.link, title=post.title or post.link, description=description, thumb=thumb))

    def verify(self) -> str:
        """Log in (or reuse the session); return the account's handle and DID."""
        self._ensure_session()
        return f"@{self._handle} ({self._did})"

    def close(self) -> None:
        self._client.request.close()

    # --- Sessions --------------------------------------------------------------------------------

    def _ensure_session(self) -> None:
        if self._did is None:
            self._login()

    def _login(self) -> None:
        try:
            session = self._client.login(self._handle, self._password, fetch_bsky_profile=False)
            del session
        except AtProtocolError as error:
            raise self._scrub(self._map("createSession", error, posting=False)) from None
        self._did = self._client._session.did  # the SDK keeps it; login() returns only the profile

    def _renew(self) -> None:
        """The access token expired: refresh the session; log in again only if that is refused."""
        try:
            self._client._refresh_and_set_session()  # the SDK refreshes early only by its own clock
        except AtProtocolError:
            self._did = None
            self._login()

    def _call(self, method: str, call: Callable, creates: bool = False):
        """`creates`: the call makes what others see (a post), so an answer lost after the request
        left leaves it in doubt."""
        self._ensure_session()
        try:
            try:
                return call()
            except (BadRequestError, UnauthorizedError) as error:
                if _error_name(error) not in _SESSION_EXPIRED:
                    raise
                self._renew()
                return call()
        except AtProtocolError as error:
            raise self._scrub(self._map(method, error, posting=True, creates=creates)) from None
        except httpx.TransportError as error:  # the SDK lets protocol errors (closed mid-answer) through
            raise self._scrub(transport_problem("Bluesky", self._service, error, self._timeout, creates)) from None

    # --- Errors ----------------------------------------------------------------------------------

    def _map(self, method: str, error: AtProtocolError, posting: bool, creates: bool = False) -> PublishError:
        detail = _detail(error)
        status = error.response.status_code if isinstance(error, RequestErrorBase) and error.response else None
        if isinstance(error, RateLimitExceededError):
            now = self._clock()
            reset = error.reset_at
            retry_at = reset if reset and reset > now else now + RATE_LIMIT_FALLBACK
            return RetryLater(f"Bluesky rate limit on {method} reached; next try after "
                              f"{retry_at:%Y-%m-%d %H:%M:%S} UTC", retry_at=retry_at, counts_as_attempt=False)
        if isinstance(error.__cause__, httpx.TransportError):  # the SDK wraps timeouts and network errors
            return transport_problem("Bluesky", self._service, error.__cause__, self._timeout, creates)
        if isinstance(error, ModelError) or (isinstance(error, RequestErrorBase) and status is None):
            message = f"Bluesky's answer to {method} was unreadable ({type(error).__name__})"
            return InDoubt(message) if creates else RetryLater(message)
        if isinstance(error, UnauthorizedError) or method == "createSession" and status == 400:
            return TargetPaused(
                f"Bluesky refused the login of target {self.name!r} as {self._handle} ({detail}): check handle "
                f"and {self._password_var} (an app password from Settings > Privacy and security > App passwords)")
        if status is not None and status >= 500:
            if creates and status in MAY_HAVE_ACTED:
                return InDoubt(f"Bluesky answered {status} to {method}; the post may exist: {detail}")
            return RetryLater(f"Bluesky answered {status} to {method}: {detail}")
        if isinstance(error, NetworkError) and status in (409,):
            return RetryLater(f"Bluesky answered {status} to {method}: {detail}")
        if posting and status is not None:
            return PostRejected(f"Bluesky refused {method} ({status}): {detail}")
        return TargetPaused(f"Bluesky refused {method} for target {self.name!r}: {detail}")

    def _scrub(self, error: PublishError) -> PublishError:
        return scrub(error, [self._password])


def _iso(moment: datetime) -> str:
    """createdAt as the lexicon's datetime: UTC with milliseconds and Z."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _as_dict(value) -> dict:
    """A listRecords value: the SDK gives a model (or a dict for types it does not know)."""
    if isinstance(value, dict):
        return value
    try:
        return value.model_dump(by_alias=True, exclude_none=True)
    except AttributeError:
        return {}


def _card_uri(value: dict) -> str | None:
    external = (value.get("embed") or {}).get("external") or {}
    return external.get("uri") or None


def _error_name(error: AtProtocolError) -> str | None:
    content = error.response.content if isinstance(error, RequestErrorBase) and error.response else None
    return content.error if isinstance(content, XrpcError) else None


def _detail(error: AtProtocolError) -> str:
    content = error.response.content if isinstance(error, RequestErrorBase) and error.response else None
    if isinstance(content, XrpcError):
        return f"{content.error}: {content.message}" if content.message else content.error
    return type(error).__name__
