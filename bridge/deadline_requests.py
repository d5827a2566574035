"""The requests half of bridge/deadline.py: a requests HTTPAdapter whose calls obey the thread's
total_deadline (tweepy for X, Mastodon.py). Its own module because requests and urllib3 cost
~15 MB and most of a second's imports that only those publishers need (see deadline.py for how
the deadline works)."""

from __future__ import annotations

from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError

from bridge.deadline import CONNECTING, READING, SENDING, WAITING, Deadline, current_deadline


# --- requests: connections watched by the deadline's timer ------------------------------------


class _WatchedConnection:
    """Mixed into urllib3's connections: each registers with the thread's deadline as it is used."""

    def connect(self) -> None:
        deadline = current_deadline()
        if deadline is not None:
            if deadline.expired:
                raise ConnectTimeoutError(self, deadline.message(CONNECTING))
            deadline.phase = CONNECTING
            deadline.watch(self)  # the timer finds self.sock once connect() has set it
        super().connect()
        if deadline is not None:
            deadline.phase = SENDING  # what comes next, whether connect() ran inside request() or before it

    def request(self, *args: Any, **kwargs: Any) -> None:
        deadline = current_deadline()
        if deadline is not None:
            deadline.phase = SENDING
            deadline.watch(self)  # a kept-alive connection skips connect()
        super().request(*args, **kwargs)

    def getresponse(self, *args: Any, **kwargs: Any):
        deadline = current_deadline()
        if deadline is not None:
            deadline.phase = WAITING
            deadline.watch(self)
        response = super().getresponse(*args, **kwargs)
        if deadline is not None:
            deadline.phase = READING
        return response


class _HTTPConnection(_WatchedConnection, HTTPConnection):
    pass


class _HTTPSConnection(_WatchedConnection, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class DeadlineAdapter(HTTPAdapter):
    """A requests HTTPAdapter (same arguments) whose calls obey the thread's total_deadline."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any):
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = _POOLS
        return manager

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout=None,
             verify=True, cert=None, proxies=None) -> requests.Response:
        deadline = current_deadline()
        if deadline is None:
            return super().send(request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies)
        if deadline.expired:
            raise requests.exceptions.ConnectTimeout(deadline.message(CONNECTING), request=request)
        try:
            response = super().send(request, stream=stream, timeout=_clamped(timeout, deadline.remaining()),
                                    verify=verify, cert=cert, proxies=proxies)
            if not stream:
                response.content  # read here, where a cut socket is recognised as the deadline's doing
        except requests.RequestException as exc:
            if deadline.expired:
                raise _timeout_error(deadline, request) from exc
            raise
        if deadline.expired and not stream:
            # A body cut short by the shutdown can look complete (no Content-Length): never trust it.
            raise _timeout_error(deadline, request)
        return response


def _timeout_error(deadline: Deadline, request) -> requests.exceptions.Timeout:
    phase = deadline.cut_while or deadline.phase
    kind = requests.exceptions.ConnectTimeout if phase == CONNECTING else requests.exceptions.ReadTimeout
    return kind(deadline.message(), request=request)


def _clamped(timeout, left: float):
    # requests takes a number, a (connect, read) pair or a urllib3 Timeout; None means "forever".
    if isinstance(timeout, tuple):
        connect, read = timeout
        return (left if connect is None else min(connect, left), left if read is None else min(read, left))
    if timeout is None or isinstance(timeout, (int, float)):
        value = left if timeout is None else min(timeout, left)
        return (value, value)
    return timeout  # a urllib3 Timeout object: kept; the timer still enforces the deadline
