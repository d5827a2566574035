"""[alerts]: where the bridge tells its operator that something needs a person, and when.

Alerts go to existing targets (a Telegram chat of the IT staff, say; such a target needs no source)
and/or by email through an SMTP server. The SMTP login is a secret of the pseudo-target `alerts`:
$BRIDGE_ALERTS_SMTP_USER / $BRIDGE_ALERTS_SMTP_PASSWORD, or the files smtp_user / smtp_password in
/etc/bridge/credentials/alerts/ (with `LoadCredential=alerts:/etc/bridge/credentials/alerts`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import time, timedelta
from typing import Mapping
from urllib.parse import urlsplit

from bridge.config.values import TableReader, suggestion, unknown_keys
from bridge.secrets import load_credentials

DEFAULT_ALERT_AFTER = "1h"
"""How long a source must fail before it is worth a message: a site down for minutes is common."""
SMTP_PORTS = {"smtp": 25, "smtps": 465}
_KEYS = {"targets", "smtp", "starttls", "email_from", "email_to", "alert_after", "digest_at"}
_EMAIL_RE = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")
ALERTS_SECRET_TARGET = "alerts"
"""The pseudo-target whose secrets are the SMTP login."""
SMTP_SECRET_FIELDS = ("smtp_user", "smtp_password")


@dataclass(frozen=True)
class AlertsConfig:
    targets: tuple[str, ...] = ()
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_ssl: bool = False
    """smtps://: TLS from the first byte (port 465)."""
    starttls: bool = False
    """smtp:// upgraded with STARTTLS before the login (port 587 usually)."""
    email_from: str | None = None
    email_to: tuple[str, ...] = ()
    smtp_user: str | None = None
    smtp_password: str | None = None
    alert_after: timedelta = timedelta(hours=1)
    digest_at: time | None = None
    """A daily message at this local time listing what needs a person (or that all is well)."""

    @property
    def email(self) -> bool:
        return self.smtp_host is not None

    def secrets(self) -> list[str]:
        return [v for v in (self.smtp_user, self.smtp_password) if v]


def parse_alerts(raw: object, problems: list[str], environ: Mapping[str, str],
                 target_names: set[str]) -> AlertsConfig | None:
    """The [alerts] table, or None when there is none (no alerts are sent)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        problems.append("alerts: must be a table like [alerts]")
        return None
    unknown_keys(raw, _KEYS, "alerts", problems)
    get = TableReader(raw, "alerts", problems)
    targets = tuple(get.str_list("targets"))
    for name in targets:
        if name not in target_names:
            problems.append(f"alerts.targets: no [targets.{name}] table{suggestion(name, target_names)}")
    host, port, ssl = _smtp(get.string("smtp", None), problems)
    email_from = get.string("email_from", None)
    email_to = tuple(get.str_list("email_to"))
    if host:
        if not email_from:
            problems.append('alerts.email_from: required with smtp, e.g. email_from = "bridge@kemenpora.go.id"')
        if not email_to:
            problems.append('alerts.email_to: required with smtp, e.g. email_to = ["it@kemenpora.go.id"]')
    elif email_to or email_from:
        problems.append('alerts.smtp: email_to needs an SMTP server, e.g. smtp = "smtp://mail.example.go.id:587"')
    for address in (*([email_from] if email_from else []), *email_to):
        if not _EMAIL_RE.match(address):
            problems.append(f"alerts: {address!r} is not an email address like it@kemenpora.go.id")
    starttls = get.boolean("starttls", False)
    if starttls and ssl:
        problems.append("alerts.starttls: not with smtps:// (already TLS); use smtp://host:587 with starttls")
    if not targets and not host:
        problems.append('alerts: names nowhere to send; add targets = ["ops"] and/or smtp and email_to')
    alert_after = get.duration("alert_after", DEFAULT_ALERT_AFTER)
    digest_at = _time_of_day(get.string("digest_at", None), problems)
    login = load_credentials(ALERTS_SECRET_TARGET, SMTP_SECRET_FIELDS, environ, problems, required=False) if host else {}
    if bool(login.get("smtp_user")) != bool(login.get("smtp_password")):
        problems.append("alerts: the SMTP login needs both BRIDGE_ALERTS_SMTP_USER and BRIDGE_ALERTS_SMTP_PASSWORD "
                        "(or the files smtp_user and smtp_password in /etc/bridge/credentials/alerts/)")
    return AlertsConfig(targets=targets, smtp_host=host, smtp_port=port, smtp_ssl=ssl, starttls=starttls,
                        email_from=email_from, email_to=email_to, smtp_user=login.get("smtp_user"),
                        smtp_password=login.get("smtp_password"), alert_after=alert_after or timedelta(hours=1),
                        digest_at=digest_at)


def _smtp(value: str | None, problems: list[str]) -> tuple[str | None, int, bool]:
    if value is None:
        return None, 25, False
    parts = urlsplit(value.strip())
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in SMTP_PORTS or not parts.hostname or port == -1 or parts.path not in ("", "/"):
        problems.append(f"alerts.smtp: {value!r} must be smtp://host[:port] or smtps://host[:port], "
                        "like \"smtp://mail.kemenpora.go.id:587\"")
        return None, 25, False
    if parts.username or parts.password:
        problems.append("alerts.smtp: no login in the URL (settings.toml is not secret): set "
                        "BRIDGE_ALERTS_SMTP_USER and BRIDGE_ALERTS_SMTP_PASSWORD instead")
    return parts.hostname, port or SMTP_PORTS[parts.scheme], parts.scheme == "smtps"


def _time_of_day(value: str | None, problems: list[str]) -> time | None:
    if value is None:
        return None
    try:
        return time.fromisoformat(value.strip())
    except ValueError:
        problems.append(f"alerts.digest_at: {value!r} must be a time of day like \"08:00\"")
        return None
