"""The daemon: builds the runtime from the config, schedules the pipeline, handles signals.

Jobs are rebuilt from settings.toml at every start; all state lives in the database, so the
scheduler itself keeps nothing worth saving.
"""

from __future__ import annotations

import signal
import threading
from datetime import timedelta, timezone

import structlog
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from bridge.clock import Clock, utc_now
from bridge.config import Config
from bridge.pipeline import Runtime, deliver_due, poll
from bridge.publish import build_publisher
from bridge.sources.fetch import FetchLimits, make_client
from bridge.store.db import check_connection, create_database_engine
from bridge.store.migrations import migrate
from bridge.store.repo import Repository

log = structlog.get_logger("bridge")

MAX_POLL_JITTER = timedelta(seconds=60)
"""Polls of different sources are spread by up to a tenth of their interval, at most this much."""


def open_repository(config: Config, *, upgrade: bool = True) -> Repository:
    """Open the database (raising DatabaseError with a readable reason) and bring its schema up to date."""
    engine = create_database_engine(config.bridge.database)
    check_connection(engine)
    if upgrade:
        migrate(engine)
    return Repository(engine)


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


def build_runtime(config: Config, repo: Repository, *, clock: Clock = utc_now) -> Runtime:
    limits = fetch_limits(config)
    publishers = {
        name: build_publisher(target, dry_run=config.bridge.dry_run,
                              timeout=config.bridge.publish_timeout.total_seconds(), clock=clock)
        for name, target in config.targets.items()
    }
    return Runtime(config=config, repo=repo, http=make_client(limits), fetch_limits=limits,
                   publishers=publishers, clock=clock)


def prepare(rt: Runtime) -> None:
    """Start-up bookkeeping: settle deliveries a crash left in doubt, lift old pauses."""
    safe = {name for name, p in rt.publishers.items() if p.resend_in_doubt_is_safe}
    requeued, failed = rt.repo.recover_in_doubt(safe, rt.clock())
    if requeued or failed:
        log.warning("deliveries in doubt after an unclean stop", requeued=requeued, marked_failed=failed)
    for target in rt.repo.clear_pauses():
        log.info("target unpaused at start-up", target=target)


def close(rt: Runtime) -> None:
    rt.http.close()
    for publisher in rt.publishers.values():
        publisher.close()
    rt.repo.engine.dispose()


def run_once(rt: Runtime) -> None:
    """Poll every source once (ignoring backoff), then deliver what is due."""
    prepare(rt)
    for source in rt.config.sources:
        _safely(poll, rt, source, force=True)
    _safely(deliver_due, rt)


def run_forever(rt: Runtime) -> None:
    """Until SIGTERM/SIGINT: poll each source on its interval and deliver continuously. On a
    signal, no new job starts, the post in flight finishes, and the function returns."""
    prepare(rt)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    scheduler = build_scheduler(rt)
    scheduler.start()
    log.info("started", sources=len(rt.config.sources), targets=len(rt.publishers),
             dry_run=rt.config.bridge.dry_run)
    while not stop.wait(1.0):
        pass
    log.info("stopping: finishing work in flight")
    rt.stopping.set()
    scheduler.shutdown(wait=True)
    log.info("stopped")


def build_scheduler(rt: Runtime) -> BackgroundScheduler:
    """One job per source and one delivery job, each at most one instance at a time. A run that
    is late (busy machine, suspend) still runs once (coalesce) instead of being skipped silently,
    as APScheduler's default misfire_grace_time of 1 s would do."""
    scheduler = BackgroundScheduler(timezone=timezone.utc)
    now = rt.clock()
    for source in rt.config.sources:
        interval = source.poll_interval
        scheduler.add_job(
            _poll_and_deliver, IntervalTrigger(seconds=interval.total_seconds(),
                                               jitter=min(interval / 10, MAX_POLL_JITTER).total_seconds()),
            args=[rt, source], id=f"poll:{source.name}", name=f"poll {source.name}", next_run_time=now,
            max_instances=1, coalesce=True, misfire_grace_time=int(interval.total_seconds()),
        )
    delivery = rt.config.bridge.delivery_interval
    scheduler.add_job(
        _safely, IntervalTrigger(seconds=delivery.total_seconds()), args=[deliver_due, rt],
        id="deliver", name="deliver", next_run_time=now, max_instances=1, coalesce=True,
        misfire_grace_time=int(delivery.total_seconds()),
    )
    return scheduler


def _poll_and_deliver(rt: Runtime, source) -> None:
    outcome = _safely(poll, rt, source)
    if outcome is not None and outcome.deliveries_created:
        _safely(deliver_due, rt)


def _safely(function, *args, **kwargs):
    """A job's unexpected error is logged and the job runs again next time; it never kills the daemon."""
    try:
        return function(*args, **kwargs)
    except Exception:
        log.exception("job failed unexpectedly", job=getattr(function, "__name__", str(function)))
        return None
