"""A source's own request headers: `user_agent` and `headers` in [[sources]], for sites that refuse
default clients (MonitoRSS #7, Miniflux #2781) or need a cookie or a token.

The bridge manages some headers itself and refuses them here: the conditional GET validators (its
once-only reading depends on them), Accept-Encoding (the size caps are on the decoded body) and the
connection's framing. Cookie and Authorization values are credentials: they are redacted from logs.
"""

from __future__ import annotations

import re

from bridge.config.values import TableReader

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
"""RFC 9110 field-name: a token."""
MANAGED_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "te", "upgrade", "accept-encoding",
                   "if-none-match", "if-modified-since", "keep-alive", "proxy-authorization"}
SECRET_HEADERS = {"cookie", "authorization"}
MAX_HEADER_VALUE = 4096


def parse_request_headers(table: dict, get: TableReader, problems: list[str]) -> tuple[tuple[str, str], ...]:
    """`user_agent` and `headers` of one source as (name, value) pairs, User-Agent first when set."""
    where = get.where
    pairs: list[tuple[str, str]] = []
    user_agent = get.string("user_agent", None)
    if user_agent is not None:
        if _bad_value(user_agent):
            problems.append(f"{where}.user_agent: must be one line of printable text (got {user_agent!r})")
        else:
            pairs.append(("User-Agent", user_agent))
    raw = table.get("headers")
    if raw is None:
        return tuple(pairs)
    if not isinstance(raw, dict):
        problems.append(f'{where}.headers: must be a table like headers = {{ Referer = "https://www.kemenpora.go.id/" }}')
        return tuple(pairs)
    for name, value in raw.items():
        key = f"{where}.headers.{name}"
        if not _TOKEN.match(name):
            problems.append(f"{key}: {name!r} is not a header name (letters, digits and -)")
        elif name.lower() in MANAGED_HEADERS:
            problems.append(f"{key}: the bridge sets {name} itself; remove it")
        elif name.lower() == "user-agent":
            problems.append(f"{key}: write it as user_agent = \"...\" in the source")
        elif not isinstance(value, str) or _bad_value(value):
            problems.append(f"{key}: must be a string of one line, at most {MAX_HEADER_VALUE} characters")
        else:
            pairs.append((name, value))
    return tuple(pairs)


def secret_header_values(headers: tuple[tuple[str, str], ...]) -> list[str]:
    """The values to hide from logs: Cookie and Authorization (and each cookie's value)."""
    found = []
    for name, value in headers:
        if name.lower() in SECRET_HEADERS and value:
            found.append(value)
            found += [part.split("=", 1)[1].strip() for part in value.split(";")
                      if "=" in part and len(part.split("=", 1)[1].strip()) >= 6]
    return found


def _bad_value(value: str) -> bool:
    return len(value) > MAX_HEADER_VALUE or any(ch in value for ch in "\r\n\0") or not value.strip()
