"""A publisher that posts nothing and logs what it would have posted (dry_run = true)."""

from __future__ import annotations

import structlog

from bridge.compose import LengthRule
from bridge.model import Post

log = structlog.get_logger("bridge.publish")


class DryRunPublisher:
    """Stands in for a target's real publisher; composes with that network's length rule."""

    duplicate_safe_for = None
    dry_run = True
    hold_until = None
    image_problem = None

    def __init__(self, name: str, length_rule: LengthRule, max_image_bytes: int,
                 photo_length_rule: LengthRule | None = None):
        self.name = name
        self.length_rule = length_rule
        self.max_image_bytes = max_image_bytes
        self.photo_length_rule = photo_length_rule

    def publish(self, post: Post, idempotency_key: str) -> str:
        image = None
        if post.image is not None:
            image = {"url": post.image.url, "type": post.image.mime_type, "bytes": len(post.image.data),
                     "alt_text": post.image.alt_text}
        rule = self.photo_length_rule if image and self.photo_length_rule else self.length_rule
        extra = {"recipient": post.recipient} if post.recipient else {}
        log.info("would post", target=self.name, text=post.text, link=post.link, image=image,
                 length=rule.measure(post.text), limit=rule.max_length, **extra)
        return "dry-run"

    def verify(self) -> str:
        return "(dry run: credentials not checked)"

    def close(self) -> None:
        pass
