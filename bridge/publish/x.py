"""Publishing to X (API v2) through tweepy, with OAuth 1.0a user context.

The only module that knows X's URLs, headers, error shapes and how X counts characters.

Routing and the OAuth signature: tweepy's Client hard-codes `https://api.twitter.com` and sets no
timeout. The OAuth 1.0a signature covers the method, the scheme, host and path, and the query, and
requests-oauthlib computes it while the request is *prepared*. An adapter that rewrites the URL in
`send()` would therefore send a request signed for api.twitter.com to another host; X (or any
server) checks the signature against the URL it received, so that request would fail with 401 the
day the hosts differ, and always behind a path-prefixed proxy. So the rewrite happens in the
session's `prepare_request()`, before auth is applied: the URL signed is the URL sent. The mounted
adapter (bridge.deadline.DeadlineAdapter) only bounds the time, which `send()` is the place for, and
the session's `request()` opens a total deadline of `timeout` seconds around each call (connect,
request, headers and body: a server trickling its answer is cut, see bridge/publish/__init__.py).
Neither touches the URL or the headers, so the signature stays the one prepare_request() computed.
This keeps tweepy's own request(), error classes and response parsing untouched (no copy of its
70-line request method to maintain).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from urllib.parse import quote, urlsplit

import requests
import tweepy

from bridge.clock import utc_now
from bridge.errors import AlreadyPosted, ConfigError, InDoubt, PostRejected, PublishError, RetryLater, TargetPaused
from bridge.model import Image, Post
from bridge.publish._http import MAY_HAVE_ACTED, from_epoch, json_body, scrub, short_reason
from bridge.publish._http_requests import DeadlineSession, requests_problem
from bridge.publish.limits import X_LENGTH_RULE, X_MAX_IMAGE_BYTES, x_weighted_length  # noqa: F401
from bridge.secrets import credential_env_var

# tweepy logs request and response headers at DEBUG, and requests-oauthlib logs the signed
# Authorization header (consumer key, access token, signature): keep all three above DEBUG whatever
# the root level is. Their child loggers inherit this level.
for _logger_name in ("tweepy", "requests_oauthlib", "oauthlib"):
    logging.getLogger(_logger_name).setLevel(logging.INFO)

TWEEPY_HOST = "https://api.twitter.com"
X_CREDENTIAL_FIELDS = ("consumer_key", "consumer_secret", "access_token", "access_token_secret")
MAX_IMAGE_BYTES = X_MAX_IMAGE_BYTES
GIF_LEFT_OUT = ("a GIF needs X's chunked upload (INIT/APPEND/FINALIZE, then STATUS until processed), which the "
                "bridge does not do: posted without it")
"""Why a GIF is not attached on X: the one-request upload takes photos (tweet_image) only."""
ALT_TEXT_MAX = 1000
"""POST /2/media/metadata: metadata.alt_text.text is at most 1000 characters (the OpenAPI spec's maxLength)."""
RATE_LIMIT_FALLBACK = timedelta(minutes=15)
"""X's rate-limit window: how long to wait after a 429 that says nothing about its reset."""
RATE_LIMIT_MIN_WAIT = timedelta(seconds=60)
"""A floor on the wait after a 429, so a reset already past (clock skew) cannot make us hammer X."""
_RATE_LIMIT_FAMILIES = {
    "x-rate-limit": "the 15-minute limit",
    "x-user-limit-24hour": "the account's 24-hour limit",
    "x-app-limit-24hour": "the app's 24-hour limit",
}
_DUPLICATE_CODE = 187  # v1.1's "Status is a duplicate."
_NOT_ENROLLED_CODE = 453  # v1.1's "You currently have access to a subset of X API V2 endpoints"


LENGTH_RULE = X_LENGTH_RULE
"""The name every network module exports (bridge.publish.NETWORK_MODULES)."""


def post_url(remote_id: str, target) -> str | None:
    """Where a sent post can be seen (the PR office's page links it): X finds a post by its id alone."""
    return f"https://x.com/i/web/status/{quote(remote_id, safe='')}" if remote_id else None


def build(target, *, timeout: float, clock=None) -> "XPublisher":
    return XPublisher(target.name, api_base=target.api_base, credentials=target.credentials,
                      timeout=timeout, clock=clock or utc_now)


class _XSession(DeadlineSession):
    """A session that sends tweepy's api.twitter.com requests to `api_base`, rewriting the URL
    before the OAuth signature is computed, each request within a total deadline of `timeout`
    seconds (tweepy sets no timeout at all; see the module docstring)."""

    def __init__(self, api_base: str, timeout: float):
        super().__init__(timeout)
        self.api_base = api_base
        self.last_headers: Mapping[str, str] = {}
        """The headers of the last answer: tweepy hides them on success, and they carry the quota."""
        self.hooks["response"].append(self._remember_headers)

    def _remember_headers(self, response: requests.Response, *args, **kwargs) -> None:
        self.last_headers = response.headers

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        if isinstance(request.url, str) and request.url.startswith(TWEEPY_HOST + "/"):
            request.url = self.api_base + request.url[len(TWEEPY_HOST):]
        return super().prepare_request(request)


class XPublisher:
    """Posts to one X account. Satisfies bridge.publish.Publisher."""

    kind = "x"
    length_rule = X_LENGTH_RULE
    max_image_bytes = MAX_IMAGE_BYTES
    duplicate_safe_for = timedelta.max
    """X refuses a second post with the same text (403 duplicate content), which we count as sent."""

    def __init__(
        self,
        name: str,
        *,
        api_base: str,
        credentials: Mapping[str, str],
        timeout: float = 20.0,
        clock: Callable[[], datetime] = utc_now,
    ):
        self.name = name
        self._env_prefix = credential_env_var(name, "")  # "BRIDGE_X_", for messages
        missing = [field for field in X_CREDENTIAL_FIELDS if not credentials.get(field)]
        base = api_base.rstrip("/")
        problems = [f"targets.{name}: {field} is missing (set {credential_env_var(name, field)})" for field in missing]
        if urlsplit(base).scheme not in ("http", "https") or not urlsplit(base).netloc:
            problems.append(f"targets.{name}.api_base: {api_base!r} is not an http(s) URL")
        if problems:
            raise ConfigError(problems)
        self._secrets = tuple(credentials[field] for field in X_CREDENTIAL_FIELDS)
        self.hold_until: datetime | None = None
        self.image_problem: str | None = None
        self.billed_calls: list[str] = []
        """Set by publish() and verify(): the billed calls besides the post itself (names of
        TargetConfig.call_prices), for the budget."""
        self._timeout = timeout
        self._clock = clock
        self._api_base = base
        self._client = tweepy.Client(**{field: credentials[field] for field in X_CREDENTIAL_FIELDS})
        self._client.session.close()
        self._client.session = _XSession(base, timeout)

    def publish(self, post: Post, idempotency_key: str) -> str:
        """Post the text, with the photo when there is one and it uploads; return the new post's
        id. The idempotency key is unused: X has no such header, and refuses duplicate text instead.
        Afterwards `hold_until` says when X's quota allows the next post, if it is used up."""
        del idempotency_key
        self.hold_until = None
        self.image_problem = None
        self.billed_calls = []
        media_ids = None
        if post.image is not None and post.image.mime_type == "image/gif":
            self.image_problem = GIF_LEFT_OUT
        elif post.image is not None:
            try:
                media_ids = [self._upload(post.image)]
            except PublishError as error:
                self.image_problem = self._scrub(error).message  # post without the photo, never lose the post
        endpoint = "POST /2/tweets"
        response = self._call(endpoint, lambda: self._client.create_tweet(
            text=post.text, media_ids=media_ids, user_auth=True))
        data = response.data if isinstance(response.data, dict) else {}
        if not data.get("id"):
            # A 2xx without an id: the post may exist. In doubt; the identical re-send settles it.
            raise self._scrub(InDoubt(f"X answered {endpoint} without a post id"))
        self.hold_until = self._quota_exhausted_until(self._client.session.last_headers)
        return str(data["id"])

    def _upload(self, image: Image) -> str:
        """Upload a photo (POST /2/media/upload, one request, multipart with exactly the spec's fields
        `media` and `media_category`: the spec forbids any other) and set its alt text
        (POST /2/media/metadata); return the media id. Signed with OAuth 1.0a like every other call."""
        endpoint = "POST /2/media/upload"
        response = self._raw_call(endpoint, lambda: self._client.session.post(
            f"{self._api_base}/2/media/upload", auth=self._oauth(),
            headers={"User-Agent": self._client.user_agent},
            data={"media_category": "tweet_image"},
            files={"media": ("photo", image.data, image.mime_type)},
        ))
        body = json_body(response)
        data = body.get("data") if isinstance(body.get("data"), dict) else body  # v1.1-style answers too
        media_id = data.get("id") or data.get("media_id_string") or data.get("media_id")
        if not media_id:
            raise RetryLater(f"X answered {endpoint} without a media id")
        if image.alt_text:
            endpoint = "POST /2/media/metadata"
            self.billed_calls.append("media_metadata")  # X bills the request, whatever it answers
            payload = {"id": str(media_id), "metadata": {"alt_text": {"text": image.alt_text[:ALT_TEXT_MAX]}}}
            try:
                self._raw_call(endpoint, lambda: self._client.session.post(
                    f"{self._api_base}/2/media/metadata", auth=self._oauth(), json=payload,
                    headers={"User-Agent": self._client.user_agent}))
            except PublishError as error:  # a photo without alt text is still worth posting
                self.image_problem = f"alt text not set: {self._scrub(error).message}"
        return str(media_id)

    def _raw_call(self, endpoint: str, call: Callable[[], requests.Response]) -> requests.Response:
        """A request tweepy has no method for (media: nobody sees it until a post attaches it, so
        repeating it is safe): same session, same error mapping."""
        def checked() -> requests.Response:
            response = call()
            if not 200 <= response.status_code < 300:
                raise self._from_response(endpoint, response, True, creates=False)
            return response
        try:
            return self._call(endpoint, checked, creates=False)
        except PublishError as error:
            raise self._scrub(error) from None

    def _oauth(self):
        key, secret, token, token_secret = self._secrets
        return tweepy.OAuth1UserHandler(key, secret, token, token_secret).apply_auth()

    def _quota_exhausted_until(self, headers: Mapping[str, str]) -> datetime | None:
        """When a successful answer says a quota is used up (remaining 0), the time it resets."""
        resets = [
            from_epoch(reset) or self._clock() + RATE_LIMIT_FALLBACK
            for family in _RATE_LIMIT_FAMILIES
            if _int_header(headers, f"{family}-remaining") == 0
            and (reset := _int_header(headers, f"{family}-reset")) is not None
        ]
        return max(resets, default=None)

    def verify(self) -> str:
        """Check the credentials; return the account as "@username"."""
        endpoint = "GET /2/users/me"
        self.billed_calls = ["verify"]
        response = self._call(endpoint, lambda: self._client.get_me(user_auth=True), posting=False)
        if response.data is None:  # a 200 carrying only "errors"
            errors = _messages({"errors": response.errors})
            raise self._scrub(RetryLater(f"X answered {endpoint} without the account: {errors}"))
        return f"@{response.data.username}"

    def close(self) -> None:
        self._client.session.close()

    # --- Error mapping ---------------------------------------------------------------------------

    def _call(self, endpoint: str, call: Callable[[], tweepy.Response], posting: bool = True,
              creates: bool | None = None) -> tweepy.Response:
        """`posting`: a refusal is the post's fault (PostRejected), not the target's. `creates`
        (default: `posting`): the call creates something others see, so an answer lost after the
        request left leaves the post in doubt rather than never sent."""
        creates = posting if creates is None else creates
        try:
            return call()
        except tweepy.HTTPException as error:
            raise self._scrub(self._from_response(endpoint, error.response, posting, creates)) from None
        except requests.JSONDecodeError as error:  # a 2xx whose body is cut off or not JSON
            raise self._scrub(self._unreadable(endpoint, error, creates)) from None
        except requests.RequestException as error:
            raise self._scrub(requests_problem("X", self._api_base, error, self._timeout, creates=creates)) from None
        except (tweepy.TweepyException, ValueError, LookupError, AttributeError, TypeError) as error:
            # An unreadable answer: bad JSON is a ValueError, and tweepy raises KeyError (a LookupError),
            # AttributeError or TypeError on JSON of an unexpected shape.
            raise self._scrub(self._unreadable(endpoint, error, creates)) from None

    @staticmethod
    def _unreadable(endpoint: str, error: Exception, creates: bool) -> PublishError:
        message = f"X's answer to {endpoint} was unreadable: {short_reason(error)}"
        return InDoubt(message) if creates else RetryLater(message)

    def _from_response(self, endpoint: str, response: requests.Response, posting: bool,
                       creates: bool | None = None) -> PublishError:
        creates = posting if creates is None else creates
        status, reason = response.status_code, response.reason or ""
        body = json_body(response)
        detail = _detail(body) or f"{status} {reason}".strip()
        if _usage_capped(body):
            return TargetPaused(
                f"X says the usage cap or credits of the app behind target {self.name!r} are used up ({detail}): "
                "add credits or raise the spend cap in the developer portal (Billing), then lift the pause with "
                f"`bridge unpause {self.name}`")
        if status == 429:
            return self._rate_limited(endpoint, response.headers)
        if status >= 500:
            if creates and status in MAY_HAVE_ACTED:  # X (or the proxy before it) may have made the post
                return InDoubt(f"X answered {f'{status} {reason}'.strip()} to {endpoint}; the post may exist")
            return RetryLater(f"X answered {status} {reason}".strip())
        if status == 401:
            return TargetPaused(
                f"X rejected the credentials of target {self.name!r} ({detail}): check "
                f"{self._env_prefix}* ({', '.join(f.upper() for f in X_CREDENTIAL_FIELDS)}), or regenerate "
                "the access token and secret in the developer portal (after changing the app's "
                "permissions to Read and Write, the old token keeps the old permissions)"
            )
        if status == 403:
            return self._forbidden(endpoint, body, detail)
        if status == 402:
            return TargetPaused(f"X wants payment for {endpoint} ({detail}): add credits or change the plan "
                                "of the app in the developer portal")
        if status == 404:
            return TargetPaused(
                f"X answered 404 for {endpoint}: check api_base ({self._api_base}) of target {self.name!r}"
            )
        if status == 408:
            return RetryLater(f"X answered {status} {reason}".strip())
        messages = _messages(body) or detail
        if posting:
            return PostRejected(f"X refused the post ({status}): {messages}")
        return TargetPaused(f"X refused {endpoint} ({status}): {messages}")

    def _forbidden(self, endpoint: str, body: dict, detail: str) -> PublishError:
        codes = {e.get("code") for e in body.get("errors", []) if isinstance(e, dict)}
        if "duplicate content" in detail.lower() or _DUPLICATE_CODE in codes:
            return AlreadyPosted(f"X already has this post ({detail})")
        if body.get("reason") == "client-not-enrolled" or _NOT_ENROLLED_CODE in codes:
            return TargetPaused(
                f"X says the app behind target {self.name!r} has no access to {endpoint} ({detail}): in the "
                "developer portal, attach the app to a Project and choose an access level (plan) that includes "
                "this endpoint, then regenerate the access token and secret if asked"
            )
        return TargetPaused(f"X refused {endpoint} for target {self.name!r}: {detail}")

    def _rate_limited(self, endpoint: str, headers: Mapping[str, str]) -> RetryLater:
        now = self._clock()
        exhausted: list[tuple[int, str]] = []
        known: list[tuple[int, str]] = []
        for family, label in _RATE_LIMIT_FAMILIES.items():
            reset = _int_header(headers, f"{family}-reset")
            if reset is None:
                continue
            known.append((reset, label))
            if _int_header(headers, f"{family}-remaining") == 0:
                exhausted.append((reset, label))
        chosen = max(exhausted or known, default=None)
        if chosen is None:
            retry_at, which = now + RATE_LIMIT_FALLBACK, "a rate limit"
        else:
            retry_at = max(from_epoch(chosen[0]) or now + RATE_LIMIT_FALLBACK, now + RATE_LIMIT_MIN_WAIT)
            which = chosen[1]
        return RetryLater(
            f"X rate limit on {endpoint} ({which}) reached; next try after {retry_at:%Y-%m-%d %H:%M:%S} UTC",
            retry_at=retry_at,
            counts_as_attempt=False,
        )

    def _scrub(self, error: PublishError) -> PublishError:
        """Belt and braces: no credential value may reach a message, a log or the database."""
        return scrub(error, self._secrets)


_USAGE_CAPPED = "/2/problems/usage-capped"
"""X's problem type when a plan's cap, the credits or the spend limit are used up (a 429, not a 402:
docs.x.com, "Error codes", fetched 2026-12)."""


def _usage_capped(body: dict) -> bool:
    """The answer says the app's usage cap, credits or spend limit are exhausted: waiting for a
    rate-limit reset will not help, only the operator can."""
    problems = [body, *(e for e in body.get("errors", []) if isinstance(e, dict))]
    for problem in problems:
        kind = str(problem.get("type") or "")
        words = f"{problem.get('title') or ''} {problem.get('detail') or ''} {problem.get('message') or ''}".lower()
        if kind.endswith(_USAGE_CAPPED) or "usagecapexceeded" in words.replace(" ", "") or any(
                phrase in words for phrase in ("usage cap", "spend cap", "spending cap", "credits")):
            return True
    return False


def _messages(body: dict) -> str:
    """X's per-error messages (never the echoed parameters: they repeat the whole post)."""
    found = [e["message"] for e in body.get("errors", []) if isinstance(e, dict) and e.get("message")]
    return "; ".join(str(m) for m in found)


def _detail(body: dict) -> str:
    detail = body.get("detail")
    if isinstance(detail, str) and detail:
        return detail
    return _messages(body) or str(body.get("title") or "")


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    try:
        return int(headers[name])
    except (KeyError, TypeError, ValueError):
        return None
