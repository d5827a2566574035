"""The hot queries are driven by their index whatever the statistics say, on SQLite and PostgreSQL.

Each test runs the repository's own code and captures the SQL it sends (before_cursor_execute), then
asks the database how it would run each statement: so a changed query breaks the test, not a copy of
it typed here.

- SQLite: EXPLAIN QUERY PLAN, after ANALYZE and then with statistics rewritten to lie (sqlite_stat1
  saying the link index matches everything and the time index nothing): the queries name their index
  (INDEXED BY), so no statistics can send them through a table's history.
- PostgreSQL: EXPLAIN after ANALYZE, on a store holding an archive (5,000 old stories, 10,000 sent
  posts, 5,000 charges) besides the rows the tests look at: enough rows that the planner's costs
  are real, and no `enable_seqscan = off`, so the test shows PostgreSQL *choosing* each index from
  true statistics (as autovacuum keeps them), not merely able to use it. PostgreSQL takes no
  hints, so lying statistics are a SQLite-only case.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from datetime import timedelta
from types import SimpleNamespace

import pytest
from prometheus_client import generate_latest
from sqlalchemy import event, text

from bridge import status
from bridge.config import parse_config
from bridge.metrics import Metrics
from bridge.model import DeliveryState, FrozenPost, Item
from bridge.store.repo import Repository
from tests.conftest import FakeClock

NOW = FakeClock().now
TARGETS = ("x", "x_en")
DAYS, PER_DAY = 8, 3
"""Stories a day per source: sent but one each day (kept small: every test fills its own store)."""
ITEM_INDEX = {"sqlite": "sqlite_autoindex_items_1", "postgresql": "uq_items_source_key"}
DELIVERY_INDEX = {"sqlite": "sqlite_autoindex_deliveries_1", "postgresql": "uq_deliveries_item_target_recipient"}
HISTORY = re.compile(r"SCAN (deliveries|items)\b|Seq Scan on (deliveries|items)\b")
"""A plan step that reads a history table from end to end."""


HISTORY_ITEMS = 5_000
_HISTORY = """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {count})
INSERT INTO items (source, key, url, link, title, summary, categories, first_seen_at)
SELECT 'archive', 'old.id/' || i, 'old.id/' || i, 'https://old.id/' || i, 'Berita lama', '', '', :old FROM n
"""
_HISTORY_SENT = """
INSERT INTO deliveries (item_id, target, recipient, state, attempts, created_at, updated_at, sent_at, cost)
SELECT id, :target, '', 'sent', 1, first_seen_at, first_seen_at, first_seen_at, 0.2 FROM items
WHERE source = 'archive'
"""


def fill_history(repo: Repository) -> None:
    """Months of sent posts, older than anything the tests look at: the rows a bad plan would read."""
    old = NOW - timedelta(days=300)
    old = old.replace(tzinfo=None) if repo.engine.dialect.name != "sqlite" else old.strftime("%Y-%m-%d %H:%M:%S.%f")
    with repo.engine.begin() as conn:
        conn.execute(text(_HISTORY.format(count=HISTORY_ITEMS)), {"old": old})
        for target in TARGETS:
            conn.execute(text(_HISTORY_SENT), {"target": target})
        conn.execute(text("INSERT INTO charges (target, at, amount, what) SELECT 'x', first_seen_at, 0.005, "
                          "'media_metadata' FROM items WHERE source = 'archive'"))


def fill(repo: Repository) -> None:
    """Two sources carrying the same article, history sent, a few waiting, a failure, a charge."""
    fill_history(repo)
    for day in range(DAYS):
        now = NOW - timedelta(days=DAYS - day)
        for source in ("antara", "detik"):
            items = [Item(key=f"{source}/{day}/{n}", title=f"Berita {n}", link=f"https://a.id/{day}/{n}",
                          url=f"a.id/{day}/{n}") for n in range(PER_DAY)]
            repo.store_poll(source, f"https://{source}.id/rss", items, TARGETS, now=now, skip={}, etag=None,
                            last_modified=None, next_poll_at=now + timedelta(minutes=5))
        for target in TARGETS:
            for delivery in repo.due_deliveries(target, now, 100)[:-1]:
                repo.claim(delivery, now, FrozenPost(f"Berita https://a.id/{delivery.id}", cost=0.2))
                repo.mark_sent(delivery.id, str(delivery.id), now)
    [failed] = repo.due_deliveries("x", NOW, 1)
    repo.mark_failed(failed.id, "X answered 403", NOW)
    repo.add_charge("x", 0.005, "media_metadata", NOW)


@contextmanager
def captured(repo: Repository):
    """The statements that read tables which the repository runs inside the block, with their
    parameters: SELECTs, and INSERT ... SELECT."""
    statements: list[tuple[str, object]] = []

    def capture(_conn, _cursor, statement, parameters, _context, many):
        words = statement.lstrip().upper()
        if words.startswith("SELECT") or (words.startswith("INSERT") and " SELECT " in words and not many):
            statements.append((statement, parameters))

    event.listen(repo.engine, "before_cursor_execute", capture)
    try:
        yield statements
    finally:
        event.remove(repo.engine, "before_cursor_execute", capture)


def plans(repo: Repository, statements) -> list[tuple[str, str]]:
    """(statement, its plan as text) for each captured statement."""
    sqlite = repo.engine.dialect.name == "sqlite"
    out = []
    with repo.engine.connect() as conn:
        for statement, parameters in statements:
            explain = ("EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN ") + statement
            rows = conn.exec_driver_sql(explain, parameters).all()
            out.append((statement, "\n".join(str(row[-1]) for row in rows)))
    return out


def skew_statistics(repo: Repository) -> None:
    """SQLite: statistics that would lure a planner onto the history (each link shared by every
    story, each target's sent times unique), loaded as if ANALYZE had found them."""
    with repo.engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
        conn.exec_driver_sql("DELETE FROM sqlite_stat1")
        for table, index, stat in (
            ("items", "ix_items_url", "1000000 1000000"),
            ("items", "sqlite_autoindex_items_1", "1000000 1000000 1000000"),
            ("deliveries", "ix_deliveries_target_sent_at", "2000000 1 1"),
            ("deliveries", "ix_deliveries_state_target", "2000000 2000000 2000000"),
            ("deliveries", "sqlite_autoindex_deliveries_1", "2000000 1000000 1000000 1000000"),
        ):
            conn.exec_driver_sql("INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES (?, ?, ?)", (table, index, stat))
        conn.exec_driver_sql("ANALYZE sqlite_schema")  # reload the statistics just written


@pytest.fixture(params=["analysed", "skewed"])
def store(request, repo):
    """A filled store; on SQLite with true statistics, then with lying ones."""
    dialect = repo.engine.dialect.name
    if dialect != "sqlite" and request.param == "skewed":
        pytest.skip("PostgreSQL takes no index hints: its statistics are the true ones (see above)")
    fill(repo)
    if dialect == "sqlite":
        if request.param == "skewed":
            skew_statistics(repo)
        else:
            with repo.engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE")
    else:
        with repo.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    return repo


def run(repo: Repository, work) -> list[tuple[str, str]]:
    with captured(repo) as statements:
        work()
    assert statements, "the repository ran no query"
    return plans(repo, statements)


def assert_uses(found: list[tuple[str, str]], *indexes: str) -> None:
    text = "\n".join(plan for _, plan in found)
    for index in indexes:
        assert index in text, f"{index} not used:\n{text}"
    for statement, plan in found:
        assert not HISTORY.search(plan), f"reads a history table whole:\n{statement}\n{plan}"


def config(tmp_path):
    raw = {"bridge": {"database": "sqlite:///unused.db", "dry_run": True},
           "sources": [{"name": name, "url": f"https://{name}.id/rss", "targets": list(TARGETS)}
                       for name in ("antara", "detik")],
           "targets": {name: {"kind": "x", "min_interval": "1m", "budget_per_day": 5.0} for name in TARGETS}}
    return parse_config(raw, environ={"STATE_DIRECTORY": str(tmp_path)}, secrets=False)


def test_same_link_check_reads_the_link_index(store):
    """The same-link check finds a story's copies through its link, never through the target's
    deliveries or the source's stories."""
    dialect = store.engine.dialect.name
    found = run(store, lambda: store.carried_elsewhere("a.id/3/1", "detik", "x"))
    assert_uses(found, "ix_items_url", DELIVERY_INDEX[dialect])
    assert store.carried_elsewhere("a.id/3/1", "detik", "x")  # the copy from antara was sent


def test_due_deliveries_read_the_state_index(store):
    """Due deliveries are found among the waiting ones (state, target), not the target's history."""
    found = run(store, lambda: store.due_deliveries("x", NOW, 50))
    assert_uses(found, "ix_deliveries_state_target")


def test_pacing_reads_the_time_index(store):
    """Last sent, sent since, spent since and the n-th latest post (max_per_hour) read (target,
    sent_at) from a time on, or n rows back from the newest: today's rows."""
    found = run(store, lambda: (store.last_sent_at("x"), store.sent_since("x", NOW - timedelta(days=1)),
                                store.spent_since("x", NOW - timedelta(days=1)), store.nth_latest_sent_at("x", 3)))
    assert_uses(found, "ix_deliveries_target_sent_at", "ix_deliveries_state_target", "ix_charges_target_at")
    assert store.sent_since("x", NOW - timedelta(days=2)) == 2 * 2 * PER_DAY  # both sources


def test_known_keys_read_the_key_index(store):
    """Which of a poll's keys are known: looked up by (source, key)."""
    dialect = store.engine.dialect.name
    found = run(store, lambda: store.known_keys("antara", ["antara/1/1", "antara/99/1"]))
    assert_uses(found, ITEM_INDEX[dialect])


def test_storing_a_poll_reads_the_key_index(store):
    """A poll's new stories and their deliveries are stored through (source, key): the check for
    known keys and the INSERT ... SELECT that gives each new story its deliveries never read the
    source's stories whole (nor, on SQLite with lying statistics, walk the table in id order)."""
    dialect = store.engine.dialect.name
    items = [Item(key=f"antara/new/{n}", title=f"Baru {n}", link=f"https://a.id/new/{n}", url=f"a.id/new/{n}")
             for n in range(5)]
    found = run(store, lambda: store.store_poll(
        "antara", "https://antara.id/rss", items, TARGETS, now=NOW, skip={"antara/new/0": "stale"}, etag=None,
        last_modified=None, next_poll_at=NOW + timedelta(minutes=5)))
    assert any(statement.lstrip().upper().startswith("INSERT INTO DELIVERIES") for statement, _ in found)
    assert_uses(found, ITEM_INDEX[dialect])


def test_status_reads_no_history(store, tmp_path):
    """`bridge status` reads running totals and this month's rows: no plan reads deliveries or
    items from end to end."""
    settings = config(tmp_path)
    found = run(store, lambda: status.render(status.collect(store, settings, NOW)))
    assert_uses(found, "ix_deliveries_target_sent_at")
    report = status.collect(store, settings, NOW)
    assert [s["items"] for s in report["sources"]] == [PER_DAY * DAYS] * 2
    assert {t["name"]: t["failed"] for t in report["targets"]} == {"x": 1, "x_en": 0}


def test_recent_failures_stop_at_their_limit(store):
    """`bridge status`'s recent failures and posts in doubt: each read walks (state, target) in id
    order and stops at its limit, with no sort of every failure ever."""
    found = run(store, lambda: store.delivery_rows([DeliveryState.FAILED], limit=10))
    assert_uses(found, "ix_deliveries_state_target")
    if store.engine.dialect.name == "sqlite":
        assert not any("TEMP B-TREE" in plan for _, plan in found), found


def test_metrics_read_no_history(store, tmp_path):
    """A /metrics scrape reads running totals and today's and this month's rows only."""
    rt = SimpleNamespace(repo=store, config=config(tmp_path))
    registry = Metrics(lambda: rt, lambda: 1.0).registry
    found = run(store, lambda: generate_latest(registry))
    assert_uses(found, "ix_deliveries_target_sent_at")
    scrape = generate_latest(registry).decode()
    assert f'bridge_items_total{{source="antara"}} {PER_DAY * DAYS}.0' in scrape
    posts = HISTORY_ITEMS + 2 * PER_DAY * DAYS - 1  # the archive, and all but the one left waiting on the first day (then one each day)
    assert f'bridge_posts_total{{target="x"}} {posts}.0' in scrape


def test_skewed_statistics_would_mislead_a_query_without_its_index(repo):
    """The statistics of the skewed test do lure SQLite: the same-link check as one join, without
    its indexes named (as it was), starts from the target's deliveries (every post it ever sent)
    instead of the link's few stories."""
    if repo.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's statistics")
    fill(repo)
    skew_statistics(repo)
    unhinted = ("SELECT items.source, deliveries.id FROM items JOIN deliveries ON deliveries.item_id = items.id "
                "WHERE items.url = ? AND items.source != ? AND deliveries.target = ? AND deliveries.recipient = '' "
                "AND deliveries.state IN ('sent', 'sending', 'in_doubt') LIMIT 1")
    with repo.engine.connect() as conn:
        plan = "\n".join(str(row[-1]) for row in conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN " + unhinted, ("a.id/3/1", "detik", "x")))
    assert plan.startswith(("SCAN deliveries", "SEARCH deliveries")) and "ix_items_url" not in plan, plan


def test_known_keys_by_fragment_read_the_key_index(store):
    """The #fragment rule (same page, same title: a known story) looks up the keys on the same
    pages through (source, key): on SQLite one search of the index per page in one query
    (MULTI-INDEX OR), never the source's whole history."""
    dialect = store.engine.dialect.name
    keys = [f"antara/{day}/{n}#komentar" for day in range(DAYS) for n in range(PER_DAY)] + ["antara/99/1#x"]
    titles = {key: f"Berita {key.split('#')[0].rsplit('/', 1)[1]}" for key in keys}
    found = run(store, lambda: store.known_keys("antara", keys, titles))
    assert_uses(found, ITEM_INDEX[dialect])
    assert store.known_keys("antara", keys, titles) == set(keys[:-1])


def test_same_link_check_by_fragment_reads_the_link_index(store):
    """The same story linked with another #fragment by another source is found through the link's
    index (the page's range of it), whatever the statistics say."""
    dialect = store.engine.dialect.name
    found = run(store, lambda: store.carried_elsewhere("a.id/3/1#komentar", "detik", "x", title="Berita 1"))
    assert_uses(found, "ix_items_url", DELIVERY_INDEX[dialect])
    assert store.carried_elsewhere("a.id/3/1#komentar", "detik", "x", title="Berita 1")
