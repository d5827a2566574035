"""Fetch a source over HTTP with hard limits: time, decoded size, redirects.

feedparser's own fetcher has no timeout and no size cap, so every byte we read comes through here.
Redirects are followed by hand so the deadline spans every hop and a redirect's body is never read;
gzip/deflate are decoded by hand so the size cap applies to the decoded body while it streams
(a 10 KB gzip bomb is stopped after `max_body_bytes`, not after it has filled memory).

The requests go over the standard library's http.client with a kept-alive connection per host
(sources/http11.py: a warm poll's 304 costs a fraction of httpx's CPU). The total deadline is
bridge.deadline's: every socket connect, write and read is clamped to the time left, so a server
trickling its headers or its body a byte at a time is cut at `total_timeout`, and the reason says
where ("timed out after 20s waiting for the response headers").
"""

from __future__ import annotations

import http.client
import time
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Iterator
from urllib.parse import urljoin, urlsplit

from bridge import __version__
from bridge.deadline import CONNECTING, READING, SENDING, total_deadline
from bridge.errors import FetchError
from bridge.sources import http11

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Only what we can decode with a bounded output; brotli/zstd would need extra packages.
_ACCEPT_ENCODING = "gzip, deflate"
_GZIP_MAGIC = b"\x1f\x8b"
_FOLLOWING = "following redirects"


@dataclass(frozen=True)
class FetchLimits:
    """Every limit a fetch obeys; one instance per source, built from settings."""

    connect_timeout: float = 10.0
    """Seconds to open the TCP (and TLS) connection."""
    total_timeout: float = 20.0
    """Seconds for the whole request, every redirect hop and the body included."""
    max_body_bytes: int = 10 * 1024 * 1024
    """Cap on the decoded body, checked while streaming."""
    max_redirects: int = 5
    user_agent: str = f"bridge/{__version__} (+https://github.com/kemenpora/bridge)"


@dataclass(frozen=True)
class FetchResult:
    """One successful response (2xx, or 304 to a conditional request)."""

    url: str
    """The final URL after redirects."""
    status: int
    not_modified: bool
    """True on 304; the body is then b""."""
    body: bytes
    """Decoded body (Content-Encoding removed); `headers` are as the server sent them."""
    headers: dict[str, str]
    """Lower-case names; repeated headers joined with ", "."""
    etag: str | None
    last_modified: str | None


class HTTPStatusError(FetchError):
    """The server answered 4xx/5xx. `retry_after_seconds` is set when it said when to come back."""

    def __init__(self, url: str, reason: str, status: int, retry_after_seconds: float | None = None):
        self.status = status
        self.retry_after_seconds = retry_after_seconds
        super().__init__(url, reason)


class FetchClient:
    """The shared client: the kept-alive http.client connections (sources/http11.py) that `fetch`
    sends every request on (sources and photos). Not an httpx.Client (it was one, which nothing
    used): a daemon whose publishers need no httpx then loads none (httpx, httpcore, anyio, h11,
    and the SSL context an httpx.Client builds at once, certifi's roots loaded)."""

    def __init__(self):
        self.connections = http11.ConnectionPool()
        self.is_closed = False
        """True once closed (a reload retires a runtime's client after its last job)."""

    def close(self) -> None:
        self.is_closed = True
        self.connections.close()

    def __enter__(self) -> FetchClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def make_client(limits: FetchLimits) -> FetchClient:
    """Build the one shared client. `fetch` takes its timeouts, redirects and headers from the
    limits of each call; the total deadline (bridge.deadline) makes `total_timeout` a hard limit."""
    return FetchClient()


def fetch(
    client: FetchClient,
    url: str,
    limits: FetchLimits,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    extra_headers: tuple[tuple[str, str], ...] = (),
) -> FetchResult:
    """GET `url` within `limits`, conditionally when `etag`/`last_modified` are given, with the
    source's own `extra_headers` (its User-Agent replaces ours; the validators stay ours).

    Returns a FetchResult for 2xx and 304; raises FetchError (HTTPStatusError for 4xx/5xx).
    """
    headers = {"User-Agent": limits.user_agent, "Accept-Encoding": _ACCEPT_ENCODING}
    headers.update(dict(extra_headers))
    if any(name.lower() == "user-agent" and name != "User-Agent" for name in headers):
        del headers["User-Agent"]  # the source's own, in its own spelling, replaces ours
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    return _fetch_http11(client.connections, url, limits, headers, etag, last_modified)


def _fetch_http11(connections: http11.ConnectionPool, url: str, limits: FetchLimits, headers: dict[str, str],
                  etag: str | None, last_modified: str | None) -> FetchResult:
    """fetch() over sources/http11.py, each failure given the reason operators know (httpx's names,
    which the sources' requests used before: alerts and notes quote them)."""
    headers = {"Accept": "*/*", **headers}
    with total_deadline(limits.total_timeout) as total:
        try:
            return _follow(connections, url, limits, headers, total.ends_at, etag, last_modified)
        except FetchError:
            raise
        except TimeoutError as exc:
            if total.expired:  # the total deadline cut it: say where
                raise FetchError(url, f"timed out after {limits.total_timeout:g}s {total.phase}") from exc
            if total.phase == CONNECTING:
                raise FetchError(url, f"timed out after {limits.connect_timeout:g}s {CONNECTING}") from exc
            raise FetchError(url, f"timed out after {limits.total_timeout:g}s") from exc
        except http11.ConnectFailed as exc:
            raise FetchError(url, f"{NEVER_CONNECTED}: {_describe(exc)}") from exc
        except http11.UnsupportedURL as exc:
            raise FetchError(url, f"unsupported URL: {_describe(exc)}") from exc
        except http.client.HTTPException as exc:
            # A status line that is not HTTP, a body cut short, a header line too long: the server
            # broke HTTP (httpx's name for it, which operators' notes and alerts already use).
            raise FetchError(url, f"RemoteProtocolError: {_describe(exc)}") from exc
        except OSError as exc:
            kind = "WriteError" if total.phase == SENDING else "ReadError"
            raise FetchError(url, f"{kind}: {_describe(exc)}") from exc
        except (ValueError, UnicodeError) as exc:  # a URL that cannot be parsed or encoded
            raise FetchError(url, f"InvalidURL: {_describe(exc)}") from exc


def _follow(connections, url, limits, headers, deadline, etag, last_modified) -> FetchResult:
    current = url
    for hop in range(limits.max_redirects + 1):
        remaining = _remaining(deadline, url, limits, _FOLLOWING if hop else CONNECTING)
        answer = connections.request(current, headers, connect_timeout=min(limits.connect_timeout, remaining),
                                     read_timeout=remaining)
        try:
            location = answer.headers.get("location") if answer.status in _REDIRECT_STATUSES else None
            target = _redirect_target(current, location) if location else None
            if target is not None:  # the redirect's body is never read
                headers = _redirect_headers(headers, current, target)
                current = target
                continue
            return _result(answer, current, url, limits, deadline, etag, last_modified)
        finally:
            answer.close()
    raise FetchError(url, f"too many redirects (more than {limits.max_redirects})")


def _redirect_target(current: str, location: str) -> str | None:
    """Where a Location sends us, or None when it is not an http(s) URL we can follow."""
    try:
        target = urljoin(current, location.strip())
        http11.split(target)
    except ValueError:
        return None
    return target


def _redirect_headers(headers: dict[str, str], current: str, target: str) -> dict[str, str]:
    # As httpx did: a source's Cookie only on its first hop; Authorization only to the same
    # origin (or the same host moving to https).
    before, after = urlsplit(current), urlsplit(target)
    same_origin = (before.scheme, before.hostname, before.port) == (after.scheme, after.hostname, after.port)
    to_https = (before.scheme == "http" and after.scheme == "https" and before.hostname == after.hostname
                and before.port in (None, 80) and after.port in (None, 443))
    return {name: value for name, value in headers.items()
            if name.lower() != "cookie" and (same_origin or to_https or name.lower() != "authorization")}


def _result(answer, final_url, url, limits, deadline, etag, last_modified) -> FetchResult:
    status, headers = answer.status, answer.headers
    if status == 304:
        # Keep the caller's validators when a 304 omits them, so the next request stays conditional.
        return FetchResult(final_url, status, True, b"", headers, headers.get("etag") or etag,
                           headers.get("last-modified") or last_modified)
    if status >= 300:
        raise _status_error(url, status, answer.reason, headers)
    body = _read_body(answer.iter_raw(), headers, url, limits, deadline)
    return FetchResult(final_url, status, False, body, headers, headers.get("etag"), headers.get("last-modified"))


NEVER_CONNECTED = "could not connect"
"""How a FetchError's reason starts when no connection was made (DNS, refused, connect timeout):
the site saw nothing, so its politeness delay does not apply (sources/polite.py)."""


def _status_error(url: str, status: int, reason_phrase: str | None, headers: dict[str, str]) -> HTTPStatusError:
    """The error for an answer that is neither 2xx nor 304 (a redirect here had no usable Location)."""
    phrase = reason_phrase or _standard_phrase(status)
    retry_after = _retry_after_seconds(headers) if status in (429, 503) else None
    reason = f"HTTP {status} {phrase}".rstrip()
    if 300 <= status < 400:
        reason += " without a usable Location"
    return HTTPStatusError(url, reason, status, retry_after)


def _read_body(chunks: Iterator[bytes], headers, url, limits, deadline) -> bytes:
    cap = limits.max_body_bytes
    encoding = headers.get("content-encoding", "identity").strip().lower()
    decoder = _decoder(encoding, url)
    if decoder is None and _declared_length(headers) > cap:
        raise FetchError(url, f"body larger than {cap} bytes")  # fail before reading a byte
    parts: list[bytes] = []
    size = 0
    try:
        for raw in chunks:
            # iter_raw() (httpx's without a chunk size, or http11's) yields as bytes arrive (a
            # chunk size would buffer until it fills), so a server trickling bytes is cut off here.
            _remaining(deadline, url, limits)
            for piece in decoder.feed(raw, cap - size + 1) if decoder else (raw,):
                size += len(piece)
                if size > cap:
                    raise FetchError(url, f"body larger than {cap} bytes")
                parts.append(piece)
                _remaining(deadline, url, limits)
    except _DecodeError as exc:
        raise FetchError(url, f"could not decode {encoding} body: {exc}") from exc
    return b"".join(parts)


class _BoundedDecoder:
    """gzip/deflate decoding whose output per call never exceeds the budget left under the cap."""

    def __init__(self, wbits: int, *, sniff_raw_deflate: bool = False):
        self._wbits = wbits
        self._sniff = sniff_raw_deflate
        self._z = zlib.decompressobj(wbits)
        self._done = False

    def feed(self, data: bytes, budget: int) -> Iterator[bytes]:
        if self._sniff:
            self._sniff = False
            if not _looks_like_zlib(data):  # "deflate" should be zlib-wrapped; some servers send it raw
                self._wbits = -zlib.MAX_WBITS
                self._z = zlib.decompressobj(self._wbits)
        while data and budget > 0 and not self._done:
            try:
                out = self._z.decompress(data, budget)
            except zlib.error as exc:
                raise _DecodeError(str(exc)) from exc
            budget -= len(out)
            yield out
            data = self._z.unconsumed_tail
            if self._z.eof:
                rest = self._z.unused_data
                if rest.startswith(_GZIP_MAGIC) and self._wbits & 16:  # concatenated gzip members
                    self._z = zlib.decompressobj(self._wbits)
                    data = rest
                else:
                    # Bytes after the end of the stream are junk some servers append: ignore them.
                    self._done = bool(rest)
                    data = b""


class _DecodeError(Exception):
    pass


def _looks_like_zlib(data: bytes) -> bool:
    # RFC 1950 header: compression method 8 and a 16-bit check value divisible by 31.
    if len(data) < 2:
        return True
    return data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0


def _decoder(encoding: str, url: str) -> _BoundedDecoder | None:
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return _BoundedDecoder(zlib.MAX_WBITS | 16)
    if encoding == "deflate":
        return _BoundedDecoder(zlib.MAX_WBITS, sniff_raw_deflate=True)
    raise FetchError(url, f"unsupported Content-Encoding {encoding!r}")


def _remaining(deadline: float, url: str, limits: FetchLimits, phase: str = READING) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise FetchError(url, f"timed out after {limits.total_timeout:g}s {phase}")
    return left


def _declared_length(headers: dict[str, str]) -> int:
    try:
        return int(headers.get("content-length", "0").split(",")[0])
    except ValueError:
        return 0


def _retry_after_seconds(headers: dict[str, str]) -> float | None:
    value = headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():  # "²".isdigit() is True too, and float() refuses it
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    # Measure against the server's own Date header when present: clocks disagree, intervals don't.
    try:
        now = parsedate_to_datetime(headers["date"])
    except (KeyError, TypeError, ValueError, IndexError):
        now = datetime.now(timezone.utc)
    if when.tzinfo is None or now.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


def _standard_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
