"""Every story once, when sources misbehave: bursts are held, an empty first read keeps the first-run
policy, stories sharing a link are still distinct, and a reload reaches a delivery round at once."""

from __future__ import annotations

from dataclasses import replace

from bridge.model import DeliveryState, FrozenPost
from bridge.pipeline import deliver_due, poll
from bridge.service import build_runtime
from bridge.status import collect
from tests.helpers import antara_item
from tests.test_pipeline import World, world  # noqa: F401 (fixture)


def pending(world: World) -> list[dict]:
    return world.rt.repo.delivery_rows([DeliveryState.PENDING], limit=1000)


class TestBurst:
    def test_burst_is_held_and_release_posts_it_in_order(self, world):
        """30 new stories at once from a known source post nothing until `release`, then oldest first."""
        world.start(target={"max_per_day": 100})
        world.cycle()
        burst = [antara_item(n) for n in range(10, 40)]
        world.publish(burst + world.stories)
        outcome = world.cycle()
        assert outcome.extra["held"] == 30 and world.tweets() == []
        report = collect(world.rt.repo, world.rt.config, now=world.clock())
        assert report["held"] == [{"source": "antara", "stories": 30,
                                   "todo": "`bridge release antara` posts them, `bridge catchup antara` drops them"}]
        assert report["sources"][0]["state"] == "held"
        assert world.rt.repo.release_held("antara", world.clock()) == 30
        deliver_due(world.rt)
        oldest_first = sorted(burst, key=lambda story: story["published"])
        assert [t.split(" https://")[0] for t in world.tweets()] == [s["title"] for s in oldest_first]

    def test_catchup_drops_a_held_burst(self, world):
        """`catchup` drops a held burst: nothing of it is ever posted."""
        world.start()
        world.cycle()
        world.publish([antara_item(n) for n in range(10, 40)] + world.stories)
        world.cycle()
        poll(world.rt, world.rt.config.sources[0], catchup=True, force=True)
        deliver_due(world.rt)
        assert world.tweets() == [] and world.rt.repo.held_stories() == {}

    def test_at_the_limit_posts_as_usual(self, world):
        """Exactly burst_limit new stories post as usual."""
        world.start(source={"burst_limit": 3}, target={"max_per_day": 100})
        world.cycle()
        world.publish([antara_item(n) for n in (10, 11, 12)] + world.stories)
        world.cycle()
        assert len(world.tweets()) == 3

    def test_first_run_is_no_burst(self, world):
        """A first run is governed by first_run, not burst_limit."""
        world.publish([antara_item(n) for n in range(10, 40)])
        world.start(bridge={"first_run": "all"}, target={"max_per_day": 100})
        world.cycle()
        assert len(world.tweets()) == 30


class TestFirstRead:
    def test_empty_first_read_keeps_the_first_run_policy(self, world):
        """A first read with no stories does not use up the first-run policy: 20 stories read next post nothing."""
        world.publish([])
        world.start(target={"max_per_day": 100})
        outcome = world.cycle()
        assert outcome.first_run and outcome.items_seen == 0
        world.publish([antara_item(n) for n in range(10, 30)])
        outcome = world.cycle()
        assert outcome.first_run and world.tweets() == [] and pending(world) == []
        world.publish([antara_item(5)] + world.stories)
        world.cycle()
        assert len(world.tweets()) == 1


class TestSharedLinks:
    def test_distinct_stories_sharing_one_link_all_post(self, world):
        """130 episodes with distinct guids that all link to one page are 130 stories, all posted."""
        world.start(source={"burst_limit": 500}, target={"max_per_day": 500})
        world.cycle()
        home = "https://podcast.example.id/"
        episodes = [dict(antara_item(n, title=f"Episode {n}: Menpora"), link=home, guid=f"ep-{n}")
                    for n in range(100, 230)]
        world.publish(episodes)
        world.cycle()
        assert len(world.tweets()) == 130

    def test_links_differing_by_fragment_are_two_stories(self, world):
        """Two stories without guids whose links differ only by #fragment are both posted."""
        world.start()
        world.cycle()
        page = "https://www.kemenpora.go.id/agenda"
        items = [dict(antara_item(n, title=f"Agenda {n}"), link=f"{page}#acara-{n}", guid=f"{page}#acara-{n}")
                 for n in (7, 8)]
        world.publish(items + world.stories)
        world.cycle()
        assert len(world.tweets()) == 2


class TestReload:
    def test_reload_to_dry_run_stops_a_round_at_once(self, world):
        """A reload to dry_run = true in the middle of a 20-post round posts nothing more."""
        world.start(target={"max_per_day": 100})
        world.cycle()
        world.clock.advance(minutes=1)
        world.publish([antara_item(n) for n in range(10, 30)] + world.stories)
        current = {"rt": world.rt}
        config = world.rt.config
        rehearsal = build_runtime(replace(config, bridge=replace(config.bridge, dry_run=True)), world.rt.repo,
                                  clock=world.clock)
        poll(world.rt, world.rt.config.sources[0], force=True)
        world.rt.repo.release_held("antara", world.clock())  # 20 new stories are a burst: let them go

        def on_tweet(request):  # the operator reloads while the fifth post is on its way
            if request.route == "/2/tweets" and len(world.x.tweets) == 5:
                current["rt"] = rehearsal
        world.x.on_request = on_tweet
        deliver_due(lambda: current["rt"])
        assert len(world.x.tweets) == 5
        skipped = world.rt.repo.delivery_rows([DeliveryState.SKIPPED], limit=100)
        assert sum(1 for d in skipped if d["last_error"] == "dry run: not posted") == 15


class TestMetrics:
    def test_held_burst_and_in_doubt_are_counted(self, world):
        """/metrics counts a source's held stories and a target's posts in doubt."""
        from prometheus_client import generate_latest

        from bridge.metrics import Metrics

        world.start()
        world.cycle()
        world.publish([antara_item(n) for n in range(10, 40)] + world.stories)
        world.cycle()
        world.rt.repo.release_held("antara", world.clock())
        [first] = world.rt.repo.due_deliveries("x", world.clock(), 1)
        world.rt.repo.claim(first, world.clock(), FrozenPost("t"))
        world.rt.repo.mark_in_doubt(first.id, "timed out", None, world.clock())
        world.publish([antara_item(n) for n in range(50, 62)] + world.stories)
        world.cycle()
        text = generate_latest(Metrics(lambda: world.rt, lambda: 1.0).registry).decode()
        assert 'bridge_source_held_stories{source="antara"} 12.0' in text
        assert 'bridge_deliveries_in_doubt{target="x"} 1.0' in text
