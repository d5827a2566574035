"""The photo step of each network under every fault, then the post: a post exists at most once,
and the delivery ends sent or in doubt (never a second post, never a silent failure).

Where the photo is its own request (X's media upload, Mastodon's /api/v2/media, Bluesky's
uploadBlob), a lost answer there creates nothing anyone sees: the post goes out once, with or without
the photo. Where the photo IS the post (Telegram's sendPhoto, Facebook's /photos with photo_posts),
a lost answer is a post in doubt like any other create call."""

from __future__ import annotations

import pytest

from bridge.model import DeliveryState
from bridge.pipeline import deliver_due
from tests.fakes.facebook import PAGE_ID
from tests.fakes.http_fake import AFTER_ACTING
from tests.helpers import antara_item
from tests.test_faults import copies, deliver_while_refused, run_rounds, start_one
from tests.test_networks import bridge, networks  # noqa: F401 (fixtures)

UPLOAD = {
    "x": ("POST", "/2/media/upload"),
    "mastodon": ("POST", "/api/v2/media"),
    "bluesky": ("POST", "com.atproto.repo.uploadBlob"),
}
"""The photo's own request, per network: nobody sees what it creates."""

PHOTO_POST = {
    "telegram": ("POST", "sendPhoto", {}),
    "facebook": ("POST", f"/{PAGE_ID}/photos", {"photo_posts": True}),
}
"""The call that creates a photo post, per network, and the target settings that make it one."""

SETTLED_AS = {"telegram": DeliveryState.IN_DOUBT, "facebook": DeliveryState.SENT}


def only_row(bridge, name: str) -> dict:
    rows = [d for d in bridge.rt.repo.delivery_rows(list(DeliveryState))
            if d["target"] == name and not (d["last_error"] or "").startswith("first run")]
    assert len(rows) == 1, rows
    return rows[0]


@pytest.mark.parametrize("fault", AFTER_ACTING)
@pytest.mark.parametrize("name", list(UPLOAD))
def test_lost_upload_answer_then_one_post(bridge, networks, name, fault):
    """The photo upload's answer is lost: the story still goes out exactly once and ends sent."""
    start_one(bridge, name)
    network = networks[name]
    network.fake.fail(*UPLOAD[name], fault)
    bridge.publish(antara_item(4, image=bridge.photo()))
    deliver_due(bridge.rt)
    run_rounds(bridge)
    made = copies(network)
    assert sum(made.values()) == 1, f"{name} after upload {fault}: {made}"
    row = only_row(bridge, name)
    assert row["state"] == "sent", f"{name} after upload {fault}: {row['state']} ({row['last_error']})"


@pytest.mark.parametrize("name", list(UPLOAD))
def test_refused_upload_then_one_post(bridge, networks, name):
    """The network refuses connections at the photo upload: the story goes out exactly once when it is back."""
    start_one(bridge, name)
    network = networks[name]
    bridge.publish(antara_item(4, image=bridge.photo()))
    deliver_while_refused(bridge, network)
    run_rounds(bridge)
    assert sum(copies(network).values()) == 1
    assert only_row(bridge, name)["state"] == "sent"


@pytest.mark.parametrize("fault", AFTER_ACTING)
@pytest.mark.parametrize("name", list(PHOTO_POST))
def test_lost_photo_post_answer_never_posts_twice(bridge, networks, name, fault):
    """A photo post whose answer is lost exists once: found on the account (sent) or in doubt."""
    start_one(bridge, name, PHOTO_POST[name][2])
    network = networks[name]
    network.fake.fail(*PHOTO_POST[name][:2], fault)
    bridge.publish(antara_item(4, image=bridge.photo()))
    deliver_due(bridge.rt)
    run_rounds(bridge)
    made = copies(network)
    assert sum(made.values()) == 1, f"{name} after {fault}: {made}"
    row = only_row(bridge, name)
    assert row["state"] == SETTLED_AS[name].value, f"{name} after {fault}: {row['state']} ({row['last_error']})"


@pytest.mark.parametrize("name", list(PHOTO_POST))
def test_refused_photo_post_posts_once_when_healthy(bridge, networks, name):
    """Nothing reached the network: the photo post goes out exactly once when it answers again."""
    start_one(bridge, name, PHOTO_POST[name][2])
    network = networks[name]
    bridge.publish(antara_item(4, image=bridge.photo()))
    deliver_while_refused(bridge, network)
    run_rounds(bridge)
    assert sum(copies(network).values()) == 1
    assert only_row(bridge, name)["state"] == "sent"


@pytest.mark.parametrize("how", ["body", "headers"])
@pytest.mark.parametrize("name", ["x", "telegram", "mastodon", "bluesky"])
def test_a_trickling_photo_is_cut_at_the_fetch_deadline_and_the_story_still_goes(bridge, networks, feed_server,
                                                                                   name, how):
    """A photo whose server trickles its headers or body a byte at a time is cut at fetch_timeout in total:
    the story goes out once without it, and the round does not wait for the trickle."""
    import time

    bridge.start(only=name, settings={"publish_timeout": "1s", "fetch_timeout": "1s", "connect_timeout": "1s"})
    from bridge.pipeline import poll

    poll(bridge.rt, bridge.rt.config.sources[0], force=True)
    if how == "body":
        feed_server.add_slow("/foto/slow.jpg", chunk=b"\xff", interval=0.05)
    else:
        feed_server.add_trickling_headers("/foto/slow.jpg", interval=0.2, chunks=100)
    bridge.publish(antara_item(4, image=feed_server.url("/foto/slow.jpg")))
    started = time.monotonic()
    deliver_due(bridge.rt)
    assert time.monotonic() - started < 5
    assert sum(copies(networks[name]).values()) == 1
    assert only_row(bridge, name)["state"] == "sent"
