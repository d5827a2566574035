"""Shared polls on PostgreSQL (issue 13, item 4): replicas take turns at each source through a lease on
its row, so a source is polled once per interval (not once per replica), the sources spread across
the replicas, and a replica that stops has its sources taken over within one interval.

The replicas' poll loops are driven here as the daemon's poll plan drives them (each source on its
interval with the daemon's jitter, moved to when the database says the source may be ours), on an
injected clock, each poll real HTTP to the local feed server and real SQL on PostgreSQL."""

from __future__ import annotations

import heapq
import random
import threading
from datetime import timedelta

import pytest

from bridge.daemon import MAX_POLL_JITTER
from bridge.model import PollOutcome
from bridge.pipeline.shared_polls import NotOurTurn, SharedPolls, takeover_grace
from bridge.service import close
from bridge.store import poll_leases, replicas
from bridge.store.db import create_database_engine
from tests.conftest import _drop_all
from tests.helpers import antara_feed, antara_item, make_config, runtime

INTERVAL = timedelta(minutes=5)
SOURCES = 20


@pytest.fixture
def pg(postgres_url):
    engine = create_database_engine(postgres_url)
    _drop_all(engine)
    engine.dispose()
    yield postgres_url
    engine = create_database_engine(postgres_url)
    _drop_all(engine)
    engine.dispose()


class Replica:
    """One `bridge run`: its runtime, its row in the replicas table, its shared polls and its schedule."""

    def __init__(self, name: str, raw: dict, tmp_path, clock):
        self.name, self.clock = name, clock
        self.rt = runtime(raw, tmp_path, clock)
        self.shared = SharedPolls(name)
        self.polls: list[tuple[str, object]] = []
        self.asked = 0
        replicas.register(self.rt.repo.engine, name, host="test", pid=1, version="test", settings="s", now=clock())
        self.beaten = clock()
        self.alive = True

    def fire(self, source) -> object:
        """One run of the source's poll: the daemon's _poll_source without the poll plan."""
        if self.clock() - self.beaten >= replicas.REPLICA_BEAT_INTERVAL:
            replicas.beat(self.rt.repo.engine, self.name, self.clock())
            self.beaten = self.clock()
        self.asked += 1
        result = self.shared.poll(self.rt, source)
        if isinstance(result, PollOutcome):
            self.polls.append((source.name, self.clock()))
        return result


def simulate(replicas_, until, clock, stop_at=None, seed=7):
    """Run the replicas' poll jobs in time order up to `until`. Each job starts at once (the daemon's
    next_run_time=now) and fires again an interval (plus up to its jitter) after each run, or when
    the database said the source may be its turn. `stop_at`: {replica: when it stops}."""
    rng = random.Random(seed)
    jitter = min(INTERVAL / 10, MAX_POLL_JITTER).total_seconds()
    queue = []
    for n, replica in enumerate(replicas_):
        for source in replica.rt.config.sources:
            heapq.heappush(queue, (clock(), n, source.name))
    while queue:
        when, n, name = heapq.heappop(queue)
        if when > until:
            break
        replica = replicas_[n]
        if stop_at and replica.name in stop_at and when >= stop_at[replica.name]:
            replica.alive = False
            continue  # stopped: no more polls, no more heartbeats
        clock.now = max(clock.now, when)
        source = replica.rt.config.source(name)
        result = replica.fire(source)
        if isinstance(result, NotOurTurn):
            heapq.heappush(queue, (result.retry_at, n, name))
        else:
            heapq.heappush(queue, (when + INTERVAL + timedelta(seconds=rng.uniform(0, jitter)), n, name))


@pytest.fixture
def cluster(pg, feed_server, tmp_path, clock):
    feeds = {}
    for n in range(SOURCES):
        feed_server.add(f"/f{n}.xml", antara_feed([antara_item(n + 1)]), etag=f'"f{n}"')
        feeds[f"s{n:02d}"] = feed_server.url(f"/f{n}.xml")
    raw = make_config(feeds, dry_run=True, bridge={"database": pg, "poll_interval": "5m"})
    built = []

    def make(*names):
        built.extend(Replica(name, raw, tmp_path, clock) for name in names)
        return built[-len(names):]

    yield make
    for replica in built:
        close(replica.rt)


def polls_of(feed_server) -> dict[str, int]:
    return {f"s{n:02d}": len(feed_server.requests_to(f"/f{n}.xml")) for n in range(SOURCES)}


def test_two_replicas_poll_each_source_once_per_interval_and_share_them(cluster, feed_server, clock):
    """Two replicas' poll loops over 20 sources for 6 intervals: each source is polled 6 or 7 times
    (once per interval, not once per replica), both replicas poll, each source's polls are an
    interval apart (at most its jitter and a takeover's grace more), and after the first round each
    source stays with one replica."""
    a, b = cluster("replica-a", "replica-b")
    start = clock()
    simulate([a, b], start + 6 * INTERVAL - timedelta(seconds=1), clock)
    counts = polls_of(feed_server)
    assert all(6 <= count <= 7 for count in counts.values()), counts
    by_a = {name for name, _ in a.polls}
    by_b = {name for name, _ in b.polls}
    assert len(by_a) >= SOURCES // 4 and len(by_b) >= SOURCES // 4, (len(by_a), len(by_b))
    for name in counts:
        times = sorted(t for replica in (a, b) for source, t in replica.polls if source == name)
        gaps = [later - earlier for earlier, later in zip(times, times[1:])]
        assert all(INTERVAL - timedelta(seconds=1) <= gap <= INTERVAL + timedelta(seconds=30) +
                   takeover_grace(INTERVAL) for gap in gaps), (name, gaps)
    # Past the start (every replica asked at once), each source is polled by the replica that ranks
    # it first, so the split is steady: no source swings between replicas with their jitter.
    settled = start + INTERVAL + takeover_grace(INTERVAL)
    for replica in (a, b):
        for name, t in replica.polls:
            if t > settled:
                assert replica.shared.preferred(replica.rt, name, clock()) == replica.name, (name, t)
    # Asking is cheap and bounded too: about one ask per source per interval per replica.
    assert a.asked + b.asked <= 2 * SOURCES * 8


def test_a_replica_that_stops_has_its_sources_taken_over_within_one_interval(cluster, feed_server, clock):
    """Replica a stops after 3 intervals (no polls, no heartbeat): every source it polled is polled
    by b within one interval of falling due, and once a's row is stale b polls them at their interval."""
    a, b = cluster("replica-a", "replica-b")
    start = clock()
    stop = start + 3 * INTERVAL
    simulate([a, b], start + 8 * INTERVAL, clock, stop_at={"replica-a": stop})
    orphans = {name for name, t in a.polls}
    assert orphans, "replica a polled nothing before it stopped"
    for name in orphans:
        last_by_a = max(t for source, t in a.polls if source == name)
        taken = sorted(t for source, t in b.polls if source == name and t > last_by_a)
        assert taken, name
        assert taken[0] - last_by_a <= INTERVAL + takeover_grace(INTERVAL) + timedelta(seconds=30), name
        assert taken[0] - last_by_a < 2 * INTERVAL
        later = [t2 - t1 for t1, t2 in zip(taken, taken[1:]) if t1 > stop + replicas.REPLICA_GONE_AFTER]
        assert all(gap <= INTERVAL + timedelta(seconds=30) + timedelta(seconds=1) for gap in later), (name, later)
    counts = polls_of(feed_server)
    assert all(7 <= count <= 9 for count in counts.values()), counts


def test_two_replicas_asking_at_the_same_moment_take_a_source_once(cluster, clock):
    """The lease is one statement: 2 replicas x 20 threads asking for the same due source at one
    moment, 40 asks, one taken."""
    a, b = cluster("replica-a", "replica-b")
    now = clock()
    start = threading.Barrier(40)
    taken = []

    def ask(replica):
        start.wait(10)
        turn = poll_leases.take(replica.rt.repo.engine, "s00", "https://a.id/feed", replica.name, now=now,
                                due_by=now, next_poll_at=now + INTERVAL)
        taken.append(turn.taken)

    threads = [threading.Thread(target=ask, args=(r,)) for r in (a, b) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(taken) == [False] * 39 + [True]
    assert poll_leases.state(a.rt.repo.engine, "s00").next_poll_at == now + INTERVAL


def test_a_source_in_backoff_is_taken_by_no_replica_until_it_is_due(cluster, feed_server, clock):
    """A failing source's backoff is its next_poll_at: no replica polls it sooner, and the one that
    takes it when due polls it (the lease stands for the backoff check)."""
    feed_server.add_status("/f0.xml", 503)
    a, b = cluster("replica-a", "replica-b")
    source = a.rt.config.source("s00")
    first = a.fire(source) if a.shared.preferred(a.rt, "s00", clock()) == "replica-a" else b.fire(source)
    assert isinstance(first, PollOutcome) and first.status == "error"
    due = poll_leases.state(a.rt.repo.engine, "s00").next_poll_at
    assert due > clock() + INTERVAL / 2
    clock.now = due - timedelta(seconds=30)
    assert isinstance(a.fire(source), NotOurTurn) and isinstance(b.fire(source), NotOurTurn)
    clock.now = due + takeover_grace(INTERVAL)
    outcomes = [a.fire(source), b.fire(source)]
    assert [isinstance(o, PollOutcome) for o in outcomes].count(True) == 1
    assert len(feed_server.requests_to("/f0.xml")) == 2


def test_two_daemons_on_one_database_poll_each_source_once(pg, feed_server, tmp_path):
    """Two daemons (their real schedulers, each starting every source's poll job at once) on one
    PostgreSQL database: each source is read once, and the daemon whose turn it was not moves its
    job to when the source falls due, not to its own next tick."""
    from bridge.clock import utc_now
    from bridge.daemon import Daemon
    from bridge.store.lock import RunLock
    from tests.helpers import wait_until

    for n in range(4):
        feed_server.add(f"/f{n}.xml", antara_feed([antara_item(n + 1)]))
    # Two sites (the same server under two names): a daemon reads one site's sources one at a time,
    # the others of that site coming back HOST_BUSY_RETRY later.
    urls = {f"s{n}": feed_server.url(f"/f{n}.xml").replace("127.0.0.1", "localhost" if n % 2 else "127.0.0.1")
            for n in range(4)}
    raw = make_config(urls, dry_run=True,
                      bridge={"database": pg, "poll_interval": "1h"})
    # Until leased delivery claims replace the run lock on PostgreSQL, the second daemon is handed
    # a lock of its own: only the polls are shared here.
    daemons = [Daemon(runtime(raw, tmp_path, utc_now), run_lock=RunLock(f"test replica {n}")) for n in range(2)]
    try:
        assert all(d.shared_polls is not None for d in daemons)
        for daemon in daemons:
            daemon._schedule(daemon.rt.config, None)
        for daemon in daemons:
            daemon.start_jobs()

        def rescheduled(daemon, name):
            due_in = daemon.polls.plan.due_in(name)
            return due_in is not None and due_in > timedelta(minutes=50).total_seconds()

        names = [f"s{n}" for n in range(4)]
        def idle(daemon):
            with daemon._lock:
                return not any(daemon._users.values())

        settled = wait_until(lambda: all(feed_server.requests_to(f"/f{n}.xml") for n in range(4))
                             and all(rescheduled(d, name) for d in daemons for name in names)
                             and all(idle(d) for d in daemons), 40)
        assert settled, [(d.polls.plan.due_in(n), n) for d in daemons for n in names]
        assert [len(feed_server.requests_to(f"/f{n}.xml")) for n in range(4)] == [1] * 4
        polled_by = {poll_leases.state(daemons[0].rt.repo.engine, name).polled_by for name in names}
        assert polled_by <= {d.replica_id for d in daemons}
    finally:
        for daemon in daemons:
            daemon.stop(grace=timedelta(seconds=10))
            daemon.close()


def test_a_daemon_on_sqlite_takes_no_lease(feed_server, tmp_path, clock):
    """SQLite keeps one daemon per database (the run lock): its polls take no lease, so a poll
    that finds nothing costs no extra commit, and polled_by stays empty."""
    from bridge.daemon import Daemon, _poll_source

    feed_server.add("/f0.xml", antara_feed([antara_item(1)]))
    daemon = Daemon(runtime(make_config({"s0": feed_server.url("/f0.xml")}, dry_run=True), tmp_path, clock))
    try:
        assert daemon.shared_polls is None
        _poll_source(daemon, daemon.rt, "s0")
        assert len(feed_server.requests_to("/f0.xml")) == 1
        assert poll_leases.state(daemon.rt.repo.engine, "s0").polled_by is None
    finally:
        daemon.close()


@pytest.mark.parametrize("interval, early", [("1s", timedelta(seconds=0.1)), ("5m", timedelta(seconds=1))])
def test_the_preferred_replica_takes_a_source_early_by_a_tenth_of_a_short_interval(
        pg, feed_server, tmp_path, clock, interval, early):
    """The preferred replica may take a source a little before it is due (its run may fire a moment
    early), by at most a tenth of the interval and 1 s (poll_early): at a 1 s interval a whole 1 s
    let it read on every ask, just after its last read."""
    feed_server.add("/f.xml", antara_feed([antara_item(1)]), etag='"f"')
    raw = make_config({"s": feed_server.url("/f.xml")}, dry_run=True, bridge={"database": pg, "poll_interval": interval})
    replica = Replica("only", raw, tmp_path, clock)
    try:
        source = replica.rt.config.source("s")
        assert isinstance(replica.fire(source), PollOutcome)
        clock.advance(seconds=source.poll_interval.total_seconds() - early.total_seconds() * 2)
        assert isinstance(replica.fire(source), NotOurTurn)  # too early, even for the preferred one
        clock.advance(seconds=early.total_seconds())
        assert isinstance(replica.fire(source), PollOutcome)  # within the margin: taken
        assert len(replica.polls) == 2
    finally:
        close(replica.rt)
