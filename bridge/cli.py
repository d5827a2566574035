"""The edge: arguments, exit codes, tables for people. Decisions live elsewhere."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from bridge import __version__
from bridge.commands.common import (  # noqa: F401 (the exit codes are part of the CLI's interface)
    EXIT_CONFIG, EXIT_DATABASE, EXIT_INTERRUPTED, EXIT_OK, EXIT_PROBLEM, load_settings,
)
from bridge.commands.looking import cmd_check, cmd_health, cmd_preview, cmd_status
from bridge.commands.running import cmd_catchup, cmd_poll, cmd_reload, cmd_run
from bridge.commands.settling import cmd_backup, cmd_release, cmd_resolve, cmd_retry, cmd_skip, cmd_unpause
from bridge.errors import BridgeError, ConfigError, DatabaseError


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
    reload.add_argument("--pid", type=int, help="the daemon's PID (default: the one holding the SQLite run lock, "
                                                "or on PostgreSQL this host's replica; bridge.service passes "
                                                "$MAINPID)")
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
    unpause = commands.add_parser(
        "unpause", help="lift a target's pause (an auth, rights or credits failure) once it is fixed",
        description="Lift the pause of TARGET, for every bridge on this database: its deliveries go out "
                    "from the next delivery round. On SQLite a restart of the bridge also lifts every pause; "
                    "on PostgreSQL (several replicas) a pause stays until this command lifts it.")
    unpause.add_argument("target", help="target name ([targets.NAME] in settings.toml)")
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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from sqlalchemy.exc import SQLAlchemyError

    from bridge import logs

    try:
        config = load_settings(args)
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
        return load_settings(args).bridge.database
    except Exception:
        return "the database"


COMMANDS = {"run": cmd_run, "check": cmd_check, "status": cmd_status, "catchup": cmd_catchup,
            "health": cmd_health, "retry": cmd_retry, "skip": cmd_skip, "resolve": cmd_resolve, "release": cmd_release}
COMMANDS["preview"] = cmd_preview
COMMANDS["poll"] = cmd_poll
COMMANDS["reload"] = cmd_reload
COMMANDS["backup"] = cmd_backup
COMMANDS["unpause"] = cmd_unpause


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

