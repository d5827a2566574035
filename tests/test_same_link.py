"""The same article from two sources goes out once per target, held by the database (issue 13, item 5):
a delivery takes its link on its target when claimed (uq_deliveries_carried_link), so two sources'
copies claimed at the same moment, by two threads or two replicas, cannot both go out. Issue 9's
rules stay: only between different sources, only links that name one article, and a failed copy
releases the link."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError

from bridge.model import DeliveryState
from bridge.pipeline import poll
from bridge.pipeline.delivering import _attempt
from bridge.service import close
from bridge.store import schema
from bridge.store.db import create_database_engine
from bridge.store.migrations import migrate
from bridge.store.outbox import link_key
from bridge.store.repo import Repository
from tests.conftest import _drop_all
from tests.helpers import antara_feed, antara_item, make_config, runtime
from tests.test_store import FROZEN, T0, item, states, store


def second_repo(repo: Repository) -> Repository:
    """Another process's view of the same database: its own engine and connections."""
    return Repository(create_database_engine(repo.engine.url.render_as_string(hide_password=False)))


def race(*steps):
    """Run each step on its own thread at once; returns their results in order."""
    results: list = [None] * len(steps)

    def run(n):
        results[n] = steps[n]()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(steps))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    return results


def checked_then_claimed(repo: Repository, delivery, looked: threading.Barrier):
    """What the delivery round does before the API call: look for another source's copy, then claim.
    Both racers look before either claims (the barrier), as two replicas can."""
    def step():
        elsewhere = repo.same_story_elsewhere(delivery)
        looked.wait(10)
        return elsewhere, repo.claim(delivery, T0, FROZEN)
    return step


class TestRace:
    def test_two_sources_claimed_at_the_same_moment_go_out_once(self, repo):
        """Two sources' copies of one article, each looked at and then claimed by its own engine at
        the same moment: both find no copy elsewhere, one claim wins, the other is skipped naming the
        winner (without the index both were claimed: two posts of one story)."""
        store(repo, [item("a", url="x.id/berita/1")], source="one")
        store(repo, [item("b", url="x.id/berita/1")], source="two")
        first, second = repo.due_deliveries("x", T0, 10)
        other = second_repo(repo)
        try:
            looked = threading.Barrier(2)
            results = race(checked_then_claimed(repo, first, looked), checked_then_claimed(other, second, looked))
        finally:
            other.engine.dispose()
        assert [elsewhere for elsewhere, _ in results] == [None, None]
        assert sorted(claimed for _, claimed in results) == [False, True]
        winner, loser = (first, second) if results[0][1] else (second, first)
        assert states(repo) == {winner.id: "sending", loser.id: "skipped"}
        with repo.engine.connect() as conn:
            reason = conn.execute(select(schema.deliveries.c.last_error)
                                  .where(schema.deliveries.c.id == loser.id)).scalar()
        assert reason == f"same link already delivered via {winner.source} (delivery {winner.id})"

    def test_two_replicas_posting_two_sources_copies_post_once(self, tmp_path, clock, feed_server, x_api, request,
                                                                 backend):
        """End to end: two runtimes (replicas) on one database, two sources with the same article,
        each replica's delivery step on one of the copies at the same moment: the fake X API gets
        one post."""
        story = antara_item(1)
        feed_server.add("/a.xml", antara_feed([story]))
        feed_server.add("/b.xml", antara_feed([dict(story, guid="other-guid-1")]))
        raw = make_config({"a": feed_server.url("/a.xml"), "b": feed_server.url("/b.xml")}, x_base=x_api.base_url,
                          bridge={"first_run": "all", "database": backend})
        one, two = runtime(raw, tmp_path, clock), runtime(raw, tmp_path, clock)
        try:
            for source in one.config.sources:
                poll(one, source, force=True)
            first, second = one.repo.due_deliveries("x", clock(), 10)
            assert {first.source, second.source} == {"a", "b"}
            looked = threading.Barrier(2)
            for rt in (one, two):
                looked_first = rt.repo.same_story_elsewhere

                def wait_after_looking(delivery, look=looked_first):
                    found = look(delivery)
                    looked.wait(10)
                    return found
                rt.repo.same_story_elsewhere = wait_after_looking
            race(lambda: _attempt(one, one.publishers["x"], first), lambda: _attempt(two, two.publishers["x"], second))
        finally:
            close(one)
            close(two)
        tweets = [r for r in x_api.requests if r.route == "/2/tweets" and r.method == "POST"]
        assert len(tweets) == 1


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, db_url):
    """A database URL on each backend, emptied first."""
    url = db_url if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    engine = create_database_engine(url)
    _drop_all(engine)
    engine.dispose()
    yield url
    engine = create_database_engine(url)
    _drop_all(engine)
    engine.dispose()


class TestIssue9Rules:
    def test_a_failed_copy_releases_the_link(self, repo):
        """A copy that failed holds nothing: the other source's copy is claimed and goes out."""
        store(repo, [item("a", url="x.id/berita/1")], source="one")
        store(repo, [item("b", url="x.id/berita/1")], source="two")
        first, second = repo.due_deliveries("x", T0, 10)
        assert repo.claim(first, T0, FROZEN)
        repo.mark_failed(first.id, "400 rejected", T0)
        assert repo.claim(second, T0, FROZEN)
        repo.mark_sent(second.id, "2", T0)
        assert states(repo) == {first.id: "failed", second.id: "sent"}

    def test_a_copy_in_doubt_keeps_the_link(self, repo):
        """A copy that may be on the account holds its link: the other source's copy is skipped."""
        store(repo, [item("a", url="x.id/berita/1")], source="one")
        store(repo, [item("b", url="x.id/berita/1")], source="two")
        first, second = repo.due_deliveries("x", T0, 10)
        assert repo.claim(first, T0, FROZEN)
        repo.mark_in_doubt(first.id, "502 after sending", None, T0)
        assert not repo.claim(second, T0, FROZEN)
        assert states(repo) == {first.id: "in_doubt", second.id: "skipped"}
        [again] = [d for d in repo.due_deliveries("x", T0, 10) if d.id == first.id] or [None]
        assert again is None  # no next check: the operator settles it; the in-doubt copy is untouched

    def test_home_page_links_and_one_sources_repeated_links_all_post(self, repo):
        """Distinct stories sharing a site's home page (two sources), and two stories of one source
        sharing a link, are all claimed: none takes a link."""
        store(repo, [item("home1", url="pod.id")], source="one")
        store(repo, [item("home2", url="pod.id")], source="two")
        store(repo, [item("ep1", url="pod.id/show"), item("ep2", url="pod.id/show")], source="pod")
        due = repo.due_deliveries("x", T0, 10)
        assert len(due) == 4 and all(repo.claim(d, T0, FROZEN) for d in due)
        with repo.engine.connect() as conn:
            assert conn.execute(select(schema.deliveries.c.link_key)).scalars().all() == [None] * 4

    def test_one_target_per_link_not_one_link_overall(self, repo):
        """The link is held per target (and recipient): the second source's copy still goes to a
        target the first does not post to."""
        store(repo, [item("a", url="x.id/berita/1")], targets=("x",), source="one")
        store(repo, [item("b", url="x.id/berita/1")], targets=("x", "fb"), source="two")
        [to_fb] = repo.due_deliveries("fb", T0, 10)
        first, second = repo.due_deliveries("x", T0, 10)
        assert repo.claim(first, T0, FROZEN) and repo.claim(to_fb, T0, FROZEN)
        assert not repo.claim(second, T0, FROZEN)


class TestUpgrade:
    def test_an_older_database_gives_each_link_to_its_oldest_carried_copy(self, repo):
        """An upgraded database: of the copies of one article already on a target (two sources, sent
        before the rule was a constraint), the oldest holds the link and the others stay as they are;
        a listing link one source shares and a home page hold nothing, another target's copy holds
        its own; a third source's new copy is then skipped."""
        store(repo, [item("a", url="x.id/berita/1")], source="one")
        store(repo, [item("b", url="x.id/berita/1")], source="two")
        store(repo, [item("ep1", url="pod.id/show"), item("ep2", url="pod.id/show")], source="pod")
        store(repo, [item("home", url="pod.id")], source="site")
        store(repo, [item("b2", url="x.id/berita/1")], targets=("fb",), source="five")
        D = schema.deliveries
        with repo.engine.begin() as conn:  # what a version 10 database holds: all sent, no link kept
            conn.execute(update(D).values(state="sent", sent_at=T0))
            conn.execute(text("DROP INDEX uq_deliveries_carried_link"))
            conn.execute(text("ALTER TABLE deliveries DROP COLUMN link_key"))
            conn.execute(text("ALTER TABLE sources DROP COLUMN polled_by"))
            conn.execute(update(schema.schema_version).values(version=10))
        assert migrate(repo.engine) == 10
        with repo.engine.connect() as conn:
            held = dict(conn.execute(select(D.c.id, D.c.link_key).order_by(D.c.id)).all())
        ids = sorted(held)  # one, two, pod's two episodes, the site's home page: on x; five's copy on fb
        assert held == {ids[0]: link_key("x.id/berita/1"), ids[1]: None, ids[2]: None, ids[3]: None,
                        ids[4]: None, ids[5]: link_key("x.id/berita/1")}
        store(repo, [item("c", url="x.id/berita/1")], source="three")
        [third] = repo.due_deliveries("x", T0, 10)
        assert not repo.claim(third, T0, FROZEN)
        assert states(repo)[third.id] == DeliveryState.SKIPPED.value

    def test_the_index_refuses_a_second_carried_copy_whatever_writes_it(self, repo):
        """The constraint holds for any writer, not only claim(): a second sent row holding the same
        link on the same target is refused by the database."""
        store(repo, [item("a", url="x.id/berita/1")], source="one")
        store(repo, [item("b", url="x.id/berita/1")], source="two")
        D = schema.deliveries
        first, second = repo.due_deliveries("x", T0, 10)
        key = link_key("x.id/berita/1")
        with repo.engine.begin() as conn:
            conn.execute(update(D).where(D.c.id == first.id).values(state="sent", link_key=key))
        with pytest.raises(IntegrityError), repo.engine.begin() as conn:
            conn.execute(update(D).where(D.c.id == second.id).values(state="sent", link_key=key))
        with repo.engine.begin() as conn:  # failed, it holds nothing: another copy may be sent
            conn.execute(update(D).where(D.c.id == first.id).values(state="failed"))
            conn.execute(update(D).where(D.c.id == second.id).values(state="sent", link_key=key))


class TestSamePollTwice:
    def test_two_processes_storing_one_sources_new_stories_at_once_store_them_once(self, repo):
        """A source polled by two processes at the same moment (`bridge run --once` beside a
        replica, or a poll that outlasted its lease): both store the same new stories at once. One
        stores them and queues their deliveries; the other finds them known and stores nothing,
        without an error (before, PostgreSQL refused the second insert and its poll failed with an
        IntegrityError). Ten rounds, a barrier before each pair of writes."""
        other = second_repo(repo)
        try:
            for round_ in range(10):
                items = [item(f"r{round_}/{n}", url=f"x.id/{round_}/{n}") for n in range(5)]
                ready = threading.Barrier(2)

                def stored(by):
                    def step():
                        ready.wait(10)
                        try:
                            return store(by, items)
                        except Exception as exc:  # noqa: BLE001 (the test reports it)
                            return exc
                    return step

                results = race(stored(repo), stored(other))
                assert not [r for r in results if isinstance(r, Exception)], results
                assert sorted(r.new_items for r in results) == [0, 5], results
            assert len(repo.due_deliveries("x", T0, 100)) == 50
        finally:
            other.engine.dispose()
