"""Time, in one place: the daemon reads it through a Clock so tests can set it."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from typing import Callable
from zoneinfo import ZoneInfo

Clock = Callable[[], datetime]
"""Returns the current time as an aware UTC datetime."""


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def local_text(when: datetime, tz_name: str, *, seconds: bool = False) -> str:
    """`when` as an operator reads it: in [bridge] timezone, the zone named ('2026-12-02 09:05 WIB';
    '+07:00' where the zone has no abbreviation). A naive time is UTC, as the store keeps them."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    local = when.astimezone(ZoneInfo(tz_name))
    zone = local.strftime("%Z")
    if not zone or zone[0] in "+-":
        offset = local.strftime("%z")
        zone = f"{offset[:3]}:{offset[3:]}"
    return local.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M") + f" {zone}"


def local_iso(when: datetime, tz_name: str) -> str:
    """`when` as ISO 8601 with its offset, in [bridge] timezone (for `bridge status --json`)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(ZoneInfo(tz_name)).isoformat()


def local_day_start(now: datetime, tz_name: str) -> datetime:
    """Midnight of `now`'s local day in `tz_name`, as UTC: 'today' for daily caps and status."""
    local = now.astimezone(ZoneInfo(tz_name))
    midnight = datetime.combine(local.date(), time(0), tzinfo=local.tzinfo)
    return midnight.astimezone(timezone.utc)


def local_month_start(now: datetime, tz_name: str) -> datetime:
    """Midnight of the first day of `now`'s local month in `tz_name`, as UTC."""
    local = now.astimezone(ZoneInfo(tz_name))
    first = datetime.combine(local.date().replace(day=1), time(0), tzinfo=local.tzinfo)
    return first.astimezone(timezone.utc)


def parse_daily_window(text: str) -> tuple[time, time]:
    """'22:00-05:00' -> (22:00, 05:00). Raises ValueError with the expected form."""
    try:
        start_text, end_text = (part.strip() for part in text.split("-"))
        start, end = time.fromisoformat(start_text), time.fromisoformat(end_text)
    except ValueError:
        raise ValueError(f"{text!r} is not a time window like '22:00-05:00'") from None
    if start == end:
        raise ValueError(f"{text!r} is empty: start and end are the same time")
    return start, end


def in_daily_window(now: datetime, window: tuple[time, time], tz_name: str) -> datetime | None:
    """If `now` falls in the local daily `window` (which may span midnight), the UTC time it ends;
    else None."""
    start, end = window
    local = now.astimezone(ZoneInfo(tz_name))
    clock = local.time().replace(tzinfo=None)
    spans_midnight = start > end
    inside = (clock >= start or clock < end) if spans_midnight else (start <= clock < end)
    if not inside:
        return None
    end_day = local.date()
    if spans_midnight and clock >= start:
        end_day += timedelta(days=1)
    ends = datetime.combine(end_day, end, tzinfo=local.tzinfo)
    return ends.astimezone(timezone.utc)


def capped_backoff(base: timedelta, failures: int, cap: timedelta) -> timedelta:
    """base, 2*base, 4*base, ... for failures 1, 2, 3, ..., never more than cap."""
    if failures <= 0:
        return base
    return min(base * (2 ** min(failures - 1, 30)), cap)
