"""Where alerts go: a configured target (its publisher, as for a story) and/or email over SMTP.

Each send has a total deadline of [bridge] publish_timeout: smtplib's own timeout is per socket
operation, so the socket's timeout is set to what is left before every step.
"""

from __future__ import annotations

import smtplib
import ssl
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Callable, Protocol

from bridge.config import Config
from bridge.errors import InDoubt
from bridge.model import Post

ALERT_SUBJECT_LENGTH = 120
"""The email subject is the message's first problem line, cut to this many characters."""


class Channel(Protocol):
    name: str

    def send(self, message: str) -> None:
        """Deliver `message` or raise."""


@dataclass
class TargetChannel:
    """An alert as a post on a configured target (e.g. a Telegram chat of the IT staff)."""

    name: str
    publisher: object

    def send(self, message: str) -> None:
        import hashlib

        text = _fit(message, self.publisher.length_rule)
        # A fresh key per message: an alert repeated later (a problem back again) is a new post.
        key = "alert-" + hashlib.sha256(f"{time.time_ns()} {text}".encode()).hexdigest()[:24]
        self.publisher.publish(Post(text=text), key)


@dataclass
class EmailChannel:
    """An alert by email, through the [alerts] SMTP server."""

    name: str
    host: str
    port: int
    use_ssl: bool
    starttls: bool
    sender: str
    recipients: tuple[str, ...]
    user: str | None
    password: str | None
    timeout: float
    monotonic: Callable[[], float] = time.monotonic

    def send(self, message: str) -> None:
        email = EmailMessage()
        first = next((line for line in message.splitlines()[1:] if line.strip()), "bridge")
        email["Subject"] = _cut(f"[bridge] {first.lstrip('⚠✓- ')}", ALERT_SUBJECT_LENGTH)
        email["From"], email["To"] = self.sender, ", ".join(self.recipients)
        email["Date"], email["Message-ID"] = formatdate(localtime=False), make_msgid(domain="bridge.local")
        email.set_content(message)
        deadline = self.monotonic() + self.timeout

        def left() -> float:
            remaining = deadline - self.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"SMTP server {self.host}:{self.port} did not finish within {self.timeout:g} s")
            return remaining

        context = ssl.create_default_context()
        if self.use_ssl:
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=left(), context=context)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=left())
        try:
            steps = []
            if self.starttls:
                steps.append(lambda: smtp.starttls(context=context))
            if self.user:
                steps.append(lambda: smtp.login(self.user, self.password or ""))
            for step in steps:
                smtp.sock.settimeout(left())
                step()
            smtp.sock.settimeout(left())
            try:
                smtp.send_message(email)
            except (OSError, smtplib.SMTPServerDisconnected) as exc:
                # The message may be queued already: the server's answer to its end was lost.
                raise InDoubt(f"SMTP server {self.host}:{self.port} gave no answer to the message: {exc}") from None
        finally:
            try:
                if smtp.sock:
                    smtp.sock.settimeout(min(1.0, max(0.01, deadline - self.monotonic())))
                    smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()


def channels_for(config: Config, publishers: dict | None = None) -> list[Channel]:
    """The channels [alerts] names. `publishers` (a runtime's, by target) are reused for targets."""
    alerts = config.alerts
    if alerts is None:
        return []
    channels: list[Channel] = []
    for name in alerts.targets:
        publisher = (publishers or {}).get(name)
        if publisher is not None:
            channels.append(TargetChannel(f"target {name}", publisher))
    if alerts.email and not config.bridge.dry_run:
        channels.append(EmailChannel(
            "email", alerts.smtp_host, alerts.smtp_port, alerts.smtp_ssl, alerts.starttls, alerts.email_from,
            alerts.email_to, alerts.smtp_user, alerts.smtp_password, config.bridge.publish_timeout.total_seconds()))
    return channels


def _fit(message: str, rule) -> str:
    """Whole lines while they fit the network's length; the first line cut if even it does not."""
    lines, kept = message.splitlines(), []
    for line in lines:
        candidate = "\n".join([*kept, line])
        if rule.measure(candidate) > rule.max_length:
            break
        kept.append(line)
    if len(kept) < len(lines):
        more = f"\n(+{len(lines) - len(kept)} more: see `bridge status`)"
        while kept and rule.measure("\n".join(kept) + more) > rule.max_length:
            kept.pop()
        if not kept:
            return _cut(lines[0], max(1, rule.max_length - 1))
        return "\n".join(kept) + more
    return "\n".join(kept)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
