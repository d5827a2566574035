"""PostgreSQL as a store for several processes: migrations that race, the connection pool, URL options."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import create_engine, text

from bridge.errors import DatabaseError
from bridge.store.db import POOL_SIZE, POOL_TIMEOUT_SECONDS, create_database_engine
from bridge.store.migrations import LATEST_VERSION, migrate
from bridge.store.schema import metadata
from tests.conftest import _drop_all


@pytest.fixture
def empty_postgres(postgres_url):
    engine = create_engine(postgres_url)
    _drop_all(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS schema_version, meta CASCADE")
    engine.dispose()
    yield postgres_url
    engine = create_engine(postgres_url)
    _drop_all(engine)
    engine.dispose()


def test_replicas_starting_together_migrate_once(empty_postgres):
    """Four processes' worth of engines migrating an empty schema at the same moment all succeed, and
    the schema is created once: one version row, one installation id (without the migration lock,
    all but one fail on the tables the first creates)."""
    engines = [create_database_engine(empty_postgres) for _ in range(4)]
    start, results = threading.Barrier(len(engines)), []

    def race(engine):
        start.wait()
        try:
            results.append(migrate(engine))
        except DatabaseError as exc:
            results.append(exc)

    threads = [threading.Thread(target=race, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert sorted(results, key=str) == [0, LATEST_VERSION, LATEST_VERSION, LATEST_VERSION], results
        with engines[0].connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM schema_version")).scalar() == 1
            assert conn.execute(text("SELECT version FROM schema_version")).scalar() == LATEST_VERSION
            assert conn.execute(text("SELECT count(*) FROM meta WHERE name = 'installation_id'")).scalar() == 1
    finally:
        for engine in engines:
            engine.dispose()


def test_the_pool_serves_every_scheduler_thread_and_waits_a_bounded_time(postgres_url):
    """The pool holds a connection for each scheduler thread; one more checkout than it can give
    fails after POOL_TIMEOUT_SECONDS, not the default 30 s, with an error, not a hang."""
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    engine = create_database_engine(postgres_url)
    held = []
    try:
        assert engine.pool.size() == POOL_SIZE and engine.pool.timeout() == POOL_TIMEOUT_SECONDS
        assert engine.pool._pre_ping
        for _ in range(POOL_SIZE + engine.pool._max_overflow):
            held.append(engine.connect())
        engine.pool._timeout = 0.2  # the bounded wait, shortened for the test: it must end
        with pytest.raises(PoolTimeout):
            engine.connect()
    finally:
        for conn in held:
            conn.close()
        engine.dispose()


def test_ssl_options_in_the_url_reach_the_server(postgres_url):
    """libpq options in the URL's query (sslmode) reach the driver: `sslmode=require` against this
    server without TLS is refused by libpq itself, as it would be in production, with one line."""
    from bridge.store.db import check_connection

    separator = "&" if "?" in postgres_url else "?"
    plain = create_database_engine(f"{postgres_url}{separator}sslmode=disable")
    try:
        check_connection(plain)
    finally:
        plain.dispose()
    with create_engine(postgres_url).connect() as conn:
        ssl_on = conn.exec_driver_sql("SHOW ssl").scalar() == "on"
    if ssl_on:
        pytest.skip("this server speaks TLS: sslmode=require would succeed")
    strict = create_database_engine(f"{postgres_url}{separator}sslmode=require")
    try:
        with pytest.raises(DatabaseError, match="SSL") as refused:
            check_connection(strict)
        assert "\n" not in str(refused.value)
    finally:
        strict.dispose()


def test_metadata_and_migrations_agree(empty_postgres):
    """A schema created by migrate() has every table the code's metadata names."""
    engine = create_database_engine(empty_postgres)
    try:
        migrate(engine)
        from sqlalchemy import inspect

        assert set(metadata.tables) <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
