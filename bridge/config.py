"""settings.toml + secrets -> frozen, validated objects. Every default lives here.

The whole file is checked before anything starts, and every problem is reported with its key path,
so an operator fixes them all in one edit instead of one per restart.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from datetime import time, timedelta
from pathlib import Path
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bridge.clock import parse_daily_window
from bridge.compose import PLACEHOLDERS, template_fields
from bridge.errors import ConfigError
from bridge.secrets import load_credentials
from bridge.sources.presets import LAYOUT_KEYS, PRESETS, Layout, resolve_layout

# --- Defaults (the one place they live) ----------------------------------------------------------
DEFAULT_DATABASE = "sqlite:///bridge.db"
DEFAULT_POLL_INTERVAL = "5m"
DEFAULT_FIRST_RUN = "skip"
DEFAULT_TIMEZONE = "Asia/Jakarta"
DEFAULT_LOG_LEVEL = "info"
DEFAULT_DELIVERY_INTERVAL = "30s"
DEFAULT_CONNECT_TIMEOUT = "10s"
DEFAULT_FETCH_TIMEOUT = "20s"
DEFAULT_MAX_FEED_BYTES = 10 * 1024 * 1024
DEFAULT_PUBLISH_TIMEOUT = "20s"
DEFAULT_MAX_ATTEMPTS = 8
DEFAULT_RETRY_BACKOFF_MAX = "1h"
DEFAULT_MAX_PER_DAY = 50
DEFAULT_TEMPLATE = "{title} {url} {hashtags}"
DEFAULT_PRICE_PER_POST = 0.015
"""USD, X's pay-per-use price of a post without a link (2026-04); operators change it when X does."""
DEFAULT_PRICE_PER_LINK_POST = 0.20
"""USD, X's price of a post that contains a URL (2026-04)."""
DEFAULT_SOURCE_KIND = "auto"
DEFAULT_PAGE_DELAY = "2s"
"""Between two follow-up requests (story pages, next listing pages) to one host: see sources/pacing.py."""
DEFAULT_MAX_PAGES = 1
"""Listing pages read per poll. Polling every few minutes, page 1 holds everything new; a first run
only remembers what is there, so reading older pages would cost requests and post nothing."""
MAX_PAGES_LIMIT = 10
DEFAULT_HEALTH_LISTEN = None
"""No health/metrics endpoint unless [bridge] health_listen names an address."""
DEFAULT_GRAPH_API_VERSION = "v25.0"
"""Meta's Graph API version for Facebook Pages and WhatsApp (each version lives about two years)."""

CONFIG_SEARCH_PATH = (Path("settings.toml"), Path("/etc/bridge/settings.toml"))
LOG_LEVELS = ("debug", "info", "warning", "error")
SOURCE_KINDS = ("feed", "html", "auto")


@dataclass(frozen=True)
class TargetOption:
    """One kind-specific setting of a target: its type, default, and whether it must be given."""

    type: str
    """"string", "boolean", "str_list", "chat_id" (a string, or a whole number as TOML may write it) or
    "choice" (one of `choices`)."""
    default: Any = None
    required: bool = False
    choices: tuple[str, ...] = ()
    hint: str = ""
    """For a missing required setting: an example line to add."""


@dataclass(frozen=True)
class TargetKind:
    """What settings.toml may say about a target of one kind, and which secrets it needs."""

    credential_fields: tuple[str, ...]
    default_api_base: str | None
    """None: no default, the operator must say where (a Mastodon instance)."""
    base_key: str = "api_base"
    """The setting that says where requests go: api_base, or the network's own word for it
    (Mastodon's instance, Bluesky's service); it fills TargetConfig.api_base either way."""
    options: Mapping[str, TargetOption] = field(default_factory=dict)
    extra: str | None = None
    """The pip extra that installs this network's SDK, and the module that shows it is installed."""
    extra_module: str | None = None
    prices: tuple[float, float] = (0.0, 0.0)
    """Default (price_per_post, price_per_link_post) in USD: only X bills per post by default."""
    template: str | None = None
    """The template this network needs unless the target sets its own; it wins over the source's,
    which is written for posts (WhatsApp sends the composed text as one parameter of an approved
    message, next to the link)."""


TARGET_KINDS: dict[str, TargetKind] = {
    "x": TargetKind(
        credential_fields=("consumer_key", "consumer_secret", "access_token", "access_token_secret"),
        default_api_base="https://api.x.com",
        prices=(DEFAULT_PRICE_PER_POST, DEFAULT_PRICE_PER_LINK_POST),
    ),
    "telegram": TargetKind(
        credential_fields=("bot_token",),
        default_api_base="https://api.telegram.org",
        options={"chat_id": TargetOption("chat_id", required=True, hint='chat_id = "@channelname"')},
    ),
    "mastodon": TargetKind(
        credential_fields=("access_token",),
        default_api_base=None,
        base_key="instance",
        options={"visibility": TargetOption("choice", "public",
                                            choices=("public", "unlisted", "private", "direct"))},
        extra="mastodon", extra_module="mastodon",
    ),
    "bluesky": TargetKind(
        credential_fields=("app_password",),
        default_api_base="https://bsky.social",
        base_key="service",
        options={"handle": TargetOption("string", required=True, hint='handle = "kemenpora.bsky.social"'),
                 "langs": TargetOption("str_list", ["id"])},
        extra="bluesky", extra_module="atproto",
    ),
    "facebook": TargetKind(
        credential_fields=("page_token",),
        default_api_base="https://graph.facebook.com",
        options={"page_id": TargetOption("string", required=True, hint='page_id = "123456789"'),
                 "version": TargetOption("string", DEFAULT_GRAPH_API_VERSION),
                 "photo_posts": TargetOption("boolean", False)},
    ),
    "whatsapp": TargetKind(
        credential_fields=("access_token",),
        default_api_base="https://graph.facebook.com",
        options={"phone_number_id": TargetOption("string", required=True, hint='phone_number_id = "1098765"'),
                 "message_template": TargetOption("string", required=True,
                                                  hint='message_template = "berita_terbaru"'),
                 "language": TargetOption("string", "id"),
                 "recipients": TargetOption("str_list", required=True, hint='recipients = ["6281234567890"]'),
                 "version": TargetOption("string", DEFAULT_GRAPH_API_VERSION)},
        template="{title}",
    ),
}

_BRIDGE_KEYS = {
    "database", "poll_interval", "first_run", "dry_run", "timezone", "log_level", "delivery_interval",
    "connect_timeout", "fetch_timeout", "max_feed_bytes", "publish_timeout", "max_attempts",
    "retry_backoff_max", "user_agent", "health_listen",
}
_BRIDGE_KEYS |= {"page_delay"}
_SOURCE_KEYS = {"name", "url", "kind", "targets", "template", "poll_interval", "first_run",
                "max_age", "hashtags", "category_hashtags", "images"}
_HTML_SOURCE_KEYS = {"timezone", "preset", "max_pages", "story_pages", *LAYOUT_KEYS}
_TARGET_KEYS = {"kind", "min_interval", "max_per_day", "template", "images", "quiet_hours",
                "budget_per_day", "price_per_post", "price_per_link_post"}
"""Keys every target may have; each kind adds its base_key (api_base, instance, service) and options."""
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
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
    """Read each new story's page for its summary, lead image and time (html sources)."""


@dataclass(frozen=True)
class TargetConfig:
    name: str
    kind: str
    api_base: str
    min_interval: timedelta
    max_per_day: int
    template: str | None
    images: bool = True
    quiet_hours: tuple[time, time] | None = None
    """A local daily window (start, end; may span midnight) in [bridge] timezone without posts."""
    budget_per_day: float | None = None
    """USD a local day may cost at most; None: no cap."""
    price_per_post: float = DEFAULT_PRICE_PER_POST
    price_per_link_post: float = DEFAULT_PRICE_PER_LINK_POST
    credentials: Mapping[str, str] = field(default_factory=dict, repr=False)
    """Empty in dry-run mode. repr=False so a logged config never shows a secret."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """The kind's own settings (chat_id, page_id, visibility, ...), validated, defaults filled in."""
    kind_template: str | None = None
    """The network's own template (TargetKind.template), used unless the target sets one."""

    @property
    def recipients(self) -> tuple[str, ...]:
        """Who each story goes to, one delivery each (WhatsApp); empty: the target itself."""
        return tuple(self.options.get("recipients") or ())


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
    health_listen: str | None = DEFAULT_HEALTH_LISTEN
    """"host:port" (or "[::1]:port") of the /healthz and /metrics endpoint; None: no endpoint."""


@dataclass(frozen=True)
class Config:
    path: Path | None
    bridge: BridgeSettings
    sources: tuple[SourceConfig, ...]
    targets: Mapping[str, TargetConfig]

    def source(self, name: str) -> SourceConfig:
        for source in self.sources:
            if source.name == name:
                return source
        raise KeyError(name)

    def secrets(self) -> list[str]:
        """Every credential value, for log redaction."""
        return [v for t in self.targets.values() for v in t.credentials.values() if v]

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
    path: Path, *, environ: Mapping[str, str] = os.environ, dry_run: bool | None = None
) -> Config:
    """Read, validate and resolve the whole file. `dry_run` (from the CLI) overrides the file's."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"file not found: {path}"], str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"cannot read {path}: {exc}"], str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"not valid TOML: {exc}"], str(path)) from None
    return parse_config(raw, path=path, environ=environ, dry_run=dry_run)


def parse_config(
    raw: dict[str, Any], *, path: Path | None = None, environ: Mapping[str, str] = os.environ,
    dry_run: bool | None = None,
) -> Config:
    problems: list[str] = []
    _unknown_keys(raw, {"bridge", "sources", "targets"}, "", problems)
    bridge = _parse_bridge(_table(raw, "bridge", problems), problems, environ)
    if dry_run is not None and bridge is not None:
        bridge = _replace(bridge, dry_run=dry_run)
    live = bridge is not None and not bridge.dry_run
    targets = _parse_targets(raw.get("targets", {}), problems, environ, live)
    sources = _parse_sources(raw.get("sources", []), problems, bridge, set(targets))
    if not problems:
        _check_templates_fit(sources, targets, problems)
    if problems or bridge is None:
        raise ConfigError(problems, str(path) if path else None)
    return Config(path=path, bridge=bridge, sources=tuple(sources), targets=targets)


def _check_templates_fit(sources: list[SourceConfig], targets: dict[str, TargetConfig],
                         problems: list[str]) -> None:
    """A template whose own text leaves no room for the link would fail every post: say so now."""
    from bridge.compose import compose
    from bridge.errors import PostRejected
    from bridge.model import Item
    from bridge.publish import length_rule_for

    probe = Item(key="probe", title="", link="https://example.com/berita/1")
    for source in sources:
        for name in source.targets:
            target = targets[name]
            template = Config.template_for(source, target)
            if "url" not in template_fields(template):
                continue
            try:
                compose(template, probe, source=source.name, rule=length_rule_for(target.kind))
            except PostRejected as exc:
                where = f"targets.{name}.template" if target.template else f"sources ({source.name}).template"
                problems.append(f"{where}: leaves no room for the link on {target.kind}: {exc}")


# --- Sections ------------------------------------------------------------------------------------


def _parse_bridge(table: dict, problems: list[str], environ: Mapping[str, str]) -> BridgeSettings | None:
    before = len(problems)
    _unknown_keys(table, _BRIDGE_KEYS, "bridge", problems)
    get = _Getter(table, "bridge", problems)
    timezone = get.string("timezone", DEFAULT_TIMEZONE)
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"bridge.timezone: unknown time zone {timezone!r} (use an IANA name like 'Asia/Jakarta')")
    log_level = get.string("log_level", DEFAULT_LOG_LEVEL).lower()
    if log_level not in LOG_LEVELS:
        problems.append(f"bridge.log_level: {log_level!r} is not one of {', '.join(LOG_LEVELS)}")
    settings = BridgeSettings(
        database=resolve_database_url(get.string("database", DEFAULT_DATABASE), environ),
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
        health_listen=get.listen_address("health_listen", DEFAULT_HEALTH_LISTEN),
    )
    return None if len(problems) > before else settings


def _parse_targets(
    raw: Any, problems: list[str], environ: Mapping[str, str], live: bool
) -> dict[str, TargetConfig]:
    if not isinstance(raw, dict):
        problems.append("targets: must be a table of tables like [targets.x]")
        return {}
    targets: dict[str, TargetConfig] = {}
    for name, table in raw.items():
        where = f"targets.{name}"
        if not _NAME_RE.match(name):
            problems.append(f"{where}: a target name may hold only letters, digits, '-' and '_'")
        if not isinstance(table, dict):
            problems.append(f"{where}: must be a table")
            continue
        get = _Getter(table, where, problems)
        kind_name = get.string("kind", None)
        kind = TARGET_KINDS.get(kind_name or "")
        if kind is None:
            _unknown_keys(table, _TARGET_KEYS | {"api_base"}, where, problems)
            problems.append(f"{where}.kind: must be one of {', '.join(TARGET_KINDS)} (got {kind_name!r})")
            continue
        _unknown_keys(table, _TARGET_KEYS | {kind.base_key} | set(kind.options), where, problems)
        _check_extra(kind_name, kind, where, problems)
        api_base = get.url(kind.base_key, kind.default_api_base)
        if api_base is None:
            problems.append(f"{where}.{kind.base_key}: required for a {kind_name} target, e.g. "
                            f'{kind.base_key} = "https://mastodon.social"')
        credentials: dict[str, str] = {}
        if live:
            credentials = load_credentials(name, kind.credential_fields, environ, problems)
        price_per_post, price_per_link_post = kind.prices
        targets[name] = TargetConfig(
            name=name, kind=kind_name, api_base=api_base.rstrip("/") if api_base else "",
            min_interval=get.duration("min_interval", "0s"),
            max_per_day=get.positive_int("max_per_day", DEFAULT_MAX_PER_DAY),
            template=get.template("template"), images=get.boolean("images", True),
            quiet_hours=get.daily_window("quiet_hours"),
            budget_per_day=get.amount("budget_per_day", None),
            price_per_post=get.amount("price_per_post", price_per_post),
            price_per_link_post=get.amount("price_per_link_post", price_per_link_post),
            credentials=credentials,
            options=_parse_options(get, kind_name, kind, problems),
            kind_template=kind.template,
        )
    return targets


def _parse_options(get: "_Getter", kind_name: str, kind: TargetKind, problems: list[str]) -> dict[str, Any]:
    """The kind's own settings, each checked for its type; a missing required one says what to add."""
    options: dict[str, Any] = {}
    for key, option in kind.options.items():
        if option.required and key not in get.table:
            problems.append(f"{get.where}.{key}: required for a {kind_name} target, e.g. {option.hint}")
            continue
        if option.type == "boolean":
            options[key] = get.boolean(key, option.default)
        elif option.type == "str_list":
            value = get.str_list(key) if key in get.table else list(option.default or [])
            if option.required and not value:
                problems.append(f"{get.where}.{key}: name at least one, e.g. {option.hint}")
            options[key] = tuple(value)
        elif option.type == "chat_id":
            value = get.table.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                value = str(value)  # chat_id = -1001234567890 written as a TOML number
            if not isinstance(value, str) or not value.strip():
                problems.append(f"{get.where}.{key}: must be \"@channelname\" or a numeric id (got {value!r})")
            options[key] = value
        else:
            value = get.string(key, option.default)
            if option.choices and value not in option.choices:
                problems.append(f"{get.where}.{key}: must be one of {', '.join(option.choices)} (got {value!r})")
            if option.required and isinstance(value, str) and not value.strip():
                problems.append(f"{get.where}.{key}: must not be empty, e.g. {option.hint}")
            options[key] = value
    return options


def _check_extra(kind_name: str, kind: TargetKind, where: str, problems: list[str]) -> None:
    """A network whose SDK is an optional extra: a clear problem naming the install command."""
    if kind.extra_module is None:
        return
    import importlib.util

    if importlib.util.find_spec(kind.extra_module) is None:
        problems.append(f"{where}.kind: {kind_name} needs its client library: pip install 'bridge[{kind.extra}]'")


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
        _unknown_keys(table, _SOURCE_KEYS | _HTML_SOURCE_KEYS, where, problems)
        get = _Getter(table, where, problems)
        name = get.string("name", None)
        if name is None:
            problems.append(f"{where}.name: required")
        elif not _NAME_RE.match(name):
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
            problems.append(f"{where}.kind: must be one of {', '.join(SOURCE_KINDS)} (got {kind!r})")
        targets = get.str_list("targets")
        if not targets:
            problems.append(f"{where}.targets: required; name at least one target, e.g. targets = [\"x\"]")
        for target in targets:
            if target not in target_names:
                problems.append(f"{where}.targets: no target named {target!r}; add a [targets.{target}] table")
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
            **_html_settings(table, kind, get, problems, bridge),
        ))
    return sources


def _html_settings(table: dict, kind: str, get: _Getter, problems: list[str],
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
    settings = {"timezone": timezone, "max_pages": max_pages, "story_pages": get.boolean("story_pages", True)}
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
            problems.append(f"{where}.preset: no preset named {preset_name!r} (presets: {', '.join(PRESETS)})")
            return settings
    settings["layout"] = resolve_layout(preset, overrides, kind, where, problems)
    return settings


# --- Values --------------------------------------------------------------------------------------


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


def resolve_database_url(url: str, environ: Mapping[str, str] = os.environ) -> str:
    """A relative SQLite path lives in $STATE_DIRECTORY (systemd's StateDirectory=), else ./state."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url.startswith(prefix + "/") or url == prefix:
        return url
    relative, _, query = url[len(prefix):].partition("?")
    if relative == ":memory:":
        return url
    state_dir = Path(environ.get("STATE_DIRECTORY", "").split(":")[0] or "state")
    resolved = prefix + str((state_dir / relative).absolute())
    return resolved + (f"?{query}" if query else "")


class _Getter:
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
            self.problems.append(
                f"{self.where}.{key}: unknown placeholder(s) {', '.join(sorted(unknown))}; use {allowed}"
            )
        return value


def _table(raw: dict, key: str, problems: list[str]) -> dict:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        problems.append(f"{key}: must be a table like [{key}]")
        return {}
    return value


def _unknown_keys(table: dict, allowed: set[str], where: str, problems: list[str]) -> None:
    for key in table:
        if key not in allowed:
            path = f"{where}.{key}" if where else key
            problems.append(f"{path}: unknown key (allowed: {', '.join(sorted(allowed))})")


def _replace(settings: BridgeSettings, **changes: Any) -> BridgeSettings:
    from dataclasses import replace

    return replace(settings, **changes)
