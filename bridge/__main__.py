"""Allows `python -m bridge`."""

from bridge.cli import main

# Guarded: the feed parsers' worker processes (spawned) import the main module again.
if __name__ == "__main__":
    raise SystemExit(main())
