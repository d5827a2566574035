"""How a site lays out its listing and story pages (CSS selectors), and the presets we ship.

Pure data. A source in settings.toml names a preset and may override any of its selectors one by
one; config.py resolves that into one Layout per source.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Layout:
    """Selectors for one site. Optional ones may be None (not on this site)."""

    item: str
    """One story row on a listing page."""
    container: str | None = None
    """Rows count only inside the FIRST element matching this: other blocks (sidebars, "popular")
    repeat older stories."""
    link: str = "a[href]"
    """Inside a row: the story's link (href)."""
    title: str | None = None
    """Inside a row: the title; None takes the link's text."""
    date: str | None = None
    """Inside a row: the date (its datetime/content attribute, else its text)."""
    image: str | None = "img"
    """Inside a row: a picture (src, else data-src / data-original)."""
    summary: str | None = None
    """Inside a row: a teaser."""
    next: str | None = None
    """On a listing page: the link to the next (older) page."""
    page_summary: str | None = None
    """On a story page: the summary; the og:description meta tag is the fallback."""
    page_body: str | None = None
    """On a story page: the article's paragraphs, used as summary when there is none."""
    page_image: str | None = None
    """On a story page: the lead image; the og:image meta tag is the fallback."""
    page_date: str | None = None
    """On a story page: the date; the article:published_time meta tag is the fallback."""
    id_pattern: str | None = None
    """A regular expression with one group, searched in the story link's path: when it matches, the
    story's key is `id_prefix` + that group, so a story whose slug changes is not a new story."""
    id_prefix: str = "id:"
    """Set by presets only: changing it would make every known story look new."""


SELECTOR_KEYS = ("container", "item", "link", "title", "date", "image", "summary", "next",
                 "page_summary", "page_body", "page_image", "page_date")
"""Layout fields settings.toml may set, each a CSS selector; plus `id_pattern` (a regex)."""
LAYOUT_KEYS = SELECTOR_KEYS + ("id_pattern",)
assert set(LAYOUT_KEYS) | {"id_prefix"} == {f.name for f in fields(Layout)}

# kemenpora.go.id and its deputies' sites (deputi1..deputi4.kemenpora.go.id) share one layout, as
# three independent public scrapers agree: listing rows in the main .newsrow block (rows elsewhere
# repeat older stories), dates without a time ("Kamis, 26 Jul 2022"), stories at /detail/{id}/{slug}
# where the rising numeric id is the identity and the slug may change.
KEMENPORA = Layout(
    container=".newsrow",
    item=".newsrow__row",
    link="h2.newsrow__title > a",
    title="h2.newsrow__title > a",
    date=".catedate .date",
    image="img",
    next=".paging a[rel=next]",
    page_summary=".pages-summary > p",
    page_body="div.detail__content > p",
    page_image=".pages-pic > img",
    id_pattern=r"/detail/(\d+)(?:/|$)",
    id_prefix="kemenpora:detail:",
)

PRESETS: dict[str, Layout] = {"kemenpora": KEMENPORA}
