"""Speed and memory of the hot paths, in numbers. Run: .venv/bin/python bench/bench_pipeline.py

Everything is local: a feed server on 127.0.0.1 and a temporary SQLite database. Prints one line
per measurement (median of several runs) so results can be compared between commits.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import tracemalloc
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridge.compose import compose  # noqa: E402
from bridge.publish.x import X_LENGTH_RULE  # noqa: E402
from bridge.sources.feed import parse_feed  # noqa: E402
from bridge.sources.fetch import FetchLimits, fetch, make_client  # noqa: E402
from bridge.store.db import create_database_engine  # noqa: E402
from bridge.store.migrations import migrate  # noqa: E402
from bridge.store.repo import Repository  # noqa: E402
from tests.fakes.feed_server import FeedServer  # noqa: E402
from tests.helpers import antara_feed, antara_item  # noqa: E402

RUNS = 7


def timed(function, runs: int | None = None) -> float:
    """Median wall time of `function()` in milliseconds."""
    samples = []
    for _ in range(runs or RUNS):
        start = time.perf_counter()
        function()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def report(name: str, value: float, unit: str) -> None:
    print(f"{name:<52} {value:>10.2f} {unit}")


def main() -> None:
    feed_50 = antara_feed([antara_item(n) for n in range(50)]).encode()
    feed_500 = antara_feed([antara_item(n) for n in range(500)]).encode()
    report("parse_feed, 50-item Antara-shaped RSS", timed(lambda: parse_feed(feed_50, url="http://x/")), "ms")
    report("parse_feed, 500-item Antara-shaped RSS", timed(lambda: parse_feed(feed_500, url="http://x/")), "ms")

    items = parse_feed(feed_50, url="http://x/")
    long_item = items[0].__class__(key="k", title="Kementerian Pemuda dan Olahraga " * 30, link=items[0].link)
    report("compose, 50 items fitting in 280", timed(
        lambda: [compose("{title} {url}", i, source="s", rule=X_LENGTH_RULE) for i in items]), "ms")
    report("compose, one 900-char title shortened to 280", timed(
        lambda: compose("{title} {url}", long_item, source="s", rule=X_LENGTH_RULE)), "ms")

    with tempfile.TemporaryDirectory() as folder:
        engine = create_database_engine(f"sqlite:///{folder}/bench.db")
        migrate(engine)
        repo = Repository(engine)
        now = datetime.now(timezone.utc)
        counter = iter(range(10_000))

        def store_new() -> None:
            source = f"s{next(counter)}"
            repo.store_poll(source, "http://x/", items, ["x", "y"], now=now, skip={}, etag=None,
                            last_modified=None, next_poll_at=now + timedelta(minutes=5))

        report("store_poll, 50 new items x 2 targets (one txn)", timed(store_new), "ms")
        repo.store_poll("known", "http://x/", items, ["x"], now=now, skip={}, etag=None,
                        last_modified=None, next_poll_at=None)
        report("store_poll, 50 known items (nothing new)", timed(
            lambda: repo.store_poll("known", "http://x/", items, ["x"], now=now, skip={}, etag=None,
                                    last_modified=None, next_poll_at=None)), "ms")
        engine.dispose()

    with FeedServer() as server:
        server.add("/feed", feed_50, etag='"1"')
        limits = FetchLimits()
        with make_client(limits) as client:
            report("fetch over loopback, 50-item feed, 200", timed(
                lambda: fetch(client, server.url("/feed"), limits)), "ms")
            report("fetch over loopback, conditional GET answered 304", timed(
                lambda: fetch(client, server.url("/feed"), limits, etag='"1"')), "ms")

    bomb = ('<?xml version="1.0"?>\n<!DOCTYPE rss [\n<!ENTITY a "%s">\n]>\n<rss version="2.0"><channel>'
            "<title>q</title><item><guid>q</guid><title>t</title><description>%s</description></item>"
            "</channel></rss>") % ("x" * 20_000, "&a;" * 2_000)
    tracemalloc.start()
    parse_feed(bomb.encode(), url="http://x/")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    report(f"peak memory, {len(bomb) // 1024} KB entity-expansion feed (40 MB if expanded)", peak / 2**20, "MiB")
    tracemalloc.start()
    parse_feed(feed_500, url="http://x/")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    report(f"peak memory, parse 500-item feed ({len(feed_500) // 1024} KB)", peak / 2**20, "MiB")


if __name__ == "__main__":
    main()
