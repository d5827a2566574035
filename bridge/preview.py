"""`bridge preview SOURCE`: read a source now and show, story by story, what each target would get.

How an operator checks a new source, preset or template before going live. `bridge run --dry-run`
(bridge.rehearsal) reads and composes with the same helpers. It changes no state:
it never opens the database, and publishers are built as for a dry run (no credentials, no posts).
Story pages are read for every story shown (politely, see sources/polite.py), since a poll would
read them for each new story.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from bridge.config import Config, SourceConfig
from bridge.errors import PostRejected
from bridge.model import Item
from bridge.pipeline import compose_post, filter_reason, length_rule_for_post
from bridge.publish import Publisher, build_publisher
from bridge.sources.fetch import make_client
from bridge.sources.polite import HostPacer, PoliteFetcher
from bridge.sources.read import add_story_pages, read_source


@dataclass(frozen=True)
class PreviewPost:
    target: str
    text: str
    length: int
    """Measured with the target network's own rule (X: weighted, a link counts 23)."""
    limit: int
    error: str | None = None
    filtered: str | None = None
    """Which keyword filter (the source's or the target's) takes this story out for this target."""


@dataclass(frozen=True)
class PreviewStory:
    item: Item
    posts: list[PreviewPost] = field(default_factory=list)


@dataclass(frozen=True)
class Preview:
    source: SourceConfig
    read_as: str
    stories: list[PreviewStory]


def preview(config: Config, source: SourceConfig, *, story_pages: bool = True,
            pacer: HostPacer | None = None) -> Preview:
    """Read `source` now and compose each story for each of its targets. Raises FetchError."""
    with polite_fetcher(config, pacer) as fetcher:
        read = read_source(fetcher, source)
        items = read.items
        if story_pages:
            items = add_story_pages(fetcher, source, read, {item.key for item in items})
    with dry_run_publishers(config, source.targets) as publishers:
        stories = [PreviewStory(item, [_filtered_or_post(config, source, name, publisher, item)
                                       for name, publisher in publishers.items()]) for item in items]
    return Preview(source, read.read_as, stories)


@contextmanager
def polite_fetcher(config: Config, pacer: HostPacer | None = None) -> Iterator[PoliteFetcher]:
    """A fetcher with the configured limits and polite pacing, its HTTP client closed afterwards."""
    from bridge.service import fetch_limits

    limits = fetch_limits(config)
    client = make_client(limits)
    try:
        yield PoliteFetcher(client, limits, pacer or HostPacer(config.bridge.page_delay.total_seconds()))
    finally:
        client.close()


@contextmanager
def dry_run_publishers(config: Config, names: Iterable[str]) -> Iterator[dict[str, Publisher]]:
    """Publishers built as for a dry run (no credentials, no posts): each network's length rules."""
    timeout = config.bridge.publish_timeout.total_seconds()
    publishers = {name: build_publisher(config.targets[name], dry_run=True, timeout=timeout)
                  for name in names if name in config.targets}
    try:
        yield publishers
    finally:
        for publisher in publishers.values():
            publisher.close()


def preview_post(config: Config, source: SourceConfig | None, name: str, publisher: Publisher, item: Item,
                 *, source_name: str | None = None) -> PreviewPost:
    """The post `name` would get for `item`, measured by its network's rule, or why it cannot be
    posted. `source` is None for a queued story whose source was removed (give `source_name`)."""
    rule = length_rule_for_post(source, config.targets[name], publisher, item)
    try:  # the same call the delivery stage makes, so the text shown is the text posted
        post = compose_post(source, config.targets[name], item, publisher, source_name=source_name)
    except PostRejected as exc:
        return PreviewPost(name, "", 0, rule.max_length, error=exc.message)
    return PreviewPost(name, post.text, rule.measure(post.text), rule.max_length)


def _filtered_or_post(config: Config, source: SourceConfig, name: str, publisher: Publisher,
                      item: Item) -> PreviewPost:
    """The filter that takes `item` out for target `name` (as a poll would judge it), else its post."""
    reason = filter_reason(source, config.targets[name], item)
    if reason:
        return PreviewPost(name, "", 0, publisher.length_rule.max_length, filtered=reason)
    return preview_post(config, source, name, publisher, item)


def render(result: Preview) -> str:
    source = result.source
    zone = ZoneInfo(source.timezone)
    lines = [f"source {source.name}: {source.url}, read as {result.read_as}; "
             f"{len(result.stories)} stories (preview only: nothing is stored or posted)"]
    for number, story in enumerate(result.stories, 1):
        item = story.item
        date = item.published.astimezone(zone).isoformat() if item.published else "unknown"
        lines += ["", f"[{number}] key:   {item.key}",
                  f"    title: {item.title}",
                  f"    url:   {item.link or '-'}",
                  f"    date:  {date}",
                  f"    image: {item.image_url or '-'}"]
        for post in story.posts:
            if post.filtered:
                lines.append(f"    post to {post.target}: NOT POSTED, {post.filtered}")
            elif post.error:
                lines.append(f"    post to {post.target}: CANNOT POST: {post.error}")
            else:
                lines.append(f"    post to {post.target} ({post.length}/{post.limit}): {post.text}")
    return "\n".join(lines)
