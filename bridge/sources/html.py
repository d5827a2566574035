"""Read a site's listing page (HTML, no feed) into Items with CSS selectors.

selectolax's Lexbor engine parses as a browser does, in C and in linear time. A row becomes a story
only with a link (http/https) and a title: a layout change that makes the selectors match menus or
ads must produce nothing rather than odd posts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import tzinfo
from urllib.parse import urljoin, urlsplit

import structlog
from selectolax.lexbor import LexborHTMLParser, LexborNode, SelectolaxError

from bridge.model import Item, unique_by_key
from bridge.sources.dates import parse_date_or_say
from bridge.sources.presets import Layout
from bridge.sources.text import MAX_SUMMARY_CHARS, MAX_TITLE_CHARS, plain_text  # the same caps as feed stories
from bridge.urls import identity_url, shareable_url

log = structlog.get_logger("bridge.sources")

_SRC_ATTRS = ("src", "data-src", "data-original", "data-lazy-src")  # lazy loading hides the real one
_DATE_ATTRS = ("datetime", "content")
_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_SNIFF_BYTES = 4096
"""Where a <meta charset> is looked for: the HTML standard says within the first 1024 bytes; be lenient."""


@dataclass(frozen=True)
class Listing:
    """One listing page, read."""

    items: list[Item]
    rows: int
    """Rows the item selector matched (rows without a link or title are not items)."""
    next_url: str | None
    """The next (older) page, when the layout has a `next` selector and the page links one."""
    day_only: frozenset[str] = frozenset()
    """Keys whose listing date is a day without a time ("Kamis, 26 Jul 2022"): a story page may tell more."""


def check_selector(selector: str) -> str | None:
    """None when selectolax can use `selector`, else why not (for config validation)."""
    try:
        LexborHTMLParser("<p></p>").css(selector)
    except SelectolaxError:
        return f"{selector!r} is not a CSS selector selectolax can read"
    return None


def parse_html(body: bytes, headers: dict[str, str] | None = None) -> LexborHTMLParser:
    """Decode with the charset the server or the page declares (else UTF-8), then parse."""
    charset = _charset(body, headers or {})
    try:
        text = body.decode(charset, errors="replace")
    except LookupError:  # a charset Python does not know
        text = body.decode("utf-8", errors="replace")
    return LexborHTMLParser(text)


def read_listing(tree: LexborHTMLParser, *, url: str, layout: Layout, tz: tzinfo | str,
                 source: str = "") -> Listing:
    """The stories on one listing page, in page order (newest first on news sites), one per key."""
    base = base_url(tree, url)
    scope: LexborHTMLParser | LexborNode | None = tree
    if layout.container:
        scope = tree.css_first(layout.container)
    rows = scope.css(layout.item) if scope is not None else []
    read = [found for row in rows if (found := _row_item(row, base, layout, tz, source)) is not None]
    next_url = None
    if layout.next and (node := tree.css_first(layout.next)) is not None:
        next_url = absolute_http(node.attributes.get("href"), base)
    day_only = frozenset(item.key for item, precise in read if item.published and not precise)
    return Listing(unique_by_key(item for item, _ in read), len(rows), next_url, day_only)


def story_key(link: str, layout: Layout | None) -> str:
    """The preset's numeric id when the link has one, else the link's identity (urls.identity_url)."""
    if layout and layout.id_pattern:
        match = re.search(layout.id_pattern, urlsplit(link).path)
        if match and match.group(1):
            return layout.id_prefix + match.group(1)
    return identity_url(link) or link


def _row_item(row: LexborNode, base: str, layout: Layout, tz: tzinfo | str,
              source: str) -> tuple[Item, bool] | None:
    """The row's story, and whether its date has a time of day."""
    link_node = row.css_first(layout.link)
    link = absolute_http(link_node.attributes.get("href") if link_node else None, base)
    title_node = row.css_first(layout.title) if layout.title else link_node
    title = node_text(title_node) or (plain_text(title_node.attributes.get("title") or "") if title_node else "")
    if not link or not title:
        return None
    published = None
    if layout.date and (date_node := row.css_first(layout.date)) is not None:
        published = read_date(date_node, tz, source)
    summary = node_text(row.css_first(layout.summary)) if layout.summary else ""
    image = image_src(row.css_first(layout.image), base) if layout.image else None
    item = Item(
        key=story_key(link, layout), title=clip(title, MAX_TITLE_CHARS), link=shareable_url(link),
        url=identity_url(link), summary=clip(summary, MAX_SUMMARY_CHARS),
        published=published.when if published else None, image_url=image,
    )
    return item, bool(published and published.has_time)


# --- helpers shared with the story-page reader -------------------------------------------------


def read_date(node: LexborNode, tz: tzinfo | str, source: str = ""):
    """A ParsedDate from an element's datetime/content attribute or its text; None (logged once)."""
    attributes = node.attributes
    raw = next((attributes[a] for a in _DATE_ATTRS if attributes.get(a)), None) or node_text(node)
    return parse_date_or_say(raw, tz, source)


def node_text(node: LexborNode | None) -> str:
    return plain_text(node.text(deep=True, separator=" ")) if node is not None else ""


def image_src(node: LexborNode | None, base: str) -> str | None:
    if node is None:
        return None
    if node.tag != "img" and (inner := node.css_first("img")) is not None:
        node = inner
    attributes = node.attributes
    for name in _SRC_ATTRS:
        value = (attributes.get(name) or "").strip()
        if value and not value.startswith("data:"):
            return absolute_http(value, base)
    return None


def meta_content(tree: LexborHTMLParser, *names: str) -> str | None:
    """The content of the first <meta property|name=NAME> present, in the order asked."""
    for name in names:
        for attribute in ("property", "name"):
            node = tree.css_first(f'meta[{attribute}="{name}"]')
            if node is not None and (node.attributes.get("content") or "").strip():
                return node.attributes["content"].strip()
    return None


def base_url(tree: LexborHTMLParser, url: str) -> str:
    node = tree.css_first("base[href]")
    return absolute_http(node.attributes.get("href"), url) or url if node is not None else url


def absolute_http(link: str | None, base: str) -> str | None:
    if not isinstance(link, str) or not link.strip():
        return None
    try:
        absolute = urljoin(base, link.strip())
        scheme = urlsplit(absolute).scheme.lower()
    except ValueError:
        return None
    return absolute if scheme in ("http", "https") else None  # javascript:, mailto: cannot be posted


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _charset(body: bytes, headers: dict[str, str]) -> str:
    content_type = headers.get("content-type", "")
    if match := re.search(r"charset=([\w.:-]+)", content_type, re.IGNORECASE):
        return match.group(1)
    if match := _CHARSET.search(body[:_SNIFF_BYTES]):
        return match.group(1).decode("ascii")
    return "utf-8"
