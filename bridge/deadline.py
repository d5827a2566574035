"""A total deadline for one HTTP call (connect + request + headers + body) that a slow server cannot stretch.

httpx's and requests' timeouts are per socket operation: a server that trickles its headers or body
a byte a second satisfies every read and holds a call for minutes (seen: a 90 s fetch with a 20 s
limit, a 109 s X post with publish_timeout=20s). Here a deadline is set around the call, per thread:

    with total_deadline(20) as deadline:
        response = client.post(url, json=body)        # httpx.Client(transport=deadline_transport())
        # or: session.post(url, json=body)            # session.mount("https://", DeadlineAdapter())

- httpx (Telegram, Facebook, WhatsApp; Bluesky through atproto's
  `Client(request=Request(timeout=..., transport=deadline_transport()))`, whose Request passes
  its arguments to httpx.Client): `deadline_transport()` is an httpx.HTTPTransport whose network
  backend clamps every socket read, write, connect and TLS handshake to the time left. Past the
  deadline the call raises httpx.ConnectTimeout / WriteTimeout / ReadTimeout, whose message says
  which phase was cut ("total deadline of 20s passed while waiting for the response headers").
- requests (tweepy for X, Mastodon.py): `DeadlineAdapter()` is a requests HTTPAdapter (subclass it
  to add more). Its connections are watched: when the deadline passes, a timer shuts the socket in
  use down, which ends any blocked read at once; the adapter then raises requests' ConnectTimeout
  or ReadTimeout with the same kind of message, and also clamps connect/read timeouts to the time left.
  A non-streamed body is read inside the adapter, so it is under the deadline too.

Outside a `total_deadline` block both behave like their plain parents. Blocks nest: the inner one
ends no later than the outer. `deadline.expired` and `deadline.phase` tell a caller, after it
caught a timeout, whether the total deadline cut the call and where. A streamed body
(stream=True, iter_bytes) is only covered while it is read inside the block.

Each half is its own module, loaded on first use of its names from here: the httpx half
(`deadline_transport`, bridge/deadline_httpx.py) and the requests half (`DeadlineAdapter`,
bridge/deadline_requests.py), so a process imports only the HTTP stack it uses (the sources'
own requests go over http.client, sources/http11.py, and use this module's deadline alone).

Wiring: bridge/publish/_http.py's DeadlineSession (X's _XSession, Mastodon.py's `session=`) and
DeadlineClient (Telegram, the Graph API), and bluesky.py's _DeadlineRequest, open a
`total_deadline(publish_timeout)` around each request (bridge/publish/__init__.py says why per
request rather than per publish).

Not covered: name resolution (getaddrinfo has no timeout in either stack); for a host with several
addresses each connection attempt gets the time left, not a share of it. httpx.Client given a
transport ignores HTTP(S)_PROXY in the environment: mount `deadline_transport(proxy=...)` where a
proxy is needed (bridge configures none). A requests
session should serve one thread at a time (as each publisher's does): the timer shuts down the
sockets its block used, even one another thread took from the pool meanwhile.
"""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:  # annotations only: the daemon loads http.client through requests only where used
    from http.client import HTTPConnection

CONNECTING = "connecting"
SENDING = "sending the request"
WAITING = "waiting for the response headers"
READING = "reading the response body"

_local = threading.local()


class Deadline:
    """One block's deadline: when it ends, and how far the call had got."""

    def __init__(self, seconds: float, ends_at: float):
        self.seconds = seconds
        self.ends_at = ends_at
        self.phase = CONNECTING
        self.cut_while: str | None = None
        """The phase when the timer shut the sockets down (requests): later steps see only the wreck."""
        self.headers_received = False
        self._watched: list[HTTPConnection] = []
        self._sockets: list[socket.socket] = []
        self._timer: threading.Timer | None = None
        self._closed = False
        self._lock = threading.Lock()

    def remaining(self) -> float:
        return self.ends_at - time.monotonic()

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0

    def message(self, phase: str | None = None) -> str:
        return f"total deadline of {self.seconds:g}s passed while {phase or self.cut_while or self.phase}"

    def watch(self, connection: HTTPConnection) -> None:
        """Shut `connection`'s socket down when the deadline passes (requests has no hook per read).

        The socket it holds now is remembered as well as the connection: http.client drops
        `connection.sock` when a response will close the connection, handing the socket to the
        response, which then reads the body from it."""
        with self._lock:
            if connection not in self._watched:
                self._watched.append(connection)
            sock = getattr(connection, "sock", None)
            if sock is not None and sock not in self._sockets:
                self._sockets.append(sock)
            if self._timer is None and not self._closed:
                self._timer = threading.Timer(max(0.0, self.remaining()), self._cut)
                self._timer.daemon = True
                self._timer.start()

    def close(self) -> None:
        with self._lock:  # waits for a cut under way: none reaches a socket after the block ends
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
            self._watched.clear()
            self._sockets.clear()

    def _cut(self) -> None:
        with self._lock:
            if self._closed:
                return
            self.cut_while = self.phase
            for sock in self._sockets + [c.sock for c in self._watched if getattr(c, "sock", None) is not None]:
                try:
                    # shutdown, not close: it wakes a recv blocked in another thread, and the owner
                    # still closes the file descriptor itself (closing here could hit a reused fd).
                    # socket.socket's own shutdown even for a TLS socket: SSLSocket.shutdown would
                    # also drop its TLS state under the thread that is reading through it.
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
                except OSError:
                    pass  # already closed, or never connected


@contextmanager
def total_deadline(seconds: float) -> Iterator[Deadline]:
    """Every HTTP call this thread makes inside the block, through deadline_transport() or
    DeadlineAdapter(), ends within `seconds` of entering it (or an outer block's end, if sooner)."""
    outer = current_deadline()
    ends_at = time.monotonic() + seconds
    if outer is not None and outer.ends_at < ends_at:
        ends_at, seconds = outer.ends_at, outer.seconds  # the outer limit is the one that cuts
    deadline = Deadline(seconds, ends_at)
    stack = _stack()
    stack.append(deadline)
    try:
        yield deadline
    finally:
        stack.remove(deadline)
        deadline.close()


def current_deadline() -> Deadline | None:
    """The innermost deadline of this thread's open blocks (always the soonest), or None."""
    stack = _stack()
    return stack[-1] if stack else None


def _stack() -> list[Deadline]:
    if not hasattr(_local, "stack"):
        _local.stack = []
    return _local.stack


_HTTPX_HALF = frozenset({"DeadlineTransport", "deadline_transport", "install_network_backend"})


def __getattr__(name: str):
    # The requests half (bridge/deadline_requests.py) loads requests and urllib3 (~15 MB): only a
    # publisher that uses requests (tweepy for X, Mastodon.py) needs it, so it loads on first use.
    # The httpx half (bridge/deadline_httpx.py) likewise: the sources' requests and photos go over
    # http.client (sources/http11.py), so only the httpx publishers load httpx.
    if name == "DeadlineAdapter":
        from bridge.deadline_requests import DeadlineAdapter

        return DeadlineAdapter
    if name in _HTTPX_HALF:
        from bridge import deadline_httpx

        return getattr(deadline_httpx, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
