"""`bridge reload`: validate settings.toml, SIGHUP the running daemon, and wait for its own answer.

`systemctl reload` runs this (ExecReload=), so a reload the daemon refused fails visibly instead of
exiting 0. The answer is the daemon's (bridge.store.reloads, written after each reload), not this
command's re-validation: the daemon may refuse what this process accepted (a credential it cannot
read, a target it cannot build).
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from typing import Callable

from bridge.errors import BridgeError
from bridge.store.lock import lock_path, sqlite_file

RELOAD_WAIT_SECONDS = 30.0
"""How long `bridge reload` waits for the daemon's answer (a reload normally takes well under 1 s;
systemd allows ExecReload= its start timeout, 120 s in bridge.service)."""
ANSWER_POLL_SECONDS = 0.1
"""How often the answer row is read while waiting."""


def daemon_pid(database: str, engine=None) -> int:
    """The PID of the `bridge run` to reload: the holder of the SQLite run lock (its lock file), or
    (PostgreSQL, given its `engine`) the replica on this host, from the replicas table."""
    path = sqlite_file(database)
    if path is None:
        return _postgres_daemon_pid(database, engine)
    try:
        content = lock_path(path).read_text().split()
    except FileNotFoundError:
        content = []
    except OSError as exc:
        raise BridgeError(f"cannot read the run lock {lock_path(path)}: {exc.strerror or exc}") from None
    if not content or not content[0].isdigit():
        raise _not_running(database)
    return int(content[0])


def _postgres_daemon_pid(database: str, engine) -> int:
    """PostgreSQL: several replicas may run on the database, and a reload is per replica, so this
    host's one, found in the replicas table by its host name (its row says its PID)."""
    from bridge.clock import utc_now
    from bridge.store.replicas import live_replicas

    if engine is None:
        raise BridgeError("cannot find the running daemon's PID for this database: pass --pid PID "
                          "(bridge.service passes systemd's $MAINPID)")
    try:
        live = live_replicas(engine, utc_now())
    except Exception as exc:
        raise BridgeError(f"cannot read the replicas of {database}: {type(exc).__name__}: {exc}") from None
    here = sorted({row["pid"] for row in live if row["host"] == socket.gethostname()})
    if len(here) == 1:
        return here[0]
    if len(here) > 1:
        raise BridgeError(f"{len(here)} bridge replicas run on this host (PIDs {', '.join(map(str, here))}): "
                          "pass --pid PID for the one to reload")
    if not live:
        raise _not_running(database)
    elsewhere = ", ".join(f"host {row['host']} (PID {row['pid']})" for row in live)
    raise BridgeError(f"the daemon on this database runs on {elsewhere}: run `bridge reload` there, "
                      "or `systemctl reload bridge` on that host")


def _not_running(database: str) -> BridgeError:
    return BridgeError(f"no bridge is running on {database} (its run lock, or replicas table, names no process): "
                       "start it with `systemctl start bridge`")


def request_reload(engine, pid: int, *, wait: float = RELOAD_WAIT_SECONDS,
                   wall: Callable[[], float] = time.time,
                   monotonic: Callable[[], float] = time.monotonic) -> dict:
    """SIGHUP `pid` and return the answer of the first reload it began after the signal."""
    from bridge.store.reloads import last_reload

    before = (last_reload(engine) or {}).get("count", 0)
    sent = wall()
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise BridgeError(f"no process {pid}: is the bridge running? (`systemctl status bridge`)") from None
    except PermissionError:
        raise BridgeError(f"not allowed to signal process {pid}: run this as the bridge user "
                          "(`sudo bridge reload`) or use `systemctl reload bridge`") from None
    deadline = monotonic() + wait
    tick = threading.Event()
    while monotonic() < deadline:
        answer = last_reload(engine)
        # A reload that began before the signal may have read the file before the edit: not ours.
        if answer and answer.get("count", 0) > before and answer.get("started", 0) >= sent:
            return answer
        tick.wait(ANSWER_POLL_SECONDS)
    raise BridgeError(f"process {pid} gave no answer to the reload within {int(wait)} s: "
                      "see `journalctl -u bridge` (is it a bridge daemon?)")
