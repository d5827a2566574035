"""Reading typed values from settings.toml's tables: each bad value becomes a problem with its key
path, so the whole file is checked in one go. Pure: no I/O."""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from datetime import time, timedelta
from pathlib import Path
from typing import Any, Iterable, Mapping

from bridge.clock import parse_daily_window
from bridge.compose import PLACEHOLDERS, template_fields
from bridge.filters import Filters, Rule, compile_rule

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
"""Source and target names: used in logs, CLI arguments and environment variable names."""
_DURATION_RE = re.compile(r"(\d+)\s*([smhd])")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_LISTEN_RE = re.compile(r"^(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.-]+)):(?P<port>\d{1,5})$")


@dataclass(frozen=True)
class FirstRun:
    """What a source's first successful poll posts: nothing (skip), the newest N, or everything."""

    mode: str  # "skip" | "latest" | "all"
    count: int = 0

    def __str__(self) -> str:
        return f"latest:{self.count}" if self.mode == "latest" else self.mode


def parse_duration(text: str) -> timedelta:
    """'30s', '5m', '2h', '1d', or combinations like '1h30m'. Raises ValueError."""
    compact = text.strip().lower().replace(" ", "")
    if not compact or _DURATION_RE.sub("", compact):
        raise ValueError(f"{text!r} is not a duration like '30s', '5m', '2h' or '1d'")
    seconds = sum(int(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_RE.findall(compact))
    return timedelta(seconds=seconds)


def parse_first_run(text: str) -> FirstRun:
    if text in ("skip", "all"):
        return FirstRun(text)
    match = re.fullmatch(r"latest:(\d+)", text)
    if match and int(match.group(1)) > 0:
        return FirstRun("latest", int(match.group(1)))
    raise ValueError(f"{text!r} must be 'skip', 'all' or 'latest:N' with N > 0")


def parse_listen_address(text: str) -> tuple[str, int]:
    """'127.0.0.1:9108' -> ('127.0.0.1', 9108); '[::1]:9108' -> ('::1', 9108). Raises ValueError."""
    match = _LISTEN_RE.match(text.strip())
    port = int(match.group("port")) if match else 0
    if not match or not 0 < port < 65536:
        raise ValueError(f"{text!r} must be host:port with a port from 1 to 65535, like \"127.0.0.1:9108\" "
                         "or \"[::1]:9108\"")
    return match.group("ipv6") or match.group("host"), port


def database_url_problem(url: str) -> str | None:
    """What is wrong with a `database` that is not a URL (a bare file path): the exact sqlite:/// URL
    to write instead. None for anything that looks like a URL (SQLAlchemy judges the rest)."""
    if "://" in url:
        return None
    if not url.strip():
        return 'empty; write a database URL, e.g. database = "sqlite:///bridge.db"'
    where = ("an absolute path: four slashes" if url.startswith("/")
             else "a relative path is in $STATE_DIRECTORY, else ./state")
    return f"{url!r} is a file path, not a database URL; write database = \"sqlite:///{url}\" ({where})"


def resolve_database_url(url: str, environ: Mapping[str, str] = os.environ) -> str:
    """A relative SQLite path lives in $STATE_DIRECTORY (systemd's StateDirectory=), else ./state."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url.startswith(prefix + "/") or url == prefix:
        return url
    relative, _, query = url[len(prefix):].partition("?")
    # An SQLite URI filename (`sqlite:///file:bridge.db?mode=ro&uri=true`) names its path after `file:`.
    scheme = "file:" if relative.startswith("file:") and "uri=true" in query.split("&") else ""
    relative = relative[len(scheme):]
    if relative in ("", ":memory:") or relative.startswith("/"):
        return url
    state_dir = Path(environ.get("STATE_DIRECTORY", "").split(":")[0] or "state")
    resolved = prefix + scheme + str((state_dir / relative).absolute())
    return resolved + (f"?{query}" if query else "")


class TableReader:
    """Reads typed values from one table, recording a problem (with its key path) for each bad one."""

    def __init__(self, table: dict, where: str, problems: list[str]):
        self.table, self.where, self.problems = table, where, problems

    def _get(self, key: str, types: tuple[type, ...], expected: str) -> Any:
        value = self.table.get(key)
        if value is not None and (not isinstance(value, types) or isinstance(value, bool) and bool not in types):
            self.problems.append(f"{self.where}.{key}: must be {expected} (got {value!r})")
            return None
        return value

    def string(self, key: str, default: str | None) -> str | None:
        value = self._get(key, (str,), "a string")
        return default if value is None else value

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key, (bool,), "true or false")
        return default if value is None else value

    def positive_int(self, key: str, default: int) -> int:
        value = self._get(key, (int,), "a whole number")
        if value is not None and value <= 0:
            self.problems.append(f"{self.where}.{key}: must be greater than 0 (got {value})")
        return default if value is None or value <= 0 else value

    def duration(self, key: str, default: str | None) -> timedelta | None:
        value = self._get(key, (str,), "a duration string like \"5m\"")
        text = value if value is not None else default
        if text is None:
            return None
        try:
            return parse_duration(text)
        except ValueError as exc:
            self.problems.append(f"{self.where}.{key}: {exc}")
            return parse_duration(default) if default and value is not None else timedelta(0)

    def first_run(self, key: str, default: str | None) -> FirstRun | None:
        text = self.string(key, default)
        if text is None:
            return None
        try:
            return parse_first_run(text)
        except ValueError as exc:
            self.problems.append(f"{self.where}.{key}: {exc}")
            return FirstRun("skip")

    def url(self, key: str, default: str | None) -> str | None:
        value = self.string(key, default)
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            self.problems.append(f"{self.where}.{key}: {value!r} must be an http:// or https:// URL")
        return value

    def amount(self, key: str, default: float | None) -> float | None:
        """A non-negative number (prices, budgets in USD)."""
        value = self._get(key, (int, float), "a number like 2.00")
        if value is not None and value < 0:
            self.problems.append(f"{self.where}.{key}: must not be negative (got {value})")
            return default
        return default if value is None else float(value)

    def daily_window(self, key: str) -> tuple[time, time] | None:
        value = self.string(key, None)
        if value is None:
            return None
        try:
            return parse_daily_window(value)
        except ValueError as exc:
            self.problems.append(f"{self.where}.{key}: {exc}")
            return None
    def listen_address(self, key: str, default: str | None) -> str | None:
        value = self.string(key, default)
        if value is not None:
            try:
                parse_listen_address(value)
            except ValueError as exc:
                self.problems.append(f"{self.where}.{key}: {exc}")
        return value

    def str_list(self, key: str) -> list[str]:
        value = self.table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problems.append(f"{self.where}.{key}: must be a list of strings like [\"x\"]")
            return []
        return value

    def rules(self, key: str) -> tuple[Rule, ...]:
        """A list of filter rules (words, phrases, `re:` regular expressions), each bad one a problem
        with its index: `sources[0] (antara).exclude[2]: 're:(' is not a valid regular expression: ...`."""
        rules = []
        for index, text in enumerate(self.str_list(key)):
            try:
                rules.append(compile_rule(text))
            except ValueError as exc:
                self.problems.append(f"{self.where}.{key}[{index}]: {exc}")
        return tuple(rules)

    def filters(self, owner: str) -> Filters:
        """`include` and `exclude` of this table; a rule in both is a problem (it could never pass)."""
        include, exclude = self.rules("include"), self.rules("exclude")
        both = sorted({r.text for r in include} & {r.text for r in exclude})
        if both:
            self.problems.append(f"{self.where}: {', '.join(map(repr, both))} in both include and exclude; "
                                 "a story it matches is always excluded, so keep it in one of them")
        return Filters(include, exclude, owner)

    def template(self, key: str) -> str | None:
        value = self.string(key, None)
        if value is None:
            return None
        try:
            unknown = template_fields(value) - PLACEHOLDERS
        except ValueError as exc:
            self.problems.append(f"{self.where}.{key}: {exc}")
            return value
        if unknown:
            allowed = " ".join("{%s}" % p for p in sorted(PLACEHOLDERS))
            named = ", ".join(_with_hint(field, PLACEHOLDERS) for field in sorted(unknown))
            self.problems.append(f"{self.where}.{key}: unknown placeholder(s) {named}; use {allowed}")
        return value


def table_of(raw: dict, key: str, problems: list[str]) -> dict:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        problems.append(f"{key}: must be a table like [{key}]")
        return {}
    return value


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """"did you mean 'x'?" for the closest of `choices` to a mistyped `word`, case ignored (and said
    when case is the only difference), or "" when none is close."""
    by_lower: dict[str, str] = {}
    for choice in sorted(choices):
        by_lower.setdefault(choice.lower(), choice)
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1)
    if not close:
        return ""
    match = by_lower[close[0]]
    case = " (case matters)" if match.lower() == word.lower() else ""
    return f"did you mean {match!r}?{case}"


def _with_hint(word: str, choices: Iterable[str]) -> str:
    """`word`, followed by "(did you mean 'x'?)" when one of `choices` is close."""
    hint = did_you_mean(word, choices)
    return f"{word} ({hint})" if hint else word


def suggestion(word: object, choices: Iterable[str]) -> str:
    """"; did you mean 'x'?" to end a problem about a mistyped name, or "" when none is close."""
    hint = did_you_mean(word, choices) if isinstance(word, str) and word else ""
    return f"; {hint}" if hint else ""


def _table_label(where: str) -> str:
    """The table a key path is in, as settings.toml spells it: [bridge], [targets.x], [[sources]] #1."""
    if not where:
        return "at the top level"
    match = re.fullmatch(r"sources\[(\d+)\](.*)", where)
    if match:
        return f"in [[sources]] #{int(match.group(1)) + 1}{match.group(2)}"
    return f"in [{where}]"


def unknown_keys(table: dict, allowed: set[str], where: str, problems: list[str]) -> None:
    for key in table:
        if key not in allowed:
            path = f"{where}.{key}" if where else key
            hint = did_you_mean(key, allowed)
            hint = f"; {hint}" if hint else ""
            problems.append(f"{path}: unknown key {_table_label(where)}{hint} "
                            f"(allowed: {', '.join(sorted(allowed))})")
