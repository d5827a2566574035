"""The daemon's jobs: what each scheduled run does (poll one source, a delivery round, store
maintenance, alerts). The Daemon (bridge.daemon) schedules them and counts them in flight; each
runs through its JobFailures, so /healthz knows which job's latest run failed."""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from typing import TYPE_CHECKING

import structlog

from bridge import __version__
from bridge.alert_channels import channels_for
from bridge.alerts import check as check_alerts
from bridge.pipeline import Runtime, deliver_due, poll
from bridge.pipeline.shared_polls import NotOurTurn
from bridge.config.fingerprint import settings_fingerprint
from bridge.service import maintain_store
from bridge.store import replicas
from bridge.store.lock import job_turn

if TYPE_CHECKING:
    from bridge.daemon import Daemon

log = structlog.get_logger("bridge")

HOST_BUSY_RETRY = timedelta(seconds=5)
"""A poll whose site another source's poll is reading gives its worker back and runs this much later."""


def _poll_source(daemon: Daemon, rt: Runtime, name: str) -> None:
    try:
        source = rt.config.source(name)
    except KeyError:  # removed by a reload while this run waited in the queue
        return
    if not source.enabled:  # disabled by a reload while this run waited in the queue
        return
    with rt.pacer.poll_slot(source.url) as ours:
        if not ours:  # another source's poll is reading this site: free the worker, come back soon
            daemon.metrics.hosts_busy.labels(name).inc()
            log.debug("site busy with another poll: polling later", source=name,
                      retry_in_s=int(HOST_BUSY_RETRY.total_seconds()))
            daemon.poll_soon(name, HOST_BUSY_RETRY)
            return
        shared = daemon.shared_polls
        if shared is None:  # SQLite: this daemon alone polls (the run lock), no lease to take
            outcome = daemon.failures.run(f"poll:{name}", poll, rt, source)
        else:
            outcome = daemon.failures.run(f"poll:{name}", shared.poll, rt, source)
            if isinstance(outcome, NotOurTurn):  # another replica polls it: come back when it may be ours
                log.debug("polled by another replica this interval", source=name, polled_by=outcome.polled_by)
                daemon.poll_soon(name, outcome.retry_at - rt.clock())
                return
    daemon.metrics.record_poll(outcome)
    daemon.tally.add(outcome)
    if outcome is not None and outcome.deliveries_created:
        daemon.wake_delivery()


def _deliver(daemon: Daemon, rt: Runtime) -> None:
    # A wake that came while this round ran may have come after the round passed that target:
    # go round again rather than leave the new posts to the next interval.
    while True:
        daemon._delivery_wanted.clear()
        # Each post re-reads the runtime: a reload applies at once.
        daemon.failures.run("deliver", deliver_due, daemon.current_runtime)
        if not daemon._delivery_wanted.is_set() or rt.stopping.is_set():
            return


def _maintain(daemon: Daemon, rt: Runtime) -> None:
    daemon.failures.run("maintain", maintain_store, rt)


def _check_alerts(daemon: Daemon, rt: Runtime) -> None:
    """Tell the operator what started or cleared since the last check ([alerts]; nothing without it)."""
    if rt.config.alerts is None:
        return
    with job_turn(rt.repo.engine, "alerts") as ours:
        if ours:  # several replicas: one checks at a time, so an alert is sent once (its state is shared)
            daemon.failures.run("alerts", check_alerts, rt.repo, rt.config, rt.clock(),
                                channels_for(rt.config, rt.publishers), rt.publishers)


def register_replica(daemon: Daemon) -> None:
    """This process's row in the replicas table (bridge status lists it), from start to close."""
    rt = daemon.rt
    replicas.register(rt.repo.engine, daemon.replica_id, host=socket.gethostname(), pid=os.getpid(),
                      version=__version__, settings=_fingerprint(daemon, rt.config), now=rt.clock())
    replicas.forget_gone(rt.repo.engine, rt.clock())
    daemon._registered = True


def renew_replica(daemon: Daemon) -> None:
    """A write, so not in the watchdog's heartbeat: a busy database must not look like a hung scheduler."""
    rt = daemon.rt
    daemon.failures.run("replica", replicas.beat, rt.repo.engine, daemon.replica_id, rt.clock(),
                        _fingerprint(daemon, rt.config))


def _fingerprint(daemon: Daemon, config) -> str:
    """The settings' fingerprint, computed once per config (a reload brings a new one), not every beat."""
    known = getattr(daemon, "_fingerprint_of", None)
    if known is None or known[0] is not config:
        daemon._fingerprint_of = known = (config, settings_fingerprint(config))
    return known[1]
