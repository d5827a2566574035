"""Sources: fetch, then read (feed | html | sitemap). See read.py for how a source's kind is decided.

Nothing is imported here: settings.toml's checks import presets.py, and every command pays for
what this package's __init__ loads (feedparser is loaded by feed.py, when a feed is read)."""
