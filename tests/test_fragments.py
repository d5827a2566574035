"""A link's #fragment: the same story when only the anchor changed, distinct stories when the
fragment tells items apart.

The rule (urls.fragment_free, Repository.known_keys): a story key keeps its fragment, so items of one
listing that differ only by it (page#1, page#2) are distinct. A new key that differs from a key this
source already stored only by its fragment (added, dropped or changed: `#comments`, `#utm_anchor`) is
that stored story when the title is the same too, unless this very read lists several stories on the
fragment-free link (then the fragment is what tells them apart)."""

from __future__ import annotations

from bridge.pipeline import deliver_due
from tests.helpers import antara_item
from tests.test_networks import bridge, networks  # noqa: F401 (fixtures)


def story(n: int, link: str | None = None, title: str | None = None) -> dict:
    item = antara_item(n, title=title)
    if link:
        item["link"] = link
    return item


def start(bridge):
    bridge.start(only="telegram")
    from bridge.pipeline import poll

    poll(bridge.rt, bridge.rt.config.sources[0], force=True)  # first run: remembers the old story


def tweets(networks) -> list[str]:
    return networks["telegram"].posts()


def test_an_anchor_added_to_a_known_story_posts_nothing(bridge, networks):
    """The site starts linking its stories with `#utm_anchor` / `#comments`: no story goes out again."""
    start(bridge)
    first = story(4)
    bridge.publish(first)
    deliver_due(bridge.rt)
    assert len(tweets(networks)) == 1
    for anchor in ("#utm_anchor", "#comments"):
        bridge.publish(story(4, link=first["link"] + anchor))
        deliver_due(bridge.rt)
    bridge.publish(first)  # and back without one
    deliver_due(bridge.rt)
    assert len(tweets(networks)) == 1


def test_an_anchor_dropped_from_a_known_story_posts_nothing(bridge, networks):
    """A story first seen as `/a#main` and later as `/a` is the same story."""
    start(bridge)
    link = antara_item(4)["link"]
    bridge.publish(story(4, link=link + "#main"))
    bridge.publish(story(4, link=link))
    deliver_due(bridge.rt)
    assert len(tweets(networks)) == 1


def test_a_new_item_on_the_same_page_with_another_title_posts(bridge, networks):
    """page#1 read in one poll and page#2 (another story) in the next are two stories: both post."""
    start(bridge)
    page = "https://www.antaranews.com/berita/4000004/langsung"
    bridge.publish(story(4, link=page + "#1", title="Pembaruan pertama"))
    bridge.publish(story(3, link=page + "#2", title="Pembaruan kedua"))
    deliver_due(bridge.rt)
    deliver_due(bridge.rt)
    assert len(tweets(networks)) == 2


def test_same_titled_items_told_apart_by_their_fragment_all_post(bridge, networks):
    """A listing with several items on one page, told apart only by the fragment and sharing a title,
    posts each, even when one of them was stored before."""
    start(bridge)
    page = "https://www.antaranews.com/berita/4000004/langsung"
    bridge.publish(story(4, link=page + "#1", title="Siaran langsung"))
    deliver_due(bridge.rt)
    bridge.publish(story(4, link=page + "#1", title="Siaran langsung"),
                   story(3, link=page + "#2", title="Siaran langsung"),
                   story(2, link=page + "#3", title="Siaran langsung"))
    for _ in range(3):
        deliver_due(bridge.rt)
        bridge.clock.advance(minutes=5)
    assert len(tweets(networks)) == 3


def test_a_guid_that_is_not_a_url_stays_exact(bridge, networks):
    """Two stories whose guids are not URLs are told apart by the guid as written, '#' included."""
    start(bridge)
    a, b = story(4, title="Sama"), story(3, title="Sama")
    a["guid"], b["guid"] = "tag:antaranews.com,2026:berita#4", "tag:antaranews.com,2026:berita#3"
    bridge.publish(a)
    bridge.publish(b)
    deliver_due(bridge.rt)
    bridge.clock.advance(minutes=5)
    deliver_due(bridge.rt)
    assert len(tweets(networks)) == 2
