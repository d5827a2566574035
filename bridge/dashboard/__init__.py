"""The PR office's page ([bridge] health_listen: `/` and `/story/{id}`), read-only.

health.py routes requests here; view.py gathers the data (through `bridge status`'s own report and
store/pages.py), render.py writes the HTML, strings.py holds every word in Indonesian and English.
Each call answers (HTTP status, headers, body): the page never changes anything.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from datetime import datetime

import structlog
from sqlalchemy.exc import SQLAlchemyError

from bridge.config import Config
from bridge.dashboard import render, view
from bridge.dashboard.strings import Words
from bridge.errors import DatabaseError
from bridge.store.db import explain
from bridge.store.repo import Repository

log = structlog.get_logger("bridge")

HTML = "text/html; charset=utf-8"
SECURITY_HEADERS = {
    # No script at all, the one stylesheet by its hash, nothing loaded, not framed, no form.
    "Content-Security-Policy": (f"default-src 'none'; style-src '{render.STYLE_HASH}'; base-uri 'none'; "
                                "form-action 'none'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
TOKEN_HINT = ("the bridge's page listens on a non-loopback address and needs a token: set "
              "BRIDGE_DASHBOARD_TOKEN or the credential file dashboard/token, then restart the bridge")

Answer = tuple[int, dict[str, str], bytes]


def overview_page(repo: Repository, config: Config, now: datetime) -> Answer:
    words = _words(config)
    try:
        return _html(200, render.overview_html(view.overview(repo, config, now), words))
    except (DatabaseError, SQLAlchemyError) as exc:
        return _unreadable(exc, config, words)


def story_page(repo: Repository, config: Config, item_id: int) -> Answer:
    words = _words(config)
    try:
        found = view.story(repo, config, item_id)
    except (DatabaseError, SQLAlchemyError) as exc:
        return _unreadable(exc, config, words)
    if found is None:
        return _html(404, render.message_html(words, words("not_found", id=item_id)))
    return _html(200, render.story_html(found, words))


def not_found_page(config: Config) -> Answer:
    words = _words(config)
    return _html(404, render.message_html(words, words("not_found_page")))


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything, so it is not trusted


def refusal(host: str, token: str | None, authorization: str | None) -> Answer | None:
    """None when the request may see the page: always on a loopback address, else with the token
    (HTTP Basic, any user name and the token as password, so a browser asks once; or Bearer),
    compared in constant time. Otherwise the answer that refuses it."""
    if is_loopback(host):
        return None
    if not token:
        return 403, {"Content-Type": "text/plain; charset=utf-8"}, (TOKEN_HINT + "\n").encode()
    if hmac.compare_digest(_offered(authorization or "").encode(), token.encode()):
        return None
    return 401, {"Content-Type": "text/plain; charset=utf-8", "WWW-Authenticate": 'Basic realm="bridge"'}, \
        b"this page needs the token: any user name, the token as password\n"


def _offered(authorization: str) -> str:
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            return ""
    return ""


def _words(config: Config) -> Words:
    return Words(config.bridge.language, config.bridge.timezone)


def _html(status: int, page: str) -> Answer:
    return status, {"Content-Type": HTML, **SECURITY_HEADERS}, page.encode()


def _unreadable(exc: Exception, config: Config, words: Words) -> Answer:
    reason = str(exc) if isinstance(exc, DatabaseError) else explain(exc, config.bridge.database)
    log.warning("dashboard cannot read the database", error=reason)
    return _html(503, render.message_html(words, words("database", reason=reason)))
