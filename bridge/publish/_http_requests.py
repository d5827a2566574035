"""The requests half of bridge/publish/_http.py (tweepy for X, Mastodon.py): a session under the
total deadline, and what a requests error says about a call."""

from __future__ import annotations

import requests
import urllib3

from bridge.deadline import total_deadline
from bridge.deadline_requests import DeadlineAdapter
from bridge.errors import InDoubt, RetryLater
from bridge.publish._http import _judged


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


def requests_problem(network: str, base: str, error: requests.RequestException, timeout: float,
                     creates: bool = True) -> RetryLater | InDoubt:
    """The same judgement for the requests stack (tweepy, Mastodon.py): requests folds "connection
    refused" and "connection closed mid-answer" into one ConnectionError, so look at its cause."""
    never_sent = isinstance(error, requests.ConnectTimeout) or (
        isinstance(error, requests.ConnectionError) and _before_request_left(error))
    return _judged(network, base, error, timeout, never_sent=never_sent or not creates,
                   timed_out=isinstance(error, requests.Timeout))


def _before_request_left(error: requests.ConnectionError) -> bool:
    """True when urllib3 failed to connect at all (DNS, refused, connect timeout, TLS handshake)."""
    cause = error.args[0] if error.args else None
    reason = getattr(cause, "reason", cause)  # MaxRetryError wraps the real reason
    return isinstance(reason, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError,
                               urllib3.exceptions.NameResolutionError, urllib3.exceptions.SSLError,
                               urllib3.exceptions.ProxyError))
