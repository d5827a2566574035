"""A story's photo: download it within limits and check that it really is an image.

The type comes from the file's first bytes, not the server's Content-Type: feeds in the wild say
"image/jpg" (Okezone), "application/octet-stream", or serve an HTML error page with a 200.
"""

from __future__ import annotations

from dataclasses import replace

from bridge.errors import FetchError
from bridge.model import Image
from bridge.sources.fetch import FetchClient, FetchLimits, fetch

ALT_TEXT_MAX_CHARS = 1000
"""X's limit for alt text (Mastodon allows 1500, Bluesky more): the strictest wins."""

_SIGNATURES = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


class ImageError(Exception):
    """Why a photo will not be attached, in a few words for the log."""


def sniff_image_type(data: bytes) -> str | None:
    """The MIME type of a JPEG, PNG, GIF or WebP file from its first bytes; None for anything else."""
    for signature, mime_type in _SIGNATURES:
        if data.startswith(signature):
            return mime_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def download_image(client: FetchClient, url: str, limits: FetchLimits, *, max_bytes: int,
                   alt_text: str = "") -> Image:
    """Fetch `url` with the feed limits but at most `max_bytes`; raise ImageError when it is too
    big, unreachable, or not a JPEG/PNG/GIF/WebP."""
    try:
        result = fetch(client, url, replace(limits, max_body_bytes=max_bytes))
    except FetchError as exc:
        raise ImageError(exc.reason) from None
    mime_type = sniff_image_type(result.body)
    if mime_type is None:
        served = result.headers.get("content-type", "no content type")
        raise ImageError(f"not a JPEG, PNG, GIF or WebP image (served as {served})")
    return Image(data=result.body, mime_type=mime_type, url=url, alt_text=alt_text[:ALT_TEXT_MAX_CHARS])
