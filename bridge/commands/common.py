"""What every command shares: exit codes, loading settings.toml as the command needs it, naming a source."""

from __future__ import annotations

from bridge.errors import BridgeError, ConfigError


EXIT_OK = 0
EXIT_PROBLEM = 1
"""`bridge check` found a problem (unreachable credentials, ...), or retry/skip found no such delivery."""
EXIT_CONFIG = 2
"""settings.toml is invalid (also argparse's code for bad arguments)."""
EXIT_DATABASE = 3
"""The database cannot be opened or upgraded, or (`bridge run`) another bridge is running on it."""

EXIT_INTERRUPTED = 130
"""Ctrl-C (SIGINT): 128 + 2, as a shell reports it."""


def load_settings(args):
    from bridge.config import find_config_path, load_config

    # Commands that never post read no credentials, but still report the file's dry_run truly.
    posts = args.command in ("run", "check")
    dry_run = True if getattr(args, "dry_run", False) else None
    return load_config(find_config_path(args.config), dry_run=dry_run, secrets=posts)


def source_named(config, name: str):
    try:
        return config.source(name)
    except KeyError:
        from bridge.config.values import did_you_mean

        names = [s.name for s in config.sources]
        hint = did_you_mean(name, names)
        raise ConfigError([f"no source named {name!r}" + (f"; {hint}" if hint else "")
                           + f" (sources: {', '.join(names)})"]) from None


def enabled_source(config, name: str):
    source = source_named(config, name)
    if not source.enabled:
        raise BridgeError(f"source {name!r} is disabled (enabled = false in settings.toml): it is not read")
    return source


def duration_text(delta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
