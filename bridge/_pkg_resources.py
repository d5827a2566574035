"""The one piece of `pkg_resources` that twitter-text-parser 3.0 uses, for when setuptools is absent.

twitter_text/regexp/emoji.py runs `pkg_resources.resource_string(__name__, "emoji-test.txt")` at
import. `pkg_resources` ships with setuptools, which a Python 3.12 venv no longer installs and
setuptools 81+ no longer contains: on Ubuntu 24.04 the daemon died at start with "No module named
'pkg_resources'" (seen in systemd/nspawn-check.sh with SUITE=noble). twitter-text-parser 3.0.0 is
the last release, so we supply that one function rather than pin an old setuptools.

The finder sits at the end of sys.meta_path: a real pkg_resources, where installed, is found first
by anyone else. twitter-text is imported inside `light()`, which lends it this stand-in even where
the real one is installed: that one costs ~10 MB and ~80 ms of imports for one function.
"""

from __future__ import annotations

import importlib.machinery
import sys
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Iterator


def resource_string(module_name: str, resource: str) -> bytes:
    """The bytes of `resource` beside module `module_name` (in it, for a package), as pkg_resources does."""
    module = sys.modules[module_name]
    paths = getattr(module, "__path__", None)
    folder = Path(list(paths)[0]) if paths else Path(module.__file__).parent
    return (folder / resource).read_bytes()


class _Finder:  # a meta path finder and its loader; plain, as importing importlib.abc costs ~16 ms
    def find_spec(self, name, path=None, target=None):
        if name != "pkg_resources":
            return None
        return importlib.machinery.ModuleSpec(name, self)

    def create_module(self, spec):
        return None  # the default module object

    def exec_module(self, module: ModuleType) -> None:
        module.resource_string = resource_string
        module.__doc__ = "bridge's stand-in for pkg_resources (see bridge/_pkg_resources.py)"


def install() -> None:
    if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        sys.meta_path.append(_Finder())


@contextmanager
def light() -> Iterator[None]:
    """Import twitter-text within this: its `import pkg_resources` gets the stand-in, which is
    taken out of sys.modules again afterwards (anything else importing pkg_resources later gets
    the real one, where installed)."""
    if "pkg_resources" in sys.modules or "twitter_text.regexp.emoji" in sys.modules:
        yield
        _drop_emoji_build_data()
        return
    module = ModuleType("pkg_resources", "bridge's stand-in for pkg_resources (see bridge/_pkg_resources.py)")
    module.resource_string = resource_string
    sys.modules["pkg_resources"] = module
    try:
        yield
    finally:
        if sys.modules.get("pkg_resources") is module:
            del sys.modules["pkg_resources"]
    _drop_emoji_build_data()


_EMOJI_BUILD_DATA = ("emoji_raw", "emoji_list", "emoji_dict", "multi_codepoint_emoji_joined", "single_codepoint_emoji",
                     "single_codepoint_emoji_int", "single_codepoint_emoji_ranges", "single_codepoint_emoji_raw")
"""What twitter_text/regexp/emoji.py builds its one regex from at import and keeps as globals:
emoji-test.txt decoded (1.5 MB as str), ~4,700 namedtuples and a dict of them. Nothing in
twitter-text 3.0 reads them after the import (only `emoji`, the compiled regex, is used)."""


def _drop_emoji_build_data() -> None:
    """~1.4 MB of the daemon's memory, for a process that counts X posts all its life."""
    emoji = sys.modules.get("twitter_text.regexp.emoji")
    if emoji is not None and hasattr(emoji, "emoji"):
        for name in _EMOJI_BUILD_DATA:
            emoji.__dict__.pop(name, None)
