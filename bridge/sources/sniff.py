"""What a body is, from its first bytes: an HTML page, a sitemap. Its own module, without the
HTML readers: kind "auto" (the default) asks of every feed it reads, and the readers load
selectolax, which the daemon's process needs only for HTML (sources/read.py)."""

from __future__ import annotations

import re

GZIP_MAGIC = b"\x1f\x8b"
# The first start tag near the top, comments aside: the root element (the parser checks it again).
_FIRST_TAG = re.compile(rb"<(?:[\w.-]+:)?([A-Za-z_][\w.-]*)")
_COMMENT = re.compile(rb"<!--.*?(?:-->|\Z)", re.DOTALL)
SITEMAP_ROOTS = ("urlset", "sitemapindex")
_SNIFF_BYTES = 4096
_HTML_START = re.compile(
    rb"^(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html[\s>]|head[\s>]|body[\s>])",
    re.IGNORECASE | re.DOTALL,
)


def looks_like_html(body: bytes) -> bool:
    """An HTML document (not a feed served as text/html, which some sites do)."""
    return bool(_HTML_START.match(body[:4096]))


def looks_like_sitemap(body: bytes) -> bool:
    """A sitemap or sitemap index document (gzipped or not)."""
    return body.startswith(GZIP_MAGIC) or root_name(body) in SITEMAP_ROOTS


def root_name(body: bytes) -> str | None:
    """The local name of the document's first element, from its first 4 KB (a feed that mentions
    "<urlset>" in a description is still a feed)."""
    match = _FIRST_TAG.search(_COMMENT.sub(b"", body[:_SNIFF_BYTES]))
    return match[1].decode("ascii", "replace") if match else None
