"""Publishing to a Mastodon account through Mastodon.py.

The only module that knows Mastodon's endpoints, headers and error shapes. Three things matter:
- Idempotency: every status carries an `Idempotency-Key` derived from the delivery, and Mastodon
  answers a repeated key with the status it already created (it keeps keys for an hour), so a resend
  after a crash cannot post twice.
- The instance's own rules: `GET /api/v2/instance` says how many characters a status may have and
  how much a link counts (configuration.statuses.max_characters, characters_reserved_per_url). The
  rule is read lazily, at the first post, and kept; until an instance answers, 500 and 23 apply.
- No sleeping: Mastodon.py's default rate-limit handling sleeps until the reset; we make it raise and
  hand the reset (the `X-RateLimit-Reset` header) to the pipeline, which holds the target instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone

import requests
from mastodon import Mastodon
from mastodon.errors import (
    MastodonAPIError, MastodonError, MastodonNetworkError, MastodonNotFoundError, MastodonRatelimitError,
    MastodonServerError, MastodonUnauthorizedError,
)
from twitter_text import extract_urls_with_indices

from bridge.clock import utc_now
from bridge.compose import LengthRule
from bridge.errors import ConfigError, PostRejected, PublishError, RetryLater, TargetPaused
from bridge.model import Image, Post
from bridge.publish._http import from_epoch, scrub
from bridge.publish.graphemes import grapheme_count
from bridge.secrets import credential_env_var

log = logging.getLogger("bridge.publish.mastodon")

DEFAULT_MAX_CHARACTERS = 500
"""Mastodon's own default for a status; an instance may allow more (or less)."""
DEFAULT_URL_WEIGHT = 23
"""Every link counts this many characters, whatever its length (characters_reserved_per_url)."""
MAX_IMAGE_BYTES = 10 * 1024 * 1024
"""Mastodon 4.x takes images of at least 10 MB (16 MB from 4.3; the instance's image_size_limit says)."""
MIN_MASTODON_VERSION = "4.0.0"
"""/api/v2/instance and /api/v2/media exist from 4.0 on; we speak to 4.0 or newer."""
RATE_LIMIT_FALLBACK = timedelta(minutes=5)
"""Mastodon's rate-limit windows are 5 minutes (300 requests) to 3 hours (30 media uploads per 30 min
for statuses, 300 per 3 h): wait this long after a 429 that names no reset."""
INSTANCE_RETRY = timedelta(minutes=10)
"""After /api/v2/instance failed, the defaults stand for this long before it is asked again."""


def mastodon_length(text: str, url_weight: int = DEFAULT_URL_WEIGHT) -> int:
    """Mastodon's count: grapheme clusters, with every http(s) link counting `url_weight`."""
    urls = [u for u in extract_urls_with_indices(text, extract_urls_without_protocol=False)]
    total, position = 0, 0
    for url in urls:
        start, end = url["indices"]
        total += grapheme_count(text[position:start]) + url_weight
        position = end
    return total + grapheme_count(text[position:])


LENGTH_RULE = LengthRule(DEFAULT_MAX_CHARACTERS, mastodon_length)


def build(target, *, timeout: float, clock=None) -> "MastodonPublisher":
    return MastodonPublisher(target.name, instance=target.api_base, access_token=target.credentials.get(
        "access_token", ""), visibility=target.options.get("visibility", "public"), timeout=timeout,
        clock=clock or utc_now)


class _Session(requests.Session):
    """Remembers the last answer's headers: Mastodon.py keeps the rate-limit reset only as a time
    adjusted to the local clock, and raises without the response."""

    def __init__(self):
        super().__init__()
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

    def __init__(self, name: str, *, instance: str, access_token: str, visibility: str = "public",
                 timeout: float = 20.0, clock: Callable[[], datetime] = utc_now):
        self.name = name
        self._token_var = credential_env_var(name, "access_token")
        if not access_token:
            raise ConfigError([f"targets.{name}: access_token is missing (set {self._token_var})"])
        self._instance = instance.rstrip("/")
        self._token = access_token
        self._visibility = visibility
        self._clock = clock
        self._session = _Session()
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
            post.text, media_ids=media_ids, visibility=self._visibility, idempotency_key=idempotency_key))
        if not status.get("id"):
            raise RetryLater("Mastodon answered POST /api/v1/statuses without a status id")  # resend is safe
        return str(status["id"])

    def _upload(self, image: Image) -> str:
        attachment = self._call("POST /api/v2/media", lambda: self._client.media_post(
            image.data, mime_type=image.mime_type, description=image.alt_text or None, file_name="photo"))
        if not attachment.get("id"):
            raise RetryLater("Mastodon answered POST /api/v2/media without a media id")
        return str(attachment["id"])

    def verify(self) -> str:
        """Check the token; return the account as @user@instance."""
        account = self._call("GET /api/v1/accounts/verify_credentials",
                             self._client.account_verify_credentials, posting=False)
        host = self._instance.split("://", 1)[-1]
        return f"@{account.get('acct') or account.get('username')}@{host}"

    def close(self) -> None:
        self._session.close()

    def _call(self, endpoint: str, call: Callable, posting: bool = True):
        try:
            return call()
        except MastodonError as error:
            raise scrub(self._map(endpoint, error, posting), [self._token]) from None

    def _map(self, endpoint: str, error: MastodonError, posting: bool) -> PublishError:
        if isinstance(error, MastodonRatelimitError):
            return self._rate_limited(endpoint)
        if isinstance(error, MastodonNetworkError):
            reason = "timed out" if "timed out" in str(error).lower() else "no connection"
            return RetryLater(f"could not reach Mastodon at {self._instance} ({reason})")
        status, detail = _status_and_detail(error)
        if isinstance(error, MastodonServerError) or (status or 0) >= 500:
            return RetryLater(f"Mastodon answered {status} to {endpoint}: {detail}")
        if isinstance(error, MastodonUnauthorizedError) or status == 403:
            return TargetPaused(
                f"Mastodon at {self._instance} refused the access token of target {self.name!r} ({status}: "
                f"{detail}): check {self._token_var}, made under Preferences > Development with the scopes "
                "write:statuses and write:media")
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
    if epoch := from_epoch(value):
        return epoch
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
