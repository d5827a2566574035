"""Per-network target settings in settings.toml: each kind's own keys, defaults, secrets and extras."""

from __future__ import annotations

import importlib.util

import pytest

from bridge.config import Config, parse_config
from bridge.errors import ConfigError

MINIMAL_TARGETS = {
    "telegram": {"kind": "telegram", "chat_id": "@kemenpora"},
    "mastodon": {"kind": "mastodon", "instance": "https://mastodon.social"},
    "bluesky": {"kind": "bluesky", "service": "https://bsky.social", "handle": "kemenpora.bsky.social"},
    "facebook": {"kind": "facebook", "page_id": "123456789", "api_base": "https://graph.facebook.com"},
    "whatsapp": {"kind": "whatsapp", "phone_number_id": "1098765", "message_template": "berita_terbaru",
                 "language": "id", "recipients": ["6281234567890"], "api_base": "https://graph.facebook.com"},
}
SECRETS = {
    "telegram": ["BRIDGE_TELEGRAM_BOT_TOKEN"],
    "mastodon": ["BRIDGE_MASTODON_ACCESS_TOKEN"],
    "bluesky": ["BRIDGE_BLUESKY_APP_PASSWORD"],
    "facebook": ["BRIDGE_FACEBOOK_PAGE_TOKEN"],
    "whatsapp": ["BRIDGE_WHATSAPP_ACCESS_TOKEN"],
}


def raw(targets: dict, *, dry_run: bool = True, source: dict | None = None) -> dict:
    return {
        "bridge": {"dry_run": dry_run},
        "sources": [{"name": "antara", "url": "https://www.antaranews.com/rss/terkini.xml",
                     "targets": list(targets), **(source or {})}],
        "targets": targets,
    }


def problems_of(targets: dict, **kwargs) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw(targets, **kwargs), environ={})
    return caught.value.problems


class TestEachKind:
    @pytest.mark.parametrize("kind", sorted(MINIMAL_TARGETS))
    def test_minimal_target_parses(self, kind):
        """The issue's minimal table for each network is a valid target."""
        config = parse_config(raw({kind: MINIMAL_TARGETS[kind]}), environ={})
        assert config.targets[kind].kind == kind and config.targets[kind].api_base.startswith("https://")

    @pytest.mark.parametrize("kind", sorted(MINIMAL_TARGETS))
    def test_live_target_names_its_secrets(self, kind):
        """A live target without its secrets names each BRIDGE_<TARGET>_<FIELD> variable."""
        problems = " ".join(problems_of({kind: MINIMAL_TARGETS[kind]}, dry_run=False))
        assert all(variable in problems for variable in SECRETS[kind])

    @pytest.mark.parametrize("kind", sorted(MINIMAL_TARGETS))
    def test_live_target_reads_its_secrets(self, kind):
        """With its secrets in the environment, a live target carries them as credentials."""
        environ = {variable: f"secret-value-{n}" for n, variable in enumerate(SECRETS[kind])}
        config = parse_config(raw({kind: MINIMAL_TARGETS[kind]}, dry_run=False), environ=environ)
        assert sorted(config.targets[kind].credentials.values()) == sorted(environ.values())

    @pytest.mark.parametrize("kind", sorted(MINIMAL_TARGETS))
    def test_free_networks_cost_nothing(self, kind):
        """Only X bills per post by default: other networks' posts cost $0 unless prices are set."""
        target = parse_config(raw({kind: MINIMAL_TARGETS[kind]}), environ={}).targets[kind]
        assert (target.price_per_post, target.price_per_link_post) == (0.0, 0.0)


class TestKeys:
    def test_another_kinds_key_is_unknown(self):
        """A key of another network (chat_id on an X target) is reported with the kind's allowed keys."""
        [problem] = problems_of({"x": {"kind": "x", "chat_id": "@kemenpora"}})
        assert problem.startswith("targets.x.chat_id: unknown key in [targets.x] (allowed: api_base, budget_per_day,")

    def test_required_key_missing(self):
        """A missing required key says which and gives an example line."""
        assert problems_of({"tg": {"kind": "telegram"}}) == [
            'targets.tg.chat_id: required for a telegram target, e.g. chat_id = "@channelname"']

    def test_mastodon_needs_its_instance(self):
        """A Mastodon target says which instance; api_base is not its word for it."""
        problems = problems_of({"m": {"kind": "mastodon", "api_base": "https://mastodon.social"}})
        assert problems[0].startswith("targets.m.api_base: unknown key in [targets.m] (allowed: budget_per_day,")
        assert "instance" in problems[0] and problems[1].startswith("targets.m.instance: required")

    def test_mastodon_visibility(self):
        """visibility defaults to public and must be one of Mastodon's four."""
        config = parse_config(raw({"m": MINIMAL_TARGETS["mastodon"]}), environ={})
        assert config.targets["m"].options["visibility"] == "public"
        [problem] = problems_of({"m": {**MINIMAL_TARGETS["mastodon"], "visibility": "everyone"}})
        assert problem == "targets.m.visibility: must be one of public, unlisted, private, direct (got 'everyone')"

    def test_bluesky_service_default(self):
        """A Bluesky target without service posts to https://bsky.social, in Indonesian by default."""
        config = parse_config(raw({"b": {"kind": "bluesky", "handle": "kemenpora.bsky.social"}}), environ={})
        assert config.targets["b"].api_base == "https://bsky.social" and config.targets["b"].options["langs"] == ("id",)

    def test_facebook_defaults(self):
        """A Facebook target uses Graph API v25.0 and link posts unless told otherwise."""
        options = parse_config(raw({"f": MINIMAL_TARGETS["facebook"]}), environ={}).targets["f"].options
        assert (options["version"], options["photo_posts"]) == ("v25.0", False)

    def test_numeric_chat_id(self):
        """A Telegram chat_id written as a TOML number is read as its text."""
        config = parse_config(raw({"tg": {"kind": "telegram", "chat_id": -1001234567890}}), environ={})
        assert config.targets["tg"].options["chat_id"] == "-1001234567890"

    def test_bad_chat_id(self):
        """A chat_id that is neither text nor a number is reported."""
        [problem] = problems_of({"tg": {"kind": "telegram", "chat_id": ["@k"]}})
        assert problem.startswith('targets.tg.chat_id: must be "@channelname" or a numeric id')


class TestExtras:
    def test_missing_sdk_names_the_install_command(self, monkeypatch):
        """A network whose SDK is not installed is a configuration error naming the pip extra."""
        real = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, *a: None if name == "mastodon" else real(name, *a))
        problems = problems_of({"m": {"kind": "mastodon", "instance": "https://mastodon.social"}})
        assert problems == ["targets.m.kind: mastodon needs its client library: pip install 'bridge[mastodon]'"]


class TestWhatsApp:
    def test_recipients_required(self):
        """A WhatsApp target without recipients says to list them."""
        table = {k: v for k, v in MINIMAL_TARGETS["whatsapp"].items() if k != "recipients"}
        assert problems_of({"wa": table}) == [
            'targets.wa.recipients: required for a whatsapp target, e.g. recipients = ["6281234567890"]']

    def test_template_of_the_network_wins_over_the_source(self):
        """WhatsApp's text is {title} (the link is a separate parameter) unless the target sets its own."""
        config = parse_config(raw({"wa": MINIMAL_TARGETS["whatsapp"]}, source={"template": "{title} {url}"}),
                              environ={})
        assert Config.template_for(config.sources[0], config.targets["wa"]) == "{title}"
        assert config.targets["wa"].recipients == ("6281234567890",)


class TestTemplates:
    def test_target_template_wins(self):
        """A target's own template wins over its source's."""
        config = parse_config(raw({"tg": {"kind": "telegram", "chat_id": "@k", "template": "{title}\n{url}"}},
                                  source={"template": "{title} {url} {hashtags}"}), environ={})
        assert Config.template_for(config.sources[0], config.targets["tg"]) == "{title}\n{url}"
