"""[alerts]: one message when a problem starts, one when it clears, a daily digest; to a Telegram chat
(the fake Bot API) and by email (a real SMTP server, aiosmtpd, on 127.0.0.1). Never blocks the pipeline."""

from __future__ import annotations

import socket
import threading
from datetime import time as clock_time
from datetime import timedelta

import pytest
from structlog.testing import capture_logs

from bridge.alert_channels import EmailChannel, channels_for
from bridge.alerts import check, needs_a_person
from bridge.config import parse_config
from bridge.errors import ConfigError
from bridge.pipeline import poll
from bridge.service import close
from tests.fakes.telegram import BOT_TOKEN
from tests.helpers import antara_feed, antara_item, env_for


class Mailbox:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 keeping every message it accepts."""

    def __init__(self, login: tuple[str, str] | None = None) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        self.messages: list = []
        self.logins: list[str] = []
        outer = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's naming)
                from email import message_from_bytes, policy

                outer.messages.append((envelope.mail_from, list(envelope.rcpt_tos),
                                       message_from_bytes(envelope.content, policy=policy.default)))
                return "250 OK"

        def authenticate(server, session, envelope, mechanism, auth_data):
            ok = login is not None and (auth_data.login.decode(), auth_data.password.decode()) == login
            if ok:
                outer.logins.append(auth_data.login.decode())
            return AuthResult(success=ok)

        kwargs = {"authenticator": authenticate, "auth_require_tls": False, "auth_required": True} if login else {}
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=_free_port(), **kwargs)
        self.controller.start()
        self.port = self.controller.port

    def stop(self) -> None:
        self.controller.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def mailbox():
    box = Mailbox()
    yield box
    box.stop()


def settings(feed_url: str, telegram_base: str, smtp_port: int, **alerts) -> dict:
    return {
        "bridge": {"database": "sqlite:///bridge.db", "dry_run": False, "first_run": "all",
                   "timezone": "Asia/Jakarta", "publish_timeout": "5s"},
        "sources": [{"name": "antara", "url": feed_url, "targets": ["ops"]}],
        "targets": {"ops": {"kind": "telegram", "chat_id": "@kemenpora", "api_base": telegram_base}},
        "alerts": {"targets": ["ops"], "smtp": f"smtp://127.0.0.1:{smtp_port}", "email_from": "bridge@kemenpora.go.id",
                   "email_to": ["it@kemenpora.go.id"], "alert_after": "1h", **alerts},
    }


@pytest.fixture
def world(feed_server, telegram_api, mailbox, tmp_path, clock, monkeypatch):
    monkeypatch.setenv("BRIDGE_OPS_BOT_TOKEN", BOT_TOKEN)
    feed_server.add("/rss.xml", antara_feed([antara_item(1)]))
    return settings(feed_server.url("/rss.xml"), telegram_api.base_url, mailbox.port), feed_server, telegram_api, mailbox


def start(raw, tmp_path, clock, monkeypatch):
    monkeypatch.setenv("BRIDGE_OPS_BOT_TOKEN", BOT_TOKEN)
    for name, value in env_for(tmp_path).items():
        monkeypatch.setenv(name, value)
    import os

    config = parse_config(raw, environ={**os.environ})
    from bridge.service import build_runtime, open_repository

    return build_runtime(config, open_repository(config), clock=clock)


def alert_once(rt):
    return check(rt.repo, rt.config, rt.clock(), channels_for(rt.config, rt.publishers), rt.publishers)


class TestOnceWhenItStartsOnceWhenItClears:
    def test_a_source_failing_past_alert_after_is_told_once_and_its_recovery_once(
            self, world, tmp_path, clock, monkeypatch):
        """A source failing for 30 minutes is not news; past the hour one Telegram message and one
        email say so, later checks say nothing more, and its recovery is told once, with how long."""
        raw, feeds, telegram, mailbox = world
        rt = start(raw, tmp_path, clock, monkeypatch)
        try:
            poll(rt, rt.config.sources[0])  # a good poll: the failure is timed from here
            telegram.messages.clear()
            feeds.edit("/rss.xml", status=503)
            clock.advance(minutes=30)
            poll(rt, rt.config.sources[0], force=True)
            assert alert_once(rt).started == {} and telegram.messages == [] and mailbox.messages == []
            clock.advance(minutes=40)
            poll(rt, rt.config.sources[0], force=True)
            round_ = alert_once(rt)
            assert list(round_.started) == ["source:antara:failing"]
            [message] = telegram.messages
            assert "source antara cannot be read for 1 h 10 min" in message["text"] and "503" in message["text"]
            [(sender, to, email)] = mailbox.messages
            assert sender == "bridge@kemenpora.go.id" and to == ["it@kemenpora.go.id"]
            assert email["Subject"].startswith("[bridge] source antara cannot be read")
            for _ in range(3):
                clock.advance(minutes=5)
                poll(rt, rt.config.sources[0], force=True)
                assert alert_once(rt).message is None
            assert len(telegram.messages) == 1 and len(mailbox.messages) == 1
            feeds.edit("/rss.xml", status=200)
            clock.advance(minutes=5)
            poll(rt, rt.config.sources[0], force=True)
            assert list(alert_once(rt).cleared) == ["source:antara:failing"]
            assert "✓ cleared after 20 min: source antara cannot be read" in telegram.messages[-1]["text"]
            assert alert_once(rt).message is None and len(telegram.messages) == 2 and len(mailbox.messages) == 2
        finally:
            close(rt)

    def test_a_restart_neither_repeats_nor_forgets(self, world, tmp_path, clock, monkeypatch):
        """What was told is in the database: a new process says nothing of a problem already told,
        and still tells its clearing."""
        raw, feeds, telegram, mailbox = world
        rt = start(raw, tmp_path, clock, monkeypatch)
        feeds.edit("/rss.xml", status=500)
        for _ in range(15):
            poll(rt, rt.config.sources[0], force=True)
            clock.advance(minutes=5)
        assert alert_once(rt).started
        close(rt)
        rt = start(raw, tmp_path, clock, monkeypatch)
        try:
            assert alert_once(rt).message is None
            feeds.edit("/rss.xml", status=200)
            poll(rt, rt.config.sources[0], force=True)
            assert list(alert_once(rt).cleared) == ["source:antara:failing"]
            assert len(telegram.messages) == 2 and len(mailbox.messages) == 2
        finally:
            close(rt)

    def test_a_paused_target_and_posts_in_doubt_are_told(self, world, tmp_path, clock, monkeypatch):
        """A target paused for its credentials and a post in doubt each make one alert line."""
        from bridge.model import FrozenPost

        raw, feeds, telegram, mailbox = world
        raw["targets"]["x"] = {"kind": "x", "api_base": "http://127.0.0.1:9"}
        rt = start(raw, tmp_path, clock, monkeypatch)
        try:
            poll(rt, rt.config.sources[0])
            rt.repo.pause_target("x", "X rejected the credentials: regenerate the access token", clock())
            [delivery] = rt.repo.due_deliveries("ops", clock(), 10)
            rt.repo.claim(delivery, clock(), FrozenPost("Menpora 1"))
            rt.repo.mark_in_doubt(delivery.id, "the answer was lost", None, clock())
            started = alert_once(rt).started
            assert set(started) == {"target:x:paused", "target:ops:in_doubt"}
            assert "regenerate the access token" in started["target:x:paused"]
            assert "1 post(s) to ops in doubt" in started["target:ops:in_doubt"]
        finally:
            close(rt)


class TestChannels:
    def test_a_failing_channel_does_not_stop_the_others_or_the_check(self, world, tmp_path, clock, monkeypatch):
        """Telegram answering 502 (it may have posted: in doubt, never re-sent) is logged as a warning;
        the email still goes, and the problem is recorded as told (the digest repeats what is still wrong)."""
        raw, feeds, telegram, mailbox = world
        rt = start(raw, tmp_path, clock, monkeypatch)
        try:
            rt.repo.pause_target("ops", "Telegram: the bot was removed from the chat", clock())
            telegram.enqueue("POST", "sendMessage", status=502, body="<html>Bad Gateway</html>")
            with capture_logs() as logs:
                round_ = alert_once(rt)
            assert round_.started and len(mailbox.messages) == 1 and telegram.messages == []
            assert [e for e in logs if e["event"] == "alert may have been sent" and e["log_level"] == "warning"]
            assert alert_once(rt).message is None
        finally:
            close(rt)

    def test_an_smtp_server_that_never_answers_is_given_up_within_the_deadline(self):
        """A server that accepts the connection and says nothing: the send fails with TimeoutError
        after publish_timeout, not never."""
        listener = socket.create_server(("127.0.0.1", 0))
        accepted = []
        threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
        channel = EmailChannel("email", "127.0.0.1", listener.getsockname()[1], False, False, "a@b.id", ("c@d.id",),
                               None, None, timeout=0.5)
        try:
            with pytest.raises((TimeoutError, socket.timeout, OSError)):
                channel.send("bridge on test:\n⚠ something")
        finally:
            listener.close()
            for conn, _ in accepted:
                conn.close()

    def test_the_smtp_login_comes_from_the_alerts_secrets(self, feed_server, telegram_api, tmp_path, clock, monkeypatch):
        """BRIDGE_ALERTS_SMTP_USER/PASSWORD log in to a server that requires it; the password is redacted from logs."""
        box = Mailbox(login=("bridge", "s3cret-pass"))
        try:
            monkeypatch.setenv("BRIDGE_ALERTS_SMTP_USER", "bridge")
            monkeypatch.setenv("BRIDGE_ALERTS_SMTP_PASSWORD", "s3cret-pass")
            feed_server.add("/rss.xml", antara_feed([antara_item(1)]))
            raw = settings(feed_server.url("/rss.xml"), telegram_api.base_url, box.port, targets=[])
            rt = start(raw, tmp_path, clock, monkeypatch)
            try:
                assert "s3cret-pass" in rt.config.secrets()
                rt.repo.pause_target("ops", "Telegram: the bot was removed from the chat", clock())
                assert alert_once(rt).started and box.logins == ["bridge"] and len(box.messages) == 1
            finally:
                close(rt)
        finally:
            box.stop()

    def test_long_messages_fit_the_network(self):
        """A message longer than the network allows keeps whole lines and says how many are left out."""
        from bridge.alert_channels import _fit
        from bridge.compose import LengthRule

        rule = LengthRule(60, len)
        text = _fit("bridge on host:\n" + "\n".join(f"⚠ source s{n} cannot be read" for n in range(10)), rule)
        assert len(text) <= 60 and text.startswith("bridge on host:") and "more: see `bridge status`" in text


class TestDigest:
    def test_one_digest_a_day_at_its_local_time(self, world, tmp_path, clock, monkeypatch):
        """digest_at = "08:00" (Jakarta): nothing before, one digest after, none again that day, one the next."""
        raw, feeds, telegram, mailbox = world
        raw["alerts"]["digest_at"] = "08:00"
        rt = start(raw, tmp_path, clock, monkeypatch)  # the clock starts at 03:00 UTC = 10:00 WIB
        try:
            clock.now = clock.now.replace(hour=0, minute=30)  # 07:30 WIB
            assert alert_once(rt).digest is False
            clock.advance(minutes=31)  # 08:01 WIB
            round_ = alert_once(rt)
            assert round_.digest and "all is well" in telegram.messages[-1]["text"]
            clock.advance(hours=10)
            assert alert_once(rt).digest is False
            clock.advance(hours=14)  # 08:01 WIB the next day
            assert alert_once(rt).digest is True and len(telegram.messages) == 2
        finally:
            close(rt)


class TestSettings:
    def base(self, **alerts) -> dict:
        return {"bridge": {"database": "sqlite:///b.db", "dry_run": True},
                "sources": [{"name": "a", "url": "https://a.id/rss", "targets": ["x"]}],
                "targets": {"x": {"kind": "x"}, "ops": {"kind": "telegram", "chat_id": "@it"}},
                "alerts": alerts}

    def problems(self, **alerts) -> str:
        with pytest.raises(ConfigError) as raised:
            parse_config(self.base(**alerts), environ={})
        return str(raised.value)

    def test_a_full_table(self):
        config = parse_config(self.base(targets=["ops"], smtp="smtps://mail.kemenpora.go.id", email_from="b@kemenpora.go.id",
                                        email_to=["it@kemenpora.go.id"], alert_after="2h", digest_at="07:30"), environ={})
        alerts = config.alerts
        assert (alerts.smtp_host, alerts.smtp_port, alerts.smtp_ssl) == ("mail.kemenpora.go.id", 465, True)
        assert alerts.alert_after.total_seconds() == 7200 and alerts.digest_at == clock_time(7, 30)

    def test_no_table_no_alerts(self):
        raw = self.base()
        del raw["alerts"]
        assert parse_config(raw, environ={}).alerts is None

    @pytest.mark.parametrize("alerts, expected", [
        ({"targets": ["Ops"]}, "alerts.targets: no [targets.Ops] table; did you mean 'ops'?"),
        ({"smtp": "mail.kemenpora.go.id", "email_from": "a@b.id", "email_to": ["c@d.id"]}, "must be smtp://host"),
        ({"smtp": "smtp://u:p@mail.id", "email_from": "a@b.id", "email_to": ["c@d.id"]}, "no login in the URL"),
        ({"smtp": "smtp://mail.id", "email_to": ["c@d.id"]}, "alerts.email_from: required"),
        ({"email_to": ["c@d.id"]}, "email_to needs an SMTP server"),
        ({"smtp": "smtp://mail.id", "email_from": "a@b.id", "email_to": ["not an address"]}, "is not an email address"),
        ({"smtp": "smtps://mail.id", "starttls": True, "email_from": "a@b.id", "email_to": ["c@d.id"]}, "not with smtps"),
        ({"targets": ["ops"], "digest_at": "pagi"}, "alerts.digest_at"),
        ({"targets": ["ops"], "alert_afer": "1h"}, "did you mean 'alert_after'?"),
        ({}, "names nowhere to send"),
    ])
    def test_each_mistake_is_named_with_its_fix(self, alerts, expected):
        assert expected in self.problems(**alerts)


def test_needs_a_person_ignores_disabled_and_removed_sources(clock):
    """A disabled source (never read) and one removed from the settings raise no alert."""
    raw = {"bridge": {"database": "sqlite:///b.db", "dry_run": True},
           "sources": [{"name": "a", "url": "https://a.id/rss", "targets": ["x"], "enabled": False}],
           "targets": {"x": {"kind": "x"}}, "alerts": {"targets": ["x"]}}
    config = parse_config(raw, environ={})
    report = {"sources": [{"name": "a", "consecutive_failures": 50, "last_success": None},
                          {"name": "gone", "consecutive_failures": 50, "last_success": None}],
              "held": [], "targets": [], "in_doubt": []}
    assert needs_a_person(report, {}, config, clock()) == {}


def test_the_daemon_checks_alerts_as_a_job(world, tmp_path, clock, monkeypatch):
    """The daemon's alerts job tells a paused target through [alerts], and a failing check shows in /healthz."""
    from bridge.daemon import Daemon, _check_alerts

    raw, feeds, telegram, mailbox = world
    rt = start(raw, tmp_path, clock, monkeypatch)
    daemon = Daemon(rt)
    try:
        daemon._beat()
        rt.repo.pause_target("ops", "Telegram: the bot was removed from the chat", clock())
        daemon._job(_check_alerts)
        assert len(mailbox.messages) == 1 and "target ops is paused" in mailbox.messages[0][2].get_content()
        rt.repo.clear_pauses()
        daemon._job(_check_alerts)
        assert len(mailbox.messages) == 2 and "cleared" in mailbox.messages[1][2].get_content()
        assert daemon.failures.problems() == []
    finally:
        daemon.close()


def test_the_shipped_alerts_example_loads_when_uncommented():
    """settings.toml's commented [alerts] block, uncommented (with the ops target it names), is valid."""
    import re

    from tests.test_daemon_process import REPO_ROOT

    text = (REPO_ROOT / "settings.toml").read_text()
    head, _, block = text.partition("# [alerts]\n")
    assert block, "settings.toml has no commented [alerts] block"
    settings_lines = [re.sub(r"^# ", "", line) for line in block.splitlines()
                      if re.match(r"^# ([a-z_]+ = |\[[a-z.]+\]$)", line)]
    raw = head + "[alerts]\n" + "\n".join(settings_lines) + \
        '\n[targets.ops]\nkind = "telegram"\nchat_id = "@it_kemenpora"\n'
    import tomllib

    config = parse_config(tomllib.loads(raw), environ={})
    assert config.alerts.targets == ("ops",) and config.alerts.smtp_host == "mail.kemenpora.go.id"
    assert config.alerts.starttls and config.alerts.digest_at == clock_time(8, 0)


class TestTokenExpiry:
    """Facebook says when a Page token expires (/debug_token): a week before, the operator is told."""

    @pytest.fixture
    def fb_world(self, world, facebook_api, monkeypatch):
        from tests.fakes.facebook import PAGE_ID, PAGE_TOKEN

        raw, feeds, telegram, mailbox = world
        monkeypatch.setenv("BRIDGE_FB_PAGE_TOKEN", PAGE_TOKEN)
        raw["targets"]["fb"] = {"kind": "facebook", "page_id": PAGE_ID, "api_base": facebook_api.base_url}
        return raw, facebook_api, telegram

    def test_a_token_expiring_within_a_week_is_told_and_asked_once_a_day(self, fb_world, tmp_path, clock, monkeypatch):
        raw, facebook, telegram = fb_world
        facebook.token_expires_at = int((clock() + timedelta(days=30)).timestamp())
        rt = start(raw, tmp_path, clock, monkeypatch)
        try:
            assert "target:fb:token" not in alert_once(rt).started  # a month left: nothing to say
            clock.advance(hours=23)
            alert_once(rt)
            assert len(facebook.routed("/debug_token")) == 1  # once a day, not once a minute
            clock.advance(days=23)  # 6 days left
            started = alert_once(rt).started
            assert "target:fb:token" in started and "expires" in started["target:fb:token"]
            assert "WIB" in started["target:fb:token"]
            assert len(facebook.routed("/debug_token")) == 2
            facebook.token_expires_at = 0  # a new token that never expires
            clock.advance(days=1)
            assert "target:fb:token" in alert_once(rt).cleared
        finally:
            close(rt)

    def test_an_invalid_token_is_told(self, fb_world, tmp_path, clock, monkeypatch):
        raw, facebook, telegram = fb_world
        facebook.token_valid = False
        rt = start(raw, tmp_path, clock, monkeypatch)
        try:
            started = alert_once(rt).started
            assert "no longer valid" in started["target:fb:token"] and "BRIDGE_FB_PAGE_TOKEN" in started["target:fb:token"]
        finally:
            close(rt)

    def test_graph_unreachable_keeps_what_was_known(self, fb_world, tmp_path, clock, monkeypatch):
        """A failed token check is a warning in the log, not an alert, and is asked again the next day."""
        raw, facebook, telegram = fb_world
        rt = start(raw, tmp_path, clock, monkeypatch)
        try:
            facebook.enqueue("GET", "/debug_token", status=503, body="unavailable")
            with capture_logs() as logs:
                assert "target:fb:token" not in alert_once(rt).started
            assert [e for e in logs if e["event"] == "token check failed"]
        finally:
            close(rt)


def test_an_smtp_server_that_drops_the_message_answer_is_in_doubt():
    """A server that takes the whole message and hangs up before its "250" may have queued it:
    InDoubt (the alert is not sent again), not "not sent". RFC 5321 4.1.1.4: the reply to the end
    of the data is what says the message was accepted."""
    from bridge.errors import InDoubt

    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        conn, _ = listener.accept()
        with conn, conn.makefile("rb") as lines:
            conn.sendall(b"220 mail.test ESMTP\r\n")
            for line in lines:
                if line.upper().startswith((b"EHLO", b"HELO")):
                    conn.sendall(b"250 mail.test\r\n")
                elif line.upper().startswith(b"DATA"):
                    conn.sendall(b"354 go ahead\r\n")
                    for body_line in lines:
                        if body_line == b".\r\n":
                            return  # the message is in; the answer never comes
                else:
                    conn.sendall(b"250 OK\r\n")

    threading.Thread(target=serve, daemon=True).start()
    channel = EmailChannel("email", "127.0.0.1", listener.getsockname()[1], False, False, "a@b.id", ("c@d.id",),
                           None, None, timeout=5)
    try:
        with pytest.raises(InDoubt, match="gave no answer to the message"):
            channel.send("bridge on test:\n⚠ something")
    finally:
        listener.close()
