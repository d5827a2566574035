"""Feeds parsed off the GIL: a small pool of processes, one per CPU core, started once.

feedparser is pure Python and a 50-item feed costs tens of milliseconds of CPU: threads alone keep
a poll cycle of many feeds on one core. FeedParsers sends each body (bytes) to a worker process,
which runs the same parse_feed as in-process reading (sanitiser off, defused first, text reduced)
and sends the Items back.

One feed cannot take the cycle down with it:
- a parse past PARSE_DEADLINE_SECONDS is stopped inside its worker (an interval timer raises in
  it), and that source fails with one line; a worker that ignores its timer (stuck in C) is killed
  (see FeedParsers._wait for when);
- a worker that dies (a crash in a C extension, the OOM killer) breaks the pool for every parse in
  flight: the pool is replaced, and each of those parses is tried once more in a process of its
  own, so only the feed that kills its process fails.

Workers ignore SIGINT and SIGTERM (the parent handles them and shuts its workers down) and leave
on their own when the parent is gone, so a killed daemon leaves no orphans. `close()` shuts the pool down; `bridge
run`, `run --once` and the daemon's stop call it through service.close.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import wait as wait_for_exit

from bridge.errors import FeedParseError
from bridge.model import Item

PARSE_DEADLINE_SECONDS = 30.0
"""The most one feed's parse may take in a worker. A 10 MiB feed (max_feed_bytes) parses in a few
seconds; far past that the input is hostile."""
PARSE_KILL_GRACE = 5.0
"""How long past the deadline the parent waits for a worker that ignored its timer, before killing it."""
CLOSE_WAIT_SECONDS = 5.0
"""At a stop, how long the workers get to finish the parse in hand before they are killed."""
FEEDS_PER_WORKER = 250
"""Sources per parse worker (workers_for): a 50-item feed parses in ~20 ms, so 250 new feeds are
about 5 s of one core, and a cycle of unchanged ones parses nothing."""
ORPHAN_CHECK_SECONDS = 1.0
"""How often a worker checks that its parent is alive."""

Outcome = tuple[str, object]
"""What a worker sends back: ("ok", [Item, ...]) or ("error", reason)."""


class _ParseDeadline(BaseException):
    """Not an Exception: parse_feed turns feedparser's exceptions into FeedParseError, and the
    deadline must not pass for one of them."""


def parse_in_worker(body: bytes, url: str, headers: dict[str, str], tz: str, deadline: float) -> Outcome:
    """Runs in a worker: parse_feed under the source's time zone, stopped by a timer at `deadline`."""
    from bridge.sources.dates import assume_timezone
    from bridge.sources.feed import parse_feed

    def expire(_signum, _frame):
        raise _ParseDeadline

    signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, deadline)
    try:
        with assume_timezone(tz):
            return "ok", parse_feed(body, url=url, headers=headers)
    except FeedParseError as exc:
        return "error", exc.reason
    except _ParseDeadline:
        return "error", f"parsing took longer than {deadline:g}s: given up"
    except Exception as exc:  # a bug on hostile input fails this feed, as in-process reading would
        return "error", f"feed parser failed: {type(exc).__name__}: {exc}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _start_worker(parent: int, log_level: str) -> None:
    # The parent decides when workers end (close() at its stop): systemd's SIGTERM to the whole
    # unit, or a Ctrl-C to the terminal's process group, must not kill a parse the stop waits for.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from bridge.sources import dates

    def configure() -> None:  # a date warning from a worker reads like the parent's lines
        from bridge import logs

        logs.configure_logging(log_level)

    dates.before_first_log = configure  # structlog loads with the first line a worker logs

    def leave_with_parent() -> None:
        while os.getppid() == parent:
            time.sleep(ORPHAN_CHECK_SECONDS)
        os._exit(0)

    threading.Thread(target=leave_with_parent, name="orphan-check", daemon=True).start()


class FeedParsers:
    """parse(body, url, headers, tz) -> Items, in worker processes. Thread-safe; the pool starts at
    the first parse. `target` is the worker's function (tests give one that crashes or hangs)."""

    def __init__(self, workers: int | None = None, *, deadline: float = PARSE_DEADLINE_SECONDS,
                 kill_grace: float = PARSE_KILL_GRACE, target: Callable[..., Outcome] = parse_in_worker):
        self.workers = workers or available_cores()
        self.deadline, self.kill_grace = deadline, kill_grace
        self._target = target
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._closed = False
        self._alone_slots = threading.Semaphore(self.workers)
        """Retries alone after a crash, at most this many processes at once (memory, not speed)."""

    def parse(self, body: bytes, url: str, headers: dict[str, str], tz: str) -> list[Item]:
        pool = self._current()
        if pool is None:
            raise FeedParseError(url, "the bridge is stopping: not parsed")
        try:
            outcome = self._wait(pool, pool.submit(self._target, body, url, headers, tz, self.deadline))
        except (BrokenProcessPool, RuntimeError):  # RuntimeError: another thread replaced it just now
            self._replace(pool)
            outcome = self._alone(body, url, headers, tz)
        return _unwrap(outcome, url)

    def close(self) -> None:
        """Stop the workers: a parse in flight gets CLOSE_WAIT_SECONDS to finish, then its worker
        is killed (a stop must not wait on a hostile feed). Later parses raise FeedParseError."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is None:
            return
        # The executor's own handles (it offers no stop with a timeout): its processes, and the
        # thread that reaps them, which is let finish last so every exit is accounted for.
        processes = list((getattr(pool, "_processes", None) or {}).values())
        manager = getattr(pool, "_executor_manager_thread", None)
        pool.shutdown(wait=False, cancel_futures=True)
        # Their exits are watched, not waited for (the thread reaps them; two reapers race).
        running = {process.sentinel: process for process in processes}
        ends = time.monotonic() + CLOSE_WAIT_SECONDS
        while running and (left := ends - time.monotonic()) > 0:
            for ended in wait_for_exit(list(running), left):
                running.pop(ended)
        for process in running.values():
            process.kill()
        if manager is not None:
            manager.join(CLOSE_WAIT_SECONDS)

    # --- Internals -------------------------------------------------------------------------------

    def _new_pool(self, workers: int) -> ProcessPoolExecutor:
        # spawn, not fork: the daemon has threads (scheduler, HTTP, database), and a forked child
        # of a threaded process can inherit a lock some other thread held.
        # Workers log (an unreadable date) at the level this process logs at when they start.
        level = logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower()
        return ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker, initargs=(os.getpid(), level),
        )

    def _current(self) -> ProcessPoolExecutor | None:
        with self._lock:
            if self._closed:
                return None
            if self._pool is None:
                self._pool = self._new_pool(self.workers)
            return self._pool

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is broken:
                self._pool = None  # the next parse starts a fresh pool
        broken.shutdown(wait=False, cancel_futures=True)

    def _wait(self, pool: ProcessPoolExecutor, future: Future) -> Outcome:
        """The worker's answer. A parse queued behind others may wait long before it starts, so the
        backstop counts from when it is handed to a worker; it allows for one other parse ahead of
        it there (the pool passes a worker its next call early)."""
        backstop = 2 * self.deadline + self.kill_grace
        running_since: float | None = None
        while True:
            try:
                return future.result(timeout=min(1.0, self.deadline))
            except FutureTimeout:
                if not future.running():
                    continue
                running_since = running_since or time.monotonic()
                if time.monotonic() - running_since < backstop:
                    continue
            # The worker ignored its own timer (stuck in C code): only killing it frees it. Its
            # pool breaks; the other parses in it are tried again alone (see parse).
            _kill_workers(pool)
            self._replace(pool)
            return "error", f"parsing took longer than {self.deadline:g}s: its worker was stopped"

    def _alone(self, body: bytes, url: str, headers: dict[str, str], tz: str) -> Outcome:
        """Once more in a process of its own, after a worker died: if this feed was the cause, only
        it fails; if another feed was, this one parses."""
        with self._lock:
            if self._closed:
                return "error", "the bridge is stopping: not parsed"
        with self._alone_slots:
            solo = self._new_pool(1)
            try:
                return self._wait(solo, solo.submit(self._target, body, url, headers, tz, self.deadline))
            except BrokenProcessPool:
                return "error", "the feed parser's process died reading this feed (a crash in the parser)"
            finally:
                solo.shutdown(wait=False, cancel_futures=True)


def _unwrap(outcome: Outcome, url: str) -> list[Item]:
    status, value = outcome
    if status == "ok":
        return value  # type: ignore[return-value]
    raise FeedParseError(url, str(value))


def _kill_workers(pool: ProcessPoolExecutor) -> None:
    # ProcessPoolExecutor has no public way to end one worker; its process table is the only handle.
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.kill()


def workers_for(sources: int) -> int:
    """How many parse workers a daemon of `sources` sources starts: one per FEEDS_PER_WORKER, at
    most one per core. Each worker is ~30 MB (systemd's MemoryMax= counts it); a small
    installation's feeds parse in one worker well within a poll interval."""
    return max(1, min(available_cores(), -(-sources // FEEDS_PER_WORKER)))


def available_cores() -> int:
    """The CPU cores this process may use (a systemd CPUAffinity= or a container limits them)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)
