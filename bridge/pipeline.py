"""The only code that chains the stages: poll(source) and deliver_due().

poll:    fetch (conditional GET) -> read (feed | html) -> story pages of new stories to post (html)
         -> store new items + their deliveries, in one go.
deliver: for each target, claim the oldest due delivery -> compose -> publish -> record the outcome.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Callable, Mapping, Sequence

import httpx
import structlog

from bridge.clock import Clock, capped_backoff, utc_now
from bridge.compose import LengthRule, compose
from bridge.config import Config, FirstRun, SourceConfig, TargetConfig
from bridge.errors import (
    AlreadyPosted, FetchError, InDoubt, PostRejected, PublishError, RetryLater, TargetPaused,
)
from bridge.hashtags import hashtags_for
from bridge.images import ImageError, download_image
from bridge.model import Delivery, DeliveryState, FrozenPost, Item, PollOutcome, Post
from bridge.pacing import hold_reason, over_budget, post_cost
from bridge.publish import Publisher
from bridge.sources.fetch import FetchLimits
from bridge.sources.polite import HostPacer, PoliteFetcher
from bridge.sources.read import add_story_pages, read_source
from bridge.store.repo import Repository

log = structlog.get_logger("bridge")

SOURCE_BACKOFF_MAX = timedelta(hours=6)
"""A failing source is retried at its interval, then twice that, ... but at least this often."""
CAUGHT_UP = "caught up: `bridge catchup`"
"""Why a catch-up's stories (new ones, and known ones still pending) are skipped."""
RETRY_AFTER_MAX = timedelta(hours=6)
"""A source's Retry-After is honoured up to this: a misconfigured server (a year, 10**20 s) must not
silence a source until an operator notices."""
PUBLISH_BACKOFF_BASE = timedelta(minutes=1)
"""First wait after a transient publish failure; doubles per attempt up to bridge.retry_backoff_max."""


@dataclass
class Runtime:
    """Everything the two pipeline functions need; built by the service, replaced on reload."""

    config: Config
    repo: Repository
    http: httpx.Client
    fetch_limits: FetchLimits
    publishers: Mapping[str, Publisher]
    clock: Clock = utc_now
    stopping: threading.Event = field(default_factory=threading.Event)
    delivery_lock: threading.Lock = field(default_factory=threading.Lock)
    logged_holds: dict = field(default_factory=dict)
    """Per target, the kind of hold last logged, so a hold is logged when it starts, not every round."""
    pacer: HostPacer | None = None
    """One request at a time per host, spaced by [bridge] page_delay; shared by every source's poll."""

    def __post_init__(self) -> None:
        if self.pacer is None:
            self.pacer = HostPacer(self.config.bridge.page_delay.total_seconds())


# --- Polling -------------------------------------------------------------------------------------


def poll(rt: Runtime, source: SourceConfig, *, catchup: bool = False, force: bool = False) -> PollOutcome:
    """Poll one source once. Never raises for a source's own failure: it is logged and stored."""
    now = rt.clock()
    state = rt.repo.source_state(source.name)
    if not force and state.consecutive_failures and state.next_poll_at and now < state.next_poll_at:
        return PollOutcome(source.name, "skipped_backoff")
    started = time.monotonic()
    # A new URL under an old name is a new feed: its stories were never seen, so the first-run
    # policy applies again (or the whole feed would be posted), and old validators mean nothing.
    if state.url is not None and state.url != source.url:
        log.info("source URL changed: reading it as a new feed", source=source.name, old_url=state.url,
                 url=source.url, first_run=str(source.first_run))
        state = rt.repo.restart_source(source.name, source.url, now)
    # A catch-up must see the whole feed, so it asks without the conditional-GET validators.
    etag, last_modified = (None, None) if catchup else (state.etag, state.last_modified)
    fetcher = PoliteFetcher(rt.http, rt.fetch_limits, rt.pacer)
    try:
        result = read_source(fetcher, source, etag=etag, last_modified=last_modified,
                             previously_seen=state.last_items_seen)
        if result.not_modified:
            rt.repo.record_not_modified(source.name, source.url, now, now + source.poll_interval)
            outcome = PollOutcome(source.name, "not_modified")
            _log_poll(outcome, started)
            return outcome
        items = result.items
    except FetchError as exc:
        return _record_failure(rt, source, exc, now, state.consecutive_failures + 1, started)

    first_run = not state.initialised
    skip = skip_reasons(items, source, first_run=first_run, catchup=catchup, now=now)
    # Story pages only for new stories that will be posted: known ones are never fetched again, and
    # a first run that only remembers costs no extra requests.
    known = rt.repo.known_keys(source.name, [item.key for item in items])
    to_post = {i.key for i in items if i.key not in known and i.key not in skip}
    items = add_story_pages(fetcher, source, result, to_post)
    if to_post:  # a page may have dated a story the listing left undated: judge staleness again
        skip = skip_reasons(items, source, first_run=first_run, catchup=catchup, now=now)
        to_post -= set(skip)
    hold = burst_reason(source, len(to_post)) if not first_run and not catchup else None
    stored = rt.repo.store_poll(
        source.name, source.url, items, source.targets, now=now, skip=skip,
        etag=result.etag, last_modified=result.last_modified, next_poll_at=now + source.poll_interval,
        recipients={name: rt.config.targets[name].recipients for name in source.targets
                    if name in rt.config.targets and rt.config.targets[name].recipients},
        hold=hold,
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
    _log_poll(outcome, started)
    return outcome


def burst_reason(source: SourceConfig, new_stories: int) -> str | None:
    """Why this poll's new stories are held, or None. A source read before that suddenly brings
    more than burst_limit new stories has most likely moved, changed its CMS's ids or broken: posting
    them all would flood the account with old news."""
    if new_stories <= source.burst_limit:
        return None
    return (f"burst: {new_stories} new stories in one poll (burst_limit {source.burst_limit}); "
            f"`bridge release {source.name}` posts them, `bridge catchup {source.name}` drops them")


def skip_reasons(items: Sequence[Item], source: SourceConfig, *, first_run: bool, catchup: bool,
                 now: datetime) -> dict[str, str]:
    """Which of these items must not be posted if new, and why: a catch-up posts nothing, a first
    run posts what its policy picks, and a story older than the source's max_age is stale."""
    if catchup:
        return {item.key: CAUGHT_UP for item in items}
    reasons: dict[str, str] = {}
    if first_run:
        chosen = choose_first_run_items(items, source.first_run)
        reasons = {item.key: f"first run ({source.first_run}): seen before posting started"
                   for item in items if chosen is not None and item.key not in chosen}
    if source.max_age:
        for item in items:
            if item.key not in reasons and item.published and item.published < now - source.max_age:
                reasons[item.key] = f"stale: published {item.published:%Y-%m-%d %H:%M} UTC, over max_age"
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


def _log_poll(outcome: PollOutcome, started: float) -> None:
    fields = {
        "source": outcome.source, "outcome": outcome.status, "duration_ms": _ms_since(started),
        **outcome.extra,
    }
    if outcome.status == "error":
        log.warning("poll failed", error=outcome.error, **fields)
        return
    if outcome.status == "ok":
        fields.update(items=outcome.items_seen, new=outcome.items_new, queued=outcome.deliveries_created)
        if outcome.first_run:
            fields["first_run"] = True
    log.info("polled", **fields)


# --- Delivering ----------------------------------------------------------------------------------
#
# Every publish call ends in one of three outcomes, which the network's module decides from what it
# saw (bridge.errors): never sent (RetryLater: back off and send again), may have been sent
# (InDoubt), sent (an id, or AlreadyPosted). A delivery in doubt is settled by its network's rule:
#   - the network refuses an identical re-send for a while (X's duplicate check, Mastodon's
#     Idempotency-Key): send the frozen post again within that time; the answer settles it;
#   - the account's recent posts can be read (find_post): look, after the network has had time to
#     show it; found is sent, not found is sent again;
#   - neither (Telegram, WhatsApp): it waits for the operator (`bridge resolve ID --sent`, `bridge
#     retry ID`), shown in `bridge status`.
# Posts left `sending` by a crash become in doubt at start-up and follow the same rules.

CurrentRuntime = Callable[[], Runtime]


def deliver_due(rt: Runtime | CurrentRuntime) -> int:
    """Send what is due to every target; returns how many deliveries were handled. One delivery
    round at a time per process: a second caller returns at once instead of queueing up. Given a
    function that returns the current runtime (the daemon's), every post re-reads it, so a reload
    (to dry_run = true, a new template, a removed target) applies from the next post on."""
    current: CurrentRuntime = rt if callable(rt) else (lambda: rt)
    first = current()
    if not first.delivery_lock.acquire(blocking=False):
        return 0
    try:
        return sum(_deliver_to_target(current, name) for name in list(first.config.targets))
    finally:
        first.delivery_lock.release()


def _deliver_to_target(current: CurrentRuntime, target: str) -> int:
    handled = 0
    seen: set[int] = set()
    while True:
        rt = current()
        publisher = rt.publishers.get(target)
        settings = rt.config.targets.get(target)
        if publisher is None or settings is None or rt.stopping.is_set():
            break
        now = rt.clock()
        if _held(rt, target, hold_reason(rt.repo, settings, rt.config.bridge.timezone, now)):
            break
        # A rehearsing installation (dry_run = true) leaves posts in doubt for the live one to settle.
        due = rt.repo.due_deliveries(target, now, limit=1, in_doubt=not _is_dry_run(publisher))
        if not due or due[0].id in seen:  # each delivery at most once a round, whatever its outcome
            break
        delivery = due[0]
        seen.add(delivery.id)
        handled += 1
        if not _attempt(rt, publisher, delivery):
            break
    return handled


def _held(rt: Runtime, target: str, reason: str | None) -> bool:
    """Log a hold when it starts (or its kind changes), not on every round while it lasts."""
    kind = reason.split(":")[0] if reason else None
    if kind != rt.logged_holds.get(target):
        if reason and not reason.startswith("paused"):  # a pause was logged loudly when it happened
            log.info("deliveries held", target=target, reason=reason)
        rt.logged_holds[target] = kind
    return reason is not None


def _fields(delivery: Delivery) -> dict:
    fields = {"target": delivery.target, "source": delivery.source, "item": delivery.item.key,
              "delivery": delivery.id, "url": delivery.item.link}
    if delivery.recipient:
        fields["recipient"] = delivery.recipient
    return fields


def _attempt(rt: Runtime, publisher: Publisher, delivery: Delivery) -> bool:
    """Handle one due delivery. Returns False when the target should not be tried again this round
    (paused, rate-limited, over budget, failing, in doubt)."""
    if delivery.state is DeliveryState.IN_DOUBT:
        return _settle_in_doubt(rt, publisher, delivery)
    fields = _fields(delivery)
    now = rt.clock()
    elsewhere = rt.repo.same_story_elsewhere(delivery)
    if elsewhere:
        rt.repo.mark_skipped(delivery.id, elsewhere, now)
        log.info("post skipped: same story already delivered", outcome="skipped", reason=elsewhere, **fields)
        return True
    try:
        frozen = delivery.frozen or freeze_post(rt, publisher, delivery)
    except Exception:  # a bug in composing: nothing was sent, keep the delivery and retry later
        log.exception("unexpected error while composing", **fields)
        return _retry_or_fail(rt, delivery, RetryLater("unexpected error while composing"), now, time.monotonic(),
                              fields)
    target = rt.config.targets[delivery.target]
    budget = over_budget(rt.repo, target, rt.config.bridge.timezone, now, frozen.cost)
    if budget and not _is_dry_run(publisher):
        _held(rt, delivery.target, budget)
        return False
    if not rt.repo.claim(delivery, now, frozen):
        return True  # the operator changed it meanwhile
    return _publish(rt, publisher, delivery, frozen, resend=False)


def freeze_post(rt: Runtime, publisher: Publisher, delivery: Delivery) -> FrozenPost:
    """Compose the post a delivery will send, once: from now on its text, photo and cost are fixed."""
    source = _source(rt, delivery)
    target = rt.config.targets[delivery.target]
    post = compose_post(source, target, delivery.item, publisher, source_name=delivery.source)
    image_url = post.image_url if wants_photo(source, target, publisher, delivery.item) else None
    return FrozenPost(text=post.text, image_url=image_url, alt_text=post.title if image_url else "",
                      cost=post_cost(target, post.text))


def _post_of(delivery: Delivery, frozen: FrozenPost) -> Post:
    item = delivery.item
    return Post(text=frozen.text, link=item.link, title=item.title, summary=item.summary,
                image_url=frozen.image_url, recipient=delivery.recipient or None)


def idempotency_key(rt: Runtime, delivery: Delivery) -> str:
    """One key per delivery, unique across installations: a recreated database never reuses one."""
    return f"bridge-{rt.repo.installation_id()}-{delivery.id}"


def _publish(rt: Runtime, publisher: Publisher, delivery: Delivery, frozen: FrozenPost, *, resend: bool) -> bool:
    """Send the frozen post of a claimed delivery and record the outcome. `resend`: an earlier
    attempt may have gone out, so "never sent" this time still leaves the delivery in doubt."""
    started = time.monotonic()
    fields = _fields(delivery)
    now = rt.clock()
    post = _post_of(delivery, frozen)
    if frozen.image_url and not _is_dry_run(publisher):
        post = _with_photo(rt, publisher, post, frozen, fields)
    try:
        try:
            remote_id = publisher.publish(post, idempotency_key=idempotency_key(rt, delivery))
        finally:
            charge_billed_calls(rt, publisher, delivery.target)
    except AlreadyPosted as exc:
        rt.repo.mark_sent(delivery.id, exc.remote_id, rt.clock(), note=exc.message)
        log.info("already posted", outcome="sent", reason=exc.message, duration_ms=_ms_since(started), **fields)
        return True
    except RetryLater as exc:
        if resend:  # this re-send was refused, but the first attempt may still be on the account
            if exc.retry_at:
                rt.repo.hold_target(delivery.target, exc.retry_at)
            return _in_doubt(rt, publisher, delivery, f"re-send not taken: {exc.message}", started,
                             counted=exc.counts_as_attempt, not_before=exc.retry_at)
        return _retry_or_fail(rt, delivery, exc, now, started, fields)
    except InDoubt as exc:
        return _in_doubt(rt, publisher, delivery, exc.message, started)
    except TargetPaused as exc:
        if resend:
            rt.repo.mark_in_doubt(delivery.id, delivery.last_error or exc.message, now, now, counted=False)
        else:
            rt.repo.release(delivery.id, now)
        rt.repo.pause_target(delivery.target, exc.message, now)
        log.error("target paused", reason=exc.message, duration_ms=_ms_since(started), **fields)
        return False
    except PostRejected as exc:
        rt.repo.mark_failed(delivery.id, exc.message, rt.clock())
        log.error("post rejected", outcome="failed", reason=exc.message, duration_ms=_ms_since(started), **fields)
        return True
    except Exception as exc:  # a bug or an unmapped library error inside the call: it may have gone out
        log.error("unexpected error while posting", error=f"{type(exc).__name__}: {exc}", **fields,
                  exc_info=rt.config.bridge.log_level == "debug")
        return _in_doubt(rt, publisher, delivery, f"unexpected error while posting: {type(exc).__name__}", started)
    if publisher.image_problem:
        log.warning("photo not attached", reason=publisher.image_problem, image_url=post.image_url, **fields)
    if _is_dry_run(publisher):
        rt.repo.mark_skipped(delivery.id, "dry run: not posted", rt.clock())
        log.info("post skipped (dry run)", outcome="dry_run", duration_ms=_ms_since(started), **fields)
        return True
    rt.repo.mark_sent(delivery.id, remote_id, rt.clock())
    log.info("posted", outcome="sent", remote_id=remote_id, photo=post.image is not None and not publisher.image_problem,
             cost=frozen.cost, duration_ms=_ms_since(started), **fields)
    if publisher.hold_until:  # the network's quota is used up: wait for its reset, not for a 429
        rt.repo.hold_target(delivery.target, publisher.hold_until)
    return True


def charge_billed_calls(rt: Runtime, publisher: Publisher, target: str) -> None:
    """Record what the network billed besides the post (X's alt-text call) for the daily budget."""
    prices = rt.config.targets[target].call_prices if target in rt.config.targets else {}
    for call in getattr(publisher, "billed_calls", None) or ():
        rt.repo.add_charge(target, prices.get(call, 0.0), call, rt.clock())


def _settle_in_doubt(rt: Runtime, publisher: Publisher, delivery: Delivery) -> bool:
    """A delivery in doubt whose next check is due: re-send, look, or hand it to the operator."""
    fields = _fields(delivery)
    now = rt.clock()
    frozen = delivery.frozen or freeze_post(rt, publisher, delivery)  # a row from before frozen posts
    first = delivery.first_attempt_at or now
    if _resend_is_safe(publisher, first, now):
        if not rt.repo.claim(delivery, now, frozen):
            return True
        log.info("re-sending a post in doubt (the network refuses a duplicate)", **fields)
        return _publish(rt, publisher, delivery, frozen, resend=True)
    find_post = getattr(publisher, "find_post", None)
    if find_post is None:
        rt.repo.mark_in_doubt(delivery.id, _operator_note(delivery), None, now, counted=False)
        log.warning("post in doubt: the operator decides", reason=delivery.last_error,
                    todo=f"bridge resolve {delivery.id} --sent (it is on the account) or bridge retry "
                         f"{delivery.id} (it is not)", **fields)
        return True
    check_at = (delivery.last_attempt_at or first) + publisher.verify_after
    if now < check_at:
        rt.repo.postpone(delivery.id, check_at, now)
        return True
    if not rt.repo.claim(delivery, now, frozen, attempt=False):
        return True
    started = time.monotonic()
    try:
        remote_id = find_post(_post_of(delivery, frozen), since=first)
    except PublishError as exc:
        return _in_doubt(rt, publisher, delivery, f"could not look for it on the account: {exc.message}", started)
    except Exception as exc:
        log.error("unexpected error while looking for a post", error=f"{type(exc).__name__}: {exc}", **fields)
        return _in_doubt(rt, publisher, delivery, f"could not look for it: {type(exc).__name__}", started)
    if remote_id:
        rt.repo.mark_sent(delivery.id, remote_id, rt.clock(), note="found on the account after an unclear answer")
        log.info("post in doubt found on the account", outcome="sent", remote_id=remote_id, **fields)
        return True
    log.info("post in doubt not on the account: sending it", **fields)
    rt.repo.record_attempt(delivery.id, rt.clock())
    return _publish(rt, publisher, delivery, frozen, resend=False)


def _resend_is_safe(publisher: Publisher, first_attempt: datetime, now: datetime) -> bool:
    window = getattr(publisher, "duplicate_safe_for", None)
    return window is not None and now - first_attempt < window


def _in_doubt(rt: Runtime, publisher: Publisher, delivery: Delivery, reason: str, started: float, *,
              counted: bool = True, not_before: datetime | None = None) -> bool:
    """Record a post that may be on the account, and when its network's rule looks at it next."""
    fields = _fields(delivery)
    now = rt.clock()
    attempts = delivery.attempts + (1 if counted else 0)
    first = delivery.first_attempt_at or now
    can_settle = _resend_is_safe(publisher, first, now) or getattr(publisher, "find_post", None) is not None
    if not can_settle or attempts >= rt.config.bridge.max_attempts:
        next_check, note = None, f"{reason}; {_operator_note(delivery)}"
    else:
        wait = capped_backoff(PUBLISH_BACKOFF_BASE, attempts, rt.config.bridge.retry_backoff_max)
        next_check = max(now + max(wait, getattr(publisher, "verify_after", timedelta(0))), not_before or now)
        note = reason
    rt.repo.mark_in_doubt(delivery.id, note, next_check, now, counted=counted)
    log.warning("post in doubt", outcome="in_doubt", reason=reason, attempts=attempts,
                next_check=next_check.isoformat() if next_check else None,
                todo=None if next_check else f"bridge resolve {delivery.id} --sent, or bridge retry {delivery.id}",
                duration_ms=_ms_since(started), **fields)
    return False


def _operator_note(delivery: Delivery) -> str:
    return (f"check the account: `bridge resolve {delivery.id} --sent` if the post is there, "
            f"`bridge retry {delivery.id}` if it is not")


def _is_dry_run(publisher: Publisher) -> bool:
    return getattr(publisher, "dry_run", False)


def _with_photo(rt: Runtime, publisher: Publisher, post: Post, frozen: FrozenPost, fields: dict) -> Post:
    """The post with its photo downloaded, or unchanged (and the reason logged) if that fails."""
    try:
        image = download_image(rt.http, frozen.image_url, rt.fetch_limits, max_bytes=publisher.max_image_bytes,
                               alt_text=frozen.alt_text)
    except ImageError as exc:
        log.warning("photo not attached", reason=str(exc), image_url=frozen.image_url, **fields)
        return post
    return replace(post, image=image)


def _retry_or_fail(rt: Runtime, delivery: Delivery, exc: RetryLater, now: datetime, started: float,
                   fields: dict) -> bool:
    attempts = delivery.attempts + (1 if exc.counts_as_attempt else 0)
    if exc.counts_as_attempt and attempts >= rt.config.bridge.max_attempts:
        rt.repo.mark_failed(delivery.id, f"gave up after {attempts} attempts: {exc.message}", now)
        log.error("post failed", outcome="failed", reason=exc.message, attempts=attempts,
                  duration_ms=_ms_since(started), **fields)
        return False
    if exc.retry_at:  # the network said when: hold the whole target, not just this post
        retry_at = exc.retry_at
        rt.repo.hold_target(delivery.target, retry_at)
    else:
        retry_at = now + capped_backoff(PUBLISH_BACKOFF_BASE, attempts, rt.config.bridge.retry_backoff_max)
    rt.repo.mark_retry(delivery.id, exc.message, retry_at, now, counted=exc.counts_as_attempt)
    log.warning("post deferred", outcome="retry", reason=exc.message, retry_at=retry_at.isoformat(),
                attempts=attempts, duration_ms=_ms_since(started), **fields)
    return False


def _source(rt: Runtime, delivery: Delivery) -> SourceConfig | None:
    try:
        return rt.config.source(delivery.source)
    except KeyError:  # the source was removed from settings.toml; its queued posts still go out
        return None


def wants_photo(source: SourceConfig | None, target: TargetConfig, publisher: Publisher, item: Item) -> bool:
    """The story has a photo, neither the source nor the target turned photos off, and the network
    takes them."""
    return (bool(item.image_url) and target.images and (source is None or source.images)
            and getattr(publisher, "takes_photos", True))


def length_rule_for_post(source: SourceConfig | None, target: TargetConfig, publisher: Publisher,
                         item: Item) -> LengthRule:
    """The network's rule, or its shorter one for posts with a photo (Telegram's caption)."""
    photo_rule = getattr(publisher, "photo_length_rule", None)
    return photo_rule if photo_rule and wants_photo(source, target, publisher, item) else publisher.length_rule


def compose_post(source: SourceConfig | None, target: TargetConfig, item: Item, publisher: Publisher,
                 source_name: str | None = None) -> Post:
    """The post one target gets for one story: its template, the source's hashtags, the network's
    length rule (a shorter one when the post carries a photo, like Telegram's caption). `bridge
    preview` calls this too, so what it shows is what is posted."""
    rule = length_rule_for_post(source, target, publisher, item)
    tags = hashtags_for(source.hashtags, item.categories, source.category_hashtags) if source else []
    return compose(Config.template_for(source, target), item, source=source_name or source.name,
                   rule=rule, hashtags=tags)


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
