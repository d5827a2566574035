"""The httpx half of bridge/deadline.py: an httpx transport whose network backend clamps every
socket operation to the thread's total_deadline (Telegram, the Graph API, Bluesky through atproto).
Its own module because only those publishers use httpx: the sources' requests and photos go over
http.client (sources/http11.py), so a daemon that posts to none of them never imports httpx,
httpcore or anyio (see deadline.py for how the deadline works)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import httpcore
import httpx

from bridge.deadline import CONNECTING, READING, SENDING, WAITING, current_deadline


# --- httpx: a network backend that clamps each socket operation ------------------------------

_WRITE_PIECE = 16 * 1024
"""Bytes written per clamped call: small enough to take one send() each against a slow reader."""


def _clamp(timeout: float | None, phase: str, exc_type: type[Exception]) -> float | None:
    deadline = current_deadline()
    if deadline is None:
        return timeout
    deadline.phase = phase
    left = deadline.remaining()
    if left <= 0:
        raise exc_type(deadline.message())
    return left if timeout is None else min(timeout, left)


@contextmanager
def _explained(exc_type: type[Exception]) -> Iterator[None]:
    # A socket timeout caused by the clamp says only "timed out": say that the total deadline did it.
    try:
        yield
    except httpcore.TimeoutException as exc:
        deadline = current_deadline()
        if deadline is not None and deadline.expired:
            raise exc_type(deadline.message()) from exc
        raise


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream):
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        deadline = current_deadline()
        phase = READING if deadline is not None and deadline.headers_received else WAITING
        with _explained(httpcore.ReadTimeout):
            return self._stream.read(max_bytes, _clamp(timeout, phase, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        # In pieces, each clamped anew: httpcore sends one buffer in as many send() calls as a
        # slow reader needs, each allowed the whole timeout given at the start.
        for start in range(0, max(len(buffer), 1), _WRITE_PIECE):
            with _explained(httpcore.WriteTimeout):
                self._stream.write(buffer[start:start + _WRITE_PIECE], _clamp(timeout, SENDING, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        with _explained(httpcore.ConnectTimeout):
            return _DeadlineStream(self._stream.start_tls(
                ssl_context, server_hostname, _clamp(timeout, CONNECTING, httpcore.ConnectTimeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, backend: httpcore.NetworkBackend):
        self._backend = backend

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None, socket_options=None) -> httpcore.NetworkStream:
        with _explained(httpcore.ConnectTimeout):
            return _DeadlineStream(self._backend.connect_tcp(
                host, port, _clamp(timeout, CONNECTING, httpcore.ConnectTimeout), local_address, socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options=None) -> httpcore.NetworkStream:
        with _explained(httpcore.ConnectTimeout):
            return _DeadlineStream(self._backend.connect_unix_socket(
                path, _clamp(timeout, CONNECTING, httpcore.ConnectTimeout), socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class DeadlineTransport(httpx.HTTPTransport):
    """httpx.HTTPTransport (same arguments) whose calls obey the thread's total_deadline."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        install_network_backend(self)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        deadline = current_deadline()
        if deadline is not None:
            deadline.headers_received = False  # a new hop (a redirect) waits for headers again
        response = super().handle_request(request)
        if deadline is not None:
            deadline.headers_received = True
        return response


def deadline_transport(**kwargs: Any) -> DeadlineTransport:
    """An httpx transport for `httpx.Client(transport=...)`; kwargs as for httpx.HTTPTransport."""
    return DeadlineTransport(**kwargs)


def install_network_backend(transport: httpx.HTTPTransport) -> None:
    """Wrap the network backend of `transport`'s connection pool in the deadline's clamp.

    httpx 0.28 offers no public way to give HTTPTransport an httpcore network backend, so this is
    the one place that touches private names: the transport's `_pool` (an httpcore connection
    pool or proxy) and the pool's `_network_backend`, which it hands to every connection it opens.
    If httpx or httpcore rename them, this raises at construction instead of silently losing the
    deadline (tests/test_deadline.py checks it against the installed versions).
    """
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if not isinstance(backend, httpcore.NetworkBackend):
        raise RuntimeError(f"httpx {httpx.__version__} / httpcore {httpcore.__version__}: cannot find the "
                           "transport's network backend; bridge/deadline_httpx.py must be updated")
    if not isinstance(backend, _DeadlineBackend):
        pool._network_backend = _DeadlineBackend(backend)
