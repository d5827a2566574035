"""Read a feed body (RSS, Atom, RDF or JSON Feed) into Items.

feedparser only ever sees bytes we fetched ourselves (it has no timeout or size cap of its own),
with its HTML sanitiser off: we turn every field into plain text here anyway, and the sanitiser
costs ~9x on HTML-heavy feeds. What it parses is defused first (sources/defuse.py): no entity
declarations, no impossible character references, person fields cut to a sane size.
"""

from __future__ import annotations

import calendar
import hashlib
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from urllib.parse import urljoin, urlsplit

import feedparser

from bridge.errors import FeedParseError
from bridge.model import Item, unique_by_key
from bridge.sources.dates import feed_date_hook
from bridge.sources.defuse import defuse
from bridge.sources.text import MAX_SUMMARY_CHARS, MAX_TITLE_CHARS, first_image_src, html_to_text, plain_text
from bridge.urls import identity_key, identity_url, shareable_url

TITLE_FROM_SUMMARY_CHARS = 100
"""An untitled entry borrows this much of its summary as a title."""

_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml", "html", "xhtml"})
_JSON_TYPES = frozenset({"application/feed+json", "application/json"})
_JSON_FEED_VERSION = "https://jsonfeed.org/version/"
_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9:-]*(?:\s[^<>]*)?/?>")
"""Something that is a tag, not a "<" in prose ("harga <5%", "a < b")."""
_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".avif")

# --- dates -----------------------------------------------------------------------------------

DateParser = Callable[[str], "datetime | None"]
"""Reads one raw date string from a feed; returns an aware datetime or None if it cannot."""
_DATE_PARSERS: list[DateParser] = []

# Shapes feedparser reads wrongly instead of not at all, so its answer must not be used:
# "26-07-2022 12:01:01" comes back as 2026-07-20; a zone it does not know ("WIB") is taken as UTC.
_DAY_FIRST_NUMERIC = re.compile(r"^\s*\d{1,2}[-/.]\d{1,2}[-/.]\d{4}")
_TRAILING_ZONE = re.compile(r"\d{1,2}:\d{2}(?::\d{2})?\s*([A-Za-z]{1,5})\s*$")
_ZONES_FEEDPARSER_KNOWS = frozenset(  # feedparser.datetimes.rfc822.timezone_names, plus UTC
    "UT UTC GMT Z AST ADT AT EST EDT ET CST CDT CT MST MDT MT PST PDT PT MET MEST A N M Y".split()
)


def register_date_parser(parser: DateParser) -> None:
    """Hook for date formats feedparser cannot read (Indonesian: "Sen, 14 Okt 2024 10:00:00 WIB").

    Registered parsers see every raw date string first, newest registration first; the first
    aware datetime returned wins. Use this rather than feedparser.registerDateHandler: strings in
    the shapes feedparser misreads are otherwise distrusted after it has parsed them.
    """
    if parser not in _DATE_PARSERS:
        _DATE_PARSERS.insert(0, parser)


# --- entry point -----------------------------------------------------------------------------


def parse_feed(body: bytes, *, url: str, headers: dict[str, str] | None = None) -> list[Item]:
    """Read `body` (fetched from `url`) into Items in feed order, one per distinct key.

    Raises FeedParseError when the body is not a feed. A feed with no entries gives [].
    """
    headers = {str(k).lower(): str(v) for k, v in (headers or {}).items()}
    if not body or not body.strip():
        raise FeedParseError(url, "empty body")
    if _looks_like_json(body, headers):
        items = _read_json_feed(body, url)
    else:
        items = _read_xml_feed(body, url, headers)
    return unique_by_key(items)  # a feed that lists one story twice must not make two posts


# --- XML feeds (feedparser) --------------------------------------------------------------------


def _read_xml_feed(body: bytes, url: str, headers: dict[str, str]) -> list[Item]:
    # No Content-Location on purpose: feedparser would resolve relative guids against it, and a
    # key must not change when the feed moves. Relative links are resolved against `url` below.
    headers.pop("content-location", None)
    # Without a Content-Type (but with other headers) feedparser assumes ISO-8859-1, garbling the
    # UTF-8 feeds that omit the XML declaration; application/xml means "trust the document".
    headers.setdefault("content-type", "application/xml")
    body, headers = defuse(body, headers)
    try:
        # resolve_relative_uris off too: it re-parses every HTML field (~8x the parse time), and
        # the only URIs we take from HTML (<img src>) are resolved below against the entry's base.
        parsed = feedparser.parse(
            io.BytesIO(body), response_headers=headers, sanitize_html=False, resolve_relative_uris=False
        )
    except Exception as exc:  # feedparser's own bugs on hostile input must not kill a poll
        raise FeedParseError(url, f"feed parser failed: {type(exc).__name__}: {_short(exc)}") from exc
    entries = parsed.get("entries") or []
    if not entries and not parsed.get("version"):
        # No rss/feed/rdf root and nothing that looks like an entry: an HTML page, an error page...
        if re.search(rb"<html[\s>]", body[:4096], re.IGNORECASE):
            raise FeedParseError(url, "not a feed: got an HTML page")
        why = parsed.get("bozo_exception")
        raise FeedParseError(url, f"not a feed ({_short(why)})" if why else "not a feed (no channel or entries)")
    return [item for entry in entries if (item := _entry_to_item(entry, url)) is not None]


_field = dict.get
"""An entry's field by the name feedparser stores it under. FeedParserDict.get also answers old
aliases (guid, description, ...) through a key map, a Python call and, for each miss, a KeyError
(turning a 50-story feed into Items: 4.52 -> 4.33 ms without them); the names used here are the
ones it stores (its __setitem__ maps every alias to them). Not for "enclosures", which
FeedParserDict computes from the links; for "updated" it gives the element itself, without
feedparser's fallback to <published>."""


def _entry_to_item(entry, feed_url: str) -> Item | None:
    base = _entry_base(entry, feed_url)
    summary_source, summary_is_html = _summary_source(entry)
    summary = _text(summary_source, summary_is_html)
    summary_img = first_image_src(summary_source) if summary_is_html else None
    title_detail = _field(entry, "title_detail") or {}
    title = _text(_field(entry, "title") or "", _is_html(_field(title_detail, "type")))
    if not title:
        title = _clip(summary, TITLE_FROM_SUMMARY_CHARS)
    link = _entry_link(entry, base)
    if not (title or summary or link):
        return None  # nothing a post could say
    return Item(
        key=_key(_field(entry, "id"), link, title, summary),
        title=_clip(title, MAX_TITLE_CHARS),
        link=shareable_url(link) if link else None,
        url=identity_url(link) if link else None,
        summary=_clip(summary, MAX_SUMMARY_CHARS),
        published=_entry_published(entry),
        categories=_categories(_field(tag, "term") for tag in _field(entry, "tags") or [] if isinstance(tag, dict)),
        image_url=_entry_image(entry, base, summary_img),
    )


def _entry_base(entry, feed_url: str) -> str:
    # xml:base as feedparser resolved it, else the feed's own address.
    for detail in (_field(entry, "summary_detail"), _field(entry, "title_detail")):
        if detail and _field(detail, "base"):
            return urljoin(feed_url, detail["base"])
    return feed_url


def _entry_link(entry, base: str) -> str | None:
    link = _field(entry, "link")
    if _field(entry, "guidislink") and link == _field(entry, "id") and not _is_http(link):
        return None  # feedparser borrowed a guid that is no URL ("12345"): joining it would invent one
    return _absolute_http(link, base)


def _summary_source(entry) -> tuple[str, bool]:
    detail = _field(entry, "summary_detail")
    if detail and _field(detail, "value"):
        return detail["value"], _is_html(_field(detail, "type"))
    for content in _field(entry, "content") or []:
        if _field(content, "value"):
            return content["value"], _is_html(_field(content, "type"))
    return _field(entry, "summary") or "", True


def _entry_image(entry, base: str, summary_img: str | None) -> str | None:
    return next((u for c in _image_candidates(entry, summary_img) if (u := _absolute_http(c, base))), None)


def _image_candidates(entry, summary_img: str | None) -> Iterator[str | None]:
    # A generator, so the content HTML is only scanned when nothing better was found.
    for media in _field(entry, "media_content") or []:
        if _is_image(media.get("medium"), media.get("type"), media.get("url")):
            yield media.get("url")
    yield from (thumb.get("url") for thumb in _field(entry, "media_thumbnail") or [])
    for enclosure in entry.get("enclosures") or []:
        if _is_image(None, enclosure.get("type"), None):
            yield enclosure.get("href") or enclosure.get("url")
    # Antara and detik carry the photo only as an <img> inside the description.
    yield summary_img
    for content in _field(entry, "content") or []:
        if _is_html(_field(content, "type")) and _field(content, "value"):
            yield first_image_src(content["value"])


def _is_image(medium, mime, url) -> bool:
    if medium or mime:
        # "image/jpg" is not a registered type, but Okezone sends it: any image/* counts.
        return medium == "image" or str(mime or "").strip().lower().startswith("image/")
    path = urlsplit(str(url or "")).path.lower()
    return path.endswith(_IMAGE_EXTENSIONS)


def _entry_published(entry) -> datetime | None:
    # An unreadable <published> next to a readable <updated> takes the latter: a date the entry
    # gives beats none (max_age and latest:N need one).
    # _field: feedparser's own get() answers "updated" with <published> when there is none (and warns).
    for raw_key, parsed_key in (("published", "published_parsed"), ("updated", "updated_parsed")):
        raw = _field(entry, raw_key)
        if raw and (found := _date_from(str(raw), _field(entry, parsed_key))):
            return found
    return None


def _date_from_hooks(raw: str) -> datetime | None:
    for parser in list(_DATE_PARSERS):
        try:
            found = parser(raw)
        except Exception:  # a hook's bug must not lose the whole feed
            continue
        if isinstance(found, datetime) and found.tzinfo is not None:
            return found.astimezone(timezone.utc)
    return None


def _date_from(raw: str, parsed) -> datetime | None:
    if hooked := _date_from_hooks(raw):
        return hooked
    if parsed is None or _feedparser_misreads(raw):
        return None  # no date beats a wrong one: a post could go out as "new" years late
    try:
        return datetime.fromtimestamp(calendar.timegm(parsed), tz=timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _feedparser_misreads(raw: str) -> bool:
    if _DAY_FIRST_NUMERIC.match(raw):
        return True
    zone = _TRAILING_ZONE.search(raw)
    return bool(zone) and zone.group(1).upper() not in _ZONES_FEEDPARSER_KNOWS


# --- JSON Feed -------------------------------------------------------------------------------


def _looks_like_json(body: bytes, headers: dict[str, str]) -> bool:
    start = body.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if start == b"{":
        return True
    media_type = headers.get("content-type", "").split(";")[0].strip().lower()
    return media_type in _JSON_TYPES and start != b"<"  # a mislabelled XML feed is still XML


def _read_json_feed(body: bytes, url: str) -> list[Item]:
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:  # RecursionError: "[[[[..." nested past the stack
        raise FeedParseError(url, f"not valid JSON ({_short(exc)})") from exc
    if not isinstance(doc, dict):
        raise FeedParseError(url, "JSON but not a JSON Feed (no top-level object)")
    items = doc.get("items", [])
    if not str(doc.get("version", "")).startswith(_JSON_FEED_VERSION) and "items" not in doc:
        raise FeedParseError(url, "JSON but not a JSON Feed (no version or items)")
    if not isinstance(items, list):
        raise FeedParseError(url, "JSON Feed whose items is not a list")
    return [item for entry in items if isinstance(entry, dict) and (item := _json_item(entry, url))]


def _json_item(entry: dict, feed_url: str) -> Item | None:
    content_html = _str(entry.get("content_html"))
    summary = _text(_str(entry.get("summary")) or _str(entry.get("content_text")), False) or html_to_text(content_html)
    title = _text(_str(entry.get("title")), False) or _clip(summary, TITLE_FROM_SUMMARY_CHARS)
    link = _absolute_http(_str(entry.get("url")) or _str(entry.get("external_url")), feed_url)
    if not (title or summary or link):
        return None
    raw_id = entry.get("id")
    # Version 1.0 feeds in the wild use numbers for ids; bool is an int in Python but never an id.
    number_id = isinstance(raw_id, int) and not isinstance(raw_id, bool)
    key_source = str(raw_id) if number_id else _str(raw_id)
    images = [_str(entry.get("image")), _str(entry.get("banner_image"))]
    images += [_str(a.get("url")) for a in _list(entry.get("attachments")) if isinstance(a, dict)
               and _str(a.get("mime_type")).lower().startswith("image/")]
    images.append(first_image_src(content_html) if content_html else None)
    return Item(
        key=_key(key_source, link, title, summary),
        title=_clip(title, MAX_TITLE_CHARS),
        link=shareable_url(link) if link else None,
        url=identity_url(link) if link else None,
        summary=_clip(summary, MAX_SUMMARY_CHARS),
        published=_iso_date(_str(entry.get("date_published"))) or _iso_date(_str(entry.get("date_modified"))),
        categories=_categories(t for t in _list(entry.get("tags")) if isinstance(t, str)),
        image_url=next((u for c in images if (u := _absolute_http(c, feed_url))), None),
    )


def _iso_date(raw: str) -> datetime | None:
    if not raw:
        return None
    if hooked := _date_from_hooks(raw):
        return hooked
    try:
        value = datetime.fromisoformat(raw.strip())
    except ValueError:
        return None
    # RFC 3339 requires an offset. Without one (and outside a source's read, where the date hook
    # assumes its `timezone`), the time could be any zone, so it is not a date.
    return value.astimezone(timezone.utc) if value.tzinfo else None


# --- shared helpers --------------------------------------------------------------------------


def _key(raw_id, link: str | None, title: str, summary: str) -> str:
    # A guid that is a URL (often the link itself) is keyed by its identity, so a site that moves
    # to https or drops "www." does not repost its whole feed; any other guid is kept as written.
    guid = identity_key(str(raw_id)) if raw_id else ""
    if guid:
        return guid
    identity = identity_url(link) if link else None
    if identity:
        return identity
    return "sha256:" + hashlib.sha256(f"{title}\n{summary}".encode("utf-8", "surrogatepass")).hexdigest()


def _text(value: str, is_html: bool) -> str:
    """Plain text of a field. A field declared plain text that holds tags is read as HTML all the
    same: CMSs leak markup into RSS titles, and feedparser (sanitiser off, and its guess ignores
    <script>) hands it over as is; a post must never carry <script> or an onerror attribute."""
    return html_to_text(value) if is_html or _TAG.search(value) else plain_text(value)


def _is_html(content_type) -> bool:
    return str(content_type or "").lower() in _HTML_TYPES


def _absolute_http(link, base: str) -> str | None:
    if not isinstance(link, str) or not link.strip():
        return None
    try:
        absolute = urljoin(base, link.strip())
    except ValueError:  # e.g. an invalid IPv6 literal
        return None
    return absolute if _is_http(absolute) else None  # javascript:, data:, mailto: cannot be posted


def _is_http(link) -> bool:
    try:
        return isinstance(link, str) and urlsplit(link.strip()).scheme.lower() in ("http", "https")
    except ValueError:
        return False


def _categories(terms: Iterable) -> tuple[str, ...]:
    cleaned = (plain_text(str(t)) for t in terms if t)
    return tuple(dict.fromkeys(t for t in cleaned if t))  # Republika pads CDATA terms; dedupe


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut[limit // 2 :]:  # end on a word when one ends in the second half
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip() + "…"


def _str(value) -> str:
    # JSON escapes can encode lone surrogates, which no database or network accepts as text.
    return value.encode("utf-8", "replace").decode("utf-8") if isinstance(value, str) else ""


def _list(value) -> list:
    return value if isinstance(value, list) else []


def _short(exc, limit: int = 160) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


# Feeds from Indonesian sites write dates feedparser cannot read or misreads ("Sen, 14 Okt 2024
# 10:00:00 WIB", "26-07-2022 12:01:01"): ours is asked first, wherever this reader is used.
register_date_parser(feed_date_hook)
