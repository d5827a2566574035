"""Commands that settle one delivery, a held burst or a paused target (retry, skip, resolve, release,
unpause), and backup."""

from __future__ import annotations

import sys

from bridge.commands.common import EXIT_OK, EXIT_PROBLEM, source_named


def cmd_retry(args, config) -> int:
    return _change_delivery(config, args.delivery_id, "retry")


def cmd_skip(args, config) -> int:
    return _change_delivery(config, args.delivery_id, "skip")


def _change_delivery(config, delivery_id: int, action: str) -> int:
    from bridge.clock import utc_now
    from bridge.store.opening import open_repository

    repo = open_repository(config)
    if action == "retry":
        done = repo.requeue(delivery_id, utc_now())
        message = "re-queued" if done else ("not re-queued: no failed delivery, nor one in doubt, with that id "
                                               "(or one older than [bridge] keep, whose text is pruned)")
    elif action == "resolve":
        done = repo.resolve_sent(delivery_id, utc_now())
        message = "recorded as sent" if done else "not changed: no delivery in doubt with that id"
    else:
        done = repo.skip(delivery_id, "skipped by the operator (`bridge skip`)", utc_now())
        message = "skipped" if done else "not skipped: no pending delivery with that id"
    print(f"delivery {delivery_id}: {message}")
    repo.engine.dispose()
    return EXIT_OK if done else EXIT_PROBLEM


def cmd_resolve(args, config) -> int:
    return _change_delivery(config, args.delivery_id, "resolve")


def cmd_release(args, config) -> int:
    from bridge.clock import utc_now
    from bridge.store.opening import open_repository

    source_named(config, args.source)
    repo = open_repository(config)
    released = repo.release_held(args.source, utc_now())
    repo.engine.dispose()
    if not released:
        print(f"{args.source}: nothing held")
        return EXIT_PROBLEM
    print(f"{args.source}: {released} held deliveries queued; they go out oldest first, within pacing")
    return EXIT_OK


def cmd_unpause(args, config) -> int:
    """Lift a target's pause for every replica (the `targets` table is shared)."""
    from bridge.store.opening import open_repository

    if args.target not in config.targets:
        known = ", ".join(config.targets) or "none"
        print(f"bridge: no target {args.target!r} in settings.toml (targets: {known})", file=sys.stderr)
        return EXIT_PROBLEM
    repo = open_repository(config)
    try:
        reason = repo.unpause(args.target)
    finally:
        repo.engine.dispose()
    if reason is None:
        print(f"{args.target}: not paused")
        return EXIT_PROBLEM
    print(f"{args.target}: unpaused (it was paused: {reason}); its deliveries go out from the next round")
    return EXIT_OK


def cmd_backup(args, config) -> int:
    from pathlib import Path

    from bridge.store.backup import backup_database

    done = backup_database(config.bridge.database, Path(args.path), overwrite=args.force)
    print(f"backup: {done.source} -> {done.path} ({done.bytes / 1e6:.1f} MB), a consistent copy, checked")
    return EXIT_OK
