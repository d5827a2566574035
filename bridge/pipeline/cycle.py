"""A poll cycle: many sources polled at once, politely, and counted for one summary line.

`bridge run --once` polls every source through poll_cycle; the daemon schedules each source's poll
on its own interval in a pool of the same size ([bridge] poll_concurrency) and counts them with
the same PollTally. Either way a site is read one request at a time: sources on one host are polled
one after another by one worker (and their follow-up requests keep page_delay, sources/polite.py),
while sources on different hosts run side by side. Feeds are parsed in worker processes when the
runtime has them (sources/workers.py), so the cycle uses every core.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

import structlog

from bridge.config import SourceConfig
from bridge.model import PollOutcome
from bridge.pipeline.polling import poll
from bridge.pipeline.runtime import Runtime, ms_since
from bridge.sources.polite import host_of

log = structlog.get_logger("bridge")


class PollTally:
    """What polls did since the last summary: polled, unchanged, failed, new stories, queued posts,
    and how many sources are failing now. Thread-safe (polls end in many threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failing: set[str] = set()
        self._counts = self._zero()

    @staticmethod
    def _zero() -> dict[str, int]:
        return {"polled": 0, "unchanged": 0, "failed": 0, "new": 0, "queued": 0}

    def add(self, outcome: PollOutcome | None) -> None:
        if outcome is None or outcome.status == "skipped_backoff":
            return  # a poll that raised was logged by the job wrapper; a skip is no poll
        with self._lock:
            counts = self._counts
            counts["polled"] += 1
            if outcome.status == "error":
                counts["failed"] += 1
                self._failing.add(outcome.source)
                return
            self._failing.discard(outcome.source)
            if outcome.status == "not_modified" or not outcome.items_new:
                counts["unchanged"] += 1
            counts["new"] += outcome.items_new
            counts["queued"] += outcome.deliveries_created

    def take(self) -> dict[str, int]:
        """The counts since the last take (then reset), with `failing`: sources whose last poll failed."""
        with self._lock:
            counts, self._counts = self._counts, self._zero()
            return {**counts, "failing": len(self._failing)}

    def forget(self, sources: Iterable[str]) -> None:
        """Sources removed by a reload no longer count as failing."""
        with self._lock:
            self._failing.difference_update(sources)


def poll_cycle(rt: Runtime, sources: Sequence[SourceConfig], tally: PollTally, **poll_options) -> None:
    """Poll each of `sources` once, [bridge] poll_concurrency at a time, one at a time per host;
    `poll_options` go to poll() (force=True for `run --once`). Never raises for a source's failure."""
    from bridge.service import run_safely

    def poll_host(group: list[SourceConfig]) -> None:
        for source in group:
            if rt.stopping.is_set():
                return
            tally.add(run_safely(poll, rt, source, **poll_options))

    groups = by_host(sources)
    if not groups:
        return
    pool = ThreadPoolExecutor(max_workers=min(rt.config.bridge.poll_concurrency, len(groups)),
                              thread_name_prefix="poll")
    try:
        for future in [pool.submit(poll_host, group) for group in groups]:
            future.result()  # poll_host cannot raise (run_safely); this only waits
    except BaseException:  # Ctrl-C: no new poll starts; those in flight end within their deadlines
        rt.stopping.set()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def by_host(sources: Sequence[SourceConfig]) -> list[list[SourceConfig]]:
    """Sources grouped by the host they read, in settings order (the busiest host first, so the
    longest chain of polite polls starts at once)."""
    groups: dict[str, list[SourceConfig]] = {}
    for source in sources:
        groups.setdefault(host_of(source.url), []).append(source)
    return sorted(groups.values(), key=len, reverse=True)


def log_summary(event: str, counts: dict[str, int], started: float | None = None, **fields) -> None:
    """The periodic info line that stands for the per-poll lines logged at debug."""
    if started is not None:
        fields["duration_ms"] = ms_since(started)
    log.info(event, **counts, **fields)
