"""A light CLI: the commands an operator runs by hand load no network client, feed parser or scheduler.

Not timed (speed is measured by bench/bench_startup.py): these tests fail when someone adds a
top-level import that drags a heavy library into `bridge --help`, `status`, `check` or `health`.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.publish.limits import (
    URL_WEIGHT, mastodon_length, mastodon_length_at_most, x_length_at_most, x_weighted_length,
)

REPO_ROOT = Path(__file__).resolve().parents[1]

HEAVY = ("twitter_text", "tweepy", "requests", "mastodon", "atproto", "atproto_client", "httpx",
         "feedparser", "apscheduler", "prometheus_client")
"""Top-level packages that cost start-up time and belong to posting, fetching or the daemon."""

# Runs one command in a fresh interpreter, then reports which heavy packages it had loaded.
WRAPPER = """
import json, sys
from bridge.cli import main
report, heavy, argv = sys.argv[1], set(json.loads(sys.argv[2])), sys.argv[3:]
try:
    code = main(argv)
except SystemExit as exc:  # --help
    code = exc.code
loaded = sorted({name.split(".")[0] for name in sys.modules} & heavy)
with open(report, "w") as out:
    json.dump({"code": code, "loaded": loaded}, out)
"""

SAMPLE = """\
[bridge]
database = "sqlite:///{db}"
dry_run = true

[targets.x]
kind = "x"

[targets.telegram]
kind = "telegram"
chat_id = "@kanal"

[targets.mastodon]
kind = "mastodon"
instance = "https://mastodon.example"

[targets.bluesky]
kind = "bluesky"
handle = "kemenpora.bsky.social"

[targets.facebook]
kind = "facebook"
page_id = "123"

[targets.whatsapp]
kind = "whatsapp"
phone_number_id = "1098765"
message_template = "berita_terbaru"
recipients = ["6281234567890"]

[[sources]]
name = "kemenpora"
url = "http://127.0.0.1:9/berita"
preset = "kemenpora"
targets = ["x", "telegram", "mastodon", "bluesky", "facebook", "whatsapp"]
template = "{{title}} {{url}} {{hashtags}} via {{source}}"

[[sources]]
name = "antara"
url = "http://127.0.0.1:9/rss/terkini.xml"
kind = "feed"
targets = ["x", "telegram", "mastodon", "bluesky", "facebook", "whatsapp"]
"""


@pytest.fixture
def sample(tmp_path) -> Path:
    """settings.toml with a target of every network kind and a database `bridge run` has created."""
    from bridge.config import load_config
    from bridge.store.opening import open_repository

    path = tmp_path / "settings.toml"
    path.write_text(SAMPLE.format(db=tmp_path / "bridge.db"), encoding="utf-8")
    open_repository(load_config(path)).engine.dispose()
    return path


def loaded_by(tmp_path, *argv: str) -> dict:
    report = tmp_path / "report.json"
    result = subprocess.run([sys.executable, "-c", WRAPPER, str(report), json.dumps(HEAVY), *argv],
                            capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(report.read_text())


@pytest.mark.parametrize("argv", [["--help"], ["status"], ["status", "--json"], ["check"], ["health"]],
                         ids=lambda argv: " ".join(argv))
def test_operator_commands_load_no_heavy_library(sample, tmp_path, argv):
    """`bridge --help`, `status`, `check` (on a dry run) and `health` import none of the network
    clients, twitter-text, httpx, requests, feedparser, APScheduler or prometheus_client."""
    report = loaded_by(tmp_path, "--config", str(sample), *argv)
    assert report["code"] == 0
    assert report["loaded"] == []


def _with_template(tmp_path, template: str):
    from bridge.config import parse_config

    raw = {"bridge": {"database": "sqlite:///b.db", "dry_run": True},
           "targets": {"x": {"kind": "x"}},
           "sources": [{"name": "a", "url": "https://a.example/rss", "targets": ["x"], "template": template}]}
    return parse_config(raw, environ={"STATE_DIRECTORY": str(tmp_path)})


def test_a_template_that_leaves_no_room_is_still_refused(tmp_path):
    """The cheap count only lets through a template that fits: one too long for X is refused as
    before, with X's own count in the message (150 CJK characters, a space and the link: 324)."""
    from bridge.errors import ConfigError

    with pytest.raises(ConfigError, match=r"leaves no room for the link on x: .* 324 of at most 280"):
        _with_template(tmp_path, "日本語" * 50 + " {url}")


def test_a_template_the_cheap_count_doubts_is_measured_by_x_rule(tmp_path):
    """A template over the cheap count but within X's own (120 CJK characters and the link: 264)
    is accepted: the cheap count only ever decides that a template fits."""
    config = _with_template(tmp_path, "日本語" * 40 + " {url}")
    assert config.sources[0].template.startswith("日本語")


def _texts(seed: int, count: int) -> list[str]:
    """Texts mixing what changes a count: links with and without a scheme, short domains, CJK,
    emoji sequences, combining marks (NFC), line endings, dots that are not links."""
    rng = random.Random(seed)
    parts = ["Menpora", " ", "https://www.antaranews.com/berita/4000001/a", "t.co", "a.co/b", "x.id",
             "http://localhost", "日本語", "👨\u200d👩\u200d👧", "🇮🇩", "e\u0301", "\r\n", "...", "www.kemenpora.go.id",
             "#PON2024", "Rp1.000.000", "ｆｕｌｌ", "\u0344", "…", "مرحبا", "ok.", "https://t.co/x?y=1#z"]
    return ["".join(rng.choice(parts) for _ in range(rng.randint(0, 40))) for _ in range(count)]


def test_x_cheap_count_is_never_below_xs_own():
    """x_length_at_most never says less than twitter-text's weighted length."""
    for text in _texts(12, 3000):
        assert x_length_at_most(text) >= x_weighted_length(text), text


def test_mastodon_cheap_count_is_never_below_its_own():
    """mastodon_length_at_most never says less than Mastodon's count at the default link weight."""
    for text in _texts(13, 3000):
        assert mastodon_length_at_most(text) >= mastodon_length(text, URL_WEIGHT), text


def test_a_broken_counter_still_stops_run_at_start(tmp_path):
    """Loading twitter-text late does not hide a broken install: with it unimportable, `bridge run
    --once` stops at start with one line and exit 1 (even for a Telegram-only dry run, whose post
    prices need it), while `bridge status` still works."""
    settings = tmp_path / "settings.toml"
    settings.write_text(f'[bridge]\ndatabase = "sqlite:///{tmp_path}/bridge.db"\ndry_run = true\n'
                        '[targets.tg]\nkind = "telegram"\nchat_id = "@kanal"\n'
                        '[[sources]]\nname = "a"\nurl = "http://127.0.0.1:9/rss.xml"\ntargets = ["tg"]\n')
    broken = ("import sys; sys.modules['twitter_text'] = None; from bridge.cli import main; "
              "sys.exit(main(sys.argv[1:]))")

    def run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", broken, "--config", str(settings), *argv],
                              capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)

    result = run("run", "--once")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and len(lines) == 1 and "dependency is missing or broken" in lines[0]
    status = run("status")
    assert status.returncode == 0 and "tg" in status.stdout


DAEMON_WRAPPER = """
import json, sys
from bridge.config import load_config
from bridge.daemon import Daemon  # noqa: F401 (what `bridge run` loads)
from bridge.service import build_runtime, close_clients
from bridge.store.opening import open_repository
from bridge.publish.limits import x_weighted_length
from pathlib import Path
config = load_config(Path(sys.argv[2]))
rt = build_runtime(config, open_repository(config), parse_in_workers=True)
x_weighted_length("Menpora https://kemenpora.go.id")  # composing for X loads twitter-text
loaded = sorted(sys.modules)
close_clients(rt)
with open(sys.argv[1], "w") as out:
    json.dump(loaded, out)
"""

NOT_IN_A_DRY_RUN_DAEMON = ("requests", "urllib3", "tweepy", "mastodon", "atproto", "atproto_client", "feedparser",
                           "httpx", "httpcore", "anyio", "h11", "click", "pygments", "pkg_resources")
"""What `bridge run` in a dry run does not need in its own process: network clients (a live
publisher loads its own; the sources and photos go over http.client, so httpx and its stack too),
feedparser (the parse workers have it), httpx's CLI (click, pygments), the real pkg_resources
(twitter-text gets bridge's stand-in)."""


def test_a_dry_run_daemon_loads_no_network_client_nor_the_parser(sample, tmp_path):
    """The daemon's own process, built for a dry run with a target of every kind, feeds parsed in
    workers, loads none of NOT_IN_A_DRY_RUN_DAEMON (each is megabytes of its memory)."""
    report = tmp_path / "daemon.json"
    result = subprocess.run([sys.executable, "-c", DAEMON_WRAPPER, str(report), str(sample)],
                            capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    modules = set(json.loads(report.read_text()))
    loaded = {name.split(".")[0] for name in modules}
    assert "twitter_text" in loaded and "http" in loaded  # the check sees what it must (http.client fetches)
    assert loaded.isdisjoint(NOT_IN_A_DRY_RUN_DAEMON), loaded & set(NOT_IN_A_DRY_RUN_DAEMON)
    # The sample's database is SQLite: SQLAlchemy's PostgreSQL dialect (~3 MB) stays out, though
    # the schema has PostgreSQL-only index options (store/schema.py, postgresql_options).
    assert "sqlalchemy.dialects.sqlite" in modules
    assert not {name for name in modules if name.startswith("sqlalchemy.dialects.postgresql")}


X_ONLY = """\
[bridge]
database = "sqlite:///{db}"
dry_run = true

[targets.x]
kind = "x"

[[sources]]
name = "antara"
url = "http://127.0.0.1:9/rss/terkini.xml"
targets = ["x"]
"""


def test_a_daemon_posting_to_x_alone_loads_no_grapheme_counter(tmp_path):
    """regex (~2 MB: its Unicode tables) counts graphemes for Mastodon and Bluesky only, and loads
    on their first count (checking that a template fits is one): X's count needs none of it."""
    settings = tmp_path / "settings.toml"
    settings.write_text(X_ONLY.format(db=tmp_path / "bridge.db"))
    report = tmp_path / "daemon.json"
    result = subprocess.run([sys.executable, "-c", DAEMON_WRAPPER, str(report), str(settings)],
                            capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    loaded = {name.split(".")[0] for name in json.loads(report.read_text())}
    assert "twitter_text" in loaded and "regex" not in loaded


HTTP_STACKS = {"httpx": ("httpx", "httpcore", "anyio", "h11"), "requests": ("requests", "urllib3")}
NETWORK_STACKS = {"x": "requests", "mastodon": "requests", "telegram": "httpx", "facebook": "httpx",
                  "whatsapp": "httpx", "bluesky": "httpx"}
"""The HTTP stack each network's module posts through (tweepy and Mastodon.py use requests)."""


@pytest.mark.parametrize("network", sorted(NETWORK_STACKS))
def test_a_network_module_loads_its_own_http_stack_only(network):
    """A daemon posting to X loads requests (tweepy's) but not httpx (~3 MB), one posting to Telegram
    httpx but not requests: each stack's helpers are in their own module (publish/_http_*.py)."""
    own = NETWORK_STACKS[network]
    other = next(name for name in HTTP_STACKS if name != own)
    code = f"import json, sys; import bridge.publish.{network}; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    loaded = {name.split(".")[0] for name in json.loads(result.stdout)}
    assert own in loaded  # the check sees what it must
    assert loaded.isdisjoint(HTTP_STACKS[other]), loaded & set(HTTP_STACKS[other])


POLL_WRAPPER = """
import json, sys
from pathlib import Path
from bridge.config import load_config
from bridge.pipeline import poll
from bridge.service import close, build_runtime
from bridge.store.opening import open_repository
config = load_config(Path(sys.argv[2]))
rt = build_runtime(config, open_repository(config), parse_in_workers=True)
try:
    outcome = poll(rt, config.sources[0], force=True)
finally:
    close(rt)
with open(sys.argv[1], "w") as out:
    json.dump({"status": outcome.status, "seen": outcome.items_seen, "deliveries": outcome.deliveries_created,
               "modules": sorted(sys.modules)}, out)
"""


@pytest.mark.parametrize("kind", ["feed", "auto"])
def test_a_daemon_polling_a_feed_loads_no_html_reader(feed_server, tmp_path, kind):
    """A feed is parsed in a worker; the daemon's own process reads HTML (selectolax, ~2 MB) only for
    an HTML listing, a sitemap or a story's page (a photo the feed does not give): a poll of a feed
    whose stories carry their photos, to be posted, loads none of it."""
    from tests.helpers import antara_feed, antara_item

    feed_server.add("/rss.xml", antara_feed([antara_item(n, image=feed_server.url(f"/foto/{n}.jpg"))
                                             for n in range(1, 4)]), content_type="application/rss+xml")
    settings = tmp_path / "settings.toml"
    settings.write_text(X_ONLY.format(db=tmp_path / "bridge.db")
                        .replace("http://127.0.0.1:9/rss/terkini.xml", feed_server.url("/rss.xml"))
                        .replace('targets = ["x"]', f'targets = ["x"]\nkind = "{kind}"\nfirst_run = "all"'))
    report = tmp_path / "poll.json"
    result = subprocess.run([sys.executable, "-c", POLL_WRAPPER, str(report), str(settings)],
                            capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    polled = json.loads(report.read_text())
    assert (polled["status"], polled["seen"], polled["deliveries"]) == ("ok", 3, 3)
    loaded = {name.split(".")[0] for name in polled["modules"]}
    assert "selectolax" not in loaded and "bridge.sources.html" not in polled["modules"]
