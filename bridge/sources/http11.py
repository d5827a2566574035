"""One HTTP/1.1 request hop on the standard library's http.client, with kept-alive connections and
the thread's total deadline (bridge.deadline) clamping every socket operation.

Why not httpx for the sources' own requests: a warm poll is one conditional GET answered 304, and
httpx spends ~0.4-0.6 ms of CPU on one (request model, connection pool scan, h11), about what the
whole poll may cost (issue 12's goal: 0.5 ms a source); http.client spends ~0.1 ms on a kept-alive
connection. bridge.sources.fetch keeps every rule (deadline, size cap, redirects, validators, error
classification) and calls this for each hop; httpx stays for image downloads and the publishers.

Connections are kept idle per (scheme, host, port) for KEEP_IDLE, longer than a poll interval, so
a source polled every interval reuses its TCP (and TLS) connection; one request at a time per
host (sources/polite.py) means one idle connection per host is enough. A kept connection the
server has closed meanwhile is noticed before use (a peek) or, in a race, on its first read: the
request is then sent once more on a new connection (a GET, never a body).
"""

from __future__ import annotations

import http.client
import io
import resource
import socket
import ssl
import threading
import time
from urllib.parse import quote, urlsplit

from bridge.deadline import CONNECTING, READING, SENDING, WAITING, current_deadline

KEEP_IDLE = 15 * 60.0
"""Seconds an idle connection is kept: above the usual poll intervals (5 min by default), so a
warm poll reuses it when the server keeps it that long (nginx's default is 75 s, Apache's 5 s)."""
MAX_IDLE = max(16, resource.getrlimit(resource.RLIMIT_NOFILE)[0] // 4)
"""Idle connections kept at most: a quarter of the file descriptors (the unit's LimitNOFILE=1024
gives 256); past it a finished connection is closed, not kept, so the others stay reusable."""
_READ_BUFFER = 64 * 1024
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)
"""How a reused connection the server closed meanwhile fails before any answer."""


class ConnectFailed(Exception):
    """No connection was made (name, refused, TLS handshake): `__cause__` says why."""


class UnsupportedURL(ValueError):
    pass


def _clamp(sock: socket.socket, timeout: float | None, phase: str) -> None:
    """Give the next blocking call on `sock` at most the time left before the thread's deadline."""
    deadline = current_deadline()
    if deadline is not None:
        deadline.phase = phase
        left = deadline.remaining()
        if left <= 0:
            raise TimeoutError(deadline.message())
        timeout = left if timeout is None else min(timeout, left)
    sock.settimeout(timeout)


class _ClampedReader(io.RawIOBase):
    """The response side of a connection: each recv waits only the time left."""

    def __init__(self, sock: socket.socket, timeout: float | None):
        # The socket's own unbuffered file: it holds a reference, so the socket stays open while a
        # response is read from it even after http.client closed the connection (Connection: close).
        self._raw = sock.makefile("rb", buffering=0)
        self._sock, self._timeout = sock, timeout

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        deadline = current_deadline()
        phase = READING if deadline is not None and deadline.headers_received else WAITING
        _clamp(self._sock, self._timeout, phase)
        return self._raw.readinto(buffer)

    def close(self) -> None:
        self._raw.close()
        super().close()


class _ClampedSocket:
    """What http.client sees as its socket: sends and reads clamped to the deadline."""

    def __init__(self, sock: socket.socket, timeout: float | None):
        self._sock, self._timeout = sock, timeout

    def sendall(self, data) -> None:
        _clamp(self._sock, self._timeout, SENDING)
        self._sock.sendall(data)  # since Python 3.5 the timeout bounds the whole sendall

    def makefile(self, mode: str, *args, **kwargs):
        return io.BufferedReader(_ClampedReader(self._sock, self._timeout), _READ_BUFFER)

    def closed_by_peer(self) -> bool:
        """True when the server has closed the idle connection (a peek, never waiting): a reused
        connection would otherwise fail on its first read."""
        try:
            self._sock.settimeout(0)  # the next clamped call sets its own timeout again
            # The raw socket's peek even under TLS: an end of stream is an end of stream.
            data = socket.socket.recv(self._sock, 1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True
        # Bytes on an idle plain connection are junk to drop with it; under TLS they may be a
        # session ticket, and a close_notify is caught by the retry on a new connection.
        return not data or not isinstance(self._sock, ssl.SSLSocket)

    def close(self) -> None:
        self._sock.close()

    def __getattr__(self, name):
        return getattr(self._sock, name)


class _Connection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, *, connect_timeout: float, read_timeout: float | None,
                 context: ssl.SSLContext | None):
        super().__init__(host, port, timeout=read_timeout)
        self._connect_timeout, self._read_timeout, self._context = connect_timeout, read_timeout, context
        self.idle_since = 0.0

    def connect(self) -> None:
        sock = None
        try:
            deadline = current_deadline()
            timeout = self._connect_timeout
            if deadline is not None:
                deadline.phase = CONNECTING
                left = deadline.remaining()
                if left <= 0:
                    raise TimeoutError(deadline.message())
                timeout = min(timeout, left)
            sock = socket.create_connection((self.host, self.port), timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._context is not None:
                _clamp(sock, self._connect_timeout, CONNECTING)
                sock = self._context.wrap_socket(sock, server_hostname=self.host)
        except TimeoutError:
            if sock is not None:
                sock.close()
            raise
        except (OSError, ssl.SSLError, UnicodeError) as exc:
            if sock is not None:
                sock.close()
            raise ConnectFailed(str(exc) or type(exc).__name__) from exc
        self.sock = _ClampedSocket(sock, self._read_timeout)


class Answer:
    """One hop's answer: status line and headers read, body not yet."""

    def __init__(self, pool: ConnectionPool, key, connection: _Connection, response: http.client.HTTPResponse):
        self._pool, self._key, self._connection, self._response = pool, key, connection, response
        self.status = response.status
        self.reason = response.reason
        self.headers: dict[str, str] = {}
        for name, value in response.getheaders():
            name = name.lower()
            self.headers[name] = f"{self.headers[name]}, {value}" if name in self.headers else value
        self._done = False

    def iter_raw(self):
        """The body as it arrives (chunked framing removed, Content-Encoding not), one recv at most each."""
        while chunk := self._response.read1(_READ_BUFFER):
            yield chunk
        self._done = True

    def close(self) -> None:
        """Keep the connection when the whole answer was read and the server keeps it; else close it."""
        if self._connection is None:
            return
        connection, self._connection = self._connection, None
        if self.status == 304 or self.status == 204 or self._done:
            self._response.read()  # nothing left: marks the response closed for http.client
            if not self._response.will_close:
                self._pool.release(self._key, connection)
                return
        connection.close()


class ConnectionPool:
    """Idle connections by (scheme, host, port), at most one each, thread-safe."""

    def __init__(self, *, keep_idle: float = KEEP_IDLE, max_idle: int = MAX_IDLE,
                 context: ssl.SSLContext | None = None, monotonic=time.monotonic):
        self.keep_idle, self.max_idle, self._monotonic = keep_idle, max_idle, monotonic
        self._context = context
        self._idle: dict[tuple[str, str, int], _Connection] = {}
        self._lock = threading.Lock()
        self._swept = monotonic()
        self._closed = False

    def context(self) -> ssl.SSLContext:
        if self._context is None:  # built on the first https request: most warm polls never need it
            self._context = _default_context()
        return self._context

    def request(self, url: str, headers: dict[str, str], *, connect_timeout: float,
                read_timeout: float | None) -> Answer:
        """Send GET `url`; return once the status line and headers are in. Raises ConnectFailed,
        TimeoutError, http.client.HTTPException, OSError, UnsupportedURL."""
        scheme, host, port, target = split(url)
        key = (scheme, host, port)
        connection = self._take(key)
        reused = connection is not None
        if connection is None:
            connection = self._new(scheme, host, port, connect_timeout, read_timeout)
        try:
            return Answer(self, key, connection, _send(connection, target, headers))
        except _STALE:
            connection.close()
            if not reused:
                raise
        except BaseException:
            connection.close()
            raise
        connection = self._new(scheme, host, port, connect_timeout, read_timeout)
        try:
            return Answer(self, key, connection, _send(connection, target, headers))
        except BaseException:
            connection.close()
            raise

    def _new(self, scheme, host, port, connect_timeout, read_timeout) -> _Connection:
        context = self.context() if scheme == "https" else None
        return _Connection(host, port, connect_timeout=connect_timeout, read_timeout=read_timeout, context=context)

    def _take(self, key) -> _Connection | None:
        with self._lock:
            connection = self._idle.pop(key, None)
        if connection is None:
            return None
        if self._monotonic() - connection.idle_since > self.keep_idle or connection.sock is None \
                or connection.sock.closed_by_peer():
            connection.close()
            return None
        return connection

    def release(self, key, connection: _Connection) -> None:
        now = self._monotonic()
        connection.idle_since = now
        with self._lock:
            # A pool closed meanwhile (a reload retired its client) keeps nothing more.
            kept = not self._closed and key not in self._idle and len(self._idle) < self.max_idle
            if kept:
                self._idle[key] = connection
            expired = []
            if now - self._swept > 60:  # idle connections of sources no longer polled: give the fds back
                self._swept = now
                expired = [k for k, c in self._idle.items() if now - c.idle_since > self.keep_idle]
                expired = [self._idle.pop(k) for k in expired]
        if not kept:
            connection.close()
        for old in expired:
            old.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = list(self._idle.values()), {}
        for connection in idle:
            connection.close()


def _send(connection: _Connection, target: str, headers: dict[str, str]) -> http.client.HTTPResponse:
    connection.request("GET", target, headers=headers)
    deadline = current_deadline()
    if deadline is not None:
        deadline.headers_received = False
    response = connection.getresponse()
    if deadline is not None:
        deadline.headers_received = True
    return response


def split(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, request target) of an http(s) URL; UnsupportedURL or ValueError if not one."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UnsupportedURL(f"Request URL has an unsupported protocol '{scheme}://'." if scheme
                             else f"Request URL is missing an 'http://' or 'https://' protocol: {url}")
    host = parts.hostname
    if not host:
        raise ValueError(f"no host in {url!r}")
    port = parts.port or (443 if scheme == "https" else 80)
    # Non-ASCII and spaces are percent-encoded as a browser (and httpx) would; '%' already there stays.
    target = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
    if parts.query:
        target += "?" + quote(parts.query, safe="/%:@!$&'()*+,;=-._~?")
    return scheme, host, port, target


def _default_context() -> ssl.SSLContext:
    # certifi's roots, as httpx used: a site that verified before still verifies.
    try:
        import certifi

        context = ssl.create_default_context(cafile=certifi.where())
    except ImportError:
        context = ssl.create_default_context()
    context.set_alpn_protocols(["http/1.1"])
    return context
