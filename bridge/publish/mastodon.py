"""Publishing to a Mastodon account through Mastodon.py.

The only module that knows Mastodon's endpoints, headers and error shapes. What matters:
- Idempotency: every status carries an `Idempotency-Key` derived from the delivery, and Mastodon
  answers a repeated key with the status it already created (it keeps keys for an hour), so a resend
  after a crash cannot post twice.
- The instance's own rules: `GET /api/v2/instance` says how many characters a status may have and
  how much a link counts (configuration.statuses.max_characters, characters_reserved_per_url). The
  rule is read lazily, at the first post, and kept; until an instance answers, 500 and 23 apply.
- No sleeping: Mastodon.py's default rate-limit handling sleeps until the reset; we make it raise and
  hand the reset (the `X-RateLimit-Reset` header) to the pipeline, which holds the target instead.
- Outcomes: a status whose answer was lost (read timeout, connection closed, 500-504, an unreadable
  2xx or one without an id) is in doubt. Within the key's hour the pipeline re-sends it with the same
  key; after that, find_post() looks for it among the account's own statuses.
- GIFs and videos: POST /api/v2/media answers 202 while the file is processed, and a status that
  attaches it before it is ready is refused (422). We poll GET /api/v1/media/:id for a bounded time
  (MEDIA_WAIT) and post without the file, saying so, when it is not ready by then.
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from urllib.parse import quote

import requests
from mastodon import Mastodon
from mastodon.errors import (
    MastodonAPIError, MastodonError, MastodonNetworkError, MastodonNotFoundError, MastodonRatelimitError,
    MastodonServerError, MastodonUnauthorizedError,
)

from bridge.clock import utc_now
from bridge.compose import LengthRule
from bridge.errors import ConfigError, InDoubt, PostRejected, PublishError, RetryLater, TargetPaused
from bridge.model import Image, Post
from bridge.publish._http import MAY_HAVE_ACTED, from_epoch, from_iso, scrub
from bridge.publish._http_requests import DeadlineSession, requests_problem
from bridge.publish.limits import (  # noqa: F401 (mastodon_length: this network's count, named here too)
    MASTODON_DEFAULT_MAX_CHARACTERS, MASTODON_LENGTH_RULE, MASTODON_MAX_IMAGE_BYTES, URL_WEIGHT, mastodon_length,
)
from bridge.secrets import credential_env_var

log = logging.getLogger("bridge.publish.mastodon")

DEFAULT_MAX_CHARACTERS = MASTODON_DEFAULT_MAX_CHARACTERS
DEFAULT_URL_WEIGHT = URL_WEIGHT
"""Every link counts this many characters, whatever its length (characters_reserved_per_url)."""
MAX_IMAGE_BYTES = MASTODON_MAX_IMAGE_BYTES
MIN_MASTODON_VERSION = "4.0.0"
"""/api/v2/instance and /api/v2/media exist from 4.0 on; we speak to 4.0 or newer."""
RATE_LIMIT_FALLBACK = timedelta(minutes=5)
"""Wait this long after a 429 that names no reset: Mastodon's general window is 300 requests per 5
minutes (media uploads have their own, 30 per 30 minutes; docs.joinmastodon.org api/rate-limits)."""
INSTANCE_RETRY = timedelta(minutes=10)
"""After /api/v2/instance failed, the defaults stand for this long before it is asked again."""
MEDIA_POLL_EVERY = 2.0
MEDIA_WAIT = 30.0
"""Seconds to wait, polling GET /api/v1/media/:id every MEDIA_POLL_EVERY, for a GIF or video to be
processed before the status goes out without it."""
VERIFY_AFTER = timedelta(minutes=2)
"""A status shows on the account's own timeline at once; a little slack for a busy instance."""
FIND_PAGE = 40
FIND_PAGES = 5
"""find_post reads the account's statuses 40 at a time (Mastodon's maximum), at most 5 pages back."""


LENGTH_RULE = MASTODON_LENGTH_RULE


def post_url(remote_id: str, target) -> str | None:
    """Where a sent status can be seen: the instance's web app opens a status by id alone
    (/web/statuses/{id} redirects to /@account/{id}), so no account name needs storing."""
    if not remote_id:
        return None
    return f"{target.api_base.rstrip('/')}/web/statuses/{quote(remote_id, safe='')}"


def build(target, *, timeout: float, clock=None) -> "MastodonPublisher":
    return MastodonPublisher(target.name, instance=target.api_base, access_token=target.credentials.get(
        "access_token", ""), visibility=target.options.get("visibility", "public"), timeout=timeout,
        clock=clock or utc_now)


class _Session(DeadlineSession):
    """Each request within a total deadline of `timeout` seconds (Mastodon.py's request_timeout is
    per socket read: a trickled answer would stretch it), and remembers the last answer's headers:
    Mastodon.py keeps the rate-limit reset only as a time adjusted to the local clock, and raises
    without the response."""

    def __init__(self, timeout: float):
        super().__init__(timeout)
        self.last_headers: Mapping[str, str] = {}
        self.hooks["response"].append(self._remember)

    def _remember(self, response: requests.Response, *args, **kwargs) -> None:
        self.last_headers = response.headers


IDEMPOTENCY_WINDOW = timedelta(minutes=55)
"""Mastodon keeps an Idempotency-Key for up to one hour (docs.joinmastodon.org, methods/statuses,
POST /api/v1/statuses); we stop relying on it a little before."""


class MastodonPublisher:
    """Posts statuses to one Mastodon account. Satisfies bridge.publish.Publisher."""

    kind = "mastodon"
    duplicate_safe_for = IDEMPOTENCY_WINDOW
    """The Idempotency-Key makes a re-send return the first status instead of a second one, for as
    long as the instance keeps the key."""

    verify_after = VERIFY_AFTER

    def __init__(self, name: str, *, instance: str, access_token: str, visibility: str = "public",
                 timeout: float = 20.0, clock: Callable[[], datetime] = utc_now,
                 sleep: Callable[[float], None] = time.sleep):
        self.name = name
        self._token_var = credential_env_var(name, "access_token")
        if not access_token:
            raise ConfigError([f"targets.{name}: access_token is missing (set {self._token_var})"])
        self._instance = instance.rstrip("/")
        self._token = access_token
        self._visibility = visibility
        self._clock = clock
        self._sleep = sleep
        self._timeout = timeout
        self._account_id: str | None = None
        self._session = _Session(timeout)
        self._client = Mastodon(
            access_token=access_token, api_base_url=self._instance, request_timeout=timeout, session=self._session,
            ratelimit_method="throw", version_check_mode="created", mastodon_version=MIN_MASTODON_VERSION,
        )
        self._rule = LENGTH_RULE
        self._image_limit = MAX_IMAGE_BYTES
        self._instance_read_at: datetime | None = None
        self._instance_known = False
        self.hold_until: datetime | None = None
        self.image_problem: str | None = None

    @property
    def length_rule(self) -> LengthRule:
        """The instance's own limit and link weight, read once (500/23 until it answers)."""
        self._read_instance()
        return self._rule

    @property
    def max_image_bytes(self) -> int:
        self._read_instance()
        return self._image_limit

    def _read_instance(self) -> None:
        now = self._clock()
        if self._instance_known or (self._instance_read_at and now < self._instance_read_at + INSTANCE_RETRY):
            return
        self._instance_read_at = now
        try:
            configuration = self._client.instance_v2().get("configuration") or {}
            statuses = configuration.get("statuses") or {}
            limit = int(statuses.get("max_characters") or DEFAULT_MAX_CHARACTERS)
            weight = int(statuses.get("characters_reserved_per_url") or DEFAULT_URL_WEIGHT)
            image_limit = int((configuration.get("media_attachments") or {}).get("image_size_limit")
                              or MAX_IMAGE_BYTES)
        except (MastodonError, ValueError, TypeError, AttributeError) as error:
            log.warning("could not read the instance's limits from %s/api/v2/instance (%s); using %d/%d",
                        self._instance, type(error).__name__, DEFAULT_MAX_CHARACTERS, DEFAULT_URL_WEIGHT)
            return
        self._rule = LengthRule(limit, lambda text: mastodon_length(text, weight))
        self._image_limit = image_limit
        self._instance_known = True

    def publish(self, post: Post, idempotency_key: str) -> str:
        """Upload the photo (with alt text) if there is one, then post the status; return its id."""
        self.hold_until = None
        self.image_problem = None
        media_ids = None
        if post.image is not None:
            try:
                media_ids = [self._upload(post.image)]
            except PublishError as error:
                if isinstance(error, TargetPaused):
                    raise
                self.image_problem = error.message  # post without the photo, never lose the post
        status = self._call("POST /api/v1/statuses", lambda: self._client.status_post(
            post.text, media_ids=media_ids, visibility=self._visibility, idempotency_key=idempotency_key),
            creates=True)
        if not status.get("id"):  # a 2xx without the status: it may exist
            raise InDoubt("Mastodon answered POST /api/v1/statuses without a status id")
        return str(status["id"])

    def _upload(self, image: Image) -> str:
        attachment = self._call("POST /api/v2/media", lambda: self._client.media_post(
            image.data, mime_type=image.mime_type, description=image.alt_text or None, file_name="photo"))
        if not attachment.get("id"):
            raise RetryLater("Mastodon answered POST /api/v2/media without a media id")
        media_id = str(attachment["id"])
        waited = 0.0
        while attachment.get("url") is None:  # 202: still processed (a GIF or video)
            if waited >= MEDIA_WAIT:
                raise RetryLater(f"Mastodon had not processed the {image.mime_type} after {MEDIA_WAIT:g}s: "
                                 "posted without it")
            self._sleep(MEDIA_POLL_EVERY)
            waited += MEDIA_POLL_EVERY
            attachment = self._call("GET /api/v1/media/:id", lambda: self._client.media(media_id))
        return media_id

    def find_post(self, post: Post, since: datetime) -> str | None:
        """The id of the account's status with this post's text (and link) created at or after
        `since`, or None. Reads GET /api/v1/accounts/:id/statuses, newest first, back to `since`."""
        if self._account_id is None:
            account = self._call("GET /api/v1/accounts/verify_credentials",
                                 self._client.account_verify_credentials, posting=False)
            self._account_id = str(account["id"])
        max_id = None
        for _ in range(FIND_PAGES):
            page = self._call("GET /api/v1/accounts/:id/statuses", lambda: self._client.account_statuses(
                self._account_id, limit=FIND_PAGE, max_id=max_id, exclude_reblogs=True), posting=False)
            if not page:
                return None
            for status in page:
                created = _as_utc(status.get("created_at"))
                if created is None or created < since:
                    return None  # newest first: everything further back is older
                if _same_post(status.get("content") or "", post):
                    return str(status["id"])
            max_id = page[-1]["id"]
        return None

    def verify(self) -> str:
        """Check the token; return the account as @user@instance."""
        account = self._call("GET /api/v1/accounts/verify_credentials",
                             self._client.account_verify_credentials, posting=False)
        host = self._instance.split("://", 1)[-1]
        return f"@{account.get('acct') or account.get('username')}@{host}"

    def close(self) -> None:
        self._session.close()

    def _call(self, endpoint: str, call: Callable, posting: bool = True, creates: bool = False):
        """`posting`: a refusal is the post's fault. `creates`: the call makes what others see (a
        status), so an answer lost after the request left leaves it in doubt."""
        try:
            return call()
        except MastodonError as error:
            raise scrub(self._map(endpoint, error, posting, creates), [self._token]) from None

    def _map(self, endpoint: str, error: MastodonError, posting: bool, creates: bool = False) -> PublishError:
        if isinstance(error, MastodonRatelimitError):
            return self._rate_limited(endpoint)
        if isinstance(error, MastodonNetworkError):
            cause = error.__context__  # Mastodon.py raises it while handling the requests exception
            if isinstance(cause, requests.RequestException):
                return requests_problem("Mastodon", self._instance, cause, self._timeout, creates=creates)
            return (InDoubt if creates else RetryLater)(f"could not complete {endpoint} on Mastodon at "
                                                        f"{self._instance}")
        status, detail = _status_and_detail(error)
        if status is None and "Could not parse response" in str(error):  # a 2xx cut off or not JSON
            message = f"Mastodon's answer to {endpoint} was unreadable"
            return InDoubt(message) if creates else RetryLater(message)
        if isinstance(error, MastodonServerError) or (status or 0) >= 500:
            if creates and status in MAY_HAVE_ACTED:
                return InDoubt(f"Mastodon answered {status} to {endpoint}; the status may exist: {detail}")
            return RetryLater(f"Mastodon answered {status} to {endpoint}: {detail}")
        if isinstance(error, MastodonUnauthorizedError) or status == 403:
            return TargetPaused(
                f"Mastodon at {self._instance} refused the access token of target {self.name!r} ({status}: "
                f"{detail}): check {self._token_var}, made under Preferences > Development with the scopes "
                "write:statuses, write:media, read:accounts and read:statuses")
        if isinstance(error, MastodonNotFoundError):
            return TargetPaused(f"Mastodon answered 404 for {endpoint}: check instance ({self._instance}) of "
                                f"target {self.name!r}")
        if isinstance(error, MastodonAPIError) and posting:
            return PostRejected(f"Mastodon refused the post ({status}): {detail}")
        return TargetPaused(f"Mastodon refused {endpoint} ({status}) for target {self.name!r}: {detail}")

    def _rate_limited(self, endpoint: str) -> RetryLater:
        now = self._clock()
        reset = _parse_reset(self._session.last_headers.get("X-RateLimit-Reset"))
        retry_at = reset if reset and reset > now else now + RATE_LIMIT_FALLBACK
        return RetryLater(f"Mastodon rate limit on {endpoint} reached; next try after "
                          f"{retry_at:%Y-%m-%d %H:%M:%S} UTC", retry_at=retry_at, counts_as_attempt=False)


class _Text(HTMLParser):
    """A status's `content` back to its text: Mastodon's link spans joined, <br> and paragraphs as newlines."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "br":
            self.parts.append("\n")
        elif tag == "p" and self.parts:
            self.parts.append("\n\n")
        elif tag == "a":
            self.links.append(html.unescape(dict(attrs).get("href") or ""))

    def handle_data(self, data):
        self.parts.append(data)


def _same_post(content: str, post: Post) -> bool:
    """The status is this post: the same text (whitespace aside) and, when there is one, the link."""
    parser = _Text()
    parser.feed(content)
    parser.close()
    text = "".join(parser.parts)
    same_text = " ".join(text.split()) == " ".join(post.text.split())
    return same_text and (not post.link or post.link in parser.links or post.link not in post.text)


def _as_utc(value) -> datetime | None:
    """Mastodon.py gives created_at as a datetime; an ISO string is read too."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _status_and_detail(error: MastodonError) -> tuple[int | None, str]:
    """Mastodon.py raises ('Mastodon API returned error', status, reason, error message)."""
    args = error.args
    status = args[1] if len(args) > 1 and isinstance(args[1], int) else None
    detail = args[3] if len(args) > 3 and args[3] else (args[2] if len(args) > 2 else str(error))
    return status, str(detail)


def _parse_reset(value: str | None) -> datetime | None:
    """X-RateLimit-Reset is an ISO 8601 time on Mastodon (a Unix time on some other servers)."""
    if not value:
        return None
    return from_epoch(value) or from_iso(value)
