"""Fill a post template from an item and make it fit a network's length rule. Pure: no I/O.

Shortening order: hashtags are dropped first (last tag first), then the summary is shortened (at a
word boundary, with an ellipsis, dropped entirely if need be), then the title the same way. The URL
and the source are never cut, nor is a hashtag cut in half: a link that is cut is a broken link
(the feed2tweet mistake). Every text we return has been measured with
the rule's own `measure`, so nothing over `max_length` can leave this module.
"""

from __future__ import annotations

import bisect
import re
import string
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bridge.errors import PostRejected
from bridge.model import Item, Post

PLACEHOLDERS = frozenset({"title", "url", "summary", "source", "hashtags"})

LONG_WORD = 20
"""A word longer than this (in code points), or holding CJK, may be cut inside, by characters, to
fill the room left after the last whole word: CJK and Thai runs have no spaces, and a long word kept
whole would waste most of the room. Shorter words are never cut ("Ja…" says nothing)."""

SCAN_CHARS_PER_UNIT = 4
"""We only try cut points within the first `max_length * 4` characters of a field. Every character
and every word costs at least one unit under any sane measure (X: 1 or 2; only NFC-composed marks and
long URLs cost less per character), so this bounds the work on a 100 KB summary without ever
letting an over-long text through (each candidate is still measured)."""

_INTERPOLATION_STEPS = 6
"""Interpolated guesses before plain bisection takes over (see _largest_fitting)."""

_SEPARATORS = " \t\r\n-–—|:·•,;/»>~"
"""Characters that only separate fields: what is left dangling when a neighbouring field is empty."""
_TRAILING_PUNCTUATION = ",;:-–—/|"
"""Stripped from a cut before the ellipsis: "kata,…" reads worse than "kata…"."""
_BRACKETS = {"(": ")", "[": "]", "{": "}", "«": "»", "“": "”", "‘": "’", '"': '"', "'": "'"}
_ZWJ = "\u200d"


@dataclass(frozen=True)
class LengthRule:
    """How one network counts characters, and its limit."""

    max_length: int
    measure: Callable[[str], int]
    ellipsis: str = "…"
    at_most: Callable[[str], int] | None = None
    """Optional: a cheap count never below `measure`'s. A config check that sees a text fits by it
    need not load the network's own counter (twitter-text's regexes cost ~0.2 s to compile)."""


@dataclass(frozen=True)
class _Template:
    literals: tuple[str, ...]
    """Literal text around the fields: always one more than `fields`."""
    fields: tuple[str, ...]


# --- Templates -----------------------------------------------------------------------------------


def template_fields(template: str) -> set[str]:
    """The placeholder names a template uses. Raises ValueError, saying what to write instead, when
    the template is malformed or uses anything beyond plain `{name}` placeholders."""
    return set(_parse(template).fields)


def _parse(template: str) -> _Template:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as error:
        raise ValueError(
            f"template {template!r} is malformed ({error}): write placeholders as {{title}} "
            "and a literal brace as {{ or }}"
        ) from None
    literals: list[str] = []
    fields: list[str] = []
    pending = ""
    for literal, name, spec, conversion in parsed:
        pending += literal
        if name is None:
            continue
        _check_field(template, name, spec, conversion)
        literals.append(pending)
        fields.append(name)
        pending = ""
    literals.append(pending)
    return _Template(tuple(literals), tuple(fields))


def _check_field(template: str, name: str, spec: str, conversion: str | None) -> None:
    known = ", ".join("{" + p + "}" for p in sorted(PLACEHOLDERS))
    if name == "" or name.isdigit():
        problem = f"positional placeholder {{{name}}} is not allowed: name it, one of {known}"
    elif "." in name or "[" in name:
        problem = f"{{{name}}} uses attribute or index access: use a plain name, one of {known}"
    elif spec:
        problem = f"{{{name}:{spec}}} has a format spec: write a plain {{{name}}}"
    elif conversion is not None:
        problem = f"{{{name}!{conversion}}} has a conversion: write a plain {{{name}}}"
    elif not name.isidentifier():
        problem = f"{{{name}}} is not a placeholder name: use one of {known}"
    else:
        return
    raise ValueError(f"template {template!r}: {problem}")


# --- Rendering -----------------------------------------------------------------------------------


def _render(template: _Template, values: dict[str, str]) -> str:
    """Fill the template; where a field is empty, keep one separator (or none at either end)."""
    done, gap, merged = "", template.literals[0], False
    last = len(template.fields) - 1
    for index, (name, right) in enumerate(zip(template.fields, template.literals[1:])):
        value = values[name]
        if value:
            done += (_tidy(gap) if merged else gap) + value
            gap, merged = right, False
        else:
            gap = _drop_empty_field(gap, right, at_start=not done, at_end=index == last)
            merged = True
    done += _tidy(gap) if merged else gap
    return done.strip()


def _drop_empty_field(left: str, right: str, *, at_start: bool, at_end: bool) -> str:
    """Join the literals on both sides of an empty field, without doubled or dangling separators."""
    left, right = _unwrap(left, right)
    core_left = left.rstrip(_SEPARATORS)
    core_right = right.lstrip(_SEPARATORS)
    sep_left = left[len(core_left):]
    sep_right = right[: len(right) - len(core_right)]
    if (at_start and not core_left) or (at_end and not core_right):
        separator = ""  # nothing on that side to separate from
    elif sep_left.count("\n") != sep_right.count("\n"):
        separator = max(sep_left, sep_right, key=lambda s: s.count("\n"))  # keep the layout's break
    else:
        separator = sep_right or sep_left  # the one that leads into the next field
    return core_left + separator + core_right


def _unwrap(left: str, right: str) -> tuple[str, str]:
    """Remove a bracket or quote pair that hugged an empty field: "title ({source})" -> "title"."""
    stripped_left, stripped_right = left.rstrip(" \t"), right.lstrip(" \t")
    if stripped_left and stripped_right and _BRACKETS.get(stripped_left[-1]) == stripped_right[0]:
        return stripped_left[:-1], stripped_right[1:]
    return left, right


def _tidy(gap: str) -> str:
    gap = re.sub(r"[ \t]+\n", "\n", gap)
    gap = re.sub(r"\n{3,}", "\n\n", gap)
    return re.sub(r"[ \t]{2,}", " ", gap)


def _one_line(text: str | None) -> str:
    """Collapse runs of whitespace (newlines, &nbsp;) into single spaces."""
    return " ".join((text or "").split())


# --- Composing -----------------------------------------------------------------------------------


def compose(template: str, item: Item, *, source: str, rule: LengthRule,
            hashtags: Sequence[str] | str = ()) -> Post:
    """The post for one item on one network: the template filled and shortened to fit `rule`.

    Hashtags are dropped, last first, before anything is shortened: they decorate a post, the
    title and summary are the post.
    Raises ValueError for a bad template (config should have caught it) and PostRejected when the
    post cannot fit even with an empty title and summary, or would be empty.
    """
    parsed = _parse(template)
    unknown = set(parsed.fields) - PLACEHOLDERS
    if unknown:
        names = ", ".join("{" + n + "}" for n in sorted(unknown))
        raise ValueError(f"template {template!r} uses unknown placeholder(s) {names}")
    link = (item.link or "").strip()  # never item.url: an identity ("site/a"), no address to post
    tags = [hashtags] if isinstance(hashtags, str) else list(hashtags)
    tags = [t for t in (_one_line(t) for t in tags) if t]
    fixed = {"url": link, "source": _one_line(source), "hashtags": " ".join(tags)}
    used = set(parsed.fields)
    # A field the template does not show must not count toward the limits below.
    title = _one_line(item.title) if "title" in used else ""
    summary = _one_line(item.summary) if "summary" in used else ""

    def render(title_text: str, summary_text: str) -> str:
        return _render(parsed, {**fixed, "title": title_text, "summary": summary_text})

    text = None
    if "hashtags" in used and tags:
        for count in range(len(tags), -1, -1):  # the whole post with fewer and fewer tags
            fixed["hashtags"] = " ".join(tags[:count])
            candidate = render(title, summary)
            if len(candidate) <= rule.max_length * SCAN_CHARS_PER_UNIT and rule.measure(candidate) <= rule.max_length:
                text = candidate
                break
    if text is None:
        text = _fit(render, title, summary, rule)
    if not text:
        raise PostRejected(f"nothing to post for item {item.key!r}: the template {template!r} came out empty")
    return Post(text=text, link=link or None, title=item.title, summary=item.summary, image_url=item.image_url)


def _fit(render: Callable[[str, str], str], title: str, summary: str, rule: LengthRule) -> str:
    """The fullest rendering that fits: whole, then a shorter summary, then a shorter title."""
    scan_chars = rule.max_length * SCAN_CHARS_PER_UNIT
    limit = rule.max_length
    measured: dict[str, int] = {}

    def measure(text: str) -> int:  # twitter-text costs ~7 µs a character: measure each text once
        if text not in measured:
            measured[text] = rule.measure(text)
        return measured[text]

    full = render(title, summary)
    if len(title) + len(summary) <= scan_chars and measure(full) <= limit:
        return full
    if len(title) <= scan_chars:  # else the title alone overflows: the summary goes whatever its length
        without_summary = render(title, "")
        if summary:
            shorter = _shorten(summary, lambda s: render(title, s), measure(without_summary), measure, rule)
            if shorter is not None:
                return shorter
        if measure(without_summary) <= limit:
            return without_summary
    bare = render("", "")
    if title:
        shorter = _shorten(title, lambda t: render(t, ""), measure(bare), measure, rule)
        if shorter is not None:
            return shorter
    if measure(bare) <= limit:
        return bare
    raise PostRejected(
        f"the post does not fit even without its title and summary: {measure(bare)} of at most "
        f"{limit} characters in {bare[:120]!r}; shorten the template, source name or hashtags, "
        "or check the item's link"
    )


def _shorten(value: str, render: Callable[[str], str], base_units: int, measure: Callable[[str], int],
             rule: LengthRule) -> str | None:
    """The longest rendering with a cut-down `value` (known not to fit whole), or None if no
    non-empty cut fits: a search over word counts, then over characters of the next word.
    `base_units` is the measure of the rendering without `value`."""
    words = value.split(" ")  # value went through _one_line: single spaces only
    budget = rule.max_length * SCAN_CHARS_PER_UNIT
    sizes: list[int] = []  # sizes[i]: characters in the first i + 1 words, joined
    for word in words[:-1]:
        size = (sizes[-1] + 1 if sizes else 0) + len(word)
        if size > budget or len(sizes) >= rule.max_length:
            break
        sizes.append(size)

    def by_words(index: int) -> str:
        kept = " ".join(words[: index + 1])
        return render((kept.rstrip(_TRAILING_PUNCTUATION) or kept) + rule.ellipsis)

    index, best, best_units = _largest_fitting(sizes, by_words, measure, rule.max_length, base_units)
    count = index + 1
    if count < len(words) and _may_cut_inside(words[count]):
        prefix = " ".join(words[:count]) + " " if count else ""
        word = words[count]
        cuts = [i for i in range(1, min(len(word), budget)) if _is_boundary(word, i)]
        _, by_chars, _ = _largest_fitting(
            cuts, lambda j: render(prefix + word[: cuts[j]] + rule.ellipsis), measure, rule.max_length, best_units
        )
        best = by_chars or best  # a cut inside the next word is always longer than stopping before it
    return best


def _may_cut_inside(word: str) -> bool:
    return len(word) > LONG_WORD or any(unicodedata.east_asian_width(c) in ("W", "F") for c in word)


def _largest_fitting(sizes: list[int], candidate: Callable[[int], str], measure: Callable[[str], int], limit: int,
                     base_units: int) -> tuple[int, str | None, int]:
    """The largest index whose candidate measures within `limit`, as (index, text, units); (-1, None,
    base_units) when none does. `sizes` grow with the index (characters in the candidate's variable
    part) and longer candidates are assumed to measure no less.

    A binary search would measure ~log2(len) texts, each up to 4x the limit. Since cost grows about
    linearly with characters, we first interpolate (regula falsi on `sizes`), which lands within a
    word or two in 2-4 measurements, then fall back to bisection so the worst case stays logarithmic.
    Only measured texts are returned."""
    low, high = -1, len(sizes)  # low fits (-1: the empty value), high does not (len: beyond the end)
    low_size, low_units = 0, base_units
    high_size: int | None = None
    high_units = 0
    best: tuple[int, str | None, int] = (-1, None, base_units)
    step = 0
    while high - low > 1:
        step += 1
        if step <= _INTERPOLATION_STEPS:
            if high_size is not None:
                slope = (high_units - low_units) / max(high_size - low_size, 1)
            else:
                slope = (low_units - base_units) / low_size if low_size else 1.0
            target = low_size + (limit - low_units) / (slope if slope > 0 else 1.0)
            probe = min(max(bisect.bisect_right(sizes, target, low + 1, high) - 1, low + 1), high - 1)
        else:
            probe = (low + high) // 2
        text = candidate(probe)
        units = measure(text)
        if units <= limit:
            low, low_size, low_units = probe, sizes[probe], units
            best = (probe, text, units)
        else:
            high, high_size, high_units = probe, sizes[probe], units
    return best


# --- Grapheme-ish boundaries ---------------------------------------------------------------------
# Not full UAX #29: enough not to split a combining mark, a ZWJ emoji sequence, a skin tone, a flag
# or a Hangul syllable's jamo from what it belongs to.


def _extends_previous(char: str) -> bool:
    code = ord(char)
    return (
        unicodedata.category(char) in ("Mn", "Me", "Mc")
        or char == _ZWJ
        or 0xFE00 <= code <= 0xFE0F  # variation selectors (text/emoji presentation)
        or 0x1F3FB <= code <= 0x1F3FF  # skin-tone modifiers
        or 0xE0020 <= code <= 0xE007F  # tag characters (subdivision flags)
        or 0xE0100 <= code <= 0xE01EF  # variation selectors supplement
        or 0xDC00 <= code <= 0xDFFF  # a low surrogate (lone surrogates from surrogateescape)
        or 0x1160 <= code <= 0x11FF  # Hangul jamo vowels and trailing consonants
    )


def _is_regional_indicator(char: str) -> bool:
    return 0x1F1E6 <= ord(char) <= 0x1F1FF


def _is_boundary(text: str, index: int) -> bool:
    """Whether cutting `text` before `index` (0 < index < len) keeps graphemes whole."""
    before, after = text[index - 1], text[index]
    if _extends_previous(after) or before == _ZWJ or 0xD800 <= ord(before) <= 0xDBFF:
        return False
    if _is_regional_indicator(before) and _is_regional_indicator(after):
        run = 0
        while index - 1 - run >= 0 and _is_regional_indicator(text[index - 1 - run]):
            run += 1
        return run % 2 == 0  # flags are pairs: cut only between pairs
    return True
