"""The store: schema and migrations, dedupe, the outbox's state changes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import (
    Boolean, Column, DateTime, Float, ForeignKey, Integer, MetaData, String, Table, Text, UniqueConstraint, insert,
    select, text, update,
)

from bridge.errors import DatabaseError
from bridge.model import FrozenPost, Item
from bridge.store import schema
from bridge.store.db import create_database_engine
from bridge.store.migrations import LATEST_VERSION, migrate
from bridge.store.repo import Repository
from bridge.urls import identity_key, identity_url

T0 = datetime(2026, 11, 26, 3, 0, tzinfo=timezone.utc)


def item(key: str, title: str = "Judul", url: str | None = None, published: datetime | None = None) -> Item:
    return Item(key=key, title=title, link=url, url=url, published=published)


def store(repo: Repository, items, targets=("x",), skip=None, source="antara", now=T0, recipients=None,
          hold=None):
    return repo.store_poll(source, "https://example.com/feed", items, targets, now=now, skip=skip or {},
                           etag=None, last_modified=None, next_poll_at=now + timedelta(minutes=5),
                           recipients=recipients, hold=hold)


FROZEN = FrozenPost("Judul https://x.id/1", cost=0.2)


def states(repo: Repository) -> dict[int, str]:
    with repo.engine.connect() as conn:
        return dict(conn.execute(text("SELECT id, state FROM deliveries")).all())


def _as_version_3(conn) -> None:
    """Turn a new database back into its version 3 shape (no frozen posts, no meta table, and none
    of version 11's poll and link columns)."""
    conn.execute(text("DROP INDEX uq_deliveries_carried_link"))
    conn.execute(text("ALTER TABLE deliveries DROP COLUMN link_key"))
    conn.execute(text("ALTER TABLE sources DROP COLUMN polled_by"))
    for column in ("post_text", "post_image_url", "post_alt_text", "first_attempt_at", "last_attempt_at"):
        conn.execute(text(f"ALTER TABLE deliveries DROP COLUMN {column}"))
    conn.execute(text("DROP TABLE meta"))


def _as_version_2(conn) -> None:
    """Turn a new database's deliveries table back into its version 2 shape (no recipient column,
    unique per item and target), to test the upgrade."""
    _as_version_3(conn)
    if conn.dialect.name != "sqlite":
        conn.execute(text("ALTER TABLE deliveries DROP CONSTRAINT uq_deliveries_item_target_recipient"))
        conn.execute(text("ALTER TABLE deliveries DROP COLUMN recipient"))
        conn.execute(text("ALTER TABLE deliveries ADD CONSTRAINT uq_deliveries_item_target UNIQUE (item_id, target)"))
        return
    columns = ("id, item_id, target, state, attempts, next_attempt_at, remote_id, last_error, created_at, "
               "updated_at, sent_at, cost")
    conn.execute(text("ALTER TABLE deliveries RENAME TO deliveries_v3"))
    conn.execute(text("DROP INDEX ix_deliveries_state_target"))
    conn.execute(text("DROP INDEX ix_deliveries_target_sent_at"))
    conn.execute(text("""CREATE TABLE deliveries (id INTEGER NOT NULL, item_id INTEGER NOT NULL,
        target VARCHAR(200) NOT NULL, state VARCHAR(20) NOT NULL, attempts INTEGER NOT NULL,
        next_attempt_at DATETIME, remote_id TEXT, last_error TEXT, created_at DATETIME NOT NULL,
        updated_at DATETIME NOT NULL, sent_at DATETIME, cost FLOAT, PRIMARY KEY (id),
        CONSTRAINT uq_deliveries_item_target UNIQUE (item_id, target),
        FOREIGN KEY(item_id) REFERENCES items (id) ON DELETE CASCADE)"""))
    conn.execute(text(f"INSERT INTO deliveries ({columns}) SELECT {columns} FROM deliveries_v3"))
    conn.execute(text("DROP TABLE deliveries_v3"))
    conn.execute(text("CREATE INDEX ix_deliveries_state_target ON deliveries (state, target)"))
    conn.execute(text("CREATE INDEX ix_deliveries_target_sent_at ON deliveries (target, sent_at)"))


def _v3_tables() -> MetaData:
    """The tables exactly as schema version 3 made them, written out here (not taken from
    schema.py, which moves on) so the upgrade from 3 is tested from what real databases hold."""
    v3 = MetaData()
    Table("schema_version", v3, Column("version", Integer, nullable=False))
    Table("sources", v3, Column("name", String(200), primary_key=True), Column("url", Text, nullable=False),
          Column("etag", Text), Column("last_modified", Text), Column("initialised", Boolean, nullable=False),
          Column("last_poll_at", DateTime), Column("last_success_at", DateTime), Column("last_outcome", String(40)),
          Column("last_error", Text), Column("consecutive_failures", Integer, nullable=False),
          Column("next_poll_at", DateTime), Column("last_items_seen", Integer))
    Table("items", v3, Column("id", Integer, primary_key=True, autoincrement=True),
          Column("source", String(200), nullable=False), Column("key", Text, nullable=False), Column("url", Text),
          Column("link", Text), Column("title", Text, nullable=False), Column("summary", Text, nullable=False),
          Column("published_at", DateTime), Column("categories", Text, nullable=False), Column("image_url", Text),
          Column("first_seen_at", DateTime, nullable=False),
          UniqueConstraint("source", "key", name="uq_items_source_key"))
    Table("deliveries", v3, Column("id", Integer, primary_key=True, autoincrement=True),
          Column("item_id", Integer, ForeignKey("items.id", ondelete="CASCADE"), nullable=False),
          Column("target", String(200), nullable=False), Column("state", String(20), nullable=False),
          Column("attempts", Integer, nullable=False), Column("next_attempt_at", DateTime),
          Column("remote_id", Text), Column("last_error", Text), Column("created_at", DateTime, nullable=False),
          Column("updated_at", DateTime, nullable=False), Column("sent_at", DateTime), Column("cost", Float),
          Column("recipient", String(64), nullable=False, server_default=""),
          UniqueConstraint("item_id", "target", "recipient", name="uq_deliveries_item_target_recipient"))
    Table("targets", v3, Column("name", String(200), primary_key=True), Column("paused_reason", Text),
          Column("paused_at", DateTime), Column("hold_until", DateTime))
    return v3


def _v3_database_with(repo: Repository, rows: list[tuple[str, str, str | None]]) -> None:
    """Replace the database with a version 3 one holding these (source, key, url) items, in order,
    each with a delivery to "x" that was sent (so later ids are newer rows)."""
    naive = T0.replace(tzinfo=None)
    v3 = _v3_tables()
    with repo.engine.begin() as conn:
        schema.metadata.drop_all(conn)
        v3.create_all(conn)
        conn.execute(insert(v3.tables["schema_version"]).values(version=3))
        for source, key, url in rows:
            item_id = conn.execute(insert(v3.tables["items"]).values(
                source=source, key=key, url=url, link=url, title="Judul", summary="", categories="",
                first_seen_at=naive)).inserted_primary_key[0]
            conn.execute(insert(v3.tables["deliveries"]).values(
                item_id=item_id, target="x", state="sent", attempts=1, remote_id="1", created_at=naive,
                updated_at=naive, sent_at=naive))


def _keys(repo: Repository) -> list[tuple[str, str, str | None]]:
    with repo.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(schema.items.c.source, schema.items.c.key, schema.items.c.url)
                                               .order_by(schema.items.c.id))]


class TestUrlIdentityMigration:
    def test_version_3_database_knows_old_urls_by_their_identity(self, repo):
        """After the upgrade, a story stored as http://www.x/a is known as https://x/a/ and its url matches."""
        _v3_database_with(repo, [("antara", "http://www.x/a", "http://www.x/a"), ("antara", "12345", "https://x/b")])
        assert migrate(repo.engine) == 3
        assert _keys(repo) == [("antara", "x/a", "x/a"), ("antara", "12345", "x/b")]
        new = Item(key=identity_key("https://x/a/"), title="t", link="https://x/a/", url=identity_url("https://x/a/"))
        assert store(repo, [new]).new_items == 0
        elsewhere = store(repo, [Item(key="9", title="t", url=identity_url("https://x/a"))], source="other")
        assert (elsewhere.new_items, elsewhere.pending) == (1, 1)
        [copy] = [d for d in repo.due_deliveries("x", T0, 10) if d.source == "other"]
        assert "via antara" in repo.same_story_elsewhere(copy)  # the old copy, sent under the old url

    def test_non_url_keys_stay_as_they_were(self, repo):
        """Keys that are not http(s) URLs (preset ids, hashes, tags) are left exactly as stored."""
        kept = [("k", "kemenpora:detail:42", None), ("k", "sha256:ab", None), ("k", "tag:x.com,2026:1", None),
                ("k", "ftp://www.x/a", None)]
        _v3_database_with(repo, kept)
        migrate(repo.engine)
        assert _keys(repo) == kept

    def test_collisions_keep_every_row_and_the_oldest_takes_the_key(self, repo):
        """Rows of one source reducing to one key: the lowest id takes it, the others keep theirs, none is lost."""
        _v3_database_with(repo, [
            ("antara", "http://www.x/a", "http://www.x/a"),
            ("antara", "https://x/a/", "https://x/a"),
            ("antara", "https://x/a", "https://x/a"),
            ("other", "https://x/a", "https://x/a"),  # another source: its own key space
            ("antara", "x/b", None),  # a guid already spelt like an identity holds it
            ("antara", "https://www.x/b", None),
        ])
        deliveries_before = states(repo)
        migrate(repo.engine)
        assert _keys(repo) == [
            ("antara", "x/a", "x/a"), ("antara", "https://x/a/", "x/a"), ("antara", "https://x/a", "x/a"),
            ("other", "x/a", "x/a"), ("antara", "x/b", None), ("antara", "https://www.x/b", None),
        ]
        assert states(repo) == deliveries_before

    def test_version_8_database_knows_stories_by_one_spelling_of_escapes(self, repo):
        """A database whose keys were stored with lower-case or raw escapes (before schema 10) knows those
        stories under the one spelling (%2F, ~, %C3%BC); guids that are not URLs stay as written."""
        kept = [("a", "12345", None), ("a", "post/%c3%bc", None), ("a", "tag:x.id,2026:%7e", None)]
        store(repo, [item(key, url=url) for _, key, url in kept], source="a")
        old = [("antara", "x.id/berita/%c3%bc-1", "x.id/berita/%c3%bc-1"), ("antara", "x.id/berita/ü-2", None),
               ("antara", "x.id/%7euser?q=%e4", "x.id/%7euser?q=%e4"), ("antara", "x.id/berita/%C3%BC-1", None)]
        store(repo, [item(key, url=url) for _, key, url in old])
        with repo.engine.begin() as conn:
            conn.execute(update(schema.schema_version).values(version=8))
        assert migrate(repo.engine) == 8
        assert _keys(repo) == kept + [
            ("antara", "x.id/berita/%c3%bc-1", "x.id/berita/%C3%BC-1"),  # its new key was taken: kept (a duplicate)
            ("antara", "x.id/berita/%C3%BC-2", None), ("antara", "x.id/~user?q=%E4", "x.id/~user?q=%E4"),
            ("antara", "x.id/berita/%C3%BC-1", None)]
        again = [Item(key=identity_key(url), title="Judul", url=identity_url(url), link=url)
                 for url in ("https://x.id/berita/ü-1", "https://x.id/berita/%C3%BC-2", "https://x.id/~user?q=%E4")]
        assert store(repo, again).new_items == 0
        assert migrate(repo.engine) == LATEST_VERSION  # idempotent

    def test_upgrade_updates_many_rows(self, repo):
        """More rows than one update batch are all rewritten."""
        _v3_database_with(repo, [("s", f"http://www.x/{n}", f"http://www.x/{n}") for n in range(1_050)])
        migrate(repo.engine)
        assert _keys(repo)[-1] == ("s", "x/1049", "x/1049") and all(not k.startswith("http") for _, k, _ in _keys(repo))


class TestDatabase:
    def test_sqlite_pragmas(self, repo):
        """SQLite runs in WAL mode with synchronous=FULL, foreign keys and a busy timeout."""
        if repo.engine.dialect.name != "sqlite":
            pytest.skip("SQLite only")
        with repo.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000

    def test_migrate_is_idempotent_and_keeps_data(self, repo):
        """Running the migrations again (an upgrade or a restart) keeps every seen item."""
        store(repo, [item("a"), item("b")])
        engine = create_database_engine(repo.engine.url.render_as_string(hide_password=False))
        assert migrate(engine) == LATEST_VERSION
        assert Repository(engine).known_keys("antara", ["a", "b"]) == {"a", "b"}

    def test_upgrade_from_version_2_keeps_deliveries(self, repo):
        """A version 2 database (one delivery per item and target) gets recipients and keeps every delivery."""
        store(repo, [item("a"), item("b")])
        before = states(repo)
        with repo.engine.begin() as conn:
            _as_version_2(conn)
            conn.execute(update(schema.schema_version).values(version=2))
        assert migrate(repo.engine) == 2
        assert states(repo) == before and {d.recipient for d in repo.due_deliveries("x", T0, 10)} == {""}
        store(repo, [item("c")], targets=["wa"], recipients={"wa": ["6281", "6282"]})
        assert sorted(d.recipient for d in repo.due_deliveries("wa", T0, 10)) == ["6281", "6282"]

    def test_upgrade_from_version_1_keeps_items(self, repo):
        """A version 1 database (before post costs) is upgraded in place and keeps every seen item."""
        store(repo, [item("a"), item("b")])
        with repo.engine.begin() as conn:
            _as_version_2(conn)
            conn.execute(text("ALTER TABLE deliveries DROP COLUMN cost"))
            conn.execute(update(schema.schema_version).values(version=1))
        assert migrate(repo.engine) == 1
        assert repo.known_keys("antara", ["a", "b"]) == {"a", "b"}
        [first, _] = repo.due_deliveries("x", T0, 10)
        repo.claim(first, T0, FrozenPost("Judul", cost=0.2))
        repo.mark_sent(first.id, "1", T0)
        assert repo.spent_since("x", T0) == pytest.approx(0.2)

    def test_newer_database_is_refused(self, repo):
        """A database from a newer bridge is refused with a message instead of being damaged."""
        with repo.engine.begin() as conn:
            conn.execute(update(schema.schema_version).values(version=LATEST_VERSION + 1))
        with pytest.raises(DatabaseError, match="newer"):
            migrate(repo.engine)

    def test_unusable_database_url(self):
        """A malformed database URL is a DatabaseError, not a traceback."""
        with pytest.raises(DatabaseError):
            create_database_engine("not a url")


class TestDedupe:
    def test_new_items_get_one_pending_delivery_per_target(self, repo):
        """Each new item gets one pending delivery for each of the source's targets."""
        result = store(repo, [item("a"), item("b")], targets=("x", "y"))
        assert (result.new_items, result.pending, result.skipped) == (2, 4, 0)

    def test_known_key_is_never_new_again(self, repo):
        """An item seen before under the same key is not stored or queued again, whatever its title or date."""
        store(repo, [item("a", "Judul lama")])
        result = store(repo, [item("a", "Judul baru", published=T0)])
        assert result.new_items == 0 and len(states(repo)) == 1

    def test_a_key_differing_only_by_its_fragment_is_the_same_story(self, repo):
        """A stored story whose key gains, loses or changes its #fragment (same title) is not new again; with
        another title, or where the read lists several stories on the one page, it is new."""
        store(repo, [item("x.id/a_b", "Judul A"), item("x.id/c#1", "Judul C"), item("x.id/100%", "Persen")])
        same = [item("x.id/a_b#comments", "Judul  a"), item("x.id/c", "Judul C"), item("x.id/c#2", "Judul C"),
                item("x.id/100%#x", "Persen")]
        assert repo.known_keys("antara", [i.key for i in same], {i.key: i.title for i in same}) == {
            "x.id/a_b#comments", "x.id/100%#x"}  # c and c#2 share a page in this read
        alone = [item("x.id/c#2", "Judul C"), item("x.id/aXb#1", "Judul A"), item("x.id/a#1", "Judul A")]
        assert repo.known_keys("antara", [i.key for i in alone], {i.key: i.title for i in alone}) == {"x.id/c#2"}
        other = [item("x.id/a_b#2", "Judul lain"), item("tag:x.id,2026:c#1", "Judul C")]
        assert store(repo, other).new_items == 2
        assert store(repo, [item("x.id/a_b#utm_anchor", "Judul A")]).new_items == 0

    def test_same_link_from_two_sources_goes_out_once_per_target(self, repo):
        """The same article from a second source is judged a duplicate, when sent, only for targets that carry it."""
        store(repo, [item("a", url="x.id/berita/1")], targets=("x",), source="one")
        [first] = repo.due_deliveries("x", T0, 10)
        repo.claim(first, T0, FROZEN)
        repo.mark_sent(first.id, "1", T0)
        result = store(repo, [item("other-guid", url="x.id/berita/1")], targets=("x", "fb"), source="two")
        assert (result.new_items, result.pending, result.skipped) == (1, 2, 0)
        [to_x] = repo.due_deliveries("x", T0, 10)
        [to_fb] = repo.due_deliveries("fb", T0, 10)
        assert "via one (delivery" in repo.same_story_elsewhere(to_x)
        assert repo.same_story_elsewhere(to_fb) is None

    def test_same_article_under_another_fragment_from_two_sources_goes_out_once(self, repo):
        """Another source's link to the article with an anchor (same page, same title) is the same story;
        another title on that page (a second item of a one-page listing) is not."""
        store(repo, [item("a", "Judul A", url="x.id/berita/1")], source="one")
        [first] = repo.due_deliveries("x", T0, 10)
        repo.claim(first, T0, FROZEN)
        repo.mark_sent(first.id, "1", T0)
        store(repo, [item("b", "judul  a", url="x.id/berita/1#comments"), item("c", "Judul C", url="x.id/berita/1#2"),
                     item("d", "Judul A", url="x.id/berita/10")], source="two")
        copies = {d.item.key: d for d in repo.due_deliveries("x", T0, 10) if d.source == "two"}
        assert "via one (delivery" in repo.same_story_elsewhere(copies["b"])
        assert repo.same_story_elsewhere(copies["c"]) is None and repo.same_story_elsewhere(copies["d"]) is None

    def test_failed_copy_does_not_block_the_other_source(self, repo):
        """A copy from another source that failed (or still waits) does not stop this one."""
        store(repo, [item("a", url="x.id/berita/1")], source="one")
        [first] = repo.due_deliveries("x", T0, 10)
        store(repo, [item("b", url="x.id/berita/1")], source="two")
        second = [d for d in repo.due_deliveries("x", T0, 10) if d.source == "two"][0]
        assert repo.same_story_elsewhere(second) is None  # the first is only pending
        repo.claim(first, T0, FROZEN)
        repo.mark_failed(first.id, "400", T0)
        assert repo.same_story_elsewhere(second) is None

    def test_same_link_twice_in_one_feed(self, repo):
        """Two entries with different ids but the same link in one feed are two stories: both post."""
        result = store(repo, [item("a", url="x.id/1"), item("b", url="x.id/1")])
        assert (result.pending, result.skipped) == (2, 0)
        a, b = repo.due_deliveries("x", T0, 10)
        repo.claim(a, T0, FROZEN)
        repo.mark_sent(a.id, "1", T0)
        assert repo.same_story_elsewhere(b) is None

    def test_shared_listing_link_is_no_article(self, repo):
        """A link several stories of one source share (a podcast's home page) never makes another source's story a duplicate."""
        store(repo, [item("ep1", url="pod.id/show"), item("ep2", url="pod.id/show")], source="pod")
        for d in repo.due_deliveries("x", T0, 10):
            repo.claim(d, T0, FROZEN)
            repo.mark_sent(d.id, d.item.key, T0)
        store(repo, [item("home", url="pod.id")], source="one")
        store(repo, [item("home2", url="pod.id")], source="two")
        one = [d for d in repo.due_deliveries("x", T0, 10) if d.source == "one"][0]
        repo.claim(one, T0, FROZEN)
        repo.mark_sent(one.id, "9", T0)
        [two] = repo.due_deliveries("x", T0, 10)
        assert repo.same_story_elsewhere(two) is None  # a site's home page names no article

    def test_repeated_key_in_one_feed(self, repo):
        """A feed that repeats a guid does not break the transaction."""
        assert store(repo, [item("a"), item("a")]).new_items == 1

    def test_skip_records_items_without_posting_them(self, repo):
        """New items named in skip are stored as seen with skipped deliveries carrying the reason."""
        result = store(repo, [item("a"), item("b")], skip={"a": "first run"})
        assert (result.pending, result.skipped) == (1, 1)


class TestOutbox:
    def test_claim_is_exclusive(self, repo):
        """Only one worker can move a delivery from pending to sending."""
        store(repo, [item("a")])
        [delivery] = repo.due_deliveries("x", T0, 10)
        assert repo.claim(delivery, T0, FROZEN) is True
        assert repo.claim(delivery, T0, FROZEN) is False
        assert repo.due_deliveries("x", T0, 10) == []

    def test_oldest_story_first(self, repo):
        """Due deliveries come oldest story first (by date, else by when first seen)."""
        store(repo, [item("new", published=T0), item("old", published=T0 - timedelta(days=1))])
        assert [d.item.key for d in repo.due_deliveries("x", T0, 10)] == ["old", "new"]

    def test_retry_waits_until_its_time(self, repo):
        """A deferred delivery is not due before its retry time."""
        store(repo, [item("a")])
        [d] = repo.due_deliveries("x", T0, 10)
        repo.claim(d, T0, FROZEN)
        repo.mark_retry(d.id, "503", T0 + timedelta(minutes=2), T0, counted=True)
        assert repo.due_deliveries("x", T0 + timedelta(minutes=1), 10) == []
        [again] = repo.due_deliveries("x", T0 + timedelta(minutes=2), 10)
        assert again.attempts == 1 and again.last_error == "503"

    def test_in_doubt_recovery(self, repo):
        """After a crash, every `sending` delivery is in doubt and due now, keeping the post it froze."""
        store(repo, [item("a")], targets=("x", "other"))
        for d in repo.due_deliveries("x", T0, 10) + repo.due_deliveries("other", T0, 10):
            repo.claim(d, T0, FrozenPost("Judul https://x.id/1", cost=0.2))
        assert repo.recover_in_doubt(T0 + timedelta(minutes=1)) == 2
        assert sorted(states(repo).values()) == ["in_doubt", "in_doubt"]
        [again] = repo.due_deliveries("x", T0 + timedelta(minutes=1), 10)
        assert again.frozen == FrozenPost("Judul https://x.id/1", cost=0.2) and again.first_attempt_at == T0

    def test_frozen_post_is_kept_by_later_claims(self, repo):
        """The first claim stores the post; a later claim (a re-send) keeps it, whatever it is given."""
        store(repo, [item("a")])
        [d] = repo.due_deliveries("x", T0, 10)
        repo.claim(d, T0, FrozenPost("first text", "http://127.0.0.1/a.jpg", "alt", 0.2))
        repo.mark_retry(d.id, "503", T0, T0, counted=True)
        [d] = repo.due_deliveries("x", T0, 10)
        repo.claim(d, T0 + timedelta(minutes=5), FrozenPost("second text", None, "", 0.015))
        repo.mark_sent(d.id, "1", T0)
        with repo.engine.connect() as conn:
            [row] = conn.execute(text("SELECT post_text, post_image_url, post_alt_text, cost FROM deliveries")).all()
        assert tuple(row) == ("first text", "http://127.0.0.1/a.jpg", "alt", 0.2)

    def test_resolve_and_retry_settle_a_post_in_doubt(self, repo):
        """`resolve --sent` makes a post in doubt sent; `retry` puts one back in the queue; nothing else is touched."""
        store(repo, [item("a"), item("b")])
        a, b = repo.due_deliveries("x", T0, 10)
        for d in (a, b):
            repo.claim(d, T0, FROZEN)
            repo.mark_in_doubt(d.id, "timed out", None, T0)
        assert repo.due_deliveries("x", T0 + timedelta(days=1), 10) == []  # the operator decides
        assert repo.resolve_sent(a.id, T0) and not repo.resolve_sent(a.id, T0)
        assert repo.requeue(b.id, T0)
        assert states(repo) == {a.id: "sent", b.id: "pending"}

    def test_held_burst_is_released_or_dropped(self, repo):
        """A held burst waits; `release` queues it, `catchup` drops it, per source."""
        store(repo, [item("a"), item("b")], source="one", hold="burst")
        store(repo, [item("c")], source="two", hold="burst")
        assert repo.due_deliveries("x", T0, 10) == [] and repo.held_stories() == {"one": 2, "two": 1}
        assert repo.release_held("one", T0) == 2
        assert repo.skip_held("two", "caught up", T0) == 1
        assert sorted(states(repo).values()) == ["pending", "pending", "skipped"]

    def test_retry_and_skip_commands(self, repo):
        """A failed delivery can be re-queued; a pending one can be skipped; other states are left alone."""
        store(repo, [item("a"), item("b")])
        a, b = repo.due_deliveries("x", T0, 10)
        repo.claim(a, T0, FROZEN)
        repo.mark_failed(a.id, "400", T0)
        assert repo.requeue(a.id, T0) and not repo.requeue(a.id, T0)
        assert repo.skip(b.id, "operator", T0) and not repo.skip(b.id, "operator", T0)
        assert states(repo) == {a.id: "pending", b.id: "skipped"}

    def test_counts_for_pacing(self, repo):
        """sent_since and last_sent_at see only sent deliveries."""
        store(repo, [item("a"), item("b")])
        a, b = repo.due_deliveries("x", T0, 10)
        repo.claim(a, T0, FROZEN)
        repo.mark_sent(a.id, "123", T0)
        assert repo.sent_since("x", T0 - timedelta(hours=1)) == 1
        assert repo.sent_since("x", T0 + timedelta(seconds=1)) == 0
        assert repo.last_sent_at("x") == T0

    def test_pause_and_hold(self, repo):
        """A pause persists until cleared at start-up; a hold is a time."""
        repo.pause_target("x", "bad token", T0)
        repo.hold_target("x", T0 + timedelta(minutes=15))
        state = repo.target_state("x")
        assert state.paused_reason == "bad token" and state.hold_until == T0 + timedelta(minutes=15)
        assert repo.clear_pauses() == ["x"]
        assert repo.target_state("x").paused_reason is None

    def test_naive_datetimes_are_refused(self, repo):
        """Storing a naive datetime is a programming error caught at once (times are always UTC-aware)."""
        with pytest.raises(Exception, match="naive"):
            with repo.engine.begin() as conn:
                conn.execute(insert(schema.targets).values(name="x", hold_until=datetime(2026, 1, 1)))


def test_database_errors_are_explained_in_one_line():
    """Read-only, full, locked and unopenable SQLite errors each get one line with the cause and what to do."""
    from bridge.store.db import explain

    url = "sqlite:////var/lib/bridge/bridge.db"
    cases = {"attempt to write a readonly database": "let the service user write",
             "database or disk is full": "free space there",
             "database is locked": "end that process",
             "unable to open database file": "its folder exists"}
    for reason, fix in cases.items():
        text = explain(Exception(reason + "\n  detail"), url)
        assert fix in text and url in text and "\n" not in text


def _group_counts(repo: Repository) -> list[dict]:
    with repo.engine.connect() as conn:
        return [{"target": t, "state": s, "count": n} for t, s, n in conn.execute(text(
            "SELECT target, state, count(*) FROM deliveries GROUP BY target, state ORDER BY target, state"))]


class TestRunningCounts:
    def test_totals_follow_every_insert_and_state_change(self, repo):
        """The running totals (status, /metrics) equal a count of the rows after inserts, sends,
        failures and skips, whatever code made them."""
        store(repo, [item("a"), item("b"), item("c")], targets=["x", "y"])
        store(repo, [item("d")], source="detik")
        a, b, _, _ = repo.due_deliveries("x", T0, 10)
        repo.claim(a, T0, FROZEN)
        repo.mark_sent(a.id, "1", T0)
        repo.mark_failed(b.id, "403", T0)
        repo.skip(repo.due_deliveries("y", T0, 1)[0].id, "operator", T0)
        assert repo.delivery_counts() == _group_counts(repo)
        assert {row["name"]: row["items"] for row in repo.source_rows()} == {"antara": 3, "detik": 1}

    def test_upgrade_from_version_6_counts_what_is_there(self, repo):
        """A version 6 database (no running totals) is counted once by the upgrade, and its named
        indexes are made where missing."""
        store(repo, [item("a"), item("b")], targets=["x", "y"])
        [first, _] = repo.due_deliveries("x", T0, 10)
        repo.mark_failed(first.id, "403", T0)
        with repo.engine.begin() as conn:
            for name, table in (("tr_items_counted", "items"), ("tr_items_uncounted", "items"),
                                ("tr_deliveries_counted", "deliveries"), ("tr_deliveries_recounted", "deliveries"),
                                ("tr_deliveries_uncounted", "deliveries")):
                on = "" if conn.dialect.name == "sqlite" else f" ON {table}"
                conn.execute(text(f"DROP TRIGGER IF EXISTS {name}{on}"))
            conn.execute(text("DROP TABLE item_counts"))
            conn.execute(text("DROP TABLE delivery_counts"))
            conn.execute(text("DROP INDEX ix_items_url"))
            conn.execute(update(schema.schema_version).values(version=6))
        assert migrate(repo.engine) == 6
        assert repo.delivery_counts() == _group_counts(repo)
        assert [row["items"] for row in repo.source_rows()] == [2]
        store(repo, [item("c")], targets=["x"])
        assert repo.delivery_counts() == _group_counts(repo)
        assert repo.carried_elsewhere("https://a.id/1", "detik", "x") is None  # ix_items_url is back


def test_the_fragment_rule_finds_only_the_same_page(repo):
    """A stored key that continues the page with another character ("/1!", "/1 ", "/10") is another
    page, even with the same title: only page#... and page itself count (on SQLite the lookup reads
    a range of the index that also holds those, and they are left out)."""
    store(repo, [item("x.id/a/1!b", title="Sama"), item("x.id/a/1 c", title="Sama"),
                 item("x.id/a/10", title="Sama")])
    new = ["x.id/a/1#komentar"]
    assert repo.known_keys("antara", new, {new[0]: "Sama"}) == set()
    store(repo, [item("x.id/a/1", title="Sama")])
    assert repo.known_keys("antara", new, {new[0]: "Sama"}) == set(new)
