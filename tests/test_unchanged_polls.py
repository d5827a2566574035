"""Storing a poll with set-based statements, and unchanged polls written in batches, not one
fsync'd commit each; a batch never overwrites newer state, and a stop writes what waits."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import event, select, text

from bridge.daemon import Daemon
from bridge.pipeline import poll
from bridge.service import close
from bridge.store import schema
from bridge.store.repo import Repository
from bridge.store.unchanged import UnchangedPolls
from tests.helpers import FakeMonotonic, antara_feed, antara_item, make_config, runtime
from tests.test_store import T0, item, store

SOURCES = 12


def count(engine, name: str) -> list:
    calls: list = []
    event.listen(engine, name, lambda *args, **kwargs: calls.append(args))
    return calls


def source_rows(engine) -> dict[str, dict]:
    with engine.connect() as conn:
        return {r["name"]: dict(r) for r in conn.execute(select(schema.sources)).mappings()}


class TestSetBasedStore:
    def test_a_poll_of_50_stories_for_2_targets_is_a_handful_of_statements(self, repo):
        """50 new stories x 2 targets are stored with a few statements, not 150, in one transaction,
        and each delivery belongs to its own story (skip reasons land on the right ones). The
        deliveries take one statement per (target, state): 4 here, whether 50 stories or 200."""
        items = [item(f"k{n}", url=f"https://x.id/{n}") for n in range(50)]
        statements, commits = count(repo.engine, "before_cursor_execute"), count(repo.engine, "commit")
        stored = store(repo, items, targets=("x", "telegram"), skip={f"k{n}": "stale" for n in range(0, 50, 2)})
        assert (stored.new_items, stored.pending, stored.skipped) == (50, 50, 50)
        assert len(statements) <= 10 and len(commits) == 1
        for_50 = len(statements)
        with repo.engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT i.key, d.target, d.state FROM deliveries d JOIN items i ON i.id = d.item_id")).all()
        assert len(rows) == 100
        for key, _target, state in rows:
            assert state == ("skipped" if int(key[1:]) % 2 == 0 else "pending")
        assert list(stored.queued_keys) == [f"k{n}" for n in range(1, 50, 2)]
        statements.clear()
        more = [item(f"m{n}", url=f"https://x.id/m{n}") for n in range(200)]
        store(repo, more, targets=("x", "telegram"), skip={f"m{n}": "stale" for n in range(0, 200, 2)},
              source="other")
        assert len(statements) == for_50

    def test_a_polls_deliveries_keep_the_stories_order_and_the_polls_time(self, repo):
        """Each target's deliveries are numbered in the order the feed listed its stories (the
        oldest is sent first by id), carry the poll's time as an aware UTC datetime, zero attempts,
        and their reason; a story kept from one target by its reason is not kept from the other."""
        items = [item(f"k{n}", url=f"https://x.id/{n}") for n in range(30)]
        repo.store_poll("antara", "https://example.com/feed", items, ("x", "telegram"), now=T0,
                        skip={"k3": "stale"}, etag=None, last_modified=None, next_poll_at=None,
                        filtered={"k5": {"telegram": "keyword: judi"}})
        D, I = schema.deliveries, schema.items
        with repo.engine.connect() as conn:
            rows = conn.execute(select(D.c.target, I.c.key, D.c.state, D.c.last_error, D.c.attempts,
                                       D.c.created_at, D.c.updated_at)
                                .join(I, I.c.id == D.c.item_id).order_by(D.c.id)).all()
        for target in ("x", "telegram"):
            pending = [key for t, key, state, *_ in rows if t == target and state == "pending"]
            assert pending == [f"k{n}" for n in range(30) if n != 3 and not (n == 5 and target == "telegram")]
        reasons = {(t, key): (state, reason) for t, key, state, reason, *_ in rows if state != "pending"}
        assert reasons == {("x", "k3"): ("skipped", "stale"), ("telegram", "k3"): ("skipped", "stale"),
                           ("telegram", "k5"): ("skipped", "keyword: judi")}
        assert len(rows) == 60
        assert {(attempts, created, updated) for *_, attempts, created, updated in rows} == {(0, T0, T0)}

    def test_a_repeated_key_and_known_stories_are_stored_once(self, repo):
        """The unique keys hold: a key twice in one poll, and stories already known, add nothing twice."""
        store(repo, [item("a"), item("b")])
        stored = store(repo, [item("b"), item("c"), item("c"), item("d")])
        assert stored.new_items == 2 and stored.pending == 2
        with repo.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM items")).scalar() == 4
            assert conn.execute(text("SELECT count(*) FROM deliveries")).scalar() == 4


class TestBatchedUnchangedPolls:
    def world(self, feed_server, tmp_path, clock, etag: str | None = '"v1"'):
        urls = {}
        for n in range(SOURCES):
            feed_server.add(f"/f{n}.xml", antara_feed([antara_item(n)]), etag=etag)
            urls[f"s{n}"] = feed_server.url(f"/f{n}.xml")
        rt = runtime(make_config(urls, dry_run=True), tmp_path, clock)
        monotonic = FakeMonotonic()
        rt.repo.unchanged = UnchangedPolls(rt.repo.engine, every=5.0, monotonic=monotonic)
        return rt, monotonic

    def poll_all(self, rt, clock):
        clock.advance(minutes=5)
        return [poll(rt, source).status for source in rt.config.sources]

    def test_a_304_storm_is_one_commit_per_batch(self, feed_server, tmp_path, clock):
        """Sources answering 304 again and again cost no commit each: the batch is written in one
        commit once FLUSH_SECONDS have passed, with every source's latest poll time."""
        rt, monotonic = self.world(feed_server, tmp_path, clock)
        try:
            self.poll_all(rt, clock)  # first read: stored
            commits = count(rt.repo.engine, "commit")
            assert self.poll_all(rt, clock) == ["not_modified"] * SOURCES
            assert len(commits) == SOURCES  # the first 304 after a read changes the state: written at once
            del commits[:]
            for _ in range(3):
                self.poll_all(rt, clock)
            assert commits == [] and rt.repo.unchanged.pending() == SOURCES
            monotonic.now += 5
            self.poll_all(rt, clock)  # the first of these polls writes the batch, the rest wait again
            assert len(commits) == 1 and rt.repo.unchanged.pending() == SOURCES - 1
            rt.repo.unchanged.flush()
            assert len(commits) == 2
            rows = source_rows(rt.repo.engine)
            assert {r["last_poll_at"] for r in rows.values()} == {clock()}
            assert {r["next_poll_at"] for r in rows.values()} == {clock() + timedelta(minutes=5)}
            assert {r["last_outcome"] for r in rows.values()} == {"not_modified"}
        finally:
            close(rt)

    def test_the_same_body_again_is_batched_too(self, feed_server, tmp_path, clock):
        """A feed without validators answering the same stories again writes no commit per poll."""
        rt, _ = self.world(feed_server, tmp_path, clock, etag=None)
        try:
            self.poll_all(rt, clock)
            commits = count(rt.repo.engine, "commit")
            self.poll_all(rt, clock)
            self.poll_all(rt, clock)
            assert commits == [] and rt.repo.unchanged.pending() == SOURCES
            feed_server.edit("/f0.xml", body=antara_feed([antara_item(99), antara_item(0)]))
            clock.advance(minutes=5)
            assert poll(rt, rt.config.sources[0]).items_new == 1  # a change is stored at once
            assert len(commits) == 1 and rt.repo.unchanged.pending() == SOURCES - 1
        finally:
            close(rt)

    def test_a_stop_writes_the_pending_polls(self, feed_server, tmp_path, clock):
        """The daemon's stop and close write the unchanged polls still waiting in memory."""
        rt, _ = self.world(feed_server, tmp_path, clock)
        engine_url = str(rt.repo.engine.url)
        self.poll_all(rt, clock)
        self.poll_all(rt, clock)
        self.poll_all(rt, clock)
        assert rt.repo.unchanged.pending() == SOURCES
        daemon = Daemon(rt)
        daemon.stop()
        daemon.close()
        from bridge.store.db import create_database_engine

        engine = create_database_engine(engine_url)
        try:
            assert {r["last_poll_at"] for r in source_rows(engine).values()} == {clock()}
        finally:
            engine.dispose()

    def test_a_batch_never_overwrites_newer_state(self, repo):
        """A failure written after an unchanged poll was buffered wins: the batch skips that source,
        whether the failure came through this repository (which drops the buffered poll) or another."""
        for name in ("a", "b"):
            repo.store_poll(name, "https://x.id/f", [], ["x"], now=T0, skip={}, etag='"1"', last_modified=None,
                            next_poll_at=T0 + timedelta(minutes=5))
            repo.record_not_modified(name, "https://x.id/f", T0, T0 + timedelta(minutes=5))
            repo.unchanged.record(name, T0 + timedelta(minutes=5), T0 + timedelta(minutes=10), "not_modified")
        later = T0 + timedelta(minutes=6)
        repo.record_poll_failure("a", "https://x.id/f", "HTTP 503", later, later + timedelta(hours=1))
        assert repo.unchanged.pending() == 1
        Repository(repo.engine).record_poll_failure("b", "https://x.id/f", "HTTP 503", later,
                                                    later + timedelta(hours=1))
        repo.unchanged.flush()
        rows = source_rows(repo.engine)
        for name in ("a", "b"):
            assert rows[name]["last_outcome"] == "error"
            assert rows[name]["next_poll_at"] == later + timedelta(hours=1)
