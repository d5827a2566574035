"""Plain data that flows through the pipeline. No I/O here.

An Item is one story read from a source. A Post is what one network receives for one item.
A Delivery is the outbox row that carries an item to one target through its states.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable


@dataclass(frozen=True)
class Item:
    """One story as read from a source, before it is stored."""

    key: str
    """Stable identity within its source: guid/id (an http(s) URL one as its urls.identity_url),
    else the link's identity, else a content hash."""
    title: str
    link: str | None = None
    """The link as published, less click-tracking parameters and fragment (what a post shows)."""
    url: str | None = None
    """The link's identity (urls.identity_url: no scheme or "www.", no tracking parameters, the
    fragment kept): dedupes across sources."""
    summary: str = ""
    """Plain text, no markup."""
    published: datetime | None = None
    """Aware UTC datetime, or None when the source gave no date we can trust."""
    categories: tuple[str, ...] = ()
    image_url: str | None = None


def unique_by_key(items: Iterable[Item]) -> list[Item]:
    """The items in order, each key once (the first wins)."""
    seen: set[str] = set()
    unique = []
    for item in items:
        if item.key not in seen:
            seen.add(item.key)
            unique.append(item)
    return unique


@dataclass(frozen=True)
class Image:
    """A downloaded photo, checked to be an image of a type the networks take."""

    data: bytes = field(repr=False)
    mime_type: str
    """From the bytes themselves (image/jpeg, image/png, image/gif, image/webp), not the server's word."""
    url: str
    alt_text: str = ""


@dataclass(frozen=True)
class Post:
    """The composed text for one network, plus the parts a network may use separately."""

    text: str
    link: str | None = None
    title: str = ""
    summary: str = ""
    image_url: str | None = None
    image: Image | None = None
    """The photo to attach, when one was downloaded; a post never waits or fails for lack of it."""
    recipient: str | None = None
    """For a target that sends each story to several recipients (WhatsApp): this delivery's one."""


class DeliveryState(str, enum.Enum):
    """Where a delivery stands. `pending`, `sending`, `in_doubt` and `held` are unfinished."""

    PENDING = "pending"
    """Waiting to be sent (maybe held until `next_attempt_at`)."""
    SENDING = "sending"
    """Committed just before the API call; found at start-up it means the outcome is in doubt."""
    IN_DOUBT = "in_doubt"
    """The post may have gone out and no proof came back. Settled by the network's rule (identical
    re-send where duplicates are refused, a look at the account where it can be read) or by the
    operator (`bridge resolve ID --sent`, `bridge retry ID`); never silently failed or re-sent."""
    HELD = "held"
    """Part of a burst (a known source suddenly brought many "new" stories: a site move, a CMS
    change): waits for the operator's `bridge release SOURCE` or `bridge catchup SOURCE`."""
    SENT = "sent"
    """The network answered with an id (or said it already had this post)."""
    FAILED = "failed"
    """Given up: the network refused it, or retries ran out. `bridge retry` can re-queue it."""
    SKIPPED = "skipped"
    """Deliberately never sent: seen on a first run, caught up, or already delivered via another source."""


@dataclass(frozen=True)
class Delivery:
    """An outbox row joined with the item it carries, as the delivery stage needs it."""

    id: int
    target: str
    source: str
    state: DeliveryState
    attempts: int
    item: Item
    next_attempt_at: datetime | None = None
    remote_id: str | None = None
    last_error: str | None = None
    recipient: str = ""
    """Whom this delivery goes to, for a target with recipients (WhatsApp); "" for the target itself."""
    frozen: "FrozenPost | None" = None
    """What the first attempt sent, byte for byte; every later attempt sends exactly this."""
    first_attempt_at: datetime | None = None
    last_attempt_at: datetime | None = None


@dataclass(frozen=True)
class FrozenPost:
    """The post as first sent: the text, the photo's URL and alt text, and what it costs. Stored
    with the delivery before the API call, so a re-send (after a timeout, after a crash) is the
    same post whatever settings.toml says now, and X's duplicate check can recognise it."""

    text: str
    image_url: str | None = None
    alt_text: str = ""
    cost: float = 0.0


@dataclass(frozen=True)
class PollOutcome:
    """What one poll of one source did, for logs and status."""

    source: str
    status: str
    """"ok", "not_modified", "skipped_backoff" or "error"."""
    items_seen: int = 0
    items_new: int = 0
    deliveries_created: int = 0
    error: str | None = None
    first_run: bool = False
    extra: dict = field(default_factory=dict)
