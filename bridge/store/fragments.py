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
    one per query to run (a batch of pages each); keep only the rows `on_page` says are (the SQLite
    form also finds a page continued by a character sorting before "#": a space, "!" or a quote).

    On SQLite each page is one range of the column's index, [page, page + "$") ("#" + 1 is "$" in
    its byte order), and SQLite searches the index once per range of the OR (MULTI-INDEX OR,
    tests/test_store_plans.py): one query per batch, not one per page as before, when a new feed's
    50 stories cost 51 queries twice per poll. PostgreSQL's collation may not order punctuation
    so: there one LIKE per page (compared by character)."""
    found = []
    for start in range(0, len(pages), BATCH):
        chunk = list(pages[start:start + BATCH])
        if conn.dialect.name == "sqlite":
            found.append(or_(*((column >= page) & (column < page + "$") for page in chunk)))
        else:
            found.append(or_(column.in_(chunk), *(column.like(_like_escaped(page) + "#%", escape="\\")
                                                  for page in chunk)))
    return found


def on_page(value: str, page: str) -> bool:
    """`value` is `page` itself or `page` with a #fragment."""
    return value == page or value.startswith(page + "#")


def same_title(a: str | None, b: str | None) -> bool:
    """Titles as a reader sees them: spacing and case aside."""
    return bool(a and b) and " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


def _like_escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
