"""Politeness towards the sites we read: one request at a time per host, spaced by a delay.

A listing page can name a dozen new stories; fetching all their pages at once would look like an
attack to a ministry's server. Follow-up requests (story pages, next listing pages, an advertised
feed) wait their turn per host and keep `delay` after the previous request there ended. A source's
own scheduled fetch takes the host's turn too but does not wait for the delay: polls are already
spaced by their interval.

A scheduled poll also asks for its host's poll slot first, without waiting (poll_slot): twelve
sources on one slow site would otherwise fill every worker of the daemon's pool waiting for that
site's turn, and a source on another site would wait with them. A poll that finds its host busy
gives its worker back and is tried again shortly (bridge.daemon).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from urllib.parse import urlsplit


class HostPacer:
    """Per-host lock and spacing. `sleep` and `monotonic` are injectable so tests never wait."""

    def __init__(self, delay: float, *, sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic):
        self.delay = delay
        self._sleep, self._monotonic = sleep, monotonic
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._last_end: dict[str, float] = {}
        self._polling: set[str] = set()

    @contextmanager
    def poll_slot(self, url: str) -> Iterator[bool]:
        """Never waits: yields True when no other poll reads `url`'s host now (the slot is then this
        caller's until the block ends), False when one does (poll later)."""
        host = host_of(url)
        with self._guard:
            mine = host not in self._polling
            self._polling.add(host)
        try:
            yield mine
        finally:
            if mine:
                with self._guard:
                    self._polling.discard(host)

    @contextmanager
    def turn(self, url: str, *, polite: bool = True) -> Iterator[Turn]:
        """Hold `url`'s host for one request; with `polite`, first wait out the delay. A request
        that never reached the host (Turn.reached set False: no connection was made) does not make
        the next one wait: the delay spares the site's server, which saw nothing."""
        host = host_of(url)
        with self._guard:
            lock = self._locks.setdefault(host, threading.Lock())
        with lock:
            if polite and host in self._last_end:
                wait = self._last_end[host] + self.delay - self._monotonic()
                if wait > 0:
                    self._sleep(wait)
            turn = Turn()
            try:
                yield turn
            finally:
                if turn.reached:
                    self._last_end[host] = self._monotonic()


class Turn:
    """One request's turn at a host; `reached` False when the request never got to it."""

    def __init__(self) -> None:
        self.reached = True


class PoliteFetcher:
    """fetch() with the source's limits, taking the host's turn first: what the readers call."""

    def __init__(self, client, limits, pacer: HostPacer):
        self.client, self.limits, self.pacer = client, limits, pacer

    def get(self, url: str, *, polite: bool = True, etag: str | None = None, last_modified: str | None = None,
            headers: tuple[tuple[str, str], ...] = ()):
        """`headers`: the source's own (user_agent, headers in settings.toml)."""
        from bridge.errors import FetchError
        from bridge.sources.fetch import NEVER_CONNECTED, fetch

        with self.pacer.turn(url, polite=polite) as turn:
            try:
                return fetch(self.client, url, self.limits, etag=etag, last_modified=last_modified,
                             extra_headers=headers)
            except FetchError as exc:
                turn.reached = not exc.reason.startswith(NEVER_CONNECTED)
                raise


@lru_cache(maxsize=16384)  # asked twice a poll for the same few thousand URLs; urlsplit is not free
def host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()
