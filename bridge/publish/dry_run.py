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

    def __init__(self, name: str, length_rule: LengthRule):
        self.name = name
        self.length_rule = length_rule

    def publish(self, post: Post, idempotency_key: str) -> str:
        log.info("would post", target=self.name, text=post.text, link=post.link,
                 length=self.length_rule.measure(post.text), limit=self.length_rule.max_length)
        return "dry-run"

    def verify(self) -> str:
        return "(dry run: credentials not checked)"

    def close(self) -> None:
        pass
