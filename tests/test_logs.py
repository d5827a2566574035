"""Logs as journalctl readers see them: one JSON event per line, causes in words, no secrets."""

from __future__ import annotations

import io
import json
import logging
import os

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


def _log_one_of_each() -> None:
    log = structlog.get_logger("bridge")
    log.debug("polled", source="a")
    log.info("posted", target="x")
    log.warning("slow", duration_ms=9000)
    log.error("post failed", reason="HTTP 503")
    log.critical("database gone")
    logging.getLogger("apscheduler.scheduler").warning("Run time missed")


def _without_time(line: str) -> dict:
    event = json.loads(line)
    event.pop("timestamp")
    return event


class TestJournalPriorities:
    def _journal_file(self, tmp_path, monkeypatch, *, same_file: bool = True):
        path = tmp_path / "journal-stream"
        stream = open(path, "w+", encoding="utf-8")
        other = tmp_path / "elsewhere"
        other.write_text("")
        info = os.stat(path if same_file else other)
        monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino}")
        return stream

    def _lines(self, stream) -> list[str]:
        stream.flush()
        stream.seek(0)
        return stream.read().splitlines()

    def test_each_line_on_the_journal_stream_starts_with_its_priority(self, tmp_path, monkeypatch):
        """With $JOURNAL_STREAM naming stdout, each line starts with its sd-daemon <N> and the same JSON follows."""
        plain = _capture("debug")
        _log_one_of_each()
        stream = self._journal_file(tmp_path, monkeypatch)
        logs.configure_logging("debug", json=True, stream=stream)
        _log_one_of_each()
        lines = self._lines(stream)
        assert [line[:3] for line in lines] == ["<7>", "<6>", "<4>", "<3>", "<2>", "<4>"]
        assert [_without_time(line[3:]) for line in lines] == [_without_time(line) for line in
                                                               plain.getvalue().splitlines()]
        stream.close()

    def test_no_prefix_without_journal_stream(self, monkeypatch):
        """Without $JOURNAL_STREAM (a terminal, a pipe, a test) lines are bare JSON."""
        monkeypatch.delenv("JOURNAL_STREAM", raising=False)
        stream = _capture("debug")
        _log_one_of_each()
        lines = stream.getvalue().splitlines()
        assert len(lines) == 6 and all(line.startswith("{") for line in lines)

    def test_no_prefix_when_stdout_is_another_file(self, tmp_path, monkeypatch):
        """An inherited $JOURNAL_STREAM naming another file (stdout redirected) gives bare JSON."""
        stream = self._journal_file(tmp_path, monkeypatch, same_file=False)
        logs.configure_logging("debug", json=True, stream=stream)
        _log_one_of_each()
        lines = self._lines(stream)
        assert len(lines) == 6 and all(line.startswith("{") for line in lines)
        stream.close()

    def test_every_line_of_a_multi_line_event_carries_the_priority(self):
        """A readable multi-line event (traceback at debug) has the prefix on every line, so none drops to info."""
        stream = io.StringIO()
        logs.configure_logging("debug", json=False, stream=stream, journal=True)
        try:
            _fail("boom")
        except ConnectionError:
            structlog.get_logger("bridge").exception("job failed unexpectedly")
        lines = stream.getvalue().splitlines()
        assert len(lines) > 1 and all(line.startswith("<3>") for line in lines)


class TestErrorLinesOnTheJournal:
    def _run_check(self, tmp_path, monkeypatch, *, journal: bool) -> list[str]:
        from bridge.cli import EXIT_CONFIG, main

        settings = tmp_path / "settings.toml"
        settings.write_text('[bridge]\npoll_interval = "often"\ncolour = "blue"\n')
        path = tmp_path / "stderr"
        stream = open(path, "w+", encoding="utf-8")
        if journal:
            info = os.stat(path)
            monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino}")
        else:
            monkeypatch.delenv("JOURNAL_STREAM", raising=False)
        monkeypatch.setattr("sys.stderr", stream)
        assert main(["--config", str(settings), "check"]) == EXIT_CONFIG
        stream.close()
        return path.read_text(encoding="utf-8").splitlines()

    def test_a_config_error_is_filed_at_error_priority(self, tmp_path, monkeypatch):
        """Under systemd every line of "invalid configuration" starts with <3>, so -p warning shows why it stopped."""
        lines = self._run_check(tmp_path, monkeypatch, journal=True)
        assert len(lines) > 2 and all(line.startswith("<3>") for line in lines)
        assert lines[0].startswith("<3>bridge: invalid configuration: ")

    def test_a_config_error_elsewhere_has_no_prefix(self, tmp_path, monkeypatch):
        """On a terminal or a pipe the same error is plain text."""
        lines = self._run_check(tmp_path, monkeypatch, journal=False)
        assert lines[0].startswith("bridge: invalid configuration: ") and not any(l.startswith("<") for l in lines)


def test_the_command_line_prefixes_its_log_lines_on_the_journal_stream(tmp_path):
    """`bridge run --once --dry-run` with stdout as $JOURNAL_STREAM writes <6> info and <4> warning lines of JSON."""
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as probe:  # a port nothing listens on: the source is unreadable, a warning
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "settings.toml").write_text(
        f'[bridge]\ndry_run = true\n[[sources]]\nname = "a"\nurl = "http://127.0.0.1:{port}/rss.xml"\n'
        'targets = ["x"]\n[targets.x]\nkind = "x"\n')
    with open(tmp_path / "journal", "w+", encoding="utf-8") as out:
        info = os.fstat(out.fileno())
        env = {**os.environ, "JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}",
               "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        env.pop("STATE_DIRECTORY", None)
        run = subprocess.run([sys.executable, "-m", "bridge", "--config", "settings.toml", "run", "--once",
                              "--dry-run"], stdout=out, stderr=out, env=env, cwd=tmp_path, timeout=60)
        out.seek(0)
        lines = out.read().splitlines()
    assert run.returncode == 0, lines
    levels = {line[:3]: json.loads(line[3:])["level"] for line in lines}
    assert levels == {"<6>": "info", "<4>": "warning"}
