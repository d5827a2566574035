"""poll(source): fetch (conditional GET) -> read (feed | html) -> story pages of new stories to
post (html) -> store new items and their deliveries, in one go; bursts held, first runs applied."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Mapping, Sequence

import structlog

from bridge.clock import capped_backoff
from bridge.config import FirstRun, SourceConfig
from bridge.errors import (
    FetchError,
)
from bridge.model import Item, PollOutcome
from bridge.pipeline.posts import filtered_by_target, photos_wanted
from bridge.pipeline.runtime import Runtime, ms_since
from bridge.sources.polite import PoliteFetcher
from bridge.sources.read import add_story_pages, read_source
from bridge.store.repo import SourceState
from bridge.urls import names_a_page

log = structlog.get_logger("bridge")

SOURCE_BACKOFF_MAX = timedelta(hours=6)
"""A failing source is retried at its interval, then twice that, ... but at least this often."""
CAUGHT_UP = "caught up: `bridge catchup`"
"""Why a catch-up's stories (new ones, and known ones still pending) are skipped."""
RETRY_AFTER_MAX = timedelta(hours=6)
"""A source's Retry-After is honoured up to this: a misconfigured server (a year, 10**20 s) must not
silence a source until an operator notices."""


def poll(rt: Runtime, source: SourceConfig, *, catchup: bool = False, force: bool = False,
         keep_backoff: bool = False) -> PollOutcome:
    """Poll one source once. Never raises for a source's own failure: it is logged and stored, except
    with `keep_backoff` (an operator's `catchup` or `poll`): then a failed fetch changes nothing, so
    trying by hand never pushes the source's next scheduled poll further away."""
    now = rt.clock()
    state = rt.repo.source_state(source.name)
    # Before the backoff check: the backoff was the old URL's (an operator who fixes a failing
    # source's URL wants it read now, not after up to SOURCE_BACKOFF_MAX).
    if state.url is not None and state.url != source.url:
        state = read_as_new_feed(rt, source, state.url) or rt.repo.source_state(source.name)
    if not force and state.consecutive_failures and state.next_poll_at and now < state.next_poll_at:
        return PollOutcome(source.name, "skipped_backoff")
    started = time.monotonic()
    # A catch-up must see the whole feed, so it asks without the conditional-GET validators.
    etag, last_modified = (None, None) if catchup else (state.etag, state.last_modified)
    fetcher = PoliteFetcher(rt.http, rt.fetch_limits, rt.pacer)
    try:
        result = read_source(fetcher, source, etag=etag, last_modified=last_modified,
                             previously_seen=state.last_items_seen,
                             parse=rt.parsers.parse if rt.parsers is not None else None)
        if result.not_modified:
            if state.last_outcome == "not_modified" and not state.consecutive_failures:
                rt.repo.unchanged.record(source.name, now, now + source.poll_interval, "not_modified")
            else:  # a change of state (recovered, or the first 304 after a read): written at once
                rt.repo.record_not_modified(source.name, source.url, now, now + source.poll_interval)
            outcome = PollOutcome(source.name, "not_modified")
            _log_poll(outcome, started, recovered_after=state.consecutive_failures)
            return outcome
        items = result.items
    except FetchError as exc:
        if keep_backoff:
            outcome = PollOutcome(source.name, "error", error=exc.reason, extra={"backoff": "unchanged"})
            _log_poll(outcome, started)
            return outcome
        return _record_failure(rt, source, exc, now, state.consecutive_failures + 1, started)

    first_run = not state.initialised
    seen = undated_first_seen(rt.repo, items, source)
    skip = skip_reasons(items, source, first_run=first_run, catchup=catchup, now=now, first_seen=seen)
    # Story pages only for new stories that will be posted: known ones are never fetched again, and
    # a first run that only remembers costs no extra requests.
    known = rt.repo.known_keys(source.name, [item.key for item in items], {item.key: item.title for item in items})
    if not catchup and _same_as_last_read(state, result, items, known):
        rt.repo.unchanged.record(source.name, now, now + source.poll_interval, "ok")
        outcome = PollOutcome(source.name, "ok", items_seen=len(items))
        _log_poll(outcome, started)
        return outcome
    to_post = {i.key for i in items if i.key not in known and i.key not in skip}
    items = add_story_pages(fetcher, source, result, to_post,
                            photos=photos_wanted(rt.config, source, rt.publishers))
    if to_post:  # a page may have dated a story the listing left undated: judge staleness again
        skip = skip_reasons(items, source, first_run=first_run, catchup=catchup, now=now, first_seen=seen)
        to_post -= set(skip)
    # Keyword filters are judged when a story's deliveries are created, with the story pages read
    # (the summary is matched too), like first_run and max_age: a refused story is stored `skipped`
    # with its rule at once, visible in status, never queued, and it does not count towards a burst.
    # The delivery round judges each delivery again with the filters in force when it is sent
    # (delivering._attempt), so after a reload tightened filters, a story still queued is held to
    # them; loosened filters never revive a story already skipped. Both ways, what decides is the
    # strictest word the operator has given for a story that has not gone out.
    filtered = filtered_by_target(rt.config, source, items, to_post)
    to_post -= {key for key, refused in filtered.items() if set(refused) >= set(source.targets)}
    hold = burst_reason(source, len(to_post)) if not first_run and not catchup else None
    stored = rt.repo.store_poll(
        source.name, source.url, items, source.targets, now=now, skip=skip,
        etag=result.etag, last_modified=result.last_modified, next_poll_at=now + source.poll_interval,
        recipients={name: rt.config.targets[name].recipients for name in source.targets
                    if name in rt.config.targets and rt.config.targets[name].recipients},
        hold=hold, filtered=filtered,
        # A first read with nothing in it (a CMS glitch, an empty channel) must not use up the
        # first-run policy: the next read would post everything it finds.
        initialise=bool(items) or source.allow_empty,
    )
    if hold:
        log.error("burst held: nothing from this poll is posted until you decide", source=source.name,
                  new=len(to_post), burst_limit=source.burst_limit, reason=hold)
    by_key = {item.key: item for item in items}
    for key in stored.queued_keys:
        log.info("new story", source=source.name, item=key, url=by_key[key].link, title=by_key[key].title)
    for key, refused in filtered.items():
        for target, reason in refused.items():
            log.info("story filtered out", source=source.name, item=key, target=target, reason=reason,
                     title=by_key[key].title)
    if catchup:  # stories known and still waiting are dropped too, a held burst included
        stored_skips = rt.repo.skip_pending_for_keys(
            source.name, [i.key for i in items], CAUGHT_UP, now) + rt.repo.skip_held(source.name, CAUGHT_UP, now)
    else:
        stored_skips = 0
    outcome = PollOutcome(
        source.name, "ok", items_seen=len(items), items_new=stored.new_items,
        deliveries_created=stored.pending, first_run=first_run,
        extra={"skipped": stored.skipped + stored_skips, **({"held": stored.held} if stored.held else {})},
    )
    _log_poll(outcome, started, recovered_after=state.consecutive_failures)
    return outcome


def _same_as_last_read(state, result, items: Sequence[Item], known: set[str]) -> bool:
    """A read that changes nothing but the source's timing: no story it has not stored, the same
    validators and count as the last read written, which ended well. Its state is then written in
    a batch (store/unchanged.py) rather than in a commit of its own."""
    return (state.initialised and state.last_outcome == "ok" and not state.consecutive_failures
            and len(known) == len(items) and state.last_items_seen == len(items)
            and (state.etag, state.last_modified) == (result.etag, result.last_modified))


def burst_reason(source: SourceConfig, new_stories: int) -> str | None:
    """Why this poll's new stories are held, or None. A source read before that suddenly brings
    more than burst_limit new stories has most likely moved, changed its CMS's ids or broken: posting
    them all would flood the account with old news."""
    if new_stories <= source.burst_limit:
        return None
    return (f"burst: {new_stories} new stories in one poll (burst_limit {source.burst_limit}); "
            f"`bridge release {source.name}` posts them, `bridge catchup {source.name}` drops them")


def undated_first_seen(repo, items: Sequence[Item], source: SourceConfig) -> dict[str, datetime]:
    """For max_age: when the bridge first saw the links of this poll's undated stories (through any
    source), by link identity. Only links that name one article count (not a site's home page)."""
    if not source.max_age:
        return {}
    urls = [item.url for item in items if item.published is None and item.url and names_a_page(item.url)]
    return repo.first_seen_by_url(urls) if urls else {}


def skip_reasons(items: Sequence[Item], source: SourceConfig, *, first_run: bool, catchup: bool,
                 now: datetime, first_seen: Mapping[str, datetime] | None = None) -> dict[str, str]:
    """Which of these items must not be posted if new, and why: a catch-up posts nothing, a first
    run posts what its policy picks, and a story older than the source's max_age is stale. A story
    without a date is as old as the bridge's first sight of its link (`first_seen`, by url; a link
    never seen is new now), so an undated story another source brought days ago is stale too."""
    if catchup:
        return {item.key: CAUGHT_UP for item in items}
    reasons: dict[str, str] = {}
    if first_run:
        chosen = choose_first_run_items(items, source.first_run)
        reasons = {item.key: f"first run ({source.first_run}): seen before posting started"
                   for item in items if chosen is not None and item.key not in chosen}
    if source.max_age:
        for item in items:
            if item.key in reasons:
                continue
            if item.published and item.published < now - source.max_age:
                reasons[item.key] = f"stale: published {item.published:%Y-%m-%d %H:%M} UTC, over max_age"
            elif (item.published is None and (seen := (first_seen or {}).get(item.url or ""))
                  and seen < now - source.max_age):
                reasons[item.key] = f"stale: no date, first seen {seen:%Y-%m-%d %H:%M} UTC, over max_age"
    return reasons


def choose_first_run_items(items: Sequence[Item], policy: FirstRun) -> set[str] | None:
    """skip -> nothing; all -> everything (None); latest:N -> the newest N, by date when every
    item has one, else in feed order (feeds list newest first)."""
    if policy.mode == "all":
        return None
    if policy.mode == "skip":
        return set()
    ordered = list(items)
    if ordered and all(item.published for item in ordered):
        ordered.sort(key=lambda item: item.published, reverse=True)
    return {item.key for item in ordered[: policy.count]}


def read_as_new_feed(rt: Runtime, source: SourceConfig, old_url: str, *, due_now: bool = False) -> SourceState | None:
    """A new URL under an old name is a new feed: its stories were never seen, so the first-run
    policy applies again (or the whole feed would be posted), and old validators and backoff mean
    nothing. The store's state moves from `old_url` only once: None when another replica or thread
    moved it first. `due_now` (asked before a shared poll's lease) makes the source due at once;
    otherwise its next_poll_at stays as it is, which on PostgreSQL is the lease of the poll under
    way, so no other replica polls the source meanwhile."""
    state = rt.repo.restart_source(source.name, old_url, source.url, due_now=due_now)
    if state is not None:
        log.info("source URL changed: reading it as a new feed", source=source.name, old_url=old_url,
                 url=source.url, first_run=str(source.first_run))
    return state


def _record_failure(
    rt: Runtime, source: SourceConfig, exc: FetchError, now: datetime, failures: int, started: float
) -> PollOutcome:
    wait = capped_backoff(source.poll_interval, failures, max(SOURCE_BACKOFF_MAX, source.poll_interval))
    extra = {"consecutive_failures": failures}
    retry_after = getattr(exc, "retry_after_seconds", None)
    if retry_after:
        # Compared in seconds first: timedelta() itself overflows on a Retry-After of 10**20.
        if retry_after > RETRY_AFTER_MAX.total_seconds():
            extra["retry_after_capped_s"] = int(retry_after)  # what the server asked, not honoured
            wait = max(wait, RETRY_AFTER_MAX)
        else:
            wait = max(wait, timedelta(seconds=retry_after))
    rt.repo.record_poll_failure(source.name, source.url, exc.reason, now, now + wait)
    outcome = PollOutcome(source.name, "error", error=exc.reason,
                          extra={**extra, "retry_in_s": int(wait.total_seconds())})
    _log_poll(outcome, started)
    return outcome


def _log_poll(outcome: PollOutcome, started: float, recovered_after: int = 0) -> None:
    """A poll that found nothing new logs at debug (thousands of sources would otherwise fill the
    journal with lines saying nothing happened; the cycle summary counts them). New stories,
    first runs, failures and a source that reads again after failing log at info or above."""
    fields = {
        "source": outcome.source, "outcome": outcome.status, "duration_ms": ms_since(started),
        **outcome.extra,
    }
    if outcome.status == "error":
        log.warning("poll failed", error=outcome.error, **fields)
        return
    if recovered_after and outcome.status in ("ok", "not_modified"):
        log.info("source reads again", source=outcome.source, after_failures=recovered_after)
    if outcome.status == "ok":
        fields.update(items=outcome.items_seen, new=outcome.items_new, queued=outcome.deliveries_created)
        if outcome.first_run:
            fields["first_run"] = True
    noteworthy = outcome.items_new or outcome.first_run or any(outcome.extra.get(k) for k in ("skipped", "held", "backoff"))
    (log.info if noteworthy else log.debug)("polled", **fields)
