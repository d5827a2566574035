"""The only code that chains the stages: poll(source) and deliver_due().

runtime.py (what both share), polling.py, posts.py (compose and freeze), delivering.py.

poll:    fetch (conditional GET) -> read (feed | html) -> story pages of new stories to post (html)
         -> store new items + their deliveries, in one go.
deliver: for each target, claim the oldest due delivery -> compose -> publish -> record the outcome.
"""

from __future__ import annotations

from bridge.pipeline.delivering import (
    PUBLISH_BACKOFF_BASE,
    charge_billed_calls,
    deliver_due,
)
from bridge.pipeline.polling import (
    CAUGHT_UP,
    RETRY_AFTER_MAX,
    SOURCE_BACKOFF_MAX,
    burst_reason,
    choose_first_run_items,
    poll,
    skip_reasons,
    undated_first_seen,
)
from bridge.pipeline.posts import (
    compose_post,
    filter_reason,
    filtered_by_target,
    freeze_post,
    idempotency_key,
    length_rule_for_post,
    photos_wanted,
    wants_photo,
)
from bridge.pipeline.runtime import CurrentRuntime, Runtime

__all__ = [
    "CAUGHT_UP", "PUBLISH_BACKOFF_BASE", "RETRY_AFTER_MAX", "SOURCE_BACKOFF_MAX", "CurrentRuntime", "Runtime",
    "burst_reason", "charge_billed_calls", "choose_first_run_items", "compose_post", "deliver_due",
    "filter_reason", "filtered_by_target", "freeze_post", "idempotency_key", "length_rule_for_post",
    "photos_wanted", "poll", "skip_reasons", "undated_first_seen", "wants_photo",
]
