"""Retention ([bridge] keep): old stories lose their text, never their identity; space goes back.

A story pruned long ago and seen again, in its feed or from another source, is never posted again;
deliveries not settled yet are never pruned; pruning runs in short batches.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, select, text

from bridge.model import DeliveryState, FrozenPost, Item
from bridge.pipeline import deliver_due, poll
from bridge.service import maintain_store, prepare
from bridge.store import schema
from bridge.store.lock import acquire_run_lock
from bridge.store.maintenance import (
    PRUNE_BATCH, PRUNE_BATCH_MIN, PRUNE_REST_SECONDS, maintain, next_batch_size, prune, reclaim,
)
from bridge.store.outbox import PRUNED
from tests.helpers import antara_feed, antara_item, make_config, runtime
from tests.test_daemon import world  # noqa: F401 (fixture)

KEEP = timedelta(days=400)


def store(repo, keys, now, source="antara", targets=("x",), skip=False):
    items = [Item(key=k, title=f"Judul {k}", link=f"https://a.id/{k}", url=f"a.id/{k}", summary="Ringkasan " * 20,
                  image_url=f"https://a.id/{k}.jpg") for k in keys]
    skipped = {k: "first run" for k in keys} if skip else {}
    return repo.store_poll(source, "https://a.id/rss", items, targets, now=now, skip=skipped, etag=None,
                           last_modified=None, next_poll_at=now)


def send(repo, delivery, now):
    repo.claim(delivery, now, FrozenPost(f"{delivery.item.title} https://a.id", image_url="https://a.id/p.jpg",
                                         alt_text="foto", cost=0.2))
    repo.mark_sent(delivery.id, "1", now)


def rows(repo, table):
    with repo.engine.connect() as conn:
        return {row.id: row for row in conn.execute(select(table).order_by(table.c.id))}


class TestPrune:
    def test_old_stories_lose_their_text_and_keep_their_identity(self, repo, clock):
        """A story older than keep keeps its key, link identity and states; its text, photo, frozen
        post and errors go. A younger one keeps everything."""
        store(repo, ["old-sent", "old-failed", "old-skipped"], clock.now)
        sent, failed, skipped = repo.due_deliveries("x", clock.now, 10)
        send(repo, sent, clock.now)
        repo.claim(failed, clock.now, FrozenPost("teks", cost=0.2))
        repo.mark_failed(failed.id, "X answered 403", clock.now)
        repo.mark_skipped(skipped.id, "first run", clock.now)
        clock.advance(days=401)
        store(repo, ["young"], clock.now)
        counts = (repo.delivery_counts(), [row["items"] for row in repo.source_rows()])
        assert prune(repo.engine, KEEP, clock.now) == 3
        assert (repo.delivery_counts(), [row["items"] for row in repo.source_rows()]) == counts
        items = {row.key: row for row in rows(repo, schema.items).values()}
        for key in ("old-sent", "old-failed", "old-skipped"):
            assert (items[key].title, items[key].summary, items[key].link, items[key].image_url) == ("", "", None, None)
            assert items[key].url == f"a.id/{key}" and items[key].source == "antara"
        assert items["young"].title == "Judul young" and items["young"].image_url
        deliveries = rows(repo, schema.deliveries)
        assert [d.state for d in deliveries.values()][:3] == ["sent", "failed", "skipped"]
        assert all(d.post_text is None and d.post_image_url is None and d.post_alt_text is None
                   for d in list(deliveries.values())[:3])
        assert deliveries[sent.id].remote_id == "1" and deliveries[sent.id].cost == pytest.approx(0.2)
        assert deliveries[failed.id].last_error == PRUNED and deliveries[skipped.id].last_error is None

    def test_deliveries_not_settled_are_never_pruned(self, repo, clock):
        """Pending, held, sending and in-doubt deliveries keep their post and their story its text."""
        store(repo, ["pending", "in-doubt", "sending", "settled"], clock.now)
        store(repo, ["held"], clock.now, source="detik")
        with repo.engine.begin() as conn:
            conn.execute(text("UPDATE deliveries SET state = 'held' WHERE item_id = "
                              "(SELECT id FROM items WHERE key = 'held')"))
        _, doubt, sending, settled = repo.due_deliveries("x", clock.now, 10)
        for delivery in (doubt, sending, settled):
            repo.claim(delivery, clock.now, FrozenPost("teks", cost=0.2))
        repo.mark_in_doubt(doubt.id, "timeout", None, clock.now)
        repo.mark_sent(settled.id, "1", clock.now)
        clock.advance(days=500)
        assert prune(repo.engine, KEEP, clock.now) == 5
        items = {row.key: row for row in rows(repo, schema.items).values()}
        assert {key for key, row in items.items() if row.title} == {"pending", "in-doubt", "sending", "held"}
        deliveries = rows(repo, schema.deliveries)
        assert deliveries[doubt.id].post_text == "teks" and deliveries[sending.id].post_text == "teks"
        assert deliveries[doubt.id].last_error == "timeout"
        assert deliveries[settled.id].post_text is None
        assert [d.item.title for d in repo.due_deliveries("x", clock.now, 10)] == ["Judul pending"]

    def test_a_pruned_story_seen_again_is_not_queued_again(self, repo, clock):
        """Pruned long ago: seen again in its feed (same key) it is no new story; from another source
        (same link) its copy is judged already delivered."""
        store(repo, ["a1"], clock.now)
        [delivery] = repo.due_deliveries("x", clock.now, 1)
        send(repo, delivery, clock.now)
        clock.advance(days=800)
        assert prune(repo.engine, KEEP, clock.now) == 1
        again = store(repo, ["a1"], clock.now)
        assert again.new_items == 0 and again.pending == 0
        items = [Item(key="d/1", title="Salinan", link="https://a.id/a1", url="a.id/a1")]
        repo.store_poll("detik", "https://d.id/rss", items, ["x"], now=clock.now, skip={}, etag=None,
                        last_modified=None, next_poll_at=clock.now)
        copy = next(d for d in repo.due_deliveries("x", clock.now, 10) if d.item.key == "d/1")
        assert repo.same_story_elsewhere(copy) == f"same link already delivered via antara (delivery {delivery.id})"

    def test_batches_are_short_and_the_next_run_goes_on(self, repo, clock):
        """Pruning commits every `batch` stories; a stopped run is taken up where it stopped, and a
        run with nothing old writes nothing."""
        store(repo, [f"k{n}" for n in range(7)], clock.now)
        clock.advance(days=401)
        commits = []
        event.listen(repo.engine, "commit", lambda conn: commits.append(1))
        calls = iter([False, True])
        rests = []
        assert prune(repo.engine, KEEP, clock.now, batch=2, stopping=lambda: next(calls), rest=rests.append) == 2
        assert rests == []  # a stop asked for after a batch waits for no rest
        assert prune(repo.engine, KEEP, clock.now, batch=2, rest=rests.append) == 5
        assert len(commits) == 1 + 3  # one batch; then 2 + 2 + 1, the short one ending it
        assert rests == [PRUNE_REST_SECONDS, PRUNE_REST_SECONDS]  # the lock left free between batches
        assert prune(repo.engine, KEEP, clock.now, batch=2, rest=rests.append) == 0
        assert PRUNE_BATCH <= 1000  # a batch stays a few milliseconds of write lock
        assert PRUNE_REST_SECONDS > 0.1  # longer than SQLite's longest busy-handler sleep

    def test_slow_batches_shrink_and_fast_ones_grow_back(self, repo, clock):
        """A batch that took longer than its pace (a slow disk, a busy machine) makes the next one
        smaller in proportion; quick ones let it grow back, at most twofold a batch, up to `batch`."""
        store(repo, [f"k{n}" for n in range(100)], clock.now)
        clock.advance(days=401)
        took = iter([0.4, 0.4] + [0.01] * 20)
        ticks = iter(range(1000))
        now_s = [0.0]

        def monotonic():  # each batch "takes" the next of `took`, read at its start and its end
            if next(ticks) % 2:
                now_s[0] += next(took)
            return now_s[0]

        sizes = []

        def asked(conn, cursor, statement, parameters, context, many):
            if "ORDER BY items.id" in statement and "LIMIT" in statement:
                values = list(parameters.values()) if isinstance(parameters, dict) else parameters
                sizes.append(values[1])  # (after id, LIMIT, OFFSET)

        event.listen(repo.engine, "before_cursor_execute", asked)
        assert prune(repo.engine, KEEP, clock.now, batch=40, pace=0.1, rest=lambda s: None, monotonic=monotonic) == 100
        # 0.4 s for 40 -> 10 for 0.1 s; 0.4 s again -> the floor; then doubling back, up to 40
        assert sizes == [40, 10, PRUNE_BATCH_MIN, 20, 40]

    def test_next_batch_size(self):
        """The size for the next batch keeps its bounds whatever the last one took."""
        assert next_batch_size(200, 0.4, 0.04, 200) == 20
        assert next_batch_size(200, 10.0, 0.04, 200) == PRUNE_BATCH_MIN
        assert next_batch_size(20, 0.001, 0.04, 200) == 40
        assert next_batch_size(150, 0.0, 0.04, 200) == 200
        assert next_batch_size(2, 5.0, 0.04, 2) == 2  # never above the largest allowed

    def test_keep_forever_prunes_nothing(self, repo, clock):
        store(repo, ["a1"], clock.now)
        clock.advance(days=5000)
        assert prune(repo.engine, None, clock.now) == 0
        assert next(iter(rows(repo, schema.items).values())).title == "Judul a1"

    def test_a_pruned_failure_cannot_be_retried(self, repo, clock):
        """`bridge retry` on a failed delivery whose text was pruned changes nothing (it would post
        an empty story); a young failure is re-queued as before."""
        store(repo, ["old"], clock.now)
        [old] = repo.due_deliveries("x", clock.now, 1)
        repo.mark_failed(old.id, "X answered 403", clock.now)
        clock.advance(days=401)
        store(repo, ["young"], clock.now)
        [young] = repo.due_deliveries("x", clock.now, 1)
        repo.mark_failed(young.id, "X answered 403", clock.now)
        prune(repo.engine, KEEP, clock.now)
        assert not repo.requeue(old.id, clock.now)
        assert repo.requeue(young.id, clock.now)


def checkpoint(repo) -> None:
    """Move the WAL into the file, so the file's size shows what it holds."""
    with repo.engine.connect() as conn:
        conn.connection.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")


class TestSpace:
    def test_pruned_space_goes_back_to_the_disk(self, repo, clock):
        """SQLite: a new database uses incremental auto-vacuum, and reclaim() gives back the pages
        pruning freed, so the file shrinks."""
        if repo.engine.dialect.name != "sqlite":
            pytest.skip("SQLite's file")
        with repo.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA auto_vacuum").scalar() == 2
        for batch in range(4):
            store(repo, [f"k{batch}-{n}" for n in range(200)], clock.now, skip=True)
        clock.advance(days=401)
        prune(repo.engine, KEEP, clock.now)
        path = Path(repo.engine.url.database)
        checkpoint(repo)
        before = path.stat().st_size
        assert reclaim(repo.engine) > 0
        checkpoint(repo)
        with repo.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA freelist_count").scalar() == 0
        assert path.stat().st_size < before

    def test_an_old_database_is_switched_once_and_analysed(self, repo):
        """maintain() gives SQLite statistics, and turns an old file (auto_vacuum none) incremental."""
        if repo.engine.dialect.name != "sqlite":
            pytest.skip("SQLite's file")
        with repo.engine.connect() as conn:
            raw = conn.connection.driver_connection
            raw.execute("PRAGMA auto_vacuum=NONE")
            raw.execute("VACUUM")
            assert raw.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
        maintain(repo.engine)
        with repo.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA auto_vacuum").scalar() == 2
            assert conn.exec_driver_sql("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'").scalar() == 1
        maintain(repo.engine)  # again: nothing to switch, statistics refreshed where stale


def test_a_story_pruned_long_ago_is_never_posted_again(feed_server, x_api, tmp_path, clock):
    """End to end: a posted story, pruned by the daemon's maintenance 500 days later, comes back in
    its feed and in another source's feed: nothing is posted."""
    story = antara_item(4)
    feed_server.add("/a.xml", antara_feed([story]), etag='"1"')
    feed_server.add("/b.xml", antara_feed([dict(story, guid="detik-4")]), etag='"1"')
    raw = make_config({"antara": feed_server.url("/a.xml")}, x_base=x_api.base_url, bridge={"first_run": "all"})
    rt = runtime(raw, tmp_path, clock)
    prepare(rt, acquire_run_lock(rt.repo.engine))
    poll(rt, rt.config.sources[0], force=True)
    deliver_due(rt)
    assert len(x_api.tweets) == 1
    clock.advance(days=500)
    maintain_store(rt)
    with rt.repo.engine.connect() as conn:
        assert conn.execute(select(schema.items.c.title)).scalar() == ""
    rt.repo.engine.dispose()
    raw = make_config({"antara": feed_server.url("/a.xml"), "detik": feed_server.url("/b.xml")},
                      x_base=x_api.base_url, bridge={"first_run": "all"})
    rt = runtime(raw, tmp_path, clock)
    feed_server.edit("/a.xml", etag='"2"')
    for source in rt.config.sources:
        poll(rt, source, force=True)
    deliver_due(rt)
    assert len(x_api.tweets) == 1
    assert rt.repo.delivery_rows([DeliveryState.PENDING]) == []
    rt.repo.engine.dispose()


def test_the_daemon_maintains_the_store_every_six_hours(world):
    """The daemon schedules the maintenance job (first after its start-up cycle, then every 6 h),
    and the job prunes what is older than [bridge] keep."""
    from bridge.daemon import MAINTENANCE_FIRST_DELAY, MAINTENANCE_INTERVAL, _maintain
    from tests.test_daemon import make_daemon

    daemon = make_daemon(world)
    clock = world[4]
    try:
        store(daemon.rt.repo, ["old"], clock.now, skip=True)
        started = clock.now
        daemon.start()
        job = daemon.scheduler.get_job("maintain")
        assert job.trigger.interval == MAINTENANCE_INTERVAL == timedelta(hours=6)
        # First MAINTENANCE_FIRST_DELAY after the start (the test's clock is in the past, so the
        # scheduler may already have moved it on by whole intervals).
        assert (job.next_run_time - (started + MAINTENANCE_FIRST_DELAY)) % MAINTENANCE_INTERVAL == timedelta(0)
        clock.advance(days=401)
        daemon._job(_maintain)
        titles = {row.key: row.title for row in rows(daemon.rt.repo, schema.items).values()}
        assert titles["old"] == ""
    finally:
        daemon.stop(grace=timedelta(seconds=5))
        daemon.close()
