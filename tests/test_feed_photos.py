"""A photo for every story: a feed item without an image gets its page's og:image, read once, politely."""

from __future__ import annotations

from bridge.pipeline import poll
from bridge.service import close
from tests.helpers import antara_feed, antara_item, make_config, runtime

PAGE = """<!doctype html><html><head><title>{title}</title>
<meta property="og:image" content="/foto/{n}.jpg"></head><body><h1>{title}</h1></body></html>"""


def story(feed_server, n: int, image: bool = False) -> dict:
    item = antara_item(n, image=feed_server.url(f"/feed-foto/{n}.jpg") if image else None)
    item["link"] = feed_server.url(f"/berita/{n}")
    feed_server.add(f"/berita/{n}", PAGE.format(title=item["title"], n=n), content_type="text/html; charset=utf-8")
    return item


def images_by_title(rt) -> dict[str, str | None]:
    return {d.item.title: d.item.image_url for d in rt.repo.due_deliveries("x", rt.clock(), limit=100)}


def test_a_feed_story_without_a_photo_gets_its_pages_og_image(feed_server, x_api, tmp_path, clock):
    """Stories 1 and 2 come without a photo and get their page's og:image (made absolute); story 3
    keeps the feed's own and its page is never asked for; the politeness delay is kept between pages."""
    items = [story(feed_server, 1), story(feed_server, 2), story(feed_server, 3, image=True)]
    feed_server.add("/rss.xml", antara_feed(items))
    rt = runtime(make_config({"a": feed_server.url("/rss.xml")}, x_base=x_api.base_url, bridge={"first_run": "all"}),
                 tmp_path, clock)
    try:
        poll(rt, rt.config.sources[0])
        images = images_by_title(rt)
        assert images[items[0]["title"]] == feed_server.url("/foto/1.jpg")
        assert images[items[1]["title"]] == feed_server.url("/foto/2.jpg")
        assert images[items[2]["title"]] == feed_server.url("/feed-foto/3.jpg")
        assert feed_server.requests_to("/berita/3") == []
        assert rt.pacer._sleep.slept == [2.0, 2.0]  # each page waited page_delay after the request before
        feed_server.edit("/rss.xml", body=antara_feed([*items, story(feed_server, 4)]))
        clock.advance(minutes=10)
        poll(rt, rt.config.sources[0], force=True)
        assert [len(feed_server.requests_to(f"/berita/{n}")) for n in (1, 2, 4)] == [1, 1, 1]  # known: never again
    finally:
        close(rt)


def test_a_page_that_fails_costs_only_the_photo(feed_server, x_api, tmp_path, clock):
    items = [story(feed_server, 1)]
    feed_server.add_status("/berita/1", 500)
    feed_server.add("/rss.xml", antara_feed(items))
    rt = runtime(make_config({"a": feed_server.url("/rss.xml")}, x_base=x_api.base_url, bridge={"first_run": "all"}),
                 tmp_path, clock)
    try:
        assert poll(rt, rt.config.sources[0]).status == "ok"
        assert images_by_title(rt) == {items[0]["title"]: None}
    finally:
        close(rt)


def test_no_page_is_read_when_told_not_to_or_for_a_burst(feed_server, x_api, tmp_path, clock):
    """story_pages = false, images = false, and a poll bringing more than burst_limit new stories
    read no story page."""
    for n, source in enumerate(({"story_pages": False}, {"images": False}, {"burst_limit": 2})):
        items = [story(feed_server, 10 * n + k) for k in range(3)]
        feed_server.add(f"/rss{n}.xml", antara_feed(items))
        rt = runtime(make_config({"a": feed_server.url(f"/rss{n}.xml")}, x_base=x_api.base_url,
                                 bridge={"first_run": "all"}, source=source), tmp_path / str(n), clock)
        try:
            poll(rt, rt.config.sources[0])
            assert not [r for r in feed_server.request_log if r.path.startswith("/berita/")], source
        finally:
            close(rt)


def test_no_page_is_read_for_a_photo_no_target_would_post(feed_server, x_api, tmp_path, clock):
    """A feed's story pages are read only for a photo: when every target of the source has
    `images = false`, none is read; when one of two still takes photos, they are."""
    for n, photos_of_second in enumerate((False, True)):
        items = [story(feed_server, 100 + 10 * n + k) for k in range(2)]
        feed_server.add(f"/rss-t{n}.xml", antara_feed(items))
        raw = make_config({"a": feed_server.url(f"/rss-t{n}.xml")}, x_base=x_api.base_url, dry_run=True,
                          bridge={"first_run": "all"}, target={"images": False})
        raw["targets"]["x2"] = dict(raw["targets"]["x"], images=photos_of_second)
        raw["sources"][0]["targets"] = ["x", "x2"]
        rt = runtime(raw, tmp_path / f"t{n}", clock)
        try:
            assert poll(rt, rt.config.sources[0]).status == "ok"
            pages = [r for r in feed_server.request_log if r.path in {f"/berita/{100 + 10 * n + k}" for k in range(2)}]
            assert len(pages) == (2 if photos_of_second else 0), (photos_of_second, pages)
        finally:
            close(rt)
