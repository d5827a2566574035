"""Commands that look without changing anything: check, status, health, preview."""

from __future__ import annotations

import sys

from bridge.errors import BridgeError, DatabaseError
from bridge.commands.common import EXIT_OK, EXIT_PROBLEM, duration_text, source_named


def cmd_check(args, config) -> int:
    from bridge.publish import build_publisher
    from bridge.store.opening import open_repository

    repo = open_repository(config, upgrade=False)
    mode = "dry run (nothing is posted)" if config.bridge.dry_run else "live"
    print(f"settings: {config.path} ok, {mode}")
    print(f"database: {config.bridge.database} ok")
    for source in config.sources:
        print(f"source {source.name}: {source.kind} {source.url} -> {', '.join(source.targets)} "
              f"every {duration_text(source.poll_interval)}, first run: {source.first_run}")
    from bridge.status import layout_problems

    drifted = layout_problems(repo, config)
    for name, error in drifted.items():
        print(f"source {name}: PROBLEM: {error}")
    from bridge.status import judge

    needs_person = []
    if current_version_is_latest(repo):
        _, needs_person = judge(repo, config)
        needs_person = [p for p in needs_person if not any(p.startswith(f"source {n} ") for n in drifted)]
    for problem in needs_person:
        print(f"PROBLEM: {problem}")
    repo.engine.dispose()
    problems = len(drifted) + len(needs_person)
    for target in config.targets.values():
        publisher = build_publisher(target, dry_run=config.bridge.dry_run, compose=False,
                                    timeout=config.bridge.publish_timeout.total_seconds())
        try:
            account = publisher.verify()
            print(f"target {target.name}: {target.kind} {target.api_base} account {account}")
            _charge_check(repo, target, getattr(publisher, "billed_calls", None) or ())
        except BridgeError as exc:
            problems += 1
            print(f"target {target.name}: {target.kind} {target.api_base} PROBLEM: {exc}")
        finally:
            publisher.close()
    repo.engine.dispose()
    return EXIT_PROBLEM if problems else EXIT_OK


def current_version_is_latest(repo) -> bool:
    """A database `bridge run` has created and upgraded (before that, there is nothing to judge)."""
    from bridge.store.db import READ_ONLY
    from bridge.store.migrations import LATEST_VERSION, current_version

    with repo.engine.connect().execution_options(**READ_ONLY) as conn:
        return current_version(conn) == LATEST_VERSION


def _charge_check(repo, target, calls) -> None:
    """X bills its credentials check: it counts against the day's budget like a post. A database
    not yet created or upgraded by `bridge run` has nowhere to keep it; the check is not refused."""
    from bridge.clock import utc_now
    from bridge.store.migrations import LATEST_VERSION, current_version

    if not calls:
        return
    with repo.engine.connect() as conn:
        if current_version(conn) != LATEST_VERSION:
            return
    for call in calls:
        repo.add_charge(target.name, target.call_prices.get(call, 0.0), call, utc_now())


def cmd_status(args, config) -> int:
    from bridge import status
    from bridge.store.db import unwritable_reason
    from bridge.store.opening import open_repository

    repo = open_repository(config, upgrade=False)
    report = status.collect(repo, config)
    unwritable = unwritable_reason(repo.engine)
    if unwritable:  # what it shows is true, but nothing new will be written: say so once, apart
        print(f"bridge: database: {unwritable}", file=sys.stderr)
    print(status.to_json(report) if args.json else status.render(report))
    return EXIT_OK


def cmd_health(args, config) -> int:
    from bridge import status
    from bridge.store.opening import open_repository

    try:
        repo = open_repository(config, upgrade=False)
    except DatabaseError as exc:
        print(f"broken: database: {exc}")
        return status.HEALTH_BROKEN
    try:
        level, problems = status.judge(repo, config)
    finally:
        repo.engine.dispose()
    word = {status.HEALTH_OK: "ok", status.HEALTH_DEGRADED: "degraded", status.HEALTH_BROKEN: "broken"}[level]
    for problem in problems:
        print(f"{word}: {problem}")
    if not problems:
        print(f"ok: {len(config.sources)} source(s), {len(config.targets)} target(s), nothing needs a person")
    return level


def cmd_preview(args, config) -> int:
    from bridge import preview
    from bridge.errors import FetchError

    source = source_named(config, args.source)
    try:
        result = preview.preview(config, source, story_pages=not args.no_pages)
    except FetchError as exc:
        print(f"{source.name}: could not read {exc.url}: {exc.reason}")
        return EXIT_PROBLEM
    print(preview.render(result))
    return EXIT_OK
