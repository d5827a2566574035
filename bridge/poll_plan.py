"""The daemon's poll schedule: when each source is polled next, and the polls that come due
together run one after another on a few threads, not as one scheduler job each.

Why not one APScheduler job per source (as until 2026-12): every run was a scheduler wake-up, a
hand-off to a pool thread and a poll on cold CPU caches. On 1,000 sources answering 304, spread
over a 30 s interval, that cost about 1.1 ms of CPU per poll; the same polls run back to back, a
batch every half second, cost 0.3 ms (bench/bench_cycle.py --only warm, and README "Performance").

What the per-source jobs promised, kept here:
- a source is polled at most once at a time: a run that comes due while its last one still goes
  is skipped (on_skip: the bridge_jobs_still_running_total metric) and the next follows the interval;
- a late run (a busy machine, a suspend) runs once, not once per interval it missed;
- polls of different sources are spread by a jitter, up to `jitter` seconds after each interval;
- a new plan (a reload) leaves a source whose interval did not change in its place; a new source,
  or a new interval, is polled now.
Time is the monotonic clock: a wall clock set back or forward moves no poll.
"""

from __future__ import annotations

import heapq
import itertools
import random
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable

import structlog

log = structlog.get_logger("bridge")

DISPATCH_SPACING = 0.5
"""Seconds between two hand-outs of due polls: what comes due meanwhile waits for the next one, so
a cycle over many sources is polled in batches (a poll is at most this late). A single source
due after a quiet spell is handed out the moment it is due."""
IDLE_WAKE = 5.0
"""The dispatcher wakes at least this often with nothing due, to prove it is alive (alive())."""
RUNNER_SHARE = 256
"""Polls handed out at once per thread polling them: a warm batch (tens of sites answering 304)
is run by one thread one poll after another, which is what makes it cheap (threads contending
for the GIL cost more CPU than the polls: 0.45-0.50 ms a poll with a thread per 64, 0.28-0.29 ms
with one per 256, same benchmark). Polls still waiting at the next hand-out (slow or hanging
sites ahead of them, or a cold start) get a thread each, up to `concurrency`: a site that does
not answer delays another source by one DISPATCH_SPACING at most."""


@dataclass
class _Planned:
    interval: float
    jitter: float
    base: float
    """When its latest run was (or its first will be) due before the jitter: the next is one interval on."""
    due: float
    version: int = -1
    """Of its one heap entry that counts (PollPlan._push); older entries are skipped when they come up."""


class PollPlan:
    """Each planned source's next due time, on the monotonic clock. Thread-safe."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic,
                 jitter_fraction: Callable[[], float] = random.random):
        self._monotonic = monotonic
        self._fraction = jitter_fraction
        self._lock = threading.Lock()
        self._planned: dict[str, _Planned] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._running: set[str] = set()
        self._versions = itertools.count()  # one sequence for every source: a removed and re-added
        # source never matches an entry left from before its removal

    def plan(self, sources: Iterable[tuple[str, float, float]]) -> None:
        """Make `sources` ((name, interval s, jitter s) each) the plan: new ones and those whose
        interval changed are due now, unchanged ones keep their next poll, the others leave it."""
        now = self._monotonic()
        with self._lock:
            wanted = {name: (interval, jitter) for name, interval, jitter in sources}
            for name in set(self._planned) - set(wanted):
                del self._planned[name]  # its heap entries are dropped when they come up
            for name, (interval, jitter) in wanted.items():
                planned = self._planned.get(name)
                if planned is not None and planned.interval == interval:
                    planned.jitter = jitter
                    continue
                self._planned[name] = _Planned(interval, jitter, base=now, due=now)
                self._push(name)

    def soon(self, name: str, delay: float = 0.0) -> None:
        """Poll `name` `delay` seconds from now, and by its interval from then on."""
        with self._lock:
            planned = self._planned.get(name)
            if planned is None:
                return  # removed by a reload meanwhile
            planned.base = planned.due = self._monotonic() + max(delay, 0.0)
            self._push(name)

    def take_due(self) -> tuple[list[str], list[str]]:
        """The sources due now, each marked running until done(); and those due but still
        running, skipped. Either way the source's next poll is planned."""
        now = self._monotonic()
        due, skipped = [], []
        with self._lock:
            while self._heap and self._heap[0][0] <= now:
                _, version, name = heapq.heappop(self._heap)
                planned = self._planned.get(name)
                if planned is None or planned.version != version:
                    continue  # removed, or planned again since this entry
                (skipped if name in self._running else due).append(name)
                self._running.add(name)
                self._plan_next(name, planned, now)
        return due, skipped

    def done(self, name: str) -> None:
        with self._lock:
            self._running.discard(name)

    def next_due_in(self) -> float | None:
        """Seconds until the earliest planned poll (0 when one is due), None when nothing is planned."""
        with self._lock:
            while self._heap:
                due, version, name = self._heap[0]
                planned = self._planned.get(name)
                if planned is not None and planned.version == version:
                    return max(due - self._monotonic(), 0.0)
                heapq.heappop(self._heap)
        return None

    def due_in(self, name: str) -> float | None:
        """Seconds until `name`'s next poll (negative when late), None when it is not planned."""
        with self._lock:
            planned = self._planned.get(name)
            return None if planned is None else planned.due - self._monotonic()

    def __contains__(self, name: str) -> bool:
        with self._lock:
            return name in self._planned

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._planned)

    def _plan_next(self, name: str, planned: _Planned, now: float) -> None:
        base = planned.base + planned.interval
        if base <= now:  # late: run once now, then back on the interval (never a burst of catch-ups)
            base += planned.interval * (int((now - base) // planned.interval) + 1)
        planned.base = base
        planned.due = base + planned.jitter * self._fraction()
        self._push(name)

    def _push(self, name: str) -> None:
        planned = self._planned[name]
        planned.version = next(self._versions)
        heapq.heappush(self._heap, (planned.due, planned.version, name))


class PollDispatcher:
    """Runs a PollPlan: one thread waits for the next due poll and hands what is due to at most
    `concurrency` threads, each polling its share one source after another (run_one(name))."""

    def __init__(self, plan: PollPlan, run_one: Callable[[str], None], concurrency: int, *,
                 on_skip: Callable[[str], None] = lambda _name: None,
                 monotonic: Callable[[], float] = time.monotonic, spacing: float = DISPATCH_SPACING):
        self.plan = plan
        self._run_one = run_one
        self._concurrency = max(1, concurrency)
        self._on_skip = on_skip
        self._monotonic = monotonic
        self._spacing = spacing
        self._pool = ThreadPoolExecutor(self._concurrency, thread_name_prefix="poll")
        self._lock = threading.Condition()
        self._queue: deque[str] = deque()
        self._runners = 0
        self._stopped = False
        self._woken = False
        self._awake_at: float | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._dispatch_forever, name="poll dispatcher", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        """The plan changed (a reload, a poll moved sooner): look at it now."""
        with self._lock:
            self._woken = True
            self._lock.notify_all()

    def soon(self, name: str, delay: float = 0.0) -> None:
        self.plan.soon(name, delay)
        self.wake()

    def alive(self, max_age: float) -> bool:
        """False when the dispatcher thread died, or has not looked at the plan for `max_age`
        seconds (for the heartbeat); True before start(), when it has nothing to prove yet."""
        if self._thread is None:
            return True
        awake = self._awake_at
        return self._thread.is_alive() and awake is not None and self._monotonic() - awake <= max_age

    def stop(self) -> None:
        """No poll starts any more; polls in flight finish (the daemon waits for them itself)."""
        with self._lock:
            self._stopped = True
            self._queue.clear()
            self._lock.notify_all()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def dispatch(self) -> None:
        """Hand out the polls due now."""
        due, skipped = self.plan.take_due()
        for name in skipped:
            log.debug("poll still running: its next run follows the interval", source=name)
            self._on_skip(f"poll {name}")
        if not due:
            return
        with self._lock:
            if self._stopped:
                for name in due:
                    self.plan.done(name)
                return
            self._queue.extend(due)
            self._add_runners()

    def _dispatch_forever(self) -> None:
        last = None
        while True:
            with self._lock:
                if self._stopped:
                    return
                self._awake_at = self._monotonic()
                wait = self.plan.next_due_in()
                wait = IDLE_WAKE if wait is None else min(wait, IDLE_WAKE)
                if self._queue:  # polls wait behind slower ones: look again after one spacing
                    wait = min(wait, self._spacing)
                if last is not None:  # batches: never two hand-outs closer than the spacing
                    wait = max(wait, last + self._spacing - self._monotonic())
                if wait > 0 and not self._woken:
                    self._lock.wait(wait)
                self._woken = False
                if self._stopped:
                    return
                if last is not None and self._monotonic() < last + self._spacing:
                    continue  # woken early (a reload): wait out the spacing first
                if self._queue:  # still waiting since the last hand-out: a thread each
                    self._add_runners(stalled=True)
                    last = self._monotonic()
            if self.plan.next_due_in() == 0:
                try:
                    self.dispatch()
                except Exception as exc:  # never let the dispatcher die: polls would stop for good
                    log.error("poll dispatch failed: trying again", error=f"{type(exc).__name__}: {exc}")
                last = self._monotonic()

    def _add_runners(self, stalled: bool = False) -> None:
        """Under the lock: a thread per RUNNER_SHARE polls waiting; when they are `stalled` behind
        slower polls, a thread more per poll waiting. Up to the concurrency either way."""
        waiting = len(self._queue)
        wanted = self._runners + waiting if stalled else -(-waiting // RUNNER_SHARE)
        for _ in range(min(wanted, self._concurrency) - self._runners):
            self._runners += 1
            try:
                self._pool.submit(self._run)
            except RuntimeError:  # the pool is shut down: stopping
                self._runners -= 1
                return

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._queue or self._stopped:
                    self._runners -= 1
                    return
                name = self._queue.popleft()  # a backlog gets more threads at the next hand-out
            try:
                self._run_one(name)
            except Exception as exc:  # run_one reports its own failures; this is a last resort
                log.error("poll failed unexpectedly", source=name, error=f"{type(exc).__name__}: {exc}")
            finally:
                self.plan.done(name)
