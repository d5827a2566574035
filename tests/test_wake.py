"""bridge.wake.Wake: what SIGTERM/SIGHUP handlers set, safe whatever moment the signal lands."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

from bridge.wake import Wake
from tests.test_daemon_process import REPO_ROOT

# Signals every 3 ms at a thread that waits and clears in a loop, as the daemon's main loop does. With
# threading.Event in place of Wake this hangs within a second on this machine: the handler's set()
# waits for the lock the interrupted wait()/clear() holds (what stopped a CI run's rehearsal).
STORM = textwrap.dedent("""
    import faulthandler, signal, time
    from bridge.wake import Wake

    wake, handled = Wake(), 0
    def handler(*_):
        global handled
        handled += 1
        wake.set()
    signal.signal(signal.SIGALRM, handler)
    faulthandler.dump_traceback_later(20, exit=True)  # a hang prints where, and fails the test
    signal.setitimer(signal.ITIMER_REAL, 0.003, 0.003)
    end, woken = time.monotonic() + 2, 0
    while time.monotonic() < end:
        woken += wake.wait(0.002)
        wake.clear()
    signal.setitimer(signal.ITIMER_REAL, 0)
    print("handled", handled, "woken", woken)
""")


def test_a_storm_of_signals_never_hangs_the_waiting_thread():
    done = subprocess.run([sys.executable, "-c", STORM], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    _, handled, _, woken = done.stdout.split()
    assert int(handled) > 100 and int(woken) > 0


def test_a_set_before_the_wait_is_not_lost():
    wake = Wake()
    wake.set()
    assert wake.wait(5) is True
    wake.close()


def test_wait_times_out_when_nobody_sets_it():
    wake = Wake()
    assert wake.wait(0.01) is False
    assert not wake.is_set()
    wake.close()


def test_clear_forgets_earlier_wake_ups():
    wake = Wake()
    for _ in range(10_000):  # more than a pipe holds: set() never blocks
        wake.set()
    wake.clear()
    assert wake.wait(0.01) is False
    wake.close()


def test_another_thread_wakes_the_waiter():
    wake = Wake()
    threading.Timer(0.05, wake.set).start()
    assert wake.wait(10) is True
    wake.close()


def test_a_set_after_close_is_harmless():
    wake = Wake()
    wake.close()
    wake.set()  # a signal arriving during shutdown
    assert wake.is_set()
