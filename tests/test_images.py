"""Recognising photos by their bytes."""

from __future__ import annotations

import pytest

from bridge.images import sniff_image_type


@pytest.mark.parametrize(("data", "mime_type"), [
    (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "image/png"),
    (b"GIF89a\x01\x00", "image/gif"),
    (b"GIF87a\x01\x00", "image/gif"),
    (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "image/webp"),
    (b"<!DOCTYPE html><html>", None),
    (b"RIFF\x24\x00\x00\x00WAVEfmt ", None),
    (b"", None),
])
def test_sniff_image_type(data, mime_type):
    """JPEG, PNG, GIF and WebP are known by their first bytes; anything else is not a photo."""
    assert sniff_image_type(data) == mime_type
