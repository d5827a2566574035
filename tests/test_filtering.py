"""Keyword filters end to end: feed server -> poll -> store (skipped with the rule) -> deliver to
fake X and Telegram; a reload changing filters; `bridge preview` and the rehearsal agreeing."""

from __future__ import annotations

import tomllib

import pytest
from structlog.testing import capture_logs

from bridge.config import parse_config
from bridge.errors import ConfigError
from bridge.filters import FILTERED
from bridge.model import DeliveryState
from bridge.pipeline import deliver_due, poll
from bridge.preview import dry_run_publishers, polite_fetcher, preview, render
from bridge.rehearsal import Memory, open_read_only, rehearse_round
from bridge.service import build_runtime, close, open_repository
from tests.fakes.telegram import BOT_TOKEN
from tests.helpers import antara_feed, antara_item, env_for

TITLES = {
    1: "Pengadaan seragam atlet pelatnas tahun 2026",
    2: "Kirab Pemuda, semangat Sumpah Pemuda di Jakarta",
    3: "Menpora tinjau venue PON di Aceh",
    4: "Deputi Kepemudaan buka pelatihan wirausaha muda",
}
PROCUREMENT = f"{FILTERED} source antara: exclude 'pengadaan' matched the title"
NOT_YOUTH = f"{FILTERED} target x: no include rule matched ('pemuda', 'wirausaha muda')"


def story(n: int) -> dict:
    return dict(antara_item(n, title=TITLES[n]), description=f"Jakarta (ANTARA) - Berita ke-{n}.")


class Bridge:
    """The bridge on one database, restarted (or reloaded) with other filters by start()."""

    def __init__(self, feeds, x, telegram, tmp_path, clock):
        self.feeds, self.x, self.telegram, self.tmp_path, self.clock = feeds, x, telegram, tmp_path, clock
        self.rt = None

    def raw(self, source: dict | None = None, x: dict | None = None, bridge: dict | None = None) -> dict:
        return {
            "bridge": {"database": "sqlite:///bridge.db", "first_run": "all", **(bridge or {})},
            "sources": [{"name": "antara", "url": self.feeds.url("/rss.xml"), "targets": ["x", "tg"],
                         "images": False, **(source or {})}],
            "targets": {"x": {"kind": "x", "api_base": self.x.base_url, "max_per_day": 100, **(x or {})},
                        "tg": {"kind": "telegram", "chat_id": "@kemenpora", "api_base": self.telegram.base_url}},
        }

    def start(self, **raw):
        if self.rt:
            close(self.rt)
        config = parse_config(self.raw(**raw), environ={**env_for(self.tmp_path), "BRIDGE_TG_BOT_TOKEN": BOT_TOKEN})
        self.rt = build_runtime(config, open_repository(config), clock=self.clock)
        return self.rt

    def poll(self):
        return poll(self.rt, self.rt.config.sources[0], force=True)

    def tweets(self) -> list[str]:
        return [t["text"] for t in self.x.tweets]

    def messages(self) -> list[str]:
        return [m["text"] for m in self.telegram.messages]

    def skipped(self) -> dict[tuple[str, str], str]:
        """(target, title) -> the reason of each skipped delivery."""
        return {(r["target"], r["title"]): r["last_error"]
                for r in self.rt.repo.delivery_rows([DeliveryState.SKIPPED], limit=100)}


@pytest.fixture
def bridge(feed_server, x_api, telegram_api, tmp_path, clock):
    feed_server.add("/rss.xml", antara_feed([story(n) for n in (1, 2, 3, 4)]), etag='"v1"')
    b = Bridge(feed_server, x_api, telegram_api, tmp_path, clock)
    yield b
    if b.rt:
        close(b.rt)


SOURCE_RULES = {"exclude": ["pengadaan"]}
X_RULES = {"include": ["pemuda", "wirausaha muda"]}


class TestSkippedWithTheRule:
    def test_source_and_target_filters_decide_per_target(self, bridge):
        """The source's exclude takes a story out everywhere; X's include, on top, keeps only the youth
        stories for X (whole words: "Kepemudaan" is no "pemuda", but "wirausaha muda" is asked for);
        Telegram gets every other story. Each refused delivery is stored skipped with its rule."""
        bridge.start(source=SOURCE_RULES, x=X_RULES)
        with capture_logs() as logs:
            outcome = bridge.poll()
        assert (outcome.items_new, outcome.deliveries_created, outcome.extra["skipped"]) == (4, 5, 3)
        deliver_due(bridge.rt)
        assert sorted(t.split(" https")[0] for t in bridge.tweets()) == sorted([TITLES[2], TITLES[4]])
        assert len(bridge.messages()) == 3 and not any("Pengadaan" in m for m in bridge.messages())
        assert bridge.skipped() == {("x", TITLES[1]): PROCUREMENT, ("tg", TITLES[1]): PROCUREMENT,
                                    ("x", TITLES[3]): NOT_YOUTH}
        filtered = [(e["target"], e["reason"]) for e in logs if e["event"] == "story filtered out"]
        assert sorted(filtered) == sorted([("x", PROCUREMENT), ("tg", PROCUREMENT), ("x", NOT_YOUTH)])

    def test_a_story_every_target_refuses_does_not_count_towards_a_burst(self, bridge, feed_server):
        """A known source bringing more new stories than burst_limit is held only for the stories some
        target would take: five new procurement notices are skipped, not a held burst."""
        bridge.start(source={**SOURCE_RULES, "burst_limit": 2})
        bridge.poll()
        notices = [antara_item(n, title=f"Pengadaan barang paket {n}") for n in range(10, 15)]
        feed_server.edit("/rss.xml", body=antara_feed(notices + [story(n) for n in (1, 2, 3, 4)]), etag='"v2"')
        with capture_logs() as logs:
            outcome = bridge.poll()
        assert outcome.extra.get("held") is None and outcome.items_new == 5 and outcome.deliveries_created == 0
        assert not [e for e in logs if e["event"].startswith("burst held")]
        assert bridge.rt.repo.held_stories() == {}

    def test_filters_see_the_categories_and_summary(self, bridge, feed_server):
        """A rule matches a story's category or summary as well as its title."""
        items = [antara_item(20, title="Berita satu", categories=("Lelang",)), antara_item(21, title="Berita dua")]
        feed_server.edit("/rss.xml", body=antara_feed(items), etag='"v3"')
        bridge.start(source={"exclude": ["lelang", "cerita ke-21"]})
        bridge.poll()
        reasons = {title: reason for (target, title), reason in bridge.skipped().items() if target == "x"}
        assert reasons == {
            "Berita satu": f"{FILTERED} source antara: exclude 'lelang' matched category 'Lelang'",
            "Berita dua": f"{FILTERED} source antara: exclude 'cerita ke-21' matched the summary",
        }


class TestReload:
    def test_tightened_filters_stop_queued_stories_and_loosened_ones_revive_nothing(self, bridge):
        """Stories queued before a reload added an exclude rule are skipped at send time with that rule;
        a later reload removing it brings back neither them nor stories it skipped when they were read."""
        bridge.start()
        bridge.poll()  # four stories queued for both targets, nothing sent yet
        bridge.start(source=SOURCE_RULES, x=X_RULES)  # the reload
        with capture_logs() as logs:
            deliver_due(bridge.rt)
        assert len(bridge.tweets()) == 2 and len(bridge.messages()) == 3
        assert bridge.skipped() == {("x", TITLES[1]): PROCUREMENT, ("tg", TITLES[1]): PROCUREMENT,
                                    ("x", TITLES[3]): NOT_YOUTH}
        assert sum(e["event"] == "post skipped: filtered out" for e in logs) == 3
        bridge.start()  # the rules removed again
        bridge.poll()
        deliver_due(bridge.rt)
        assert len(bridge.tweets()) == 2 and len(bridge.messages()) == 3

    def test_a_story_already_sent_is_not_touched(self, bridge):
        """Filters judge only what has not gone out: a sent story stays sent whatever the new rules say."""
        bridge.start()
        bridge.poll()
        deliver_due(bridge.rt)
        bridge.start(source={"exclude": ["re:."]})
        deliver_due(bridge.rt)
        rows = bridge.rt.repo.delivery_rows([DeliveryState.SENT], limit=100)
        assert len(rows) == 8 and bridge.skipped() == {}

    def test_a_post_in_doubt_is_left_to_its_own_rule(self, bridge):
        """A post that may be on the account is not "filtered out" by a later rule: it stays in doubt
        for its network's rule or the operator (Telegram: the operator)."""
        from bridge.model import FrozenPost

        bridge.start()
        bridge.poll()
        first = bridge.rt.repo.due_deliveries("tg", bridge.clock(), limit=1)[0]
        assert bridge.rt.repo.claim(first, bridge.clock(), FrozenPost(first.item.title))
        bridge.rt.repo.mark_in_doubt(first.id, "read timeout", bridge.clock(), bridge.clock())
        bridge.start(source={"exclude": ["re:."]})
        deliver_due(bridge.rt)
        [row] = bridge.rt.repo.delivery_rows([DeliveryState.IN_DOUBT], limit=10)
        assert row["id"] == first.id and len(bridge.skipped()) == 7

    def test_a_released_burst_is_judged_when_it_is_sent(self, bridge, feed_server):
        """A held burst released after a reload added a rule goes out without the stories the rule refuses."""
        bridge.start(source={"burst_limit": 1})
        bridge.poll()
        deliver_due(bridge.rt)
        feed_server.edit("/rss.xml", body=antara_feed([antara_item(n, title=f"Pengadaan paket {n}") for n in (30, 31)]
                                                     + [antara_item(32, title="Pelantikan pengurus")]), etag='"v4"')
        assert bridge.poll().extra["held"] == 6
        bridge.start(source={"burst_limit": 1, **SOURCE_RULES})
        assert bridge.rt.repo.release_held("antara", bridge.clock()) == 6
        deliver_due(bridge.rt)
        assert bridge.tweets()[-1].startswith("Pelantikan pengurus") and len(bridge.tweets()) == 5


class TestPreviewAndRehearsal:
    def test_preview_names_the_filter_that_took_each_story_out(self, bridge):
        """`bridge preview` shows, per story and target, the rule that takes it out, and the post otherwise."""
        config = bridge.start(source=SOURCE_RULES, x=X_RULES).config
        text = render(preview(config, config.sources[0], story_pages=False))
        lines = text.splitlines()
        assert f"    post to x: NOT POSTED, {PROCUREMENT}" in lines
        assert f"    post to tg: NOT POSTED, {PROCUREMENT}" in lines
        assert f"    post to x: NOT POSTED, {NOT_YOUTH}" in lines
        assert sum(line.startswith("    post to x (") for line in lines) == 2
        assert sum(line.startswith("    post to tg (") for line in lines) == 3

    def test_the_rehearsal_agrees_with_the_poll(self, bridge):
        """A rehearsal logs the same rule for each story a poll would skip, and would post the rest."""
        config = bridge.start(source=SOURCE_RULES, x=X_RULES).config
        with capture_logs() as logs, polite_fetcher(config) as fetcher, \
                dry_run_publishers(config, config.targets) as publishers:
            posts = rehearse_round(config, None, Memory(), fetcher, publishers, config.sources, bridge.clock())
        assert sorted((p.target, p.item.title) for p in posts) == sorted(
            [("x", TITLES[2]), ("x", TITLES[4]), ("tg", TITLES[2]), ("tg", TITLES[3]), ("tg", TITLES[4])])
        filtered = sorted((e["target"], e["reason"]) for e in logs if e["event"] == "would not post: filtered out")
        assert filtered == sorted([("x", PROCUREMENT), ("tg", PROCUREMENT), ("x", NOT_YOUTH)])
        bridge.poll()  # the real poll skips exactly those
        assert sorted((t, r) for (t, _), r in bridge.skipped().items()) == filtered

    def test_the_rehearsal_skips_queued_stories_the_new_rules_refuse(self, bridge):
        """Deliveries queued before an edit are judged by the edited filters, as the delivery round will."""
        bridge.start()
        bridge.poll()
        close(bridge.rt)
        bridge.rt = None
        raw = bridge.raw(source=SOURCE_RULES)
        config = parse_config(raw, environ={"STATE_DIRECTORY": str(bridge.tmp_path)}, dry_run=True)
        repo = open_read_only(config.bridge.database)
        try:
            with capture_logs() as logs, polite_fetcher(config) as fetcher, \
                    dry_run_publishers(config, config.targets) as publishers:
                posts = rehearse_round(config, repo, Memory(), fetcher, publishers, [], bridge.clock())
        finally:
            repo.engine.dispose()
        assert len(posts) == 6 and not any(p.item.title == TITLES[1] for p in posts)
        queued = [e for e in logs if e["event"] == "would not post: filtered out"]
        assert len(queued) == 2 and all(e["queued"] and e["reason"] == PROCUREMENT for e in queued)


class TestValidation:
    BASE = """
[bridge]
dry_run = true
[[sources]]
name = "antara"
url = "https://www.antaranews.com/rss/terkini.xml"
targets = ["x"]
{source}
[targets.x]
kind = "x"
{target}
"""

    def problems(self, source: str = "", target: str = "") -> list[str]:
        with pytest.raises(ConfigError) as info:
            parse_config(tomllib.loads(self.BASE.format(source=source, target=target)), environ={})
        return info.value.problems

    def test_a_bad_regex_is_a_problem_with_its_key_path(self):
        """A regex that does not compile names the table, the key and the rule's index."""
        [source] = self.problems(source="exclude = ['pengadaan', 're:(lelang']")
        assert source.startswith("sources[0] (antara).exclude[1]: 're:(lelang' is not a valid regular expression: "
                                 "missing ), unterminated subpattern")
        [target] = self.problems(target="include = ['re:[pemuda']")
        assert target.startswith("targets.x.include[0]: 're:[pemuda' is not a valid regular expression")

    def test_mistyped_keys_and_prefixes_get_a_did_you_mean(self):
        """`exlude` suggests `exclude` (in a source and a target), `regex:` and `RE:` suggest `re:`."""
        target, source = sorted(self.problems(source="exlude = ['a']", target="includ = ['b']"), reverse=True)
        assert "sources[0].exlude: unknown key in [[sources]] #1; did you mean 'exclude'?" in source
        assert "targets.x.includ: unknown key in [targets.x]; did you mean 'include'?" in target
        [prefix] = self.problems(target="exclude = ['regex:lelang\\s+']")
        assert prefix == ("targets.x.exclude[0]: 'regex:lelang\\\\s+': did you mean 're:lelang\\\\s+'? "
                          "(a regular expression starts with 're:')")

    def test_not_a_list_and_a_rule_in_both_lists(self):
        """A single string instead of a list, and a rule both included and excluded, are problems."""
        assert self.problems(source='include = "pemuda"') == [
            'sources[0] (antara).include: must be a list of strings like ["x"]']
        [both] = self.problems(target="include = ['pemuda']\nexclude = ['pemuda']")
        assert both.startswith("targets.x: 'pemuda' in both include and exclude")

    def test_good_rules_load(self):
        """Valid rules load as compiled filters on the source and the target; none by default."""
        raw = tomllib.loads(self.BASE.format(source="exclude = ['pengadaan', 're:lelang\\s+\\w+']",
                                             target="include = ['pemuda']"))
        config = parse_config(raw, environ={})
        assert [r.text for r in config.sources[0].filters.exclude] == ["pengadaan", "re:lelang\\s+\\w+"]
        assert config.targets["x"].filters.owner == "target x" and config.sources[0].filters.owner == "source antara"
        plain = parse_config(tomllib.loads(self.BASE.format(source="", target="")), environ={})
        assert not plain.sources[0].filters and not plain.targets["x"].filters



class TestDocumented:
    def test_the_shipped_examples_load_when_uncommented(self):
        """settings.toml's commented-out filters and max_per_hour are valid as written once uncommented."""
        from tests.test_config import REPO_ROOT

        text = (REPO_ROOT / "settings.toml").read_text()
        for line in ("#exclude = ", "#include = ", "# max_per_hour = ", "# include = "):
            assert line in text
            text = text.replace(line, line.lstrip("# "))
        config = parse_config(tomllib.loads(text), environ={})
        first, x = config.sources[0], config.targets["x"]
        assert [r.text for r in first.filters.exclude] == ["pengadaan", "lelang", "re:pengumuman\\s+seleksi"]
        assert first.filters.exclude[2].pattern.search("PENGUMUMAN   SELEKSI calon paskibraka")
        assert x.max_per_hour == 6 and [r.text for r in x.filters.include] == ["pemuda", "olahraga"]

    def test_the_readme_example_loads_and_filters_as_it_says(self):
        """The README's Filters example is valid TOML and settings, and refuses what its comments say."""
        import re

        from bridge.filters import rejection
        from bridge.model import Item
        from tests.test_config import REPO_ROOT

        readme = (REPO_ROOT / "README.md").read_text()
        section = readme[readme.index("### Filters"):]
        example = re.search(r"```toml\n(.*?)```", section, re.S).group(1)
        raw = tomllib.loads("[bridge]\ndry_run = true\n" + example + '\n[targets.telegram]\nkind = "telegram"\n'
                            'chat_id = "@kemenpora"\n')
        config = parse_config(raw, environ={})
        source, x = config.sources[0], config.targets["x"]

        def why(title: str) -> str | None:
            return rejection(Item(key="k", title=title), source.filters, x.filters)

        assert why("Pengumuman Hasil Seleksi Paskibraka").startswith(f"{FILTERED} source deputi2-berita: exclude")
        assert why("Pelatihan kewirausahaan bagi pemuda") is None
        assert why("Menpora tinjau GBK").startswith(f"{FILTERED} target x: no include rule matched")
