"""Small helpers every network module shares (httpx or requests alike). Nothing here knows any
network's URLs, headers or error codes: only how to read an answer and how to keep a secret out of
a message."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, timezone

import httpx
import requests
import urllib3

from bridge.deadline import deadline_transport, total_deadline
from bridge.deadline_requests import DeadlineAdapter
from bridge.errors import InDoubt, PublishError, RetryLater

MIN_SECRET_LENGTH = 6
"""Shorter values are not real credentials; replacing them would garble ordinary words."""


class DeadlineClient(httpx.Client):
    """An httpx.Client whose every call (each redirect hop, the request, the headers and a
    non-streamed body) ends within `deadline` seconds in total, however slowly the server trickles
    (bridge/deadline.py). The deadline opens in send(), which request(), get() and post() go through."""

    def __init__(self, *, deadline: float, **kwargs):
        super().__init__(timeout=deadline, transport=deadline_transport(), **kwargs)
        self.deadline = deadline

    def send(self, request: httpx.Request, **kwargs) -> httpx.Response:
        with total_deadline(self.deadline):
            return super().send(request, **kwargs)


class DeadlineSession(requests.Session):
    """A requests session whose every request() (redirects, the request, the headers and a
    non-streamed body) ends within `deadline` seconds in total (bridge/deadline.py): tweepy and
    Mastodon.py call request() and read no stream. A call with no timeout of its own (tweepy gives
    none) still gets one: the adapter clamps every socket operation to the time left."""

    def __init__(self, deadline: float, adapter: DeadlineAdapter | None = None):
        super().__init__()
        self.deadline = deadline
        adapter = adapter or DeadlineAdapter()
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def request(self, method, url, *args, **kwargs) -> requests.Response:
        with total_deadline(self.deadline):
            return super().request(method, url, *args, **kwargs)


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

_NEVER_SENT_HTTPX = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol,
                     httpx.ProxyError)
"""Raised before a request can have left: DNS, refused, connect timeout, TLS handshake, no free
connection. Every other transport error (read/write timeout, connection closed or reset, protocol
error) may come after the network received the request."""


def transport_problem(network: str, base: str, error: httpx.TransportError, timeout: float,
                      creates: bool = True) -> RetryLater | InDoubt:
    """What an httpx transport error says about a call: never sent (retry), or, for a call that
    creates a post (`creates`), may have been sent (in doubt). A call that creates nothing (reading,
    logging in, uploading a blob nobody sees) is safe to repeat either way."""
    return _judged(network, base, error, timeout, never_sent=isinstance(error, _NEVER_SENT_HTTPX) or not creates,
                   timed_out=isinstance(error, httpx.TimeoutException))


def requests_problem(network: str, base: str, error: requests.RequestException, timeout: float,
                     creates: bool = True) -> RetryLater | InDoubt:
    """The same judgement for the requests stack (tweepy, Mastodon.py): requests folds "connection
    refused" and "connection closed mid-answer" into one ConnectionError, so look at its cause."""
    never_sent = isinstance(error, requests.ConnectTimeout) or (
        isinstance(error, requests.ConnectionError) and _before_request_left(error))
    return _judged(network, base, error, timeout, never_sent=never_sent or not creates,
                   timed_out=isinstance(error, requests.Timeout))


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


def _before_request_left(error: requests.ConnectionError) -> bool:
    """True when urllib3 failed to connect at all (DNS, refused, connect timeout, TLS handshake)."""
    cause = error.args[0] if error.args else None
    reason = getattr(cause, "reason", cause)  # MaxRetryError wraps the real reason
    return isinstance(reason, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError,
                               urllib3.exceptions.NameResolutionError, urllib3.exceptions.SSLError,
                               urllib3.exceptions.ProxyError))


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
