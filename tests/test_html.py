"""The HTML listing and story-page readers on pages shaped like kemenpora.go.id's."""

from __future__ import annotations

from datetime import datetime

import pytest

from bridge.sources.html import check_selector, parse_html, read_listing, story_key
from bridge.sources.pages import StoryPage, read_story_page, with_page
from bridge.sources.presets import KEMENPORA, Layout
from bridge.model import Item
from tests.sites import FIXTURES, FOREIGN_IDS, PAGE_1

BASE = "https://www.kemenpora.go.id"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_text(encoding="utf-8").replace("{BASE}", BASE).encode()


def listing(name: str = "berita.html", layout: Layout = KEMENPORA):
    return read_listing(parse_html(fixture(name)), url=BASE + "/berita", layout=layout, tz="Asia/Jakarta")


class TestListing:
    def test_every_main_row_read_with_title_url_and_date(self):
        """Each row of the main block gives its id key, title, absolute link and +07:00 date, in page order."""
        page = listing()
        assert [i.key for i in page.items] == [f"kemenpora:detail:{n}" for n in PAGE_1]
        for item, (path, title, date) in zip(page.items, PAGE_1.values()):
            assert (item.title, item.link, item.published) == (title, BASE + path, datetime.fromisoformat(date))

    def test_rows_outside_the_main_block_are_ignored(self):
        """The popular strip and the sidebar's block repeat old stories: none of them is read."""
        keys = {i.key for i in listing().items}
        assert not keys & {f"kemenpora:detail:{n}" for n in FOREIGN_IDS}

    def test_relative_link_and_missing_or_lazy_images(self):
        """A relative href resolves against the page; a row without a picture has none; lazy images use data-src."""
        items = {i.key: i for i in listing().items}
        assert items["kemenpora:detail:12344"].link == BASE + PAGE_1[12344][0]
        assert items["kemenpora:detail:12344"].image_url is None
        assert items["kemenpora:detail:12343"].image_url.endswith("/12343/thumb_sepakbola.jpg")
        assert items["kemenpora:detail:12345"].image_url.startswith("https://image.kemenpora.go.id/images/content/")

    def test_row_teaser_is_the_summary(self):
        """The preset reads each row's .newsrow__summary teaser as the story's summary (trimmed);
        a row without one has none."""
        items = {i.key: i for i in listing().items}
        assert items["kemenpora:detail:12345"].summary == (
            "Menteri Pemuda dan Olahraga membuka Kejuaraan Nasional Pencak Silat Antarpelajar 2025 di Jakarta...")
        assert items["kemenpora:detail:12344"].summary.startswith("Deputi Bidang Pemberdayaan Pemuda menggelar")
        assert items["kemenpora:detail:12343"].summary == ""

    def test_row_without_link_is_not_a_story(self):
        """An advert in a row's shape (no link) is counted as a row but gives no story."""
        page = listing()
        assert page.rows == 5 and len(page.items) == 4

    def test_dates_without_time_are_reported(self):
        """Listing dates are days only, so every story is marked for a precise time from its page."""
        page = listing()
        assert page.day_only == {i.key for i in page.items}

    def test_next_page_link(self):
        """The paging block's rel=next link is the next page's absolute URL."""
        assert listing().next_url == BASE + "/berita/2"
        assert listing("berita_2.html").next_url == BASE + "/berita/3"

    def test_redesigned_page_has_no_rows(self):
        """After a redesign the preset finds no rows, not the sidebar's stray one."""
        page = listing("redesigned.html")
        assert page.rows == 0 and page.items == []

    def test_custom_selectors_without_preset(self):
        """Plain selectors read another layout: title from the link's text, date from a datetime attribute."""
        layout = Layout(item="article.news-card", link="h3 a", date="time")
        [item] = listing("redesigned.html", layout).items
        assert item.key == "kemenpora.go.id/detail/12346/berita-setelah-desain-ulang"
        assert item.title == "Berita setelah desain ulang"
        assert item.published == datetime.fromisoformat("2025-12-02T08:00:00+07:00")


class TestIdentity:
    def test_changed_slug_keeps_the_key(self):
        """Two slugs of one numeric id give one key; without an id pattern the normalised link is the key."""
        assert story_key(BASE + "/detail/12345/a", KEMENPORA) == story_key(BASE + "/detail/12345/b-c/", KEMENPORA)
        assert story_key("https://WWW.kemenpora.go.id/lain/7/?utm_source=x", KEMENPORA) == "kemenpora.go.id/lain/7"

    @pytest.mark.parametrize("selector,ok", [(".newsrow .newsrow__row", True), ('meta[property="og:image"]', True),
                                             ("a[", False), ("div >", False)])
    def test_selector_check(self, selector, ok):
        """Selectors selectolax cannot read are reported for config validation."""
        assert (check_selector(selector) is None) is ok


class TestStoryPage:
    def read(self, name: str) -> StoryPage:
        return read_story_page(fixture(name), url=BASE + "/detail/1/x", headers={}, layout=KEMENPORA, tz="Asia/Jakarta")

    def test_summary_and_lead_image_from_the_page(self):
        """The page's summary block and lead picture are read; og tags are only fallbacks."""
        page = self.read("detail_12345.html")
        assert page.summary.startswith("Menteri Pemuda dan Olahraga membuka")
        assert page.image_url.endswith("/12345/silat_besar.jpg")
        assert page.published is None

    def test_body_paragraphs_og_image_and_published_time_as_fallbacks(self):
        """Without a summary block the first paragraphs stand in; og:image (relative) and article time fill in."""
        page = self.read("detail_12346.html")
        assert page.summary == "Kemenpora meluncurkan program Desa Olahraga di 100 desa. Program ini berjalan hingga 2026."
        assert page.image_url == BASE + "/images/content/2025/12/02/12346/og_desa.jpg"
        assert page.published.when == datetime.fromisoformat("2025-12-02T14:30:00+07:00")

    def test_page_time_replaces_a_day_only_listing_date(self):
        """A precise page time wins over a listing day, never over a listing time."""
        item = Item(key="k", title="t", published=datetime.fromisoformat("2025-12-02T00:00:00+07:00"))
        page = self.read("detail_12346.html")
        assert with_page(item, page, listing_date_precise=False).published == page.published.when
        assert with_page(item, page, listing_date_precise=True).published == item.published
