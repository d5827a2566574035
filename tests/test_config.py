"""settings.toml validation, defaults, secrets and the config search path."""

from __future__ import annotations

import tomllib
from datetime import timedelta
from pathlib import Path

import pytest

from bridge.config import (
    FirstRun, find_config_path, load_config, parse_config, parse_duration, parse_listen_address,
    resolve_database_url,
)
from bridge.errors import ConfigError
from bridge.secrets import credential_env_var
from bridge.sources.presets import PRESETS

REPO_ROOT = Path(__file__).resolve().parents[1]

MINIMAL = """
[bridge]
dry_run = true
[[sources]]
name = "antara"
url = "https://www.antaranews.com/rss/terkini.xml"
targets = ["x"]
[targets.x]
kind = "x"
"""

X_SECRETS = {
    "BRIDGE_X_CONSUMER_KEY": "ck-123456", "BRIDGE_X_CONSUMER_SECRET": "cs-123456",
    "BRIDGE_X_ACCESS_TOKEN": "at-123456", "BRIDGE_X_ACCESS_TOKEN_SECRET": "ats-123456",
}


def parse(text: str, environ=None, **kwargs):
    return parse_config(tomllib.loads(text), environ=environ or {}, **kwargs)


def problems_of(text: str, environ=None, **kwargs) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text, environ, **kwargs)
    return info.value.problems


class TestShippedSettings:
    def test_shipped_file_is_valid_and_dry_run(self):
        """The settings.toml in the repository validates and runs without credentials."""
        config = load_config(REPO_ROOT / "settings.toml", environ={})
        assert config.bridge.dry_run is True
        assert config.sources and all(s.targets == ("x",) for s in config.sources)
        assert config.targets["x"].api_base == "https://api.x.com"

    def test_commented_out_sources_are_ready_to_enable(self):
        """Uncommenting the shipped file's example sources gives a valid file that follows each
        deputy's /artikel and the ministry's /inspirasi with the kemenpora preset."""
        uncommented, in_example = [], False
        for line in (REPO_ROOT / "settings.toml").read_text().splitlines():
            in_example = line == "# [[sources]]" or (in_example and line.startswith("# ") and "=" in line)
            uncommented.append(line[2:] if in_example else line)
        config = parse("\n".join(uncommented), {})
        extra = {s.name: s for s in config.sources if s.url.endswith(("/artikel", "/inspirasi"))}
        assert sorted(extra) == [f"deputi{n}-artikel" for n in range(1, 5)] + ["kemenpora-inspirasi"]
        assert {s.url for s in extra.values()} == {
            *(f"https://deputi{n}.kemenpora.go.id/artikel" for n in range(1, 5)),
            "https://www.kemenpora.go.id/inspirasi"}
        assert all(s.layout == PRESETS["kemenpora"] and s.kind == "auto" for s in extra.values())

    def test_shipped_file_comments_every_setting(self):
        """The first time a setting appears in the shipped settings.toml, a comment sits right above
        it (later tables may repeat an explained key, like each deputy's source, without one)."""
        lines = (REPO_ROOT / "settings.toml").read_text().splitlines()
        explained: set[tuple[str, str]] = set()
        section = ""
        for index, line in enumerate(lines):
            stripped = line.strip()
            if stripped.startswith("["):
                section = stripped.strip("[]")
            elif "=" in stripped and not stripped.startswith("#"):
                key = (section, stripped.split("=")[0].strip())
                if key not in explained:
                    assert lines[index - 1].strip().startswith("#"), f"no comment above {line!r}"
                    explained.add(key)


class TestDefaults:
    def test_minimal_file_gets_documented_defaults(self):
        """A minimal file gets the defaults: 5 minute polls, first_run skip, kind auto, 50 posts a day, X's API."""
        config = parse(MINIMAL)
        source = config.sources[0]
        assert source.poll_interval == timedelta(minutes=5)
        assert source.first_run == FirstRun("skip")
        assert source.kind == "auto" and source.timezone == "Asia/Jakarta" and source.layout is None
        assert config.targets["x"].max_per_day == 50
        assert config.targets["x"].min_interval == timedelta(0)
        assert config.bridge.timezone == "Asia/Jakarta"
        assert config.template_for(source, config.targets["x"]) == "{title} {url} {hashtags}"

    def test_source_overrides(self):
        """A source's poll_interval and first_run override [bridge]'s; a target's template wins over the source's."""
        config = parse(MINIMAL.replace('targets = ["x"]', 'targets = ["x"]\npoll_interval = "2m"\n'
                                       'first_run = "latest:3"\ntemplate = "{title}: {url}"')
                       .replace('kind = "x"', 'kind = "x"\ntemplate = "{title} {hashtags} {url}"'))
        source = config.sources[0]
        assert source.poll_interval == timedelta(minutes=2)
        assert source.first_run == FirstRun("latest", 3)
        assert config.template_for(source, config.targets["x"]) == "{title} {hashtags} {url}"


    def test_burst_limit_defaults_and_overrides(self):
        """burst_limit is 10 unless [bridge] sets it; a source's own value wins; zero is refused with its key."""
        assert parse(MINIMAL).sources[0].burst_limit == 10
        config = parse(MINIMAL.replace("dry_run = true", "dry_run = true\nburst_limit = 25"))
        assert config.sources[0].burst_limit == 25
        config = parse(MINIMAL.replace('targets = ["x"]', 'targets = ["x"]\nburst_limit = 3'))
        assert config.sources[0].burst_limit == 3
        [problem] = problems_of(MINIMAL.replace('targets = ["x"]', 'targets = ["x"]\nburst_limit = 0'))
        assert "burst_limit" in problem and "antara" in problem

    def test_keep_defaults_to_400_days_and_forever_keeps_all(self):
        """[bridge] keep is 400 days unless set; "forever" prunes nothing; less than a day is refused."""
        assert parse(MINIMAL).bridge.keep == timedelta(days=400)
        assert parse(MINIMAL.replace("dry_run = true", 'dry_run = true\nkeep = "730d"')).bridge.keep == timedelta(days=730)
        assert parse(MINIMAL.replace("dry_run = true", 'dry_run = true\nkeep = "forever"')).bridge.keep is None
        [problem] = problems_of(MINIMAL.replace("dry_run = true", 'dry_run = true\nkeep = "12h"'))
        assert problem.startswith("bridge.keep: must be at least 1d")


class TestValidation:
    def test_every_problem_reported_with_its_key_path(self):
        """All problems in a file are reported at once, each with the key path to fix."""
        text = """
[bridge]
poll_interval = "5 minutes"
first_run = "some"
colour = "blue"
[[sources]]
name = "a"
url = "ftp://example.com/feed"
targets = ["x", "facebook"]
template = "{title} {link}"
[[sources]]
name = "a"
url = "https://example.com/feed"
targets = ["x"]
kind = "rss"
[targets.x]
kind = "x"
max_per_day = 0
min_interval = "soon"
"""
        problems = "\n".join(problems_of(text))
        for expected in [
            "bridge.poll_interval", "bridge.first_run", "bridge.colour: unknown key",
            "sources[0] (a).url", "sources[0] (a).targets: no target named 'facebook'",
            "sources[0] (a).template: unknown placeholder(s) link",
            "sources[1].name: 'a' is used by another source", "sources[1] (a).kind",
            "targets.x.max_per_day", "targets.x.min_interval",
        ]:
            assert expected in problems

    def test_missing_credentials_name_the_variables(self):
        """A live target without secrets is an error naming each missing environment variable."""
        problems = "\n".join(problems_of(MINIMAL.replace("dry_run = true", "dry_run = false")))
        for var in X_SECRETS:
            assert var in problems

    def test_unknown_target_kind_and_bad_types(self):
        """A target of an unknown kind, or a value of the wrong type, is reported."""
        text = MINIMAL.replace('kind = "x"', 'kind = "myspace"').replace("dry_run = true", 'dry_run = "yes"')
        problems = "\n".join(problems_of(text))
        assert "targets.x.kind" in problems and "bridge.dry_run: must be true or false" in problems

    def test_no_sources_is_an_error(self):
        """A file without [[sources]] is rejected instead of starting a daemon that does nothing."""
        assert any("sources" in p for p in problems_of('[bridge]\ndry_run = true\n[targets.x]\nkind = "x"\n'))

    def test_malformed_template(self):
        """An unbalanced brace in a template is a config error, not a crash at posting time."""
        problems = problems_of(MINIMAL.replace('targets = ["x"]', 'targets = ["x"]\ntemplate = "{title"'))
        assert any("template" in p for p in problems)

    def test_invalid_toml_is_reported_with_the_path(self, tmp_path):
        """A file that is not TOML is a ConfigError naming the file and the parse error."""
        path = tmp_path / "settings.toml"
        path.write_text("[bridge\n")
        with pytest.raises(ConfigError) as info:
            load_config(path, environ={})
        assert str(path) in str(info.value) and "TOML" in str(info.value)

    def test_bad_timezone(self):
        """An unknown time zone name is reported."""
        problems = problems_of(MINIMAL.replace("dry_run = true", 'dry_run = true\ntimezone = "Mars/Olympus"'))
        assert any("bridge.timezone" in p for p in problems)


class TestHtmlSources:
    """kind, preset, selectors, timezone and pages of a source."""

    def with_source(self, lines: str) -> str:
        return MINIMAL.replace('targets = ["x"]\n', 'targets = ["x"]\n' + lines + "\n", 1)

    def test_preset_with_an_override(self):
        """A preset gives every selector; a source's own key replaces that one only; "" switches one off."""
        config = parse(self.with_source('kind = "html"\npreset = "kemenpora"\ndate = "time"\nimage = ""'))
        layout = config.sources[0].layout
        assert (layout.item, layout.date, layout.image) == (".newsrow__row", "time", None)
        assert layout.id_prefix == "kemenpora:detail:" and layout.next == ".paging a[rel=next]"

    def test_source_timezone_defaults_to_the_bridge_one(self):
        """Without its own timezone a source uses [bridge] timezone."""
        config = parse(MINIMAL.replace("dry_run = true", 'dry_run = true\ntimezone = "Asia/Makassar"'))
        assert config.sources[0].timezone == "Asia/Makassar"
        assert parse(self.with_source('timezone = "Asia/Jayapura"')).sources[0].timezone == "Asia/Jayapura"

    def test_selectors_without_preset(self):
        """Plain selectors make a layout; the link selector has a default."""
        layout = parse(self.with_source('kind = "html"\nitem = "article"\ndate = "time"')).sources[0].layout
        assert (layout.item, layout.link, layout.date, layout.id_pattern) == ("article", "a[href]", "time", None)

    @pytest.mark.parametrize("lines,expected", [
        ('kind = "rss"', "kind: must be one of feed, html, sitemap, auto"),
        ('kind = "html"', 'kind = "html" needs preset = "kemenpora"'),
        ('preset = "detik"', "preset: no preset named 'detik' (presets: kemenpora)"),
        ('kind = "feed"\npreset = "kemenpora"', 'preset apply to kind = "html" or "auto", not "feed"'),
        ('preset = "kemenpora"\nitem = "div >"', "item: 'div >' is not a CSS selector selectolax can read"),
        ('preset = "kemenpora"\nitem = ""', "item: cannot be empty"),
        ('preset = "kemenpora"\nid_pattern = "/detail/\\\\d+"', "id_pattern: needs exactly one (group)"),
        ('preset = "kemenpora"\nid_pattern = "(["', "id_pattern: not a regular expression"),
        ('timezone = "Jakarta"', "timezone: unknown time zone 'Jakarta'"),
        ('max_pages = 50', "max_pages: at most 10"),
        ('selector = "a"', "selector: unknown key"),
    ])
    def test_problems_name_the_key(self, lines, expected):
        """Each bad html-source setting is reported with its key path and what to do."""
        problems = problems_of(self.with_source(lines))
        assert any(p.startswith("sources[0]") and expected in p for p in problems), problems


class TestSecrets:
    def test_secrets_from_environment(self):
        """Live targets take their secrets from BRIDGE_<TARGET>_<FIELD> variables."""
        config = parse(MINIMAL.replace("dry_run = true", "dry_run = false"), X_SECRETS)
        assert config.targets["x"].credentials["access_token"] == "at-123456"
        assert "at-123456" not in repr(config)
        assert set(config.secrets()) == set(X_SECRETS.values())

    @pytest.mark.parametrize("layout", ["subdir", "systemd"])
    def test_secrets_from_credentials_directory(self, tmp_path, layout):
        """Secrets are read from $CREDENTIALS_DIRECTORY/<target>/<field> or <target>_<field> files."""
        for field in ("consumer_key", "consumer_secret", "access_token", "access_token_secret"):
            path = tmp_path / "x" / field if layout == "subdir" else tmp_path / f"x_{field}"
            path.parent.mkdir(exist_ok=True)
            path.write_text(f"file-{field}\n")
        config = parse(MINIMAL.replace("dry_run = true", "dry_run = false"),
                       {"CREDENTIALS_DIRECTORY": str(tmp_path)})
        assert config.targets["x"].credentials["consumer_key"] == "file-consumer_key"

    def test_unreadable_secret_file_is_reported(self, tmp_path):
        """A credential file that cannot be read is reported with its path, not a traceback."""
        (tmp_path / "x").mkdir()
        (tmp_path / "x" / "access_token").write_bytes(b"\xff\xfe\xfa")
        env = {k: v for k, v in X_SECRETS.items() if k != "BRIDGE_X_ACCESS_TOKEN"}
        problems = problems_of(MINIMAL.replace("dry_run = true", "dry_run = false"),
                               {**env, "CREDENTIALS_DIRECTORY": str(tmp_path)})
        assert len(problems) == 1
        assert problems[0].startswith(f"targets.x: cannot read secret file {tmp_path}/x/access_token: ")

    def test_dry_run_override_needs_no_secrets(self):
        """--dry-run lets a live file load without credentials."""
        config = parse(MINIMAL.replace("dry_run = true", "dry_run = false"), {}, dry_run=True)
        assert config.bridge.dry_run and not config.targets["x"].credentials

    def test_env_var_name_for_odd_target_names(self):
        """Target names with dashes map to underscores in variable names."""
        assert credential_env_var("x-kemenpora", "access_token") == "BRIDGE_X_KEMENPORA_ACCESS_TOKEN"


class TestValues:
    @pytest.mark.parametrize("text,seconds", [("30s", 30), ("5m", 300), ("2h", 7200), ("1d", 86400),
                                              ("1h30m", 5400), ("0s", 0)])
    def test_durations(self, text, seconds):
        """Durations accept s/m/h/d units and combinations."""
        assert parse_duration(text) == timedelta(seconds=seconds)

    @pytest.mark.parametrize("text", ["", "5", "5 minutes", "m5", "-5m", "1.5h"])
    def test_bad_durations(self, text):
        """Anything else is rejected with an example of the right form."""
        with pytest.raises(ValueError, match="30s"):
            parse_duration(text)

    def test_relative_sqlite_path_goes_to_state_directory(self, tmp_path):
        """A relative SQLite path lives in $STATE_DIRECTORY, else ./state; absolute paths and other URLs stay."""
        assert resolve_database_url("sqlite:///bridge.db", {"STATE_DIRECTORY": str(tmp_path)}) == \
            f"sqlite:///{tmp_path}/bridge.db"
        assert resolve_database_url("sqlite:///bridge.db", {}).endswith("/state/bridge.db")
        assert resolve_database_url("sqlite:////var/x.db", {}) == "sqlite:////var/x.db"
        assert resolve_database_url("postgresql://u@h/db", {}) == "postgresql://u@h/db"

    def test_sqlite_uri_filenames_keep_their_form(self, tmp_path):
        """`file:` URIs (read-only, shared cache) resolve their relative path, keep `file:` and the query,
        and open: SQLite reads the file the settings name, not a file literally called `file:bridge.db`."""
        import sqlite3

        from sqlalchemy import create_engine, text

        env = {"STATE_DIRECTORY": str(tmp_path)}
        url = resolve_database_url("sqlite:///file:bridge.db?mode=ro&uri=true", env)
        assert url == f"sqlite:///file:{tmp_path}/bridge.db?mode=ro&uri=true"
        assert resolve_database_url(f"sqlite:///file:{tmp_path}/b.db?uri=true", env) == \
            f"sqlite:///file:{tmp_path}/b.db?uri=true"
        assert resolve_database_url("sqlite:///file:memdb1?mode=memory&cache=shared&uri=true", env).startswith(
            f"sqlite:///file:{tmp_path}/memdb1?")
        with sqlite3.connect(tmp_path / "bridge.db") as db:
            db.execute("CREATE TABLE t (x)")
            db.execute("INSERT INTO t VALUES (42)")
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                assert conn.execute(text("SELECT x FROM t")).scalar() == 42
        finally:
            engine.dispose()
        assert not (tmp_path / "file:bridge.db").exists()


class TestSearchPath:
    def test_order(self, tmp_path, monkeypatch):
        """--config wins, then $BRIDGE_CONFIG, then ./settings.toml."""
        monkeypatch.chdir(tmp_path)
        assert find_config_path("/a.toml", {"BRIDGE_CONFIG": "/b.toml"}) == Path("/a.toml")
        assert find_config_path(None, {"BRIDGE_CONFIG": "/b.toml"}) == Path("/b.toml")
        (tmp_path / "settings.toml").write_text("")
        assert find_config_path(None, {}) == Path("settings.toml")

    def test_nothing_found(self, tmp_path, monkeypatch):
        """Without any file, the error lists where it looked."""
        monkeypatch.chdir(tmp_path)
        if Path("/etc/bridge/settings.toml").exists():
            pytest.skip("this machine has /etc/bridge/settings.toml")
        with pytest.raises(ConfigError, match="BRIDGE_CONFIG"):
            find_config_path(None, {})


class TestHealthListen:
    def test_absent_means_no_endpoint(self):
        """Without health_listen there is no health endpoint."""
        assert parse(MINIMAL).bridge.health_listen is None

    @pytest.mark.parametrize("text, parsed", [("127.0.0.1:9108", ("127.0.0.1", 9108)),
                                              ("[::1]:9108", ("::1", 9108)),
                                              ("localhost:80", ("localhost", 80))])
    def test_host_and_port(self, text, parsed):
        """IPv4, bracketed IPv6 and host names are read as (host, port)."""
        config = parse(MINIMAL.replace("[bridge]", f'[bridge]\nhealth_listen = "{text}"'))
        assert config.bridge.health_listen == text and parse_listen_address(text) == parsed

    @pytest.mark.parametrize("text", ["9108", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "::1:9108",
                                      "http://127.0.0.1:9108"])
    def test_bad_addresses_are_problems(self, text):
        """An address without a usable port, or an unbracketed IPv6 one, is a problem with its key path."""
        problems = problems_of(MINIMAL.replace("[bridge]", f'[bridge]\nhealth_listen = "{text}"'))
        assert len(problems) == 1 and problems[0].startswith("bridge.health_listen:") and "host:port" in problems[0]
