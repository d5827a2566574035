"""Sources: fetch bytes over HTTP within limits (fetch.py), read them into Items (feed.py, ...)."""
