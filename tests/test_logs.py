"""Logs as journalctl readers see them: one JSON event per line, causes in words, no secrets."""

from __future__ import annotations

import io
import json
import logging

import structlog

from bridge import logs


def _capture(level: str) -> io.StringIO:
    stream = io.StringIO()
    logs.configure_logging(level, json=True, stream=stream)
    return stream


def _events(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def _fail(message: str) -> None:
    raise ConnectionError(message)


class TestExceptions:
    def teardown_method(self):
        logs.set_secrets([])

    def test_an_exception_at_info_is_one_line_with_its_cause(self):
        """Below debug, log.exception gives one line with an `error` field and no traceback."""
        stream = _capture("info")
        try:
            _fail("connection refused by\napi.x.com")
        except ConnectionError:
            structlog.get_logger("bridge").exception("job failed unexpectedly", job="deliver")
        lines = stream.getvalue().splitlines()
        assert len(lines) == 1
        event = json.loads(lines[0])
        assert event["error"] == "ConnectionError: connection refused by api.x.com"
        assert event["level"] == "error" and "exception" not in event and "Traceback" not in lines[0]

    def test_the_traceback_is_kept_at_debug(self):
        """At debug level the traceback is there too, still inside one JSON line."""
        stream = _capture("debug")
        try:
            _fail("boom")
        except ConnectionError:
            structlog.get_logger("bridge").exception("job failed unexpectedly")
        (event,) = _events(stream)
        assert "Traceback" in event["exception"] and "_fail" in event["exception"]
        assert event["error"] == "ConnectionError: boom"

    def test_library_exceptions_follow_the_same_rule(self):
        """A stdlib logger's exception (a library's) is also reduced to one line below debug."""
        stream = _capture("warning")
        try:
            _fail("reset by peer")
        except ConnectionError:
            logging.getLogger("apscheduler.executors").exception("Job raised")
        (event,) = _events(stream)
        assert event["error"] == "ConnectionError: reset by peer" and "exception" not in event

    def test_secrets_in_an_exception_are_redacted(self):
        """A credential inside an exception message never reaches the output, traceback or not."""
        for level in ("info", "debug"):
            stream = _capture(level)
            logs.set_secrets(["s3cr3t-token-value"])
            try:
                _fail("Authorization: Bearer s3cr3t-token-value")
            except ConnectionError:
                structlog.get_logger("bridge").exception("failed")
            assert "s3cr3t-token-value" not in stream.getvalue() and logs.REDACTED in stream.getvalue()

    def test_set_level_changes_every_logger(self):
        """set_level raises or lowers the root level and keeps chatty libraries at their floor."""
        _capture("debug")
        logs.set_level("warning")
        assert logging.getLogger().level == logging.WARNING
        assert logging.getLogger("httpx").level == logging.WARNING
        logs.set_level("debug")
        assert logging.getLogger("tweepy").level == logging.INFO
