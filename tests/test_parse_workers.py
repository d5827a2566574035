"""Feeds parsed in worker processes: the same Items as in-process reading, and a feed that crashes
or hangs its worker fails alone, in one line, while the others are read."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from bridge.errors import FeedParseError
from bridge.pipeline.cycle import PollTally, poll_cycle
from bridge.service import close
from bridge.sources.dates import assume_timezone
from bridge.sources.feed import parse_feed
from bridge.sources.workers import FeedParsers, parse_in_worker
from tests.helpers import antara_feed, antara_item, make_config, runtime

FEED = antara_feed([antara_item(n) for n in (1, 2, 3)]).encode()
LOCAL_DATES = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><link>https://a.id</link>
<item><title>Satu</title><link>https://a.id/1</link><pubDate>Sen, 14 Okt 2024 10:00:00 WIB</pubDate></item>
<item><title>Dua</title><link>https://a.id/2</link><pubDate>26-07-2022 12:01:01</pubDate></item>
</channel></rss>"""


# Worker functions for the tests (module level: a spawned worker imports them by name).

def crash_on_marker(body, url, headers, tz, deadline):
    if b"CRASH" in body:
        os._exit(70)  # as a segfault in a C extension would end the process
    return parse_in_worker(body, url, headers, tz, deadline)


def hang_on_marker(body, url, headers, tz, deadline):
    if b"HANG" in body:
        signal.signal(signal.SIGALRM, signal.SIG_IGN)  # stuck where no timer reaches, as in C code
        time.sleep(3600)
    return parse_in_worker(body, url, headers, tz, deadline)


@pytest.fixture
def parsers():
    made: list[FeedParsers] = []

    def make(**options) -> FeedParsers:
        made.append(FeedParsers(**{"workers": 1, **options}))
        return made[-1]

    yield make
    for pool in made:
        pool.close()


def test_workers_read_what_in_process_reading_reads(parsers):
    """Items from a worker equal in-process parse_feed's, Indonesian dates and zone-less times included."""
    pool = parsers()
    for body in (FEED, LOCAL_DATES):
        with assume_timezone("Asia/Makassar"):
            expected = parse_feed(body, url="https://a.id/rss")
        assert pool.parse(body, "https://a.id/rss", {}, "Asia/Makassar") == expected
    assert pool.parse(LOCAL_DATES, "https://a.id/rss", {}, "Asia/Jakarta")[0].published.hour == 3


def test_not_a_feed_is_the_same_one_line_error(parsers):
    """A body that is no feed fails with FeedParseError's reason, as in-process reading says it."""
    with pytest.raises(FeedParseError, match="not a feed: got an HTML page"):
        parsers().parse(b"<html><body>Maaf</body></html>", "https://a.id/rss", {}, "Asia/Jakarta")


def test_a_feed_that_kills_its_worker_fails_alone(parsers):
    """A worker dying mid-parse fails that feed in one line; feeds parsed beside it are read."""
    pool = parsers(workers=2, target=crash_on_marker)
    results: dict[str, object] = {}

    def parse(name: str, body: bytes) -> None:
        try:
            results[name] = len(pool.parse(body, f"https://a.id/{name}", {}, "Asia/Jakarta"))
        except FeedParseError as exc:
            results[name] = exc.reason

    threads = [threading.Thread(target=parse, args=(f"good{n}", FEED)) for n in range(4)]
    threads.append(threading.Thread(target=parse, args=("bad", FEED.replace(b"ANTARA", b"CRASH"))))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.pop("bad") == "the feed parser's process died reading this feed (a crash in the parser)"
    assert results == {f"good{n}": 3 for n in range(4)}
    assert len(pool.parse(FEED, "https://a.id/after", {}, "Asia/Jakarta")) == 3  # a fresh pool


def test_a_parse_past_its_deadline_is_stopped_in_its_worker(parsers):
    """A parse that runs past the deadline is given up by its worker's timer; the worker goes on."""
    pool = parsers(deadline=0.02)
    pool.parse(FEED, "https://a.id/warm", {}, "Asia/Jakarta")  # the worker has started
    big = antara_feed([antara_item(n) for n in range(3000)]).encode()  # far more than 0.02 s of parsing
    with pytest.raises(FeedParseError, match=r"parsing took longer than 0.02s: given up"):
        pool.parse(big, "https://a.id/big", {}, "Asia/Jakarta")
    assert len(pool.parse(FEED, "https://a.id/next", {}, "Asia/Jakarta")) == 3


def test_a_worker_deaf_to_its_timer_is_killed(parsers):
    """A worker stuck where its timer cannot reach is killed; the next feed parses in a new one."""
    pool = parsers(deadline=0.3, kill_grace=3, target=hang_on_marker)  # grace: a new worker starts in it
    with pytest.raises(FeedParseError, match=r"took longer than 0.3s: its worker was stopped"):
        pool.parse(FEED.replace(b"ANTARA", b"HANG"), "https://a.id/hang", {}, "Asia/Jakarta")
    assert len(pool.parse(FEED, "https://a.id/next", {}, "Asia/Jakarta")) == 3


def test_close_ends_the_workers(parsers):
    """close() ends every worker process; a parse after it fails in one line instead of starting one."""
    pool = parsers(workers=2)
    pool.parse(FEED, "https://a.id/rss", {}, "Asia/Jakarta")
    processes = list(pool._pool._processes.values())
    pool.close()
    assert processes and not any(p.is_alive() for p in processes)
    with pytest.raises(FeedParseError, match="stopping"):
        pool.parse(FEED, "https://a.id/rss", {}, "Asia/Jakarta")


def test_a_crashing_feed_fails_its_source_not_the_cycle(feed_server, tmp_path, clock):
    """In a poll cycle, the source whose feed kills a parser fails with one warning; the other is stored."""
    feed_server.add("/good.xml", FEED)
    feed_server.add("/bad.xml", FEED.replace(b"ANTARA", b"CRASH"))
    rt = runtime(make_config({"good": feed_server.url("/good.xml"),
                              "bad": feed_server.url("/bad.xml").replace("127.0.0.1", "localhost")},
                             dry_run=True), tmp_path, clock)
    rt.parsers = FeedParsers(workers=1, target=crash_on_marker)
    try:
        tally = PollTally()
        with capture_logs() as logs:
            poll_cycle(rt, rt.config.enabled_sources, tally, force=True)
        counts = tally.take()
        assert (counts["polled"], counts["failed"], counts["new"]) == (2, 1, 3)
        [failed] = [e for e in logs if e["event"] == "poll failed"]
        assert failed["source"] == "bad" and "process died" in failed["error"] and "\n" not in failed["error"]
        assert not [e for e in logs if e["event"] == "job failed unexpectedly"]
    finally:
        close(rt)


def test_workers_outlive_a_sigterm_but_not_their_parent(tmp_path):
    """A SIGTERM to the unit leaves the workers to their parent's stop; a parent killed outright
    leaves no worker behind."""
    import subprocess
    import sys

    from tests.helpers import wait_until

    script = tmp_path / "parent.py"
    script.write_text(
        "import os, signal, sys, time\n"
        "from bridge.sources.workers import FeedParsers\n"
        "if __name__ == '__main__':\n"
        "    pool = FeedParsers(workers=1)\n"
        f"    pool.parse({FEED!r}, 'https://a.id/rss', {{}}, 'Asia/Jakarta')\n"
        "    [pid] = pool._pool._processes\n"
        "    os.kill(pid, signal.SIGTERM)\n"
        "    time.sleep(0.2)\n"
        "    print(pid, len(pool.parse(" + repr(FEED) + ", 'https://a.id/rss', {}, 'Asia/Jakarta')), flush=True)\n"
        "    time.sleep(3600)\n")
    root = str(Path(__file__).resolve().parent.parent)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": root})
    try:
        pid, items = (int(v) for v in parent.stdout.readline().split())
        assert items == 3 and _alive(pid)  # the SIGTERM did not end it, and it still parses
        parent.kill()
        parent.wait(10)
        assert wait_until(lambda: not _alive(pid), timeout=10)
    finally:
        if parent.poll() is None:
            parent.kill()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
