"""Story pages: for a new story only, its page is read once for the summary, lead image and a
precise date the listing lacks (a row that gives all three costs no request). A page that cannot be fetched or read costs nothing but those
extras: the story is posted with what the listing gave.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import tzinfo
from typing import Sequence

import structlog

from bridge.errors import FetchError
from bridge.model import Item
from bridge.sources.dates import ParsedDate, parse_date_or_say
from bridge.sources.html import (
    MAX_SUMMARY_CHARS, MAX_TITLE_CHARS, absolute_http, base_url, clip, image_src, meta_content, node_text, parse_html,
    read_date,
)
from bridge.sources.polite import PoliteFetcher
from bridge.sources.presets import Layout
from bridge.sources.text import plain_text

log = structlog.get_logger("bridge.sources")

SUMMARY_FROM_BODY_PARAGRAPHS = 2
"""Without a summary on the page, its first paragraphs stand in (compose shortens them to fit)."""


@dataclass(frozen=True)
class StoryPage:
    summary: str = ""
    image_url: str | None = None
    published: ParsedDate | None = None
    title: str = ""
    """og:title, else the first <h1>, else <title>: used only by a story that has none (a sitemap's)."""


def shared_image(tree, base: str) -> str | None:
    """The photo a page names for sharing (og:image, else twitter:image), as an absolute URL."""
    found = meta_content(tree, "og:image", "twitter:image", "twitter:image:src")
    return absolute_http(found, base) if found else None


def read_story_page(body: bytes, *, url: str, headers: dict[str, str], layout: Layout, tz: tzinfo | str,
                    source: str = "") -> StoryPage:
    tree = parse_html(body, headers)
    base = base_url(tree, url)
    summary = ""
    if layout.page_summary:
        summary = " ".join(filter(None, (node_text(n) for n in tree.css(layout.page_summary))))
    if not summary and layout.page_body:
        paragraphs = [text for n in tree.css(layout.page_body) if (text := node_text(n))]
        summary = " ".join(paragraphs[:SUMMARY_FROM_BODY_PARAGRAPHS])
    summary = summary or plain_text(meta_content(tree, "og:description", "description") or "")
    image = image_src(tree.css_first(layout.page_image), base) if layout.page_image else None
    image = image or shared_image(tree, base)
    published = None
    if layout.page_date and (node := tree.css_first(layout.page_date)) is not None:
        published = read_date(node, tz, source)
    if published is None and (raw := meta_content(tree, "article:published_time", "og:published_time")):
        published = parse_date_or_say(raw, tz, source)
    return StoryPage(clip(summary, MAX_SUMMARY_CHARS), image, published, _page_title(tree))


def _page_title(tree) -> str:
    title = plain_text(meta_content(tree, "og:title", "twitter:title") or "")
    return clip(title or node_text(tree.css_first("h1")) or node_text(tree.css_first("title")), MAX_TITLE_CHARS)


def with_page(item: Item, page: StoryPage, *, listing_date_precise: bool = True) -> Item:
    """The page's summary and lead image are the story's own, so they win over the listing's
    teaser and thumbnail. Its date is used when the listing gave none, or gave only a day and the
    page has the time too."""
    published = item.published
    if page.published and (published is None or (not listing_date_precise and page.published.has_time)):
        published = page.published.when
    return replace(item, title=item.title or page.title, summary=page.summary or item.summary,
                   image_url=page.image_url or item.image_url, published=published)


def lacks_page_extras(item: Item, *, precise: bool) -> bool:
    """Whether the story page has something to add: a story that already has a title, a summary, an
    image and a date with its time of day (`precise`) costs no request."""
    return not (item.title and item.summary and item.image_url and item.published and precise)


def add_story_pages(items: Sequence[Item], keys: set[str], *, fetcher: PoliteFetcher, layout: Layout,
                    tz: tzinfo | str, source: str, day_only: frozenset[str] = frozenset(),
                    headers: tuple[tuple[str, str], ...] = ()) -> list[Item]:
    """`items`, with the page of each whose key is in `keys` read in (one request at a time per host,
    politely spaced: see pacing.py), unless its row lacks nothing the page could give.
    `day_only`: keys whose listing date had no time of day."""
    done = []
    for item in items:
        if item.key not in keys or not item.link or not lacks_page_extras(item, precise=item.key not in day_only):
            done.append(item)
            continue
        try:
            result = fetcher.get(item.link, headers=headers)
            page = read_story_page(result.body, url=result.url, headers=result.headers, layout=layout,
                                   tz=tz, source=source)
        except FetchError as exc:
            log.warning("story page unreadable: posting what the listing gave", source=source,
                        item=item.key, url=item.link, error=exc.reason)
            done.append(item)
            continue
        done.append(with_page(item, page, listing_date_precise=item.key not in day_only))
    return done


def add_feed_photos(items: Sequence[Item], keys: set[str], *, fetcher: PoliteFetcher, source: str,
                    headers: tuple[tuple[str, str], ...] = ()) -> list[Item]:
    """A feed gives no photo for many stories (RSS-to-Telegram-Bot #465, Miniflux #3224) while their
    pages nearly all name one in og:image / twitter:image: for each new story in `keys` without a
    photo, its page is read once, politely, within the feed's caps. A page that fails costs only the
    photo."""
    done = []
    for item in items:
        if item.key not in keys or item.image_url or not item.link:
            done.append(item)
            continue
        try:
            result = fetcher.get(item.link, headers=headers)
            tree = parse_html(result.body, result.headers)
            image = shared_image(tree, base_url(tree, result.url))
        except FetchError as exc:
            log.warning("story page unreadable: posting without a photo", source=source, item=item.key,
                        url=item.link, error=exc.reason)
            image = None
        done.append(replace(item, image_url=image) if image else item)
    return done
