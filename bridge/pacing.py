"""When a target may post, and what a post costs: pause, rate-limit hold, quiet hours, spacing,
daily and hourly caps, and daily budget. Reads the store; decides nothing else.

A held target's deliveries simply stay pending: nothing is dropped, they go out when the reason ends.

With several replicas on one PostgreSQL the caps count posts in flight too (a peer's claimed,
unanswered post is one of the day's), and the decision is taken inside the target's turn
(Outbox.target_turn) so that no two replicas decide on the same counts.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from bridge.clock import in_daily_window, local_day_start, local_text
from bridge.config import TargetConfig
from bridge.store.outbox import shared_store
from bridge.store.repo import Repository

HOUR = timedelta(hours=1)
BUDGET_EPSILON = 1e-9
"""Float sums of prices must not refuse the post that exactly meets the budget."""


def hold_reason(repo: Repository, target: TargetConfig, tz_name: str, now: datetime) -> str | None:
    """Why `target` may not post now, in words for the log; None when it may."""
    state = repo.target_state(target.name)
    if state.paused_reason:
        return f"paused: {state.paused_reason}"
    if state.hold_until and now < state.hold_until:
        return f"rate limit: next post after {local_text(state.hold_until, tz_name)}"
    if target.quiet_hours:
        ends = in_daily_window(now, target.quiet_hours, tz_name)
        if ends:
            return f"quiet hours until {local_text(ends, tz_name)}"
    in_flight = shared_store(repo.engine)  # SQLite: one round per process, nothing in flight here
    if target.min_interval:
        last = repo.last_sent_at(target.name, in_flight=in_flight)
        if last and now < last + target.min_interval:
            return f"min_interval: next post after {local_text(last + target.min_interval, tz_name, seconds=True)}"
    day_start = local_day_start(now, tz_name)
    if repo.sent_since(target.name, day_start, in_flight=in_flight) >= target.max_per_day:
        return f"daily cap of {target.max_per_day} posts reached; the rest waits for tomorrow"
    if target.max_per_hour:
        return _hourly_hold(repo, target, target.max_per_hour, tz_name, now, in_flight)
    return None


def _hourly_hold(repo: Repository, target: TargetConfig, cap: int, tz_name: str, now: datetime,
                 in_flight: bool = False) -> str | None:
    """A rolling hour, not the clock's: five posts at 09:58 and five at 10:01 would pass an
    hour-of-the-day cap of five, and spacing posts out is what the cap is for. The next post may go
    when the oldest of the last `cap` posts turns an hour old."""
    if repo.sent_since(target.name, now - HOUR, in_flight=in_flight) < cap:
        return None
    oldest = repo.nth_latest_sent_at(target.name, cap)
    after = f"; next post after {local_text(oldest + HOUR, tz_name, seconds=True)}" if oldest else ""
    posts = "post" if cap == 1 else "posts"
    return f"hourly cap: {cap} {posts} in the last hour (max_per_hour){after}"


def post_cost(target: TargetConfig, text: str) -> float:
    """What the network bills for this post: X charges more for a post that contains a URL."""
    from twitter_text import extract_urls  # here: its regexes cost `bridge status` ~0.2 s at import

    return target.price_per_link_post if extract_urls(text) else target.price_per_post


def over_budget(repo: Repository, target: TargetConfig, tz_name: str, now: datetime, cost: float) -> str | None:
    """Why a post costing `cost` would pass the day's budget; None when it fits (or there is none)."""
    if target.budget_per_day is None:
        return None
    spent = repo.spent_since(target.name, local_day_start(now, tz_name))
    if spent + cost > target.budget_per_day + BUDGET_EPSILON:
        return (f"daily budget: ${spent:.3f} of ${target.budget_per_day:.2f} spent today, the next post "
                f"costs ${cost:.3f}; the rest waits for tomorrow")
    return None
