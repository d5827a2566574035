"""Prometheus metrics: what the bridge did since it started, and what the database says now.

Two kinds: counters of this process's work (polls by outcome, new stories, reloads), which reset
at a restart as Prometheus expects, and values read from the database at scrape time (posts,
deliveries by state, queue depth, source failures, pauses), which stay true across restarts and
cost nothing between scrapes. Spend per target joins the latter once the store records it.
"""

from __future__ import annotations

from typing import Callable, Iterator

import structlog
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bridge.clock import local_day_start, local_month_start, utc_now
from bridge.model import PollOutcome
from bridge.status import source_state

log = structlog.get_logger("bridge")


class Metrics:
    """One registry per daemon (not prometheus_client's global one), so tests can hold several."""

    def __init__(self, runtime: Callable[[], object], heartbeat_age: Callable[[], float | None]):
        self.registry = CollectorRegistry(auto_describe=True)
        self.polls = Counter("bridge_polls", "Polls since start, by source and outcome "
                             "(ok, not_modified, error, skipped_backoff).", ["source", "outcome"],
                             registry=self.registry)
        self.new_items = Counter("bridge_new_items", "New stories read since start, by source.", ["source"],
                                 registry=self.registry)
        self.reloads = Counter("bridge_reloads", "Reloads of settings.toml since start, by result "
                               "(applied, refused).", ["result"], registry=self.registry)
        self.jobs_still_running = Counter(
            "bridge_jobs_still_running", "Runs of a job skipped because its previous run was still going "
            "(a slow poll or delivery round: job \"poll SOURCE\" or \"deliver\").",
            ["job"], registry=self.registry)
        self.hosts_busy = Counter("bridge_polls_host_busy", "Polls put off a few seconds because another "
                                  "source's poll was reading the same host.", ["source"], registry=self.registry)
        self.registry.register(DatabaseCollector(runtime, heartbeat_age))

    def record_poll(self, outcome: PollOutcome | None) -> None:
        if outcome is None:  # the poll raised; the job wrapper logged it
            return
        self.polls.labels(outcome.source, outcome.status).inc()
        if outcome.items_new:
            self.new_items.labels(outcome.source).inc(outcome.items_new)


class DatabaseCollector(Collector):
    """Reads the database at each scrape (short DEFERRED reads, like `bridge status`)."""

    def __init__(self, runtime: Callable[[], object], heartbeat_age: Callable[[], float | None]):
        self._runtime = runtime
        self._heartbeat_age = heartbeat_age

    def describe(self) -> list[Metric]:
        return []  # values come and go with sources and targets; describe nothing up front

    def collect(self) -> Iterator[Metric]:
        age = self._heartbeat_age()
        heartbeat = GaugeMetricFamily("bridge_scheduler_heartbeat_age_seconds",
                                      "Seconds since the scheduler last ran its heartbeat job (-1: never).")
        heartbeat.add_metric([], -1 if age is None else age)
        yield heartbeat
        rt = self._runtime()
        up = GaugeMetricFamily("bridge_database_up", "1 when the database answered this scrape.")
        try:
            families = list(_database_families(rt))
        except Exception as exc:  # a scrape must answer even when the database does not
            log.warning("metrics: the database did not answer", error=f"{type(exc).__name__}: {exc}")
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families


def _database_families(rt) -> Iterator[Metric]:
    now = utc_now()
    posts = CounterMetricFamily("bridge_posts", "Posts made (deliveries sent), by target, ever.", labels=["target"])
    deliveries = GaugeMetricFamily("bridge_deliveries", "Deliveries by target and state "
                                   "(pending, sending, in_doubt, held, sent, failed, skipped).",
                                   labels=["target", "state"])
    in_doubt = GaugeMetricFamily("bridge_deliveries_in_doubt", "Posts that may be on the account without "
                                 "proof, by target: each needs its network's check or the operator.",
                                 labels=["target"])
    doubtful: dict[str, int] = {}
    queue = GaugeMetricFamily("bridge_queue_depth", "Deliveries waiting to be posted (pending or sending), "
                              "by target.", labels=["target"])
    waiting: dict[str, int] = {}
    for row in rt.repo.delivery_counts():
        deliveries.add_metric([row["target"], row["state"]], row["count"])
        if row["state"] == "sent":
            posts.add_metric([row["target"]], row["count"])
        if row["state"] in ("pending", "sending"):
            waiting[row["target"]] = waiting.get(row["target"], 0) + row["count"]
        if row["state"] == "in_doubt":
            doubtful[row["target"]] = row["count"]
    for target in rt.config.targets:
        queue.add_metric([target], waiting.get(target, 0))
        in_doubt.add_metric([target], doubtful.get(target, 0))
    yield from (posts, deliveries, queue, in_doubt)

    items = CounterMetricFamily("bridge_items", "Stories ever stored, by source.", labels=["source"])
    failures = GaugeMetricFamily("bridge_source_consecutive_failures", "Failed polls in a row, by source.",
                                 labels=["source"])
    late = GaugeMetricFamily("bridge_source_late", "1 when a source's next poll is well past due.",
                             labels=["source"])
    success = GaugeMetricFamily("bridge_source_last_success_timestamp_seconds",
                                "Unix time of the source's last successful poll.", labels=["source"])
    held = GaugeMetricFamily("bridge_source_held_stories", "Stories of a burst held for the operator "
                             "(`bridge release` or `bridge catchup`), by source.", labels=["source"])
    held_now = rt.repo.held_stories()
    configured = {s.name: s for s in rt.config.sources}
    for name in configured:
        held.add_metric([name], held_now.get(name, 0))
    for row in rt.repo.source_rows():
        name = row["name"]
        items.add_metric([name], row["items"] or 0)
        if name not in configured:
            continue
        failures.add_metric([name], row["consecutive_failures"] or 0)
        late.add_metric([name], 1 if "late" in source_state(row, configured[name], now) else 0)
        if row.get("last_success_at"):
            success.add_metric([name], row["last_success_at"].timestamp())
    yield from (items, failures, late, success, held)

    paused = GaugeMetricFamily("bridge_target_paused", "1 when a target is paused until the operator acts.",
                               labels=["target"])
    spent_today = GaugeMetricFamily("bridge_spend_today_usd", "USD spent on posts today ([bridge] timezone), "
                                    "by target.", labels=["target"])
    spent_month = GaugeMetricFamily("bridge_spend_month_usd", "USD spent on posts this month, by target.",
                                    labels=["target"])
    tz = rt.config.bridge.timezone
    for target in rt.config.targets:
        paused.add_metric([target], 1 if rt.repo.target_state(target).paused_reason else 0)
        spent_today.add_metric([target], rt.repo.spent_since(target, local_day_start(now, tz)))
        spent_month.add_metric([target], rt.repo.spent_since(target, local_month_start(now, tz)))
    yield from (paused, spent_today, spent_month)
