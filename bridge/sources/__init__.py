"""Sources: fetch, then read (feed | html | sitemap). See read.py for how a source's kind is decided."""

from bridge.sources.dates import feed_date_hook
from bridge.sources.feed import register_date_parser

# Feeds from Indonesian sites write dates feedparser cannot read or misreads ("Sen, 14 Okt 2024
# 10:00:00 WIB", "26-07-2022 12:01:01"): ours is asked first, wherever the feed reader is used.
register_date_parser(feed_date_hook)
