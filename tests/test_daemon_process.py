"""`bridge run` as systemd runs it: a subprocess with a test-owned NOTIFY_SOCKET and WATCHDOG_USEC.

These tests wait on events (a datagram, a log line, an HTTP answer) with timeouts; nothing sleeps.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.fakes.x_api import CREDENTIALS
from tests.helpers import antara_feed, antara_item, env_for

REPO_ROOT = Path(__file__).resolve().parents[1]
WAIT = 30
"""Seconds any one expected event may take on a slow CI machine."""
STOP_BOUND = 10
"""SIGTERM must end the process within this many seconds (the issue's bound)."""


def settings_text(feeds: dict[str, str], x_base: str, health_port: int, extra: str = "") -> str:
    sources = "".join(f'[[sources]]\nname = "{name}"\nurl = "{url}"\ntargets = ["x"]\n' for name, url in feeds.items())
    return f"""
[bridge]
database = "sqlite:///bridge.db"
dry_run = false
first_run = "all"
delivery_interval = "1s"
health_listen = "127.0.0.1:{health_port}"
{extra}
{sources}
[targets.x]
kind = "x"
api_base = "{x_base}"
"""


class NotifyListener:
    """The test's stand-in for systemd: an abstract datagram socket collecting every message."""

    def __init__(self) -> None:
        self.name = f"@bridge-test-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(b"\0" + self.name[1:].encode())
        self.sock.settimeout(WAIT)
        self.messages: list[str] = []

    def wait_for(self, prefix: str) -> str:
        """The next message starting with `prefix` (earlier others are kept in `messages`)."""
        while True:
            message = self.sock.recv(4096).decode()
            self.messages.append(message)
            if message.startswith(prefix):
                return message

    def close(self) -> None:
        self.sock.close()


class Output:
    """Collects a stream's lines in a thread; wait_for blocks until a matching line arrives."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()

    def events(self) -> list[dict]:
        return [json.loads(line) for line in list(self.lines) if line.startswith("{")]

    def wait_for(self, predicate, count: int = 1) -> list[dict]:
        with self._changed:
            assert self._changed.wait_for(
                lambda: len([e for e in self.events() if predicate(e)]) >= count, WAIT
            ), "".join(self.lines[-30:])
            return [e for e in self.events() if predicate(e)]

    def join(self) -> None:
        self._thread.join(WAIT)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=WAIT) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def daemon(feed_server, x_api, tmp_path):
    """`bridge run` in a subprocess, live against the fake X API, with credentials in its environment."""
    feed_server.add("/rss.xml", antara_feed([antara_item(1), antara_item(2)]))
    feed_server.add("/olahraga.xml", antara_feed([antara_item(7)]))
    port = free_port()
    settings = tmp_path / "settings.toml"
    settings.write_text(settings_text({"antara": feed_server.url("/rss.xml")}, x_api.base_url, port))
    listener = NotifyListener()
    env = {**os.environ, **env_for(tmp_path), "PYTHONPATH": str(REPO_ROOT), "NOTIFY_SOCKET": listener.name,
           "WATCHDOG_USEC": "1000000"}
    env.pop("BRIDGE_CONFIG", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge", "--config", str(settings), "--log-level", "debug", "run"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    out, err = Output(process.stdout), Output(process.stderr)
    run = type("Run", (), {})()
    run.process, run.out, run.err, run.notify, run.settings, run.port = process, out, err, listener, settings, port
    run.feeds, run.x, run.env, run.tmp_path = feed_server, x_api, env, tmp_path
    try:
        yield run
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(WAIT)
        listener.close()


def test_the_daemon_under_systemd_protocols(daemon):
    """READY=1 after start, watchdog pings, health and metrics, status while it writes, a refused and an
    applied reload, then SIGTERM exits 0 within 10 s, and no credential value appears in any output."""
    ready = daemon.notify.wait_for("READY=1")
    assert "STATUS=polling 1 source(s), posting to x" in ready
    daemon.out.wait_for(lambda e: e.get("event") == "posted", count=2)
    daemon.notify.wait_for("WATCHDOG=1")
    daemon.notify.wait_for("WATCHDOG=1")

    status, body = get(f"http://127.0.0.1:{daemon.port}/healthz")
    assert status == 200 and body.startswith("ok")
    status, metrics = get(f"http://127.0.0.1:{daemon.port}/metrics")
    assert status == 200 and 'bridge_posts_total{target="x"} 2.0' in metrics

    # `bridge status --json` from another process reads while the daemon runs and writes.
    report = subprocess.run([sys.executable, "-m", "bridge", "--config", str(daemon.settings), "status", "--json"],
                            capture_output=True, text=True, env=daemon.env, cwd=daemon.tmp_path, timeout=WAIT)
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["targets"][0]["posted_today"] == 2

    # A broken settings file: refused, every problem logged, still running on the old settings.
    good = daemon.settings.read_text()
    daemon.settings.write_text(good.replace('first_run = "all"', 'first_run = "all"\npoll_interval = "often"\ncolour = 1'))
    daemon.process.send_signal(signal.SIGHUP)
    daemon.notify.wait_for("RELOADING=1")
    assert "reload refused" in daemon.notify.wait_for("READY=1")
    (refused,) = daemon.out.wait_for(lambda e: e.get("event", "").startswith("reload refused"))
    assert refused["level"] == "error" and len(refused["problems"]) == 2
    assert "bridge.poll_interval" in refused["error"] and "bridge.colour" in refused["error"]
    assert daemon.process.poll() is None

    # A good one: the added source is polled and its story posted.
    daemon.settings.write_text(settings_text({"antara": daemon.feeds.url("/rss.xml"),
                                              "olahraga": daemon.feeds.url("/olahraga.xml")},
                                             daemon.x.base_url, daemon.port))
    daemon.process.send_signal(signal.SIGHUP)
    daemon.notify.wait_for("RELOADING=1")
    assert "STATUS=polling 2 source(s)" in daemon.notify.wait_for("READY=1")
    daemon.out.wait_for(lambda e: e.get("event") == "polled" and e.get("source") == "olahraga")
    daemon.out.wait_for(lambda e: e.get("event") == "posted", count=3)

    started = time.monotonic()
    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.process.wait(STOP_BOUND) == 0
    assert time.monotonic() - started < STOP_BOUND
    assert daemon.notify.wait_for("STOPPING=1")
    daemon.out.join()
    daemon.err.join()
    assert any(e.get("event") == "stopped" for e in daemon.out.events())
    assert len(daemon.x.posted) == 3

    everything = "".join(daemon.out.lines) + "".join(daemon.err.lines) + "".join(daemon.notify.messages)
    for name, secret in CREDENTIALS.items():
        assert secret not in everything, name
    # One event per line: every stdout line is a JSON object.
    assert all(line.startswith("{") for line in daemon.out.lines)
