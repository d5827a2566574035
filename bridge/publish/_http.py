"""Small helpers every network module shares (httpx or requests alike). Nothing here knows any
network's URLs, headers or error codes: only how to read an answer and how to keep a secret out of
a message."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, timezone

import httpx
import requests

from bridge.errors import PublishError, RetryLater

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


def transport_problem(network: str, base: str, error: httpx.TransportError, timeout: float) -> RetryLater:
    """A timeout or an unreachable server: transient, retried with backoff."""
    if isinstance(error, httpx.TimeoutException):
        return RetryLater(f"{network} did not answer within {timeout:g}s")
    return RetryLater(f"could not reach {network} at {base}: {short_reason(error)}")


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


def from_epoch(seconds: float | str | None) -> datetime | None:
    """A Unix time from a header, or None when it is missing or garbled."""
    try:
        return datetime.fromtimestamp(float(seconds), timezone.utc)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError, OSError):
        return None
