"""Targets: the network kinds settings.toml knows, what each may say, and reading [targets.*]."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from datetime import time, timedelta
from typing import Any, Mapping

from bridge.config.defaults import (
    DEFAULT_GRAPH_API_VERSION, DEFAULT_MAX_PER_DAY, DEFAULT_PRICE_PER_LINK_POST, DEFAULT_PRICE_PER_POST,
    DEFAULT_PRICE_PER_MEDIA_METADATA, DEFAULT_PRICE_PER_VERIFY,
)
from bridge.config.values import NAME_RE, TableReader, suggestion, unknown_keys
from bridge.filters import Filters
from bridge.secrets import load_credentials


@dataclass(frozen=True)
class TargetOption:
    """One kind-specific setting of a target: its type, default, and whether it must be given."""

    type: str
    """"string", "boolean", "str_list", "lang_list" (BCP-47 language tags, at most `max_items`),
    "chat_id" (a string, or a whole number as TOML may write it) or "choice" (one of `choices`)."""
    default: Any = None
    required: bool = False
    choices: tuple[str, ...] = ()
    hint: str = ""
    """For a missing required setting: an example line to add."""
    max_items: int | None = None
    """For a list: how many items the network takes at most."""


_BCP47 = re.compile(
    r"(?:[a-z]{2,3}(?:-[a-z]{3}){0,3}|[a-z]{4,8})"  # language, extended language subtags
    r"(?:-[a-z]{4})?"  # script
    r"(?:-(?:[a-z]{2}|[0-9]{3}))?"  # region
    r"(?:-(?:[a-z0-9]{5,8}|[0-9][a-z0-9]{3}))*"  # variants
    r"(?:-[0-9a-wyz](?:-[a-z0-9]{2,8})+)*"  # extensions
    r"(?:-x(?:-[a-z0-9]{1,8})+)?"  # private use
    r"|x(?:-[a-z0-9]{1,8})+", re.IGNORECASE)
"""A well-formed BCP-47 language tag (RFC 5646, section 2.1; grandfathered tags aside)."""


@dataclass(frozen=True)
class TargetKind:
    """What settings.toml may say about a target of one kind, and which secrets it needs."""

    credential_fields: tuple[str, ...]
    default_api_base: str | None
    optional_credentials: tuple[str, ...] = ()
    """Secrets read the same way when present, never required (Facebook's app_secret)."""
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
    call_prices: Mapping[str, float] = field(default_factory=dict)
    """Default prices of the other calls the network bills (publisher.billed_calls names them)."""
    template: str | None = None
    """The template this network needs unless the target sets its own; it wins over the source's,
    which is written for posts (WhatsApp sends the composed text as one parameter of an approved
    message, next to the link)."""


TARGET_KINDS: dict[str, TargetKind] = {
    "x": TargetKind(
        credential_fields=("consumer_key", "consumer_secret", "access_token", "access_token_secret"),
        default_api_base="https://api.x.com",
        prices=(DEFAULT_PRICE_PER_POST, DEFAULT_PRICE_PER_LINK_POST),
        call_prices={"media_metadata": DEFAULT_PRICE_PER_MEDIA_METADATA, "verify": DEFAULT_PRICE_PER_VERIFY},
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
                 # app.bsky.feed.post langs: maxLength 3, each a BCP-47 tag (the lexicon's "language" format)
                 "langs": TargetOption("lang_list", ["id"], max_items=3, hint='langs = ["id", "en"]')},
        extra="bluesky", extra_module="atproto",
    ),
    "facebook": TargetKind(
        credential_fields=("page_token",),
        default_api_base="https://graph.facebook.com",
        optional_credentials=("app_secret",),
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

_TARGET_KEYS = {"kind", "min_interval", "max_per_day", "max_per_hour", "template", "images", "quiet_hours",
                "include", "exclude", "budget_per_day", "price_per_post", "price_per_link_post",
                "price_per_media_metadata", "price_per_verify"}
"""Keys every target may have; each kind adds its base_key (api_base, instance, service) and options."""


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
    call_prices: Mapping[str, float] = field(default_factory=dict)
    """USD per billed call other than the post, by the name the publisher gives it (X: media_metadata,
    verify), from price_per_<name>."""
    credentials: Mapping[str, str] = field(default_factory=dict, repr=False)
    """Empty in dry-run mode. repr=False so a logged config never shows a secret."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """The kind's own settings (chat_id, page_id, visibility, ...), validated, defaults filled in."""
    kind_template: str | None = None
    """The network's own template (TargetKind.template), used unless the target sets one."""
    max_per_hour: int | None = None
    """At most this many posts in any 60 minutes (a rolling hour, beside max_per_day); None: no cap."""
    filters: Filters = field(default_factory=Filters)
    """`include` / `exclude` keyword rules, applied on top of each source's (bridge.filters)."""

    @property
    def recipients(self) -> tuple[str, ...]:
        """Who each story goes to, one delivery each (WhatsApp); empty: the target itself."""
        return tuple(self.options.get("recipients") or ())


def parse_targets(
    raw: Any, problems: list[str], environ: Mapping[str, str], live: bool
) -> dict[str, TargetConfig]:
    if not isinstance(raw, dict):
        problems.append("targets: must be a table of tables like [targets.x]")
        return {}
    targets: dict[str, TargetConfig] = {}
    for name, table in raw.items():
        where = f"targets.{name}"
        if not NAME_RE.match(name):
            problems.append(f"{where}: a target name may hold only letters, digits, '-' and '_'")
        if not isinstance(table, dict):
            problems.append(f"{where}: must be a table")
            continue
        get = TableReader(table, where, problems)
        kind_name = get.string("kind", None)
        kind = TARGET_KINDS.get(kind_name or "")
        if kind is None:
            unknown_keys(table, _TARGET_KEYS | {"api_base"}, where, problems)
            problems.append(f"{where}.kind: must be one of {', '.join(TARGET_KINDS)} (got {kind_name!r})"
                            + suggestion(kind_name, TARGET_KINDS))
            continue
        unknown_keys(table, _TARGET_KEYS | {kind.base_key} | set(kind.options), where, problems)
        _check_extra(kind_name, kind, where, problems)
        api_base = get.url(kind.base_key, kind.default_api_base)
        if api_base is None:
            problems.append(f"{where}.{kind.base_key}: required for a {kind_name} target, e.g. "
                            f'{kind.base_key} = "https://mastodon.social"')
        credentials: dict[str, str] = {}
        if live:
            credentials = load_credentials(name, kind.credential_fields, environ, problems)
            credentials.update(load_credentials(name, kind.optional_credentials, environ, problems, required=False))
        price_per_post, price_per_link_post = kind.prices
        targets[name] = TargetConfig(
            name=name, kind=kind_name, api_base=api_base.rstrip("/") if api_base else "",
            min_interval=get.duration("min_interval", "0s"),
            max_per_day=get.positive_int("max_per_day", DEFAULT_MAX_PER_DAY),
            max_per_hour=get.positive_int("max_per_hour", None),
            filters=get.filters(f"target {name}"),
            template=get.template("template"), images=get.boolean("images", True),
            quiet_hours=get.daily_window("quiet_hours"),
            budget_per_day=get.amount("budget_per_day", None),
            price_per_post=get.amount("price_per_post", price_per_post),
            price_per_link_post=get.amount("price_per_link_post", price_per_link_post),
            call_prices={call: get.amount(f"price_per_{call}", price) for call, price in kind.call_prices.items()},
            credentials=credentials,
            options=_parse_options(get, kind_name, kind, problems),
            kind_template=kind.template,
        )
    return targets


def _parse_options(get: "TableReader", kind_name: str, kind: TargetKind, problems: list[str]) -> dict[str, Any]:
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
        elif option.type == "lang_list":
            value = get.str_list(key) if key in get.table else list(option.default or [])
            if option.max_items is not None and len(value) > option.max_items:
                problems.append(f"{get.where}.{key}: at most {option.max_items} languages (got {len(value)})")
            bad = [tag for tag in value if not _BCP47.fullmatch(tag)]
            if bad:
                problems.append(f"{get.where}.{key}: not a BCP-47 language tag: {', '.join(map(repr, bad))} "
                                f"(e.g. {option.hint})")
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
                problems.append(f"{get.where}.{key}: must be one of {', '.join(option.choices)} (got {value!r})"
                                + suggestion(value, option.choices))
            if option.required and isinstance(value, str) and not value.strip():
                problems.append(f"{get.where}.{key}: must not be empty, e.g. {option.hint}")
            options[key] = value
    return options


def _check_extra(kind_name: str, kind: TargetKind, where: str, problems: list[str]) -> None:
    """A network whose SDK is an optional extra: a clear problem naming the install command."""
    if kind.extra_module is None:
        return
    if importlib.util.find_spec(kind.extra_module) is None:
        problems.append(f"{where}.kind: {kind_name} needs its client library: pip install 'bridge[{kind.extra}]'")
