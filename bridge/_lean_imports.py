"""Keeps imports the bridge never uses out of its processes (memory is the daemon's budget).

httpx's package imports its command-line client (`httpx._main`) when it can: click and pygments'
lexer tables, ~5 MB and ~50 ms in every process that fetches, for a CLI the bridge never runs (and
that fails anyway without rich). A finder at the front of sys.meta_path answers that one module
with an ImportError, which httpx expects (it then defines a stub `httpx.main`).
"""

from __future__ import annotations

import sys

_UNUSED = frozenset({"httpx._main"})


class _Unused:  # a meta path finder; plain, as importing importlib.abc costs ~16 ms
    def find_spec(self, name, path=None, target=None):
        if name in _UNUSED:
            raise ImportError(f"{name} is not used by the bridge (bridge/_lean_imports.py)", name=name)
        return None


def install() -> None:
    if not any(isinstance(finder, _Unused) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Unused())
