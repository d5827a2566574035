"""Commands that run the pipeline or act on the running daemon: run (and its rehearsal), reload, poll, catchup."""

from __future__ import annotations

import sys

from bridge.commands.common import EXIT_OK, EXIT_PROBLEM, enabled_source, load_settings


def cmd_run(args, config) -> int:
    if args.dry_run:
        return _rehearse(args, config)
    from bridge.store.lock import lock_database

    # SQLite: refused (RunLockHeld, exit 3) beside a running bridge, before the slow imports and
    # before the schema is upgraded or any delivery recovered. PostgreSQL: no lock, replicas share
    # the store (bridge.store.lock.run_lock_for).
    engine, lock = lock_database(config.bridge.database)
    from bridge import memory, service

    memory.limit_arenas()  # before the threads (HTTP, scheduler, polls) make arenas of their own

    try:
        rt = service.build_runtime(config, service.open_repository(config, engine=engine), parse_in_workers=True)
    except BaseException:
        engine.dispose()
        lock.release()
        raise
    if not args.once:
        service.run_forever(rt, lock, reload_config=lambda: reload_settings(args))  # closes what it used
        return EXIT_OK
    try:
        service.run_once(rt, lock)
    finally:
        service.close(rt)
        lock.release()
    return EXIT_OK


def _rehearse(args, config) -> int:
    """`run --dry-run`: read and log what would be posted; no lock, and the database only read."""
    import signal

    from bridge import rehearsal
    from bridge.wake import Wake

    stop = Wake()  # set by the signal handlers: see bridge/wake.py for why not an Event
    if not args.once:
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, lambda *_: stop.set())
    rehearsal.rehearse(config, stop, once=args.once)
    return EXIT_OK


def reload_settings(args):
    """settings.toml again, as at start: the same file, and --dry-run/--log-level still win."""
    from dataclasses import replace

    config = load_settings(args)
    if args.log_level:
        config = replace(config, bridge=replace(config.bridge, log_level=args.log_level))
    return config


def cmd_reload(args, config) -> int:
    from bridge import reloading
    from bridge.config import load_config
    from bridge.store.opening import open_repository

    # A broken file is never signalled. Validated without the secrets: under systemd 252 (Debian 12)
    # the ExecReload= process could not read the service's credentials folder (nspawn-check), and
    # the daemon's own answer below says when a secret is missing or unreadable.
    load_config(config.path, dry_run=None, secrets=False)
    sqlite = reloading.sqlite_file(config.bridge.database) is not None
    pid = args.pid or (reloading.daemon_pid(config.bridge.database) if sqlite else None)
    repo = open_repository(config, upgrade=False)
    try:
        pid = pid or reloading.daemon_pid(config.bridge.database, repo.engine)  # PostgreSQL: this host's replica
        answer = reloading.request_reload(repo.engine, pid, wait=args.wait)
    finally:
        repo.engine.dispose()
    if answer["applied"]:
        print(f"reload applied by the daemon (PID {pid}): {answer['reason']}")
        return EXIT_OK
    print(f"bridge: reload refused by the daemon (PID {pid}), still running on the previous settings: "
          f"{answer['reason']}", file=sys.stderr)
    return EXIT_PROBLEM


def cmd_poll(args, config) -> int:
    from bridge import service
    from bridge.pipeline import poll

    source = enabled_source(config, args.source)
    rt = _runtime_that_never_posts(config)
    try:
        outcome = poll(rt, source, force=True, keep_backoff=True)
    finally:
        service.close(rt)
    if outcome.status == "error":
        print(f"{source.name}: error: {outcome.error} (its backoff is unchanged)")
        return EXIT_PROBLEM
    if outcome.status == "not_modified":
        print(f"{source.name}: not modified since the last poll")
        return EXIT_OK
    extra = [f"{count} {what}" for what, count in sorted(outcome.extra.items()) if count]
    first = ", first run" if outcome.first_run else ""
    print(f"{source.name}: ok: {outcome.items_seen} stories, {outcome.items_new} new, "
          f"{outcome.deliveries_created} queued{first}" + (f" ({', '.join(extra)})" if extra else ""))
    return EXIT_OK


def cmd_catchup(args, config) -> int:
    from bridge import service
    from bridge.pipeline import poll

    if args.source:
        sources = [enabled_source(config, args.source)]
    else:
        sources = list(config.enabled_sources)
    rt = _runtime_that_never_posts(config)
    failed = 0
    try:
        for source in sources:
            # A catch-up that cannot read the feed leaves the source's backoff as it was.
            outcome = poll(rt, source, catchup=True, force=True, keep_backoff=True)
            if outcome.status == "error":
                failed += 1
                print(f"{source.name}: could not read the feed: {outcome.error}")
            else:
                print(f"{source.name}: {outcome.items_seen} stories marked seen "
                      f"({outcome.extra.get('skipped', 0)} will not be posted)")
    finally:
        service.close(rt)
    return EXIT_PROBLEM if failed else EXIT_OK


def _runtime_that_never_posts(config):
    """For commands that read sources but never deliver (catchup, poll): they read no credentials,
    so their runtime gets the dry-run publishers (only their length rules are used)."""
    from dataclasses import replace

    from bridge import service

    rehearsing = replace(config, bridge=replace(config.bridge, dry_run=True))
    return service.build_runtime(rehearsing, service.open_repository(config))
