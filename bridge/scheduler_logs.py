"""APScheduler's log lines, as the daemon wants them: its "job still running" warning is a debug line.

Every job is max_instances=1 with coalesce: when a delivery round outlasts its interval (a network
that holds us), APScheduler skips the run that came due and warns
'Execution of job "..." skipped: maximum number of running instances reached (1)'. That is the
design working, not a problem, and it used to fill the journal with a warning per late job. Its
other warnings (a misfired run, a failed job) stay warnings. (Polls are not APScheduler jobs:
bridge/poll_plan.py skips a poll still running itself, with the same debug line and metric.)
"""

from __future__ import annotations

import logging
from typing import Callable

SCHEDULER_LOGGER = "apscheduler.scheduler"
"""The logger APScheduler's BaseScheduler writes the warning to (a filter on a parent would not see it)."""
STILL_RUNNING = "maximum number of running instances reached"
"""The words that mark that one warning in APScheduler 3's message."""


class StillRunningFilter(logging.Filter):
    """Turns APScheduler's "still running" warning into a debug line, shown only when the bridge
    runs at debug level, and reports the job's name to `on_skip` (a metric)."""

    def __init__(self, on_skip: Callable[[str], None] = lambda _name: None):
        super().__init__()
        self.on_skip = on_skip

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING or STILL_RUNNING not in str(record.msg):
            return True
        job = record.args[0] if isinstance(record.args, tuple) and record.args else None
        self.on_skip(getattr(job, "name", None) or str(job))
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        # The scheduler's logger sits at WARNING or above (bridge.logs.QUIET_LOGGERS): the bridge's
        # own level decides whether the debug line is written.
        return logging.getLogger().isEnabledFor(logging.DEBUG)


def install(on_skip: Callable[[str], None]) -> StillRunningFilter:
    """Attach a filter to APScheduler's logger; give it back to remove() when the daemon ends."""
    still_running = StillRunningFilter(on_skip)
    logging.getLogger(SCHEDULER_LOGGER).addFilter(still_running)
    return still_running


def remove(still_running: StillRunningFilter) -> None:
    logging.getLogger(SCHEDULER_LOGGER).removeFilter(still_running)
