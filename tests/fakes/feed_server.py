"""A real HTTP server on 127.0.0.1 that serves feeds the way news sites do, and misbehaves on demand.

Use the `feed_server` fixture (registered for every test module in tests/conftest.py), register
routes, and point the code under test at `server.url(path)`.
Every request is recorded in `request_log` so tests can assert what was sent.
"""

from __future__ import annotations

import gzip
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

# The handler for one request: gets the request, returns nothing, writes through `Reply`.
Handler = Callable[["RecordedRequest", "Reply"], None]


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    """Lower-case names."""


@dataclass
class Route:
    """A static response. Mutable on purpose: `FeedServer.edit` changes it between requests."""

    body: bytes = b""
    content_type: str = "application/rss+xml; charset=utf-8"
    status: int = 200
    etag: str | None = None
    last_modified: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


class Reply:
    """What a handler writes with: status line and headers first, then the body."""

    def __init__(self, handler: BaseHTTPRequestHandler, stop: threading.Event):
        self._handler = handler
        self.stop = stop

    def start(self, status: int, headers: dict[str, str]) -> None:
        self._handler.send_response(status)
        for name, value in headers.items():
            self._handler.send_header(name, value)
        self._handler.end_headers()

    def write(self, data: bytes) -> bool:
        """Send bytes now; False once the client has gone away."""
        try:
            self._handler.wfile.write(data)
            self._handler.wfile.flush()
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False


class FeedServer:
    """A threaded HTTP server on an ephemeral port; stop it with `close()` (the fixture does)."""

    def __init__(self) -> None:
        self.request_log: list[RecordedRequest] = []
        self._routes: dict[str, Route | Handler] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        # A short poll interval: shutdown() waits up to one interval, and every test shuts a server down.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="feed-server", daemon=True
        )
        self._thread.start()

    # -- addresses ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.request_log if r.path == path]

    # -- routes ------------------------------------------------------------------------------

    def add(self, path: str, body: bytes | str = b"", **fields) -> Route:
        """Serve a static body; ETag/Last-Modified enable 304 answers to matching conditional GETs."""
        if isinstance(body, str):
            body = body.encode("utf-8")
        route = Route(body=body, **fields)
        with self._lock:
            self._routes[path] = route
        return route

    def edit(self, path: str, **changes) -> None:
        """Change a static route between requests ("the feed was edited")."""
        with self._lock:
            route = self._routes[path]
            for name, value in changes.items():
                if name == "body" and isinstance(value, str):
                    value = value.encode("utf-8")
                setattr(route, name, value)

    def handle(self, path: str, handler: Handler) -> None:
        """Serve a path with custom code."""
        with self._lock:
            self._routes[path] = handler

    def add_status(self, path: str, status: int, headers: dict[str, str] | None = None) -> Route:
        return self.add(path, f"status {status}\n", content_type="text/plain", status=status, headers=headers or {})

    def add_redirect(self, path: str, location: str, status: int = 302) -> Route:
        return self.add(path, b"", status=status, headers={"Location": location})

    def add_redirect_chain(self, prefix: str, hops: int, final_path: str) -> str:
        """`hops` redirects ending at `final_path`; returns the first path."""
        for i in range(hops):
            target = f"{prefix}/{i + 1}" if i + 1 < hops else final_path
            self.add_redirect(f"{prefix}/{i}", target)
        return f"{prefix}/0"

    def add_slow(self, path: str, chunk: bytes = b"<", interval: float = 0.05, chunks: int = 10_000) -> None:
        """Trickle `chunk` every `interval` seconds: each read succeeds, the whole never ends in time."""

        def trickle(request: RecordedRequest, reply: Reply) -> None:
            reply.start(200, {"Content-Type": "application/rss+xml"})
            for _ in range(chunks):
                if not reply.write(chunk) or reply.stop.wait(interval):
                    return

        self.handle(path, trickle)

    def add_trickling_headers(self, path: str, interval: float = 0.2, chunks: int = 25) -> None:
        """Send the status line and headers one byte every `interval` seconds, then hang up after
        `chunks` bytes: each read succeeds, the headers never end (a client without a total
        deadline fails late instead of hanging the test run)."""
        head = b"HTTP/1.0 200 OK\r\nContent-Type: application/rss+xml\r\nX-Padding: " + b"a" * 1000 + b"\r\n\r\n"

        def trickle(request: RecordedRequest, reply: Reply) -> None:
            for byte in head[:chunks]:
                if not reply.write(bytes([byte])) or reply.stop.wait(interval):
                    return

        self.handle(path, trickle)

    def add_huge(self, path: str, size: int, *, declare_length: bool = True) -> None:
        """Stream `size` bytes without holding them in memory, with or without Content-Length."""

        def huge(request: RecordedRequest, reply: Reply) -> None:
            headers = {"Content-Type": "application/rss+xml"}
            if declare_length:
                headers["Content-Length"] = str(size)
            reply.start(200, headers)
            block = b"x" * 65536
            for start in range(0, size, len(block)):
                if reply.stop.is_set() or not reply.write(block[: size - start]):
                    return

        self.handle(path, huge)

    def add_gzip(self, path: str, body: bytes | str, content_type: str = "application/rss+xml") -> Route:
        if isinstance(body, str):
            body = body.encode("utf-8")
        return self.add(path, gzip.compress(body), content_type=content_type, headers={"Content-Encoding": "gzip"})

    def add_gzip_bomb(self, path: str, decompressed_size: int = 64 * 1024 * 1024) -> Route:
        """A few dozen KB on the wire that inflate to `decompressed_size` bytes of zeros."""
        return self.add(
            path, _gzip_zeros(decompressed_size), content_type="application/rss+xml", headers={"Content-Encoding": "gzip"}
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        self._stop.set()  # releases slow handlers still trickling
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FeedServer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- request handling --------------------------------------------------------------------

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        request = RecordedRequest(
            method=handler.command,
            path=handler.path,
            headers={k.lower(): v for k, v in handler.headers.items()},
        )
        with self._lock:
            self.request_log.append(request)
            route = self._routes.get(handler.path.split("?", 1)[0])
            if isinstance(route, Route):  # snapshot, so an edit mid-response cannot tear it
                route = Route(route.body, route.content_type, route.status, route.etag, route.last_modified, dict(route.headers))
        reply = Reply(handler, self._stop)
        if route is None:
            reply.start(404, {"Content-Type": "text/plain", "Content-Length": "10"})
            reply.write(b"not found\n")
        elif isinstance(route, Route):
            _serve_static(route, request, reply)
        else:
            route(request, reply)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # one request per connection: bodies end when the socket closes

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                server._serve(self)

            do_HEAD = do_GET

            def do_POST(self) -> None:  # noqa: N802
                # Read the request body first: closing with unread bytes would reset the connection.
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server._serve(self)

            def log_message(self, format: str, *args) -> None:  # keep pytest output clean
                pass

        return _Handler


def _serve_static(route: Route, request: RecordedRequest, reply: Reply) -> None:
    validators = {}
    if route.etag:
        validators["ETag"] = route.etag
    if route.last_modified:
        validators["Last-Modified"] = route.last_modified
    if route.status == 200 and _is_fresh(route, request.headers):
        reply.start(304, validators)
        return
    headers = {"Content-Type": route.content_type, "Content-Length": str(len(route.body)), **validators, **route.headers}
    reply.start(route.status, headers)
    if request.method != "HEAD":
        reply.write(route.body)


def _is_fresh(route: Route, headers: dict[str, str]) -> bool:
    # RFC 9110: If-None-Match wins over If-Modified-Since when both are sent.
    if "if-none-match" in headers:
        return route.etag is not None and route.etag in [t.strip() for t in headers["if-none-match"].split(",")]
    if "if-modified-since" in headers:
        return route.last_modified is not None and headers["if-modified-since"] == route.last_modified
    return False


@lru_cache(maxsize=4)
def _gzip_zeros(size: int) -> bytes:
    # Compressed chunk by chunk so building a 64 MB bomb never holds 64 MB.
    compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = bytes(1024 * 1024)
    parts = [compressor.compress(block[: min(len(block), size - done)]) for done in range(0, size, len(block))]
    parts.append(compressor.flush())
    return b"".join(parts)


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    """A running FeedServer, shut down after the test."""
    with FeedServer() as server:
        yield server
