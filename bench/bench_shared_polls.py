"""Shared polls in numbers (issue 13, item 4): polls per minute for 1,000 sources with 1 and 3 replicas
of `bridge run` on one PostgreSQL database. Run:
    .venv/bin/python bench/bench_shared_polls.py [--sources 1000] [--interval 1m] [--minutes 2] [--replicas 1,3]

Everything is local: generated feeds (10 stories each) served on 127.0.0.1 by nginx where installed
(else bench/cycle_origin.py's server), each source on a host name of its own (bench/localnames), and
the bridge's own CLI (`bridge run`, dry run) in one subprocess per replica, on a schema of this run's
own in the PostgreSQL database of BRIDGE_BENCH_POSTGRES_URL (default: postgres@127.0.0.1/test),
dropped at the end.

After a warm-up (every source read once, its first run stored, then one and a half intervals), the
origin counts the requests for about `--minutes` (whole intervals, starting between two waves of
polls: every job starts at once, so polls come in waves an interval apart). With shared polls the replicas together ask about
sources / interval times a minute, whatever their number, each replica about its share; without
them every replica would poll every source (3 replicas, 3x the requests to the sites).

The replicas are `bridge run` itself, side by side on PostgreSQL (leased delivery claims, issue
13 item 3; measured before those landed, each replica was `bridge run` with the run lock handed in).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def measure(replicas: int, args, database: str, folder: Path) -> dict:
    from tests.postgres_schemas import own_schema

    schema = f"bridge_bench_shared_polls_{os.getpid()}_{replicas}"
    with own_schema(database, schema) as url:
        return _measure_on(url, replicas, args, folder)


def _measure_on(url: str, replicas: int, args, folder: Path) -> dict:
    from sqlalchemy import create_engine, text

    from cycle_bridge import Bridge, cpu_seconds, settings_text, wait_for
    from cycle_origin import feed_url, start_origin, write_feeds

    root = folder / f"feeds-{replicas}"
    root.mkdir()
    write_feeds(root, args.sources, items=10)
    origin = start_origin("auto", root)
    bridges, processes = [], []
    try:
        urls = [feed_url(index, origin.port) for index in range(args.sources)]
        text_ = settings_text(urls, interval=args.interval, dry_run=True).replace(
            'database = "sqlite:///bridge.db"', f'database = "{url}"')
        for n in range(replicas):
            home = folder / f"replica-{replicas}-{n}"
            home.mkdir()
            bridge = Bridge(home, text_)
            bridge.start()  # `bridge run`
            bridges.append(bridge)
            processes.append(bridge.process)

        def alive():
            for bridge in bridges:
                bridge.check_alive()

        interval = _seconds(args.interval)
        if not wait_for(lambda: origin.answered()[0] >= args.sources, 20 * 60, alive=alive, tick=1):
            raise RuntimeError("the first round of polls did not end in 20 minutes")
        # Every job starts at once, so the polls come in waves an interval (plus up to its tenth of
        # jitter) apart: the count starts between two waves, once the first runs' stores are behind,
        # and lasts whole intervals, so it holds as many waves as the rate says, not one more or less.
        cycle = interval * 1.05
        time.sleep(cycle * 1.5)
        alive()
        before, cpu_before = origin.answered(), [cpu_seconds(p.pid) for p in processes]
        started = time.monotonic()
        time.sleep(max(1, round(args.minutes * 60 / cycle)) * cycle)
        after, elapsed = origin.answered(), time.monotonic() - started
        cpu = [cpu_seconds(p.pid) - c for p, c in zip(processes, cpu_before)]
        alive()
        engine = create_engine(url)
        with engine.connect() as conn:
            shares = sorted(n for (n,) in conn.execute(text(
                "SELECT count(*) FROM sources GROUP BY polled_by")).all())

        engine.dispose()
        minutes = elapsed / 60
        return {"replicas": replicas, "polls_per_min": (after[0] - before[0]) / minutes,
                "not_modified": (after[1] - before[1]) / max(1, after[0] - before[0]),
                "demand_per_min": args.sources * 60 / interval, "shares": shares,
                "cpu_per_min": [c / minutes for c in cpu]}
    finally:
        for bridge in bridges:
            bridge.stop()
        origin.close()


def _seconds(duration: str) -> float:
    from bridge.config.values import parse_duration

    return parse_duration(duration).total_seconds()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sources", type=int, default=1000)
    parser.add_argument("--interval", default="1m", help="every source's poll_interval")
    parser.add_argument("--minutes", type=float, default=2.0, help="how long the requests are counted")
    parser.add_argument("--replicas", default="1,3", help="replica counts to measure, comma-separated")
    args = parser.parse_args()
    database = os.environ.get("BRIDGE_BENCH_POSTGRES_URL", DEFAULT_DATABASE)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-shared-polls-") as folder:
        for count in (int(n) for n in args.replicas.split(",")):
            results.append(measure(count, args, database, Path(folder)))
            print(_line(results[-1], results[0]), flush=True)
    return 0


def _line(result: dict, first: dict) -> str:
    ratio = result["polls_per_min"] / first["polls_per_min"] if first["polls_per_min"] else 0.0
    cpu = ", ".join(f"{c:.1f}" for c in result["cpu_per_min"])
    return (f"{result['replicas']} replica(s): {result['polls_per_min']:.0f} polls/min "
            f"(demand {result['demand_per_min']:.0f}/min, x{ratio:.2f} of 1 replica, "
            f"{result['not_modified']:.0%} 304), sources last polled per replica {result['shares']}, "
            f"CPU s/min per replica [{cpu}]")


if __name__ == "__main__":
    sys.exit(main())
