"""The publisher interface and the registry of publishers by target kind.

A publisher turns a composed Post into a remote post and returns its id, or raises one of the
PublishError types in bridge.errors. Each network lives in one module here; no other module knows
its URLs, headers or error codes.

Deadlines (issue 9, "nothing blocks the daemon"): every HTTP request a publisher makes, in publish(),
verify(), find_post() or when it reads the instance's limits, ends within the publisher's timeout
(publish_timeout) in total, connect to last byte of the body (bridge/deadline.py, wired through
_http.DeadlineSession, _http.DeadlineClient and bluesky._DeadlineRequest). The deadline is per
request, not one over the whole publish: a photo upload that used up a shared deadline would leave
the post no time (never sent at best, in doubt at worst, for a photo that is only an extra), and
Mastodon's wait for a GIF to be processed (MEDIA_WAIT) is longer than the timeout itself. A publish
stays bounded because it makes a bounded number of requests, none retried by the libraries:
  X: media upload, alt text, the post (3); Telegram: sendPhoto, then sendMessage when the photo is
  refused (2); Facebook: /photos, then /feed when the photo is refused (2); WhatsApp: one message;
  Mastodon: media upload, at most MEDIA_WAIT / MEDIA_POLL_EVERY status polls (2 s apart), the
  status; Bluesky: login, the thumbnail and the post, each at most once more after a session
  refresh (and a login if the refresh is refused).
How a cut is judged is _http.transport_problem / requests_problem: a deadline passing while
connecting is a connect timeout, never sent (RetryLater); once the request may have left (sending
it, waiting for the answer, reading its body) a create call is InDoubt, any other call RetryLater.
"""

from __future__ import annotations

import importlib
from datetime import datetime, timedelta
from typing import Protocol

from bridge.compose import LengthRule
from bridge.model import Post


class Publisher(Protocol):
    name: str
    """The target's name from settings.toml."""
    length_rule: LengthRule
    """How this network counts characters, and its limit."""
    duplicate_safe_for: timedelta | None
    """For how long after a post's first attempt the network itself refuses an identical re-send
    (X's duplicate check: always; Mastodon's Idempotency-Key: an hour), so a post in doubt may be
    sent again with the same bytes and key; None when it never does."""
    verify_after: timedelta
    """Optional, with find_post: how long the network may take to show a new post on the account."""
    max_image_bytes: int
    """The largest photo this network takes; the download stops there."""
    hold_until: datetime | None
    """Set by publish(): when the network said its quota is used up, the time it resets."""
    image_problem: str | None
    """Set by publish(): why the post's photo was not attached (the post went out without it)."""
    photo_length_rule: LengthRule | None
    """Optional: the rule for a post that goes out with a photo, when it differs (Telegram's caption
    is 1024 characters, its message 4096). The pipeline composes with it when a photo is wanted; the
    text then fits both ways, should the photo fail."""

    def publish(self, post: Post, idempotency_key: str) -> str:
        """Post it; return the remote id. Raises RetryLater (never sent), InDoubt (may have been
        sent), TargetPaused, PostRejected or AlreadyPosted; the module decides which from what it saw."""

    # Optional: def find_post(self, post: Post, since: datetime) -> str | None
    #   Look for `post` among the account's posts since `since`: its remote id, or None when it is
    #   not there. Raises a PublishError when the network cannot be asked now. Networks that let an
    #   account read its own posts (Mastodon, Bluesky, Facebook) have it; it settles posts in doubt.

    def verify(self) -> str:
        """Check the credentials; return the account's name. Raises TargetPaused when they are bad."""

    def close(self) -> None:
        """Release connections."""


NETWORK_MODULES = {
    "x": "bridge.publish.x",
    "telegram": "bridge.publish.telegram",
    "mastodon": "bridge.publish.mastodon",
    "bluesky": "bridge.publish.bluesky",
    "facebook": "bridge.publish.facebook",
    "whatsapp": "bridge.publish.whatsapp",
}
"""One module per network. Each has LENGTH_RULE, MAX_IMAGE_BYTES, optionally PHOTO_LENGTH_RULE (its
entry in bridge.publish.limits.LIMITS), and build(target, timeout=, clock=) -> its publisher."""


POSTING_NEEDS = ("twitter_text",)
"""Imported on first use, not at start-up (~0.2 s of regexes): X's and Mastodon's counts
(publish/limits.py) and the price check that tells a post with a link from one without (pacing.py)."""


def _network(kind: str):
    if kind not in NETWORK_MODULES:
        raise ValueError(f"no publisher for target kind {kind!r}")
    return importlib.import_module(NETWORK_MODULES[kind])


def build_publisher(target, *, dry_run: bool, timeout: float, clock=None, compose: bool = True) -> Publisher:
    """The publisher for a configured target (a config.TargetConfig). A network's module (and its
    client library) is imported only for a live publisher, so that a dry run, `bridge check` on one
    or `bridge status` loads none of them; a dry run needs only the network's limits.

    `compose`: the publisher will be given posts, so what composing and pricing them imports on
    first use is imported now (POSTING_NEEDS): a broken install then stops `bridge run` at start, in
    one line, instead of deferring every post. False for a publisher only asked to verify()
    (`bridge check`)."""
    from bridge.publish.dry_run import DryRunPublisher

    limits = _limits(target.kind)
    if compose:
        from bridge._pkg_resources import light

        with light():
            for name in POSTING_NEEDS:
                importlib.import_module(name)
    if dry_run:
        return DryRunPublisher(target.name, limits.length_rule, max_image_bytes=limits.max_image_bytes,
                               photo_length_rule=limits.photo_length_rule)
    return _network(target.kind).build(target, timeout=timeout, clock=clock)


def _limits(kind: str):
    from bridge.publish.limits import LIMITS

    if kind not in LIMITS:
        raise ValueError(f"no publisher for target kind {kind!r}")
    return LIMITS[kind]


def length_rule_for(kind: str) -> LengthRule:
    """How a target kind counts characters, without building a publisher (config checks). For
    Mastodon this is the default of 500; a live publisher reads its instance's own limit."""
    try:
        return _limits(kind).length_rule
    except ValueError:
        raise ValueError(f"no length rule for target kind {kind!r}") from None


def post_url(target, remote_id: str) -> str | None:
    """The public address of a sent post, from its remote id, as its network's module builds it
    (each module's post_url: the network's URL forms live there only); None when it has none."""
    try:
        return _network(target.kind).post_url(remote_id, target)
    except (ValueError, ImportError):
        return None  # an unknown kind, or a network whose client is not installed: no link
