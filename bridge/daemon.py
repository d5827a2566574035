"""The long-running daemon: scheduler, signals, sd_notify, watchdog, reload and the health endpoint.

It tells systemd the truth: READY=1 once the database is open and every job is scheduled; watchdog
pings only while the scheduler really runs jobs and the database answers (a heartbeat job proves
both); RELOADING=1 ... READY=1 around a reload; STOPPING=1 on the way out.

Jobs look up the current runtime when they start, so a reload swaps settings under a running
scheduler: a job already running finishes with the runtime it started with, whose clients are
closed once nothing uses them.
"""

from __future__ import annotations

import signal
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Callable

import structlog
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from bridge import logs, memory, scheduler_logs
from bridge.poll_plan import PollDispatcher, PollPlan
from bridge.alerts import ALERT_CHECK_INTERVAL
from bridge.config import Config
from bridge.daemon_jobs import HOST_BUSY_RETRY, _check_alerts, _deliver, _maintain, _poll_source  # noqa: F401 (tests)
from bridge.daemon_jobs import register_replica, renew_replica
from bridge.errors import BridgeError, ConfigError
from bridge.heartbeat import HEARTBEAT_INTERVAL, HEARTBEAT_MAX_AGE, Heartbeat  # noqa: F401 (tests use them)
from bridge.metrics import Metrics
from bridge.notify import Notifier
from bridge.pipeline import Runtime
from bridge.pipeline.cycle import PollTally, log_summary
from bridge.pipeline.shared_polls import SharedPolls
from bridge.service import JobFailures, close, close_clients, prepare, rebuild_runtime, run_safely
from bridge.store.db import check_connection
from bridge.store import replicas
from bridge.store.lock import RunLock, run_lock_for
from bridge.store.replicas import REPLICA_BEAT_INTERVAL
from bridge.store.unchanged import FLUSH_SECONDS as UNCHANGED_FLUSH_SECONDS
from bridge.wake import Wake

log = structlog.get_logger("bridge")

MAX_POLL_JITTER = timedelta(seconds=60)
"""Polls of different sources are spread by up to a tenth of their interval, at most this much."""
STOP_GRACE = timedelta(seconds=30)
"""On SIGTERM, jobs in flight (a post: publish_timeout, 20 s by default) get this long to finish
before the process leaves anyway. Keep it below the unit's TimeoutStopSec (60 s)."""
MAINTENANCE_INTERVAL = timedelta(hours=6)
"""How often the store is pruned ([bridge] keep), its space given back and its statistics refreshed.
Each step is a short transaction, so the job never holds up a poll, a post or the heartbeat."""
MAINTENANCE_FIRST_DELAY = timedelta(minutes=10)
"""The first maintenance waits for the start-up cycle (every source polled) to be done."""
IDLE_TICK_SECONDS = 5.0
"""Without a watchdog, the main loop still wakes this often (signals also wake it at once)."""
SUMMARY_INTERVAL = timedelta(minutes=15)
"""How often the daemon logs what its polls did (polled, unchanged, failed, new): the line that
stands for the per-poll lines, which are at debug when nothing was new."""
SERVICE_EXECUTOR = "service"
SERVICE_THREADS = 6
"""Heartbeat, delivery round, unchanged-poll flush, summary, store maintenance and alerts: one
thread each, so a long prune or a slow SMTP server never delays the heartbeat or a delivery."""


class Daemon:
    def __init__(self, rt: Runtime, *, reload_config: Callable[[], Config] | None = None,
                 notifier: Notifier | None = None, monotonic: Callable[[], float] = time.monotonic,
                 run_lock: RunLock | None = None):
        self.rt = rt
        self.run_lock = run_lock
        """The database's run lock: given by the caller, or taken by start(); released by close()."""
        self.notifier = notifier or Notifier({})
        self.heartbeat = Heartbeat(monotonic)
        self.failures = JobFailures(rt.clock)
        self.replica_id = rt.replica_id
        """This process's row in the replicas table, from start() to close()."""
        self.shared_polls = SharedPolls(self.replica_id) if rt.repo.engine.dialect.name != "sqlite" else None
        """On PostgreSQL the replicas take turns at each source (pipeline/shared_polls.py); on SQLite
        (one daemon per database, the run lock) every poll is this daemon's and costs no lease."""
        self._registered = False
        """Jobs whose last run failed (a full disk, a bug): /healthz names them until they succeed."""
        self.metrics = Metrics(lambda: self.rt, self.heartbeat.age)
        # Polls are not scheduler jobs: the poll plan hands the due ones, in batches, to a pool of
        # [bridge] poll_concurrency threads of its own (bridge/poll_plan.py says why). The heartbeat,
        # the delivery round and the bookkeeping jobs run in the scheduler's pool, so a cold start
        # queueing thousands of polls never holds up the watchdog's heartbeat or a post.
        self.polls = PollDispatcher(
            PollPlan(monotonic), lambda name: self._job(_poll_source, name), rt.config.bridge.poll_concurrency,
            on_skip=lambda job: self.metrics.jobs_still_running.labels(job).inc(), monotonic=monotonic)
        self.scheduler = BackgroundScheduler(timezone=timezone.utc, executors={
            "default": ThreadPoolExecutor(1),  # nothing runs there: every job names its executor
            SERVICE_EXECUTOR: ThreadPoolExecutor(SERVICE_THREADS),
        })
        self.tally = PollTally()
        """Polls since the last summary line (SUMMARY_INTERVAL)."""
        self.trimmer = memory.Trimmer()
        """Gives the heap's freed pages back when the pipeline jobs in flight come back to none."""
        self._monotonic = monotonic
        self._summary_since = monotonic()
        self.health = None
        self._reload_config = reload_config
        self._wake = Wake()  # set by signal handlers: see bridge/wake.py for why not an Event
        self._stop_requested = False
        self._reload_requested = False
        self._lock = threading.Condition()
        self._users: dict[int, int] = {}
        self._leases: dict[int, Runtime] = {}
        """Per job thread, the runtime it uses (see current_runtime)."""
        self._retired: list[Runtime] = []
        self._said_hung = False
        self._delivery_wanted = threading.Event()
        """Set by a poll that queued deliveries: the delivery round runs (again) for them."""
        self._still_running_filter = None

    # --- Life cycle ------------------------------------------------------------------------------

    def run(self, *, install_signals: bool = True) -> bool:
        """Start, serve until a stop is requested, stop. True when all work in flight finished."""
        if install_signals:
            self.install_signal_handlers()
        self.start()
        self.serve()
        return self.stop()

    def install_signal_handlers(self) -> None:
        # Handlers only set flags: the main loop does the work, outside signal context.
        signal.signal(signal.SIGTERM, lambda *_: self.request_stop())
        signal.signal(signal.SIGINT, lambda *_: self.request_stop())
        signal.signal(signal.SIGHUP, lambda *_: self.request_reload())

    def request_stop(self) -> None:
        self._stop_requested = True
        self._wake.set()

    def request_reload(self) -> None:
        self._reload_requested = True
        self._wake.set()

    def start(self) -> None:
        if self.run_lock is None:
            self.run_lock = run_lock_for(self.rt.repo.engine)  # RunLockHeld: another daemon runs (SQLite)
        if self.run_lock.shared:  # registered first: peers must see the replica of every claim live
            register_replica(self)
        prepare(self.rt, self.run_lock)
        self._still_running_filter = scheduler_logs.install(
            lambda job: self.metrics.jobs_still_running.labels(job).inc())
        self.scheduler.add_job(self._beat, IntervalTrigger(seconds=HEARTBEAT_INTERVAL.total_seconds()),
                               id="heartbeat", name="heartbeat", next_run_time=self.rt.clock(),
                               max_instances=1, coalesce=True, misfire_grace_time=None,
                               executor=SERVICE_EXECUTOR)
        self.scheduler.add_job(self._flush_unchanged, IntervalTrigger(seconds=UNCHANGED_FLUSH_SECONDS),
                               id="flush-unchanged", name="flush unchanged polls", max_instances=1,
                               coalesce=True, misfire_grace_time=None, executor=SERVICE_EXECUTOR)
        self.scheduler.add_job(self.trimmer.tick, IntervalTrigger(seconds=memory.TRIM_SPACING_SECONDS),
                               id="trim-heap", name="trim the heap", max_instances=1, coalesce=True,
                               misfire_grace_time=None, executor=SERVICE_EXECUTOR)
        self.scheduler.add_job(self._summarise, IntervalTrigger(seconds=SUMMARY_INTERVAL.total_seconds()),
                               id="summary", name="poll summary", max_instances=1, coalesce=True,
                               misfire_grace_time=None, executor=SERVICE_EXECUTOR)
        self.scheduler.add_job(self._job, IntervalTrigger(seconds=MAINTENANCE_INTERVAL.total_seconds()),
                               args=[_maintain], id="maintain", name="maintain",
                               next_run_time=self.rt.clock() + MAINTENANCE_FIRST_DELAY,
                               max_instances=1, coalesce=True, misfire_grace_time=None, executor=SERVICE_EXECUTOR)
        if not self._registered:
            register_replica(self)
        self.scheduler.add_job(renew_replica, IntervalTrigger(seconds=REPLICA_BEAT_INTERVAL.total_seconds()),
                               args=[self], id="replica", name="replica heartbeat", max_instances=1, coalesce=True,
                               misfire_grace_time=None, executor=SERVICE_EXECUTOR)
        self.scheduler.add_job(self._job, IntervalTrigger(seconds=ALERT_CHECK_INTERVAL.total_seconds()),
                               args=[_check_alerts], id="alerts", name="alerts", next_run_time=self.rt.clock(),
                               max_instances=1, coalesce=True, misfire_grace_time=None, executor=SERVICE_EXECUTOR)
        self._schedule(self.rt.config, None)
        self.start_jobs()
        # Starting counts as the first sign of life: the heartbeat job has HEARTBEAT_MAX_AGE to follow.
        self.heartbeat.beat()
        self._start_health(self.rt.config)
        config = self.rt.config
        log.info("started", sources=len(config.sources), targets=len(self.rt.publishers),
                 dry_run=config.bridge.dry_run, watchdog_s=self.notifier.watchdog_interval,
                 health=self.health.address if self.health else None)
        self.notifier.ready(describe(config))

    def start_jobs(self) -> None:
        """The polls and the scheduler's jobs begin to run (the polls first: the heartbeat's
        first run checks their dispatcher)."""
        self.polls.start()
        self.scheduler.start()

    def serve(self) -> None:
        """The main loop: wait for a signal or the next watchdog ping, whichever comes first."""
        interval = self.notifier.watchdog_interval
        tick = min(interval, IDLE_TICK_SECONDS) if interval else IDLE_TICK_SECONDS
        while True:
            self._wake.wait(tick)
            self._wake.clear()
            if self._stop_requested:
                return
            if self._reload_requested:
                self._reload_requested = False
                self.reload()
            if interval:
                self.feed_watchdog()

    def stop(self, grace: timedelta = STOP_GRACE) -> bool:
        """No new job starts; jobs in flight get `grace` to finish. True when they all did."""
        log.info("stopping: finishing work in flight", grace_s=int(grace.total_seconds()))
        self.notifier.stopping("stopping: finishing the post in flight")
        self._stop_requested = True
        self.rt.stopping.set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        self.polls.stop()
        with self._lock:
            idle = self._lock.wait_for(lambda: not any(self._users.values()), grace.total_seconds())
        if self.health:
            self.health.close()
        self._summarise()  # what the polls did since the last summary, so a short run says it too
        if idle:
            log.info("stopped")
        else:
            log.error("stopped with work still in flight", grace_s=int(grace.total_seconds()),
                      error="a job did not finish in time; a post left in doubt is settled at the next start")
        return idle

    def close(self) -> None:
        """Close every runtime this daemon used; the database (shared by all of them) last."""
        if self._registered:
            run_safely(replicas.leave, self.rt.repo.engine, self.replica_id)
            self._registered = False
        for old in self._retired:
            close_clients(old)
        self._retired.clear()
        close(self.rt)
        self.notifier.close()
        self._wake.close()
        if self._still_running_filter is not None:
            scheduler_logs.remove(self._still_running_filter)
            self._still_running_filter = None
        if self.run_lock is not None:
            self.run_lock.release()  # last: until the database is closed, no other daemon may start

    # --- Watchdog and health ---------------------------------------------------------------------

    def _beat(self) -> None:
        """The heartbeat job: it runs only if the scheduler runs jobs, and beats only if the polls'
        dispatcher is alive and the database answers."""
        if not self.polls.alive(HEARTBEAT_MAX_AGE.total_seconds()):
            log.error("poll dispatcher not running: the watchdog will restart the service if this lasts")
            return
        try:
            check_connection(self.rt.repo.engine)
        except BridgeError as exc:
            log.error("database does not answer: the watchdog will restart the service if this lasts",
                      error=str(exc))
            return
        self.heartbeat.beat()

    def _flush_unchanged(self) -> None:
        """Write the unchanged polls waiting in memory (store/unchanged.py), if any. Not in the
        heartbeat: a write can wait for another process's write lock, and the heartbeat must not."""
        if self.rt.repo.unchanged.pending():
            run_safely(self.rt.repo.unchanged.flush)

    def _summarise(self) -> None:
        now = self._monotonic()
        since, self._summary_since = self._summary_since, now
        log_summary("polls summary", self.tally.take(), period_s=int(now - since))

    def feed_watchdog(self) -> bool:
        """Ping systemd's watchdog if the heartbeat is fresh; say once when it is not."""
        if self.heartbeat.alive():
            if self._said_hung:
                self._said_hung = False
                log.info("scheduler answers again: watchdog fed")
                self.notifier.status(describe(self.rt.config))
            return self.notifier.watchdog()
        if not self._said_hung:
            self._said_hung = True
            age = self.heartbeat.age()
            log.error("scheduler or database not answering: watchdog no longer fed, systemd will restart "
                      "the service", heartbeat_age_s=None if age is None else int(age))
            self.notifier.status("not answering: no heartbeat from the scheduler")
        return False

    def health_check(self) -> tuple[bool, str]:
        """/healthz: healthy while the scheduler is alive and `bridge health` would say ok; else the reasons."""
        if self._stop_requested:
            return False, "stopping"
        if not self.heartbeat.alive():
            age = self.heartbeat.age()
            since = "never ran" if age is None else f"last ran {int(age)}s ago"
            return False, f"scheduler not running: its heartbeat {since}"
        rt = self.rt
        from bridge.status import HEALTH_OK, judge

        level, problems = judge(rt.repo, rt.config, rt.clock())  # the same judgement as `bridge health`
        failing = self.failures.problems()  # what only this process saw, e.g. writes refused by a full disk
        if level != HEALTH_OK or failing:
            return False, "; ".join(failing + problems)
        return True, f"ok: scheduler running, {describe(rt.config)}"

    def _start_health(self, config: Config) -> None:
        if not config.bridge.health_listen:
            return
        from bridge.health import HealthServer

        try:
            self.health = HealthServer(config.bridge.health_listen, self.health_check, self.metrics.registry,
                                       pages=lambda: (self.rt.repo, self.rt.config, self.rt.clock()))
        except OSError as exc:
            # Monitoring must not stop the posting: say so loudly and carry on without it.
            log.error("health endpoint not started; posting goes on without it",
                      listen=config.bridge.health_listen, error=f"cannot listen: {exc.strerror or exc}")
            return
        self.health.start()

    # --- Reload ----------------------------------------------------------------------------------

    def reload(self) -> bool:
        """Re-read settings.toml. Valid: swap sources, targets and schedules in place. Invalid: keep
        running on the old settings and log every problem. True when the new settings apply."""
        self.notifier.reloading("reloading settings.toml")
        started = time.time()  # wall clock: `bridge reload` compares it with when it signalled
        old = self.rt
        try:
            if self._reload_config is None:
                raise ConfigError(["this daemon was started without a settings file to re-read"])
            config = self._reload_config()
            new = rebuild_runtime(old, config)
        except BridgeError as exc:
            problems = getattr(exc, "problems", None) or [str(exc)]
            log.error("reload refused: still running on the previous settings", problems=problems,
                      error=f"{len(problems)} problem(s) in settings.toml: " + "; ".join(problems))
            self.metrics.reloads.labels("refused").inc()
            self.notifier.ready(f"reload refused ({len(problems)} problem(s), see the log); {describe(old.config)}")
            self._answer_reload(started, False, f"{len(problems)} problem(s) in settings.toml: " + "; ".join(problems))
            return False
        _warn_restart_needed(old.config, config)
        logs.set_secrets({*old.config.secrets(), *config.secrets()})  # old clients may still log
        logs.set_level(config.bridge.log_level)
        with self._lock:
            self.rt = new
            self._retired.append(old)
        self._schedule(config, old.config)
        self._close_idle_retired()
        before = {s.name for s in old.config.sources}
        after = {s.name for s in config.sources}
        self.tally.forget(before - after)
        log.info("reloaded", sources=len(config.sources), targets=len(new.publishers),
                 added=sorted(after - before), removed=sorted(before - after), dry_run=config.bridge.dry_run)
        self.metrics.reloads.labels("applied").inc()
        self.notifier.ready(describe(config))
        self._answer_reload(started, True, describe(config))
        return True

    def _answer_reload(self, started: float, applied: bool, reason: str) -> None:
        """Tell `bridge reload` (waiting in another process) how this reload ended, in the database."""
        import os

        from bridge.store.reloads import record_reload

        try:
            record_reload(self.rt.repo.engine, pid=os.getpid(), started=started, applied=applied, reason=reason)
        except Exception as exc:  # the reload itself stands; `bridge reload` times out and says so
            log.error("could not record the reload's outcome for `bridge reload`", error=f"{type(exc).__name__}: {exc}")

    def _schedule(self, config: Config, previous: Config | None) -> None:
        """Jobs for `config`: new sources poll now, removed ones stop, a source whose interval is
        unchanged keeps its place in the plan (bridge/poll_plan.py). A run that is late (busy
        machine, suspend) still runs once instead of being skipped, as APScheduler's 1 s misfire
        grace would do to the delivery round."""
        now = self.rt.clock()
        plan = []
        for source in config.enabled_sources:  # a disabled source is not planned: it is never read
            interval = source.poll_interval
            plan.append((source.name, interval.total_seconds(), min(interval / 10, MAX_POLL_JITTER).total_seconds()))
        self.polls.plan.plan(plan)
        self.polls.wake()
        delivery = config.bridge.delivery_interval
        if previous is None or previous.bridge.delivery_interval != delivery:
            self.scheduler.add_job(
                self._job, IntervalTrigger(seconds=delivery.total_seconds()), args=[_deliver],
                id="deliver", name="deliver", next_run_time=now, max_instances=1, coalesce=True,
                misfire_grace_time=int(delivery.total_seconds()), replace_existing=True,
                executor=SERVICE_EXECUTOR,
            )

    # --- Jobs ------------------------------------------------------------------------------------

    def _job(self, work: Callable, *args) -> None:
        """Every pipeline job runs through here: it uses the runtime current when it starts, and
        counts as in flight (for the stop grace and for retiring old runtimes) until it ends."""
        with self._lock:
            if self._stop_requested:
                return  # queued before the stop: no new work
            rt = self.rt
            self._users[id(rt)] = self._users.get(id(rt), 0) + 1
            self._leases[threading.get_ident()] = rt
        self.trimmer.started()
        try:
            work(self, rt, *args)
        finally:
            with self._lock:
                rt = self._leases.pop(threading.get_ident())
                self._users[id(rt)] -= 1
                self._lock.notify_all()
            self._close_idle_retired()
            self.trimmer.ended()

    def current_runtime(self) -> Runtime:
        """For a job that goes on for a while (the delivery round): the runtime current now, so a
        reload applies from its next post on. The job's use moves to it, so the runtime it leaves
        can be retired and closed while the one it uses cannot."""
        with self._lock:
            held = self._leases[threading.get_ident()]
            if held is not self.rt:
                self._users[id(held)] -= 1
                self._users[id(self.rt)] = self._users.get(id(self.rt), 0) + 1
                self._leases[threading.get_ident()] = self.rt
                self._lock.notify_all()
            current = self.rt
        self._close_idle_retired()
        return current

    def wake_delivery(self) -> None:
        """Run the delivery job now (or again, if it is running): a poll queued posts. Polls never
        deliver themselves, so a slow network holds up only the delivery job, never a poll."""
        self._delivery_wanted.set()
        self.run_job_soon("deliver")

    def poll_soon(self, source: str, delay: timedelta = timedelta(0)) -> None:
        """Poll `source` `delay` from now (then by its interval again)."""
        self.polls.soon(source, delay.total_seconds())

    def run_job_soon(self, job_id: str, delay: timedelta = timedelta(0)) -> None:
        """Move a job's next run to `delay` from now (the scheduler's own clock: real time)."""
        try:
            self.scheduler.modify_job(job_id, next_run_time=datetime.now(timezone.utc) + delay)
        except JobLookupError:
            pass  # removed by a reload meanwhile, or never scheduled (stopping)

    def _close_idle_retired(self) -> None:
        with self._lock:
            idle = [old for old in self._retired if not self._users.get(id(old))]
            self._retired = [old for old in self._retired if self._users.get(id(old))]
        for old in idle:
            close_clients(old)


def describe(config: Config) -> str:
    """What the daemon does, in a line: systemctl status shows it as 'Status:'."""
    targets = ", ".join(config.targets) or "no target"
    mode = " (dry run: nothing is posted)" if config.bridge.dry_run else ""
    disabled = len(config.sources) - len(config.enabled_sources)
    off = f" ({disabled} disabled)" if disabled else ""
    return f"polling {len(config.enabled_sources)} source(s){off}, posting to {targets}{mode}"


RESTART_ONLY_SETTINGS = ("database", "health_listen", "poll_concurrency")
"""[bridge] keys a reload cannot apply: the open database, the bound socket and the size of the
polls' thread pool stay until a restart."""


def _warn_restart_needed(old: Config, new: Config) -> None:
    for key in RESTART_ONLY_SETTINGS:
        if getattr(old.bridge, key) != getattr(new.bridge, key):
            log.warning("setting changed: it takes effect at the next restart (systemctl restart bridge)",
                        key=f"bridge.{key}")
