"""Meta's Graph API, as Facebook Pages (facebook.py) and the WhatsApp Cloud API (whatsapp.py) both
speak it: one error shape and the error codes the two share. Each network's own codes stay in its
module; this one knows only the platform.

An error answer is `{"error": {"message", "type", "code", "error_subcode", "fbtrace_id",
"is_transient", "error_user_msg", "error_data"}}`, mostly with HTTP 400 whatever the cause, so the
code decides, not the status.

A call that creates something (a Page post, a WhatsApp message) passes `creates=True`: once its
request may have left, a lost answer (timeout, dropped connection, 500/502/503/504, a 2xx that is not
JSON) is InDoubt; calls that create nothing are retried (bridge.errors, pipeline.py).

With an app secret, every call carries `appsecret_proof`, the HMAC-SHA256 of the access token keyed
with the app secret, in hex (Graph API "Securing Requests": required when the app has "Require App
Secret" on; Graph refuses a call without it, or with a wrong one, with code 100).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx

from bridge.errors import InDoubt, PublishError, RetryLater, TargetPaused
from bridge.publish._http import MAY_HAVE_ACTED, json_body, scrub
from bridge.publish._http_httpx import DeadlineClient, transport_problem

TOKEN_INVALID = 190
"""OAuthException: the access token expired (subcode 463), was invalidated (460, 467) or revoked."""
SESSION_INVALID = 102
PERMISSION_CODES = {3, 10} | set(range(200, 300))
"""The app or token lacks a permission (pages_manage_posts, whatsapp_business_messaging, ...)."""
THROTTLING_CODES = {4, 17, 32, 341, 613, 80001}
"""App, user, page and custom-level call limits (80001: the Page's own limit; 341, "Application
limit reached", which Meta's Graph API "Handling Errors" guide calls temporary: wait and retry)."""
TRANSIENT_CODES = {1, 2}
"""Unknown error and service unavailable: try again."""
POLICY_BLOCK = 368
"""Temporarily blocked for policy violations: posting again only makes it worse."""
THROTTLE_WAIT_FALLBACK = timedelta(minutes=30)
"""How long to wait after throttling when no X-Business-Use-Case-Usage header says."""
THROTTLE_WAIT_CEILING_MINUTES = 7 * 24 * 60
"""A time to regain access beyond this is read as this (absurd values would overflow the date
arithmetic); the pipeline caps the hold further (NETWORK_HOLD_MAX)."""


@dataclass
class GraphFailure(Exception):
    """An error answer, read: the HTTP status, Graph's error fields, and the response headers."""

    status: int
    code: int | None
    subcode: int | None
    message: str
    fbtrace_id: str
    transient: bool
    user_message: str
    headers: httpx.Headers

    def describe(self) -> str:
        code = f"code {self.code}" + (f"/{self.subcode}" if self.subcode else "")
        user = f" ({self.user_message})" if self.user_message and self.user_message not in self.message else ""
        trace = f", fbtrace_id {self.fbtrace_id}" if self.fbtrace_id else ""
        return f"{self.message}{user} [{code}{trace}]"


def appsecret_proof(token: str, app_secret: str) -> str:
    """HMAC-SHA256 of the access token keyed with the app secret, as lowercase hex."""
    return hmac.new(app_secret.encode(), token.encode(), hashlib.sha256).hexdigest()


class GraphClient:
    """Requests with the token in the Authorization header (never in a URL or a log), raising
    GraphFailure for an error answer, RetryLater when Meta cannot be reached, and InDoubt when a
    create call's answer is lost."""

    def __init__(self, network: str, api_base: str, version: str, token: str, timeout: float,
                 app_secret: str | None = None):
        self.network, self.token, self.timeout = network, token, timeout
        self.secrets = [token] + ([app_secret] if app_secret else [])
        self.base = f"{api_base.rstrip('/')}/{version.strip('/')}"
        self._proof = appsecret_proof(token, app_secret) if app_secret else None
        # Each call bounded in total (connect to body), not per read: a trickled answer cannot stretch it.
        self._http = DeadlineClient(deadline=timeout, headers={"Authorization": f"Bearer {token}"})

    def request(self, method: str, path: str, *, creates: bool = False, **kwargs) -> dict:
        """The answer's JSON object. `creates`: the call makes a post or a message (see the module)."""
        if self._proof:
            kwargs["params"] = {**(kwargs.get("params") or {}), "appsecret_proof": self._proof}
        try:
            response = self._http.request(method, f"{self.base}/{path}", **kwargs)
        except httpx.TransportError as error:
            raise scrub(transport_problem(self.network, self.base, error, self.timeout, creates=creates),
                        self.secrets) from None
        if response.is_success:
            try:
                body = response.json()
            except ValueError:
                body = None
            if isinstance(body, dict):
                return body
            if creates:
                raise InDoubt(f"{self.network}'s answer to /{path} was unreadable; it may have acted on it")
            raise RetryLater(f"{self.network}'s answer to /{path} was unreadable")
        body = json_body(response)
        error = body.get("error") if isinstance(body.get("error"), dict) else {}
        raise GraphFailure(
            status=response.status_code, code=_int(error.get("code")), subcode=_int(error.get("error_subcode")),
            message=str(error.get("message") or f"HTTP {response.status_code} {response.reason_phrase}"),
            fbtrace_id=str(error.get("fbtrace_id") or ""), transient=bool(error.get("is_transient")),
            user_message=str(error.get("error_user_msg") or _details(error)), headers=response.headers,
        )

    def close(self) -> None:
        self._http.close()


def common_error(failure: GraphFailure, *, network: str, target: str, token_hint: str, permission_hint: str,
                 now: datetime, creates: bool = False) -> PublishError | None:
    """The platform's own codes: token, permissions, throttling, outages, policy blocks. None when the
    code is the network's business. An outage's 500/502/503/504 to a create call is InDoubt."""
    detail = failure.describe()
    if failure.code == TOKEN_INVALID or failure.code == SESSION_INVALID or failure.status == 401:
        return TargetPaused(f"{network} refused the access token of target {target!r} ({detail}): {token_hint}")
    if failure.code in PERMISSION_CODES:
        return TargetPaused(f"{network} says target {target!r} lacks a permission ({detail}): {permission_hint}")
    if failure.code in THROTTLING_CODES:
        return throttled(failure, network, now)
    if failure.code == POLICY_BLOCK:
        return TargetPaused(f"{network} has temporarily blocked target {target!r} for a policy violation "
                            f"({detail}): check the account in Meta Business Suite, then `bridge unpause {target}`")
    if creates and failure.status in MAY_HAVE_ACTED:
        return InDoubt(f"{network} answered {failure.status} ({detail}); it may have acted on the request")
    if failure.code in TRANSIENT_CODES or failure.transient or failure.status >= 500:
        return RetryLater(f"{network} answered {failure.status}: {detail}")
    return None


def throttled(failure: GraphFailure, network: str, now: datetime) -> RetryLater:
    """Wait as long as Meta says (estimated_time_to_regain_access, in minutes), else a fallback."""
    minutes = regain_access_minutes(failure.headers)
    retry_at = now + (timedelta(minutes=min(minutes, THROTTLE_WAIT_CEILING_MINUTES)) if minutes
                      else THROTTLE_WAIT_FALLBACK)
    return RetryLater(f"{network} is throttling ({failure.describe()}); next try after "
                      f"{retry_at:%Y-%m-%d %H:%M:%S} UTC", retry_at=retry_at, counts_as_attempt=False)


def regain_access_minutes(headers: httpx.Headers) -> int | None:
    """The largest estimated_time_to_regain_access in X-Business-Use-Case-Usage, a JSON object of
    business ids to lists of usage entries."""
    try:
        usage = json.loads(headers.get("x-business-use-case-usage") or "{}")
        waits = [int(entry.get("estimated_time_to_regain_access") or 0)
                 for entries in usage.values() for entry in entries]
    except (ValueError, TypeError, AttributeError):
        return None
    return max(waits, default=0) or None


def _details(error: dict) -> str:
    """WhatsApp puts the useful part in error_data.details."""
    data = error.get("error_data")
    return str(data.get("details") or "") if isinstance(data, dict) else ""


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
