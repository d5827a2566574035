"""A source given a new URL (an operator fixes a broken feed address, a site moves its feed) is read
as a new feed at its next poll: its first-run policy applies again, the old validators and the old
URL's backoff are forgotten, and on PostgreSQL exactly one replica moves it and polls it, while the
poll under way keeps its lease (no other replica polls the source meanwhile).

Real HTTP to the local feed server; real SQL on SQLite and on PostgreSQL; an injected clock."""

from __future__ import annotations

import threading
from datetime import timedelta

from bridge.model import PollOutcome
from bridge.pipeline.polling import poll, read_as_new_feed
from bridge.pipeline.shared_polls import SharedPolls
from bridge.service import close
from bridge.store import poll_leases, replicas
from tests.helpers import antara_feed, antara_item, make_config, runtime
from tests.test_shared_polls import INTERVAL, pg  # noqa: F401 (the fixture)

OLD, NEW = "/old.xml", "/new.xml"


def _pending(rt) -> int:
    return sum(len(rt.repo.due_deliveries(target, rt.clock() + timedelta(days=1), 100)) for target in ("x",))


def test_a_failing_source_given_a_new_url_is_read_at_once_as_a_new_feed(feed_server, tmp_path, clock):
    """The old URL fails into a 6-hour backoff; the operator fixes the URL: the very next poll reads
    the new one (not skipped for the old URL's backoff), applies first_run = "skip" to its stories
    (none posted), and a story added later is posted."""
    feed_server.add_status(OLD, 503)
    feed_server.add(NEW, antara_feed([antara_item(n) for n in (1, 2, 3)]), etag='"n1"')
    raw = make_config({"antara": feed_server.url(OLD)}, dry_run=True, bridge={"poll_interval": "5m"})
    rt = runtime(raw, tmp_path, clock)
    for _ in range(6):  # failures pile up into a long backoff
        assert poll(rt, rt.config.source("antara"), force=True).status == "error"
    state = rt.repo.source_state("antara")
    assert state.consecutive_failures == 6 and state.next_poll_at > clock() + timedelta(hours=1)
    assert poll(rt, rt.config.source("antara")).status == "skipped_backoff"
    close(rt)

    raw["sources"][0]["url"] = feed_server.url(NEW)
    rt = runtime(raw, tmp_path, clock)  # the reload with the fixed URL
    outcome = poll(rt, rt.config.source("antara"))
    assert outcome.status == "ok" and outcome.first_run and outcome.items_new == 3
    assert _pending(rt) == 0, "a moved source's existing stories were queued: first_run ignored"
    state = rt.repo.source_state("antara")
    assert state.url == feed_server.url(NEW) and state.consecutive_failures == 0
    feed_server.add(NEW, antara_feed([antara_item(n) for n in (1, 2, 3, 4)]), etag='"n2"')
    clock.now += INTERVAL
    assert poll(rt, rt.config.source("antara")).items_new == 1
    assert _pending(rt) == 1
    close(rt)


def test_a_moved_source_forgets_the_old_validators(feed_server, tmp_path, clock):
    """The old feed's ETag is not sent to the new URL: the new URL answers in full."""
    feed_server.add(OLD, antara_feed([antara_item(1)]), etag='"same"')
    feed_server.add(NEW, antara_feed([antara_item(2)]), etag='"same"')
    raw = make_config({"antara": feed_server.url(OLD)}, dry_run=True)
    rt = runtime(raw, tmp_path, clock)
    assert poll(rt, rt.config.source("antara")).status == "ok"
    close(rt)
    raw["sources"][0]["url"] = feed_server.url(NEW)
    rt = runtime(raw, tmp_path, clock)
    clock.now += INTERVAL
    assert poll(rt, rt.config.source("antara")).status == "ok"
    assert "if-none-match" not in {k.lower() for k in feed_server.requests_to(NEW)[0].headers}
    close(rt)


def test_the_move_is_made_once_when_two_threads_notice_it(feed_server, tmp_path, clock):
    """restart_source is a compare-and-set on the old URL: of 8 threads moving the source at once,
    one does (and logs it), the others are told it was done."""
    feed_server.add(OLD, antara_feed([antara_item(1)]))
    raw = make_config({"antara": feed_server.url(OLD)}, dry_run=True)
    rt = runtime(raw, tmp_path, clock)
    poll(rt, rt.config.source("antara"))
    start, moved = threading.Barrier(8), []

    def move():
        start.wait(10)
        moved.append(rt.repo.restart_source("antara", feed_server.url(OLD), feed_server.url(NEW)))

    threads = [threading.Thread(target=move) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sum(state is not None for state in moved) == 1
    close(rt)


class _Replica:
    def __init__(self, name, raw, tmp_path, clock):
        self.name, self.rt, self.shared = name, runtime(raw, tmp_path, clock), SharedPolls(name)
        replicas.register(self.rt.repo.engine, name, host="test", pid=1, version="test", settings="s", now=clock())


def test_on_postgresql_one_replica_reads_a_moved_source_in_backoff_at_once(pg, feed_server, tmp_path, clock):  # noqa: F811
    """Two replicas share a source whose old URL failed into a long backoff (its lease). Both are
    reloaded with the new URL and ask at the same moment from 10 threads each: the source is
    read once, at once, at its new URL, and its first-run policy applies."""
    feed_server.add_status(OLD, 503)
    feed_server.add(NEW, antara_feed([antara_item(n) for n in (1, 2)]))
    raw = make_config({"antara": feed_server.url(OLD)}, dry_run=True, bridge={"database": pg, "poll_interval": "5m"})
    rt = runtime(raw, tmp_path, clock)
    for _ in range(5):
        poll(rt, rt.config.source("antara"), force=True)
    assert poll_leases.state(rt.repo.engine, "antara").next_poll_at > clock() + timedelta(hours=1)
    close(rt)

    raw["sources"][0]["url"] = feed_server.url(NEW)
    a, b = _Replica("replica-a", raw, tmp_path, clock), _Replica("replica-b", raw, tmp_path, clock)
    start, results = threading.Barrier(20), []

    def ask(replica):
        start.wait(10)
        results.append(replica.shared.poll(replica.rt, replica.rt.config.source("antara")))

    threads = [threading.Thread(target=ask, args=(r,)) for r in (a, b) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    polled = [r for r in results if isinstance(r, PollOutcome)]
    assert len(results) == 20 and len(polled) == 1, results
    assert polled[0].status == "ok" and polled[0].first_run
    assert len(feed_server.requests_to(NEW)) == 1
    assert _pending(a.rt) == 0
    for replica in (a, b):
        close(replica.rt)


def test_on_postgresql_the_poll_that_moves_a_source_keeps_its_lease(pg, feed_server, tmp_path, clock):  # noqa: F811
    """A replica that took a due source's poll and finds it moved restarts it without clearing its
    next_poll_at (the lease): the other replica, asking meanwhile, is not given the source."""
    feed_server.add(OLD, antara_feed([antara_item(1)]))
    raw = make_config({"antara": feed_server.url(OLD)}, dry_run=True, bridge={"database": pg, "poll_interval": "5m"})
    a = _Replica("replica-a", raw, tmp_path, clock)
    assert isinstance(a.shared.poll(a.rt, a.rt.config.source("antara")), PollOutcome)
    clock.now += INTERVAL
    now = clock()
    turn = poll_leases.take(a.rt.repo.engine, "antara", feed_server.url(OLD), "replica-a", now=now,
                            due_by=now, next_poll_at=now + INTERVAL)
    assert turn.taken
    raw["sources"][0]["url"] = feed_server.url(NEW)
    moved = runtime(raw, tmp_path, clock)
    assert read_as_new_feed(moved, moved.config.source("antara"), feed_server.url(OLD)) is not None
    other = poll_leases.take(moved.repo.engine, "antara", feed_server.url(NEW), "replica-b", now=now,
                             due_by=now, next_poll_at=now + INTERVAL)
    assert not other.taken and other.next_poll_at == now + INTERVAL
    for rt in (a.rt, moved):
        close(rt)
