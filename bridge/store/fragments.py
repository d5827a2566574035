"""Stored stories whose key or link differs from another only by its #fragment.

The fragment stays in a story's key and link identity (urls.py): one listing may list several
stories that differ only by it (page#1, page#2). But a site that starts (or stops) linking a story
with `#comments` or `#utm_anchor` has not written a new story, so the store also finds a stored
story "on the same page" and the caller compares titles (same_title): same page and same title is
the same story; another title is another story."""

from __future__ import annotations

from typing import Sequence

from sqlalchemy import Column, ColumnElement, Connection, or_

BATCH = 100
"""Pages per query (bound parameters stay far below SQLite's limit)."""


def on_same_pages(conn: Connection, column: Column, pages: Sequence[str]) -> list[ColumnElement]:
    """Conditions that find values of `column` equal to one of `pages` or starting with page + "#",
    one per query to run. On SQLite each is a range of the column's index ("#" + 1 is "$" in its
    byte order); PostgreSQL's collation may not order punctuation so, so there one LIKE per page
    (compared by character) in one query per batch."""
    found = []
    for start in range(0, len(pages), BATCH):
        chunk = list(pages[start:start + BATCH])
        if conn.dialect.name == "sqlite":
            found += [column.in_(chunk), *((column >= page + "#") & (column < page + "$") for page in chunk)]
        else:
            found.append(or_(column.in_(chunk), *(column.like(_like_escaped(page) + "#%", escape="\\")
                                                  for page in chunk)))
    return found


def same_title(a: str | None, b: str | None) -> bool:
    """Titles as a reader sees them: spacing and case aside."""
    return bool(a and b) and " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


def _like_escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
