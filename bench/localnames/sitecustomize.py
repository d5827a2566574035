"""Loaded by every Python process the cycle benchmark starts (it puts this folder on PYTHONPATH):
the names of the benchmark's sites, s00001.feeds.test and so on, resolve to 127.0.0.1.

Why names and not 127.0.0.1 itself: the bridge reads one site at a time per host name, so a
thousand sources on one name would measure that politeness rule, not the poll cycle. Real sources
live on many hosts; here they are many names for the one local origin. Any other name is looked
up as usual (nothing here can reach another address)."""

import socket

SUFFIX = ".feeds.test"
_real_getaddrinfo = socket.getaddrinfo


def _getaddrinfo(host, *args, **kwargs):
    name = host.decode() if isinstance(host, bytes) else host
    if isinstance(name, str) and name.lower().endswith(SUFFIX):
        host = "127.0.0.1"
    return _real_getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _getaddrinfo
