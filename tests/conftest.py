"""Shared fixtures: a settable clock and a fresh database per test."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from bridge.store.db import create_database_engine
from bridge.store.migrations import migrate
from bridge.store.repo import Repository

# The local fakes' fixtures (feed_server, x_api), available to every test module.
pytest_plugins = ["tests.fakes.feed_server", "tests.fakes.x_api"]


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


@pytest.fixture
def repo(db_url) -> Repository:
    engine = create_database_engine(db_url)
    migrate(engine)
    yield Repository(engine)
    engine.dispose()
