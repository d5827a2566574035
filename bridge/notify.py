"""sd_notify: telling systemd the truth about the daemon, over the datagram socket in $NOTIFY_SOCKET.

The protocol is a few lines of `KEY=value` in one datagram (see sd_notify(3)); writing it here costs
less than a dependency. Outside systemd ($NOTIFY_SOCKET unset) every call does nothing, so the
daemon runs the same in a terminal.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Mapping

import structlog

log = structlog.get_logger("bridge")

SEND_TIMEOUT_SECONDS = 2.0
"""systemd reads its socket at once; a stuck send must never stall the daemon's main loop."""


class Notifier:
    """One daemon's link to systemd. Messages: READY=1, RELOADING=1, STOPPING=1, STATUS=..., WATCHDOG=1."""

    def __init__(self, environ: Mapping[str, str] = os.environ, pid: int | None = None):
        self.address = socket_address(environ.get("NOTIFY_SOCKET", ""))
        self.watchdog_interval = watchdog_interval(environ, os.getpid() if pid is None else pid)
        self._socket: socket.socket | None = None
        self._failed_once = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *_status(status))

    def reloading(self, status: str | None = None) -> bool:
        # MONOTONIC_USEC lets systemd >= 253 (Type=notify-reload) match this reload to its request.
        return self.send("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}", *_status(status))

    def stopping(self, status: str | None = None) -> bool:
        return self.send("STOPPING=1", *_status(status))

    def status(self, text: str) -> bool:
        return self.send(*_status(text))

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def send(self, *lines: str) -> bool:
        """Send one datagram; False when not under systemd or the send failed (logged once: a
        failing notify socket must not flood the journal every watchdog tick)."""
        if self.address is None or not lines:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._socket.settimeout(SEND_TIMEOUT_SECONDS)
            self._socket.sendto("\n".join(lines).encode("utf-8"), self.address)
            return True
        except OSError as exc:
            if not self._failed_once:
                self._failed_once = True
                log.warning("cannot tell systemd our state", error=f"{self.address!r}: {exc.strerror or exc}")
            return False

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def socket_address(value: str) -> str | bytes | None:
    """$NOTIFY_SOCKET as an address for sendto: a path, or an abstract socket ('@name' -> b'\\0name')."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode("utf-8")
    if value.startswith("/"):
        return value
    return None  # vsock and other families: not used by the systemd versions we target


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between watchdog pings (half of WatchdogSec, as sd_watchdog_enabled(3) advises), or
    None when systemd expects none. $WATCHDOG_PID, when set, must name this process: a child that
    inherited the environment must not ping for its parent."""
    usec = environ.get("WATCHDOG_USEC", "")
    owner = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if owner and (not owner.isdigit() or int(owner) != pid):
        return None
    return int(usec) / 1_000_000 / 2


def _status(text: str | None) -> tuple[str, ...]:
    # One datagram line per field: a newline inside the status would start a bogus field.
    return (f"STATUS={' '.join(text.split())}",) if text else ()
