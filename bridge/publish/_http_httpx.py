"""The httpx half of bridge/publish/_http.py (Telegram, the Graph API, Bluesky): a client under the
total deadline, and what a transport error says about a call."""

from __future__ import annotations

import httpx

from bridge.deadline import deadline_transport, total_deadline
from bridge.errors import InDoubt, RetryLater
from bridge.publish._http import _judged


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
