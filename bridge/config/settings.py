"""settings.toml + secrets -> frozen, validated objects: [bridge], [[sources]], and the whole.

The whole file is checked before anything starts, and every problem is reported with its key path,
so an operator fixes them all in one edit instead of one per restart.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from functools import cached_property
from datetime import timedelta
from pathlib import Path
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bridge.compose import template_fields
from bridge.config.defaults import (
    DEFAULT_DATABASE, DEFAULT_POLL_INTERVAL, DEFAULT_FIRST_RUN, DEFAULT_TIMEZONE, DEFAULT_LOG_LEVEL,
    DEFAULT_DELIVERY_INTERVAL, DEFAULT_CONNECT_TIMEOUT, DEFAULT_FETCH_TIMEOUT, DEFAULT_MAX_FEED_BYTES,
    DEFAULT_PUBLISH_TIMEOUT, DEFAULT_MAX_ATTEMPTS, DEFAULT_RETRY_BACKOFF_MAX, DEFAULT_TEMPLATE,
    DEFAULT_SOURCE_KIND, DEFAULT_PAGE_DELAY, DEFAULT_MAX_PAGES, MAX_PAGES_LIMIT, DEFAULT_HEALTH_LISTEN,
    CONFIG_SEARCH_PATH, LOG_LEVELS, SOURCE_KINDS, DEFAULT_BURST_LIMIT, DEFAULT_KEEP, KEEP_FOREVER, MIN_KEEP,
    DEFAULT_LANGUAGE, LANGUAGES, DEFAULT_POLL_CONCURRENCY, MAX_POLL_CONCURRENCY,
)
from bridge.config.alerts import AlertsConfig, parse_alerts
from bridge.config.headers import parse_request_headers, secret_header_values
from bridge.config.targets import TargetConfig, parse_targets
from bridge.config.values import (
    NAME_RE, FirstRun, TableReader, database_url_problem, did_you_mean, parse_duration, resolve_database_url,
    suggestion, table_of, unknown_keys,
)
from bridge.errors import ConfigError
from bridge.filters import Filters
from bridge.secrets import load_credentials
from bridge.sources.presets import LAYOUT_KEYS, PRESETS, Layout, resolve_layout

_BRIDGE_KEYS = {
    "database", "poll_interval", "first_run", "dry_run", "timezone", "log_level", "delivery_interval",
    "connect_timeout", "fetch_timeout", "max_feed_bytes", "publish_timeout", "max_attempts",
    "retry_backoff_max", "user_agent", "health_listen",
}
_BRIDGE_KEYS |= {"page_delay", "burst_limit", "keep", "language", "poll_concurrency"}
_SOURCE_KEYS = {"user_agent", "headers"}
_SOURCE_KEYS |= {"name", "url", "kind", "targets", "template", "poll_interval", "first_run",
                "max_age", "hashtags", "category_hashtags", "images", "burst_limit", "enabled",
                "include", "exclude"}
_HTML_SOURCE_KEYS = {"timezone", "preset", "max_pages", "story_pages", "allow_empty", *LAYOUT_KEYS}


@dataclass(frozen=True)
class SourceConfig:
    name: str
    url: str
    kind: str
    targets: tuple[str, ...]
    template: str | None
    poll_interval: timedelta
    first_run: FirstRun
    max_age: timedelta | None = None
    """A story older than this when first seen is recorded as skipped, never posted."""
    hashtags: tuple[str, ...] = ()
    category_hashtags: bool = False
    images: bool = True
    timezone: str = DEFAULT_TIMEZONE
    """Zone of dates the source writes without one (and of `bridge preview`'s dates)."""
    layout: Layout | None = None
    """Selectors for html (and auto) sources: a preset with the source's overrides."""
    max_pages: int = DEFAULT_MAX_PAGES
    story_pages: bool = True
    burst_limit: int = DEFAULT_BURST_LIMIT
    """More new stories than this in one poll of a source read before are held for the operator."""
    allow_empty: bool = False
    """An html listing that may hold no stories (an agenda page between events): zero rows is then
    a quiet poll, not a layout-drift error. It also turns drift detection off for that source."""
    """Read each new story's page for its summary, lead image and time (html sources)."""
    request_headers: tuple[tuple[str, str], ...] = ()
    """The source's own `user_agent` and `headers`, sent with each of its requests (story pages too)."""
    enabled: bool = True
    """False: never read (daemon, `run --once`, rehearsal, `catchup`); what it queued before keeps its
    state and is delivered as usual (`bridge skip ID` drops one)."""
    filters: Filters = field(default_factory=Filters)
    """`include` / `exclude` keyword rules for every target of this source (bridge.filters)."""


@dataclass(frozen=True)
class BridgeSettings:
    database: str
    poll_interval: timedelta
    first_run: FirstRun
    dry_run: bool
    timezone: str
    log_level: str
    delivery_interval: timedelta
    connect_timeout: timedelta
    fetch_timeout: timedelta
    max_feed_bytes: int
    publish_timeout: timedelta
    max_attempts: int
    retry_backoff_max: timedelta
    user_agent: str | None
    page_delay: timedelta = field(default_factory=lambda: parse_duration(DEFAULT_PAGE_DELAY))
    burst_limit: int = DEFAULT_BURST_LIMIT
    poll_concurrency: int = DEFAULT_POLL_CONCURRENCY
    """Sources polled at once (each host still one request at a time, page_delay apart)."""
    health_listen: str | None = DEFAULT_HEALTH_LISTEN
    """"host:port" (or "[::1]:port") of the /healthz and /metrics endpoint; None: no endpoint."""
    keep: timedelta | None = field(default_factory=lambda: parse_duration(DEFAULT_KEEP))
    """How long a story keeps its text (store/maintenance.py prunes older ones); None: forever."""
    language: str = DEFAULT_LANGUAGE
    """Of the PR office's page (bridge/dashboard): "id" or "en"."""
    dashboard_token: str | None = field(default=None, repr=False)
    """The secret the page asks for when health_listen is not a loopback address
    ($BRIDGE_DASHBOARD_TOKEN or the credential file dashboard/token); None: not set."""


@dataclass(frozen=True)
class Config:
    path: Path | None
    bridge: BridgeSettings
    sources: tuple[SourceConfig, ...]
    targets: Mapping[str, TargetConfig]
    alerts: AlertsConfig | None = None
    """[alerts]: where to tell the operator that something needs a person; None sends none."""

    def source(self, name: str) -> SourceConfig:
        """KeyError when no source has that name. Every poll asks: a lookup, not a scan of thousands."""
        return self._sources_by_name[name]

    @cached_property
    def _sources_by_name(self) -> dict[str, SourceConfig]:
        # Names are unique (the parser refuses a repeated one); a frozen dataclass still takes this
        # cache, which cached_property writes to the instance's __dict__ without __setattr__.
        return {source.name: source for source in self.sources}

    @property
    def enabled_sources(self) -> tuple[SourceConfig, ...]:
        """The sources that are read: every one without `enabled = false`."""
        return tuple(source for source in self.sources if source.enabled)

    def secrets(self) -> list[str]:
        """Every credential value, for log redaction."""
        return [v for t in self.targets.values() for v in t.credentials.values() if v] + (
            self.alerts.secrets() if self.alerts else []) + [
            v for s in self.sources for v in secret_header_values(s.request_headers)] + (
            [self.bridge.dashboard_token] if self.bridge.dashboard_token else [])

    @staticmethod
    def template_for(source: SourceConfig | None, target: TargetConfig) -> str:
        """A target's template wins over its source's, which wins over the default. `source` is
        None for a story whose source was removed from settings.toml after it was queued."""
        return (target.template or target.kind_template or (source.template if source else None)
                or DEFAULT_TEMPLATE)


# --- Locating and loading ------------------------------------------------------------------------


def find_config_path(cli_path: str | None, environ: Mapping[str, str] = os.environ) -> Path:
    """--config, else $BRIDGE_CONFIG, else ./settings.toml, else /etc/bridge/settings.toml."""
    if cli_path:
        return Path(cli_path)
    if environ.get("BRIDGE_CONFIG"):
        return Path(environ["BRIDGE_CONFIG"])
    for candidate in CONFIG_SEARCH_PATH:
        if candidate.is_file():
            return candidate
    searched = ", ".join(str(p) for p in CONFIG_SEARCH_PATH)
    raise ConfigError([f"no settings file found (looked for --config, $BRIDGE_CONFIG, {searched})"])


def load_config(
    path: Path, *, environ: Mapping[str, str] = os.environ, dry_run: bool | None = None,
    secrets: bool = True,
) -> Config:
    """Read, validate and resolve the whole file. `dry_run` (from the CLI) overrides the file's;
    `secrets=False` (commands that never post) reads no credentials, keeping the file's dry_run."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"file not found: {path}"], str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"cannot read {path}: {exc}"], str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"not valid TOML: {exc}"], str(path)) from None
    return parse_config(raw, path=path, environ=environ, dry_run=dry_run, secrets=secrets)


def parse_config(
    raw: dict[str, Any], *, path: Path | None = None, environ: Mapping[str, str] = os.environ,
    dry_run: bool | None = None, secrets: bool = True,
) -> Config:
    problems: list[str] = []
    unknown_keys(raw, {"bridge", "sources", "targets", "alerts"}, "", problems)
    bridge = _parse_bridge(table_of(raw, "bridge", problems), problems, environ, read_secrets=secrets)
    if dry_run is not None and bridge is not None:
        bridge = replace(bridge, dry_run=dry_run)
    live = secrets and bridge is not None and not bridge.dry_run
    targets = parse_targets(raw.get("targets", {}), problems, environ, live)
    # A [targets.*] table that is there but broken is reported as itself, not as missing.
    declared = set(raw["targets"]) if isinstance(raw.get("targets"), dict) else set()
    sources = _parse_sources(raw.get("sources", []), problems, bridge, set(targets) | declared)
    alerts = parse_alerts(raw.get("alerts"), problems, environ if live else {}, set(targets) | declared)
    if not problems:
        _check_templates_fit(sources, targets, problems)
    if problems or bridge is None:
        raise ConfigError(problems, str(path) if path else None)
    return Config(path=path, bridge=bridge, sources=tuple(sources), targets=targets, alerts=alerts)


def _check_templates_fit(sources: list[SourceConfig], targets: dict[str, TargetConfig],
                         problems: list[str]) -> None:
    """A template whose own text leaves no room for the link would fail every post: say so now.
    Each (template, network) is tried once, not once per source (thousands of sources share a few
    templates), and by the network's cheap upper count first: every command reads settings.toml,
    and X's own count would load twitter-text (~0.2 s) for a template that plainly fits."""
    from bridge.compose import LengthRule, compose
    from bridge.errors import PostRejected
    from bridge.model import Item
    from bridge.publish import length_rule_for

    probe = Item(key="probe", title="", link="https://example.com/berita/1")
    verdicts: dict[tuple, str | None] = {}
    fields: dict[str, set[str]] = {}

    def misfit(template: str, source_name: str | None, kind: str) -> str | None:
        rule = length_rule_for(kind)
        rules = [LengthRule(rule.max_length, rule.at_most), rule] if rule.at_most else [rule]
        for candidate in rules:
            try:
                compose(template, probe, source=source_name or "", rule=candidate)
                return None
            except PostRejected as exc:
                problem = str(exc)
        return problem

    for source in sources:
        for name in source.targets:
            target = targets[name]
            template = Config.template_for(source, target)
            if template not in fields:
                fields[template] = template_fields(template)
            used = fields[template]
            if "url" not in used:
                continue
            key = (template, source.name if "source" in used else None, target.kind)
            if key not in verdicts:
                verdicts[key] = misfit(*key)
            if verdicts[key] is not None:
                where = f"targets.{name}.template" if target.template else f"sources ({source.name}).template"
                problems.append(f"{where}: leaves no room for the link on {target.kind}: {verdicts[key]}")


# --- Sections ------------------------------------------------------------------------------------


def _parse_bridge(table: dict, problems: list[str], environ: Mapping[str, str], *,
                  read_secrets: bool = True) -> BridgeSettings | None:
    before = len(problems)
    unknown_keys(table, _BRIDGE_KEYS, "bridge", problems)
    get = TableReader(table, "bridge", problems)
    timezone = get.string("timezone", DEFAULT_TIMEZONE)
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"bridge.timezone: unknown time zone {timezone!r} (use an IANA name like 'Asia/Jakarta')")
    log_level = get.string("log_level", DEFAULT_LOG_LEVEL).lower()
    if log_level not in LOG_LEVELS:
        problems.append(f"bridge.log_level: {log_level!r} is not one of {', '.join(LOG_LEVELS)}")
    language = get.string("language", DEFAULT_LANGUAGE)
    if language not in LANGUAGES:
        problems.append(f"bridge.language: {language!r} is not one of {', '.join(map(repr, LANGUAGES))}")
    database = get.string("database", DEFAULT_DATABASE)
    if (problem := database_url_problem(database)) is not None:
        problems.append(f"bridge.database: {problem}")
    settings = BridgeSettings(
        database=resolve_database_url(database, environ),
        poll_interval=get.duration("poll_interval", DEFAULT_POLL_INTERVAL),
        first_run=get.first_run("first_run", DEFAULT_FIRST_RUN),
        dry_run=get.boolean("dry_run", False),
        timezone=timezone,
        log_level=log_level,
        delivery_interval=get.duration("delivery_interval", DEFAULT_DELIVERY_INTERVAL),
        connect_timeout=get.duration("connect_timeout", DEFAULT_CONNECT_TIMEOUT),
        fetch_timeout=get.duration("fetch_timeout", DEFAULT_FETCH_TIMEOUT),
        max_feed_bytes=get.positive_int("max_feed_bytes", DEFAULT_MAX_FEED_BYTES),
        publish_timeout=get.duration("publish_timeout", DEFAULT_PUBLISH_TIMEOUT),
        max_attempts=get.positive_int("max_attempts", DEFAULT_MAX_ATTEMPTS),
        retry_backoff_max=get.duration("retry_backoff_max", DEFAULT_RETRY_BACKOFF_MAX),
        user_agent=get.string("user_agent", None),
        page_delay=get.duration("page_delay", DEFAULT_PAGE_DELAY),
        burst_limit=get.positive_int("burst_limit", DEFAULT_BURST_LIMIT),
        poll_concurrency=_poll_concurrency(get, problems),
        health_listen=get.listen_address("health_listen", DEFAULT_HEALTH_LISTEN),
        keep=_keep(get, problems),
        language=language,
        # Optional: without it a page off loopback is refused, /healthz and /metrics still answer.
        dashboard_token=(load_credentials("dashboard", ("token",), environ, problems, required=False).get("token")
                         if read_secrets else None),
    )
    return None if len(problems) > before else settings


def _keep(get: TableReader, problems: list[str]) -> timedelta | None:
    """[bridge] keep: a duration of at least MIN_KEEP, or "forever" (nothing is pruned)."""
    if get.table.get("keep") == KEEP_FOREVER:
        return None
    keep = get.duration("keep", DEFAULT_KEEP)
    if keep is not None and keep < parse_duration(MIN_KEEP):
        problems.append(f"bridge.keep: must be at least {MIN_KEEP}, or \"{KEEP_FOREVER}\" (got {get.table['keep']!r})")
    return keep


def _poll_concurrency(get: TableReader, problems: list[str]) -> int:
    value = get.positive_int("poll_concurrency", DEFAULT_POLL_CONCURRENCY)
    if value > MAX_POLL_CONCURRENCY:
        problems.append(f"bridge.poll_concurrency: at most {MAX_POLL_CONCURRENCY} (got {value})")
        return DEFAULT_POLL_CONCURRENCY
    return value


def _parse_sources(
    raw: Any, problems: list[str], bridge: BridgeSettings | None, target_names: set[str]
) -> list[SourceConfig]:
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        problems.append("sources: must be an array of tables, each starting with [[sources]]")
        return []
    if not raw:
        problems.append("sources: none configured; add at least one [[sources]] table")
    sources: list[SourceConfig] = []
    seen: set[str] = set()
    for index, table in enumerate(raw):
        where = f"sources[{index}]"
        unknown_keys(table, _SOURCE_KEYS | _HTML_SOURCE_KEYS, where, problems)
        get = TableReader(table, where, problems)
        name = get.string("name", None)
        if name is None:
            problems.append(f"{where}.name: required")
        elif not NAME_RE.match(name):
            problems.append(f"{where}.name: {name!r} may hold only letters, digits, '-' and '_'")
        elif name in seen:
            problems.append(f"{where}.name: {name!r} is used by another source; names must be unique")
        seen.add(name or "")
        if name:
            where = f"sources[{index}] ({name})"
            get.where = where
        url = get.url("url", None)
        if url is None:
            problems.append(f"{where}.url: required")
        kind = get.string("kind", DEFAULT_SOURCE_KIND)
        if kind not in SOURCE_KINDS:
            problems.append(f"{where}.kind: must be one of {', '.join(SOURCE_KINDS)} (got {kind!r})"
                            + suggestion(kind, SOURCE_KINDS))
        targets = get.str_list("targets")
        if not targets:
            problems.append(f"{where}.targets: required; name at least one target, e.g. targets = [\"x\"]")
        for target in targets:
            if target not in target_names:
                hint = did_you_mean(target, target_names)
                fix = f"{hint}; or add" if hint else "add"
                problems.append(f"{where}.targets: no target named {target!r}; {fix} a [targets.{target}] table")
        default_interval = bridge.poll_interval if bridge else timedelta(minutes=5)
        default_first_run = bridge.first_run if bridge else FirstRun("skip")
        sources.append(SourceConfig(
            name=name or "", url=url or "", kind=kind, targets=tuple(targets),
            template=get.template("template"),
            poll_interval=get.duration("poll_interval", None) or default_interval,
            first_run=get.first_run("first_run", None) or default_first_run,
            max_age=get.duration("max_age", None),
            hashtags=tuple(get.str_list("hashtags")),
            category_hashtags=get.boolean("category_hashtags", False),
            images=get.boolean("images", True),
            enabled=get.boolean("enabled", True),
            request_headers=parse_request_headers(table, get, problems),
            filters=get.filters(f"source {name}"),
            burst_limit=get.positive_int("burst_limit", bridge.burst_limit if bridge else DEFAULT_BURST_LIMIT),
            **_html_settings(table, kind, get, problems, bridge),
        ))
    return sources


def _html_settings(table: dict, kind: str, get: TableReader, problems: list[str],
                   bridge: BridgeSettings | None) -> dict[str, Any]:
    """timezone, layout (preset + selector overrides), max_pages and story_pages of one source."""
    where = get.where
    timezone = get.string("timezone", bridge.timezone if bridge else DEFAULT_TIMEZONE)
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"{where}.timezone: unknown time zone {timezone!r} (use an IANA name like 'Asia/Jakarta')")
        timezone = DEFAULT_TIMEZONE
    max_pages = get.positive_int("max_pages", DEFAULT_MAX_PAGES)
    if max_pages > MAX_PAGES_LIMIT:
        problems.append(f"{where}.max_pages: at most {MAX_PAGES_LIMIT} (got {max_pages})")
    settings = {"timezone": timezone, "max_pages": max_pages, "story_pages": get.boolean("story_pages", True),
                "allow_empty": get.boolean("allow_empty", False)}
    preset_name = get.string("preset", None)
    overrides = {key: get.string(key, None) for key in LAYOUT_KEYS if key in table}
    if kind == "feed":
        if preset_name or overrides:
            keys = ", ".join(sorted({*overrides, *(["preset"] if preset_name else [])}))
            problems.append(f'{where}: {keys} apply to kind = "html" or "auto", not "feed"')
        return settings
    preset = None
    if preset_name is not None:
        preset = PRESETS.get(preset_name)
        if preset is None:
            problems.append(f"{where}.preset: no preset named {preset_name!r}{suggestion(preset_name, PRESETS)} "
                            f"(presets: {', '.join(PRESETS)})")
            return settings
    settings["layout"] = resolve_layout(preset, overrides, kind, where, problems)
    return settings
