"""Help for typos in settings.toml and on the command line: "did you mean", the table a key is in,
the sqlite:/// form of a bare database path, and where a systemd install keeps a missing secret."""

from __future__ import annotations

import tomllib

import pytest

from bridge.cli import EXIT_CONFIG, main
from bridge.config import parse_config
from bridge.config.values import did_you_mean
from bridge.errors import ConfigError

SETTINGS = """
[bridge]
dry_run = true
[[sources]]
name = "antara-terkini"
url = "https://www.antaranews.com/rss/terkini.xml"
targets = ["x"]
[targets.x]
kind = "x"
"""


def problems_of(text: str, environ=None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(tomllib.loads(text), environ=environ or {})
    return info.value.problems


class TestDidYouMean:
    def test_a_close_name_is_suggested(self):
        """A one-letter slip gets the closest allowed name."""
        assert did_you_mean("pol_interval", ["poll_interval", "database"]) == "did you mean 'poll_interval'?"

    def test_case_is_ignored_and_said(self):
        """A name that differs only in case is suggested, with a note that case matters."""
        assert did_you_mean("X", ["x", "telegram"]) == "did you mean 'x'? (case matters)"

    def test_nothing_close_gives_nothing(self):
        """A word like no choice gets no suggestion rather than a wild guess."""
        assert did_you_mean("colour_scheme", ["x", "telegram"]) == ""


class TestUnknownKeys:
    def test_a_bridge_key_typo_names_its_table_and_the_fix(self):
        """An unknown [bridge] key names [bridge] and suggests the key meant."""
        [problem] = problems_of(SETTINGS.replace("dry_run = true", "dry_run = true\npoll_intervall = \"5m\""))
        assert problem.startswith("bridge.poll_intervall: unknown key in [bridge]; did you mean 'poll_interval'? "
                                  "(allowed: ")

    def test_a_source_key_typo_names_which_source_table(self):
        """An unknown key in a [[sources]] entry names the entry by number."""
        [problem] = problems_of(SETTINGS.replace('targets = ["x"]', 'targets = ["x"]\nfirst_rum = "skip"'))
        assert problem.startswith("sources[0].first_rum: unknown key in [[sources]] #1; did you mean 'first_run'?")

    def test_a_target_key_typo_names_the_target_table(self):
        """An unknown key in [targets.x] names [targets.x] and suggests the key."""
        [problem] = problems_of(SETTINGS + 'max_per_dey = 10\n')
        assert problem.startswith("targets.x.max_per_dey: unknown key in [targets.x]; did you mean 'max_per_day'?")

    def test_a_top_level_typo_is_suggested(self):
        """[[source]] for [[sources]] is caught at the top level with the right name."""
        [problem] = problems_of(SETTINGS + '[[source]]\nname = "b"\n')
        assert problem.startswith("source: unknown key at the top level; did you mean 'sources'?")

    def test_no_suggestion_still_lists_the_allowed_keys(self):
        """A key like none allowed gets the list of allowed keys and no guess."""
        [problem] = problems_of(SETTINGS.replace("dry_run = true", "dry_run = true\nzzz = 1"))
        assert problem.startswith("bridge.zzz: unknown key in [bridge] (allowed: ") and "did you mean" not in problem


class TestUnknownNames:
    def test_a_target_name_in_the_wrong_case_is_suggested(self):
        """targets = ["X"] with a [targets.x] table suggests 'x' before adding a table."""
        [problem] = problems_of(SETTINGS.replace('targets = ["x"]', 'targets = ["X"]'))
        assert problem == ("sources[0] (antara-terkini).targets: no target named 'X'; did you mean 'x'? "
                           "(case matters); or add a [targets.X] table")

    def test_a_target_name_like_none_says_to_add_a_table(self):
        """A target name close to no table keeps the advice to add one."""
        [problem] = problems_of(SETTINGS.replace('targets = ["x"]', 'targets = ["telegram"]'))
        assert problem.endswith("no target named 'telegram'; add a [targets.telegram] table")

    def test_a_target_kind_typo_is_suggested(self):
        """kind = "mastadon" suggests 'mastodon', and the sources naming that target are not told to add it."""
        [problem] = problems_of(SETTINGS.replace('kind = "x"', 'kind = "mastadon"'))
        assert problem.startswith("targets.x.kind: must be one of ") and problem.endswith(
            "(got 'mastadon'); did you mean 'mastodon'?")

    @pytest.mark.parametrize("command", [["preview", "antara-terkin"], ["catchup", "antara-terkin"],
                                         ["release", "Antara-Terkini"]])
    def test_a_source_name_typo_on_the_command_line_is_suggested(self, command, tmp_path, monkeypatch, capsys):
        """preview, catchup and release with a mistyped source name exit 2 and suggest the source meant."""
        monkeypatch.chdir(tmp_path)
        monkeypatch.delenv("STATE_DIRECTORY", raising=False)
        path = tmp_path / "settings.toml"
        path.write_text(SETTINGS)
        assert main(["--config", str(path), *command]) == EXIT_CONFIG
        err = capsys.readouterr().err.splitlines()
        assert err[-1] == (f"  - no source named {command[1]!r}; did you mean 'antara-terkini'?"
                           f"{' (case matters)' if command[0] == 'release' else ''} (sources: antara-terkini)")


class TestUnknownValues:
    def test_a_source_kind_typo_is_suggested(self):
        """kind = "HTML" on a source suggests 'html'."""
        problem = problems_of(SETTINGS.replace('targets = ["x"]', 'targets = ["x"]\nkind = "HTML"'))[0]
        assert problem.endswith("(got 'HTML'); did you mean 'html'? (case matters)")

    def test_a_preset_typo_is_suggested(self):
        """preset = "kemenpra" suggests 'kemenpora' before listing the presets."""
        problem = problems_of(SETTINGS.replace('targets = ["x"]', 'targets = ["x"]\nkind = "html"\n'
                                               'preset = "kemenpra"'))[0]
        assert problem == ("sources[0] (antara-terkini).preset: no preset named 'kemenpra'; did you mean "
                           "'kemenpora'? (presets: kemenpora)")

    def test_an_option_choice_typo_is_suggested(self):
        """visibility = "unlist" on a Mastodon target suggests 'unlisted'."""
        text = SETTINGS.replace('kind = "x"', 'kind = "mastodon"\ninstance = "https://mastodon.social"\n'
                                'visibility = "unlist"')
        [problem] = problems_of(text)
        assert problem.startswith("targets.x.visibility: must be one of public, unlisted, private, direct")
        assert problem.endswith("(got 'unlist'); did you mean 'unlisted'?")

    def test_a_placeholder_typo_is_suggested(self):
        """{titel} in a template suggests {title} beside the list of placeholders."""
        [problem] = problems_of(SETTINGS.replace('targets = ["x"]', 'targets = ["x"]\ntemplate = "{titel} {url}"'))
        assert "unknown placeholder(s) titel (did you mean 'title'?); use {" in problem


class TestDatabasePath:
    @pytest.mark.parametrize("path, url", [
        ("/var/lib/bridge/bridge.db", "sqlite:////var/lib/bridge/bridge.db"),
        ("bridge.db", "sqlite:///bridge.db"),
    ])
    def test_a_bare_path_gets_the_exact_sqlite_url(self, path, url):
        """database = a file path is refused with the sqlite:/// URL to write instead."""
        [problem] = problems_of(SETTINGS.replace("dry_run = true", f'dry_run = true\ndatabase = "{path}"'))
        assert problem.startswith(f"bridge.database: '{path}' is a file path, not a database URL; "
                                  f'write database = "{url}" (')

    def test_a_url_is_not_questioned(self):
        """A database URL, SQLite or not, passes this check."""
        for url in ("sqlite:///bridge.db", "postgresql+psycopg://bridge@localhost/bridge"):
            parse_config(tomllib.loads(SETTINGS.replace("dry_run = true", f'dry_run = true\ndatabase = "{url}"')),
                         environ={})


class TestMissingSecret:
    def test_the_systemd_credential_file_is_named(self):
        """A missing secret names the variable and /etc/bridge/credentials/<target>/<field>."""
        problems = problems_of(SETTINGS.replace("dry_run = true", "dry_run = false"))
        assert problems[0] == ("targets.x: missing secret consumer_key: set BRIDGE_X_CONSUMER_KEY; for the "
                               "systemd service, write it to /etc/bridge/credentials/x/consumer_key "
                               "(or set dry_run = true to run without posting)")

    def test_under_systemd_the_loaded_file_is_named_too(self, tmp_path):
        """With $CREDENTIALS_DIRECTORY set, the message names the file there and the one in /etc/bridge/credentials."""
        problems = problems_of(SETTINGS.replace("dry_run = true", "dry_run = false"),
                               {"CREDENTIALS_DIRECTORY": str(tmp_path)})
        assert problems[0].startswith("targets.x: missing secret consumer_key: set BRIDGE_X_CONSUMER_KEY or the file "
                                      "$CREDENTIALS_DIRECTORY/x/consumer_key; for the systemd service, write it to "
                                      "/etc/bridge/credentials/x/consumer_key ")

    def test_another_target_is_told_to_load_its_folder(self):
        """A target other than x (which the unit loads) is told the LoadCredential= line to add."""
        text = SETTINGS.replace("dry_run = true", "dry_run = false").replace('targets = ["x"]', 'targets = ["tg"]')
        text = text.replace('[targets.x]\nkind = "x"', '[targets.tg]\nkind = "telegram"\nchat_id = "@kemenpora"')
        [problem] = problems_of(text)
        assert ("write it to /etc/bridge/credentials/tg/bot_token and add "
                "LoadCredential=tg:/etc/bridge/credentials/tg with `systemctl edit bridge`") in problem


def test_the_readme_example_is_what_the_bridge_says():
    """The README's "did you mean" example is the bridge's own line for that typo."""
    from pathlib import Path

    readme = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8").split())
    text = SETTINGS.replace('name = "antara-terkini"', 'name = "antara"').replace('targets = ["x"]', 'targets = ["X"]')
    [problem] = problems_of(text)
    assert f"`{problem}`" in readme
