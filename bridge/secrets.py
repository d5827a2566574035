"""Where secrets come from: never settings.toml, always the environment or systemd credentials.

For a target named `x` and a field `access_token`: $BRIDGE_X_ACCESS_TOKEN, else the file
$CREDENTIALS_DIRECTORY/x/access_token, else $CREDENTIALS_DIRECTORY/x_access_token (the name systemd
gives a file of a directory loaded with `LoadCredential=x:/etc/bridge/credentials/x`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping


def credential_env_var(target: str, field_name: str) -> str:
    """BRIDGE_<TARGET>_<FIELD>, upper case, anything but letters and digits turned into '_'."""
    return "BRIDGE_" + re.sub(r"[^A-Z0-9]", "_", f"{target}_{field_name}".upper())


def load_credentials(
    target: str, fields: tuple[str, ...], environ: Mapping[str, str], problems: list[str],
    required: bool = True,
) -> dict[str, str]:
    """Environment first, then systemd credentials: `$CREDENTIALS_DIRECTORY/<target>/<field>` or, as
    `LoadCredential=<target>:/some/dir` names them, `$CREDENTIALS_DIRECTORY/<target>_<field>`.
    With required=False a missing field is left out quietly (an optional secret)."""
    found: dict[str, str] = {}
    cred_dir = environ.get("CREDENTIALS_DIRECTORY")
    for name in fields:
        value = environ.get(credential_env_var(target, name), "").strip()
        if not value and cred_dir:
            for path in (Path(cred_dir) / target / name, Path(cred_dir) / f"{target}_{name}"):
                if _is_file(path, target, problems):
                    try:
                        value = path.read_text(encoding="utf-8").strip()
                    except (OSError, UnicodeDecodeError) as exc:
                        problems.append(f"targets.{target}: cannot read secret file {path}: {exc}")
                        value = "unreadable"  # reported above; not also reported as missing
                    break
        if value:
            found[name] = value
        elif required:
            hint = f" or the file $CREDENTIALS_DIRECTORY/{target}/{name}" if cred_dir else ""
            loaded = ("" if target == "x" else  # bridge.service loads x's folder; another needs a drop-in
                      f" and add LoadCredential={target}:/etc/bridge/credentials/{target} with "
                      "`systemctl edit bridge`")
            problems.append(
                f"targets.{target}: missing secret {name}: set {credential_env_var(target, name)}{hint}"
                f"; for the systemd service, write it to /etc/bridge/credentials/{target}/{name}{loaded} "
                "(or set dry_run = true to run without posting)"
            )
    return found


def _is_file(path: Path, target: str, problems: list[str]) -> bool:
    """Whether `path` is a file; a folder this process may not look into is a problem named once
    (systemd gives the credentials folder to the service's own processes only)."""
    try:
        return path.is_file()
    except PermissionError:
        problem = (f"targets.{target}: cannot look for secret files in {path.parent}: permission denied "
                   "(run this as the service user, e.g. `sudo bridge ...`, or give the secret in the environment)")
        if problem not in problems:
            problems.append(problem)
        return False
