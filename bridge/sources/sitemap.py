"""Read a sitemap (kind = "sitemap"): a urlset, a sitemap index, or a Google News sitemap.

Many government sites publish a sitemap.xml, which changes far less often than their HTML layout.
A story is a <url>: its <loc> is the link (the key is a preset's id, else the link's identity, as for
HTML sources), its title news:title, its date news:publication_date, else <lastmod>, its photo
image:loc. What the sitemap lacks (a title, summary, image, time of day) comes from the story page
of a new story, as for HTML sources. An index is followed to its newest MAX_CHILD_SITEMAPS children.

Parsed with expat, defused as defusedxml does it: a document that declares an entity or refers to an
external one is refused, so nothing is ever expanded or fetched by the parser. The body was already
capped by fetch (max_feed_bytes; a gzipped sitemap is inflated under the same cap), at most
MAX_SITEMAP_URLS entries are read per poll, and every text is cut to MAX_TEXT_CHARS.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import urljoin, urlsplit
from xml.parsers import expat

import structlog

from bridge.errors import FeedParseError, FetchError
from bridge.model import Item, unique_by_key
from bridge.sources.dates import parse_date_detail, parse_date_or_say
from bridge.sources.html import absolute_http, clip, story_key
from bridge.sources.presets import Layout
from bridge.sources.sniff import GZIP_MAGIC as _GZIP_MAGIC
from bridge.sources.sniff import SITEMAP_ROOTS as _ROOTS
from bridge.sources.sniff import looks_like_sitemap  # noqa: F401 (sitemap's own name for it)
from bridge.sources.sniff import root_name as _root_name
from bridge.sources.text import MAX_TITLE_CHARS, plain_text
from bridge.urls import identity_url, shareable_url

log = structlog.get_logger("bridge.sources")

NEWS_NS = "http://www.google.com/schemas/sitemap-news/0.9"
IMAGE_NS = "http://www.google.com/schemas/sitemap-image/1.1"
MAX_CHILD_SITEMAPS = 3
"""An index is followed to this many of its children, the newest by <lastmod> (without dates, the
last listed: sites number them in order, WordPress's wp-sitemap-posts-post-N.xml). New stories land
in the newest; reading every child of a large site would cost dozens of requests per poll."""
MAX_SITEMAP_URLS = 50_000
"""<url> entries read per poll, over all files: the protocol's own limit for one sitemap."""
MAX_TEXT_CHARS = 2_048
"""A <loc>, title or date longer than this is cut (the protocol caps a URL at 2,048 characters)."""
PAGE_LAYOUT = Layout(item=":root")
"""For a sitemap without a preset: no selectors, so a story page gives its meta tags (og:title,
og:description, og:image, article:published_time). Only its page fields are ever used."""

# An absolute http(s) URL with a host and no space, backslash or control character: taken as written.
_PLAIN_HTTP = re.compile(r"https?://[A-Za-z0-9.-]+(?::\d{1,5})?(?:/[^\s\\\x00-\x1f\x7f]*)?\Z")


@dataclass
class Entry:
    """One <url> (or, in an index, one <sitemap>) as written."""

    loc: str = ""
    lastmod: str = ""
    title: str = ""
    published: str = ""
    image: str = ""


@dataclass
class Sitemap:
    index: bool
    """True for a <sitemapindex>: its entries are child sitemaps."""
    entries: list[Entry] = field(default_factory=list)
    truncated: bool = False
    """More than the entries allowed were listed; the rest were not read."""


@dataclass(frozen=True)
class SitemapRead:
    items: list[Item]
    day_only: frozenset[str]
    """Keys whose date has no time of day: the story page may tell it."""
    index: bool
    description: str
    """For an index, which children were read, for `bridge preview` ("index: newest 2 of 5: URL, URL")."""


def parse_sitemap(body: bytes, url: str, *, max_entries: int | None = None,
                  max_bytes: int | None = None) -> Sitemap:
    """The entries of a sitemap or index body. Raises FeedParseError when it is not one, is not
    well-formed, or declares entities. `max_bytes` caps a gzipped body once inflated."""
    if body.startswith(_GZIP_MAGIC):
        body = _gunzip(body, url, max_bytes or len(body) * 20)
    root = _root_name(body)
    if root not in _ROOTS:
        if root and root.lower() == "html":
            raise FeedParseError(url, "not a sitemap: got an HTML page")
        why = f"its root element is <{root}>" if root else "no <urlset> or <sitemapindex> root"
        raise FeedParseError(url, f"not a sitemap ({why})")
    reader = _Reader(MAX_SITEMAP_URLS if max_entries is None else max_entries)
    try:
        reader.parse(body)
    except _Refused as exc:
        raise FeedParseError(url, f"not read as a sitemap: {exc}") from None
    except expat.ExpatError as exc:
        raise FeedParseError(url, f"not a well-formed sitemap: {expat.errors.messages.get(exc.code, exc)} "
                                  f"at line {exc.lineno}") from None
    return Sitemap(reader.index, reader.entries, reader.truncated)


def read_sitemap(get: Callable[[str], object], body: bytes, url: str, *, layout: Layout | None, tz: str,
                 source: str, max_bytes: int) -> SitemapRead:
    """The stories of the sitemap `body` fetched from `url`; an index has its newest children fetched
    with `get` (the polite fetcher). A child that fails is skipped (its stories come next poll);
    when every one fails, the last error is raised."""
    top = parse_sitemap(body, url, max_bytes=max_bytes)
    if not top.index:
        _warn_truncated(top, url, source)
        items, day_only = _items(top.entries, url, layout, tz, source)
        return SitemapRead(items, frozenset(day_only), False, "")
    children = newest_children(top.entries, url)
    items: list[Item] = []
    day_only: set[str] = set()
    read: list[str] = []
    error: FetchError | None = None
    budget = MAX_SITEMAP_URLS
    for child in children:
        try:
            result = get(child)
            sitemap = parse_sitemap(result.body, result.url, max_entries=budget, max_bytes=max_bytes)
        except FetchError as exc:
            log.warning("child sitemap unreadable: reading the others", source=source, url=child, error=exc.reason)
            error = exc
            continue
        if sitemap.index:
            log.warning("child sitemap is an index itself: not followed", source=source, url=child)
            continue
        _warn_truncated(sitemap, child, source)
        found, dates = _items(sitemap.entries, result.url, layout, tz, source)
        items += found
        day_only |= dates
        read.append(child)
        budget -= len(sitemap.entries)
        if budget <= 0:
            break
    if not read and error is not None:
        raise error
    description = f"index: newest {len(read)} of {len(top.entries)}: {', '.join(read) or 'none readable'}"
    return SitemapRead(unique_by_key(items), frozenset(day_only), True, description)


def newest_children(entries: list[Entry], base: str, limit: int | None = None) -> list[str]:
    """The `limit` children most likely to hold new stories: the newest by <lastmod> (undated ones
    after), else the last listed."""
    locs = [(loc, _when(entry.lastmod)) for entry in entries if (loc := absolute_http(entry.loc, base))]
    if any(when for _, when in locs):
        oldest = datetime.min.replace(tzinfo=timezone.utc)
        ordered = [loc for loc, _ in sorted(locs, key=lambda pair: pair[1] or oldest, reverse=True)]
    else:
        ordered = [loc for loc, _ in reversed(locs)]
    return list(dict.fromkeys(ordered))[:MAX_CHILD_SITEMAPS if limit is None else limit]


# --- entries to stories ----------------------------------------------------------------------------


def _items(entries: list[Entry], base: str, layout: Layout | None, tz: str,
           source: str) -> tuple[list[Item], set[str]]:
    # Per entry this is the hot loop of a 50,000-URL sitemap, so the common case (an absolute link
    # without a query, dates repeated across entries) skips the general URL and date parsing.
    items, day_only = [], set()
    dates: dict[str, object] = {}
    by_id = bool(layout and layout.id_pattern)
    for entry in entries:
        loc = entry.loc
        link = loc if _PLAIN_HTTP.match(loc) else absolute_http(loc, base)
        if not link:
            continue
        identity = identity_url(link)
        if identity is None:
            continue
        raw = entry.published or entry.lastmod
        if raw not in dates:
            dates[raw] = _date(entry.published, tz, source) or _date(entry.lastmod, tz, source)
        published = dates[raw]
        item = Item(
            key=story_key(link, layout) if by_id else identity, title=clip(plain_text(entry.title), MAX_TITLE_CHARS),
            link=link if "?" not in link and "#" not in link else shareable_url(link), url=identity,
            published=published.when if published else None,
            image_url=absolute_http(entry.image, link) if entry.image else None,
        )
        items.append(item)
        if published and not published.has_time:
            day_only.add(item.key)
    return unique_by_key(items), day_only


def _date(raw: str, tz: str, source: str):
    return parse_date_or_say(raw, tz, source)


def _when(raw: str) -> datetime | None:
    parsed = parse_date_detail(raw, timezone.utc) if raw else None
    return parsed.when if parsed else None


def _warn_truncated(sitemap: Sitemap, url: str, source: str) -> None:
    if sitemap.truncated:
        log.warning("sitemap lists more URLs than are read: point the source at a smaller one "
                    "(a news sitemap, or one child of the index)", source=source, url=url, read=len(sitemap.entries))


def _gunzip(body: bytes, url: str, max_bytes: int) -> bytes:
    """A gzipped sitemap (sitemap.xml.gz, served without Content-Encoding), inflated under the cap."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise FeedParseError(url, f"not a readable gzipped sitemap: {exc}") from None
    if len(out) > max_bytes:
        raise FeedParseError(url, f"gzipped sitemap larger than {max_bytes} bytes once inflated")
    return out


# --- the XML reader --------------------------------------------------------------------------------


class _Refused(Exception):
    """The document asks for what a sitemap never needs (an entity declaration, an external entity)."""


class _Full(Exception):
    """Enough entries read."""


class _Reader:
    """expat with namespaces ("uri local" names); keeps only what a sitemap entry needs."""

    _FIELDS = {("", "loc"): "loc", ("", "lastmod"): "lastmod", (NEWS_NS, "title"): "title",
               (NEWS_NS, "publication_date"): "published", (IMAGE_NS, "loc"): "image"}

    def __init__(self, max_entries: int):
        self.max_entries = max_entries
        self.index = False
        self.entries: list[Entry] = []
        self.truncated = False
        self._entry: Entry | None = None
        self._field: str | None = None
        self._text: list[str] = []
        self._size = 0
        self._depth = 0

    def parse(self, body: bytes) -> None:
        parser = expat.ParserCreate(namespace_separator=" ")
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        parser.EntityDeclHandler = self._refuse_entity
        parser.UnparsedEntityDeclHandler = self._refuse_entity
        parser.ExternalEntityRefHandler = self._refuse_external
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self._chars
        try:
            parser.Parse(body, True)
        except _Full:
            self.truncated = True

    def _refuse_entity(self, name, *args) -> None:
        raise _Refused(f"it declares an entity ({name!r}); sitemaps have none")

    def _refuse_external(self, *args) -> None:
        raise _Refused("it refers to an external entity")

    def _start(self, name: str, attributes) -> None:
        self._depth += 1
        namespace, _, local = name.rpartition(" ")
        if self._depth == 1:
            if local not in ("urlset", "sitemapindex"):
                raise _Refused(f"its root element is <{local}>, not <urlset> or <sitemapindex>")
            self.index = local == "sitemapindex"
        elif local in ("url", "sitemap") and self._depth == 2:
            if len(self.entries) >= self.max_entries:
                raise _Full
            self._entry = Entry()
        elif self._entry is not None:
            # Sitemap elements are read in any namespace (sites get it wrong); news: and image: only in theirs.
            key = (namespace if namespace in (NEWS_NS, IMAGE_NS) else "", local)
            self._field = self._FIELDS.get(key)
            self._text, self._size = [], 0

    def _chars(self, data: str) -> None:
        if self._field and self._size < MAX_TEXT_CHARS:
            self._text.append(data[: MAX_TEXT_CHARS - self._size])
            self._size += len(data)

    def _end(self, name: str) -> None:
        self._depth -= 1
        if self._field and self._entry is not None:
            if not getattr(self._entry, self._field):  # the first image:loc is the lead picture
                setattr(self._entry, self._field, "".join(self._text).strip())
            self._field = None
        elif self._depth == 1 and self._entry is not None:
            if self._entry.loc:
                self.entries.append(self._entry)
            self._entry = None


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def robots_sitemaps(body: bytes, robots_url: str) -> list[str]:
    """The http(s) URLs of a robots.txt's `Sitemap:` lines, in order."""
    found = []
    for line in body.decode("utf-8", errors="replace").splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() == "sitemap" and (link := absolute_http(value.split("#", 1)[0].strip(), robots_url)):
            found.append(link)
    return list(dict.fromkeys(found))


def discovery_candidates(page_url: str, robots: list[str]) -> list[str]:
    """Where kind "auto" looks for a sitemap: robots.txt's (a news sitemap first), then /sitemap.xml."""
    news = [u for u in robots if "news" in u.lower()]
    ordered = news + [u for u in robots if u not in news] + [urljoin(origin_of(page_url), "/sitemap.xml")]
    return list(dict.fromkeys(ordered))
