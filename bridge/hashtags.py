"""Hashtags from configured names and a story's categories. Pure: no I/O.

X (and Mastodon, Bluesky) end a hashtag at the first space or punctuation mark, so "Sepak Bola"
must become #SepakBola, not "#Sepak Bola". A tag needs at least one letter: "#2024" is not a tag.
"""

from __future__ import annotations

import re
from typing import Iterable

MAX_CATEGORY_HASHTAGS = 3
"""Categories beyond this many are left out: a feed's long keyword lists are not hashtags."""

_WORD = re.compile(r"[^\W_]+")  # runs of letters and digits in any script


def to_hashtag(text: str) -> str | None:
    """'sepak bola' -> '#SepakBola', 'PON XXI' -> '#PONXXI'; None when nothing usable is left."""
    words = _WORD.findall(text or "")
    if not words:
        return None
    tag = "".join(word[:1].upper() + word[1:] for word in words)
    if not any(char.isalpha() for char in tag):
        return None
    return "#" + tag


def hashtags_for(configured: Iterable[str], categories: Iterable[str], use_categories: bool) -> list[str]:
    """The source's own tags first, then up to MAX_CATEGORY_HASHTAGS from the story's categories;
    each once, compared without case."""
    candidates = list(configured)
    if use_categories:
        candidates += [c for c in categories if to_hashtag(c)][:MAX_CATEGORY_HASHTAGS]
    tags: list[str] = []
    seen: set[str] = set()
    for candidate in candidates:
        tag = to_hashtag(candidate)
        if tag and tag.lower() not in seen:
            seen.add(tag.lower())
            tags.append(tag)
    return tags
