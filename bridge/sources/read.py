"""A source's kind, decided here: fetch the source, then read it as a feed or as an HTML listing.

kind = "feed": the body is a feed. kind = "html": the body is a listing page read with the source's
Layout. kind = "sitemap": a sitemap, index or Google News sitemap (sources/sitemap.py). kind = "auto":
a feed (or a sitemap) is read as one; an HTML page that advertises a feed
(<link rel="alternate" type="application/rss+xml">) has that feed read instead, so the day a site
adds a feed the bridge uses it without a config change; any other page is read as html when the
source has a layout, else the site's sitemap is looked for (robots.txt's Sitemap: lines, then
/sitemap.xml). Pipeline calls read_source, then (for new stories it will post) add_story_pages.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from collections.abc import Callable
from typing import Protocol

import structlog

from bridge.errors import NO_STORIES_FOUND, FeedParseError, FetchError, NoStoriesFound
from bridge.model import Item, unique_by_key
from bridge.sources.dates import assume_timezone
from bridge.sources.polite import PoliteFetcher
from bridge.sources.presets import Layout
from bridge.sources.sniff import looks_like_html, looks_like_sitemap

# The HTML readers (sources/html.py, pages.py, sitemap.py) are imported where they are used, not
# here: they load selectolax (~2 MB of the daemon's memory, its Lexbor engine), which a daemon whose
# sources are feeds needs only to read a story's page for a photo. Feeds parse in the workers.

log = structlog.get_logger("bridge.sources")

FEED_TYPES = ("application/rss+xml", "application/atom+xml", "application/feed+json")
"""<link rel="alternate" type=...> values that advertise a feed we can read."""
MAX_DISCOVERED_SITEMAPS = 3
"""Sitemaps kind "auto" tries per poll (after robots.txt) before giving up on a page without a feed."""


FeedParse = Callable[[bytes, str, dict, str], "list[Item]"]
"""(body, url, headers, time zone) -> Items: how a feed's body is parsed (sources/workers.py's
FeedParsers.parse in a worker process; in this thread when None)."""


class SourceLike(Protocol):
    """What reading needs from a config.SourceConfig."""

    name: str
    url: str
    kind: str
    timezone: str
    layout: Layout | None
    max_pages: int
    story_pages: bool
    allow_empty: bool
    request_headers: tuple[tuple[str, str], ...]
    """The source's own User-Agent and headers, sent with every request made for it."""
    images: bool
    burst_limit: int


@dataclass(frozen=True)
class SourceRead:
    """What one read of a source found."""

    not_modified: bool
    items: list[Item] = field(default_factory=list)
    etag: str | None = None
    last_modified: str | None = None
    read_as: str = "feed"
    """"feed", "html", "sitemap", or "feed <url>" / "sitemap <url>" when kind "auto" found it from
    the page; a sitemap index adds which children were read."""
    day_only: frozenset[str] = frozenset()
    """Keys of html stories whose listing date has no time of day."""


def read_source(fetcher: PoliteFetcher, source: SourceLike, *, etag: str | None = None,
                last_modified: str | None = None, previously_seen: int | None = None,
                parse: FeedParse | None = None) -> SourceRead:
    """Fetch and read `source`. Raises FetchError (NoStoriesFound for an html listing without stories;
    `previously_seen` is how many the last good read found, for the message). `parse`: where feeds
    are parsed (default: here)."""
    own = source.request_headers
    result = fetcher.get(source.url, polite=False, etag=etag, last_modified=last_modified, headers=own)
    if result.not_modified:
        return SourceRead(True, etag=result.etag, last_modified=result.last_modified)
    if source.kind == "feed":
        return SourceRead(False, _read_feed(result, source, parse), result.etag, result.last_modified, "feed")
    is_html = looks_like_html(result.body)
    if source.kind == "sitemap" or (source.kind == "auto" and not is_html and looks_like_sitemap(result.body)):
        return _read_sitemap(fetcher, source, result)
    if source.kind == "auto" and not is_html:
        items = _read_feed(result, source, parse)
        return SourceRead(False, items, result.etag, result.last_modified, "feed")
    from bridge.sources.html import parse_html

    tree = parse_html(result.body, result.headers)
    if source.kind == "auto":
        if advertised := advertised_feed(tree, result.url):
            # The listing's validators say nothing about the feed, so none are kept: the page is
            # asked for in full each poll (one small request), the feed read as it is now.
            feed_result = fetcher.get(advertised, headers=own)
            return SourceRead(False, _read_feed(feed_result, source, parse), read_as=f"feed {advertised}")
        if source.layout is None:
            if found := discover_sitemap(fetcher, source, result.url):
                return found
            raise FeedParseError(result.url, 'not a feed, the page advertises none and the site has no '
                                             'sitemap (robots.txt, /sitemap.xml): set kind = "html" with a '
                                             'preset or selectors (see README, "HTML sources")')
    items, day_only = _read_listing_pages(fetcher, source, tree, result)
    if not items and not source.allow_empty:
        raise _no_stories(source, result.url, previously_seen)
    return SourceRead(False, items, result.etag, result.last_modified, "html", day_only)


def add_story_pages(fetcher: PoliteFetcher, source: SourceLike, read: SourceRead, keys: set[str], *,
                    photos: bool = True) -> list[Item]:
    """read.items, with the story pages of `keys` read in: for html and sitemap sources what the
    page adds (summary, photo, time); for a feed only a photo, for the stories it gives none, and
    only if `photos` (some target would post it). Never
    for more new stories than the source's burst_limit: a burst is held for the operator, and a site
    move must not cost hundreds of page requests before anyone has looked."""
    if not source.story_pages or not keys:
        return read.items
    if read.read_as.startswith("feed"):
        if not photos or not source.images or len(keys) > source.burst_limit:
            return read.items
        if not any(item.key in keys and not item.image_url and item.link for item in read.items):
            return read.items  # every new story has its photo (add_feed_photos would read no page)
        from bridge.sources.pages import add_feed_photos

        return add_feed_photos(read.items, keys, fetcher=fetcher, source=source.name, headers=source.request_headers)
    from bridge.sources.pages import add_story_pages as _add_pages
    from bridge.sources.sitemap import PAGE_LAYOUT

    sitemap = read.read_as.startswith("sitemap")
    if read.read_as != "html" and not sitemap:
        return read.items
    layout = source.layout or (PAGE_LAYOUT if sitemap else None)
    if layout is None:
        return read.items
    return _add_pages(read.items, keys, fetcher=fetcher, layout=layout, tz=source.timezone,
                      source=source.name, day_only=read.day_only, headers=source.request_headers)


def advertised_feed(tree, url: str) -> str | None:
    """The first feed the page advertises, as an absolute http(s) URL."""
    from bridge.sources.html import absolute_http, base_url

    base = base_url(tree, url)
    for node in tree.css('link[rel][href]'):
        attributes = node.attributes
        rels = (attributes.get("rel") or "").lower().split()
        kind = (attributes.get("type") or "").split(";")[0].strip().lower()
        if "alternate" in rels and kind in FEED_TYPES and (href := absolute_http(attributes.get("href"), base)):
            return href
    return None


def _read_sitemap(fetcher: PoliteFetcher, source: SourceLike, result, found_at: str | None = None) -> SourceRead:
    """A sitemap's stories. An index keeps no validators: its children change without it changing."""
    from bridge.sources.sitemap import read_sitemap

    read = read_sitemap(lambda url: fetcher.get(url, headers=source.request_headers), result.body, result.url,
                        layout=source.layout, tz=source.timezone,
                        source=source.name, max_bytes=fetcher.limits.max_body_bytes)
    read_as = " ".join(filter(None, ("sitemap", found_at, f"({read.description})" if read.description else "")))
    etag, last_modified = (None, None) if read.index or found_at else (result.etag, result.last_modified)
    return SourceRead(False, read.items, etag, last_modified, read_as, read.day_only)


def discover_sitemap(fetcher: PoliteFetcher, source: SourceLike, page_url: str) -> SourceRead | None:
    """kind "auto" on a page with no feed and no layout: the first of the site's sitemaps that reads
    (robots.txt's Sitemap: lines, a news sitemap first, then /sitemap.xml), or None. Looked for on
    every poll (no state outside the database): set kind = "sitemap" with its url to save requests."""
    from bridge.sources.sitemap import discovery_candidates, origin_of, robots_sitemaps

    robots_url = origin_of(page_url) + "/robots.txt"
    try:
        robots = robots_sitemaps(fetcher.get(robots_url, headers=source.request_headers).body, robots_url)
    except FetchError:
        robots = []
    for candidate in discovery_candidates(page_url, robots)[:MAX_DISCOVERED_SITEMAPS]:
        try:
            result = fetcher.get(candidate, headers=source.request_headers)
            if looks_like_sitemap(result.body):
                return _read_sitemap(fetcher, source, result, found_at=result.url)
        except FetchError as exc:
            log.info("sitemap candidate unreadable", source=source.name, url=candidate, error=exc.reason)
    return None


def _read_feed(result, source: SourceLike, parse: FeedParse | None = None) -> list[Item]:
    if parse is not None:
        items = parse(result.body, result.url, dict(result.headers), source.timezone)
    else:  # feedparser (~10 MB) loads only in the process that parses: the workers, where there are
        from bridge.sources.feed import parse_feed

        with assume_timezone(source.timezone):
            items = parse_feed(result.body, url=result.url, headers=result.headers)
    if source.layout and source.layout.id_pattern:
        from bridge.sources.html import story_key

        # The same identity as the html reader gives, so a site that gains a feed (kind "auto")
        # does not post its known stories again under the feed's guids.
        items = unique_by_key(replace(i, key=story_key(i.link, source.layout)) if i.link else i for i in items)
    return items


def _read_listing_pages(fetcher: PoliteFetcher, source: SourceLike, tree, result) -> tuple[list[Item], frozenset[str]]:
    """Page 1, then `next` pages up to source.max_pages. A later page that fails ends the walk:
    page 1 holds what is new when polling every few minutes."""
    from bridge.sources.html import parse_html, read_listing

    layout = source.layout
    listing = read_listing(tree, url=result.url, layout=layout, tz=source.timezone, source=source.name)
    items, day_only, rows = list(listing.items), set(listing.day_only), listing.rows
    visited = {result.url}
    next_url = listing.next_url
    while next_url and len(visited) < source.max_pages and next_url not in visited:
        visited.add(next_url)
        try:
            page = fetcher.get(next_url, headers=source.request_headers)
        except FetchError as exc:
            log.warning("next listing page unreadable: using the pages read", source=source.name,
                        url=next_url, error=exc.reason)
            break
        listing = read_listing(parse_html(page.body, page.headers), url=page.url, layout=layout,
                               tz=source.timezone, source=source.name)
        items += listing.items
        day_only |= listing.day_only
        rows += listing.rows
        next_url = listing.next_url
    if rows and not items:
        log.error("listing rows found but none has a link and a title", source=source.name,
                  url=result.url, rows=rows, link=layout.link, title=layout.title)
    return unique_by_key(items), frozenset(day_only)


def _no_stories(source: SourceLike, url: str, previously_seen: int | None) -> NoStoriesFound:
    if previously_seen:
        reason = (f"{NO_STORIES_FOUND}: the page layout may have changed (the last good read found "
                  f"{previously_seen}); nothing was marked seen. Compare the page with the selectors "
                  f"(`bridge preview {source.name}`)")
    else:
        reason = (f"{NO_STORIES_FOUND} on this page: check its url and the selectors "
                  f"(`bridge preview {source.name}`); the page layout may have changed")
    log.error(reason, source=source.name, url=url, item_selector=source.layout.item if source.layout else None)
    return NoStoriesFound(url, reason)
