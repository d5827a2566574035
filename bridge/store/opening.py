"""Opening the database for a command: the engine, a readable error, the schema brought up to date.

Apart from bridge.service so that `bridge status`, `check` and `health` open the store without
importing the pipeline (httpx, requests, feedparser): every command's start-up pays for its imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge.store.db import check_connection, create_database_engine
from bridge.store.migrations import migrate
from bridge.store.repo import Repository

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from bridge.config import Config


def open_repository(config: Config, *, upgrade: bool = True, engine: Engine | None = None) -> Repository:
    """Open the database (raising DatabaseError with a readable reason) and bring its schema up to
    date. `engine`: one already open (`bridge run` opens it to take the run lock first)."""
    engine = engine or create_database_engine(config.bridge.database)
    check_connection(engine)
    if upgrade:
        migrate(engine)
    return Repository(engine)
