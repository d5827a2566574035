"""The daemon in-process: watchdog fed only while the scheduler lives, reload, bounded stop, health."""

from __future__ import annotations

import socket
import threading
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
from structlog.testing import capture_logs

from bridge.config import parse_config
from bridge.daemon import HEARTBEAT_MAX_AGE, Daemon, _deliver, _poll_source
from bridge.errors import ConfigError
from bridge.health import HealthServer
from bridge.model import DeliveryState
from bridge.notify import Notifier
from tests.helpers import FakeMonotonic, antara_feed, antara_item, env_for, make_config, runtime, wait_until


@pytest.fixture
def notify_socket(tmp_path):
    """A datagram socket standing in for systemd's notify socket."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "n.sock"))
    sock.settimeout(5)
    yield sock, {"NOTIFY_SOCKET": str(tmp_path / "n.sock"), "WATCHDOG_USEC": "2000000"}
    sock.close()


@pytest.fixture
def world(feed_server, x_api, tmp_path, clock):
    """Two feeds on the local feed server, the fake X API, and a raw config reading the first."""
    feed_server.add("/a.xml", antara_feed([antara_item(1), antara_item(2)]))
    feed_server.add("/b.xml", antara_feed([antara_item(3)]))
    raw = make_config({"a": feed_server.url("/a.xml")}, x_base=x_api.base_url, bridge={"first_run": "all"})
    return raw, feed_server, x_api, tmp_path, clock


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_daemon(world, notifier=None, reload_config=None, monotonic=None):
    raw, _, _, tmp_path, clock = world
    rt = runtime(raw, tmp_path, clock)
    return Daemon(rt, notifier=notifier, reload_config=reload_config, monotonic=monotonic or FakeMonotonic())


class TestWatchdog:
    def test_pings_only_while_the_heartbeat_is_fresh(self, world, notify_socket):
        """A fresh heartbeat feeds the watchdog; one older than HEARTBEAT_MAX_AGE stops the pings."""
        sock, environ = notify_socket
        monotonic = FakeMonotonic()
        daemon = make_daemon(world, notifier=Notifier(environ), monotonic=monotonic)
        try:
            daemon._beat()
            assert daemon.feed_watchdog() and sock.recv(100) == b"WATCHDOG=1"
            monotonic.now += HEARTBEAT_MAX_AGE.total_seconds() + 1
            with capture_logs() as logs:
                assert not daemon.feed_watchdog() and not daemon.feed_watchdog()
            assert [e["event"] for e in logs].count(
                "scheduler or database not answering: watchdog no longer fed, systemd will restart the service") == 1
            assert sock.recv(100).startswith(b"STATUS=not answering")
            daemon._beat()
            assert daemon.feed_watchdog()
            assert sock.recv(100).startswith(b"STATUS=polling 1 source(s)") and sock.recv(100) == b"WATCHDOG=1"
        finally:
            daemon.close()

    def test_no_heartbeat_when_the_poll_dispatcher_stopped_looking(self, world):
        """Polls are handed out by a thread of their own (bridge/poll_plan.py): if it dies or hangs,
        the heartbeat stops, so the watchdog restarts a daemon that would poll nothing any more."""
        monotonic = FakeMonotonic()
        daemon = make_daemon(world, monotonic=monotonic)
        try:
            daemon.polls.start()
            assert wait_until(lambda: daemon.polls.alive(1), 10)
            daemon._beat()
            assert daemon.heartbeat.alive()
            monotonic.now += HEARTBEAT_MAX_AGE.total_seconds() + 1  # the dispatcher has not looked since
            with capture_logs() as logs:
                daemon._beat()
            assert not daemon.heartbeat.alive()
            assert any(e["event"].startswith("poll dispatcher not running") for e in logs)
        finally:
            daemon.stop(grace=timedelta(seconds=1))
            daemon.close()

    def test_no_heartbeat_when_the_database_does_not_answer(self, world):
        """The heartbeat job beats only if the database answers, as Miniflux feeds its watchdog."""
        from sqlalchemy import create_engine

        daemon = make_daemon(world)
        working = daemon.rt.repo.engine
        daemon.rt.repo.engine = create_engine("sqlite:////nonexistent/dir/bridge.db")
        try:
            with capture_logs() as logs:
                daemon._beat()
            assert daemon.heartbeat.age() is None
            assert any(e["event"].startswith("database does not answer") for e in logs)
        finally:
            daemon.rt.repo.engine = working
            daemon.close()


class TestReload:
    def test_a_good_reload_adds_and_removes_sources(self, world):
        """A valid settings file swaps sources in place: the new one is scheduled and polled, the old one stops."""
        raw, feeds, x, tmp_path, clock = world
        new_raw = make_config({"b": feeds.url("/b.xml")}, x_base=x.base_url, bridge={"first_run": "all"})
        daemon = make_daemon(world, reload_config=lambda: parse_config(new_raw, environ=env_for(tmp_path)))
        try:
            daemon._schedule(daemon.rt.config, None)
            old_rt = daemon.rt
            with capture_logs() as logs:
                assert daemon.reload()
            assert daemon.rt is not old_rt and daemon.rt.repo is old_rt.repo
            assert daemon.rt.stopping is old_rt.stopping and daemon.rt.delivery_lock is old_rt.delivery_lock
            assert daemon.polls.plan.names() == ["b"] and daemon.scheduler.get_job("deliver")
            reloaded = next(e for e in logs if e["event"] == "reloaded")
            assert reloaded["added"] == ["b"] and reloaded["removed"] == ["a"]
            daemon._job(_poll_source, "b")
            daemon._job(_poll_source, "a")  # a run queued before the reload finds its source gone
            assert len(feeds.requests_to("/b.xml")) == 1 and feeds.requests_to("/a.xml") == []
        finally:
            daemon.close()

    def test_reload_to_dry_run_reaches_a_running_round(self, world):
        """A SIGHUP to dry_run = true while the delivery job posts a 12-story round: nothing more is posted live."""
        import copy

        raw, feeds, x, tmp_path, clock = world
        feeds.edit("/a.xml", body=antara_feed([antara_item(n) for n in range(1, 13)]))
        rehearsal_raw = copy.deepcopy(raw)
        rehearsal_raw["bridge"]["dry_run"] = True
        raw["targets"]["x"]["max_per_day"] = 100
        rehearsal_raw["targets"]["x"]["max_per_day"] = 100
        daemon = make_daemon(world, reload_config=lambda: parse_config(rehearsal_raw, environ=env_for(tmp_path)))
        reloaded = threading.Event()

        def reload_after_third(request):  # the operator's reload lands while the third post is on its way
            if request.route == "/2/tweets" and len(x.tweets) == 3 and not reloaded.is_set():
                reloaded.set()
                threading.Thread(target=daemon.reload).start()
        try:
            daemon._schedule(daemon.rt.config, None)
            daemon._job(_poll_source, "a")
            x.on_request = reload_after_third
            first_rt = daemon.rt
            # The reload thread swaps the runtime while the round's third post is in flight.
            original = first_rt.publishers["x"].publish

            def slow_publish(post, idempotency_key):
                result = original(post, idempotency_key)
                if reloaded.is_set():
                    for _ in range(200):
                        if daemon.rt is not first_rt:
                            break
                        threading.Event().wait(0.01)
                return result
            first_rt.publishers["x"].publish = slow_publish
            daemon._job(_deliver)
            assert len(x.tweets) == 3
            rows = daemon.rt.repo.delivery_rows([DeliveryState.SKIPPED], limit=100)
            assert sum(1 for r in rows if r["last_error"] == "dry run: not posted") == 9
        finally:
            daemon.close()

    def test_held_burst_shows_in_healthz(self, world):
        """/healthz answers 503 naming the source and both ways out while a burst is held."""
        raw, feeds, x, tmp_path, clock = world
        daemon = make_daemon(world)
        try:
            daemon._beat()
            daemon._job(_poll_source, "a")
            feeds.edit("/a.xml", body=antara_feed([antara_item(n) for n in range(1, 30)]))
            daemon._job(_poll_source, "a")
            healthy, reason = daemon.health_check()
            assert not healthy and "source a holds a burst of 27 new stories" in reason
            assert "bridge release a" in reason and "bridge catchup a" in reason
        finally:
            daemon.close()

    def test_new_secrets_are_redacted_after_a_reload(self, world):
        """Credentials that arrive with a reload are hidden from the log like the ones read at start."""
        from bridge import logs

        raw, _, _, tmp_path, _ = world
        environ = {**env_for(tmp_path), "BRIDGE_X_ACCESS_TOKEN": "rotated-token-0123456789"}
        daemon = make_daemon(world, reload_config=lambda: parse_config(raw, environ=environ))
        try:
            assert daemon.reload()
            assert logs.redact("token rotated-token-0123456789 in use") == f"token {logs.REDACTED} in use"
        finally:
            logs.set_secrets([])
            daemon.close()

    def test_an_unchanged_source_keeps_its_schedule(self, world):
        """A reload that leaves a source's interval alone does not move its next poll."""
        raw, _, _, tmp_path, _ = world
        daemon = make_daemon(world, reload_config=lambda: parse_config(raw, environ=env_for(tmp_path)))
        try:
            daemon._schedule(daemon.rt.config, None)
            daemon.polls.plan.soon("a", 120)  # as if polled a while ago
            assert daemon.reload()
            assert 110 < daemon.polls.plan.due_in("a") <= 120
        finally:
            daemon.close()

    def test_jobs_run_one_at_a_time_with_jitter_and_never_skip_silently(self, world):
        """The delivery job runs one at a time and coalesces late runs; a source's polls follow its
        5 minute interval, spread by a jitter of up to a tenth of it (tests/test_poll_plan.py has
        the plan's own rules)."""
        daemon = make_daemon(world)
        try:
            daemon._schedule(daemon.rt.config, None)
            deliver_job = daemon.scheduler.get_job("deliver")
            assert deliver_job.max_instances == 1 and deliver_job.coalesce is True
            assert daemon.polls.plan.take_due() == (["a"], [])  # a new source: due at once
            assert 300 <= daemon.polls.plan.due_in("a") <= 330
            assert daemon.polls.plan.take_due() == ([], [])
        finally:
            daemon.close()

    def test_a_bad_reload_keeps_the_old_settings_and_logs_every_problem(self, world):
        """An invalid file is refused with every problem logged; the old runtime stays in force."""
        def broken():
            raise ConfigError(["bridge.poll_interval: 'often' is not a duration", "sources[0].url: required"])

        daemon = make_daemon(world, reload_config=broken)
        try:
            daemon._schedule(daemon.rt.config, None)
            before = daemon.rt
            with capture_logs() as logs:
                assert not daemon.reload()
            assert daemon.rt is before and daemon.polls.plan.names() == ["a"]
            refused = next(e for e in logs if e["event"] == "reload refused: still running on the previous settings")
            assert refused["log_level"] == "error" and len(refused["problems"]) == 2
            assert "sources[0].url: required" in refused["error"]
        finally:
            daemon.close()

    def test_retired_clients_close_only_after_their_last_job(self, world):
        """A runtime replaced by a reload keeps its HTTP client open until the job using it ends."""
        raw, _, _, tmp_path, _ = world
        daemon = make_daemon(world, reload_config=lambda: parse_config(raw, environ=env_for(tmp_path)))
        inside, release = threading.Event(), threading.Event()

        def slow(_daemon, rt):
            inside.set()
            release.wait(10)

        old = daemon.rt
        worker = threading.Thread(target=daemon._job, args=(slow,))
        worker.start()
        try:
            assert inside.wait(10)
            daemon.reload()
            assert not old.http.is_closed
            release.set()
            worker.join(10)
            assert old.http.is_closed and not daemon.rt.http.is_closed
        finally:
            release.set()
            daemon.close()


class TestStop:
    def test_stop_waits_for_work_in_flight_at_most_the_grace(self, world):
        """A job stuck past the grace makes stop() return False instead of waiting for ever."""
        daemon = make_daemon(world)
        inside, release = threading.Event(), threading.Event()
        worker = threading.Thread(target=daemon._job, args=(lambda _d, _rt: (inside.set(), release.wait(10)),))
        worker.start()
        try:
            assert inside.wait(10)
            assert daemon.stop(grace=timedelta(milliseconds=50)) is False
            assert daemon.rt.stopping.is_set()
        finally:
            release.set()
            worker.join(10)
            daemon.close()

    def test_no_job_starts_after_stop(self, world):
        """A job that was queued when the stop came does nothing."""
        daemon = make_daemon(world)
        ran = []
        assert daemon.stop(grace=timedelta(seconds=1)) is True
        daemon._job(lambda _d, _rt: ran.append(1))
        assert ran == []
        daemon.close()


class TestHealth:
    def test_healthz_and_metrics_over_http(self, world):
        """/healthz says 200 with a live heartbeat and 503 with the reason for a paused target; /metrics counts."""
        raw, _, x, tmp_path, clock = world
        raw["bridge"]["health_listen"] = f"127.0.0.1:{free_port()}"
        daemon = make_daemon(world)
        try:
            daemon._start_health(daemon.rt.config)
            base = f"http://{daemon.health.address}"
            assert _get(base + "/healthz")[0] == 503  # the scheduler never ran
            daemon._beat()
            daemon._job(_poll_source, "a")
            daemon._job(_deliver)  # polls queue; the delivery job posts
            status, body = _get(base + "/healthz")
            assert status == 200 and body.startswith("ok: scheduler running")
            status, metrics = _get(base + "/metrics")
            assert status == 200
            assert 'bridge_posts_total{target="x"} 2.0' in metrics
            assert 'bridge_polls_total{outcome="ok",source="a"} 1.0' in metrics
            assert 'bridge_queue_depth{target="x"} 0.0' in metrics and "bridge_database_up 1.0" in metrics
            assert 'bridge_deliveries_in_doubt{target="x"} 0.0' in metrics
            assert 'bridge_source_held_stories{source="a"} 0.0' in metrics
            assert 'bridge_spend_today_usd{target="x"}' in metrics and 'bridge_spend_month_usd{target="x"}' in metrics
            daemon.rt.repo.pause_target("x", "X rejected the credentials: regenerate the access token", clock())
            status, body = _get(base + "/healthz")
            assert status == 503 and "target x paused: X rejected the credentials" in body
            assert _get(base + "/nope")[0] == 404
        finally:
            if daemon.health:
                daemon.health.close()
            daemon.close()

    def test_a_taken_port_is_logged_not_fatal(self, world):
        """A health address already in use is an error in the log; the daemon goes on without it."""
        raw, *_ = world
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            raw["bridge"]["health_listen"] = f"127.0.0.1:{taken.getsockname()[1]}"
            daemon = make_daemon(world)
            with capture_logs() as logs:
                daemon._start_health(daemon.rt.config)
        assert daemon.health is None
        assert any(e["event"].startswith("health endpoint not started") for e in logs)
        daemon.close()

    def test_ipv6_loopback(self):
        """A bracketed IPv6 address binds an IPv6 socket."""
        if not socket.has_ipv6:
            pytest.skip("no IPv6")
        try:
            server = HealthServer(f"[::1]:{free_port()}", lambda: (True, "ok"), _empty_registry())
        except OSError:
            pytest.skip("::1 not available")
        server.start()
        try:
            assert _get(f"http://[::1]:{server.port}/healthz") == (200, "ok\n")
        finally:
            server.close()


def _empty_registry():
    from prometheus_client import CollectorRegistry

    return CollectorRegistry()


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_heartbeat_beats_while_another_process_holds_the_write_lock(world):
    """With another connection holding BEGIN IMMEDIATE, the heartbeat still beats at once and /healthz is not 'scheduler not running'."""
    import sqlite3
    import time

    daemon = make_daemon(world)
    holder = sqlite3.connect(daemon.rt.repo.engine.url.database, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        daemon._beat()
        assert time.monotonic() - started < 3
        assert daemon.heartbeat.alive()
        healthy, reason = daemon.health_check()
        assert "scheduler not running" not in reason
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        daemon.close()


def test_a_probe_that_hangs_up_leaves_no_traceback(capfd):
    """A client that disconnects before its /healthz answer is written makes the server print nothing."""
    import struct
    import time

    answered = threading.Event()

    def slow_check():
        time.sleep(0.3)
        answered.set()
        return True, "x" * 4_000_000

    server = HealthServer(f"127.0.0.1:{free_port()}", slow_check, _empty_registry())
    server.start()
    try:
        client = socket.create_connection(("127.0.0.1", server.port))
        client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # hang up with RST
        client.close()
        assert answered.wait(5)
        time.sleep(0.5)
    finally:
        server.close()
    assert "Traceback" not in capfd.readouterr().err


def test_a_database_error_in_a_job_is_one_line_with_the_fix(world):
    """A job hitting 'database or disk is full' logs one error line naming the cause and fix, no traceback at info."""
    from sqlalchemy.exc import OperationalError

    from bridge.service import run_safely

    daemon = make_daemon(world)

    def job(rt):
        raise OperationalError("INSERT", {}, Exception("database or disk is full"))

    try:
        with capture_logs() as logs:
            run_safely(job, daemon.rt)
    finally:
        daemon.close()
    errors = [e for e in logs if e["log_level"] == "error"]
    assert len(errors) == 1 and "exc_info" not in errors[0]
    assert "disk holding" in errors[0]["error"] and "free space" in errors[0]["error"]


def test_a_full_disk_makes_healthz_fail_until_writes_succeed(world):
    """With the disk full, each poll's write fails while the heartbeat (a read) still beats: /healthz
    answers unhealthy, naming the disk and the failing job, and healthy again once a write succeeds.
    The full disk is SQLite's own SQLITE_FULL, from a page limit on every connection."""
    from sqlalchemy import event

    raw, feeds, _, _, _ = world
    daemon = make_daemon(world)
    engine = daemon.rt.repo.engine
    limit = {"pages": None}

    @event.listens_for(engine, "connect")
    def _cap(dbapi_connection, _record):
        if limit["pages"]:
            dbapi_connection.execute(f"PRAGMA max_page_count = {limit['pages']}")

    try:
        daemon._beat()
        daemon._job(_poll_source, "a")
        assert daemon.health_check()[0]
        with engine.connect() as conn:
            limit["pages"] = conn.exec_driver_sql("PRAGMA page_count").scalar()
        engine.dispose()  # every new connection now has the cap: the database cannot grow
        feeds.edit("/a.xml", body=antara_feed([antara_item(n) for n in range(1, 300)]))
        with capture_logs() as logs:
            daemon._job(_poll_source, "a")
        daemon._beat()  # the heartbeat only reads: it still beats
        healthy, reason = daemon.health_check()
        assert not healthy, reason
        assert "disk" in reason and "poll:a" in reason and "since" in reason
        assert [e for e in logs if e["log_level"] == "error" and "exc_info" not in e]
        limit["pages"] = None
        engine.dispose()
        daemon._job(_poll_source, "a")
        healthy, reason = daemon.health_check()  # unhealthy still, but for the burst it could now store
        assert "disk" not in reason and "poll:a" not in reason and "holds a burst of 297" in reason
    finally:
        daemon.close()


def test_error_reasons_are_one_line():
    """A server's multi-line text in a publish or fetch error is collapsed to one line."""
    from bridge.errors import FetchError, TargetPaused

    assert TargetPaused("Facebook said:\n  (#200) Permissions\r\n\terror").message == \
        "Facebook said: (#200) Permissions error"
    assert FetchError("https://a.id/rss", "bad\nfeed").reason == "bad feed"
