"""Issue 9, "nothing blocks the daemon": every network's calls end within the publish timeout in
total, however slowly the network trickles its answer back (tests/fakes/http_fake.py TRICKLE: one
byte every 0.2 s, so every read succeeds and only a total deadline ends the call).

Each publisher bounds each HTTP request it makes (bridge/publish/__init__.py); a trickled answer to
the create call is cut after about publish_timeout, and the delivery is in doubt, settled by the
network's own rule, never posted twice.
"""

from __future__ import annotations

import time

import pytest

from bridge.deadline import total_deadline
from bridge.errors import InDoubt, RetryLater
from bridge.model import DeliveryState, Image
from bridge.pipeline import deliver_due
from tests.fakes.http_fake import TRICKLE, TRICKLE_BODY
from tests.helpers import antara_item
from tests.test_faults import CREATE, copies, run_rounds, start_one
from tests.test_networks import bridge, networks  # noqa: F401 (fixtures)
from tests import test_publish_bluesky, test_publish_facebook, test_publish_mastodon, test_publish_telegram
from tests import test_publish_whatsapp, test_publish_x

HANG_GUARD = 3.0
"""Seconds: a call the deadline (1 s) did not cut takes 10 s or more against the trickling fake."""

UNITS = {
    "x": (test_publish_x, "x_api"),
    "telegram": (test_publish_telegram, "telegram_api"),
    "mastodon": (test_publish_mastodon, "mastodon_api"),
    "bluesky": (test_publish_bluesky, "bluesky_api"),
    "facebook": (test_publish_facebook, "facebook_api"),
    "whatsapp": (test_publish_whatsapp, "whatsapp_api"),
}
"""Per network: the unit tests' module (its make() and POST) and the fake's fixture."""


def timed(call):
    started = time.monotonic()
    try:
        call()
    except Exception as error:  # noqa: BLE001 (the test looks at what it was)
        return error, time.monotonic() - started
    return None, time.monotonic() - started


@pytest.fixture
def unit(request):
    """A publisher with a 1 s timeout on its network's fake, and that fake."""
    module, fixture = UNITS[request.param]
    fake = request.getfixturevalue(fixture)
    publisher = module.make(fake, timeout=1.0)
    yield publisher, fake, module
    publisher.close()


@pytest.mark.parametrize("fault", [TRICKLE, TRICKLE_BODY])
@pytest.mark.parametrize("unit", list(UNITS), indirect=True)
def test_publish_against_a_trickled_answer_ends_within_the_deadline(unit, fault):
    """A publish whose create call's answer trickles back ends after about the 1 s timeout, in doubt."""
    publisher, fake, module = unit
    name = publisher.kind
    fake.fail(*CREATE[name], fault)
    error, elapsed = timed(lambda: publisher.publish(module.POST, "k"))
    assert isinstance(error, InDoubt), f"{name}: {error!r}"
    assert "did not answer within 1s after receiving the post" in error.message
    assert 0.9 <= elapsed < HANG_GUARD, f"{name}: {elapsed:.2f}s"


@pytest.mark.parametrize("unit", list(UNITS), indirect=True)
def test_a_deadline_passed_before_connecting_is_never_sent(unit):
    """A deadline that has passed before the connection is made ends the call as never sent (RetryLater), and nothing arrives."""
    publisher, fake, module = unit
    with total_deadline(0):  # an outer block: the publisher's own deadline ends no later than it
        error, elapsed = timed(lambda: publisher.publish(module.POST, "k"))
    assert isinstance(error, RetryLater), f"{publisher.kind}: {error!r}"
    assert not fake.requests and elapsed < HANG_GUARD


@pytest.mark.parametrize("unit", ["x"], indirect=True)
def test_each_request_gets_its_own_deadline(unit):
    """A photo upload cut by its deadline leaves the post its own whole timeout: X posts it without the photo."""
    publisher, fake, module = unit
    fake.fail("POST", "/2/media/upload", TRICKLE)
    photo = Image(data=b"\x89PNG\r\n\x1a\n" + b"\x01" * 200, mime_type="image/png", url="http://127.0.0.1/f.png")
    post = module.Post(text=module.POST.text, link=module.POST.link, image=photo)
    fake.enqueue("POST", "/2/tweets", status=201, json={"data": {"id": "1", "text": post.text}}, delay=0.5)
    error, elapsed = timed(lambda: publisher.publish(post, "k"))
    assert error is None and publisher.image_problem, (error, publisher.image_problem)
    assert elapsed < HANG_GUARD


@pytest.mark.parametrize("unit", ["x", "mastodon", "bluesky", "facebook", "telegram", "whatsapp"], indirect=True)
def test_verify_against_a_trickled_answer_ends_within_the_deadline(unit):
    """The credentials check (verify) is bounded the same way: a trickled answer is cut after about 1 s."""
    publisher, fake, module = unit
    del module
    route = VERIFY[publisher.kind]
    fake.fail(*route, TRICKLE)
    error, elapsed = timed(publisher.verify)
    assert isinstance(error, RetryLater), f"{publisher.kind}: {error!r}"
    assert elapsed < HANG_GUARD


VERIFY = {
    "x": ("GET", "/2/users/me"),
    "mastodon": ("GET", "/api/v1/accounts/verify_credentials"),
    "bluesky": ("POST", "com.atproto.server.createSession"),
    "facebook": ("GET", f"/{test_publish_facebook.PAGE_ID}"),
    "telegram": ("POST", "getMe"),
    "whatsapp": ("GET", f"/{test_publish_whatsapp.PHONE_NUMBER_ID}"),
}
"""The first call each network's verify() makes (as each fake routes it)."""


@pytest.mark.parametrize("name", list(CREATE))
def test_trickled_create_answer_in_the_pipeline_is_cut_and_never_doubled(bridge, networks, name):
    """With publish_timeout = 1s, a trickled answer to the create call ends the delivery round within the
    hang guard, in doubt or sent, and after several rounds the post exists at most once."""
    start_one(bridge, name)
    network = networks[name]
    network.fake.fail(*CREATE[name], TRICKLE)
    bridge.publish(antara_item(4))
    error, elapsed = timed(lambda: deliver_due(bridge.rt))
    assert error is None and elapsed < HANG_GUARD, (error, f"{elapsed:.2f}s")
    # The fault hit the first request: the delivery with the lowest id (WhatsApp has one per recipient).
    first = min((d for d in bridge.rt.repo.delivery_rows(list(DeliveryState))
                 if d["target"] == name and not (d["last_error"] or "").startswith("first run")),
                key=lambda d: d["id"])
    assert first["state"] in (DeliveryState.IN_DOUBT.value, DeliveryState.SENT.value), first["state"]
    run_rounds(bridge)
    made = copies(network)
    assert made and max(made.values()) == 1, f"{name}: {made}"
