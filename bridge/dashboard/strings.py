"""Every word the PR office's page shows, in Indonesian and English, and its dates.

One table, so a translation is checked in one place and no text hides in the renderer. Dates are
written the way the office writes them ("Senin, 1 Desember 2026 14.05 WIB"), never by the
process's locale (a server's C locale would print "Monday").
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

DAYS = {
    "id": ("Senin", "Selasa", "Rabu", "Kamis", "Jumat", "Sabtu", "Minggu"),
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
}
MONTHS = {
    "id": ("Januari", "Februari", "Maret", "April", "Mei", "Juni", "Juli", "Agustus", "September",
           "Oktober", "November", "Desember"),
    "en": ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December"),
}
TIME_SEPARATOR = {"id": ".", "en": ":"}
"""Indonesian writes 14.05 (PUEBI), English 14:05."""
DECIMAL_COMMA = {"id": True, "en": False}

TEXT = {
    "id": {
        "title": "Bridge: berita yang dibagikan",
        "updated": "Diperbarui {when}; halaman ini memuat ulang setiap menit.",
        "dry_run": "Uji coba (dry run): tidak ada yang benar-benar diposting.",
        "today": "Hari ini",
        "sum_posted": "{count} posting hari ini",
        "sum_waiting": "{count} menunggu",
        "sum_attention": "{count} perlu dilihat",
        "sum_sources": "{count} sumber bermasalah",
        "no_posts_today": "Belum ada posting hari ini.",
        "view_post": "lihat posting",
        "no_link": "tanpa tautan",
        "recipients": "terkirim ke {sent} dari {total} penerima",
        "more_posts": "dan {count} posting lagi hari ini",
        "queue": "Antrean",
        "queue_empty": "Tidak ada yang menunggu.",
        "pending": "Menunggu",
        "held": "Ditahan",
        "in_doubt": "Belum pasti",
        "failed": "Gagal",
        "settle": "Cara menyelesaikan",
        "pending_todo": "dikirim otomatis; `bridge skip {id}` membatalkannya",
        "failed_todo": "`bridge retry {id}` mengirim ulang",
        "doubt_settle": "lihat akunnya: `bridge resolve {id} --sent` bila posting ada, `bridge retry {id}` bila tidak",
        "doubt_recheck": "bridge memeriksa lagi {when}",
        "held_todo": "`bridge release {source}` mengirimnya, `bridge catchup {source}` membuangnya",
        "waiting_because": "menunggu: {why}",
        "held_stories": "{count} berita baru sekaligus dari {source}",
        "more_pending": "dan {count} lagi",
        "sources": "Sumber",
        "source": "Sumber",
        "state": "Keadaan",
        "last_new": "Berita baru terakhir",
        "last_read": "Dibaca terakhir",
        "not_recently": "tidak dalam {days} hari terakhir",
        "st_ok": "baik",
        "st_failing": "gagal {count}x berturut-turut",
        "st_failing_since": "gagal {count}x berturut-turut, terakhir berhasil {when}",
        "st_late": "terlambat dibaca",
        "st_drift": "tata letak situs berubah?",
        "st_held": "lonjakan ditahan ({count} berita)",
        "st_disabled": "dinonaktifkan",
        "st_removed": "dihapus dari settings.toml",
        "st_never": "belum pernah dibaca",
        "spend": "Biaya",
        "network": "Jaringan",
        "posted_today": "Diposting hari ini",
        "spent_today": "Hari ini",
        "spent_month": "Bulan ini",
        "of_budget": "{amount} dari {budget}",
        "target_state": "Keadaan",
        "chart": "Posting per hari, 14 hari terakhir",
        "chart_label": "Grafik jumlah posting per hari per jaringan, 14 hari terakhir",
        "story": "Berita",
        "story_source": "Dari {source}, pertama terlihat {when}",
        "original": "berita asli",
        "deliveries": "Pengiriman",
        "sent_at": "Waktu",
        "link": "Tautan",
        "note": "Catatan",
        "back": "Kembali ke ringkasan",
        "no_deliveries": "Berita ini tidak dikirim ke jaringan mana pun.",
        "not_found": "Berita {id} tidak ada.",
        "not_found_page": "Halaman tidak ada.",
        "database": "Basis data tidak dapat dibaca: {reason}",
        "ds_pending": "menunggu", "ds_sending": "sedang dikirim", "ds_sent": "terkirim",
        "ds_failed": "gagal", "ds_skipped": "dilewati", "ds_in_doubt": "belum pasti", "ds_held": "ditahan",
    },
    "en": {
        "title": "Bridge: stories shared",
        "updated": "Updated {when}; this page reloads every minute.",
        "dry_run": "Dry run: nothing is really posted.",
        "today": "Today",
        "sum_posted": "{count} posts today",
        "sum_waiting": "{count} waiting",
        "sum_attention": "{count} need a look",
        "sum_sources": "{count} sources with a problem",
        "no_posts_today": "Nothing posted yet today.",
        "view_post": "view post",
        "no_link": "no link",
        "recipients": "reached {sent} of {total} recipients",
        "more_posts": "and {count} more posts today",
        "queue": "Queue",
        "queue_empty": "Nothing is waiting.",
        "pending": "Pending",
        "held": "Held",
        "in_doubt": "In doubt",
        "failed": "Failed",
        "settle": "What settles it",
        "pending_todo": "goes out by itself; `bridge skip {id}` drops it",
        "failed_todo": "`bridge retry {id}` sends it again",
        "doubt_settle": "look at the account: `bridge resolve {id} --sent` if the post is there, `bridge retry {id}` if not",
        "doubt_recheck": "the bridge checks again {when}",
        "held_todo": "`bridge release {source}` posts them, `bridge catchup {source}` drops them",
        "waiting_because": "waiting: {why}",
        "held_stories": "{count} new stories at once from {source}",
        "more_pending": "and {count} more",
        "sources": "Sources",
        "source": "Source",
        "state": "State",
        "last_new": "Last new story",
        "last_read": "Last read",
        "not_recently": "none in the last {days} days",
        "st_ok": "ok",
        "st_failing": "failing, {count} polls in a row",
        "st_failing_since": "failing, {count} polls in a row, last read ok {when}",
        "st_late": "late",
        "st_drift": "site layout changed?",
        "st_held": "burst held ({count} stories)",
        "st_disabled": "disabled",
        "st_removed": "removed from settings.toml",
        "st_never": "never read yet",
        "spend": "Spend",
        "network": "Network",
        "posted_today": "Posted today",
        "spent_today": "Today",
        "spent_month": "This month",
        "of_budget": "{amount} of {budget}",
        "target_state": "State",
        "chart": "Posts per day, last 14 days",
        "chart_label": "Chart of posts per day per network, last 14 days",
        "story": "Story",
        "story_source": "From {source}, first seen {when}",
        "original": "original story",
        "deliveries": "Deliveries",
        "sent_at": "Time",
        "link": "Link",
        "note": "Note",
        "back": "Back to the overview",
        "no_deliveries": "This story went to no network.",
        "not_found": "There is no story {id}.",
        "not_found_page": "No such page.",
        "database": "The database cannot be read: {reason}",
        "ds_pending": "pending", "ds_sending": "sending", "ds_sent": "sent",
        "ds_failed": "failed", "ds_skipped": "skipped", "ds_in_doubt": "in doubt", "ds_held": "held",
    },
}


class Words:
    """The table for one language: words("today"), words("recipients", sent=2, total=3)."""

    def __init__(self, language: str, tz: str):
        self.language = language if language in TEXT else "id"
        self.tz = tz

    def __call__(self, key: str, **values) -> str:
        text = TEXT[self.language][key]
        return text.format(**values) if values else text

    def has(self, key: str) -> bool:
        return key in TEXT[self.language]

    def local(self, when: datetime) -> datetime:
        if when.tzinfo is None:  # the store's times are UTC
            when = when.replace(tzinfo=timezone.utc)
        return when.astimezone(ZoneInfo(self.tz))

    def clock(self, when: datetime) -> str:
        """'14.05' (id) / '14:05' (en), in [bridge] timezone."""
        local = self.local(when)
        return f"{local.hour:02d}{TIME_SEPARATOR[self.language]}{local.minute:02d}"

    def day(self, day: date) -> str:
        """'Senin, 1 Desember 2026'."""
        return (f"{DAYS[self.language][day.weekday()]}, {day.day} {MONTHS[self.language][day.month - 1]} "
                f"{day.year}")

    def short_day(self, day: date) -> str:
        """'1 Des' for the chart's axis."""
        return f"{day.day} {MONTHS[self.language][day.month - 1][:3]}"

    def when(self, when: datetime) -> str:
        """'Senin, 1 Desember 2026 14.05 WIB': the day, the time and the zone named."""
        local = self.local(when)
        return f"{self.day(local.date())} {self.clock(when)} {zone_name(local)}"

    def money(self, amount: float) -> str:
        """'US$0,40' (id) / 'US$0.40' (en)."""
        text = f"{amount:,.2f}"
        if DECIMAL_COMMA[self.language]:
            text = text.replace(",", " ").replace(".", ",").replace(" ", ".")
        return f"US${text}"


def zone_name(local: datetime) -> str:
    """WIB, WITA, WIT where the zone database names them; else the offset ('+07:00')."""
    zone = local.strftime("%Z")
    if not zone or zone[0] in "+-":
        offset = local.strftime("%z")
        zone = f"{offset[:3]}:{offset[3:]}"
    return zone
