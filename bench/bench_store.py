"""The store as it grows: the same operations on 1 k, 100 k and 1 M stored stories.

Run: .venv/bin/python bench/bench_store.py [--quick] [--keep DIR]

Each size is a fresh SQLite file made with the project's own schema (migrate), filled by set-based
SQL (a recursive CTE: seconds, not the hours real polls would take): stories spread over two years
across SOURCES sources, two deliveries each (mostly sent, some skipped, a few failed, a handful
pending). The store is then opened as the daemon opens it (its start-up maintenance included), and
measured, each figure a median of a few runs with its goal beside it:

- a poll: 50 new stories x 2 targets stored (Repository.store_poll, the pipeline's own call), then
  the delivery round's same-link check for each of its 100 deliveries;
- the due deliveries of a target;
- `bridge status`, text and --json (status.collect + render / to_json);
- one /metrics scrape (the daemon's registry, rendered as Prometheus reads it).

`--quick` stops after 100 k. Numbers are for people; tests only keep the script runnable.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from inspect import signature
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prometheus_client import generate_latest  # noqa: E402

from bridge import status  # noqa: E402
from bridge.config import parse_config  # noqa: E402
from bridge.metrics import Metrics  # noqa: E402
from bridge.model import Item  # noqa: E402
from bridge.store.db import create_database_engine  # noqa: E402
from bridge.store.migrations import migrate  # noqa: E402
from bridge.store.repo import Repository  # noqa: E402

SIZES = (1_000, 100_000, 1_000_000)
QUICK_SIZES = (1_000, 100_000)
SOURCES = 50
TARGETS = ("x", "x_en")
SPAN = timedelta(days=730)
NOW = datetime(2026, 12, 2, 3, 0, tzinfo=timezone.utc)
RUNS = 5
GOAL_POLL_RATIO = 1.5
GOAL_STATUS_S = 0.5
GOAL_METRICS_MS = 50.0

KEEP = timedelta(days=400)
GOAL_PRUNE_BATCH_MS = 100.0
"""The longest a pruning batch may hold the write lock (the heartbeat and a mark_sent wait behind it)."""

try:  # the store's own maintenance (PRAGMA optimize, pruning), where this version of the bridge has it
    from bridge.store.maintenance import maintain, prune, reclaim  # noqa: E402
except ImportError:  # pragma: no cover - older versions open the store with no maintenance
    prune = reclaim = None

    def maintain(engine) -> None:
        return None

_FILL = """
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < :count - 1)
INSERT INTO items (id, source, key, url, link, title, summary, published_at, categories, image_url,
                   first_seen_at)
SELECT i + 1, 'src' || (i % :sources),
       'site' || (i % :sources) || '.example/berita/' || i,
       'site' || (i % :sources) || '.example/berita/' || i,
       'https://www.site' || (i % :sources) || '.example/berita/' || i || '/menpora-dorong-atlet-muda',
       'Menpora dorong atlet muda berprestasi di tingkat nasional dan internasional, berita nomor ' || i,
       'Jakarta (ANTARA) - Menteri Pemuda dan Olahraga mendorong atlet muda untuk terus berprestasi '
           || 'di berbagai ajang olahraga nasional maupun internasional, kata dia pada hari ke-' || i,
       datetime(:start + i * :step, 'unixepoch') || '.000000', 'Olahraga' || char(10) || 'Nasional',
       'https://www.site' || (i % :sources) || '.example/foto/' || i || '.jpg',
       datetime(:start + i * :step + 60, 'unixepoch') || '.000000'
FROM n
"""
_DELIVER = """
INSERT INTO deliveries (item_id, target, recipient, state, attempts, last_error, created_at, updated_at,
                        sent_at, cost, remote_id, post_text, first_attempt_at, last_attempt_at)
SELECT id, :target, '', s.state, CASE s.state WHEN 'skipped' THEN 0 ELSE 1 END,
       CASE s.state WHEN 'failed' THEN 'X answered 403: You are not permitted to perform this action.'
                    WHEN 'skipped' THEN 'first run: only remembered' END,
       first_seen_at, first_seen_at,
       CASE s.state WHEN 'sent' THEN first_seen_at END, CASE s.state WHEN 'sent' THEN 0.2 END,
       CASE s.state WHEN 'sent' THEN '19' || id END,
       CASE WHEN s.state IN ('sent', 'failed') THEN title || ' ' || link || ' #Olahraga #Nasional' END,
       CASE WHEN s.state IN ('sent', 'failed') THEN first_seen_at END,
       CASE WHEN s.state IN ('sent', 'failed') THEN first_seen_at END
FROM (SELECT id, title, link, first_seen_at,
             CASE WHEN id > :count - 5 THEN 'pending' WHEN id % 100 = 7 THEN 'failed'
                  WHEN id % 11 = 3 THEN 'skipped' ELSE 'sent' END AS state
      FROM items) AS s
"""


def generate(url: str, count: int) -> float:
    """Fill a new database at `url` with `count` stories; seconds taken."""
    started = time.perf_counter()
    engine = create_database_engine(url)
    migrate(engine)
    start = int((NOW - SPAN).timestamp())
    params = {"count": count, "sources": SOURCES, "start": start, "step": SPAN.total_seconds() / count}
    with engine.begin() as conn:
        conn.exec_driver_sql("PRAGMA cache_size=-200000")
        conn.exec_driver_sql(_FILL, params)
        for target in TARGETS:
            conn.exec_driver_sql(_DELIVER, {"target": target, "count": count})
        for s in range(SOURCES):
            conn.exec_driver_sql(
                "INSERT INTO sources (name, url, initialised, consecutive_failures, last_poll_at, "
                "last_success_at, last_outcome, next_poll_at, last_items_seen) VALUES (?, ?, 1, 0, ?, ?, 'ok', ?, 50)",
                (f"src{s}", f"https://www.site{s}.example/rss", _text(NOW), _text(NOW), _text(NOW + timedelta(minutes=5))))
    engine.dispose()
    return time.perf_counter() - started



def _text(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


def config_for():
    raw = {
        "bridge": {"database": "sqlite:///unused.db", "dry_run": True, "timezone": "Asia/Jakarta"},
        "sources": [{"name": f"src{s}", "url": f"https://www.site{s}.example/rss", "targets": list(TARGETS)}
                    for s in range(SOURCES)],
        "targets": {name: {"kind": "x"} for name in TARGETS},
    }
    return parse_config(raw, environ={}, secrets=False)


def median_ms(function, runs: int = RUNS) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def measure(url: str, config) -> dict[str, float]:
    engine = create_database_engine(url)
    maintain(engine)  # as the daemon does when it opens the store
    repo = Repository(engine)
    run = time.time_ns()  # new keys in every run, also in a database kept from an earlier run
    polls = iter(range(1_000_000))
    store_ms, check_ms = [], []

    def poll() -> None:
        n = next(polls)
        items = [Item(key=f"new.example/{run}/{n}/{i}", title=f"Berita baru {n}-{i}",
                      link=f"https://new.example/{run}/{n}/{i}", url=f"new.example/{run}/{n}/{i}", summary="Ringkasan berita baru. " * 8) for i in range(50)]
        started = time.perf_counter()
        repo.store_poll("src0", "https://www.site0.example/rss", items, list(TARGETS), now=NOW, skip={},
                        etag=None, last_modified=None, next_poll_at=NOW + timedelta(minutes=5))
        stored = time.perf_counter()
        for item in items:
            for target in TARGETS:
                repo.carried_elsewhere(item.url, "src0", target)
        store_ms.append((stored - started) * 1000)
        check_ms.append((time.perf_counter() - stored) * 1000)

    for _ in range(RUNS):
        poll()
    figures = {"store": statistics.median(store_ms), "check": statistics.median(check_ms)}
    figures["poll"] = figures["store"] + figures["check"]
    figures["due"] = median_ms(lambda: repo.due_deliveries("x", NOW, 50))
    figures["status"] = median_ms(lambda: status.render(status.collect(repo, config, NOW)))
    figures["status_json"] = median_ms(lambda: status.to_json(status.collect(repo, config, NOW)))
    rt = SimpleNamespace(repo=repo, config=config)
    metrics = Metrics(lambda: rt, lambda: 1.0)
    figures["metrics"] = median_ms(lambda: generate_latest(metrics.registry))
    if prune is not None:
        figures.update(measure_prune(engine, url))
    engine.dispose()
    return figures


_PROBE = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60)
conn.execute("PRAGMA synchronous=FULL")
conn.execute("PRAGMA wal_autocheckpoint=0")  # its commits measure the wait for the lock, not checkpoints
waits = []
print("ready", flush=True)
while not sys.stdin.closed:
    started = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE sources SET consecutive_failures = consecutive_failures WHERE name = 'src0'")
    conn.execute("COMMIT")
    waits.append(time.perf_counter() - started)
    time.sleep(0.005)
    if waits and len(waits) % 20 == 0:
        import select
        if select.select([sys.stdin], [], [], 0)[0]:
            break
waits.sort()
print(f"{waits[-1] * 1000:.1f} {waits[int(len(waits) * 0.99)] * 1000:.1f} {len(waits)}", flush=True)
"""
"""Another writer (the heartbeat, a mark_sent) in a process of its own: a one-row write every 5 ms
while pruning runs; its longest wait is the longest write-lock hold it met (plus its own commit)."""


def measure_prune(engine, url: str) -> dict[str, float]:
    """Prune what is older than KEEP (the stories of the first year), then give the space back.
    Batches are timed from between them (a checkpoint after a commit counts, though it holds no
    lock) and, as another writer sees them, by a probe process writing meanwhile."""
    import subprocess

    marks: list[float] = []  # each batch's start and end: the rests between batches are not batches

    def rest(seconds: float) -> None:
        marks.append(time.perf_counter())
        time.sleep(seconds)
        marks.append(time.perf_counter())

    path = Path(url.removeprefix("sqlite:///"))
    probe = subprocess.Popen([sys.executable, "-c", _PROBE, str(path)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    probe.stdout.readline()
    started = time.perf_counter()
    cpu = time.process_time()
    marks.append(started)
    pruned = prune(engine, KEEP, NOW, **({"rest": rest} if "rest" in signature(prune).parameters else {}))
    marks.append(time.perf_counter())
    pruned_s = time.perf_counter() - started
    pruned_cpu = time.process_time() - cpu
    probe.stdin.write("stop\n")
    probe.stdin.flush()
    waited_ms, waited_p99_ms, probes = (float(x) for x in probe.stdout.readline().split())
    probe.wait()
    started = time.perf_counter()
    pages = reclaim(engine)
    with engine.connect() as conn:
        conn.connection.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    gaps = sorted(b - a for a, b in zip(marks[::2], marks[1::2]))
    longest = max(gaps, default=0.0)
    return {"pruned": pruned, "prune_s": pruned_s, "prune_cpu_s": pruned_cpu, "prune_batch_ms": longest * 1000,
            "prune_batches": len(gaps), "prune_batch_p99_ms": gaps[int(len(gaps) * 0.99)] * 1000 if gaps else 0.0,
            "probe_wait_ms": waited_ms, "probe_wait_p99_ms": waited_p99_ms, "probes": probes,
            "reclaimed_mib": pages * 4096 / 2**20, "reclaim_s": time.perf_counter() - started,
            "size_mib": path.stat().st_size / 2**20}


def line(name: str, value: str, goal: str = "") -> None:
    print(f"{name:<58} {value:>12}   {goal}")


def main(argv: list[str] | None = None, sizes: tuple[int, ...] | None = None) -> dict[int, dict[str, float]]:
    parser = argparse.ArgumentParser(description="The store's hot paths at 1 k, 100 k and 1 M stories.")
    parser.add_argument("--quick", action="store_true", help="1 k and 100 k only")
    parser.add_argument("--keep", metavar="DIR", help="keep (and reuse) the generated databases in DIR")
    args = parser.parse_args(argv)
    sizes = sizes or (QUICK_SIZES if args.quick else SIZES)
    config = config_for()
    results: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.keep or scratch)
        folder.mkdir(parents=True, exist_ok=True)
        for size in sizes:
            path = folder / f"store-{size}.db"
            if not path.exists():
                line(f"generate {size:,} stories x {len(TARGETS)} targets", f"{generate(f'sqlite:///{path}', size):.1f} s")
            figures = results[size] = measure(f"sqlite:///{path}", config)
            base = results[sizes[0]]
            ratio = figures["poll"] / base["poll"]
            line(f"{size:>9,}: store a poll of 50 new x {len(TARGETS)} targets", f"{figures['store']:.1f} ms")
            line(f"{size:>9,}: same-link check of its {50 * len(TARGETS)} deliveries", f"{figures['check']:.1f} ms")
            line(f"{size:>9,}: poll path (both)", f"{figures['poll']:.1f} ms",
                 f"x{ratio:.2f} of {sizes[0]:,} (goal <= x{GOAL_POLL_RATIO})")
            line(f"{size:>9,}: due deliveries of a target", f"{figures['due']:.1f} ms")
            for key, name in (("status", "bridge status"), ("status_json", "bridge status --json")):
                line(f"{size:>9,}: {name}", f"{figures[key] / 1000:.3f} s", f"(goal < {GOAL_STATUS_S} s)")
            line(f"{size:>9,}: one /metrics scrape", f"{figures['metrics']:.1f} ms", f"(goal < {GOAL_METRICS_MS:.0f} ms)")
            if "pruned" in figures:
                line(f"{size:>9,}: prune {figures['pruned']:,} stories older than {KEEP.days}d",
                     f"{figures['prune_s']:.1f} s", f"longest batch {figures['prune_batch_ms']:.0f} ms "
                     f"(goal < {GOAL_PRUNE_BATCH_MS:.0f} ms)")
                line(f"{size:>9,}:   {figures['prune_batches']:,} batches, {figures['prune_cpu_s']:.1f} s CPU",
                     f"p99 {figures['prune_batch_p99_ms']:.0f} ms")
                line(f"{size:>9,}:   another writer meanwhile: longest wait", f"{figures['probe_wait_ms']:.0f} ms",
                     f"p99 {figures['probe_wait_p99_ms']:.0f} ms over {figures['probes']:.0f} writes "
                     f"(goal < {GOAL_PRUNE_BATCH_MS:.0f} ms)")
                line(f"{size:>9,}: space given back", f"{figures['reclaimed_mib']:.0f} MiB",
                     f"in {figures['reclaim_s']:.1f} s, file now {figures['size_mib']:.0f} MiB")
    return results


if __name__ == "__main__":
    main()
