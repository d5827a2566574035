"""The edge: arguments, exit codes, tables for people. Decisions live elsewhere."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from bridge import __version__
from bridge.errors import BridgeError, ConfigError, DatabaseError

EXIT_OK = 0
EXIT_PROBLEM = 1
"""`bridge check` found a problem (unreachable credentials, ...), or retry/skip found no such delivery."""
EXIT_CONFIG = 2
"""settings.toml is invalid (also argparse's code for bad arguments)."""
EXIT_DATABASE = 3
"""The database cannot be opened or upgraded, or (`bridge run`) another bridge is running on it."""

DESCRIPTION = """\
Posts each new story from news sites and feeds to X, Facebook Pages, WhatsApp (approved template
messages), Telegram channels, Mastodon and Bluesky, once per target.

Configuration is read from --config PATH, else $BRIDGE_CONFIG, else ./settings.toml,
else /etc/bridge/settings.toml. Secrets come from BRIDGE_<TARGET>_<FIELD> variables or
$CREDENTIALS_DIRECTORY/<target>/<field> files, never from settings.toml.
"""

EPILOG = """\
exit codes: 0 ok; 1 a check or command found a problem; 2 invalid configuration or arguments;
3 the database cannot be opened, or `bridge run` found another bridge running on it;
130 interrupted (Ctrl-C). `bridge health`: 0 ok, 1 degraded, 2 broken.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bridge", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"bridge {__version__}")
    parser.add_argument("--config", metavar="PATH", help="settings file (default: see above)")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                        help="overrides [bridge] log_level")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the daemon in the foreground (what systemd starts; SIGHUP "
                                          "re-reads settings.toml, SIGTERM stops after the post in flight)",
                              description="Poll and deliver. One `bridge run` (daemon or --once) per database: "
                                          "a second is refused with exit 3, naming the running one's PID.")
    run.add_argument("--once", action="store_true",
                     help="poll every source once (poll_concurrency at a time, one per site), deliver what "
                          "is due, and exit (0 even if a source or target failed: see the log and `bridge status`)")
    run.add_argument("--dry-run", action="store_true",
                     help="a rehearsal: read every source and log each post that would be made (new stories "
                          "and queued deliveries that are due); writes nothing to the database, never creates "
                          "it, takes no lock (runs beside the service), posts nothing")

    check = commands.add_parser("check", help="validate settings, list sources and targets, verify credentials")
    check.add_argument("--dry-run", action="store_true", help="validate as if dry_run = true (no credentials needed)")

    status = commands.add_parser("status", help="show per source and target what happened and what waits")
    status.add_argument("--json", action="store_true", help="machine-readable output")

    commands.add_parser("health", help="one line per problem that needs a person; exit 0 ok, 1 degraded, "
                                       "2 broken (for monitoring scripts and timers)",
                        description="Exit 0: ok. 1: degraded, something needs a person (a source failing "
                                    "3 polls in a row, a target paused, a delivery in doubt, a held "
                                    "burst). 2: broken (the database cannot be read or written: unreadable, read-only, "
                                    "disk full; or its schema is not "
                                    "this version's). /healthz answers 200 exactly when this exits 0 (and "
                                    "the scheduler runs).")

    preview = commands.add_parser("preview", help="read a source now and show each story and its posts (or the "
                                                  "filter that keeps it from a target); changes nothing")
    preview.add_argument("source", help="source name")
    preview.add_argument("--no-pages", action="store_true", help="do not read the stories' own pages")

    catchup = commands.add_parser("catchup", help="mark everything now in a feed as seen, without posting it")
    catchup.add_argument("source", nargs="?", help="source name (default: every source)")

    poll = commands.add_parser("poll", help="read one source now, ignoring its backoff, and store and queue what "
                                            "is new (works beside the running daemon, which posts it)",
                               description="Read SOURCE now and print one line: ok (stories, new, queued), not "
                                           "modified, or error (exit 1). It never posts: the daemon (or the next "
                                           "`bridge run --once`) delivers what it queued. Success clears the "
                                           "source's backoff; a failure leaves it as it was.")
    poll.add_argument("source", help="source name")

    reload = commands.add_parser("reload", help="apply an edited settings.toml to the running daemon and say "
                                                "whether it took it (what `systemctl reload bridge` runs)",
                                 description="Validate settings.toml as the daemon would (exit 2 with every "
                                             "problem, without signalling), then send the running daemon SIGHUP "
                                             "and wait for its own answer: exit 0 when it applied the new "
                                             "settings, 1 when it refused them (with its reason) or did not "
                                             "answer in time.")
    reload.add_argument("--pid", type=int, help="the daemon's PID (default: the one holding the database's run "
                                                "lock, on this host; bridge.service passes $MAINPID)")
    reload.add_argument("--wait", type=float, default=30.0, metavar="SECONDS",
                        help="how long to wait for the daemon's answer (default: 30)")

    retry = commands.add_parser("retry", help="re-queue a failed delivery, or one in doubt that is not on the "
                                              "account (it is sent again with its first text)")
    retry.add_argument("delivery_id", type=int, metavar="ID")
    skip = commands.add_parser("skip", help="drop a pending delivery without posting it")
    skip.add_argument("delivery_id", type=int, metavar="ID")
    resolve = commands.add_parser("resolve", help="settle a delivery in doubt that you found on the account")
    resolve.add_argument("delivery_id", type=int, metavar="ID")
    resolve.add_argument("--sent", action="store_true", required=True,
                         help="the post is on the account: record it as sent (if it is not, use `bridge retry ID`)")
    release = commands.add_parser("release", help="post a source's held burst of new stories (oldest first, "
                                                  "within pacing); `bridge catchup SOURCE` drops it instead")
    release.add_argument("source", help="source name")
    backup = commands.add_parser("backup", help="write a consistent copy of the SQLite database to PATH, safe "
                                                "while the daemon runs (PostgreSQL: prints the pg_dump command)",
                                 description="Copy the database with SQLite's online backup API (a WAL-safe "
                                             "snapshot; the daemon keeps running), check the copy, and put it "
                                             "at PATH in one rename: PATH holds the whole backup or is "
                                             "untouched. Exit 3 when the database cannot be read, 1 when PATH "
                                             "exists or cannot be written. Restore with the service stopped "
                                             "(README: Backup and restore).")
    backup.add_argument("path", metavar="PATH", help="the backup file to write (mode 0600)")
    backup.add_argument("--force", action="store_true", help="replace PATH if it exists")
    return parser


EXIT_INTERRUPTED = 130
"""Ctrl-C (SIGINT): 128 + 2, as a shell reports it."""


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from sqlalchemy.exc import SQLAlchemyError

    from bridge import logs

    try:
        config = _load(args)
        logs.configure_logging(args.log_level or config.bridge.log_level)
        logs.set_secrets(config.secrets())
        return COMMANDS[args.command](args, config)
    except ConfigError as exc:
        logs.print_error(f"bridge: invalid configuration: {exc}")
        return EXIT_CONFIG
    except DatabaseError as exc:
        logs.print_error(f"bridge: database: {exc}")
        return EXIT_DATABASE
    except BridgeError as exc:
        logs.print_error(f"bridge: {exc}")
        return EXIT_PROBLEM
    except SQLAlchemyError as exc:  # while running: read-only, full disk, locked
        from bridge.store.db import explain

        _debug_traceback(args)
        logs.print_error(f"bridge: database: {explain(exc, _database(args))}")
        return EXIT_DATABASE
    except KeyboardInterrupt:
        _debug_traceback(args)
        logs.print_error("bridge: interrupted (Ctrl-C): nothing half-done is kept; run the command again")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `bridge status | head -1`: the reader has what it wanted. Say nothing, and keep Python's
        # exit-time flush of the closed stdout quiet too.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except ImportError as exc:  # a broken install: a dependency missing or of the wrong version
        _debug_traceback(args)
        logs.print_error(f"bridge: a dependency is missing or broken ({exc}): install the bridge again "
                         "(`sudo systemd/install.sh`, or `pip install --force-reinstall .` in its venv)")
        return EXIT_PROBLEM
    except Exception as exc:  # a bug: one line for the operator, the traceback with --log-level debug
        _debug_traceback(args)
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        logs.print_error(f"bridge: unexpected error, a bug in the bridge ({reason}): run the command again "
                         "with --log-level debug to see where, and report it")
        return EXIT_PROBLEM


def _debug_traceback(args) -> None:
    """Tracebacks are for developers: only with --log-level debug."""
    if args.log_level == "debug":
        import traceback

        traceback.print_exc()


def _database(args) -> str:
    try:
        return _load(args).bridge.database
    except Exception:
        return "the database"


def _load(args):
    from bridge.config import find_config_path, load_config

    # Commands that never post read no credentials, but still report the file's dry_run truly.
    posts = args.command in ("run", "check")
    dry_run = True if getattr(args, "dry_run", False) else None
    return load_config(find_config_path(args.config), dry_run=dry_run, secrets=posts)


def cmd_run(args, config) -> int:
    if args.dry_run:
        return _rehearse(args, config)
    from bridge.store.lock import lock_database

    # Refused (RunLockHeld, exit 3) beside a running bridge, before the slow imports and before the
    # schema is upgraded or any delivery recovered.
    engine, lock = lock_database(config.bridge.database)
    from bridge import service

    try:
        rt = service.build_runtime(config, service.open_repository(config, engine=engine), parse_in_workers=True)
    except BaseException:
        engine.dispose()
        lock.release()
        raise
    if not args.once:
        service.run_forever(rt, lock, reload_config=lambda: _reload(args))  # closes what it used
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


def _reload(args):
    """settings.toml again, as at start: the same file, and --dry-run/--log-level still win."""
    from dataclasses import replace

    config = _load(args)
    if args.log_level:
        config = replace(config, bridge=replace(config.bridge, log_level=args.log_level))
    return config


def cmd_check(args, config) -> int:
    from bridge.publish import build_publisher
    from bridge.store.opening import open_repository

    repo = open_repository(config, upgrade=False)
    mode = "dry run (nothing is posted)" if config.bridge.dry_run else "live"
    print(f"settings: {config.path} ok, {mode}")
    print(f"database: {config.bridge.database} ok")
    for source in config.sources:
        print(f"source {source.name}: {source.kind} {source.url} -> {', '.join(source.targets)} "
              f"every {_duration(source.poll_interval)}, first run: {source.first_run}")
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


def cmd_catchup(args, config) -> int:
    from bridge import service
    from bridge.pipeline import poll

    if args.source:
        sources = [_enabled_source(config, args.source)]
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


def cmd_poll(args, config) -> int:
    from bridge import service
    from bridge.pipeline import poll

    source = _enabled_source(config, args.source)
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


def cmd_reload(args, config) -> int:
    from bridge import reloading
    from bridge.config import load_config
    from bridge.store.opening import open_repository

    # As the daemon will read it (its live credentials included): a broken file is never signalled.
    load_config(config.path, dry_run=None)
    sqlite = reloading.sqlite_file(config.bridge.database) is not None
    pid = args.pid or (reloading.daemon_pid(config.bridge.database) if sqlite else None)
    repo = open_repository(config, upgrade=False)
    try:
        pid = pid or reloading.daemon_pid(config.bridge.database, repo.engine)  # PostgreSQL: the lock's holder
        answer = reloading.request_reload(repo.engine, pid, wait=args.wait)
    finally:
        repo.engine.dispose()
    if answer["applied"]:
        print(f"reload applied by the daemon (PID {pid}): {answer['reason']}")
        return EXIT_OK
    print(f"bridge: reload refused by the daemon (PID {pid}), still running on the previous settings: "
          f"{answer['reason']}", file=sys.stderr)
    return EXIT_PROBLEM


def cmd_preview(args, config) -> int:
    from bridge import preview
    from bridge.errors import FetchError

    source = _source_named(config, args.source)
    try:
        result = preview.preview(config, source, story_pages=not args.no_pages)
    except FetchError as exc:
        print(f"{source.name}: could not read {exc.url}: {exc.reason}")
        return EXIT_PROBLEM
    print(preview.render(result))
    return EXIT_OK


def cmd_backup(args, config) -> int:
    from pathlib import Path

    from bridge.store.backup import backup_database

    done = backup_database(config.bridge.database, Path(args.path), overwrite=args.force)
    print(f"backup: {done.source} -> {done.path} ({done.bytes / 1e6:.1f} MB), a consistent copy, checked")
    return EXIT_OK


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

    _source_named(config, args.source)
    repo = open_repository(config)
    released = repo.release_held(args.source, utc_now())
    repo.engine.dispose()
    if not released:
        print(f"{args.source}: nothing held")
        return EXIT_PROBLEM
    print(f"{args.source}: {released} held deliveries queued; they go out oldest first, within pacing")
    return EXIT_OK


def _source_named(config, name: str):
    try:
        return config.source(name)
    except KeyError:
        from bridge.config.values import did_you_mean

        names = [s.name for s in config.sources]
        hint = did_you_mean(name, names)
        raise ConfigError([f"no source named {name!r}" + (f"; {hint}" if hint else "")
                           + f" (sources: {', '.join(names)})"]) from None


def _enabled_source(config, name: str):
    source = _source_named(config, name)
    if not source.enabled:
        raise BridgeError(f"source {name!r} is disabled (enabled = false in settings.toml): it is not read")
    return source


def _duration(delta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


COMMANDS = {"run": cmd_run, "check": cmd_check, "status": cmd_status, "catchup": cmd_catchup,
            "health": cmd_health, "retry": cmd_retry, "skip": cmd_skip, "resolve": cmd_resolve, "release": cmd_release}
COMMANDS["preview"] = cmd_preview
COMMANDS["poll"] = cmd_poll
COMMANDS["reload"] = cmd_reload
COMMANDS["backup"] = cmd_backup


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

