"""Every default of settings.toml, in one place: the README and settings.toml's comments quote these."""

from __future__ import annotations

from pathlib import Path

DEFAULT_DATABASE = "sqlite:///bridge.db"
DEFAULT_POLL_INTERVAL = "5m"
DEFAULT_FIRST_RUN = "skip"
DEFAULT_TIMEZONE = "Asia/Jakarta"
DEFAULT_LOG_LEVEL = "info"
DEFAULT_DELIVERY_INTERVAL = "30s"
DEFAULT_CONNECT_TIMEOUT = "10s"
DEFAULT_FETCH_TIMEOUT = "20s"
DEFAULT_MAX_FEED_BYTES = 10 * 1024 * 1024
DEFAULT_PUBLISH_TIMEOUT = "20s"
DEFAULT_MAX_ATTEMPTS = 8
DEFAULT_RETRY_BACKOFF_MAX = "1h"
DEFAULT_MAX_PER_DAY = 50
DEFAULT_TEMPLATE = "{title} {url} {hashtags}"
DEFAULT_PRICE_PER_POST = 0.015
"""USD, X's pay-per-use price of a post without a link (2026-04); operators change it when X does."""
DEFAULT_PRICE_PER_LINK_POST = 0.20
"""USD, X's price of a post that contains a URL (2026-04)."""
DEFAULT_PRICE_PER_MEDIA_METADATA = 0.005
"""USD, X's price of one POST /2/media/metadata (a photo's alt text)."""
DEFAULT_PRICE_PER_VERIFY = 0.010
"""USD, X's price of one GET /2/users/me (`bridge check` verifying the credentials)."""
DEFAULT_SOURCE_KIND = "auto"
DEFAULT_PAGE_DELAY = "2s"
"""Between two follow-up requests (story pages, next listing pages) to one host: see sources/polite.py."""
DEFAULT_POLL_CONCURRENCY = 16
"""Polls (fetch, read, store) in flight at once; still one request at a time per host (sources/polite.py)."""
MAX_POLL_CONCURRENCY = 256
"""More than this many fetches at once would only queue on two cores and a few file descriptors."""
DEFAULT_BURST_LIMIT = 10
"""A poll of a known source bringing more new stories than this is held (a site move, a CMS change)."""
DEFAULT_MAX_PAGES = 1
"""Listing pages read per poll. Polling every few minutes, page 1 holds everything new; a first run
only remembers what is there, so reading older pages would cost requests and post nothing."""
MAX_PAGES_LIMIT = 10
DEFAULT_KEEP = "400d"
"""Stories first seen longer ago than this lose their text (keys and links stay, so none is posted
again): a year of `bridge status` and logs to look back on, plus a month."""
KEEP_FOREVER = "forever"
MIN_KEEP = "1d"
"""A shorter keep would prune the text of a story whose posts are still being settled today."""
DEFAULT_HEALTH_LISTEN = None
"""No health/metrics endpoint unless [bridge] health_listen names an address."""
DEFAULT_LANGUAGE = "id"
"""The PR office's page speaks Indonesian unless [bridge] language = "en"."""
LANGUAGES = ("id", "en")
DEFAULT_GRAPH_API_VERSION = "v25.0"
"""Meta's Graph API version for Facebook Pages and WhatsApp (each version lives about two years)."""

CONFIG_SEARCH_PATH = (Path("settings.toml"), Path("/etc/bridge/settings.toml"))
LOG_LEVELS = ("debug", "info", "warning", "error")
SOURCE_KINDS = ("feed", "html", "sitemap", "auto")
