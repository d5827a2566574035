"""Every network under every fault the wild serves: a post exists at most once, and none is lost
without the operator being shown it.

The fakes act on the request (the post is created) and then lose the answer (tests/fakes/http_fake.py:
HANG, LATE, DROP, 502, 504, GARBLED, NO_ID), or refuse the connection so nothing arrives (REFUSE).
Several delivery rounds follow on an injected clock. The bridge must end each case in `sent` (the
network's own duplicate answer, Mastodon's Idempotency-Key, or finding the post on the account) or
in `in_doubt` (shown in `bridge status` with the command that settles it), never in a second post
and never in a silent failure.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest

from bridge.model import DeliveryState
from bridge.pipeline import deliver_due
from bridge.status import collect
from tests.fakes.facebook import PAGE_ID
from tests.fakes.http_fake import AFTER_ACTING
from tests.fakes.whatsapp import PHONE_NUMBER_ID
from tests.helpers import antara_item
from tests.test_networks import bridge, networks  # noqa: F401 (fixtures)

CREATE = {
    "x": ("POST", "/2/tweets"),
    "telegram": ("POST", "sendMessage"),
    "mastodon": ("POST", "/api/v1/statuses"),
    "bluesky": ("POST", "com.atproto.repo.createRecord"),
    "facebook": ("POST", f"/{PAGE_ID}/feed"),
    "whatsapp": ("POST", f"/{PHONE_NUMBER_ID}/messages"),
}
"""The call that creates the post, per network (as each fake routes it)."""

SETTLED_AS = {
    "x": DeliveryState.SENT,  # the identical re-send gets X's duplicate answer
    "mastodon": DeliveryState.SENT,  # the re-send with the same Idempotency-Key returns the first status
    "bluesky": DeliveryState.SENT,  # found among the account's records
    "facebook": DeliveryState.SENT,  # found among the Page's posts
    "telegram": DeliveryState.IN_DOUBT,  # a bot cannot read back its channel: the operator decides
    "whatsapp": DeliveryState.IN_DOUBT,  # no way to read back a sent message: the operator decides
}
ROUNDS = 10
"""Delivery rounds after the fault, half an hour apart: past Mastodon's key window and every backoff."""


def run_rounds(bridge) -> None:
    for _ in range(ROUNDS):
        bridge.clock.advance(minutes=30)
        deliver_due(bridge.rt)


def copies(network) -> Counter:
    """How many times each distinct post arrived (per recipient for WhatsApp)."""
    if network.name == "whatsapp":
        return Counter(m["to"] for m in network.fake.messages)
    return Counter(network.posts())


def start_one(bridge, name: str, target: dict | None = None):
    """The bridge posting to network `name` only (with `target`'s settings added), its first poll made."""
    bridge.start(only=name, settings={"publish_timeout": "1s", "max_attempts": 4}, targets={name: target or {}})
    from bridge.pipeline import poll

    poll(bridge.rt, bridge.rt.config.sources[0], force=True)  # the first run remembers the old story


def deliver_while_refused(bridge, network) -> None:
    """One delivery round while the network refuses every connection (nothing reaches it)."""
    network.fake.refuse_connections()
    try:
        deliver_due(bridge.rt)
    finally:
        network.fake.accept_connections()


@pytest.mark.parametrize("fault", AFTER_ACTING)
@pytest.mark.parametrize("name", list(CREATE))
def test_lost_answer_never_posts_twice(bridge, networks, name, fault):
    """The network created the post but its answer was lost: it exists once, and the delivery ends sent or in doubt."""
    start_one(bridge, name)
    network = networks[name]
    network.fake.fail(*CREATE[name], fault)
    bridge.publish(antara_item(4))
    deliver_due(bridge.rt)
    run_rounds(bridge)
    made = copies(network)
    assert made and max(made.values()) == 1, f"{name} after {fault}: {made}"
    # The fault hit the first request: the delivery with the lowest id (WhatsApp has one per recipient).
    first = min((d for d in bridge.rt.repo.delivery_rows(list(DeliveryState))
                 if d["target"] == name and not (d["last_error"] or "").startswith("first run")),
                key=lambda d: d["id"])
    assert first["state"] == SETTLED_AS[name].value, f"{name} after {fault}: {first['state']} ({first['last_error']})"
    if SETTLED_AS[name] is DeliveryState.IN_DOUBT:
        shown = collect(bridge.rt.repo, bridge.rt.config, now=bridge.clock())["in_doubt"]
        assert [d["id"] for d in shown] == [first["id"]] and f"bridge resolve {first['id']} --sent" in shown[0]["todo"]


@pytest.mark.parametrize("name", list(CREATE))
def test_refused_connection_posts_exactly_once_when_healthy(bridge, networks, name):
    """Nothing reached the network: the post is sent again once it answers, and exists exactly once."""
    start_one(bridge, name)
    network = networks[name]
    bridge.publish(antara_item(4))
    deliver_while_refused(bridge, network)
    run_rounds(bridge)
    made = copies(network)
    expected = len(network.table.get("recipients", [None]))
    assert sum(made.values()) == expected and max(made.values()) == 1, made
    assert set(bridge.states(name)) == {"sent"}


def test_mastodon_after_the_key_window_finds_the_status(bridge, networks):
    """A Mastodon status in doubt past the key's hour is found on the account, not sent a second time."""
    start_one(bridge, "mastodon")
    network = networks["mastodon"]
    network.fake.fail(*CREATE["mastodon"], "drop")
    bridge.publish(antara_item(4))
    deliver_due(bridge.rt)
    network.fake.refuse_connections()  # the re-send within the key's hour does not get through
    try:
        bridge.clock.advance(minutes=30)
        deliver_due(bridge.rt)
    finally:
        network.fake.accept_connections()
    bridge.clock.advance(minutes=30)  # an hour after the first attempt: the instance forgot the key
    assert not bridge.rt.publishers["mastodon"].duplicate_safe_for > timedelta(minutes=60)
    deliver_due(bridge.rt)
    run_rounds(bridge)
    assert list(copies(network).values()) == [1]
    [row] = [d for d in bridge.rt.repo.delivery_rows(list(DeliveryState))
             if d["target"] == "mastodon" and not (d["last_error"] or "").startswith("first run")]
    assert row["state"] == "sent"
    assert network.fake.routed("/api/v1/accounts/109876543210/statuses")


VERIFY = {
    "bluesky": ("GET", "com.atproto.repo.listRecords"),
    "facebook": ("GET", f"/{PAGE_ID}/posts"),
    "mastodon": ("GET", "/api/v1/accounts/109876543210/statuses"),
}
"""The call that reads the account's recent posts back, per network that has one."""


@pytest.mark.parametrize("fault", AFTER_ACTING)
@pytest.mark.parametrize("name", list(VERIFY))
def test_a_garbled_look_at_the_account_never_posts_twice(bridge, networks, name, fault):
    """The post's answer is lost, and so is the answer of the first look for it on the account (a 502,
    a 200 without the list, a cut body...): that is no evidence it is absent, so it is not sent again."""
    start_one(bridge, name)
    network = networks[name]
    network.fake.fail(*CREATE[name], "drop")
    network.fake.fail(*VERIFY[name], fault, times=3)
    if name == "mastodon":  # past the key's hour, so the account is read
        network.fake.refuse_connections()
    bridge.publish(antara_item(4))
    deliver_due(bridge.rt)
    if name == "mastodon":
        bridge.clock.advance(minutes=61)
        network.fake.accept_connections()
    run_rounds(bridge)
    made = copies(network)
    assert list(made.values()) == [1], f"{name} after a look that got {fault}: {made}"
