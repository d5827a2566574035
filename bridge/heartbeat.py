"""The scheduler's sign of life: a heartbeat job beats only while the scheduler runs jobs and the
database answers; the watchdog (systemd) and /healthz trust it, not the main loop."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Callable

HEARTBEAT_INTERVAL = timedelta(seconds=10)
"""How often the scheduler runs its heartbeat job, which also asks the database to answer."""
HEARTBEAT_MAX_AGE = timedelta(seconds=60)
"""A heartbeat older than this means the scheduler is hung (or the database gone): watchdog pings
stop, so systemd restarts the service WatchdogSec later, and /healthz answers 503. The heartbeat
runs in the service jobs' pool, never queued behind polls; this is long enough for a delivery round
and a bookkeeping job in that pool, each bounded by its timeouts."""


class Heartbeat:
    """When the scheduler last proved it runs jobs. The clock is injected so tests need not sleep."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic):
        self._monotonic = monotonic
        self._last: float | None = None

    def beat(self) -> None:
        self._last = self._monotonic()

    def age(self) -> float | None:
        return None if self._last is None else self._monotonic() - self._last

    def alive(self) -> bool:
        age = self.age()
        return age is not None and age <= HEARTBEAT_MAX_AGE.total_seconds()
