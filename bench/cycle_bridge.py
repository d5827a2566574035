"""The bridge as the poll-cycle benchmark (bench/bench_cycle.py) runs it: the repo's own CLI in a
subprocess, on a generated settings.toml, with what /proc says about its CPU time and memory.

Only the CLI and the settings keys of the repo's settings.toml are relied on, so the benchmark
measures whatever the poll cycle's implementation is; a setting the code may not have yet (a poll
concurrency, say) is passed with --bridge-setting and lands in [bridge] only when asked for.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.fakes.x_api import CREDENTIALS

REPO = Path(__file__).resolve().parents[1]
LOCAL_NAMES = Path(__file__).resolve().parent / "localnames"
"""Holds the sitecustomize.py that resolves the benchmark's site names to 127.0.0.1."""
TICKS = os.sysconf("SC_CLK_TCK")
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


def settings_text(urls: list[str], *, interval: str, dry_run: bool, x_base: str = "http://127.0.0.1:9",
                  extra: tuple[str, ...] = ()) -> str:
    """A settings.toml for `urls`, every source a feed posting to one X target (text only: a
    photo would be a download that is not the poll cycle)."""
    sources = "".join(f'[[sources]]\nname = "feed{index:05d}"\nurl = "{url}"\nkind = "feed"\ntargets = ["x"]\n\n'
                      for index, url in enumerate(urls))
    lines = "\n".join(extra)
    return f"""[bridge]
database = "sqlite:///bridge.db"
poll_interval = "{interval}"
first_run = "skip"
dry_run = {str(dry_run).lower()}
log_level = "info"
{lines}

{sources}[targets.x]
kind = "x"
api_base = "{x_base}"
max_per_day = 100000
images = false
"""


class Bridge:
    """One bridge installation in `folder`: its settings.toml, its state folder, its log file."""

    def __init__(self, folder: Path, settings: str):
        self.folder = folder
        self.config = folder / "settings.toml"
        self.config.write_text(settings)
        self.state = folder / "state"
        self.state.mkdir(exist_ok=True)
        self.log = folder / "bridge.log"
        self.process: subprocess.Popen | None = None

    def environment(self) -> dict[str, str]:
        env = {name: value for name, value in os.environ.items() if name not in PROXY_VARIABLES}
        env.update({
            "STATE_DIRECTORY": str(self.state),
            "PYTHONPATH": os.pathsep.join([str(LOCAL_NAMES), str(REPO)]),
            "BRIDGE_X_CONSUMER_KEY": CREDENTIALS["consumer_key"],
            "BRIDGE_X_CONSUMER_SECRET": CREDENTIALS["consumer_secret"],
            "BRIDGE_X_ACCESS_TOKEN": CREDENTIALS["access_token"],
            "BRIDGE_X_ACCESS_TOKEN_SECRET": CREDENTIALS["access_token_secret"],
        })
        return env

    def _popen(self, *arguments: str) -> subprocess.Popen:
        with self.log.open("ab") as log:
            return subprocess.Popen([sys.executable, "-m", "bridge", "--config", str(self.config), *arguments],
                                    cwd=self.folder, env=self.environment(), stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT)

    def run_once(self) -> tuple[float, float]:
        """`bridge run --once`: (wall seconds, CPU seconds of it and every process it waited for)."""
        started = time.perf_counter()
        process = self._popen("run", "--once")
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            raise RuntimeError(f"bridge run --once exited {process.returncode}:\n{self.tail()}")
        return wall, usage.ru_utime + usage.ru_stime

    def start(self) -> subprocess.Popen:
        """`bridge run`, the daemon."""
        self.process = self._popen("run")
        return self.process

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"bridge run exited {self.process.returncode}:\n{self.tail()}")

    def stop(self) -> None:
        """SIGTERM, as systemd stops it; killed if it is not gone in 40 s (its stop grace is 30 s)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


# --- What /proc says ---------------------------------------------------------------------------

def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2:].split()  # fields from the 3rd (state) on; comm may hold spaces


def descendants(pid: int) -> list[int]:
    """Live processes below `pid` (a parsing pool's workers, say)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat_fields(int(entry))):
            parents.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid`, of the children it reaped (cutime + cstime) and of live descendants."""
    total = 0.0
    for index, process in enumerate([pid, *descendants(pid)]):
        fields = _stat_fields(process)
        if fields:
            ticks = fields[11:15] if index == 0 else fields[11:13]  # 14 utime, 15 stime, 16-17 children
            total += sum(int(value) for value in ticks) / TICKS
    return total


def rss_mb(pid: int) -> tuple[float, float, int]:
    """(VmRSS of `pid`, VmRSS summed over its live descendants, how many of those), in MB."""
    def vm_rss(process: int) -> float:
        try:
            for line in Path(f"/proc/{process}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    children = descendants(pid)
    return vm_rss(pid), sum(vm_rss(child) for child in children), len(children)


def wait_for(predicate, timeout: float, *, alive=None, tick: float = 0.05) -> bool:
    """True as soon as `predicate()` is, False after `timeout` s; `alive()` may raise meanwhile."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if alive:
            alive()
        if time.monotonic() > deadline:
            return False
        time.sleep(tick)
    return True


def settle(pid: int, *, quiet: float = 0.02, every: float = 0.5, timeout: float = 30.0) -> None:
    """Wait until the process uses under `quiet` CPU seconds per `every` (its work is done)."""
    deadline = time.monotonic() + timeout
    before = cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(every)
        now = cpu_seconds(pid)
        if now - before < quiet:
            return
        before = now
