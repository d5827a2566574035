"""Shared polls (issue 13, item 4): each source is polled once per interval by one of the replicas
on a PostgreSQL database, not once by each of them, and the sources spread across the replicas.

Every replica keeps its own schedule of every source (the daemon's poll plan, bridge/poll_plan.py),
and each run asks the database for the source's turn (store/poll_leases.py): it polls only if it takes the lease,
which moves the source's next_poll_at one interval on. Who asks first decides, so the replicas
agree on a preference: the live replica (replicas table) that ranks a source highest by a hash of
(source, replica) (rendezvous hashing) asks as soon as the source is due, every other replica only
`takeover_grace` later. The sources so spread evenly, a joining or leaving replica moves only its
share, and when the preferred replica stops (killed, host down, too busy) another takes the source
`takeover_grace` (at most a fifth of the interval) after it fell due: within one interval.

A replica whose turn it was not moves its own run to when it may take the source next, so the
schedules follow the database and no replica asks more than about once per interval per source.

Politeness: within one replica, sources of one host are still read one at a time (sources/polite.py).
Across replicas each source is polled once per interval, but two replicas may read two sources of
one host at the same moment (each keeps page_delay between its own requests).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from bridge.config import SourceConfig
from bridge.model import PollOutcome
from bridge.pipeline.polling import poll, read_as_new_feed
from bridge.pipeline.runtime import Runtime
from bridge.store import poll_leases, replicas

POLL_EARLY = timedelta(seconds=1)
"""The preferred replica takes a source due within this much (a tenth of the interval when that is
less, see poll_early): its run may fire a moment early."""
RETRY_AT_LEAST = timedelta(seconds=1)
"""A replica whose turn it was not asks again no sooner than this."""
PEERS_REFRESH = replicas.REPLICA_BEAT_INTERVAL
"""How often a replica re-reads which replicas are live (their rows renew at this pace)."""


def poll_early(interval: timedelta) -> timedelta:
    """How early the preferred replica may take a source. Never a whole interval: at a 1 s interval
    a 1 s margin let it take the lease on every ask, just after its last read (the cluster test's
    sources were read up to twice a second); an ask that early is now told when to come back."""
    return min(POLL_EARLY, interval / 10)


def takeover_grace(interval: timedelta) -> timedelta:
    """How long after a source fell due a replica other than its preferred one takes it: twice the
    daemon's jitter on the polls (a tenth of the interval, at most 60 s), so a preferred replica
    that is merely late by its jitter keeps its sources."""
    return min(interval / 5, timedelta(minutes=2))


@dataclass(frozen=True)
class NotOurTurn:
    """Another replica polls the source this interval; ask again at `retry_at`."""

    source: str
    retry_at: datetime
    polled_by: str | None


class SharedPolls:
    """One replica's side of the shared polls. Thread-safe (the daemon polls on many threads)."""

    def __init__(self, replica_id: str):
        self.replica_id = replica_id
        self._lock = threading.Lock()
        self._peers: tuple[str, ...] = (replica_id,)
        self._peers_read: datetime | None = None

    def poll(self, rt: Runtime, source: SourceConfig) -> PollOutcome | NotOurTurn:
        """Poll `source` if it is this replica's turn (the lease taken), else say when to ask again."""
        now = rt.clock()
        mine = self.preferred(rt, source.name, now) == self.replica_id
        grace = takeover_grace(source.poll_interval)

        def take() -> poll_leases.Turn:
            return poll_leases.take(rt.repo.engine, source.name, source.url, self.replica_id, now=now,
                                    due_by=now + poll_early(source.poll_interval) if mine else now - grace,
                                    next_poll_at=now + source.poll_interval)

        turn = take()
        if not turn.taken and turn.url is not None and turn.url != source.url:
            # Moved (a reload gave it a new URL): the schedule stored, a backoff above all, was the
            # old URL's. One replica restarts it due now (a compare-and-set), then one takes it.
            read_as_new_feed(rt, source, turn.url, due_now=True)
            turn = take()
        if not turn.taken:
            due = turn.next_poll_at or now
            return NotOurTurn(source.name, max(due if mine else due + grace, now + RETRY_AT_LEAST), turn.polled_by)
        # The lease stands for the backoff check: a source in backoff is not due, so not taken.
        return poll(rt, source, force=True)

    def preferred(self, rt: Runtime, name: str, now: datetime) -> str:
        """The live replica that should poll `name` (rendezvous hashing over the live replicas)."""
        return max(self.peers(rt, now), key=lambda replica: _rank(name, replica))

    def peers(self, rt: Runtime, now: datetime) -> tuple[str, ...]:
        with self._lock:
            fresh = self._peers_read is not None and self._peers_read <= now < self._peers_read + PEERS_REFRESH
            if fresh:
                return self._peers
        live = {row["id"] for row in replicas.live_replicas(rt.repo.engine, now)} | {self.replica_id}
        with self._lock:
            self._peers, self._peers_read = tuple(sorted(live)), now
            return self._peers


def _rank(name: str, replica: str) -> bytes:
    return hashlib.sha256(f"{name}\n{replica}".encode("utf-8")).digest()
