"""bridge: posts each new story from news sites and feeds to social networks, once."""

from bridge import _lean_imports, _pkg_resources

__version__ = "0.1.0"

_pkg_resources.install()  # twitter-text-parser needs pkg_resources, which new Pythons lack
_lean_imports.install()  # httpx's unused CLI (click, pygments) stays out of every process
