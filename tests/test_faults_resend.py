"""A re-send after an unclear answer or a crash is the frozen post, byte for byte, whatever the
settings say by then; the network's "already posted" records what the first attempt cost."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from bridge.model import DeliveryState
from bridge.pipeline import deliver_due
from bridge.pipeline.posts import freeze_post, idempotency_key, post_of
from tests.helpers import antara_item
from tests.test_faults import CREATE, copies, run_rounds
from tests.test_networks import bridge, networks  # noqa: F401 (fixtures)

SETTINGS = {"publish_timeout": "1s", "max_attempts": 4}


def start(bridge, name: str, template: str, hashtags: list[str] | None = None):
    bridge.start(only=name, settings=SETTINGS, source={"template": template, "hashtags": hashtags or []})


@pytest.mark.parametrize("fault", ["drop", "502", "garbled"])
def test_x_resend_after_a_settings_change_is_the_frozen_text_and_costs_once(bridge, networks, fault):
    """X's answer is lost, the template and hashtags change and the bridge restarts: the re-send is the
    first text (so X's duplicate check settles it), one tweet exists, and the day's spend is one post."""
    start(bridge, "x", "{title} {url}")
    from bridge.pipeline import poll

    poll(bridge.rt, bridge.rt.config.sources[0], force=True)
    x = networks["x"]
    x.fake.fail(*CREATE["x"], fault)
    bridge.publish(antara_item(4))
    deliver_due(bridge.rt)
    [first] = x.posts()
    start(bridge, "x", "BARU: {title} {url}", ["#Berubah"])  # a reload, then a restart
    run_rounds(bridge)
    sent = [r for r in x.fake.requests if r.route == "/2/tweets"]
    assert len(sent) >= 2 and {r.body["text"] for r in sent} == {first}
    assert list(copies(x).values()) == [1] and bridge.states("x") == ["sent"]
    day = datetime(2026, 1, 1, tzinfo=timezone.utc)
    price = bridge.rt.config.targets["x"].price_per_link_post
    assert price > 0 and bridge.rt.repo.spent_since("x", day) == pytest.approx(price)


@pytest.mark.parametrize("name", list(CREATE))
def test_a_crash_mid_post_follows_the_same_rules(bridge, networks, name):
    """The bridge dies between "about to call" and the answer (the network has the post); at the restart,
    with a new template, the post exists once and ends sent or in doubt, never failed, never recomposed."""
    start(bridge, name, "{title} {url}")
    from bridge.pipeline import poll

    poll(bridge.rt, bridge.rt.config.sources[0], force=True)
    network = networks[name]
    bridge.publish(antara_item(4))
    # The crash, step by step as _attempt does it: claimed (`sending`, post frozen), sent, and the
    # process gone before it records the answer.
    due = bridge.rt.repo.due_deliveries(name, bridge.clock(), limit=10)[0]
    frozen = freeze_post(bridge.rt, bridge.rt.publishers[name], due)
    assert bridge.rt.repo.claim(due, bridge.clock(), frozen)
    bridge.rt.publishers[name].publish(post_of(due, frozen), idempotency_key=idempotency_key(bridge.rt, due))
    start(bridge, name, "LAIN: {title} {url}", ["#Berubah"])  # the restart: the row is still `sending`
    run_rounds(bridge)
    made = copies(network)
    assert made and max(made.values()) == 1, made
    [row] = [d for d in bridge.rt.repo.delivery_rows(list(DeliveryState)) if d["id"] == due.id]
    assert row["state"] in ("sent", "in_doubt"), row
    assert not any(text and text.startswith("LAIN") for text in network.posts())
