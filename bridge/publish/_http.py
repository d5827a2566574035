"""Small helpers every network module shares (httpx or requests alike). Nothing here knows any
network's URLs, headers or error codes: only how to read an answer and how to keep a secret out of
a message.

Each HTTP stack's own helpers are in their own module: `DeadlineClient` and
`transport_problem` (httpx: Telegram, the Graph API, Bluesky) in _http_httpx.py, `DeadlineSession`
and `requests_problem` (requests: tweepy for X, Mastodon.py) in _http_requests.py. A daemon posting to X alone then loads no httpx (~3 MB beside tweepy), one
posting to Telegram alone no requests."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, timezone

from typing import TYPE_CHECKING

from bridge.errors import InDoubt, PublishError, RetryLater

if TYPE_CHECKING:
    import httpx
    import requests

MIN_SECRET_LENGTH = 6
"""Shorter values are not real credentials; replacing them would garble ordinary words."""


def json_body(response: httpx.Response | requests.Response) -> dict:
    """The answer's JSON object, or {} for an HTML error page from a proxy, or JSON that is no object."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def short_reason(error: Exception) -> str:
    """ "Connection refused" rather than a chain of nested reprs."""
    match = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", str(error))
    if match:
        return match.group(1).strip()
    return type(error).__name__


MAY_HAVE_ACTED = frozenset({500, 502, 503, 504})
"""Statuses to a create call after which the post may exist: the server (or the one behind a proxy)
may have created it before failing or timing out. 408 and 429 say the request was not processed."""

def _judged(network: str, base: str, error: Exception, timeout: float, *, never_sent: bool,
            timed_out: bool) -> RetryLater | InDoubt:
    """The outcome, worded for the operator: what happened, and whether the post may exist."""
    if never_sent:
        if timed_out:
            return RetryLater(f"{network} did not answer within {timeout:g}s")
        return RetryLater(f"could not reach {network} at {base}: {short_reason(error)}")
    if timed_out:
        return InDoubt(f"{network} did not answer within {timeout:g}s after receiving the post")
    return InDoubt(f"the connection to {network} broke after the post was sent: {short_reason(error)}")


def scrub(error: PublishError, secrets: Iterable[str]) -> PublishError:
    """No credential value may reach a message, a log or the database."""
    message = error.message
    for secret in secrets:
        if secret and len(secret) >= MIN_SECRET_LENGTH:
            message = message.replace(secret, "***")
    if message != error.message:
        error.message = message
        error.args = (message,)
    return error


def from_iso(value) -> datetime | None:
    """An ISO 8601 time from an answer ("Z" or an offset; none means UTC), or None when garbled."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def from_epoch(seconds: float | str | None) -> datetime | None:
    """A Unix time from a header, or None when it is missing or garbled."""
    try:
        return datetime.fromtimestamp(float(seconds), timezone.utc)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError, OSError):
        return None
