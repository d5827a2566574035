"""Counting user-perceived characters (extended grapheme clusters, Unicode UAX #29), as Mastodon
and Bluesky count a post's length. The `regex` module's \\X follows the current Unicode version and
is maintained; the `grapheme` package stopped at Unicode 13 in 2020.

`regex` (~2 MB of the daemon's memory, its Unicode tables) is imported on the first count, not
with this module: limits.py imports this for every network's rules, and X counts no graphemes."""

from __future__ import annotations

from functools import cache


@cache
def _cluster():
    import regex

    return regex.compile(r"\X")


def grapheme_count(text: str) -> int:
    """How many grapheme clusters `text` holds: "👨‍👩‍👧" and "é" (e + combining accent) are one each."""
    return sum(1 for _ in _cluster().finditer(text))
