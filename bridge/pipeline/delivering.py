"""deliver_due(): for each target, the oldest due delivery -> its frozen post -> publish -> the
outcome, decided from evidence (see below)."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta

import structlog

from bridge.clock import capped_backoff
from bridge.errors import (
    AlreadyPosted, InDoubt, PostRejected, PublishError, RetryLater, TargetPaused, settle_in_doubt_hint,
)
from bridge.images import ImageError, download_image
from bridge.model import Delivery, DeliveryState, FrozenPost, Post
from bridge.pacing import hold_reason, over_budget
from bridge.pipeline.posts import filter_reason, freeze_post, idempotency_key, post_of
from bridge.pipeline.runtime import CurrentRuntime, Runtime, ms_since, source_of
from bridge.publish import Publisher
from bridge.store.outbox import shared_store

log = structlog.get_logger("bridge")

PUBLISH_BACKOFF_BASE = timedelta(minutes=1)
"""First wait after a transient publish failure; doubles per attempt up to bridge.retry_backoff_max."""
NETWORK_HOLD_MAX = timedelta(hours=24)
"""A network's own "come back at" (a 429's reset, Telegram's retry_after, Meta's time to regain access)
is honoured up to this: every quota the networks name resets within a day (X's 24-hour limits are the
longest), and one absurd header (a year, 10**20 s) must not silence a target for months. A target
still limited after the cap simply gets the network's next answer."""

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
#
# Several replicas on one PostgreSQL (issue 13): a claim records its replica and a lease (LEASE_*
# below), renewed while the post is in flight; every round first puts in doubt the claims whose lease
# ran out (their replica died), by the same rules as a crash. The pacing decision and the claim of
# a target are taken in the target's turn (Outbox.target_turn), so the caps hold for the cluster.

LEASE_MARGIN = timedelta(seconds=10)
LEASE_REQUESTS = 3
"""A claim's lease: LEASE_REQUESTS x publish_timeout (a post can take a media upload and the post
itself, each under its own total deadline) plus the photo's download (fetch_timeout) plus
LEASE_MARGIN. Renewed every third of it while the post is in flight, so a send that legitimately
takes longer keeps its claim; a dead replica's claim is in doubt once it runs out."""


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
        if shared_store(first.repo.engine):
            _recover_expired_claims(first)
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


def _recover_expired_claims(rt: Runtime) -> None:
    """Claims whose lease ran out (a peer replica died mid-post) become in doubt: the crash rules."""
    recovered = rt.repo.recover_in_doubt(rt.clock())
    if recovered:
        log.warning("posts in doubt: the replica posting them stopped (their lease ran out); each is "
                    "settled by its network's rule (see `bridge status`)", in_doubt=recovered)


def lease_length(rt: Runtime) -> timedelta:
    settings = rt.config.bridge
    return LEASE_REQUESTS * settings.publish_timeout + settings.fetch_timeout + LEASE_MARGIN


def _claim(rt: Runtime, delivery: Delivery, now: datetime, frozen: FrozenPost, *, attempt: bool = True,
           conn=None) -> bool:
    """Claim with this replica's name and a lease on a shared store; as before on SQLite."""
    if not shared_store(rt.repo.engine):
        return rt.repo.claim(delivery, now, frozen, attempt=attempt, conn=conn)
    return rt.repo.claim(delivery, now, frozen, attempt=attempt, conn=conn, claimer=rt.replica_id,
                         lease_until=now + lease_length(rt))


@contextmanager
def _lease_kept(rt: Runtime, delivery: Delivery):
    """While the network is called: renew the claim's lease every third of its length (shared
    store only), so a slow post is never taken for a dead replica's."""
    if not shared_store(rt.repo.engine):
        yield
        return
    length, done = lease_length(rt), threading.Event()

    def renew() -> None:
        while not done.wait(length.total_seconds() / 3):
            try:
                if not rt.repo.renew_lease(delivery.id, rt.replica_id, rt.clock() + length):
                    log.warning("claim lost while posting: another replica put it in doubt", **_fields(delivery))
                    return
            except Exception as exc:  # the database is away: keep trying while the post lasts
                log.warning("could not renew a claim's lease", error=f"{type(exc).__name__}: {exc}",
                            **_fields(delivery))

    keeper = threading.Thread(target=renew, name=f"lease {delivery.id}", daemon=True)
    keeper.start()
    try:
        yield
    finally:
        done.set()
        keeper.join()


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
    # The filters in force now have the last word on a story not yet sent (see polling.poll).
    filtered = filter_reason(source_of(rt, delivery), rt.config.targets[delivery.target], delivery.item)
    if filtered:
        rt.repo.mark_skipped(delivery.id, filtered, now)
        log.info("post skipped: filtered out", outcome="skipped", reason=filtered, **fields)
        return True
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
    # The decision and the claim in the target's turn: on a shared store no other replica decides
    # for this target until the claim is committed, and its pacing reads then count this post.
    with rt.repo.target_turn(delivery.target) as turn:
        if turn is not None:  # a peer may have posted since the round's first look
            now = rt.clock()
            if _held(rt, delivery.target, hold_reason(rt.repo, target, rt.config.bridge.timezone, now)):
                return False
        budget = over_budget(rt.repo, target, rt.config.bridge.timezone, now, frozen.cost)
        if budget and not _is_dry_run(publisher):
            _held(rt, delivery.target, budget)
            return False
        if not _claim(rt, delivery, now, frozen, conn=turn):
            return True  # the operator (or another replica) changed it meanwhile
    return _publish(rt, publisher, delivery, frozen, resend=False)


def _publish(rt: Runtime, publisher: Publisher, delivery: Delivery, frozen: FrozenPost, *, resend: bool) -> bool:
    """Send the frozen post of a claimed delivery and record the outcome. `resend`: an earlier
    attempt may have gone out, so "never sent" this time still leaves the delivery in doubt."""
    started = time.monotonic()
    fields = _fields(delivery)
    now = rt.clock()
    post = post_of(delivery, frozen)
    try:
        with _lease_kept(rt, delivery):
            if frozen.image_url and not _is_dry_run(publisher):
                post = _with_photo(rt, publisher, post, frozen, fields)
            try:
                remote_id = publisher.publish(post, idempotency_key=idempotency_key(rt, delivery))
            finally:
                charge_billed_calls(rt, publisher, delivery.target)
    except AlreadyPosted as exc:
        rt.repo.mark_sent(delivery.id, exc.remote_id, rt.clock(), note=exc.message)
        log.info("already posted", outcome="sent", reason=exc.message, duration_ms=ms_since(started), **fields)
        return True
    except RetryLater as exc:
        retry_at = _capped_hold(exc.retry_at, rt.clock(), fields)
        if resend:  # this re-send was refused, but the first attempt may still be on the account
            if retry_at:
                rt.repo.hold_target(delivery.target, retry_at)
            return _in_doubt(rt, publisher, delivery, f"re-send not taken: {exc.message}", started,
                             counted=exc.counts_as_attempt, not_before=retry_at)
        exc.retry_at = retry_at
        return _retry_or_fail(rt, delivery, exc, now, started, fields)
    except InDoubt as exc:
        return _in_doubt(rt, publisher, delivery, exc.message, started)
    except TargetPaused as exc:
        if resend:
            rt.repo.mark_in_doubt(delivery.id, delivery.last_error or exc.message, now, now, counted=False)
        else:
            rt.repo.release(delivery.id, now)
        rt.repo.pause_target(delivery.target, exc.message, now)
        log.error("target paused", reason=exc.message, duration_ms=ms_since(started), **fields)
        return False
    except PostRejected as exc:
        rt.repo.mark_failed(delivery.id, exc.message, rt.clock())
        log.error("post rejected", outcome="failed", reason=exc.message, duration_ms=ms_since(started), **fields)
        return True
    except Exception as exc:  # a bug or an unmapped library error inside the call: it may have gone out
        log.error("unexpected error while posting", error=f"{type(exc).__name__}: {exc}", **fields,
                  exc_info=rt.config.bridge.log_level == "debug")
        return _in_doubt(rt, publisher, delivery, f"unexpected error while posting: {type(exc).__name__}", started)
    if publisher.image_problem:
        log.warning("photo not attached", reason=publisher.image_problem, image_url=post.image_url, **fields)
    if _is_dry_run(publisher):
        rt.repo.mark_skipped(delivery.id, "dry run: not posted", rt.clock())
        log.info("post skipped (dry run)", outcome="dry_run", duration_ms=ms_since(started), **fields)
        return True
    rt.repo.mark_sent(delivery.id, remote_id, rt.clock())
    log.info("posted", outcome="sent", remote_id=remote_id, photo=post.image is not None and not publisher.image_problem,
             cost=frozen.cost, duration_ms=ms_since(started), **fields)
    if publisher.hold_until:  # the network's quota is used up: wait for its reset, not for a 429
        rt.repo.hold_target(delivery.target, _capped_hold(publisher.hold_until, rt.clock(), fields))
    return True


def _capped_hold(until: datetime | None, now: datetime, fields: dict) -> datetime | None:
    """A network's "come back at", honoured up to NETWORK_HOLD_MAX (logged when capped)."""
    if until is None or until <= now + NETWORK_HOLD_MAX:
        return until
    log.warning("network's wait capped", asked_until=until.isoformat(),
                capped_to_s=int(NETWORK_HOLD_MAX.total_seconds()), **fields)
    return now + NETWORK_HOLD_MAX


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
        if not _claim(rt, delivery, now, frozen):
            return True
        log.info("re-sending a post in doubt (the network refuses a duplicate)", **fields)
        return _publish(rt, publisher, delivery, frozen, resend=True)
    find_post = getattr(publisher, "find_post", None)
    if find_post is None:
        rt.repo.mark_in_doubt(delivery.id, settle_in_doubt_hint(delivery.id), None, now, counted=False)
        log.warning("post in doubt: the operator decides", reason=delivery.last_error,
                    todo=settle_in_doubt_hint(delivery.id), **fields)
        return True
    check_at = (delivery.last_attempt_at or first) + publisher.verify_after
    if now < check_at:
        rt.repo.postpone(delivery.id, check_at, now)
        return True
    if not _claim(rt, delivery, now, frozen, attempt=False):
        return True
    started = time.monotonic()
    try:
        with _lease_kept(rt, delivery):
            remote_id = find_post(post_of(delivery, frozen), since=first)
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
        next_check, note = None, f"{reason}; {settle_in_doubt_hint(delivery.id)}"
    else:
        wait = capped_backoff(PUBLISH_BACKOFF_BASE, attempts, rt.config.bridge.retry_backoff_max)
        next_check = max(now + max(wait, getattr(publisher, "verify_after", timedelta(0))), not_before or now)
        note = reason
    rt.repo.mark_in_doubt(delivery.id, note, next_check, now, counted=counted)
    log.warning("post in doubt", outcome="in_doubt", reason=reason, attempts=attempts,
                next_check=next_check.isoformat() if next_check else None,
                todo=None if next_check else settle_in_doubt_hint(delivery.id),
                duration_ms=ms_since(started), **fields)
    return False


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
                  duration_ms=ms_since(started), **fields)
        return False
    if exc.retry_at:  # the network said when: hold the whole target, not just this post
        retry_at = exc.retry_at
        rt.repo.hold_target(delivery.target, retry_at)
    else:
        retry_at = now + capped_backoff(PUBLISH_BACKOFF_BASE, attempts, rt.config.bridge.retry_backoff_max)
    rt.repo.mark_retry(delivery.id, exc.message, retry_at, now, counted=exc.counts_as_attempt)
    log.warning("post deferred", outcome="retry", reason=exc.message, retry_at=retry_at.isoformat(),
                attempts=attempts, duration_ms=ms_since(started), **fields)
    return False
