"""The optional health endpoint ([bridge] health_listen): /healthz for probes, /metrics for Prometheus,
and the PR office's page (`/`, `/story/{id}`: bridge/dashboard renders it; only routed here).

A stdlib HTTP server in a daemon thread, bound only to the configured address. It reads; it never
changes anything, so a scrape cannot disturb the daemon beyond a few short database reads.
"""

from __future__ import annotations

import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from bridge.config import parse_listen_address

log = structlog.get_logger("bridge")

HealthCheck = Callable[[], "tuple[bool, str]"]
"""Returns (healthy, reason in words)."""
PageSource = Callable[[], tuple]
"""Returns (repository, config, now) as the daemon has them at this moment (they change on reload)."""
STORY_PATH = re.compile(r"/story/([0-9]{1,18})")

REQUEST_TIMEOUT_SECONDS = 10
"""A client that connects and sends nothing is dropped after this long, freeing its thread."""
SHUTDOWN_POLL_SECONDS = 0.5
"""How often serve_forever looks for a shutdown request: the longest close() waits."""


class HealthServer:
    def __init__(self, listen: str, check: HealthCheck, registry: CollectorRegistry,
                 pages: PageSource | None = None):
        host, port = parse_listen_address(listen)
        server_class = _IPv6Server if ":" in host else _Server
        # Raises OSError (address in use, not ours to bind): the caller reports it in words.
        self._server = server_class((host, port), _handler(check, registry, pages, host))
        self._server.daemon_threads = True
        self.address = f"{host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="health",
                                        kwargs={"poll_interval": SHUTDOWN_POLL_SECONDS}, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        """socketserver prints a traceback to stderr; a probe that hung up early needs no word, and
        anything else gets one line in the log."""
        import sys

        error = sys.exc_info()[1]
        if isinstance(error, (BrokenPipeError, ConnectionResetError, TimeoutError)):
            return
        log.warning("health request failed", client=client_address[0],
                    error=" ".join(f"{type(error).__name__}: {error}".split()))
        log.debug("health request traceback", exc_info=True)


class _IPv6Server(_Server):
    address_family = socket.AF_INET6


def _handler(check: HealthCheck, registry: CollectorRegistry, pages: PageSource | None,
             host: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = REQUEST_TIMEOUT_SECONDS
        server_version = "bridge"
        sys_version = ""

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                healthy, reason = check()
                self._reply(200 if healthy else 503, "text/plain; charset=utf-8", (reason + "\n").encode())
            elif path == "/metrics":
                self._reply(200, CONTENT_TYPE_LATEST, generate_latest(registry))
            elif pages is not None:
                self._page(path)
            else:
                self._reply(404, "text/plain; charset=utf-8", b"not found: try /healthz or /metrics\n")

        def _page(self, path: str) -> None:
            from bridge import dashboard  # the page's modules load on its first request, not with /healthz

            repo, config, now = pages()
            refused = dashboard.refusal(host, config.bridge.dashboard_token, self.headers.get("Authorization"))
            story = STORY_PATH.fullmatch(path)
            if refused:
                status, headers, body = refused
            elif path == "/":
                status, headers, body = dashboard.overview_page(repo, config, now)
            elif story:
                status, headers, body = dashboard.story_page(repo, config, int(story.group(1)))
            else:
                status, headers, body = dashboard.not_found_page(config)
            self._reply(status, headers.pop("Content-Type"), body, headers)

        def _reply(self, status: int, content_type: str, body: bytes, headers: dict | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:
            # Probes every few seconds would drown the journal; errors surface through /healthz.
            pass

    return Handler
