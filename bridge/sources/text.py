"""HTML fragments (feed descriptions, story pages) to plain text, and their first image.

selectolax's Lexbor engine parses as a browser does (HTML5 error recovery, every named entity),
in C and in linear time, so hostile markup in a feed cannot stall a poll.
"""

from __future__ import annotations

import re

from selectolax.lexbor import LexborHTMLParser

MAX_TITLE_CHARS = 1_000
"""Longer titles are cut: no network shows more, and the database should not hold megabytes."""
MAX_SUMMARY_CHARS = 5_000
"""The same for summaries, from a feed or a page (here, not in feed.py: html.py, which settings.toml's
selector checks import, must not load feedparser)."""

_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Lone surrogates (possible in JSON strings) cannot be stored as UTF-8: they become U+FFFD.
_SURROGATES = re.compile("[\ud800-\udfff]")
_NOT_CONTENT = "script, style, template, noscript"
# Elements that separate words when rendered: "<p>a</p><p>b</p>" reads "a b", not "ab".
_BLOCKS = ("address, article, aside, blockquote, br, dd, div, dl, dt, figcaption, figure, footer, "
           "h1, h2, h3, h4, h5, h6, header, hr, li, main, nav, ol, p, pre, section, table, td, th, tr, ul")
_NOT_CONTENT_TAGS = frozenset(_NOT_CONTENT.split(", "))
_BLOCK_TAGS = frozenset(_BLOCKS.split(", "))
_NOT_CONTENT_OR_BLOCKS = f"{_NOT_CONTENT}, {_BLOCKS}"
_SRC_ATTRS = ("src", "data-src", "data-original")  # lazy-loading pages put the real one in data-*


def plain_text(text: str) -> str:
    """Collapse all whitespace (including no-break spaces) to single spaces; drop control characters."""
    text = _CONTROL_CHARS.sub("", text)
    if not text.isascii():  # a surrogate is not ASCII: most stories skip this scan
        text = _SURROGATES.sub("\ufffd", text)
    return " ".join(text.split())


def html_to_text(markup: str) -> str:
    """Plain text of an HTML fragment: tags removed, entities decoded, whitespace collapsed."""
    if "<" not in markup and "&" not in markup:
        return plain_text(markup)
    tree = LexborHTMLParser(markup)
    # One pass over the tree for both kinds (each css() walks all of it): blocks get their spaces
    # first, then what is not content goes, with any block inside it and the spaces beside that.
    found = tree.css(_NOT_CONTENT_OR_BLOCKS)
    for node in found:
        if node.tag in _BLOCK_TAGS:
            node.insert_before(" ")
            node.insert_after(" ")
    for node in found:
        if node.tag in _NOT_CONTENT_TAGS:
            node.decompose()
    root = tree.body or tree.root
    return plain_text(root.text(deep=True, separator="") if root else "")


def first_image_src(markup: str) -> str | None:
    """The first <img> source in an HTML fragment, as written (may be relative); data: URIs skipped."""
    if "<img" not in markup.lower():
        return None
    for node in LexborHTMLParser(markup).css("img"):
        attributes = node.attributes
        for name in _SRC_ATTRS:
            value = (attributes.get(name) or "").strip()
            if value and not value.startswith("data:"):
                return value
    return None
