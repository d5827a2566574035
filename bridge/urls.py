"""URL normalisation: one spelling per story, so the same article seen twice is stored once.

Pure functions, no I/O. The normalised form is for comparing and deduplicating; posts show the
link as published, less its click-tracking parameters and fragment (shareable_url).
"""

from __future__ import annotations

from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}

# Click-tracking parameters that vary per share but never change the article.
_TRACKING_PARAMS = frozenset({"fbclid", "gclid"})
_TRACKING_PREFIXES = ("utm_",)


def normalise_url(url: str) -> str | None:
    """Return `url` in a canonical form, or None when it is empty or not an http(s) URL.

    Lower-cases scheme and host, drops default ports, the fragment, tracking parameters
    (utm_*, fbclid, gclid) and trailing slashes of the path; keeps other parameters in order
    and exactly as written.
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
    path = parts.path.rstrip("/")  # "/a/" and "/a" are the same page; "/" becomes ""
    return urlunsplit((scheme, netloc, path, _clean_query(parts.query), ""))


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
