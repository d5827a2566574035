"""Several replicas on one PostgreSQL (issue 13): leased claims, and pacing decided for the cluster.

Each "replica" here is a runtime of its own with its own engine (its own pool of connections), as
a separate process has; they race in threads against one schema. The X fake answers slowly, so a
post is in flight while the other replica decides.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, select

from bridge.model import DeliveryState
from bridge.pipeline import deliver_due, poll
from bridge.pipeline.delivering import lease_length
from bridge.pipeline.posts import freeze_post, idempotency_key, post_of
from bridge.service import close, prepare
from bridge.store import replicas, schema
from bridge.store.lock import RunLock, run_lock_for
from bridge.store.outbox import LEASE_RAN_OUT
from tests.conftest import _drop_all
from tests.helpers import antara_feed, antara_item, make_config, runtime, wait_until

D = schema.deliveries
STORIES = 6


@pytest.fixture
def pg(postgres_url):
    """This run's PostgreSQL schema, emptied before and after."""
    engine = create_engine(postgres_url)
    _drop_all(engine)
    yield postgres_url
    _drop_all(engine)
    engine.dispose()


class Cluster:
    """Replicas (runtimes with engines of their own) on one PostgreSQL schema, one feed, one X."""

    def __init__(self, pg, feed_server, x_api, tmp_path, clock):
        self.pg, self.feeds, self.x, self.tmp_path, self.clock = pg, feed_server, x_api, tmp_path, clock
        self.replicas = []
        feed_server.add("/a.xml", antara_feed([antara_item(n) for n in range(1, STORIES + 1)]))

    def replica(self, **target):
        raw = make_config({"a": self.feeds.url("/a.xml")}, x_base=self.x.base_url,
                          bridge={"database": self.pg, "first_run": "all"}, target=target)
        rt = runtime(raw, self.tmp_path, self.clock)
        lock = run_lock_for(rt.repo.engine)
        assert lock.shared  # PostgreSQL: no run lock, replicas side by side
        replicas.register(rt.repo.engine, rt.replica_id, host="test", pid=len(self.replicas) + 1, version="0",
                          settings="s", now=self.clock())
        prepare(rt, lock)
        self.replicas.append(rt)
        return rt

    def queue_stories(self, rt):
        outcome = poll(rt, rt.config.sources[0], force=True)
        assert outcome.deliveries_created == STORIES

    def race(self, *rts):
        """Every replica runs a delivery round at the same moment; what each handled."""
        start, handled = threading.Barrier(len(rts)), {}

        def run(rt):
            start.wait()
            handled[rt.replica_id] = deliver_due(rt)

        threads = [threading.Thread(target=run, args=(rt,)) for rt in rts]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        return handled

    def tweets(self):
        return [r.body["text"] for r in self.x.requests if r.route == "/2/tweets" and r.method == "POST"]

    def rows(self):
        with self.replicas[0].repo.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(D).order_by(D.c.id)).mappings()]

    def close(self):
        for rt in self.replicas:
            close(rt)


@pytest.fixture
def cluster(pg, feed_server, x_api, tmp_path, clock):
    made = Cluster(pg, feed_server, x_api, tmp_path, clock)
    yield made
    made.close()


class TestLeasedClaims:
    def test_two_replicas_racing_for_the_same_deliveries_never_both_send(self, cluster):
        """Two replicas delivering the same six due stories at once post each exactly once, and
        every delivery ends sent with its claim released."""
        cluster.x.latency = lambda: 0.05
        one, two = cluster.replica(), cluster.replica()
        cluster.queue_stories(one)
        for _ in range(3):  # rounds until nothing is due (a replica's round skips what the other claimed)
            cluster.race(one, two)
        tweets = cluster.tweets()
        assert len(tweets) == STORIES and len(set(tweets)) == STORIES
        rows = cluster.rows()
        assert {r["state"] for r in rows} == {DeliveryState.SENT.value}
        assert all(r["claimed_by"] is None and r["lease_until"] is None for r in rows)

    def test_a_claim_records_its_replica_and_a_lease_longer_than_the_post(self, cluster):
        """While the network is answering, the delivery is `sending`, claimed by the replica that
        posts it, its lease ending after every deadline of the post."""
        seen = []
        one = cluster.replica()
        cluster.queue_stories(one)
        cluster.x.on_request = lambda request: seen.extend(
            (r["state"], r["claimed_by"], r["lease_until"]) for r in cluster.rows() if r["state"] == "sending")
        deliver_due(one)
        assert seen and all(state == "sending" and by == one.replica_id for state, by, _ in seen)
        settings = one.config.bridge
        assert lease_length(one) > 3 * settings.publish_timeout  # media upload + post, each its own deadline
        assert all(until == cluster.clock() + lease_length(one) for _, _, until in seen)


class TestClusterPacing:
    def test_two_replicas_racing_for_the_last_posts_of_the_day_post_max_per_day(self, cluster):
        """max_per_day = 2 with six stories due and two replicas racing (posts in flight 50 ms):
        exactly two posts for the cluster, not two per replica."""
        cluster.x.latency = lambda: 0.05
        one, two = cluster.replica(max_per_day=2), cluster.replica(max_per_day=2)
        cluster.queue_stories(one)
        for _ in range(3):
            cluster.race(one, two)
        assert len(cluster.tweets()) == 2
        states = [r["state"] for r in cluster.rows()]
        assert states.count("sent") == 2 and states.count("pending") == STORIES - 2

    def test_two_replicas_racing_for_the_last_of_the_budget_post_once(self, cluster):
        """A budget with room for exactly one more post ($0.20 with $0.20 a post): of two replicas
        racing, exactly one posts; the other sees the claim's cost and holds."""
        cluster.x.latency = lambda: 0.05
        budget = dict(budget_per_day=0.2, price_per_post=0.2, price_per_link_post=0.2)
        one, two = cluster.replica(**budget), cluster.replica(**budget)
        cluster.queue_stories(one)
        cluster.race(one, two)
        assert len(cluster.tweets()) == 1
        assert sum(r["cost"] or 0 for r in cluster.rows() if r["state"] == "sent") == pytest.approx(0.2)

    def test_min_interval_holds_across_replicas(self, cluster):
        """min_interval = 1h: of two replicas racing, one posts; the other waits for the interval,
        counting its peer's post while it is still in flight."""
        cluster.x.latency = lambda: 0.05
        one, two = cluster.replica(min_interval="1h"), cluster.replica(min_interval="1h")
        cluster.queue_stories(one)
        cluster.race(one, two)
        assert len(cluster.tweets()) == 1
        cluster.clock.advance(minutes=61)
        cluster.race(one, two)
        assert len(cluster.tweets()) == 2


class TestTheTargetsTurn:
    """The decision and the claim of one target are serialised: a replica deciding while a peer
    has decided but not yet claimed waits for the peer's claim, then counts it. Two distinct deliveries, so
    the row-level claim cannot hide the race."""

    def _race_distinct(self, cluster, monkeypatch, **target):
        from bridge.pipeline.delivering import _attempt
        from bridge.store.lock import advisory_key

        one, two = cluster.replica(**target), cluster.replica(**target)
        cluster.queue_stories(one)
        first, second = one.repo.due_deliveries("x", cluster.clock(), limit=2)
        claimed, finished = threading.Event(), threading.Event()
        with one.repo.engine.connect() as conn:
            key = advisory_key(conn.exec_driver_sql("SELECT current_schema()").scalar(), "target x")

        def peer_waits_for_the_turn() -> bool:
            with one.repo.engine.connect() as conn:
                return bool(conn.exec_driver_sql(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                    "AND classid = %(c)s AND objid = %(o)s",
                    {"c": (key >> 32) & 0xFFFFFFFF, "o": key & 0xFFFFFFFF}).scalar())

        import bridge.pipeline.delivering as delivering

        real_over_budget = delivering.over_budget

        def decide_then_linger(*args, **kwargs):
            verdict = real_over_budget(*args, **kwargs)
            if threading.current_thread() is a:  # A has decided, and not claimed yet
                claimed.set()
                assert wait_until(lambda: peer_waits_for_the_turn() or finished.is_set(), 10)
            return verdict

        monkeypatch.setattr(delivering, "over_budget", decide_then_linger)
        a = threading.Thread(target=_attempt, args=(one, one.publishers["x"], first))
        a.start()
        assert claimed.wait(10)
        b = threading.Thread(target=lambda: (_attempt(two, two.publishers["x"], second), finished.set()))
        b.start()
        a.join(30)
        b.join(30)
        return cluster.rows()

    def test_the_last_post_of_the_day_goes_once(self, cluster, monkeypatch):
        """max_per_day = 1: the replica deciding while its peer claims the last post holds."""
        rows = self._race_distinct(cluster, monkeypatch, max_per_day=1)
        assert len(cluster.tweets()) == 1
        assert [r["state"] for r in rows].count("sent") == 1

    def test_the_last_of_the_budget_is_spent_once(self, cluster, monkeypatch):
        """Room for one $0.20 post in the day's budget: the peer deciding meanwhile holds."""
        rows = self._race_distinct(cluster, monkeypatch, budget_per_day=0.2, price_per_post=0.2,
                                   price_per_link_post=0.2)
        assert len(cluster.tweets()) == 1
        assert sum(r["cost"] or 0 for r in rows if r["state"] == "sent") == pytest.approx(0.2)


class TestInDoubtAcrossReplicas:
    def _claimed_and_posted_by(self, cluster, rt):
        """`rt` claims the oldest due delivery and its post reaches X; then `rt` dies before it hears
        the answer (nothing more is written by it)."""
        [delivery] = rt.repo.due_deliveries("x", cluster.clock(), limit=1)
        publisher = rt.publishers["x"]
        frozen = freeze_post(rt, publisher, delivery)
        now = cluster.clock()
        assert rt.repo.claim(delivery, now, frozen, claimer=rt.replica_id, lease_until=now + lease_length(rt))
        publisher.publish(post_of(delivery, frozen), idempotency_key=idempotency_key(rt, delivery))
        return delivery

    def test_a_live_peers_claim_is_never_recovered(self, cluster):
        """A replica starting, and delivery rounds of another, leave a live peer's post in flight
        alone: it stays `sending`, claimed by the peer, and is not sent again."""
        one, two = cluster.replica(), cluster.replica()
        cluster.queue_stories(one)
        delivery = self._claimed_and_posted_by(cluster, one)
        cluster.clock.advance(seconds=lease_length(one).total_seconds() - 1)
        three = cluster.replica()  # a start-up: prepare() runs its recovery
        deliver_due(two)
        deliver_due(three)
        row = next(r for r in cluster.rows() if r["id"] == delivery.id)
        assert (row["state"], row["claimed_by"]) == ("sending", one.replica_id)
        assert cluster.tweets().count(cluster.tweets()[0]) == 1 and len(set(cluster.tweets())) == len(cluster.tweets())

    def test_an_expired_lease_is_settled_by_the_in_doubt_rules(self, cluster):
        """The claimer died after its post reached X: once the lease runs out, a peer's round puts it
        in doubt (saying why) and settles it by X's rule (the identical re-send X refuses as a
        duplicate): sent, and on X once."""
        one, two = cluster.replica(), cluster.replica()
        cluster.queue_stories(one)
        delivery = self._claimed_and_posted_by(cluster, one)
        cluster.clock.advance(seconds=lease_length(one).total_seconds() + 1)
        replicas.beat(one.repo.engine, one.replica_id, cluster.clock())  # even a beating replica's lease ends
        assert two.repo.recover_in_doubt(cluster.clock()) == 1
        row = next(r for r in cluster.rows() if r["id"] == delivery.id)
        assert (row["state"], row["last_error"], row["claimed_by"]) == ("in_doubt", LEASE_RAN_OUT, None)
        deliver_due(two)
        row = next(r for r in cluster.rows() if r["id"] == delivery.id)
        assert row["state"] == "sent"
        texts = [t["text"] for t in cluster.x.tweets]
        assert len(texts) == len(set(texts)) == STORIES  # the re-send was refused as a duplicate

    def test_a_claim_whose_replica_left_is_in_doubt_before_its_lease_ends(self, cluster):
        """A replica that stopped with a post in flight (its row is gone) leaves the post in doubt at
        once for its peers, not only when the lease runs out."""
        one, two = cluster.replica(), cluster.replica()
        cluster.queue_stories(one)
        delivery = self._claimed_and_posted_by(cluster, one)
        assert two.repo.recover_in_doubt(cluster.clock()) == 0
        replicas.leave(one.repo.engine, one.replica_id)
        assert two.repo.recover_in_doubt(cluster.clock()) == 1
        row = next(r for r in cluster.rows() if r["id"] == delivery.id)
        assert row["state"] == "in_doubt"


class TestPausesAndStart:
    def test_a_pause_holds_every_replica_until_unpaused(self, cluster):
        """A target paused by one replica holds the others, a replica's restart does not lift it on
        PostgreSQL, and `unpause` does, for all."""
        one, two = cluster.replica(), cluster.replica()
        cluster.queue_stories(one)
        one.repo.pause_target("x", "401 Unauthorized: fix the credentials", cluster.clock())
        assert deliver_due(two) == 0
        cluster.replica()  # a replica starting
        assert one.repo.target_state("x").paused_reason
        assert one.repo.unpause("x") == "401 Unauthorized: fix the credentials"
        assert one.repo.unpause("x") is None
        deliver_due(two)
        assert len(cluster.tweets()) == STORIES

    def test_sqlite_keeps_its_exclusive_lock_and_its_start_up_rules(self, feed_server, x_api, tmp_path, clock):
        """On SQLite `bridge run` still takes the exclusive run lock, and a start lifts pauses."""
        feed_server.add("/a.xml", antara_feed([antara_item(1)]))
        rt = runtime(make_config({"a": feed_server.url("/a.xml")}, x_base=x_api.base_url), tmp_path, clock)
        try:
            lock = run_lock_for(rt.repo.engine)
            assert isinstance(lock, RunLock) and not lock.shared
            rt.repo.pause_target("x", "401", clock())
            prepare(rt, lock)
            assert rt.repo.target_state("x").paused_reason is None
            lock.release()
        finally:
            close(rt)


def test_maintenance_runs_on_one_replica_at_a_time(pg):
    """job_turn: a second replica asking for a job another holds is told no at once; released, yes."""
    from bridge.store.lock import job_turn

    one, two = create_engine(pg), create_engine(pg)
    try:
        with job_turn(one, "maintenance") as first:
            with job_turn(two, "maintenance") as second, job_turn(two, "alerts") as other_job:
                assert (first, second, other_job) == (True, False, True)
        with job_turn(two, "maintenance") as again:
            assert again
    finally:
        one.dispose()
        two.dispose()


def test_a_post_slower_than_its_lease_keeps_renewing_it(cluster, monkeypatch):
    """A post that takes longer than its lease (shortened here to 0.3 s, the X fake answering in
    0.5 s) renews the lease while the network answers, and ends sent, its claim released."""
    import bridge.pipeline.delivering as delivering

    one = cluster.replica()
    cluster.queue_stories(one)
    settings = one.config.bridge
    monkeypatch.setattr(delivering, "LEASE_MARGIN", timedelta(seconds=0.3) - 3 * settings.publish_timeout
                        - settings.fetch_timeout)
    assert lease_length(one) == timedelta(seconds=0.3)
    renewed = []
    real_renew = one.repo.renew_lease
    monkeypatch.setattr(one.repo, "renew_lease", lambda *args: renewed.append(args) or real_renew(*args))
    cluster.x.latency = lambda: 0.5
    [delivery] = one.repo.due_deliveries("x", cluster.clock(), limit=1)
    delivering._attempt(one, one.publishers["x"], delivery)
    assert len(renewed) >= 2 and all(args[:2] == (delivery.id, one.replica_id) for args in renewed)
    row = next(r for r in cluster.rows() if r["id"] == delivery.id)
    assert (row["state"], row["claimed_by"]) == ("sent", None)


class TestUnpauseCommand:
    def test_bridge_unpause_lifts_a_pause_and_says_so(self, feed_server, x_api, tmp_path, monkeypatch, capsys):
        """`bridge unpause x` lifts the pause (exit 0, naming the reason it had); again: not paused
        (exit 1); an unknown target is one line naming the known ones (exit 1)."""
        from bridge.cli import main
        from bridge.clock import utc_now
        from bridge.config import load_config
        from bridge.store.opening import open_repository
        from tests.helpers import env_for

        for name, value in env_for(tmp_path).items():
            monkeypatch.setenv(name, value)
        settings = tmp_path / "settings.toml"
        settings.write_text(f'[bridge]\ndatabase = "sqlite:///{tmp_path}/bridge.db"\n[[sources]]\nname = "a"\n'
                            f'url = "{feed_server.url("/a.xml")}"\ntargets = ["x"]\n'
                            f'[targets.x]\nkind = "x"\napi_base = "{x_api.base_url}"\n')
        repo = open_repository(load_config(settings, dry_run=None, secrets=False))
        repo.pause_target("x", "401 Unauthorized: regenerate the access token", utc_now())
        repo.engine.dispose()
        assert main(["--config", str(settings), "unpause", "x"]) == 0
        assert "x: unpaused (it was paused: 401 Unauthorized: regenerate the access token)" in capsys.readouterr().out
        assert main(["--config", str(settings), "unpause", "x"]) == 1
        assert "x: not paused" in capsys.readouterr().out
        assert main(["--config", str(settings), "unpause", "nope"]) == 1
        assert "no target 'nope' in settings.toml (targets: x)" in capsys.readouterr().err


def test_run_once_beside_a_live_replica_leaves_its_post_alone(cluster):
    """`bridge run --once` on PostgreSQL beside a live replica: no run lock, the peer's post in flight
    stays the peer's, the other stories are delivered once, and the once-run leaves the replica list."""
    from bridge.service import run_once

    one = cluster.replica()
    cluster.queue_stories(one)
    delivery = TestInDoubtAcrossReplicas()._claimed_and_posted_by(cluster, one)
    raw = make_config({"a": cluster.feeds.url("/a.xml")}, x_base=cluster.x.base_url,
                      bridge={"database": cluster.pg, "first_run": "all"})
    once = runtime(raw, cluster.tmp_path, cluster.clock)
    cluster.replicas.append(once)
    run_once(once, run_lock_for(once.repo.engine))
    rows = cluster.rows()
    mine = next(r for r in rows if r["id"] == delivery.id)
    assert (mine["state"], mine["claimed_by"]) == ("sending", one.replica_id)
    assert [r["state"] for r in rows if r["id"] != delivery.id] == ["sent"] * (STORIES - 1)
    texts = [t["text"] for t in cluster.x.tweets]
    assert len(texts) == len(set(texts)) == STORIES
    assert once.replica_id not in {r["id"] for r in replicas.live_replicas(once.repo.engine, cluster.clock())}


def test_opposite_state_changes_on_one_target_never_deadlock(pg):
    """Two replicas moving deliveries of one target in opposite directions at once (claims pending ->
    sending, retries sending -> pending), hundreds of times: no deadlock (the counting trigger locks
    its two counters in a fixed order), and the running totals stay exact."""
    from sqlalchemy import func, insert, text, update

    from bridge.clock import utc_now
    from bridge.store.db import create_database_engine
    from bridge.store.migrations import migrate

    engines = [create_database_engine(pg) for _ in range(2)]
    migrate(engines[0])
    now = utc_now()
    with engines[0].begin() as conn:
        ids = conn.execute(insert(schema.items).returning(schema.items.c.id), [
            {"source": "a", "key": str(n), "title": "t", "first_seen_at": now} for n in range(2)]).scalars().all()
        conn.execute(insert(D), [{"item_id": ids[0], "target": "x", "state": "pending", "created_at": now,
                                  "updated_at": now},
                                 {"item_id": ids[1], "target": "x", "state": "sending", "created_at": now,
                                  "updated_at": now}])
        first, second = conn.execute(select(D.c.id).order_by(D.c.id)).scalars().all()
    start, errors = threading.Barrier(2), []

    def flip(engine, delivery_id, states):
        start.wait()
        try:
            for n in range(300):
                with engine.begin() as conn:
                    conn.execute(update(D).where(D.c.id == delivery_id).values(state=states[n % 2]))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=flip, args=(engines[0], first, ("sending", "pending"))),
               threading.Thread(target=flip, args=(engines[1], second, ("pending", "sending")))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert errors == []
        with engines[0].connect() as conn:
            counted = dict(conn.execute(text("SELECT state, deliveries FROM delivery_counts WHERE target = 'x' "
                                             "AND deliveries <> 0")).all())
            actual = dict(conn.execute(select(D.c.state, func.count()).group_by(D.c.state)).all())
        assert counted == actual
    finally:
        for engine in engines:
            engine.dispose()


def test_store_maintenance_is_skipped_while_another_replica_runs_it(cluster):
    """maintain_store on a replica finds another replica's maintenance under way (its job lock held)
    and leaves the store alone; once that ends, it prunes (the oldest story loses its text)."""
    from sqlalchemy import update

    from bridge.service import maintain_store
    from bridge.store.lock import job_turn

    one, two = cluster.replica(), cluster.replica()
    cluster.queue_stories(one)
    deliver_due(one)
    with one.repo.engine.begin() as conn:  # the stories were first seen long ago
        conn.execute(update(schema.items).values(first_seen_at=cluster.clock() - timedelta(days=500)))

    def summaries():
        with one.repo.engine.connect() as conn:
            return set(conn.execute(select(schema.items.c.summary)).scalars())

    before = summaries()
    assert before != {""}
    with job_turn(one.repo.engine, "maintenance") as ours:
        assert ours
        maintain_store(two)
        assert summaries() == before
    maintain_store(two)
    assert summaries() == {""}
