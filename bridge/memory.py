"""The daemon's heap, kept small: fewer glibc malloc arenas, and freed pages given back after polls.

Memory is the daemon's budget (README, "Memory"), and two glibc defaults cost it megabytes:
- glibc gives each thread that meets a busy arena one of its own, up to 8 per core, and the
  daemon has ~20 threads (polls, deliveries, the scheduler, HTTP): each arena keeps half-empty
  pages. `limit_arenas()` sets what MALLOC_ARENA_MAX=2 sets (the systemd unit's Environment=),
  so `bridge run` started by hand, in a container or under another supervisor gets it too;
- a poll of new stories allocates and frees megabytes (the feed's bytes, the items, the SQL),
  and glibc returns a freed page inside its heap only when asked: `Trimmer` calls malloc_trim(0)
  when the polls in flight come back to none, which is the end of a cycle of them.

Elsewhere (musl, macOS) both do nothing: they only change what glibc keeps, never what the
program computes.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from collections.abc import Callable

M_ARENA_MAX = -8
"""mallopt's parameter number for the arena limit (glibc's malloc.h)."""
ARENAS = 2
"""As the unit's MALLOC_ARENA_MAX=2: measured, 2 keeps what 8 per core keeps minus ~5 MB at 100
sources, and threads that allocate at once still rarely wait for one another (the parsing is in
its worker processes; the daemon's threads mostly wait on sockets)."""
TRIM_SPACING_SECONDS = 2.0
"""At most one trim in this long: it walks the whole heap (1-4 ms of CPU at ~70 MB) holding each
arena's lock, so a daemon whose polls go idle every few milliseconds (1,000 warm sources) pays at
most ~2 ms a second, and `tick()`, run this often, pays a trim owed meanwhile."""


def _glibc():
    """libc, when it is glibc (it has malloc_trim); else None. CDLL(None) is the process's own
    symbols, libc's among them: no library search (ctypes.util runs ldconfig for one)."""
    try:
        libc = ctypes.CDLL(None)
        libc.malloc_trim, libc.mallopt  # AttributeError elsewhere than glibc
    except (OSError, AttributeError):
        return None
    libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return libc


_LIBC = _glibc()


def limit_arenas(environ=os.environ) -> bool:
    """At most ARENAS malloc arenas, unless MALLOC_ARENA_MAX says otherwise (the operator's wins).
    Call before the threads start: an arena once made stays. True when the limit was set."""
    if _LIBC is None or "MALLOC_ARENA_MAX" in environ:
        return False
    return _LIBC.mallopt(M_ARENA_MAX, ARENAS) == 1


def trim() -> bool:
    """Give freed heap pages back to the system. True when glibc released some."""
    return _LIBC is not None and _LIBC.malloc_trim(0) == 1


class Trimmer:
    """Counts the polls in flight; when they come back to none, trims (at most once per
    TRIM_SPACING_SECONDS; a trim owed then is paid by the next `tick()` that finds none in flight)."""

    def __init__(self, *, spacing: float = TRIM_SPACING_SECONDS, monotonic: Callable[[], float] = time.monotonic,
                 release: Callable[[], object] = trim):
        self.spacing, self._monotonic, self._release = spacing, monotonic, release
        self._lock = threading.Lock()
        self._in_flight = 0
        self._owed = False
        self._last: float | None = None
        self.trims = 0

    def started(self) -> None:
        with self._lock:
            self._in_flight += 1

    def ended(self) -> None:
        with self._lock:
            self._in_flight -= 1
            self._owed = True
        self._trim_if_due()

    def tick(self) -> None:
        """Periodically (a scheduler job): a trim owed since the polls went idle is paid now."""
        self._trim_if_due()

    def _trim_if_due(self) -> None:
        with self._lock:
            now = self._monotonic()
            if self._in_flight or not self._owed or (self._last is not None and now - self._last < self.spacing):
                return
            self._owed, self._last = False, now
            self.trims += 1
        self._release()  # outside the lock: a poll starting meanwhile is not held up
