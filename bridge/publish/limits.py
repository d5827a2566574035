"""What each network allows (how it counts a post's length, its limits, the largest photo), without
its client library.

Checking settings.toml, a dry run and `bridge check` need these facts for every target, but none of
them posts: importing tweepy, Mastodon.py or atproto for them cost about 0.7 s of start-up (issue
12, "a light CLI"). twitter-text, which X, Mastodon and Bluesky counting need for URLs, compiles its
regexes for ~0.2 s at import, so it is imported on the first text measured, not here. Each network's
module re-exports its own names from here; the numbers are documented in docs/networks.md.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from bridge.compose import LengthRule
from bridge.publish.graphemes import grapheme_count

URL_WEIGHT = 23
"""X and Mastodon count every link as this many characters, whatever its length."""

# --- X -------------------------------------------------------------------------------------------

X_MAX_LENGTH = 280
X_MAX_IMAGE_BYTES = 5 * 1024 * 1024
"""X's limit for a photo (GIFs and videos may be larger; we only post photos)."""
X_MAX_CHARACTER_WEIGHT = 2
"""twitter-text's heaviest code point (its default weight, 200 per 100): CJK, emoji, most scripts."""


def x_weighted_length(text: str) -> int:
    """X's own count: URLs are 23, CJK and emoji 2, most else 1 (twitter-text conformance)."""
    from bridge._pkg_resources import light

    with light():  # ~0.2 s of regexes: only once a text is measured
        from twitter_text import parse_tweet

    return parse_tweet(text).weightedLength


def x_length_at_most(text: str) -> int:
    """A count never below x_weighted_length's, without twitter-text: X normalises to NFC, then
    counts each code point 1 or 2 and each URL 23; every URL it recognises has a dot in its domain,
    so there are at most as many URLs as dots. Lets a config check see that a template fits."""
    normalized = unicodedata.normalize("NFC", text)
    return X_MAX_CHARACTER_WEIGHT * len(normalized) + URL_WEIGHT * normalized.count(".")


X_LENGTH_RULE = LengthRule(X_MAX_LENGTH, x_weighted_length, at_most=x_length_at_most)

# --- Telegram ------------------------------------------------------------------------------------

TELEGRAM_MESSAGE_MAX = 4096
"""sendMessage: 1-4096 characters of text after entities parsing (our HTML escapes count nothing)."""
TELEGRAM_CAPTION_MAX = 1024
"""sendPhoto: 0-1024 characters of caption."""
TELEGRAM_MAX_IMAGE_BYTES = 10 * 1024 * 1024
"""sendPhoto takes an uploaded photo of at most 10 MB."""


def utf16_length(text: str) -> int:
    """Telegram counts message and caption lengths in UTF-16 code units (an emoji outside the BMP is 2)."""
    return len(text.encode("utf-16-le")) // 2


TELEGRAM_LENGTH_RULE = LengthRule(TELEGRAM_MESSAGE_MAX, utf16_length)
TELEGRAM_PHOTO_LENGTH_RULE = LengthRule(TELEGRAM_CAPTION_MAX, utf16_length)

# --- Mastodon ------------------------------------------------------------------------------------

MASTODON_DEFAULT_MAX_CHARACTERS = 500
"""Mastodon's own default for a status; an instance may allow more (or less)."""
MASTODON_MAX_IMAGE_BYTES = 10 * 1024 * 1024
"""Mastodon 4.x takes images of at least 10 MB (16 MB from 4.3; the instance's image_size_limit says)."""


def mastodon_length(text: str, url_weight: int = URL_WEIGHT) -> int:
    """Mastodon's count: grapheme clusters, with every http(s) link counting `url_weight`."""
    from bridge._pkg_resources import light

    with light():  # see x_weighted_length
        from twitter_text import extract_urls_with_indices

    total, position = 0, 0
    for url in extract_urls_with_indices(text, extract_urls_without_protocol=False):
        start, end = url["indices"]
        total += grapheme_count(text[position:start]) + url_weight
        position = end
    return total + grapheme_count(text[position:])


def mastodon_length_at_most(text: str) -> int:
    """Never below mastodon_length's (at the default weight): a grapheme is at least one code point,
    and every link it counts starts with a scheme's "://"."""
    return len(text) + URL_WEIGHT * text.count("://")


MASTODON_LENGTH_RULE = LengthRule(MASTODON_DEFAULT_MAX_CHARACTERS, mastodon_length, at_most=mastodon_length_at_most)

# --- Bluesky -------------------------------------------------------------------------------------

BLUESKY_MAX_GRAPHEMES = 300
BLUESKY_MAX_TEXT_BYTES = 3000
"""app.bsky.feed.post text: maxGraphemes 300 and maxLength 3000 (UTF-8 bytes), both enforced."""
BLUESKY_MAX_IMAGE_BYTES = 1_000_000
"""The external card's thumbnail blob may be at most 1,000,000 bytes."""


def bluesky_length(text: str) -> int:
    """Graphemes, or a tenth of the UTF-8 bytes if more: so 300 keeps both limits (3000 bytes / 300)."""
    byte_units = -(-len(text.encode("utf-8")) // (BLUESKY_MAX_TEXT_BYTES // BLUESKY_MAX_GRAPHEMES))
    return max(grapheme_count(text), byte_units)


BLUESKY_LENGTH_RULE = LengthRule(BLUESKY_MAX_GRAPHEMES, bluesky_length)

# --- Facebook and WhatsApp -----------------------------------------------------------------------

FACEBOOK_MAX_MESSAGE_CHARACTERS = 63206
"""The longest text Facebook takes in a Page post."""
FACEBOOK_MAX_IMAGE_BYTES = 4 * 1024 * 1024
"""Facebook asks for photos under 4 MB."""
FACEBOOK_LENGTH_RULE = LengthRule(FACEBOOK_MAX_MESSAGE_CHARACTERS, len)

WHATSAPP_TEXT_PARAMETER_MAX = 700
"""A template's body may be at most 1024 characters with its parameters filled in: 700 for the text
leaves room for the template's own words and the link."""
WHATSAPP_MAX_IMAGE_BYTES = 5 * 1024 * 1024
"""Unused: the documented template has no image header, so no photo is downloaded (takes_photos)."""
WHATSAPP_LENGTH_RULE = LengthRule(WHATSAPP_TEXT_PARAMETER_MAX, len)


# --- By target kind ------------------------------------------------------------------------------


@dataclass(frozen=True)
class NetworkLimits:
    length_rule: LengthRule
    max_image_bytes: int
    photo_length_rule: LengthRule | None = None
    """The rule for a post that goes out with a photo, when it differs (Telegram's caption)."""


LIMITS: dict[str, NetworkLimits] = {
    "x": NetworkLimits(X_LENGTH_RULE, X_MAX_IMAGE_BYTES),
    "telegram": NetworkLimits(TELEGRAM_LENGTH_RULE, TELEGRAM_MAX_IMAGE_BYTES, TELEGRAM_PHOTO_LENGTH_RULE),
    "mastodon": NetworkLimits(MASTODON_LENGTH_RULE, MASTODON_MAX_IMAGE_BYTES),
    "bluesky": NetworkLimits(BLUESKY_LENGTH_RULE, BLUESKY_MAX_IMAGE_BYTES),
    "facebook": NetworkLimits(FACEBOOK_LENGTH_RULE, FACEBOOK_MAX_IMAGE_BYTES),
    "whatsapp": NetworkLimits(WHATSAPP_LENGTH_RULE, WHATSAPP_MAX_IMAGE_BYTES),
}
"""One entry per bridge.publish.NETWORK_MODULES kind; each module's LENGTH_RULE etc. are these."""
