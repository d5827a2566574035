"""What the PR office's page shows, as plain data: built from `bridge status`'s own report
(status.collect, status.layout_problems) and the page's bounded queries (store/pages.py).

No HTML here (render.py) and no SQL (store/). Every read is a DEFERRED read: the page never takes
the write lock the daemon needs, so a browser left open all day cannot slow the posting.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from bridge.clock import local_day_start
from bridge.config import Config
from bridge.model import DeliveryState
from bridge.publish import post_url
from bridge.status import collect, layout_problems
from bridge.store import pages
from bridge.store.repo import Repository

CHART_DAYS = 14
POSTS_SHOWN_PER_TARGET = 100
"""Today's posts listed per network; a busier day says how many more there were."""
PENDING_SHOWN = 30
"""Pending deliveries listed by id (newest first); the rest are counted per network."""


def overview(repo: Repository, config: Config, now: datetime) -> dict:
    """The overview page's data: today per network, the queue, sources, spend and the chart."""
    report = collect(repo, config, now)  # the same report, from the same queries, as `bridge status`
    tz = config.bridge.timezone
    names = sorted(set(config.targets) | {t["name"] for t in report["targets"]})
    day_start = local_day_start(now, tz)
    today = pages.sent_since(repo.engine, names, day_start, POSTS_SHOWN_PER_TARGET + 1)
    posted = {t["name"]: t["posted_today"] for t in report["targets"]}
    return {
        "now": now, "dry_run": report["dry_run"],
        "today": _today(today, names, config, posted),
        "queue": _queue(repo, report),
        "sources": _sources(report, layout_problems(repo, config), _recent(pages.newest_story_times(repo.engine), now)),
        "spend": report["targets"],
        "chart": _chart(repo, names, now, tz),
    }


def story(repo: Repository, config: Config, item_id: int) -> dict | None:
    """One story's page: the story and each delivery with its live link; None for an unknown id."""
    found = pages.story(repo.engine, item_id)
    if found is None:
        return None
    for delivery in found["deliveries"]:
        delivery["url"] = _url(config, delivery["target"], delivery["remote_id"], delivery["state"])
    return found


def _today(rows: list[dict], names: list[str], config: Config, posted: dict[str, int]) -> list[dict]:
    """Per network: its posts today, newest first. A target with recipients (WhatsApp) lists each
    story once, with how many recipients it reached, rather than once per recipient."""
    by_target: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_target[row["target"]].append(row)
    networks = []
    for name in names:
        target = config.targets.get(name)
        posts, more = by_target.get(name, []), 0
        if len(posts) > POSTS_SHOWN_PER_TARGET:  # one row more than shown was asked for: there are more
            posts = posts[:POSTS_SHOWN_PER_TARGET]
            more = max(posted.get(name, 0) - len(posts), 1)
        recipients = tuple(target.options.get("recipients") or ()) if target else ()
        if recipients:
            reached = Counter(p["item_id"] for p in posts)
            seen: set[int] = set()
            posts = [p for p in posts if not (p["item_id"] in seen or seen.add(p["item_id"]))]
            for post in posts:
                post["reached"], post["recipients"] = reached[post["item_id"]], len(recipients)
        for post in posts:
            post["url"] = _url(config, name, post["remote_id"], DeliveryState.SENT.value)
        networks.append({"name": name, "kind": target.kind if target else None, "posts": posts, "more": more})
    return networks


def _url(config: Config, name: str, remote_id: str | None, state: str) -> str | None:
    target = config.targets.get(name)
    if target is None or not remote_id or state != DeliveryState.SENT.value or config.bridge.dry_run:
        return None  # a dry run's ids are made up: no link to a post that does not exist
    return post_url(target, remote_id)


def _queue(repo: Repository, report: dict) -> dict:
    """Pending (with why its network waits), held bursts, in doubt and failed, each with what settles it."""
    waiting = {t["name"]: t["state"] for t in report["targets"] if t["state"] != "ok"}
    pending = repo.delivery_rows([DeliveryState.PENDING], limit=PENDING_SHOWN)
    for row in pending:
        row["why"] = waiting.get(row["target"])
    total = sum(t["pending"] for t in report["targets"])
    return {"pending": pending, "pending_total": total, "held": report["held"],
            "in_doubt": report["in_doubt"], "failed": report["recent_failures"]}


def _sources(report: dict, drift: dict[str, str], newest: dict[str, datetime]) -> list[dict]:
    """Each source with its states as flags the page words: ok, failing (how often, since when),
    late, drift, held, disabled, removed, never read; and its last new story."""
    rows = []
    for s in report["sources"]:
        state = s.get("state") or ""
        flags = []
        if "disabled" in state:
            flags.append(("st_disabled", {}))
        elif "removed" in state:
            flags.append(("st_removed", {}))
        elif "never polled" in state:
            flags.append(("st_never", {}))
        if s.get("consecutive_failures"):
            flags.append(("st_failing_since" if s.get("last_success") else "st_failing",
                          {"count": s["consecutive_failures"], "when": s.get("last_success")}))
        if "late" in state:
            flags.append(("st_late", {}))
        if s["name"] in drift:
            flags.append(("st_drift", {}))
        if s.get("held"):
            flags.append(("st_held", {"count": s["held"]}))
        quiet = {"st_disabled", "st_never", "st_removed"}  # not read on purpose, or not yet: nothing to fix
        rows.append({"name": s["name"], "flags": flags or [("st_ok", {})], "ok": not flags,
                     "problem": any(key not in quiet for key, _ in flags),
                     "last_poll": s.get("last_poll"), "last_error": s.get("last_error"),
                     "last_new": newest.get(s["name"])})
    return rows


def _chart(repo: Repository, names: list[str], now: datetime, tz: str) -> dict:
    """Posts per local day per network over the last CHART_DAYS days, today last."""
    today = now.astimezone(ZoneInfo(tz)).date()
    days = [today - timedelta(days=n) for n in range(CHART_DAYS - 1, -1, -1)]
    # Each local midnight as UTC, and the next one after today: CHART_DAYS + 1 bounds.
    bounds = [_midnight(day, tz) for day in days] + [_midnight(today + timedelta(days=1), tz)]
    return {"days": days, "series": pages.sent_per_day(repo.engine, names, bounds)}


def _midnight(day: date, tz: str) -> datetime:
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(tz)).astimezone(timezone.utc)


def _recent(newest: dict[str, datetime], now: datetime) -> dict[str, datetime]:
    """The sources' last new stories within the page's CHART_DAYS; older ones show as none recently."""
    since = now - timedelta(days=CHART_DAYS)
    return {name: seen for name, seen in newest.items() if seen >= since}
