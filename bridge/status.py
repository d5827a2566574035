"""`bridge status`: what the database says about each source and target, for people and scripts.

Reads only (DEFERRED transactions in WAL mode), so it never blocks or disturbs the running daemon.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from bridge.clock import local_day_start, local_iso, local_month_start, local_text, utc_now
from bridge.config import Config
from bridge.errors import NO_STORIES_FOUND, DatabaseError, settle_in_doubt_hint
from bridge.model import DeliveryState
from bridge.pacing import hold_reason
from bridge.store.db import READ_ONLY, explain, unwritable_reason
from bridge.store.migrations import LATEST_VERSION, current_version
from bridge.store.repo import Repository

RECENT_FAILURES_SHOWN = 10
IN_DOUBT_SHOWN = 200
"""Posts in doubt are few and each needs a decision: all of them are shown, up to this many."""
LATE_MIN_OVERDUE = timedelta(minutes=2)
"""A poll may start up to a minute after its time (jitter) or wait for a busy worker. A source is
late once its next poll is overdue by its own interval and by at least this much: the daemon is
then stopped, stuck, or far too busy."""
FAILING_AFTER = 3
"""A source needs a person after this many consecutive failed polls (one is a blip, three a pattern)."""
HEALTH_OK, HEALTH_DEGRADED, HEALTH_BROKEN = 0, 1, 2
"""`bridge health`'s exit codes: ok; something needs a person; the database is unusable."""


def collect(repo: Repository, config: Config, now: datetime | None = None) -> dict:
    now = now or utc_now()
    with repo.engine.connect().execution_options(**READ_ONLY) as conn:
        version = current_version(conn)
    if version == 0:
        raise DatabaseError(f"{config.bridge.database} holds no bridge data yet: start `bridge run` first")
    if version != LATEST_VERSION:
        raise DatabaseError(f"the database is at schema version {version}, this bridge expects "
                            f"{LATEST_VERSION}: run `bridge run` once to upgrade it")
    configured = {s.name: s for s in config.sources}
    sources = []
    for row in repo.source_rows():
        sources.append({
            "name": row["name"], "configured": row["name"] in configured,
            "state": source_state(row, configured.get(row["name"]), now),
            "last_poll": row["last_poll_at"], "outcome": row["last_outcome"],
            "items": row["items"], "consecutive_failures": row["consecutive_failures"],
            "next_poll": row["next_poll_at"], "last_error": row["last_error"],
            "last_success": row.get("last_success_at"),
        })
    polled = {s["name"] for s in sources}
    sources += [{"name": name, "configured": True, "outcome": "never polled",
                 "state": "never polled" if configured[name].enabled else "disabled"}
                for name in sorted(set(configured) - polled)]
    tz = config.bridge.timezone
    targets = []
    rows = {row["target"]: row for row in repo.target_rows(local_day_start(now, tz), local_month_start(now, tz))}
    for name in config.targets:  # a configured target shows up before its first delivery too
        rows.setdefault(name, {"target": name})
    for row in (rows[name] for name in sorted(rows)):
        settings = config.targets.get(row["target"])
        state = hold_reason(repo, settings, tz, now) if settings else "not in settings.toml"
        if state and state.startswith("paused:"):
            state = "PAUSED:" + state[len("paused:"):]  # the one state that needs the operator: stand out
        targets.append({"name": row["target"], "posted_today": row.get("sent_today") or 0,
                        "spent_today": round(row.get("spent_today") or 0.0, 4),
                        "spent_month": round(row.get("spent_month") or 0.0, 4),
                        "budget_per_day": settings.budget_per_day if settings else None,
                        "pending": row.get("pending") or 0, "failed": row.get("failed") or 0,
                        "in_doubt": row.get("in_doubt") or 0, "held": row.get("held") or 0,
                        "state": state or "ok"})
    failures = repo.delivery_rows([DeliveryState.FAILED], limit=RECENT_FAILURES_SHOWN)
    held = repo.held_stories()
    for source in sources:
        if held.get(source["name"]):
            source["held"] = held[source["name"]]
            source["state"] = "held" if source["state"] == "ok" else f"held, {source['state']}"
    from bridge.config.fingerprint import settings_fingerprint
    from bridge.store.outbox import shared_store
    from bridge.store.replicas import holdings, live_replicas

    here = settings_fingerprint(config)
    live, held_by = live_replicas(repo.engine, now), holdings(repo.engine)
    if not shared_store(repo.engine):  # one daemon: it polls every source and sends every post in flight
        in_flight = sum(held["posting"] for held in held_by.values())
        held_by = {r["id"]: {"sources": "all", "posting": in_flight} for r in live}
    running = [{"host": r["host"], "pid": r["pid"], "version": r["version"], "started": r["started_at"],
                "heartbeat": r["heartbeat_at"], "settings": r["settings"], "same_settings": r["settings"] == here,
                "sources": held_by.get(r["id"], {}).get("sources", 0),
                "posting": held_by.get(r["id"], {}).get("posting", 0)} for r in live]
    return {"now": now, "timezone": tz, "dry_run": config.bridge.dry_run, "replicas": running,
            "settings": here, "sources": sources, "targets": targets,
            "in_doubt": in_doubt_rows(repo, tz), "held": held_bursts(held), "recent_failures": failures}


def judge(repo: Repository, config: Config, now: datetime | None = None) -> tuple[int, list[str]]:
    """The one health judgement (`bridge health`, `bridge check`, /healthz): a level and one line
    per problem. Reads only."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        report = collect(repo, config, now)
    except DatabaseError as exc:
        return HEALTH_BROKEN, [f"database: {exc}"]
    except SQLAlchemyError as exc:
        return HEALTH_BROKEN, [f"database: {explain(exc, config.bridge.database)}"]
    unwritable = unwritable_reason(repo.engine)
    if unwritable:
        return HEALTH_BROKEN, [f"database: {unwritable}"]
    problems = report_problems(report)
    return (HEALTH_DEGRADED if problems else HEALTH_OK), problems


def report_problems(report: dict) -> list[str]:
    """What in a `collect` report needs a person, one line each."""
    problems = []
    for s in report["sources"]:
        if not s.get("configured", True):
            continue
        if (s.get("consecutive_failures") or 0) >= FAILING_AFTER:
            problems.append(f"source {s['name']} failing: {s['consecutive_failures']} polls in a row, "
                            f"last: {s.get('last_error') or '?'}")
    for t in report["targets"]:
        if t["state"].startswith("PAUSED:"):
            problems.append(f"target {t['name']} paused:{t['state'][len('PAUSED:'):]}")
    for d in report["in_doubt"]:
        problems.append(f"delivery {d['id']} to {d['target']} in doubt: {d['todo']}")
    for h in report["held"]:
        problems.append(f"source {h['source']} holds a burst of {h['stories']} new stories: {h['todo']}")
    return problems


def in_doubt_rows(repo: Repository, tz: str = "UTC") -> list[dict]:
    """Every post in doubt, oldest first, with what settles it (times in `tz`)."""
    rows = repo.delivery_rows([DeliveryState.IN_DOUBT], limit=IN_DOUBT_SHOWN)
    for row in rows:
        row["todo"] = (f"the bridge checks again at {local_text(row['next_attempt_at'], tz)}"
                       if row["next_attempt_at"] else settle_in_doubt_hint(row["id"]))
    return list(reversed(rows))  # delivery_rows gives the newest first


def held_bursts(held: dict[str, int]) -> list[dict]:
    return [{"source": name, "stories": count,
             "todo": f"`bridge release {name}` posts them, `bridge catchup {name}` drops them"}
            for name, count in sorted(held.items())]


def source_state(row: dict, source, now: datetime) -> str:
    """'ok', 'failing', 'late', 'failing, late', 'removed' (no longer in settings.toml) or 'disabled'
    (`enabled = false`: never read, so neither late nor failing)."""
    if source is None:
        return "removed"
    if not source.enabled:
        return "disabled"
    states = []
    if row.get("consecutive_failures"):
        states.append("failing")
    next_poll = row.get("next_poll_at")
    if next_poll is not None and now - next_poll > max(source.poll_interval, LATE_MIN_OVERDUE):
        states.append("late")
    return ", ".join(states) or "ok"


def to_json(report: dict) -> str:
    """The report for scripts: times ISO 8601 with the offset of [bridge] timezone."""
    tz = report.get("timezone", "UTC")

    def default(value):
        return local_iso(value, tz) if isinstance(value, datetime) else str(value)

    return json.dumps(report, indent=2, default=default)


def render(report: dict) -> str:
    now = report["now"]
    lines = [f"bridge status at {local_text(now, report.get('timezone', 'UTC'))}", ""]
    lines += _replica_lines(report, now)
    lines += ["SOURCES"]
    rows = [("name", "state", "last poll", "outcome", "items", "next poll", "last error")]
    for s in report["sources"]:
        outcome = s.get("outcome") or "-"
        if s.get("consecutive_failures"):
            outcome += f" x{s['consecutive_failures']}"
        name = s["name"] + ("" if s.get("configured", True) else " (removed)")
        # Problems in capitals, as a target's PAUSED: what needs a look stands out at a glance.
        state = s.get("state") or "-"
        rows.append((name, state if state == "ok" else state.upper(), _ago(s.get("last_poll"), now), outcome, str(s.get("items") or 0),
                     _ago(s.get("next_poll"), now), s.get("last_error") or ""))
    lines += _table(rows)
    lines += ["", "TARGETS" + ("  (dry run: nothing is posted)" if report["dry_run"] else "")]
    rows = [("name", "posted today", "spent today", "this month", "pending", "in doubt", "failed", "state")]
    rows += [(t["name"], str(t["posted_today"]), _money(t["spent_today"], t["budget_per_day"]),
              _money(t["spent_month"]), str(t["pending"]), str(t["in_doubt"]), str(t["failed"]), t["state"])
             for t in report["targets"]]
    lines += _table(rows)
    if report.get("in_doubt"):
        lines += ["", "IN DOUBT (the post may be on the account; nothing is re-sent blindly)"]
        rows = [("id", "target", "source", "title", "tried", "why", "what settles it")]
        rows += [(str(d["id"]), d["target"] + (f" {d['recipient']}" if d.get("recipient") else ""), d["source"],
                  _short(d["title"], 40), _ago(d.get("last_attempt_at"), now), _short(d["last_error"] or "", 60),
                  d["todo"]) for d in report["in_doubt"]]
        lines += _table(rows)
    if report.get("held"):
        lines += ["", "HELD BURSTS (a known source suddenly brought many new stories: a site move?)"]
        rows = [("source", "stories", "what settles it")]
        rows += [(h["source"], str(h["stories"]), h["todo"]) for h in report["held"]]
        lines += _table(rows)
    if report["recent_failures"]:
        lines += ["", "RECENT FAILURES (re-queue with `bridge retry ID`)"]
        rows = [("id", "target", "source", "title", "error")]
        rows += [(str(f["id"]), f["target"], f["source"], _short(f["title"], 50), f["last_error"] or "")
                 for f in report["recent_failures"]]
        lines += _table(rows)
    return "\n".join(lines)


def _replica_lines(report: dict, now: datetime) -> list[str]:
    """Who runs `bridge run` on this database, and whether with the settings this command read."""
    running = report.get("replicas")
    if running is None:
        return []
    if not running:
        return ["DAEMON  none running (`systemctl start bridge`)", ""]
    rows = [("daemon", "pid", "version", "started", "heartbeat", "polls", "posting", "settings")]
    rows += [(r["host"], str(r["pid"]), r["version"], _ago(r["started"], now), _ago(r["heartbeat"], now),
              str(r["sources"]), str(r["posting"]),
              r["settings"] + ("" if r["same_settings"] else "  DIFFERENT from settings.toml: reload it"))
             for r in running]
    return _table(rows) + [""]


def _money(amount: float, budget: float | None = None) -> str:
    return f"${amount:.2f}" + (f" of ${budget:.2f}" if budget is not None else "")


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def _ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "-"
    seconds = int((now - when).total_seconds())
    future = seconds < 0
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size or unit == "s":
            amount = f"{seconds // size}{unit}"
            return f"in {amount}" if future else f"{amount} ago"
    return "-"


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def layout_problems(repo: Repository, config: Config) -> dict[str, str]:
    """Configured sources whose last poll found no stories on their page (an html layout that
    changed, or selectors that never matched), with that poll's error. Read from the database, so
    `bridge check` reports what the daemon saw without fetching anything; a fresh database has none."""
    with repo.engine.connect().execution_options(**READ_ONLY) as conn:
        if current_version(conn) != LATEST_VERSION:
            return {}
    configured = {s.name for s in config.sources}
    return {row["name"]: row["last_error"] for row in repo.source_rows()
            if row["name"] in configured and row["last_outcome"] == "error"
            and (row["last_error"] or "").startswith(NO_STORIES_FOUND)}
