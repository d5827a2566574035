"""URL identity: one spelling per story, so the same article seen twice is stored once.

Pure functions, no I/O. The identity form (identity_url) is for keys and for comparing and
deduplicating; posts show the link as published, less its click-tracking parameters and fragment
(shareable_url).

The identity leaves out the scheme and a leading "www.": sites move from http to https and from
www.site to site, and a story must not be posted again because its address changed that way. The
fragment stays: single-page feeds list stories that differ only by it (page#2, page#3). A key that
differs from a stored one only by its fragment (fragment_free) is matched by the store when the
title is the same too (see Repository.known_keys): a site that starts linking `#comments` or
`#utm_anchor` posts nothing again.
"""

from __future__ import annotations

import re
import string
from urllib.parse import SplitResult, quote, unquote, urlsplit, urlunsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}
_WWW = "www."

# Click-tracking parameters that vary per share but never change the article.
_TRACKING_PARAMS = frozenset({"fbclid", "gclid"})
_TRACKING_PREFIXES = ("utm_",)

_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")


def identity_url(url: str) -> str | None:
    """Return the identity of `url`, or None when it is empty or not an http(s) URL.

    `host[:port]/path[?query][#fragment]`: no scheme, no leading "www.", the host lower-cased, the
    scheme's default port dropped, no trailing slash on the path, tracking parameters (utm_*,
    fbclid, gclid) dropped; other parameters and the fragment are kept in order and as written,
    except for the one spelling of escapes (normal_escapes: %2f and %2F, %7E and ~, ü and %C3%BC
    are each one address).
    """
    if not isinstance(url, str):
        return None
    url = url.strip()
    if not url:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a non-numeric or out-of-range port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    netloc = _netloc(parts, scheme, port)
    path = normal_escapes(parts.path.rstrip("/"))  # "/a/" and "/a" are the same page; "/" becomes ""
    query = normal_escapes(_clean_query(parts.query))
    fragment = normal_escapes(parts.fragment)
    return netloc + path + (f"?{query}" if query else "") + (f"#{fragment}" if fragment else "")


def normal_escapes(text: str) -> str:
    """RFC 3986's one spelling (6.2.2): an escape's hex digits upper-cased (%2f -> %2F), an escaped
    unreserved character decoded (%7E -> ~), and a character outside ASCII (an IRI's ü, which
    sites and feeds write either way) escaped as UTF-8 (%C3%BC). Reserved characters ("/", "?",
    "=", "&") keep whatever form they have: %2F and / are different addresses."""
    def spelt(match: re.Match) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else "%" + match.group(1).upper()

    text = _ESCAPE.sub(spelt, text)
    if not text.isascii():
        text = "".join(c if c.isascii() else quote(c, safe="", errors="surrogatepass") for c in text)
    return text


def may_be_identity(key: str) -> bool:
    """False for a key that cannot be a URL identity (no "/" and no "#"): a test far cheaper than
    fragment_free's, for skipping the keys it would turn down anyway."""
    return "/" in key or "#" in key


def fragment_free(key: str) -> str | None:
    """A story key without its fragment, when the key is a URL identity (what identity_url makes;
    "x.com/a#2" -> "x.com/a", "x.com/a" -> "x.com/a"); None for any other key (a guid such as
    "tag:site,2026:post#2" or a "sha256:..." digest), which stays exact."""
    if not may_be_identity(key):
        return None
    if identity_url(f"http://{key}") != key:
        return None
    return key.partition("#")[0]


def identity_key(value: str) -> str:
    """A guid or link as a story key: an http(s) URL becomes its identity_url (so the same story
    keeps its key when the site moves to https or drops "www."); anything else stays as written."""
    value = value.strip()
    return identity_url(value) or value


def shareable_url(url: str) -> str:
    """`url` as published, without tracking parameters (utm_*, fbclid, gclid) or a fragment: a
    feed's `utm_medium=rss` would credit every click from X to the feed. Everything else, case and
    trailing slash included, stays as the site wrote it."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    query = _clean_query(parts.query)
    if query == parts.query and not parts.fragment:
        return url
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def _netloc(parts: SplitResult, scheme: str, port: int | None) -> str:
    host = parts.hostname.lower()  # .hostname is already lower-case; explicit for the reader
    if host.startswith(_WWW) and len(host) > len(_WWW):
        host = host[len(_WWW):]
    if ":" in host:  # IPv6 literal: .hostname strips the brackets
        host = f"[{host}]"
    userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    netloc = f"{userinfo}@{host}" if userinfo else host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{port}"
    return netloc


def _clean_query(query: str) -> str:
    # Split by hand instead of parse_qsl/urlencode so the kept parameters keep their exact
    # spelling (%20 stays %20, "a" without "=" stays "a"): re-encoding would change the URL.
    kept = [piece for piece in query.split("&") if piece and not _is_tracking(piece)]
    return "&".join(kept)


def _is_tracking(piece: str) -> bool:
    name = unquote(piece.partition("=")[0]).strip().lower()
    return name in _TRACKING_PARAMS or name.startswith(_TRACKING_PREFIXES)


def names_a_page(url: str) -> bool:
    """True when `url` (as published or normalised, with or without its scheme) points below a
    site's root: a site's home page is shared by unrelated stories, so it never identifies one."""
    rest = url.split("://", 1)[-1]
    path = rest.partition("/")[2].split("?", 1)[0].split("#", 1)[0]
    return bool(path.strip("/"))
