"""A network's own "come back later" (Telegram's retry_after, Meta's estimated_time_to_regain_access,
X's and Mastodon's rate-limit resets) is honoured up to NETWORK_HOLD_MAX: one absurd header (a year,
10**20 seconds) must not silence a target for months, nor turn a refusal (nothing was sent) into a
post in doubt. After the cap, the post goes out exactly once."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from bridge.pipeline import deliver_due
from bridge.pipeline.delivering import NETWORK_HOLD_MAX
from tests.fakes.facebook import PAGE_ID
from tests.helpers import antara_item
from tests.test_faults import CREATE, copies, start_one
from tests.test_networks import bridge, networks  # noqa: F401 (fixtures)

HUGE = 10**20
YEAR = 365 * 24 * 3600


def flood(name: str, seconds: int) -> dict:
    """The network's 429 (or throttling answer) asking to wait `seconds`."""
    if name == "telegram":
        return {"status": 429, "json": {"ok": False, "error_code": 429, "description": "Too Many Requests: retry "
                                        f"after {seconds}", "parameters": {"retry_after": seconds}}}
    if name == "facebook":
        usage = {PAGE_ID: [{"type": "pages", "call_count": 100, "total_cputime": 10, "total_time": 10,
                            "estimated_time_to_regain_access": seconds // 60}]}
        return {"status": 400, "headers": {"X-Business-Use-Case-Usage": json.dumps(usage)},
                "json": {"error": {"message": "(#80001) There have been too many calls to this Page account.",
                                   "type": "OAuthException", "code": 80001, "fbtrace_id": "A1"}}}
    if name == "x":
        from datetime import datetime, timezone
        reset = int(datetime(2026, 11, 26, tzinfo=timezone.utc).timestamp()) + seconds  # the tests' clock
        return {"status": 429, "headers": {"x-rate-limit-limit": "100", "x-rate-limit-remaining": "0",
                                           "x-rate-limit-reset": str(reset)},
                "json": {"title": "Too Many Requests", "detail": "Too Many Requests", "type": "about:blank",
                         "status": 429}}
    raise AssertionError(name)


@pytest.mark.parametrize("seconds", [HUGE, YEAR])
@pytest.mark.parametrize("name", ["telegram", "facebook", "x"])
def test_an_absurd_wait_is_capped_and_the_post_goes_out_once(bridge, networks, name, seconds):
    """A 429 asking for a year or 10**20 s holds the target at most NETWORK_HOLD_MAX; the story is not
    in doubt (nothing was sent) and goes out exactly once after the cap."""
    start_one(bridge, name)
    network = networks[name]
    method, route = CREATE[name]
    network.fake.enqueue(method, route, **flood(name, seconds))
    bridge.publish(antara_item(4))
    deliver_due(bridge.rt)
    assert bridge.states(name) == ["pending"]
    held = bridge.rt.repo.target_state(name).hold_until
    assert held is not None and held <= bridge.clock() + NETWORK_HOLD_MAX
    bridge.clock.advance(seconds=(NETWORK_HOLD_MAX + timedelta(minutes=1)).total_seconds())
    deliver_due(bridge.rt)
    assert bridge.states(name) == ["sent"] and sum(copies(network).values()) == 1
