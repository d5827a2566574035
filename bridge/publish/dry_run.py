"""A publisher that posts nothing and logs what it would have posted (dry_run = true)."""

from __future__ import annotations

import structlog

from bridge.compose import LengthRule
from bridge.model import Post

log = structlog.get_logger("bridge.publish")


class DryRunPublisher:
    """Stands in for a target's real publisher; composes with that network's length rule."""

    resend_in_doubt_is_safe = True
    dry_run = True
    hold_until = None
    image_problem = None

    def __init__(self, name: str, length_rule: LengthRule, max_image_bytes: int):
        self.name = name
        self.length_rule = length_rule
        self.max_image_bytes = max_image_bytes

    def publish(self, post: Post, idempotency_key: str) -> str:
        image = None
        if post.image is not None:
            image = {"url": post.image.url, "type": post.image.mime_type, "bytes": len(post.image.data),
                     "alt_text": post.image.alt_text}
        log.info("would post", target=self.name, text=post.text, link=post.link, image=image,
                 length=self.length_rule.measure(post.text), limit=self.length_rule.max_length)
        return "dry-run"

    def verify(self) -> str:
        return "(dry run: credentials not checked)"

    def close(self) -> None:
        pass
