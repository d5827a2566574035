"""A short fingerprint of the settings a process runs with, secrets left out: `bridge status` shows
it per replica, so a replica left on old settings after an edit (no reload) stands out."""

from __future__ import annotations

import dataclasses
import hashlib
import json

SECRET_FIELDS = {"credentials", "dashboard_token", "smtp_user", "smtp_password", "request_headers"}
"""Left out: they are secrets (a source's headers may carry a cookie)."""


def settings_fingerprint(config) -> str:
    """12 hex digits from everything the process was configured with but its secrets and file path."""
    def clean(value):
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: clean(getattr(value, f.name)) for f in dataclasses.fields(value)
                    if f.name not in SECRET_FIELDS and f.name != "path"}
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)

    text = json.dumps(clean(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
