"""Indonesian (and English) dates read strictly: the right instant, or None rather than a guess."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from bridge.sources import dates
from bridge.sources.dates import assume_timezone, feed_date_hook, parse_date, parse_date_detail
from bridge.sources.feed import parse_feed

UTC = timezone.utc
FEEDS = Path(__file__).parent / "fixtures" / "feeds"

# Forms seen on Indonesian sites and feeds, with the instant each means (times without a zone are
# in Asia/Jakarta, +07:00).
REAL_FORMS = [
    ("05 Agustus 2019", datetime(2019, 8, 4, 17, 0, tzinfo=UTC)),
    ("Kamis, 26 Jul 2022", datetime(2022, 7, 25, 17, 0, tzinfo=UTC)),
    ("Sen, 14 Okt 2024 10:00:00 WIB", datetime(2024, 10, 14, 3, 0, tzinfo=UTC)),
    ("Mon, 14 Oct 2024 10:00:00 WIB", datetime(2024, 10, 14, 3, 0, tzinfo=UTC)),
    ("Mon, 14 Oct 2024 10:00:00 +0700", datetime(2024, 10, 14, 3, 0, tzinfo=UTC)),
    ("26-07-2022 12:01:01", datetime(2022, 7, 26, 5, 1, 1, tzinfo=UTC)),
    ("26/07/2022", datetime(2022, 7, 25, 17, 0, tzinfo=UTC)),
    ("26.07.2022 pukul 12.01 WITA", datetime(2022, 7, 26, 4, 1, tzinfo=UTC)),
    ("Jum'at, 29 Juli 2022 | 14:30 WIB", datetime(2022, 7, 29, 7, 30, tzinfo=UTC)),
    ("Rabu, 3 Desember 2025 - 09:15 WIT", datetime(2025, 12, 3, 0, 15, tzinfo=UTC)),
    ("Sabtu, 1 Agt 2020", datetime(2020, 7, 31, 17, 0, tzinfo=UTC)),
    ("1 Agst 2020 07:00", datetime(2020, 8, 1, 0, 0, tzinfo=UTC)),
    ("Minggu, 2 Ags 2020", datetime(2020, 8, 1, 17, 0, tzinfo=UTC)),
    ("Selasa, 1 Mei 2024", datetime(2024, 4, 30, 17, 0, tzinfo=UTC)),
    ("Kamis, 16 Mai 2024", datetime(2024, 5, 15, 17, 0, tzinfo=UTC)),  # kemenpora.go.id's own spelling
    ("Senin, 12 Agst 2024 10:00 WIB", datetime(2024, 8, 12, 3, 0, tzinfo=UTC)),
    ("12 Ags 2024", datetime(2024, 8, 11, 17, 0, tzinfo=UTC)),
    ("3 Spt 2020", datetime(2020, 9, 2, 17, 0, tzinfo=UTC)),
    ("Rabu, 4 Nop 2020", datetime(2020, 11, 3, 17, 0, tzinfo=UTC)),
    ("10 Febuari 2021", datetime(2021, 2, 9, 17, 0, tzinfo=UTC)),
    ("9 Nopember 2021", datetime(2021, 11, 8, 17, 0, tzinfo=UTC)),
    ("Sel, 12 Des 2023 23:59", datetime(2023, 12, 12, 16, 59, tzinfo=UTC)),
    ("Rab, 8 Feb 2023", datetime(2023, 2, 7, 17, 0, tzinfo=UTC)),
    ("MINGGU, 16 MARET 2025", datetime(2025, 3, 15, 17, 0, tzinfo=UTC)),
    ("October 14, 2024", datetime(2024, 10, 13, 17, 0, tzinfo=UTC)),
    ("14 October 2024 10:00 GMT", datetime(2024, 10, 14, 10, 0, tzinfo=UTC)),
    ("2024-10-14 10:00:00", datetime(2024, 10, 14, 3, 0, tzinfo=UTC)),
    ("2024-10-14T10:00:00+07:00", datetime(2024, 10, 14, 3, 0, tzinfo=UTC)),
    ("2024-10-14T03:00:00.123Z", datetime(2024, 10, 14, 3, 0, tzinfo=UTC)),
]

NOT_DATES = [
    "26-07-22",  # a two-digit year would be a guess
    "Kamis, 26 Jul",  # no year: never filled in from today
    "31 Februari 2024",
    "26 Jul 2022 25:00",
    "14 Okt 2024 10:00 kemarin",  # trailing words
    "hari ini",
    "2 jam yang lalu",
    "",
    "Kamis, 26 Foo 2022",
]


class TestParseDate:
    @pytest.mark.parametrize("raw,expected", REAL_FORMS, ids=[r for r, _ in REAL_FORMS])
    def test_real_forms(self, raw, expected):
        """Each real form reads as the instant it means, in UTC."""
        assert parse_date(raw, "Asia/Jakarta") == expected

    @pytest.mark.parametrize("raw", NOT_DATES)
    def test_unreadable_or_ambiguous_is_none(self, raw):
        """What cannot be read without guessing (no year, two-digit year, impossible day) is None."""
        assert parse_date(raw, "Asia/Jakarta") is None

    def test_zoneless_time_follows_the_source_zone(self):
        """A time without a zone is in the zone the source is configured with."""
        assert parse_date("26-07-2022 12:00", "Asia/Makassar") == datetime(2022, 7, 26, 4, 0, tzinfo=UTC)
        assert parse_date("26-07-2022 12:00 WIB", "Asia/Makassar") == datetime(2022, 7, 26, 5, 0, tzinfo=UTC)

    def test_zoneless_time_without_a_zone_to_assume_is_none(self):
        """With no zone given and none written, the time is unknown."""
        assert parse_date("26-07-2022 12:00", None) is None

    def test_precision_and_local_form_are_reported(self):
        """A date alone is reported as such; Indonesian forms are flagged for the feed hook."""
        day = parse_date_detail("Kamis, 26 Jul 2022", "Asia/Jakarta")
        assert not day.has_time and day.local_form
        iso = parse_date_detail("2024-10-14T10:00:00+07:00", None)
        assert iso.has_time and not iso.local_form


class TestFeedHook:
    def test_feed_dates_read_in_the_source_zone(self):
        """Through the feed reader's hook, Indonesian feed dates get the right instants; others keep feedparser's."""
        with assume_timezone("Asia/Jakarta"):
            items = {i.key: i.published for i in parse_feed((FEEDS / "indonesian_dates.xml").read_bytes(),
                                                           url="https://example.go.id/rss")}
        assert items == {
            "agustus": datetime(2019, 8, 4, 17, 0, tzinfo=UTC),
            "kamis": datetime(2022, 7, 25, 17, 0, tzinfo=UTC),
            "okt-wib": datetime(2024, 10, 14, 3, 0, tzinfo=UTC),
            "en-wib": datetime(2024, 10, 14, 3, 0, tzinfo=UTC),
            "day-first": datetime(2022, 7, 26, 5, 1, 1, tzinfo=UTC),
            "good": datetime(2024, 10, 14, 3, 0, tzinfo=UTC),
        }

    def test_hook_leaves_iso_and_rfc822_to_feedparser(self):
        """The hook answers only for forms feedparser cannot read or misreads: dates naming their
        zone are left to it; a time without a zone is the source's (feedparser would say UTC)."""
        with assume_timezone("Asia/Jakarta"):
            assert feed_date_hook("2024-10-14T10:00:00Z") is None
            assert feed_date_hook("Mon, 14 Oct 2024 10:00:00 +0700") is None
            assert feed_date_hook("26-07-2022 12:01:01") == datetime(2022, 7, 26, 5, 1, 1, tzinfo=UTC)
            assert feed_date_hook("2024-10-14T10:00:00") == datetime(2024, 10, 14, 3, 0, tzinfo=UTC)
            assert feed_date_hook("Mon, 14 Oct 2024 10:00:00") == datetime(2024, 10, 14, 3, 0, tzinfo=UTC)
        assert feed_date_hook("2024-10-14T10:00:00") is None  # outside a source's read: no zone to assume

    def test_unreadable_indonesian_date_logged_once(self, monkeypatch):
        """An Indonesian-looking date the parser cannot read is logged once, not on every poll."""
        monkeypatch.setattr(dates, "_logged_unreadable", set())
        with capture_logs() as logs:
            for _ in range(3):
                assert feed_date_hook("Kamis, 26 Jul") is None
        assert [e["event"] for e in logs] == ["date not understood: the story gets no date"]
