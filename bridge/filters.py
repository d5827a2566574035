"""Keyword filters: which stories a source or a target takes (`include`) and refuses (`exclude`). Pure.

A rule is either a word or phrase, or a regular expression prefixed with `re:`:

- a word or phrase matches whole words only, case-insensitively, with Unicode word boundaries:
  `pemuda` matches "Pemuda," and "pemuda-pemudi" but not "kepemudaan"; the words of a phrase may
  be separated by any whitespace ("wirausaha   muda", a line break);
- `re:` and a regular expression (Python's syntax) is searched as written, case-insensitively, with
  no boundaries added: `re:kepemuda\\w*` or `re:\\bpemuda` ask for what a word rule will not match.

Each rule is matched on the title, the summary and each category separately (a phrase never spans
two of them), after Unicode NFC normalisation of both, so "é" typed one way matches "é" stored the
other. A story is refused by an `exclude` rule that matches, or by `include` rules none of which
matches (no include rules: everything is included). Exclusions are checked first, so the reason
names the rule that took a story out rather than the absence of a wanted word.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

REGEX_PREFIX = "re:"
FILTERED = "filtered out by"
"""How every reason this module gives starts (the delivery's note, `bridge preview`, the rehearsal)."""
_LOOKALIKE_PREFIXES = ("regex:", "regexp:", "re :")
_RULES_NAMED_IN_REASON = 3
"""An include rule list named in a reason is cut after this many (the note must stay one line)."""


class Story(Protocol):
    """What the filters read of a story (bridge.model.Item has it)."""

    title: str
    summary: str
    categories: tuple[str, ...]


@dataclass(frozen=True)
class Rule:
    text: str
    """As written in settings.toml: `pemuda`, `wirausaha muda` or `re:...`."""
    pattern: re.Pattern[str] = field(compare=False, repr=False)

    def where(self, fields: Sequence[tuple[str, str]]) -> str | None:
        """The name of the first field this rule matches ("the title", "category 'X'"), or None."""
        for name, text in fields:
            if self.pattern.search(text):
                return name
        return None


def compile_rule(text: str) -> Rule:
    """A rule from its text. Raises ValueError saying what is wrong (for the config's problem line)."""
    lowered = text.lower()
    for lookalike in _LOOKALIKE_PREFIXES:
        if lowered.startswith(lookalike):
            raise ValueError(f"{text!r}: did you mean {REGEX_PREFIX + text[len(lookalike):].lstrip()!r}? "
                             f"(a regular expression starts with {REGEX_PREFIX!r})")
    if lowered.startswith(REGEX_PREFIX) and not text.startswith(REGEX_PREFIX):
        raise ValueError(f"{text!r}: did you mean {REGEX_PREFIX + text[3:]!r}? (case matters)")
    if text.startswith(REGEX_PREFIX):
        source = unicodedata.normalize("NFC", text[len(REGEX_PREFIX):])
        if not source:
            raise ValueError(f"{text!r}: no regular expression after {REGEX_PREFIX!r}")
        try:
            pattern = re.compile(source, re.IGNORECASE)
        except re.error as exc:
            raise ValueError(f"{text!r} is not a valid regular expression: {exc}") from None
        if _nested_repeat(source):
            raise ValueError(f"{text!r} repeats a repetition (like (a+)+ or (\\w*)*): on some texts that "
                             "takes exponential time and would stall polling; write it with one repeat")
        if pattern.search(""):  # `re:.*`, `re:x?`: it would match every story
            raise ValueError(f"{text!r} matches an empty text, so it matches every story")
        return Rule(text, pattern)
    words = unicodedata.normalize("NFC", text).split()
    if not words:
        raise ValueError("an empty rule matches nothing; remove it")
    # Lookarounds rather than \b: a phrase may start or end with a non-word character ("#PON", "U-23.").
    body = r"\s+".join(re.escape(word) for word in words)
    return Rule(text, re.compile(rf"(?<!\w){body}(?!\w)", re.IGNORECASE))


@dataclass(frozen=True)
class Filters:
    """One table's `include` and `exclude` rules ([[sources]] or [targets.*])."""

    include: tuple[Rule, ...] = ()
    exclude: tuple[Rule, ...] = ()
    owner: str = ""
    """Who set them, for the reason: "source antara", "target x"."""

    def __bool__(self) -> bool:
        return bool(self.include or self.exclude)

    def rejection(self, story: Story) -> str | None:
        """Why these rules refuse `story`, or None when they let it through."""
        fields = story_fields(story)
        for rule in self.exclude:
            name = rule.where(fields)
            if name:
                return f"{FILTERED} {self.owner}: exclude {rule.text!r} matched {name}"
        if self.include and not any(rule.where(fields) for rule in self.include):
            named = ", ".join(repr(rule.text) for rule in self.include[:_RULES_NAMED_IN_REASON])
            more = f" and {len(self.include) - _RULES_NAMED_IN_REASON} more" if len(
                self.include) > _RULES_NAMED_IN_REASON else ""
            return f"{FILTERED} {self.owner}: no include rule matched ({named}{more})"
        return None


def story_fields(story: Story) -> list[tuple[str, str]]:
    """(name, NFC text) of each field a rule is matched on: title, summary, each category."""
    fields = [("the title", story.title or ""), ("the summary", story.summary or "")]
    fields += [(f"category {category!r}", category) for category in story.categories]
    return [(name, unicodedata.normalize("NFC", text)) for name, text in fields if text]


def rejection(story: Story, *filters: Filters | None) -> str | None:
    """The first of `filters` (a source's, then its target's: a target's apply on top) that refuses
    `story`, with the rule; None when every one lets it through."""
    for each in filters:
        if each:
            reason = each.rejection(story)
            if reason:
                return reason
    return None


def _nested_repeat(source: str) -> bool:
    """Whether a regular expression has an unbounded-ish repeat inside another: the shape of
    catastrophic backtracking (`(a+)+$` on "aaaa…b"), which Python's `re` cannot time out. The
    pattern's author is trusted, the feed text it runs on is not."""
    import re._constants as C
    import re._parser as parser

    repeats = (C.MAX_REPEAT, C.MIN_REPEAT, getattr(C, "POSSESSIVE_REPEAT", None))

    def walk(items, inside: bool) -> bool:
        for op, arg in items:
            if op in repeats:
                low, high, sub = arg
                many = high is C.MAXREPEAT or high > 1
                if many and inside:
                    return True
                if walk(sub, inside or many):
                    return True
            elif op is C.SUBPATTERN:
                if walk(arg[-1], inside):
                    return True
            elif op is C.BRANCH:
                if any(walk(branch, inside) for branch in arg[1]):
                    return True
            elif op in (C.ASSERT, C.ASSERT_NOT):
                if walk(arg[1], inside):
                    return True
        return False

    return walk(parser.parse(source), False)
