"""A wake-up that a signal handler can give safely: a flag and a self-pipe.

Why not threading.Event: its set() takes a plain (non-reentrant) lock that Event.wait() and clear() also
hold for a moment. A SIGTERM that lands in that moment runs the handler in the main thread, which then
waits for a lock the main thread itself holds: the process hangs and systemd has to kill it after
TimeoutStopSec (seen in CI: a rehearsal that never stopped). Here the handler only stores a bool and
writes a byte to a non-blocking pipe; neither takes a lock, and select() wakes on the byte.
"""

from __future__ import annotations

import os
import select


class Wake:
    """Set from anywhere (a signal handler, another thread); waited on by one thread."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._set = False

    def set(self) -> None:
        self._set = True
        if self._write < 0:
            return  # closed: nobody waits any more
        try:
            os.write(self._write, b"\0")
        except BlockingIOError:
            pass  # the pipe is full: a wake-up is already pending

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float | None = None) -> bool:
        """Until set or `timeout` seconds; True if set. A set() before the wait counts (the byte waits)."""
        if not self._set and self._read >= 0:
            # select() resumes after a signal handler ran (PEP 475); the handler's byte then ends it.
            select.select([self._read], [], [], timeout)
        return self._set

    def clear(self) -> None:
        self._set = False
        try:
            while os.read(self._read, 512):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        # Forget the numbers first: a late set() must not write into a file that reuses them.
        fds, self._read, self._write = (self._read, self._write), -1, -1
        for fd in fds:
            if fd >= 0:
                os.close(fd)
