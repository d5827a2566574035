"""structlog setup: JSON lines off a terminal (journald keeps them), readable lines on one.

Under systemd, when stdout is the journal's stream (systemd.exec's $JOURNAL_STREAM names it), each
line starts with its sd-daemon priority (`<3>` error, `<4>` warning, `<6>` info, `<7>` debug; see
sd-daemon(3)); journald strips the prefix and files the line at that priority, so
`journalctl -u bridge -p warning` shows the problems. The JSON after the prefix is unchanged.

Library logs (tweepy, httpx, APScheduler) go through the same renderer, and every line, ours or
theirs, passes the redactor last, so a credential value never reaches the output.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import IO, Any, Iterable, Mapping

import structlog

REDACTED = "[redacted]"
_secrets: set[str] = set()
_tracebacks = False
"""True at debug level: only then does a logged exception carry its traceback."""

# Libraries that log request headers (Authorization!) or every request at DEBUG/INFO.
QUIET_LOGGERS = {
    "tweepy": logging.INFO,
    "requests_oauthlib": logging.WARNING,
    "oauthlib": logging.WARNING,
    "urllib3": logging.WARNING,
    "httpx": logging.WARNING,
    "httpcore": logging.WARNING,
    "apscheduler": logging.WARNING,
}


def set_secrets(values: Iterable[str]) -> None:
    """Replace the set of strings to hide (called at start and on reload)."""
    _secrets.clear()
    # Very short values would redact ordinary words; credentials are long.
    _secrets.update(v for v in values if v and len(v) >= 6)


def redact(value: Any) -> Any:
    if isinstance(value, str):
        for secret in _secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v) for v in value)
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return redact(str(value))


def _redact_event(_logger: Any, _method: str, event_dict: dict) -> dict:
    return redact(event_dict) if _secrets else event_dict


def _exception_in_words(_logger: Any, _method: str, event_dict: dict) -> dict:
    """An exception becomes a one-line `error` field ("TimeoutError: timed out"); the traceback is
    kept only at debug level, so journalctl shows one line per event and a cause, not a stack."""
    exc_info = event_dict.get("exc_info")
    if not exc_info:
        return event_dict
    if exc_info is True:
        exc_info = sys.exc_info()
    elif isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    exc = exc_info[1] if isinstance(exc_info, tuple) and len(exc_info) == 3 else None
    if exc is not None:
        words = " ".join(str(exc).split()) or "(no message)"
        event_dict.setdefault("error", f"{type(exc).__name__}: {words}")
    if _tracebacks and exc is not None:
        event_dict["exc_info"] = exc_info
    else:
        event_dict.pop("exc_info", None)
    return event_dict


def set_level(level: str) -> None:
    """Change the level of every logger at once (at start and when a reload changes log_level)."""
    global _tracebacks
    root = logging.getLogger()
    root.setLevel(level.upper())
    _tracebacks = root.level <= logging.DEBUG
    for name, floor in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(max(floor, root.level))


def sd_priority(levelno: int) -> int:
    """The syslog priority sd-daemon(3) prefixes use for a logging level: SD_CRIT 2, SD_ERR 3,
    SD_WARNING 4, SD_INFO 6, SD_DEBUG 7."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


def is_journal_stream(stream: IO[str], environ: Mapping[str, str] = os.environ) -> bool:
    """True when `stream` is the journal stream systemd connected: $JOURNAL_STREAM is its
    "device:inode" (systemd.exec(5)). A redirected stdout (`bridge status > file` in a unit's
    shell) inherits the variable but is another file, so it gets no prefixes."""
    device, _, inode = environ.get("JOURNAL_STREAM", "").partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        info = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return False
    return (info.st_dev, info.st_ino) == (int(device), int(inode))


class _JournalPriority(logging.Formatter):
    """Puts the record's sd-daemon `<N>` before every line the inner formatter writes."""

    def __init__(self, inner: logging.Formatter):
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{sd_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in self.inner.format(record).split("\n"))


def print_error(text: str) -> None:
    """Print an operator's error line (bad settings, unusable database) to stderr; on the journal
    stream every line is filed at error priority, so `journalctl -p warning` shows why it stopped."""
    stream = sys.stderr
    if is_journal_stream(stream):
        text = "\n".join(f"<{sd_priority(logging.ERROR)}>{line}" for line in text.split("\n"))
    print(text, file=stream)


def configure_logging(level: str = "info", *, json: bool | None = None, stream: IO[str] | None = None,
                      journal: bool | None = None) -> None:
    """Route structlog and stdlib logging to `stream` (stdout by default) at `level`. With
    `journal` (by default: when `stream` is systemd's journal stream) each line carries its priority."""
    stream = stream or sys.stdout
    if json is None:
        json = not stream.isatty()
    if journal is None:
        journal = is_journal_stream(stream)
    shared: list = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *shared,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _exception_in_words,
            structlog.processors.format_exc_info,
            _redact_event,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_JournalPriority(formatter) if journal else formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    set_level(level)
