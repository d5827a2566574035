"""`bridge run --dry-run`: a rehearsal. Reads every source and logs what would be posted; changes nothing.

What it logs ("would post", one line per post): each new story for each of its targets, as the next
real poll would queue it (the source's first-run policy, max_age, stories already known, the keyword
filters), and each delivery already queued that is due and that the filters still let through
("would not post: filtered out" names the rule otherwise). What it never does: write to the database (no story marked
seen, no validators or failures stored, no delivery touched, no pause lifted, no start-up
recovery), create the database if it does not exist (every source is then new, so its first-run
policy decides), take the run lock (so it runs beside the service), download a photo (the log
names its URL), or post.

`dry_run = true` in settings.toml is another thing: a whole installation in rehearsal, which
records what it reads (stories it would have posted are stored as skipped), so that going live
posts no backlog. That path is the ordinary pipeline with dry-run publishers.

Run once (`--once`), it reads each source once. As a daemon it reads each source at its interval
and remembers in memory what it has read and logged, so each would-be post is logged once.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import structlog
from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from bridge.clock import Clock, utc_now
from bridge.config import Config, SourceConfig
from bridge.errors import DatabaseError, FetchError
from bridge.model import FrozenPost, Item
from bridge.pacing import hold_reason
from bridge.pipeline import (
    filter_reason, filtered_by_target, photos_wanted, skip_reasons, undated_first_seen, wants_photo,
)
from bridge.preview import dry_run_publishers, polite_fetcher, preview_post
from bridge.publish import Publisher
from bridge.sources.polite import PoliteFetcher
from bridge.sources.read import add_story_pages, read_source
from bridge.store.migrations import LATEST_VERSION, current_version
from bridge.store.repo import Repository, SourceState
from bridge.urls import names_a_page
from bridge.wake import Wake

log = structlog.get_logger("bridge")

QUEUED_LIMIT = 10_000
"""At most this many due deliveries per target are shown per round (a real round sends them all)."""


@dataclass
class Memory:
    """What this rehearsal has read and logged, in memory only (the database is never written)."""

    seen: dict[str, set[str]] = field(default_factory=dict)
    """Per source, the story keys read so far: known, as a real poll would have stored them."""
    validators: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    """Per source, the ETag and Last-Modified of its last full read."""
    logged: set[tuple[str, str, str, str]] = field(default_factory=set)
    """(target, source, story key, recipient) of every post logged, new or queued: each is logged once."""
    filtered: set[tuple[str, str, str]] = field(default_factory=set)
    """(target, source, story key) of every story logged as filtered out: each is logged once."""
    links: dict[tuple[str, str], str] = field(default_factory=dict)
    """(target, link) -> the source whose story showed it first in this rehearsal: another source's
    story with that article's link would be skipped by the delivery round, as same_story_elsewhere does."""


@dataclass(frozen=True)
class WouldPost:
    """One post the rehearsal found: new (delivery None) or already queued."""

    target: str
    source: str
    item: Item
    text: str
    length: int
    limit: int
    error: str | None = None
    delivery: int | None = None
    image_url: str | None = None
    """The photo the post would carry (never downloaded in a rehearsal)."""
    recipients: tuple[str, ...] = ()
    """Whom it goes to, for a target with recipients (WhatsApp: one message each)."""


# --- The database, read only --------------------------------------------------------------------


def open_read_only(url: str) -> Repository | None:
    """The database opened so that it cannot be written, or None when it does not exist yet (or has
    no tables): a rehearsal never creates or upgrades it."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database
        if not path or path == ":memory:" or not Path(path).exists():
            return None
        engine = create_engine(f"sqlite:///file:{Path(path).absolute()}?mode=ro&uri=true")
        statement = "PRAGMA query_only = ON"
    else:
        engine = create_engine(url, pool_pre_ping=True)
        statement = "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"

    @event.listens_for(engine, "connect")
    def _read_only(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(statement)
        cursor.close()
        if parsed.get_backend_name() != "sqlite":
            dbapi_connection.commit()

    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("sources"):
                engine.dispose()
                return None
            version = current_version(conn)
    except SQLAlchemyError as exc:
        engine.dispose()
        raise DatabaseError(f"cannot read database {parsed!r}: {exc.orig or exc}") from None
    if version != LATEST_VERSION:
        engine.dispose()
        raise DatabaseError(
            f"the database is at schema version {version}, this bridge reads {LATEST_VERSION}, and a rehearsal "
            "never upgrades it: " + ("upgrade bridge" if version > LATEST_VERSION else
                                     "restart the service (or run `bridge run --once`) once, then rehearse"))
    return Repository(engine)


# --- One round ------------------------------------------------------------------------------------


def rehearse_source(config: Config, repo: Repository | None, memory: Memory, fetcher: PoliteFetcher,
                    publishers: dict[str, Publisher], source: SourceConfig, now: datetime) -> list[WouldPost]:
    """The new stories a poll of `source` would queue now, composed for each of its targets."""
    state = repo.source_state(source.name) if repo else SourceState()
    moved = state.url is not None and state.url != source.url  # a new URL is a new feed: first run again
    first_run = (not state.initialised or moved) and source.name not in memory.seen
    etag, last_modified = memory.validators.get(source.name) or (
        (None, None) if moved else (state.etag, state.last_modified))
    try:
        read = read_source(fetcher, source, etag=etag, last_modified=last_modified,
                           previously_seen=state.last_items_seen)
    except FetchError as exc:
        log.warning("rehearsal: source unreadable", source=source.name, url=source.url, error=exc.reason)
        return []
    if read.not_modified:
        log.info("rehearsal: source unchanged", source=source.name)
        return []
    items = read.items
    seen = memory.seen.setdefault(source.name, set())
    # A moved source's stories stay seen (Repository.restart_source): only its first-run policy restarts.
    known = seen | (repo.known_keys(source.name, [i.key for i in items], {i.key: i.title for i in items})
                    if repo else set())
    first_seen = undated_first_seen(repo, items, source) if repo else {}
    skip = skip_reasons(items, source, first_run=first_run, catchup=False, now=now, first_seen=first_seen)
    to_post = {i.key for i in items if i.key not in known and i.key not in skip}
    items = add_story_pages(fetcher, source, read, to_post, photos=photos_wanted(config, source, publishers))
    if to_post:  # a story page may have dated a story: judge staleness again, as a poll does
        skip = skip_reasons(items, source, first_run=first_run, catchup=False, now=now, first_seen=first_seen)
    seen.update(i.key for i in items)
    memory.validators[source.name] = (read.etag, read.last_modified)
    to_post -= set(skip)
    filtered = filtered_by_target(config, source, items, to_post)  # as a poll judges them
    for item in items:
        for name, reason in filtered.get(item.key, {}).items():
            _log_filtered(memory, name, source.name, item, reason)
    log.info("rehearsal: read", source=source.name, items=len(items), new=len({i.key for i in items} - known),
             would_post=len({k for k in to_post if set(filtered.get(k, ())) < set(source.targets)}),
             first_run=first_run)
    sharing = Counter(item.url for item in items)
    return [_would_post(config, memory, publishers[name], name, source.name, source, item)
            for item in items if item.key in to_post
            for name in source.targets
            if name in publishers and name not in filtered.get(item.key, {})
            and _not_elsewhere(repo, memory, name, source.name, item, sharing[item.url])]


def _log_filtered(memory: Memory, target: str, source: str, item: Item, reason: str,
                  delivery: int | None = None) -> None:
    """A story a keyword filter takes out for `target` (new, or queued: the delivery round would skip
    it), logged once like a would-be post."""
    if (target, source, item.key) in memory.filtered:
        return
    memory.filtered.add((target, source, item.key))
    fields = {"delivery": delivery} if delivery is not None else {}
    log.info("would not post: filtered out", target=target, source=source, item=item.key, link=item.link,
             reason=reason, queued=delivery is not None, **fields)


def _not_elsewhere(repo: Repository | None, memory: Memory, target: str, source: str, item: Item,
                   stories_with_url: int) -> bool:
    """False when another source already carries this article to `target` (stored, or shown
    earlier in this rehearsal): the delivery round would skip it. Within one source the key decides."""
    if not item.url or not names_a_page(item.url) or stories_with_url > 1:
        return True
    shown_by = memory.links.get((target, item.url))
    if (shown_by is not None and shown_by != source) or (
            repo and repo.carried_elsewhere(item.url, source, target, stories_with_url=stories_with_url,
                                           title=item.title)):
        return False
    memory.links.setdefault((target, item.url), source)
    return True


def rehearse_queue(config: Config, repo: Repository | None, memory: Memory, publishers: dict[str, Publisher],
                   now: datetime) -> list[WouldPost]:
    """The deliveries already queued and due now, composed as the delivery round would."""
    if repo is None:
        return []
    found = []
    for name, publisher in publishers.items():
        # Posts in doubt are settled by their network's rule, not posted as such: not shown here.
        for delivery in repo.due_deliveries(name, now, limit=QUEUED_LIMIT, in_doubt=False):
            source = _source(config, delivery.source)
            reason = filter_reason(source, config.targets[name], delivery.item)
            if reason:  # the round judges it by the filters in force when it is sent
                _log_filtered(memory, name, delivery.source, delivery.item, reason, delivery.id)
                continue
            found.append(_would_post(config, memory, publisher, name, delivery.source, source, delivery.item,
                                     delivery=delivery.id, recipient=delivery.recipient,
                                     frozen=delivery.frozen))
    return found


def _would_post(config: Config, memory: Memory, publisher: Publisher, target: str, source_name: str,
                source: SourceConfig | None, item: Item, delivery: int | None = None,
                recipient: str | None = None, frozen: FrozenPost | None = None) -> WouldPost | None:
    """A new story goes to each of the target's recipients; a queued delivery to its own."""
    if recipient is None:  # a new story: one message per recipient of the target, if it has them
        recipients = config.targets[target].recipients
    else:
        recipients = (recipient,) if recipient else ()
    if (target, source_name, item.key, recipient or "") in memory.logged:
        return None
    memory.logged.add((target, source_name, item.key, recipient or ""))
    if frozen is not None:  # tried before: it goes out exactly as first sent
        rule = publisher.length_rule
        return WouldPost(target, source_name, item, frozen.text, rule.measure(frozen.text), rule.max_length, None,
                         delivery, frozen.image_url, recipients)
    post = preview_post(config, source, target, publisher, item, source_name=source_name)
    image = item.image_url if wants_photo(source, config.targets[target], publisher, item) else None
    return WouldPost(target, source_name, item, post.text, post.length, post.limit, post.error, delivery, image,
                     recipients)


def _source(config: Config, name: str) -> SourceConfig | None:
    try:
        return config.source(name)
    except KeyError:  # removed from settings.toml: its queued posts still go out
        return None


def report(config: Config, repo: Repository | None, posts: Iterable[WouldPost | None], now: datetime) -> list[WouldPost]:
    """Log each would-be post (the photo by its URL: a rehearsal downloads none); return them."""
    shown = []
    holds: dict[str, str | None] = {}
    for post in posts:
        if post is None:
            continue
        target = config.targets[post.target]
        if post.target not in holds:
            holds[post.target] = hold_reason(repo, target, config.bridge.timezone, now) if repo else None
        fields = {"target": post.target, "source": post.source, "item": post.item.key, "link": post.item.link}
        if post.delivery is not None:
            fields["delivery"] = post.delivery
        if post.recipients:
            fields["recipients"] = list(post.recipients)
        if post.error:
            log.warning("would not post: the story cannot be composed", reason=post.error, **fields)
            continue
        # Why the target would wait (quiet hours, a cap, a pause: a real start lifts pauses), if it would.
        held = {"held": holds[post.target]} if holds[post.target] else {}
        log.info("would post", text=post.text, length=post.length, limit=post.limit, image_url=post.image_url,
                 queued=post.delivery is not None, **held, **fields)
        shown.append(post)
    return shown


def rehearse_round(config: Config, repo: Repository | None, memory: Memory, fetcher: PoliteFetcher,
                   publishers: dict[str, Publisher], sources: Iterable[SourceConfig], now: datetime,
                   *, queue: bool = True) -> list[WouldPost]:
    """Read `sources`, then (with `queue`) look at the queue, as `bridge run --once` polls then delivers."""
    posts: list[WouldPost | None] = []
    for source in sources:
        posts += rehearse_source(config, repo, memory, fetcher, publishers, source, now)
    if queue:
        posts += rehearse_queue(config, repo, memory, publishers, now)
    return report(config, repo, posts, now)


# --- Once, or as a daemon ---------------------------------------------------------------------------


def rehearse(config: Config, stop: threading.Event | Wake, *, clock: Clock = utc_now, once: bool = False) -> list[WouldPost]:
    """`bridge run --dry-run`: until `stop` is set, read each source at its interval and the queue at
    the delivery interval, logging each would-be post once; with `once` (`--once`), every source
    once and then the queue. Returns every post logged. Raises DatabaseError if it cannot read."""
    repo = open_read_only(config.bridge.database)
    log.info("rehearsal: reading every source, storing nothing, posting nothing", sources=len(config.sources),
             database="not created yet: every source is new" if repo is None else "read only", once=once)
    memory, logged = Memory(), []
    targets = {name for source in config.sources for name in source.targets} | set(config.targets)
    try:
        with polite_fetcher(config) as fetcher, dry_run_publishers(config, targets) as publishers:
            next_read = {source.name: clock() for source in config.sources}
            next_queue = clock()
            while True:
                now = clock()
                due = [s for s in config.enabled_sources if next_read[s.name] <= now]
                for source in due:
                    next_read[source.name] = now + source.poll_interval
                queue = once or next_queue <= now
                if queue:
                    next_queue = now + config.bridge.delivery_interval
                try:
                    logged += rehearse_round(config, repo, memory, fetcher, publishers, due, now, queue=queue)
                except SQLAlchemyError as exc:
                    raise DatabaseError(f"cannot read database {repo.engine.url!r}: {exc.orig or exc}") from None
                if once:
                    break
                wake = min([*next_read.values(), next_queue])
                if stop.wait(max(0.0, (wake - clock()).total_seconds())):
                    break
    finally:
        if repo is not None:
            repo.engine.dispose()
    log.info("rehearsal done: nothing was stored or posted", would_post=len(logged))
    return logged
