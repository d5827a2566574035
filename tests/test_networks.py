"""Every network end to end: one story from the local feed server, routed to targets on each
network's local fake, through poll -> store -> compose -> publish. Time is the injected clock."""

from __future__ import annotations


import pytest

from bridge.config import parse_config
from bridge.model import DeliveryState
from bridge.pipeline import deliver_due, freeze_post, idempotency_key, poll
from bridge.service import build_runtime, close, open_repository, prepare
from bridge.store.lock import acquire_run_lock
from tests.fakes.bluesky import APP_PASSWORD as BLUESKY_PASSWORD, HANDLE as BLUESKY_HANDLE
from tests.fakes.facebook import PAGE_ID, PAGE_TOKEN, TOKEN_EXPIRED
from tests.fakes.mastodon import ACCESS_TOKEN as MASTODON_TOKEN
from tests.fakes.telegram import BOT_TOKEN
from tests.fakes.whatsapp import ACCESS_TOKEN as WHATSAPP_TOKEN, PHONE_NUMBER_ID, RECIPIENTS
from tests.fakes.x_api import CREDENTIALS as X_CREDENTIALS
from tests.helpers import antara_feed, antara_item

LINK_OF_4 = antara_item(4)["link"]
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x01" * 200


class Network:
    """How the tests reach one network: its fake, its settings, its secrets, and what arrived."""

    def __init__(self, name: str, fake, table: dict, secrets: dict[str, str], posts, limit: int, measure):
        self.name, self.fake, self.table, self.secrets = name, fake, table, secrets
        self.posts, self.limit, self.measure = posts, limit, measure


def x_network(fake) -> Network:
    from bridge.publish.x import x_weighted_length

    return Network("x", fake, {"kind": "x", "api_base": fake.base_url},
                   {f"BRIDGE_X_{k.upper()}": v for k, v in X_CREDENTIALS.items()},
                   lambda: [t["text"] for t in fake.tweets], 280, x_weighted_length)


def telegram_network(fake) -> Network:
    from bridge.publish.telegram import utf16_length

    return Network("telegram", fake, {"kind": "telegram", "chat_id": "@kemenpora", "api_base": fake.base_url},
                   {"BRIDGE_TELEGRAM_BOT_TOKEN": BOT_TOKEN},
                   lambda: [m.get("text") or m.get("caption") for m in fake.messages], 4096, utf16_length)


def mastodon_network(fake) -> Network:
    from bridge.publish.mastodon import mastodon_length

    return Network("mastodon", fake, {"kind": "mastodon", "instance": fake.base_url},
                   {"BRIDGE_MASTODON_ACCESS_TOKEN": MASTODON_TOKEN},
                   lambda: [s["text"] for s in fake.statuses], 500, mastodon_length)


def bluesky_network(fake) -> Network:
    from bridge.publish.bluesky import bluesky_length

    return Network("bluesky", fake, {"kind": "bluesky", "service": fake.base_url, "handle": BLUESKY_HANDLE},
                   {"BRIDGE_BLUESKY_APP_PASSWORD": BLUESKY_PASSWORD},
                   lambda: [p["record"]["text"] for p in fake.posts], 300, bluesky_length)


def facebook_network(fake) -> Network:
    from bridge.publish.facebook import LENGTH_RULE

    return Network("facebook", fake, {"kind": "facebook", "page_id": PAGE_ID, "api_base": fake.base_url},
                   {"BRIDGE_FACEBOOK_PAGE_TOKEN": PAGE_TOKEN},
                   lambda: [p["message"] for p in fake.posts], LENGTH_RULE.max_length, LENGTH_RULE.measure)


def whatsapp_network(fake) -> Network:

    table = {"kind": "whatsapp", "phone_number_id": PHONE_NUMBER_ID, "message_template": "berita_terbaru",
             "language": "id", "recipients": list(RECIPIENTS), "api_base": fake.base_url}
    # What a recipient reads: the template's {{1}} text and {{2}} link (the fake keeps both).
    return Network("whatsapp", fake, table, {"BRIDGE_WHATSAPP_ACCESS_TOKEN": WHATSAPP_TOKEN},
                   lambda: [" ".join(m["parameters"]) for m in fake.messages][:1], 700 + 1 + len(LINK_OF_4),
                   len)


@pytest.fixture
def networks(x_api, telegram_api, mastodon_api, bluesky_api, facebook_api, whatsapp_api) -> dict[str, Network]:
    found = [x_network(x_api), telegram_network(telegram_api), mastodon_network(mastodon_api),
             bluesky_network(bluesky_api), facebook_network(facebook_api), whatsapp_network(whatsapp_api)]
    return {network.name: network for network in found}


class Bridge:
    """The bridge with one source routed to every network; start() again is a process restart."""

    def __init__(self, feeds, networks, tmp_path, clock):
        self.feeds, self.networks, self.tmp_path, self.clock = feeds, networks, tmp_path, clock
        self.rt = None
        feeds.add("/rss.xml", antara_feed([antara_item(99)]))  # a first run remembers it

    def start(self, *, source: dict | None = None, targets: dict | None = None, settings: dict | None = None,
              only: str | None = None):
        """(Re)start on the same database; `only` routes the source to that one network."""
        if self.rt:
            close(self.rt)
        tables = {name: {**n.table, **(targets or {}).get(name, {})} for name, n in self.networks.items()
                  if only in (None, name)}
        raw = {"bridge": {"database": "sqlite:///bridge.db", "dry_run": False, **(settings or {})},
               "sources": [{"name": "antara", "url": self.feeds.url("/rss.xml"), "targets": list(tables),
                            **(source or {})}],
               "targets": tables}
        environ = {"STATE_DIRECTORY": str(self.tmp_path)}
        for network in self.networks.values():
            environ.update(network.secrets)
        config = parse_config(raw, environ=environ)
        self.rt = build_runtime(config, open_repository(config), clock=self.clock)
        prepare(self.rt, acquire_run_lock(self.rt.repo.engine))
        return self.rt

    def publish(self, *stories) -> None:
        self.feeds.edit("/rss.xml", body=antara_feed(list(stories)))
        poll(self.rt, self.rt.config.sources[0], force=True)

    def photo(self) -> str:
        self.feeds.add("/foto/1.png", PNG, content_type="image/png")
        return self.feeds.url("/foto/1.png")

    def states(self, target: str) -> list[str]:
        """The states of the target's deliveries, less the old story the first run remembered."""
        return [row["state"] for row in self.rt.repo.delivery_rows(list(DeliveryState))
                if row["target"] == target and not (row["last_error"] or "").startswith("first run")]


@pytest.fixture
def bridge(feed_server, networks, tmp_path, clock):
    bridge = Bridge(feed_server, networks, tmp_path, clock)
    yield bridge
    if bridge.rt:
        close(bridge.rt)


class TestEveryNetwork:
    def test_one_story_arrives_once_everywhere(self, bridge, networks):
        """A new story reaches each network exactly once, within its limit, with the link intact."""
        bridge.start()
        poll(bridge.rt, bridge.rt.config.sources[0], force=True)  # first run: remember only
        bridge.publish(antara_item(4, title="Menpora " + "sangat " * 900 + "bangga"))
        deliver_due(bridge.rt)
        deliver_due(bridge.rt)
        bridge.start()  # a restart posts nothing again
        deliver_due(bridge.rt)
        for network in networks.values():
            [text] = network.posts()
            assert LINK_OF_4 in text, network.name
            assert network.measure(text) <= network.limit, network.name

    @pytest.mark.parametrize("failing", ["x", "telegram", "mastodon", "bluesky", "facebook", "whatsapp"])
    def test_auth_failure_pauses_only_that_target(self, bridge, networks, failing):
        """One network refusing its credentials pauses that target alone; the others post."""
        bridge.start()
        poll(bridge.rt, bridge.rt.config.sources[0], force=True)
        broken = networks[failing]
        method, route, answer = AUTH_FAILURES[failing]
        broken.fake.enqueue(method, route, **answer)
        bridge.publish(antara_item(4))
        deliver_due(bridge.rt)
        assert bridge.rt.repo.target_state(failing).paused_reason
        for network in networks.values():
            expected = 0 if network is broken else 1
            assert len(network.posts()) == expected, network.name
        assert set(bridge.states(failing)) == {"pending"}


AUTH_FAILURES = {
    "x": ("POST", "/2/tweets", {"status": 401, "json": {"title": "Unauthorized", "status": 401,
                                                         "detail": "Unauthorized", "type": "about:blank"}}),
    "telegram": ("POST", "sendMessage", {"status": 401, "json": {"ok": False, "error_code": 401,
                                                                  "description": "Unauthorized"}}),
    "mastodon": ("POST", "/api/v1/statuses", {"status": 401, "json": {"error": "The access token is invalid"}}),
    "bluesky": ("POST", "com.atproto.server.createSession", {"status": 401, "json": {
        "error": "AuthenticationRequired", "message": "Invalid identifier or password"}}),
    "facebook": ("POST", f"/{PAGE_ID}/feed", {"status": 400, "json": TOKEN_EXPIRED}),
    "whatsapp": ("POST", f"/{PHONE_NUMBER_ID}/messages", {"status": 401, "json": TOKEN_EXPIRED}),
}


class TestTelegramInPipeline:
    def test_photo_goes_with_a_caption_composed_for_it(self, bridge, networks):
        """With a photo, the Telegram text is composed for a 1024-unit caption and sent with sendPhoto."""
        bridge.start(source={"template": "{title} {summary} {url}"})
        poll(bridge.rt, bridge.rt.config.sources[0], force=True)
        item = antara_item(4, image=bridge.photo())
        item["description"] = "Kata " * 600
        bridge.publish(item)
        deliver_due(bridge.rt)
        [message] = networks["telegram"].fake.messages
        assert message["photo"] == PNG and LINK_OF_4 in message["caption"] and len(message["caption"]) <= 1024

    def test_crash_then_retry_is_left_to_the_operator(self, bridge, networks):
        """A Telegram post in doubt after a crash waits for the operator, not resent; `bridge retry` sends it once."""
        bridge.start()
        poll(bridge.rt, bridge.rt.config.sources[0], force=True)
        bridge.publish(antara_item(4))
        [delivery] = bridge.rt.repo.due_deliveries("telegram", bridge.clock(), 10)
        claim(bridge.rt, delivery)  # committed `sending`, then the process died
        bridge.start()
        deliver_due(bridge.rt)
        bridge.clock.advance(hours=2)
        deliver_due(bridge.rt)
        assert networks["telegram"].posts() == [] and bridge.states("telegram") == ["in_doubt"]
        bridge.rt.repo.requeue(delivery.id, bridge.clock())
        bridge.clock.advance(minutes=1)
        deliver_due(bridge.rt)
        assert len(networks["telegram"].posts()) == 1 and bridge.states("telegram") == ["sent"]


def claim(rt, delivery):
    """Commit a delivery as `sending` with its post frozen, as the pipeline does before calling the network."""
    frozen = freeze_post(rt, rt.publishers[delivery.target], delivery)
    assert rt.repo.claim(delivery, rt.clock(), frozen)
    return frozen


class TestMastodonInPipeline:
    def test_crash_then_retry_uses_the_same_key(self, bridge, networks):
        """A Mastodon post in doubt after a crash is resent with the same Idempotency-Key and exists once."""
        bridge.start()
        poll(bridge.rt, bridge.rt.config.sources[0], force=True)
        bridge.publish(antara_item(4))
        [delivery] = bridge.rt.repo.due_deliveries("mastodon", bridge.clock(), 10)
        frozen = claim(bridge.rt, delivery)
        # Mastodon created the status, then the process died before recording `sent`:
        from bridge.model import Post

        key = idempotency_key(bridge.rt, delivery)
        bridge.rt.publishers["mastodon"].publish(Post(text=frozen.text), key)
        bridge.start()
        deliver_due(bridge.rt)
        fake = networks["mastodon"].fake
        keys = [r.headers["Idempotency-Key"] for r in fake.routed("/api/v1/statuses")]
        assert keys == [key] * 2 and key.startswith("bridge-") and len(key) > len(f"bridge-{delivery.id}") + 8
        assert len(fake.statuses) == 1 and bridge.states("mastodon") == ["sent"]


class TestBlueskyInPipeline:
    def test_card_carries_the_photo(self, bridge, networks):
        """The story's photo becomes the link card's thumbnail, downloaded within 1,000,000 bytes."""
        bridge.start()
        poll(bridge.rt, bridge.rt.config.sources[0], force=True)
        bridge.publish(antara_item(4, image=bridge.photo()))
        deliver_due(bridge.rt)
        fake = networks["bluesky"].fake
        external = fake.posts[0]["record"]["embed"]["external"]
        assert external["uri"] == LINK_OF_4 and fake.blobs[external["thumb"]["ref"]["$link"]] == PNG

    def test_crash_then_retry_is_left_to_the_operator(self, bridge, networks):
        """A Bluesky post in doubt after a crash is not resent blindly: it stays in doubt."""
        bridge.start()
        poll(bridge.rt, bridge.rt.config.sources[0], force=True)
        bridge.publish(antara_item(4))
        [delivery] = bridge.rt.repo.due_deliveries("bluesky", bridge.clock(), 10)
        claim(bridge.rt, delivery)
        bridge.start()
        deliver_due(bridge.rt)
        assert networks["bluesky"].posts() == [] and bridge.states("bluesky") == ["in_doubt"]


class TestFacebookInPipeline:
    def test_photo_post_when_asked(self, bridge, networks):
        """With photo_posts = true the story's photo goes to the Page with the text as caption."""
        bridge.start(targets={"facebook": {"photo_posts": True}})
        poll(bridge.rt, bridge.rt.config.sources[0], force=True)
        bridge.publish(antara_item(4, image=bridge.photo()))
        deliver_due(bridge.rt)
        [post] = networks["facebook"].fake.posts
        assert post["photo"] == PNG and LINK_OF_4 in post["message"]

    def test_link_post_downloads_no_photo(self, bridge, networks):
        """With photo_posts off, the story goes as a link post (Facebook builds the preview) and its photo is never downloaded."""
        bridge.start(only="facebook")
        poll(bridge.rt, bridge.rt.config.sources[0], force=True)
        bridge.publish(antara_item(4, image=bridge.photo()))
        deliver_due(bridge.rt)
        [post] = networks["facebook"].fake.posts
        assert post["photo"] is None and post["link"] == LINK_OF_4 and bridge.states("facebook") == ["sent"]
        assert bridge.feeds.requests_to("/foto/1.png") == []

    def test_crash_then_retry_is_left_to_the_operator(self, bridge, networks):
        """A Facebook post in doubt after a crash is not resent blindly: it stays in doubt."""
        bridge.start()
        poll(bridge.rt, bridge.rt.config.sources[0], force=True)
        bridge.publish(antara_item(4))
        [delivery] = bridge.rt.repo.due_deliveries("facebook", bridge.clock(), 10)
        claim(bridge.rt, delivery)
        bridge.start()
        deliver_due(bridge.rt)
        assert networks["facebook"].posts() == [] and bridge.states("facebook") == ["in_doubt"]


class TestWhatsAppInPipeline:
    def test_one_delivery_per_recipient(self, bridge, networks):
        """A story becomes one delivery per recipient, each sent once with the template and the link."""
        bridge.start()
        poll(bridge.rt, bridge.rt.config.sources[0], force=True)
        bridge.publish(antara_item(4))
        deliver_due(bridge.rt)
        deliver_due(bridge.rt)
        messages = networks["whatsapp"].fake.messages
        assert sorted(m["to"] for m in messages) == sorted(RECIPIENTS)
        assert all(m["parameters"][1] == LINK_OF_4 and m["template"] == "berita_terbaru" for m in messages)
        assert bridge.states("whatsapp") == ["sent", "sent"]

    def test_unreachable_recipient_fails_alone(self, bridge, networks):
        """A recipient WhatsApp refuses fails that delivery; the other recipient still gets the story."""
        networks["whatsapp"].fake.allowed = {RECIPIENTS[1]}
        bridge.start()
        poll(bridge.rt, bridge.rt.config.sources[0], force=True)
        bridge.publish(antara_item(4))
        deliver_due(bridge.rt)
        assert [m["to"] for m in networks["whatsapp"].fake.messages] == [RECIPIENTS[1]]
        assert sorted(bridge.states("whatsapp")) == ["failed", "sent"]
        assert not bridge.rt.repo.target_state("whatsapp").paused_reason

    def test_crash_then_retry_is_left_to_the_operator(self, bridge, networks):
        """A WhatsApp message in doubt after a crash waits for the operator, for that recipient only."""
        bridge.start()
        poll(bridge.rt, bridge.rt.config.sources[0], force=True)
        bridge.publish(antara_item(4))
        first = bridge.rt.repo.due_deliveries("whatsapp", bridge.clock(), 10)[0]
        claim(bridge.rt, first)
        bridge.start()
        deliver_due(bridge.rt)
        assert sorted(bridge.states("whatsapp")) == ["in_doubt", "sent"]
        assert len(networks["whatsapp"].fake.messages) == 1
