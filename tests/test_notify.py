"""sd_notify over a real datagram socket the test owns, as systemd would hold it."""

from __future__ import annotations

import os
import socket
import uuid

import pytest

from bridge.notify import Notifier, socket_address, watchdog_interval


@pytest.fixture
def listener(tmp_path):
    """A datagram socket at a path, like systemd's /run/systemd/notify."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    sock.bind(str(path))
    sock.settimeout(5)
    yield sock, str(path)
    sock.close()


class TestNotifier:
    def test_ready_and_status_arrive_in_one_datagram(self, listener):
        """READY=1 and its STATUS line reach the socket named by NOTIFY_SOCKET as one datagram."""
        sock, path = listener
        notifier = Notifier({"NOTIFY_SOCKET": path})
        assert notifier.ready("polling 2 sources")
        assert sock.recv(4096).decode() == "READY=1\nSTATUS=polling 2 sources"
        notifier.close()

    def test_abstract_socket(self):
        """An '@name' NOTIFY_SOCKET is the abstract socket '\\0name'."""
        name = f"bridge-test-{uuid.uuid4().hex}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(b"\0" + name.encode())
        sock.settimeout(5)
        try:
            notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
            assert notifier.watchdog()
            assert sock.recv(4096) == b"WATCHDOG=1"
            notifier.close()
        finally:
            sock.close()

    def test_reloading_carries_monotonic_time(self, listener):
        """RELOADING=1 is sent with MONOTONIC_USEC, as Type=notify-reload asks."""
        sock, path = listener
        Notifier({"NOTIFY_SOCKET": path}).reloading()
        fields = sock.recv(4096).decode().split("\n")
        assert fields[0] == "RELOADING=1" and fields[1].startswith("MONOTONIC_USEC=")

    def test_status_newlines_are_flattened(self, listener):
        """A status with a newline stays one STATUS field instead of forging another."""
        sock, path = listener
        Notifier({"NOTIFY_SOCKET": path}).stopping("finishing\nREADY=1")
        assert sock.recv(4096).decode() == "STOPPING=1\nSTATUS=finishing READY=1"

    def test_without_systemd_nothing_is_sent(self):
        """With no NOTIFY_SOCKET every call is a harmless no-op."""
        notifier = Notifier({})
        assert not notifier.enabled and not notifier.ready() and not notifier.watchdog()

    def test_a_vanished_socket_is_not_fatal(self, tmp_path):
        """Sending to a socket that is gone returns False instead of raising."""
        notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
        assert notifier.ready() is False
        assert notifier.watchdog() is False


class TestAddresses:
    def test_socket_address_forms(self):
        """Paths stay paths, '@' becomes a NUL prefix, anything else is unsupported."""
        assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
        assert socket_address("@abc") == b"\0abc"
        assert socket_address("") is None and socket_address("vsock:2:1") is None

    def test_watchdog_interval_is_half_of_watchdog_usec(self):
        """WATCHDOG_USEC=2000000 means a ping every second."""
        assert watchdog_interval({"WATCHDOG_USEC": "2000000"}, os.getpid()) == 1.0

    def test_watchdog_for_another_pid_is_ignored(self):
        """A WATCHDOG_PID naming another process turns the watchdog off for this one."""
        assert watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}, 4242) is None
        assert watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "4242"}, 4242) == 1.0
        assert watchdog_interval({}, 4242) is None and watchdog_interval({"WATCHDOG_USEC": "0"}, 1) is None
