"""Telling the operator: one message when a problem starts, one when it clears, and a daily digest.

The problems are what `bridge status` already knows (bridge.status.collect), judged for a person: a
source failing for longer than [alerts] alert_after, a listing whose layout drifted, a paused target,
a held burst, posts in doubt, a day's budget spent. Each has a stable key, and what was said is kept
in the database (bridge.store.alert_state), so a problem is told once however often it is checked,
and a restart neither repeats it nor forgets to say it cleared.

Alerts never block or fail the pipeline: a channel that fails is logged and the check goes on; the
next message, or the digest, says what is still wrong.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import structlog

from bridge.alert_channels import Channel
from bridge.config import Config
from bridge.clock import local_text
from bridge.errors import InDoubt, PublishError, TargetPaused
from bridge.store.alert_state import (
    active_alerts, last_digest, save_active_alerts, save_last_digest, save_token_checks, token_checks,
)
from bridge.store.repo import Repository

log = structlog.get_logger("bridge")

ALERT_CHECK_INTERVAL = timedelta(minutes=1)
"""How often the daemon looks for problems that started or cleared."""
TOKEN_CHECK_EVERY = timedelta(days=1)
"""How often a network that says when its token expires (Facebook's debug_token) is asked."""
TOKEN_WARNING = timedelta(days=7)
"""A token expiring sooner than this is a problem: a week to make a new one."""


@dataclass(frozen=True)
class AlertRound:
    """What one check found and said."""

    started: dict[str, str]
    cleared: dict[str, str]
    digest: bool = False
    message: str | None = None


def needs_a_person(report: dict, drift: dict[str, str], config: Config, now: datetime) -> dict[str, str]:
    """Problem key -> one line, from a status report and the drifted layouts."""
    alert_after = config.alerts.alert_after if config.alerts else timedelta(hours=1)
    configured = {s.name: s for s in config.sources}
    problems: dict[str, str] = {}
    for s in report["sources"]:
        source = configured.get(s["name"])
        if source is None or not source.enabled:
            continue
        failures = s.get("consecutive_failures") or 0
        if failures:
            # Since the last good poll; a source that never answered counts its failed polls.
            since = s.get("last_success")
            failing_for = now - since if since else failures * source.poll_interval
            if failing_for >= alert_after:
                problems[f"source:{s['name']}:failing"] = (
                    f"source {s['name']} cannot be read for {_duration(failing_for)} ({failures} polls): "
                    f"{s.get('last_error') or 'no reason given'}")
        if s["name"] in drift:
            problems[f"source:{s['name']}:layout"] = (
                f"source {s['name']}: its page no longer shows stories where the settings look "
                f"(a layout change?): {drift[s['name']]}")
    for h in report["held"]:
        problems[f"source:{h['source']}:held"] = f"source {h['source']} holds a burst of {h['stories']} new stories: {h['todo']}"
    for t in report["targets"]:
        if t["state"].startswith("PAUSED:"):
            problems[f"target:{t['name']}:paused"] = f"target {t['name']} is paused:{t['state'][len('PAUSED:'):]}"
        settings = config.targets.get(t["name"])
        budget = t.get("budget_per_day")
        if settings and budget is not None:
            cheapest = min(p for p in (settings.price_per_post, settings.price_per_link_post) if p is not None)
            if t["spent_today"] + max(cheapest, 1e-9) > budget + 1e-9:
                problems[f"target:{t['name']}:budget"] = (
                    f"target {t['name']} has spent its daily budget (${t['spent_today']:.2f} of ${budget:.2f}): "
                    "the rest waits for tomorrow")
    in_doubt: dict[str, int] = {}
    for d in report["in_doubt"]:
        in_doubt[d["target"]] = in_doubt.get(d["target"], 0) + 1
    for target, count in sorted(in_doubt.items()):
        problems[f"target:{target}:in_doubt"] = (
            f"{count} post(s) to {target} in doubt (they may be on the account): `bridge status` lists "
            "each with what settles it")
    return problems


def token_problems(repo: Repository, config: Config, publishers: dict, now: datetime) -> dict[str, str]:
    """Targets whose access token expires within TOKEN_WARNING or that their network calls invalid,
    asking each network that can tell (a publisher with `token_expires_at`) once a TOKEN_CHECK_EVERY."""
    checks, asked = token_checks(repo.engine), False
    for name, publisher in publishers.items():
        ask = getattr(publisher, "token_expires_at", None)
        last = checks.get(name)
        if ask is None or (last and now - datetime.fromisoformat(last["checked"]) < TOKEN_CHECK_EVERY):
            continue
        asked = True
        try:
            expires = ask()
            checks[name] = {"checked": now.isoformat(), "expires": expires.isoformat() if expires else None,
                            "problem": None}
        except PublishError as exc:  # cannot tell now: keep what was known, ask again tomorrow
            log.warning("token check failed", target=name, error=str(exc))
            checks[name] = {**(last or {"expires": None, "problem": None}), "checked": now.isoformat()}
            if isinstance(exc, TargetPaused):
                checks[name]["problem"] = str(exc)
    if asked:
        save_token_checks(repo.engine, checks)
    problems = {}
    for name, known in checks.items():
        if name not in publishers:
            continue
        if known.get("problem"):
            problems[f"target:{name}:token"] = f"target {name}: {known['problem']}"
        elif known.get("expires"):
            expires = datetime.fromisoformat(known["expires"])
            if expires - now <= TOKEN_WARNING:
                problems[f"target:{name}:token"] = (
                    f"target {name}: its access token expires {local_text(expires, config.bridge.timezone)} "
                    f"(in {_duration(max(expires - now, timedelta(0)))}): make a new one before then "
                    "(README: Going live, network by network)")
    return problems


def check(repo: Repository, config: Config, now: datetime, channels: list[Channel],
          publishers: dict | None = None) -> AlertRound:
    """Compare the problems now with those already told; tell the difference, and the digest when due.
    `publishers` (the runtime's) lets networks that can tell say when their token expires."""
    from bridge.status import collect, layout_problems

    if config.alerts is None:
        return AlertRound({}, {})
    current = needs_a_person(collect(repo, config, now), layout_problems(repo, config), config, now)
    current.update(token_problems(repo, config, publishers or {}, now))
    told = active_alerts(repo.engine)
    started = {key: text for key, text in current.items() if key not in told}
    cleared = {key: told[key]["text"] for key in told if key not in current}
    lines = [f"⚠ {text}" for text in started.values()]
    lines += [f"✓ cleared after {_duration(now - datetime.fromisoformat(told[key]['since']))}: {text}"
              for key, text in cleared.items()]
    digest = _digest_due(repo, config, now)
    if digest:
        lines += ["", "Daily digest:"] if lines else ["Daily digest:"]
        lines += [f"- {text}" for text in current.values()] or ["- all is well: nothing needs a person"]
    message = None
    if lines:
        message = f"bridge on {socket.gethostname()}:\n" + "\n".join(lines)
        send(message, channels)
    if started or cleared:
        keep = {key: told[key] for key in told if key in current}
        keep.update({key: {"text": text, "since": now.isoformat()} for key, text in started.items()})
        save_active_alerts(repo.engine, keep)
    if digest:
        save_last_digest(repo.engine, _local_day(now, config.bridge.timezone))
    return AlertRound(started, cleared, digest, message)


def send(message: str, channels: list[Channel]) -> int:
    """Send on every channel; one that fails is logged, never raised. Returns how many succeeded."""
    sent = 0
    for channel in channels:
        try:
            channel.send(message)
            sent += 1
        except InDoubt as exc:  # the request left, no answer came back: never sent again (no double alert)
            log.warning("alert may have been sent", channel=channel.name, error=" ".join(str(exc).split()))
        except Exception as exc:  # a channel must never stop the others or the daemon
            log.warning("alert not sent", channel=channel.name, error=" ".join(str(exc).split()) or type(exc).__name__)
            log.debug("alert failure traceback", exc_info=True)
    if channels:
        log.info("alert sent", channels=sent, of=len(channels), lines=message.count("\n"))
    return sent


def _digest_due(repo: Repository, config: Config, now: datetime) -> bool:
    at = config.alerts.digest_at if config.alerts else None
    if at is None:
        return False
    local = now.astimezone(ZoneInfo(config.bridge.timezone))
    return local.time() >= at and last_digest(repo.engine) != local.date().isoformat()


def _local_day(now: datetime, tz: str) -> str:
    return now.astimezone(ZoneInfo(tz)).date().isoformat()


def _duration(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} days"
