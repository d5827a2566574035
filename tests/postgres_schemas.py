"""A PostgreSQL schema of one's own: the test run's, the cluster test's, a benchmark's. Each user
gets its tables and advisory keys apart from anybody else's on the same server (worktrees, CI beside
a developer, a benchmark during a test run), through the URL's search_path."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import create_engine


def url_with_schema(server_url: str, schema: str) -> str:
    separator = "&" if "?" in server_url else "?"
    return f"{server_url}{separator}options=-csearch_path%3D{schema}"


@contextmanager
def own_schema(server_url: str, schema: str) -> Iterator[str]:
    """Create `schema` afresh (a killed run's leftovers dropped first), yield the URL that uses it,
    and drop it at the end. Raises sqlalchemy's OperationalError when the server does not answer."""
    admin = create_engine(server_url)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        yield url_with_schema(server_url, schema)
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        admin.dispose()
