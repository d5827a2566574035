"""Several replicas on one PostgreSQL, in numbers (issue 13). Run:
    .venv/bin/python bench/bench_replicas.py [--quick] [--replicas 1,2,3] [--latency 0.3]

A backlog of stories (40 feeds served on 127.0.0.1, every story new, `first_run = "all"`) waits to
go to two networks that each take `--latency` seconds to answer (the X and Telegram fakes of
tests/fakes). 1, 2 and 3 `bridge run` replicas share one fresh PostgreSQL database. The replica
that polled a story queues it and posts at once; the others find the backlog at their next delivery
round (`delivery_interval`, 30 s by default), so counting starts `--warmup` seconds after the first
post, and the posts made in the next `--window` seconds are counted: the steady state of a backlog. The figure is
deliveries per minute, and its ratio to one replica (goal: at least 1.8x with 2 replicas and 2.5x
with 3). Each run also checks the promise: no story reached a network twice.

Only the CLI and settings.toml keys are relied on (bench/cycle_bridge.py runs the processes).
PostgreSQL: the machine's local server (127.0.0.1:5432, trust auth), or --postgres URL; the
database bench_replicas is created and dropped.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa  # noqa: E402
from cycle_bridge import Bridge, wait_for  # noqa: E402
from cycle_origin import feed_url, start_origin, story, write_feed  # noqa: E402

from tests.fakes.http_fake import Answer  # noqa: E402
from tests.fakes.telegram import BOT_TOKEN, FakeTelegram  # noqa: E402
from tests.fakes.x_api import FakeXApi  # noqa: E402

GOALS = {2: 1.8, 3: 2.5}
"""Deliveries per minute as a multiple of one replica's (the issue's near-linear goal)."""
DATABASE = "bench_replicas"
"""The database each run creates afresh (and drops), unless --database names another."""


def slow(fake_class, latency: float):
    """A network fake whose every answer takes `latency` seconds (real networks are far away)."""
    class Slow(fake_class):
        def handle(self, request) -> Answer:
            answer = super().handle(request)
            answer.delay = max(answer.delay, latency)
            return answer
    return Slow


class Replica(Bridge):
    def environment(self) -> dict[str, str]:
        env = super().environment()
        env["BRIDGE_TELEGRAM_BOT_TOKEN"] = BOT_TOKEN
        return env


def settings_text(database: str, urls: list[str], x_base: str, telegram_base: str) -> str:
    sources = "".join(f'[[sources]]\nname = "feed{index:02d}"\nurl = "{url}"\nkind = "feed"\n'
                      f'targets = ["x", "telegram"]\nmax_age = "3650d"\nstory_pages = false\n\n' for index, url in enumerate(urls))
    return f"""[bridge]
database = "{database}"
poll_interval = "1h"
first_run = "all"
burst_limit = 100000
dry_run = false
log_level = "warning"

{sources}[targets.x]
kind = "x"
api_base = "{x_base}"
max_per_day = 100000
budget_per_day = 100000
images = false

[targets.telegram]
kind = "telegram"
chat_id = "@kemenpora"
api_base = "{telegram_base}"
max_per_day = 100000
images = false
"""


def fresh_database(server: str, name: str) -> str:
    admin = sa.create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return f"{server}/{name}"


def drop_database(server: str, name: str) -> None:
    admin = sa.create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def sent_count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        try:
            return conn.execute(sa.text("SELECT count(*) FROM deliveries WHERE state = 'sent'")).scalar_one()
        except sa.exc.ProgrammingError:  # the first replica has not created the schema yet
            return 0


def run(replicas: int, *, feeds: int, stories: int, latency: float, window: float, server: str,
        name: str = DATABASE, warmup: float = 35.0) -> dict:
    database = fresh_database(server, name)
    x_api = slow(FakeXApi, latency)().start()
    telegram = slow(FakeTelegram, latency)().start()
    with tempfile.TemporaryDirectory(prefix="bench-replicas-") as folder:
        root = Path(folder) / "feeds"
        root.mkdir()
        for index in range(feeds):
            write_feed(root, index, [story(index, n) for n in range(stories)])
        origin = start_origin("auto", root)
        engine = sa.create_engine(database)
        bridges = []
        try:
            settings = settings_text(database, [feed_url(i, origin.port) for i in range(feeds)],
                                     x_api.base_url, telegram.base_url)
            for n in range(replicas):
                (Path(folder) / f"r{n}").mkdir()
                bridge = Replica(Path(folder) / f"r{n}", settings)
                bridge.start()
                bridges.append(bridge)

            def alive() -> None:
                for b in bridges:
                    b.check_alive()

            if not wait_for(lambda: sent_count(engine) > 0, 120, alive=alive, tick=0.2):
                raise RuntimeError("no post went out in 120 s:\n" + bridges[0].tail())
            # A replica that did not poll the backlog in joins at its next delivery round: count from
            # when every replica has had one (the default delivery_interval, 30 s, and a margin).
            time.sleep(warmup)
            alive()
            before, started = sent_count(engine), time.monotonic()
            time.sleep(window)  # a benchmark of real processes: wall time is what it measures
            after, elapsed = sent_count(engine), time.monotonic() - started
            alive()
        finally:
            for bridge in bridges:
                bridge.stop()
            engine.dispose()
            drop_database(server, name)
            origin.close()
            x_api.stop()
            telegram.stop()
    texts = Counter(t["text"] for t in x_api.tweets)
    messages = Counter(m.get("text") or m.get("caption") for m in telegram.messages)
    doubled = sum(c - 1 for c in texts.values() if c > 1) + sum(c - 1 for c in messages.values() if c > 1)
    return {"replicas": replicas, "per_minute": (after - before) / elapsed * 60, "doubled": doubled,
            "backlog": feeds * stories * 2}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", default="1,2,3", help="comma-separated replica counts (default 1,2,3)")
    parser.add_argument("--latency", type=float, default=0.3, help="seconds each network answer takes")
    parser.add_argument("--window", type=float, default=30.0, help="seconds of posting counted per run")
    parser.add_argument("--warmup", type=float, default=35.0,
                        help="seconds after the first post before counting (every replica has had a round)")
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432",
                        help="the server, without a database name")
    parser.add_argument("--database", default=DATABASE, help=f"the database created and dropped (default {DATABASE})")
    parser.add_argument("--quick", action="store_true", help="small backlog, at most a 10 s window")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.replicas.split(",")]
    feeds, stories, window = (40, 30, args.window) if not args.quick else (4, 10, min(args.window, 10.0))
    print(f"{feeds} feeds x {stories} stories x 2 networks answering in {args.latency * 1000:.0f} ms; "
          f"posts counted over {window:.0f} s, {args.warmup:.0f} s after the first")
    base, results = None, []
    for replicas in counts:
        result = run(replicas, feeds=feeds, stories=stories, latency=args.latency, window=window,
                     server=args.postgres, name=args.database, warmup=args.warmup)
        results.append(result)
        base = base or (result["per_minute"] if replicas == 1 else None)
        ratio = f"x{result['per_minute'] / base:.2f}" if base else "-"
        goal = f"goal >= x{GOALS[replicas]}" if replicas in GOALS else ""
        print(f"{replicas} replica(s): {result['per_minute']:7.1f} deliveries/min  {ratio:>6}  {goal:<15} "
              f"doubled: {result['doubled']}")
    return results


if __name__ == "__main__":
    main()
