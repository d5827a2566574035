"""What the two pipeline functions share: the runtime they work with (built by the service,
replaced on reload) and small helpers."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Mapping

from bridge.clock import Clock, utc_now
from bridge.config import Config, SourceConfig
from bridge.model import Delivery
from bridge.publish import Publisher
from bridge.sources.fetch import FetchClient, FetchLimits
from bridge.sources.polite import HostPacer
from bridge.sources.workers import FeedParsers
from bridge.store.repo import Repository


@dataclass
class Runtime:
    """Everything the two pipeline functions need; built by the service, replaced on reload."""

    config: Config
    repo: Repository
    http: FetchClient
    fetch_limits: FetchLimits
    publishers: Mapping[str, Publisher]
    clock: Clock = utc_now
    stopping: threading.Event = field(default_factory=threading.Event)
    delivery_lock: threading.Lock = field(default_factory=threading.Lock)
    logged_holds: dict = field(default_factory=dict)
    """Per target, the kind of hold last logged, so a hold is logged when it starts, not every round."""
    pacer: HostPacer | None = None
    """One request at a time per host, spaced by [bridge] page_delay; shared by every source's poll."""
    parsers: FeedParsers | None = None
    """Worker processes that parse feeds (`bridge run`); None: feeds are parsed in the polling thread."""
    replica_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    """This process's name in the replicas table and on the deliveries it claims (kept by a reload)."""

    def __post_init__(self) -> None:
        if self.pacer is None:
            self.pacer = HostPacer(self.config.bridge.page_delay.total_seconds())


CurrentRuntime = Callable[[], Runtime]
"""The daemon's way to hand a long job (a delivery round) the runtime current at each step."""


def source_of(rt: Runtime, delivery: Delivery) -> SourceConfig | None:
    try:
        return rt.config.source(delivery.source)
    except KeyError:  # the source was removed from settings.toml; its queued posts still go out
        return None


def ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
