"""Done when: a site shaped like kemenpora.go.id, configured with kind html and the kemenpora preset,
is read, posted once per new story to the fake X API, watched for layout drift, and previewed
without touching state."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from bridge.cli import EXIT_OK, EXIT_PROBLEM, main
from bridge.pipeline import deliver_due, poll
from bridge.publish.x import x_weighted_length
from bridge.service import close, prepare
from bridge.store.lock import acquire_run_lock
from tests.helpers import env_for, make_config, runtime
from tests.sites import FOREIGN_IDS, NEW_STORY, PAGE_1, KemenporaSite

FEEDS = Path(__file__).parent / "fixtures" / "feeds"
KEMENPORA = {"kind": "html", "preset": "kemenpora"}
NO_DELAY = {"page_delay": "0s"}  # the pacer's spacing is tested with an injected sleeper in test_read


@pytest.fixture
def site(feed_server):
    return KemenporaSite(feed_server)


class Bridge:
    """The bridge on one database; start() again is a process restart."""

    def __init__(self, site, x_api, tmp_path, clock):
        self.site, self.x, self.tmp_path, self.clock = site, x_api, tmp_path, clock
        self.rt = None

    def start(self, source: dict | None = None, **bridge):
        if self.rt:
            close(self.rt)
        raw = make_config({"kemenpora": self.site.listing_url}, x_base=self.x.base_url,
                          bridge={**NO_DELAY, **bridge}, source={**KEMENPORA, **(source or {})})
        self.rt = runtime(raw, self.tmp_path, self.clock)
        prepare(self.rt, acquire_run_lock(self.rt.repo.engine))
        return self

    def cycle(self):
        outcome = poll(self.rt, self.rt.config.sources[0], force=True)
        deliver_due(self.rt)
        return outcome

    def tweets(self):
        return [r.body["text"] for r in self.x.requests if r.route == "/2/tweets" and r.method == "POST"]


@pytest.fixture
def bridge(site, x_api, tmp_path, clock):
    b = Bridge(site, x_api, tmp_path, clock)
    yield b
    if b.rt:
        close(b.rt)


class TestDoneWhen:
    def test_every_listed_story_posted_once_and_nothing_foreign(self, bridge, site):
        """With first_run all, each main-listing story is posted once with its title and URL, and
        stories outside the main listing never; a restart posts nothing again."""
        bridge.start(first_run="all")
        outcome = bridge.cycle()
        assert outcome.status == "ok" and outcome.items_new == len(PAGE_1)
        tweets = bridge.tweets()
        assert len(tweets) == len(PAGE_1)
        for path, title, _ in PAGE_1.values():
            assert sum(title in t and t.endswith(site.url(path)) for t in tweets) == 1
        assert not any(str(n) in t for t in tweets for n in FOREIGN_IDS)
        assert all(x_weighted_length(t) <= 280 for t in tweets)
        bridge.start(first_run="all")
        bridge.cycle()
        assert len(bridge.tweets()) == len(PAGE_1)

    def test_stored_dates_are_the_listing_days_in_jakarta(self, bridge):
        """Each story is stored with its listing day at 00:00 +07:00."""
        bridge.start(dry_run=False)
        bridge.cycle()
        rows = bridge.rt.repo.engine.connect().exec_driver_sql("select key, published_at from items").all()
        expected = {f"kemenpora:detail:{n}": datetime.fromisoformat(d) for n, (_, _, d) in PAGE_1.items()}
        assert {k: datetime.fromisoformat(str(p) + "+00:00") for k, p in rows} == expected

    def test_first_run_skips_then_a_new_story_is_posted_once_with_its_page(self, bridge, site):
        """The first poll only remembers (and reads no story page); a new story's page is read once
        and the story posted once, with the page's precise time."""
        bridge.start()
        first = bridge.cycle()
        assert first.first_run and first.items_new == len(PAGE_1) and bridge.tweets() == []
        assert site.story_requests() == []
        site.publish_new_story()
        bridge.cycle()
        bridge.start()  # restart
        bridge.cycle()
        story_id, path, title, _ = NEW_STORY
        assert bridge.tweets() == [f"{title} {site.url(path)}"]
        assert site.story_requests() == [path]  # known stories' pages are never fetched
        [[published]] = bridge.rt.repo.engine.connect().exec_driver_sql(
            f"select published_at from items where key = 'kemenpora:detail:{story_id}'").all()
        assert datetime.fromisoformat(str(published) + "+00:00") == datetime.fromisoformat("2025-12-02T14:30:00+07:00")

    def test_row_with_teaser_image_and_time_costs_no_page(self, bridge, site):
        """A new story whose row gives a teaser, a picture and a date with its time is posted
        with them and its page is never fetched."""
        bridge.start()
        bridge.cycle()
        site.publish_new_story(date="Selasa, 2 Des 2025 09:15 WIB", summary="Teaser dari daftar berita.",
                               image="https://image.kemenpora.go.id/images/content/2025/12/02/12346/thumb.jpg")
        bridge.cycle()
        assert site.story_requests() == [] and len(bridge.tweets()) == 1
        [(summary, image, published)] = bridge.rt.repo.engine.connect().exec_driver_sql(
            f"select summary, image_url, published_at from items where key = 'kemenpora:detail:{NEW_STORY[0]}'").all()
        assert summary == "Teaser dari daftar berita." and image.endswith("/12346/thumb.jpg")
        assert datetime.fromisoformat(str(published) + "+00:00") == datetime.fromisoformat("2025-12-02T09:15:00+07:00")

    def test_row_with_teaser_but_day_only_date_reads_the_page_for_time(self, bridge, site):
        """A row with a teaser and a picture but only a day still has its page read, once, for
        the time of day (and the page's own summary and lead image)."""
        bridge.start()
        bridge.cycle()
        site.publish_new_story(summary="Teaser.", image="https://image.kemenpora.go.id/t.jpg")
        bridge.cycle()
        assert site.story_requests() == [NEW_STORY[1]]

    def test_mai_date_is_read(self, bridge, site):
        """A row dated with kemenpora's own spelling of May ("Mai") is stored with that day and time."""
        bridge.start()
        bridge.cycle()
        site.publish_new_story(date="Kamis, 16 Mai 2024 08:00 WIB", summary="s", image="https://image.kemenpora.go.id/t.jpg")
        bridge.cycle()
        [[published]] = bridge.rt.repo.engine.connect().exec_driver_sql(
            f"select published_at from items where key = 'kemenpora:detail:{NEW_STORY[0]}'").all()
        assert datetime.fromisoformat(str(published) + "+00:00") == datetime.fromisoformat("2024-05-16T08:00:00+07:00")

    def test_changed_slug_is_not_a_new_story(self, bridge, site, feed_server):
        """A story whose slug changes keeps its numeric id, so it is not posted again."""
        bridge.start()
        bridge.cycle()
        feed_server.edit("/berita", body=site.page("berita.html").replace(
            "menpora-dito-buka-kejurnas-pencak-silat", "menpora-buka-kejurnas-silat-pelajar"))
        outcome = bridge.cycle()
        assert outcome.items_new == 0 and bridge.tweets() == []


class TestDrift:
    def test_layout_change_is_an_error_that_marks_nothing(self, bridge, site, cli_env, capsys):
        """A listing that stops yielding stories is a poll error shown in status and failing check;
        nothing is stored or posted, and the bridge recovers when the layout is fixed."""
        bridge.start()
        bridge.cycle()
        site.show("redesigned.html")
        outcome = bridge.cycle()
        assert outcome.status == "error"
        assert outcome.error.startswith("no stories found: the page layout may have changed")
        assert bridge.tweets() == []
        settings = write_settings(bridge.tmp_path, site.listing_url, bridge.x.base_url)
        assert main(["--config", str(settings), "status"]) == EXIT_OK
        assert "no stories found: the page layout may have changed" in capsys.readouterr().out
        assert main(["--config", str(settings), "check", "--dry-run"]) == EXIT_PROBLEM
        assert "source kemenpora: PROBLEM: no stories found" in capsys.readouterr().out
        site.show("berita.html")
        assert bridge.cycle().status == "ok" and bridge.tweets() == []
        assert main(["--config", str(settings), "check", "--dry-run"]) == EXIT_OK

    def test_first_poll_without_rows_is_reported(self, bridge, site):
        """A first poll that finds no rows is an error, and the source stays uninitialised."""
        site.show("redesigned.html")
        bridge.start()
        outcome = bridge.cycle()
        assert outcome.status == "error" and "check its url and the selectors" in outcome.error
        assert not bridge.rt.repo.source_state("kemenpora").initialised

    def test_allow_empty_listing(self, bridge, site):
        """With allow_empty, a listing without rows (an agenda between events) is a quiet, good poll
        that uses up the first run, so every story that appears later is posted, once."""
        site.show("redesigned.html")
        bridge.start(source={"allow_empty": True})
        outcome = bridge.cycle()
        assert outcome.status == "ok" and outcome.items_seen == 0
        site.show("berita.html")
        site.publish_new_story()
        bridge.cycle()
        assert len(bridge.tweets()) == 5 and "Desa Olahraga" in bridge.tweets()[-1]
        bridge.cycle()
        assert len(bridge.tweets()) == 5


def write_settings(tmp_path, url: str, x_base: str, *, extra_source: str = "") -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(f"""
[bridge]
database = "sqlite:///bridge.db"
dry_run = true
page_delay = "0s"
[[sources]]
name = "kemenpora"
url = "{url}"
kind = "html"
preset = "kemenpora"
targets = ["x"]
{extra_source}
[targets.x]
kind = "x"
api_base = "{x_base}"
""")
    return path


@pytest.fixture
def cli_env(tmp_path, monkeypatch):
    for name, value in env_for(tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("BRIDGE_CONFIG", raising=False)


class TestPreview:
    def test_preview_shows_every_story_and_post_without_state(self, site, x_api, tmp_path, cli_env, capsys):
        """`bridge preview` prints key, title, URL, +07:00 date, image and each post with its weighted
        length, and creates no database and sends nothing to X."""
        settings = write_settings(tmp_path, site.listing_url, x_api.base_url)
        assert main(["--config", str(settings), "preview", "kemenpora"]) == EXIT_OK
        out = capsys.readouterr().out
        for story_id, (path, title, date) in PAGE_1.items():
            assert f"key:   kemenpora:detail:{story_id}" in out
            assert f"title: {title}" in out and f"url:   {site.url(path)}" in out
        assert f"date:  {PAGE_1[12345][2]}" in out and "date:  2025-12-01T00:00:00+07:00" in out
        assert "image: https://image.kemenpora.go.id/images/content/2025/12/01/12345/silat_besar.jpg" in out
        assert "image: -" in out  # 12344: no picture in the row, no page
        post = f"{PAGE_1[12345][1]} {site.url(PAGE_1[12345][0])}"
        assert f"post to x ({x_weighted_length(post)}/280): {post}" in out
        assert not any(str(n) in out for n in FOREIGN_IDS)
        assert not (tmp_path / "bridge.db").exists() and not (tmp_path / "state").exists()
        assert x_api.requests == []

    def test_preview_of_an_unreadable_source_exits_1(self, site, x_api, tmp_path, cli_env, capsys):
        """A source whose page finds no stories is reported with the reason, exit 1."""
        site.show("redesigned.html")
        settings = write_settings(tmp_path, site.listing_url, x_api.base_url)
        assert main(["--config", str(settings), "preview", "kemenpora", "--no-pages"]) == EXIT_PROBLEM
        assert "no stories found" in capsys.readouterr().out

    def test_preview_of_unknown_source_is_a_config_error(self, site, x_api, tmp_path, cli_env, capsys):
        """Naming no configured source lists the sources."""
        settings = write_settings(tmp_path, site.listing_url, x_api.base_url)
        assert main(["--config", str(settings), "preview", "nope"]) == 2
        assert "sources: kemenpora" in capsys.readouterr().err


def test_indonesian_feed_dates_through_the_pipeline(feed_server, x_api, tmp_path, clock):
    """An RSS feed with WIB and day-first dates is stored with the right instants (not 7 hours or years off)."""
    feed_server.add("/rss", (FEEDS / "indonesian_dates.xml").read_bytes())
    rt = runtime(make_config({"id": feed_server.url("/rss")}, x_base=x_api.base_url, dry_run=True,
                             bridge={"first_run": "all"}), tmp_path, clock)
    poll(rt, rt.config.sources[0])
    published = {d.item.key: d.item.published for d in rt.repo.due_deliveries("x", clock() + timedelta(days=1), 10)}
    close(rt)
    assert published["en-wib"] == datetime.fromisoformat("2024-10-14T03:00:00+00:00")
    assert published["day-first"] == datetime.fromisoformat("2022-07-26T05:01:01+00:00")
