"""bridge.sources.fetch keeps a host's connection alive between polls (sources/http11.py), against
a real keep-alive HTTP/1.1 server on 127.0.0.1."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bridge.sources.fetch import FetchLimits, fetch, make_client

LIMITS = FetchLimits(connect_timeout=10, total_timeout=10, max_body_bytes=1024 * 1024, max_redirects=5)
ETAG = '"v1"'
BODY = b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>'


class KeepAliveServer:
    """Answers /rss with an ETag (304 when it matches), keeps connections open, and records which
    client port each request came from, so a test sees whether a connection was reused."""

    def __init__(self) -> None:
        self.ports: list[int] = []
        self.handlers: list[BaseHTTPRequestHandler] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                server.ports.append(self.client_address[1])
                server.handlers.append(self)
                if self.headers.get("If-None-Match") == ETAG:
                    self.send_response(304)
                    self.send_header("ETag", ETAG)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("ETag", ETAG)
                self.send_header("Content-Length", str(len(BODY)))
                if self.path == "/closing":
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(BODY)

            def log_message(self, format: str, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}{path}"

    def drop_connections(self) -> None:
        """Close every connection from the server's side, as a server's idle timeout does."""
        for handler in self.handlers:
            handler.close_connection = True
            try:
                handler.connection.shutdown(2)
            except OSError:
                pass

    def close(self) -> None:
        self.drop_connections()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = KeepAliveServer()
    yield s
    s.close()


class TestKeptAlive:
    def test_a_304_reuses_the_connection_of_the_last_poll(self, server):
        """The conditional GET of the next poll goes over the same TCP connection and gets its 304."""
        with make_client(LIMITS) as client:
            first = fetch(client, server.url("/rss"), LIMITS)
            second = fetch(client, server.url("/rss"), LIMITS, etag=first.etag)
        assert (first.status, first.body, second.status, second.not_modified) == (200, BODY, 304, True)
        assert second.etag == ETAG
        assert len(server.ports) == 2 and server.ports[0] == server.ports[1]

    def test_a_connection_the_server_closed_is_replaced(self, server):
        """When the server closed the idle connection meanwhile, the poll still succeeds on a new one."""
        with make_client(LIMITS) as client:
            fetch(client, server.url("/rss"), LIMITS)
            server.drop_connections()
            again = fetch(client, server.url("/rss"), LIMITS, etag=ETAG)
        assert again.not_modified
        assert len(server.ports) == 2 and server.ports[0] != server.ports[1]

    def test_connection_close_is_not_reused(self, server):
        """An answer with "Connection: close" leaves no connection behind to reuse."""
        with make_client(LIMITS) as client:
            fetch(client, server.url("/closing"), LIMITS)
            fetch(client, server.url("/closing"), LIMITS)
            assert client.connections._idle == {}
        assert len(server.ports) == 2 and server.ports[0] != server.ports[1]

    def test_close_gives_the_connections_back(self, server):
        """Closing the client closes its idle connections."""
        client = make_client(LIMITS)
        fetch(client, server.url("/rss"), LIMITS)
        idle = list(client.connections._idle.values())
        assert len(idle) == 1
        client.close()
        assert idle[0].sock is None

    def test_a_closed_client_keeps_no_connection(self, server):
        """A fetch that ends after its client was closed (a reload retired it) leaves nothing open."""
        client = make_client(LIMITS)
        client.close()
        fetch(client, server.url("/rss"), LIMITS)
        assert client.connections._idle == {}
