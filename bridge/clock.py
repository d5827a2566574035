"""Time, in one place: the daemon reads it through a Clock so tests can set it."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from typing import Callable
from zoneinfo import ZoneInfo

Clock = Callable[[], datetime]
"""Returns the current time as an aware UTC datetime."""


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def local_day_start(now: datetime, tz_name: str) -> datetime:
    """Midnight of `now`'s local day in `tz_name`, as UTC: 'today' for daily caps and status."""
    local = now.astimezone(ZoneInfo(tz_name))
    midnight = datetime.combine(local.date(), time(0), tzinfo=local.tzinfo)
    return midnight.astimezone(timezone.utc)


def capped_backoff(base: timedelta, failures: int, cap: timedelta) -> timedelta:
    """base, 2*base, 4*base, ... for failures 1, 2, 3, ..., never more than cap."""
    if failures <= 0:
        return base
    return min(base * (2 ** min(failures - 1, 30)), cap)
