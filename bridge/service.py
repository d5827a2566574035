"""The service: builds the runtime from the config and runs it, once or as the daemon.

The long-running part (scheduler, signals, sd_notify, watchdog, reload, health) is bridge.daemon;
this module owns what both modes share: opening the database, building and closing runtimes,
start-up recovery, and the job wrapper that keeps one failing job from killing the daemon.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import replace
from typing import Callable

import structlog

from bridge.clock import Clock, utc_now
from bridge.config import Config
from bridge.notify import Notifier
from bridge.pipeline import Runtime, deliver_due
from bridge.pipeline.cycle import PollTally, log_summary, poll_cycle
from bridge.publish import build_publisher
from bridge.sources.fetch import FetchLimits, make_client
from bridge.sources.workers import FeedParsers
from bridge.store.lock import RunLock
from bridge.store.maintenance import maintain, prune, reclaim
from bridge.store.opening import open_repository  # noqa: F401 (callers know it as service.open_repository)
from bridge.store.repo import Repository

log = structlog.get_logger("bridge")


def fetch_limits(config: Config) -> FetchLimits:
    settings = config.bridge
    limits = FetchLimits(
        connect_timeout=settings.connect_timeout.total_seconds(),
        total_timeout=settings.fetch_timeout.total_seconds(),
        max_body_bytes=settings.max_feed_bytes,
    )
    if settings.user_agent:
        from dataclasses import replace

        limits = replace(limits, user_agent=settings.user_agent)
    return limits


def build_runtime(config: Config, repo: Repository, *, clock: Clock = utc_now,
                  parse_in_workers: bool = False) -> Runtime:
    """`parse_in_workers`: feeds are parsed in a pool of processes (`bridge run`, whose cycles read
    many feeds); else in the polling thread (one-off commands, which would pay the start-up)."""
    limits = fetch_limits(config)
    publishers = {
        name: build_publisher(target, dry_run=config.bridge.dry_run,
                              timeout=config.bridge.publish_timeout.total_seconds(), clock=clock)
        for name, target in config.targets.items()
    }
    parsers = FeedParsers() if parse_in_workers else None
    return Runtime(config=config, repo=repo, http=make_client(limits), fetch_limits=limits,
                   publishers=publishers, clock=clock, parsers=parsers)


def prepare(rt: Runtime, lock: RunLock) -> None:
    """Start-up bookkeeping: posts a crash left `sending` become in doubt (settled by their
    network's rule, see pipeline.py), old pauses are lifted. Only the holder of the run lock may:
    a `sending` row of a daemon that is alive is not left by a crash.

    On a store replicas share (PostgreSQL, `lock.shared`) only claims whose lease ran out are
    recovered (every delivery round does that too), and pauses stay: they hold the target for the
    whole cluster until `bridge unpause TARGET`, since one replica restarting says nothing about
    whether the account was fixed."""
    if not lock.held:
        raise RuntimeError("start-up recovery needs the database's run lock (bridge.store.lock)")
    in_doubt = rt.repo.recover_in_doubt(rt.clock())
    if in_doubt:
        log.warning("posts in doubt after an unclean stop: each is settled by its network's rule "
                    "(see `bridge status`)", in_doubt=in_doubt)
    if lock.shared:
        for target in rt.repo.paused_targets():
            log.warning("target paused for every replica: lift it with `bridge unpause TARGET`", target=target)
        return
    for target in rt.repo.clear_pauses():
        log.info("target unpaused at start-up", target=target)
    maintain(rt.repo.engine)  # statistics current before the first cycle (see store/maintenance.py)


def maintain_store(rt: Runtime) -> None:
    """The daemon's periodic maintenance: prune what is older than [bridge] keep, give the space
    back, refresh statistics. Stops between batches when the daemon stops."""
    from bridge.store.lock import job_turn

    engine, stopping = rt.repo.engine, rt.stopping.is_set
    with job_turn(engine, "maintenance") as ours:
        if not ours:  # another replica is pruning right now; the next run (or that one) does it
            log.debug("store maintenance: another replica is doing it")
            return
        prune(engine, rt.config.bridge.keep, rt.clock(), stopping=stopping)
        reclaim(engine, stopping=stopping)
        maintain(engine)


def rebuild_runtime(old: Runtime, config: Config) -> Runtime:
    """A reload: new HTTP client and publishers for the new settings; the same database, and the
    same stop flag, delivery lock and once-a-day log memory, so work in flight and the next
    delivery round see one daemon, not two; the same feed parsers (their processes stay). The same
    host pacer too (with the new page_delay): a poll in flight keeps its site's turn, and a poll
    after the reload waits for it."""
    fresh = build_runtime(config, old.repo, clock=old.clock)
    old.pacer.delay = config.bridge.page_delay.total_seconds()
    return replace(fresh, stopping=old.stopping, delivery_lock=old.delivery_lock, logged_holds=old.logged_holds,
                   pacer=old.pacer, parsers=old.parsers, replica_id=old.replica_id)


def close_clients(rt: Runtime) -> None:
    """Close the network clients of a runtime (a reload retires them; the database stays open)."""
    rt.http.close()
    for publisher in rt.publishers.values():
        publisher.close()


def close(rt: Runtime) -> None:
    """The end of a run: clients, the feed parsers' processes, buffered unchanged polls (written
    now, so a stop keeps them), then the database."""
    close_clients(rt)
    if rt.parsers is not None:
        rt.parsers.close()
    run_safely(rt.repo.unchanged.flush)
    rt.repo.engine.dispose()


def run_once(rt: Runtime, lock: RunLock) -> None:
    """Poll every enabled source once (ignoring backoff), concurrently as the daemon does, then
    deliver what is due, holding `lock`. One summary line for the cycle. Beside live replicas
    (a shared store) it registers as one for its run, so peers never take its claims for a dead
    replica's."""
    if lock.shared:
        _register_once(rt)
        try:
            return _run_once(rt, lock)
        finally:
            run_safely(_leave_once, rt)
    _run_once(rt, lock)


def _register_once(rt: Runtime) -> None:
    import socket

    from bridge import __version__
    from bridge.config.fingerprint import settings_fingerprint
    from bridge.store import replicas

    replicas.register(rt.repo.engine, rt.replica_id, host=socket.gethostname(), pid=os.getpid(),
                      version=__version__, settings=settings_fingerprint(rt.config), now=rt.clock())


def _leave_once(rt: Runtime) -> None:
    from bridge.store import replicas

    replicas.leave(rt.repo.engine, rt.replica_id)


def _run_once(rt: Runtime, lock: RunLock) -> None:
    prepare(rt, lock)
    started = time.monotonic()
    tally = PollTally()
    poll_cycle(rt, rt.config.enabled_sources, tally, force=True)
    run_safely(rt.repo.unchanged.flush)
    log_summary("poll cycle", tally.take(), started, sources=len(rt.config.enabled_sources))
    run_safely(deliver_due, rt)
    if rt.config.alerts is not None:  # a timer-driven bridge tells its operator too
        from bridge.alert_channels import channels_for
        from bridge.alerts import check

        from bridge.store.lock import job_turn

        with job_turn(rt.repo.engine, "alerts") as ours:
            if ours:
                run_safely(check, rt.repo, rt.config, rt.clock(), channels_for(rt.config, rt.publishers),
                           rt.publishers)


def run_forever(rt: Runtime, lock: RunLock, reload_config: Callable[[], Config] | None = None,
                notifier: Notifier | None = None) -> None:
    """Until SIGTERM/SIGINT: poll each source on its interval and deliver continuously; SIGHUP
    re-reads settings.toml. Closes every runtime it used, the database last, then releases `lock`."""
    from bridge.daemon import Daemon

    daemon = Daemon(rt, reload_config=reload_config, notifier=notifier or Notifier(), run_lock=lock)
    clean = False
    try:
        clean = daemon.run()
    finally:
        daemon.close()
    if not clean:
        # A job is stuck past the stop grace: the interpreter would wait for its thread at exit,
        # past systemd's TimeoutStopSec and into a SIGKILL. The database is crash-safe and the
        # post in doubt is settled at the next start, so leave now.
        logging.shutdown()
        os._exit(0)


def run_safely(function, *args, **kwargs):
    """A job's unexpected error is logged and the job runs again next time; it never kills the daemon."""
    return run_reporting(function, *args, **kwargs)[0]


def run_reporting(function, *args, **kwargs) -> tuple[object, str | None]:
    """run_safely, and why the job failed (None when it did not)."""
    from sqlalchemy.exc import OperationalError

    job = getattr(function, "__name__", str(function))
    try:
        return function(*args, **kwargs), None
    except OperationalError as exc:  # read-only, full, locked: one line with the fix, traceback at debug
        from bridge.store.db import explain

        engine = getattr(args[0], "repo", None) if args else None
        reason = explain(exc, engine.engine.url if engine else "the database")
        log.error("database error: the job runs again next time", job=job, error=reason)
        log.debug("database error traceback", exc_info=True)
        return None, f"database: {reason}"
    except Exception as exc:  # a bug: one line for the operator, the traceback at debug for us
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        log.error("job failed unexpectedly: the job runs again next time", job=job, error=reason)
        log.debug("job failure traceback", exc_info=True)
        return None, f"job {job} failed unexpectedly: {reason}"


class JobFailures:
    """The jobs whose last run failed, and why, for /healthz. A full disk fails every poll's write
    while the scheduler (and so the heartbeat, which only reads) keeps running: without this the
    daemon would look healthy while storing nothing."""

    def __init__(self, clock: Clock = utc_now) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._failing: dict[str, tuple[object, str]] = {}  # job key -> (first failure, last reason)

    def run(self, key: str, function, *args, **kwargs):
        """run_safely, remembering whether this job's latest run failed."""
        result, reason = run_reporting(function, *args, **kwargs)
        with self._lock:
            if reason is None:
                self._failing.pop(key, None)
            else:
                since = self._failing.get(key, (self._clock(), ""))[0]
                self._failing[key] = (since, reason)
        return result

    def problems(self) -> list[str]:
        """One line per distinct reason, naming the jobs it fails and since when (UTC)."""
        with self._lock:
            failing = dict(self._failing)
        by_reason: dict[str, list[tuple[object, str]]] = {}
        for key, (since, reason) in sorted(failing.items()):
            by_reason.setdefault(reason, []).append((since, key))
        lines = []
        for reason, jobs in by_reason.items():
            since = min(s for s, _ in jobs)
            names = ", ".join(key for _, key in jobs[:3]) + (f" and {len(jobs) - 3} more" if len(jobs) > 3 else "")
            lines.append(f"{reason} (failing {names} since {since:%Y-%m-%d %H:%M} UTC)")
        return lines
