"""burst_limit at its edge: exactly the limit posts, one more is held; a first read is never a burst;
`release` posts the held stories oldest first."""

from __future__ import annotations

from bridge.pipeline import deliver_due, poll
from tests.helpers import antara_feed, antara_item
from tests.test_networks import bridge, networks  # noqa: F401 (fixtures)


def start(bridge, **source):
    bridge.start(only="telegram", source={"burst_limit": 3, **source})
    poll(bridge.rt, bridge.rt.config.sources[0], force=True)  # the first read: remembers story 99


def drain(bridge, rounds: int = 10) -> None:
    for _ in range(rounds):
        deliver_due(bridge.rt)
        bridge.clock.advance(minutes=5)


def test_exactly_the_limit_posts_and_one_more_is_held(bridge, networks):
    """Three new stories with burst_limit 3 all post; four in the next poll are all held."""
    start(bridge)
    bridge.publish(*[antara_item(n) for n in (1, 2, 3)])
    drain(bridge)
    assert len(networks["telegram"].posts()) == 3
    bridge.publish(*[antara_item(n) for n in (1, 2, 3, 10, 11, 12, 13)])
    drain(bridge)
    assert len(networks["telegram"].posts()) == 3
    assert bridge.rt.repo.held_stories() == {"antara": 4}


def test_a_first_read_is_never_a_burst(bridge, networks):
    """A source's first read with more than burst_limit stories follows first_run (here: all), not the burst rule."""
    bridge.feeds.edit("/rss.xml", body=antara_feed([antara_item(n) for n in range(1, 8)]))
    bridge.start(only="telegram", source={"burst_limit": 3, "first_run": "all"})
    poll(bridge.rt, bridge.rt.config.sources[0], force=True)
    assert bridge.rt.repo.held_stories() == {}
    drain(bridge)
    assert len(networks["telegram"].posts()) == 7


def test_release_posts_the_burst_oldest_first(bridge, networks):
    """`release` posts the held stories from the oldest to the newest, each once."""
    start(bridge)
    stories = [antara_item(n) for n in (13, 10, 12, 11)]  # feed order is not age order
    bridge.publish(*stories)
    assert bridge.rt.repo.release_held("antara", bridge.clock()) == 4
    drain(bridge)
    posted = networks["telegram"].posts()
    assert posted == [next(t for t in posted if f"nomor {n} " in t) for n in (13, 12, 11, 10)]
    drain(bridge)
    assert len(networks["telegram"].posts()) == 4
