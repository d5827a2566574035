"""Local days, months, daily windows and backoff."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

import pytest

from bridge.clock import capped_backoff, in_daily_window, local_day_start, local_month_start, parse_daily_window

JAKARTA = "Asia/Jakarta"


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def test_local_day_and_month_start():
    """'Today' and 'this month' begin at local midnight in the configured zone (17:00 UTC for WIB)."""
    now = utc(2026, 12, 1, 18, 0)  # 01:00 on 2 December in Jakarta
    assert local_day_start(now, JAKARTA) == utc(2026, 12, 1, 17, 0)
    assert local_month_start(now, JAKARTA) == utc(2026, 11, 30, 17, 0)


@pytest.mark.parametrize(("text", "window"), [("22:00-05:00", (time(22), time(5))),
                                              ("09:30 - 17:00", (time(9, 30), time(17)))])
def test_parse_daily_window(text, window):
    """Windows are written HH:MM-HH:MM."""
    assert parse_daily_window(text) == window


@pytest.mark.parametrize("text", ["late", "22:00", "25:00-05:00", "05:00-05:00"])
def test_bad_daily_window(text):
    """Anything else, or an empty window, is refused with the expected form."""
    with pytest.raises(ValueError):
        parse_daily_window(text)


@pytest.mark.parametrize(("local_hour", "ends_local"), [
    (21, None), (22, (27, 5)), (23, (27, 5)), (0, (26, 5)), (4, (26, 5)), (5, None), (12, None),
])
def test_window_across_midnight(local_hour, ends_local):
    """22:00-05:00 holds from 22:00 to 05:00 local time and says when it ends."""
    local = datetime(2026, 11, 26, local_hour, 0, tzinfo=timezone(timedelta(hours=7)))
    ends = in_daily_window(local.astimezone(timezone.utc), (time(22), time(5)), JAKARTA)
    if ends_local is None:
        assert ends is None
    else:
        expected = datetime(2026, 11, ends_local[0], ends_local[1], tzinfo=timezone(timedelta(hours=7)))
        assert ends == expected


def test_window_within_a_day():
    """12:00-13:00 holds only inside it."""
    window = (time(12), time(13))
    assert in_daily_window(utc(2026, 11, 26, 5, 30), window, JAKARTA) == utc(2026, 11, 26, 6, 0)
    assert in_daily_window(utc(2026, 11, 26, 6, 0), window, JAKARTA) is None


def test_capped_backoff():
    """Waits double per failure and never pass the cap."""
    base, cap = timedelta(minutes=1), timedelta(minutes=10)
    assert [capped_backoff(base, n, cap) for n in (1, 2, 3, 4, 5, 100)] == [
        timedelta(minutes=m) for m in (1, 2, 4, 8, 10, 10)]
