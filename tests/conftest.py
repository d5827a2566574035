"""Shared fixtures: a settable clock and a fresh database per test."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import os
import socket
from contextlib import ExitStack

import pytest
from sqlalchemy.exc import OperationalError

from bridge.store import schema

from bridge.store.db import create_database_engine
from bridge.store.migrations import migrate
from bridge.store.repo import Repository
from tests.postgres_schemas import own_schema

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", None}


@pytest.fixture(autouse=True)
def only_local_network(monkeypatch):
    """Tests talk to 127.0.0.1 only: a lookup of any other host fails at once, as if offline, so a
    stray URL in a fixture (an image on a real news site) can never reach the network."""
    real_getaddrinfo = socket.getaddrinfo

    def local_only(host, *args, **kwargs):
        if isinstance(host, bytes):
            host = host.decode()
        if host not in LOCAL_HOSTS:
            raise socket.gaierror(socket.EAI_NONAME, f"tests may not look up {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", local_only)


# The local fakes' fixtures (feed_server, x_api), available to every test module.
pytest_plugins = ["tests.fakes.feed_server", "tests.fakes.x_api", "tests.fakes.telegram", "tests.fakes.mastodon", "tests.fakes.bluesky", "tests.fakes.facebook", "tests.fakes.whatsapp"]


class FakeClock:
    """An injected clock: tests move time with advance() instead of sleeping."""

    def __init__(self, start: datetime = datetime(2026, 11, 26, 3, 0, tzinfo=timezone.utc)):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs) -> datetime:
        self.now += timedelta(**kwargs)
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/bridge.db"


POSTGRES_URL = os.environ.get("BRIDGE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(params=["sqlite", "postgresql"])
def repo(request, db_url) -> Repository:
    """A migrated, empty database: SQLite, and PostgreSQL where one answers (the SQL must stay
    portable for replicas). Set BRIDGE_TEST_POSTGRES_URL to use another server."""
    url = db_url if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    engine = create_database_engine(url)
    _drop_all(engine)
    migrate(engine)
    yield Repository(engine)
    _drop_all(engine)
    engine.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A schema of this test run's own on the PostgreSQL server, so runs in parallel (worktrees,
    CI beside a developer) never see each other's tables; dropped at the end."""
    if os.environ.get("BRIDGE_REQUIRE_POSTGRES"):
        import psycopg  # noqa: F401 (CI: missing, the PostgreSQL tests fail rather than skip)
    else:
        pytest.importorskip("psycopg")
    with ExitStack() as stack:
        try:
            url = stack.enter_context(own_schema(POSTGRES_URL, f"bridge_test_{os.getpid()}"))
        except OperationalError as exc:
            if os.environ.get("BRIDGE_REQUIRE_POSTGRES"):  # CI: a PostgreSQL test that skips proves nothing
                pytest.fail(f"no PostgreSQL at {POSTGRES_URL} and BRIDGE_REQUIRE_POSTGRES is set: {exc}")
            pytest.skip(f"no PostgreSQL at {POSTGRES_URL}")
        yield url


def _drop_all(engine) -> None:
    if engine.dialect.name == "sqlite":
        return  # a fresh file per test
    with engine.begin() as conn:
        for table in reversed(schema.metadata.sorted_tables):
            table.drop(conn, checkfirst=True)
