"""How a site lays out its listing and story pages (CSS selectors), and the presets we ship.

A source in settings.toml names a preset and may override any of its selectors one by one;
resolve_layout turns that into one Layout per source (bridge/config/settings.py calls it while validating).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace


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
# repeat older stories), each with a teaser in .newsrow__summary, dates without a time ("Kamis,
# 26 Jul 2022"), stories at /detail/{id}/{slug} where the rising numeric id is the identity and the
# slug may change. The scrapers read the deputies' /artikel listings with the same selectors.
KEMENPORA = Layout(
    container=".newsrow",
    item=".newsrow__row",
    link="h2.newsrow__title > a",
    title="h2.newsrow__title > a",
    date=".catedate .date",
    image="img",
    summary=".newsrow__summary > p",
    next=".paging a[rel=next]",
    page_summary=".pages-summary > p",
    page_body="div.detail__content > p",
    page_image=".pages-pic > img",
    id_pattern=r"/detail/(\d+)(?:/|$)",
    id_prefix="kemenpora:detail:",
)

PRESETS: dict[str, Layout] = {"kemenpora": KEMENPORA}


def resolve_layout(preset: Layout | None, overrides: dict[str, str | None], kind: str, where: str,
                   problems: list[str]) -> Layout | None:
    """A preset with a source's overrides (the config's validation of them appends to `problems`).
    None when there is nothing to read a page with (kind "auto" then needs a feed)."""
    for key, value in overrides.items():
        if value is None:
            continue  # _Getter reported the wrong type
        if key in SELECTOR_KEYS and value:
            # here, not at the top: html.py imports this module, and selectolax loads only for a
            # selector to check (a source of kind "auto" with none needs no HTML reader yet)
            from bridge.sources.html import check_selector

            if why := check_selector(value):
                problems.append(f"{where}.{key}: {why}")
        if key == "id_pattern":
            try:
                if re.compile(value).groups != 1:
                    problems.append(f"{where}.id_pattern: needs exactly one (group) around the id")
            except re.error as exc:
                problems.append(f"{where}.id_pattern: not a regular expression: {exc}")
    # An empty string switches a preset's selector off ("this site has no images in its rows").
    values = {key: (value or None) for key, value in overrides.items() if value is not None}
    for required in ("item", "link"):  # a row always needs both
        if required in values and values[required] is None:
            problems.append(f"{where}.{required}: cannot be empty")
            values.pop(required)
    if preset is None and not values.get("item"):
        if kind == "html":
            problems.append(f'{where}: kind = "html" needs preset = "kemenpora" (or another preset: '
                            f'{", ".join(PRESETS)}) or an item selector (with link, title, date, ...)')
        return None
    return replace(preset, **values) if preset else Layout(**values)
