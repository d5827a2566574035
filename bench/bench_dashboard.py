"""The PR office's page on a big store: build the overview (and one story page) at N stored
stories. Run: .venv/bin/python bench/bench_dashboard.py [STORIES]  (default 1,000,000)

A temporary SQLite database is filled with STORIES stories over five sources and two years, each
with an X and a Telegram delivery: the first POSTS_PER_DAY of each day sent (a daily cap), the rest
skipped. Then the page's data is gathered and rendered, as a request to `/` does. Prints the median
of several runs, and the part of it that `bridge status`'s own report (status.collect) takes.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridge.config import parse_config  # noqa: E402
from bridge.dashboard import overview_page, story_page  # noqa: E402
from bridge.status import collect  # noqa: E402
from bridge.store.db import create_database_engine  # noqa: E402
from bridge.store.migrations import migrate  # noqa: E402
from bridge.store.repo import Repository  # noqa: E402

RUNS = 7
POSTS_PER_DAY = 50
SOURCES = ("kemenpora-berita", "deputi1", "deputi2", "deputi3", "deputi4")


def fill(engine, stories: int, now: datetime) -> None:
    """Stories oldest first, one every 2 years / STORIES; every one sent to x and telegram."""
    span = timedelta(days=730) / stories
    start = now - timedelta(days=730)
    raw = engine.raw_connection()
    cursor = raw.cursor()
    cursor.execute("BEGIN")
    batch_items, batch_deliveries = [], []
    day, posted = None, 0
    for n in range(1, stories + 1):
        seen = (start + span * n).replace(tzinfo=None)
        if seen.date() != day:
            day, posted = seen.date(), 0
        posted += 1
        sent = posted <= POSTS_PER_DAY
        batch_items.append((n, SOURCES[n % len(SOURCES)], f"k{n}", f"site/{n}", f"https://site/{n}",
                            f"Berita nomor {n}", "", "", seen))
        for offset, target in enumerate(("x", "telegram")):
            batch_deliveries.append((2 * n + offset, n, target, "sent" if sent else "skipped", 1 if sent else 0,
                                     str(10**15 + n) if sent else None, seen, seen, seen if sent else None,
                                     0.2 if sent else None, ""))
        if len(batch_items) == 50_000 or n == stories:
            cursor.executemany("INSERT INTO items (id, source, key, url, link, title, summary, categories, "
                               "first_seen_at) VALUES (?,?,?,?,?,?,?,?,?)", batch_items)
            cursor.executemany("INSERT INTO deliveries (id, item_id, target, state, attempts, remote_id, created_at, "
                               "updated_at, sent_at, cost, recipient) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                               batch_deliveries)
            batch_items, batch_deliveries = [], []
    for name in SOURCES:
        cursor.execute("INSERT INTO sources (name, url, initialised, consecutive_failures, last_poll_at, "
                       "last_success_at, last_outcome) VALUES (?, ?, 1, 0, ?, ?, 'ok')",
                       (name, f"https://{name}/", now.replace(tzinfo=None), now.replace(tzinfo=None)))
    cursor.execute("COMMIT")
    cursor.execute("ANALYZE")
    raw.close()


def main() -> None:
    stories = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    now = datetime(2026, 12, 2, 5, 0, tzinfo=timezone.utc)
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/bench.db"
        engine = create_database_engine(url)
        migrate(engine)
        began = time.perf_counter()
        fill(engine, stories, now)
        print(f"filled {stories:,} stories in {time.perf_counter() - began:.0f} s")
        raw = {"bridge": {"database": url, "dry_run": True},
               "sources": [{"name": n, "url": f"https://{n}/", "targets": ["x", "telegram"]} for n in SOURCES],
               "targets": {"x": {"kind": "x"}, "telegram": {"kind": "telegram", "chat_id": "@kemenpora"}}}
        config = parse_config(raw, environ={})
        repo = Repository(engine)
        for name, call in (("overview /", lambda: overview_page(repo, config, now)),
                           ("  of which collect", lambda: (200, None, str(collect(repo, config, now)))),
                           ("story /story/ID", lambda: story_page(repo, config, stories // 2))):
            call()  # warm the caches, as a page left open is
            samples = []
            for _ in range(RUNS):
                began = time.perf_counter()
                status, _, body = call()
                samples.append((time.perf_counter() - began) * 1000)
            assert status == 200, status
            print(f"{name:<20} {statistics.median(samples):8.1f} ms  ({len(body):,} bytes)")


if __name__ == "__main__":
    main()
