"""The post one target gets for one story: composed (what `bridge preview` shows too) and frozen
at its first attempt, so every later attempt sends the same bytes."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from bridge.compose import LengthRule, compose
from bridge.config import Config, SourceConfig, TargetConfig
from bridge.filters import rejection
from bridge.hashtags import hashtags_for
from bridge.model import Delivery, FrozenPost, Item, Post
from bridge.pacing import post_cost
from bridge.pipeline.runtime import Runtime, source_of
from bridge.publish import Publisher


def filter_reason(source: SourceConfig | None, target: TargetConfig, item: Item) -> str | None:
    """Why `target` must not get this story (the source's keyword filters, then the target's on top),
    or None. `source` is None for a story whose source was removed: only the target's rules apply."""
    return rejection(item, source.filters if source else None, target.filters)


def filtered_by_target(config: Config, source: SourceConfig, items: Sequence[Item],
                       keys: Collection[str]) -> dict[str, dict[str, str]]:
    """For each story of `keys` that some of the source's targets refuse: target -> the reason."""
    found: dict[str, dict[str, str]] = {}
    for item in items:
        if item.key not in keys:
            continue
        for name in source.targets:
            target = config.targets.get(name)
            reason = filter_reason(source, target, item) if target else None
            if reason:
                found.setdefault(item.key, {})[name] = reason
    return found


def wants_photo(source: SourceConfig | None, target: TargetConfig, publisher: Publisher, item: Item) -> bool:
    """The story has a photo, neither the source nor the target turned photos off, and the network
    takes them."""
    return (bool(item.image_url) and target.images and (source is None or source.images)
            and getattr(publisher, "takes_photos", True))


def photos_wanted(config: Config, source: SourceConfig, publishers: Mapping[str, Publisher]) -> bool:
    """Some target of the source would post a story's photo: else a feed's story pages, read only
    for a photo, are not read at all (requests to the ministry's site that nothing would use)."""
    if not source.images:
        return False
    return any(config.targets[name].images and getattr(publishers.get(name), "takes_photos", True)
               for name in source.targets if name in config.targets)


def length_rule_for_post(source: SourceConfig | None, target: TargetConfig, publisher: Publisher,
                         item: Item) -> LengthRule:
    """The network's rule, or its shorter one for posts with a photo (Telegram's caption)."""
    photo_rule = getattr(publisher, "photo_length_rule", None)
    return photo_rule if photo_rule and wants_photo(source, target, publisher, item) else publisher.length_rule


def compose_post(source: SourceConfig | None, target: TargetConfig, item: Item, publisher: Publisher,
                 source_name: str | None = None) -> Post:
    """The post one target gets for one story: its template, the source's hashtags, the network's
    length rule (a shorter one when the post carries a photo, like Telegram's caption). `bridge
    preview` calls this too, so what it shows is what is posted."""
    rule = length_rule_for_post(source, target, publisher, item)
    tags = hashtags_for(source.hashtags, item.categories, source.category_hashtags) if source else []
    return compose(Config.template_for(source, target), item, source=source_name or source.name,
                   rule=rule, hashtags=tags)


def freeze_post(rt: Runtime, publisher: Publisher, delivery: Delivery) -> FrozenPost:
    """Compose the post a delivery will send, once: from now on its text, photo and cost are fixed."""
    source = source_of(rt, delivery)
    target = rt.config.targets[delivery.target]
    post = compose_post(source, target, delivery.item, publisher, source_name=delivery.source)
    image_url = post.image_url if wants_photo(source, target, publisher, delivery.item) else None
    return FrozenPost(text=post.text, image_url=image_url, alt_text=post.title if image_url else "",
                      cost=post_cost(target, post.text))


def post_of(delivery: Delivery, frozen: FrozenPost) -> Post:
    """The frozen post as a publisher takes it; the story's link, title and summary do not change."""
    item = delivery.item
    return Post(text=frozen.text, link=item.link, title=item.title, summary=item.summary,
                image_url=frozen.image_url, recipient=delivery.recipient or None)


def idempotency_key(rt: Runtime, delivery: Delivery) -> str:
    """One key per delivery, unique across installations: a recreated database never reuses one."""
    return f"bridge-{rt.repo.installation_id()}-{delivery.id}"
