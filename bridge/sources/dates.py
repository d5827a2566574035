"""Dates as Indonesian sites write them, read strictly: a wrong date is worse than none.

Forms read (case-insensitive, an optional leading day name in Indonesian or English):
  "05 Agustus 2019", "Kamis, 26 Jul 2022", "Sen, 14 Okt 2024 10:00:00 WIB", "Mon, 14 Oct 2024 10:00 +0700",
  "October 14, 2024", "26-07-2022 12:01:01", "26/07/2022", "26.07.2022 pukul 12.01 WITA",
  "2024-10-14 10:00:00", "2024-10-14T10:00:00+07:00".
Numeric dates are day first (as Indonesia writes them); a year must have four digits. Zones: WIB (+07),
WITA (+08), WIT (+09), UTC/GMT/Z, or a numeric offset; a time without one is in the source's time
zone, and a date without a time is midnight there. Anything else, or trailing words, is None.

Written by hand rather than with a general date library: those guess (a two-digit year, month-first
order, a missing year filled from today), and a guessed date can make an old story look new.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Callable, Iterator
from zoneinfo import ZoneInfo

before_first_log: Callable[[], None] = lambda: None
"""Called once before this module first logs: a parse worker sets up logging only then, as
structlog (with asyncio) is ~4 MB a worker that most workers never need (sources/workers.py)."""

MAX_LOGGED_UNREADABLE = 1_000
"""Unreadable date strings remembered so each is logged once per process, not on every poll."""

# Every spelling seen on Indonesian sites and handled by the public scrapers of them: kemenpora.go.id
# writes "Mai" as well as "Mei", and "Agst"/"Ags" for August; others write "Pebruari"/"Febuari",
# "Spt", "Nop". Each names one month only, so reading it is no guess.
_ID_MONTHS = {
    "januari": 1, "februari": 2, "pebruari": 2, "febuari": 2, "peb": 2, "maret": 3, "mei": 5, "mai": 5,
    "juni": 6, "juli": 7, "agustus": 8, "agu": 8, "ags": 8, "agt": 8, "agst": 8, "agus": 8, "spt": 9,
    "oktober": 10, "okt": 10, "nopember": 11, "nop": 11, "desember": 12, "des": 12,
}
_EN_MONTHS = {
    "january": 1, "february": 2, "march": 3, "april": 4, "may": 5, "june": 6, "july": 7, "august": 8,
    "september": 9, "october": 10, "november": 11, "december": 12,
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "sept": 9, "oct": 10,
    "nov": 11, "dec": 12,
}
_MONTHS = {**_EN_MONTHS, **_ID_MONTHS}
_ID_DAYS = frozenset(
    "senin selasa rabu kamis jumat sabtu minggu ahad sen sel rab kam jum sab min".split()
)
_EN_DAYS = frozenset(
    "monday tuesday wednesday thursday friday saturday sunday mon tue tues wed thu thur thurs fri sat sun".split()
)
_ID_ZONES = {"wib": 7, "wita": 8, "wit": 9}
_UTC_NAMES = frozenset({"utc", "gmt", "z", "ut"})

_DAY_NAME = re.compile(r"^([a-z]+)\.?\s*,?\s+")
_TEXT_DMY = re.compile(r"^(\d{1,2})\s+([a-z]+)\.?,?\s+(\d{4})")
_TEXT_MDY = re.compile(r"^([a-z]+)\.?\s+(\d{1,2}),?\s+(\d{4})")
_NUMERIC_DMY = re.compile(r"^(\d{1,2})([-/.])(\d{1,2})\2(\d{4})")
_ISO_YMD = re.compile(r"^(\d{4})-(\d{2})-(\d{2})")
_TIME = re.compile(
    r"^[\s,|t–-]*(?:(?:pukul|jam)\s+)?(\d{1,2})[:.](\d{2})(?:[:.](\d{2})(?:[.,]\d{1,9})?)?"
)
_ZONE = re.compile(r"^\s*(?:(wib|wita|wit|utc|gmt|ut|z)|([+-])(\d{2}):?(\d{2}))")


@dataclass(frozen=True)
class ParsedDate:
    when: datetime
    """Aware, in UTC."""
    has_time: bool
    """False for a date alone ("Kamis, 26 Jul 2022"), which is midnight in the source's zone."""
    local_form: bool
    """True when an Indonesian word or zone, or a day-first numeric date, was read: a form feedparser
    cannot read or misreads, so the feed reader must take our answer."""
    zone_assumed: bool = False
    """True when the text names no zone, so the source's was used: feedparser would read such a
    time as UTC ("2025-03-03 10:00:00") or not at all (an RFC 822 date without its zone)."""


def parse_date(raw: str, tz: tzinfo | str | None) -> datetime | None:
    """`raw` as an aware UTC datetime, or None when it is not a form we read without guessing.

    `tz` is the zone of times written without one; None means such times are unknown."""
    parsed = parse_date_detail(raw, tz)
    return parsed.when if parsed else None


def parse_date_detail(raw: str, tz: tzinfo | str | None) -> ParsedDate | None:
    if not isinstance(raw, str):
        return None
    text = " ".join(raw.replace("'", "").replace("\u2019", "").lower().split())
    if not text or len(text) > 80:  # longer is prose, not a date
        return None
    local = False
    if (match := _DAY_NAME.match(text)) and (match[1] in _ID_DAYS or match[1] in _EN_DAYS):
        local = match[1] in _ID_DAYS
        text = text[match.end():]
    found = _date_part(text)
    if found is None:
        return None
    (year, month, day), rest, local_date = found
    hour = minute = second = 0
    has_time = False
    if time := _TIME.match(rest):
        hour, minute, second = int(time[1]), int(time[2]), int(time[3] or 0)
        has_time = True
        rest = rest[time.end():]
    zone: tzinfo | None = None
    zone_assumed = False
    if zone_match := _ZONE.match(rest):
        zone, local_zone = _zone(zone_match)
        local = local or local_zone
        rest = rest[zone_match.end():]
    if rest.strip():
        return None  # trailing words: not a form we know, so not a date we trust
    if zone is None:
        zone, zone_assumed = _as_tzinfo(tz), True
    if zone is None:
        return None
    try:
        when = datetime(year, month, day, hour, minute, second, tzinfo=zone)
    except ValueError:  # 31 Februari, 25:00
        return None
    return ParsedDate(when.astimezone(timezone.utc), has_time, local or local_date, zone_assumed)


def _date_part(text: str) -> tuple[tuple[int, int, int], str, bool] | None:
    """(year, month, day), what follows, and whether the form is an Indonesian one."""
    if match := _TEXT_DMY.match(text):
        month = _MONTHS.get(match[2])
        if month is None:
            return None
        return (int(match[3]), month, int(match[1])), text[match.end():], match[2] in _ID_MONTHS
    if match := _TEXT_MDY.match(text):
        month = _MONTHS.get(match[1])
        if month is None:
            return None
        return (int(match[3]), month, int(match[2])), text[match.end():], match[1] in _ID_MONTHS
    if match := _NUMERIC_DMY.match(text):
        return (int(match[4]), int(match[3]), int(match[1])), text[match.end():], True
    if match := _ISO_YMD.match(text):
        return (int(match[1]), int(match[2]), int(match[3])), text[match.end():], False
    return None


def _zone(match: re.Match) -> tuple[tzinfo, bool]:
    if name := match[1]:
        if name in _ID_ZONES:
            return timezone(timedelta(hours=_ID_ZONES[name])), True
        return timezone.utc, False
    offset = timedelta(hours=int(match[3]), minutes=int(match[4]))
    return timezone(-offset if match[2] == "-" else offset), False


def _as_tzinfo(tz: tzinfo | str | None) -> tzinfo | None:
    return ZoneInfo(tz) if isinstance(tz, str) else tz


# --- Feeds ---------------------------------------------------------------------------------------
# The feed reader's date hook takes only the raw string, so the zone of the source being read is
# passed beside it, in a context variable that read.py sets around each read (per thread).

_ASSUMED_ZONE: ContextVar[str | None] = ContextVar("bridge_assumed_zone", default=None)


@contextmanager
def assume_timezone(tz: str) -> Iterator[None]:
    """Zone-less times read inside this block (by the feed hook) are in `tz`."""
    token = _ASSUMED_ZONE.set(tz)
    try:
        yield
    finally:
        _ASSUMED_ZONE.reset(token)


def feed_date_hook(raw: str) -> datetime | None:
    """For bridge.sources.feed.register_date_parser: answers only for forms feedparser cannot read
    or misreads (Indonesian words, WIB/WITA/WIT, day-first numbers, and any time written without a
    zone, which is in the source's `timezone`), and leaves the rest to it, so RFC 822 and ISO 8601
    dates that name their zone keep feedparser's (and the JSON Feed reader's) rules."""
    parsed = parse_date_detail(raw, _ASSUMED_ZONE.get())
    if parsed and (parsed.local_form or parsed.zone_assumed):
        return parsed.when
    if parsed is None and looks_local(raw):
        log_unreadable_once(raw)
    return None


_LOCAL_HINT = re.compile(
    r"\b(?:%s|wib|wita|wit)\b|^\s*\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}" % "|".join(sorted(_ID_MONTHS) + sorted(_ID_DAYS)),
    re.IGNORECASE,
)


def looks_local(raw: str) -> bool:
    """Whether `raw` looks like an Indonesian date (so failing to read it is worth a log line)."""
    return bool(_LOCAL_HINT.search(raw or ""))


_logged_unreadable: set[str] = set()


def log_unreadable_once(raw: str, **fields) -> None:
    """Log an unreadable date once per process: it comes back on every poll, the answer does not change."""
    if raw in _logged_unreadable or len(_logged_unreadable) >= MAX_LOGGED_UNREADABLE:
        return
    global before_first_log
    _logged_unreadable.add(raw)
    prepare, before_first_log = before_first_log, lambda: None
    prepare()
    import structlog  # here: a parse worker loads it only for its first unreadable date

    structlog.get_logger("bridge.sources").warning("date not understood: the story gets no date",
                                                    raw=raw[:100], **fields)


def parse_date_or_say(raw: str, tz, source: str = "") -> ParsedDate | None:
    """parse_date_detail, and an unreadable date logged (once) naming its source; None for no text."""
    if not raw:
        return None
    parsed = parse_date_detail(raw, tz)
    if parsed is None:
        log_unreadable_once(raw, source=source)
    return parsed
