"""Keyword filters (bridge.filters): words, phrases and `re:` rules on title, summary and categories."""

from __future__ import annotations

import unicodedata

import pytest

from bridge.filters import FILTERED, Filters, compile_rule, rejection, story_fields
from bridge.model import Item


def story(title: str = "", summary: str = "", categories: tuple[str, ...] = ()) -> Item:
    return Item(key="k", title=title, summary=summary, categories=categories)


def matches(rule: str, text: str) -> bool:
    return compile_rule(rule).where(story_fields(story(title=text))) is not None


def filters(include=(), exclude=(), owner="source antara") -> Filters:
    return Filters(tuple(map(compile_rule, include)), tuple(map(compile_rule, exclude)), owner)


class TestWordsAndPhrases:
    @pytest.mark.parametrize("text", [
        "Pemuda, bangkitlah!", "PEMUDA Indonesia", "Hari Sumpah Pemuda.", "(pemuda)", "pemuda-pemudi desa",
        "«Pemuda»", "pemuda\n", "Menpora: pemuda",
    ])
    def test_a_word_matches_whole_words_whatever_the_case_and_punctuation(self, text):
        """`pemuda` matches the word in any case, beside punctuation, a hyphen (reduplication) or a line end."""
        assert matches("pemuda", text)

    @pytest.mark.parametrize("text", ["kepemudaan", "Kepemudaan nasional", "pemudanya", "pemuda_2024", "pemuda2"])
    def test_a_word_does_not_match_inside_another_word(self, text):
        """`pemuda` is not found inside "kepemudaan" or "pemudanya" (digits and _ are word characters too)."""
        assert not matches("pemuda", text)

    def test_word_boundaries_are_unicode(self):
        """A letter outside ASCII is part of the word: `muda` is not found in "mudá" nor "émuda"."""
        assert not matches("muda", "mudá")
        assert not matches("muda", "émuda")
        assert matches("atlét", "Para ATLÉT muda")

    def test_a_phrase_matches_across_any_whitespace(self):
        """`wirausaha muda` matches across spaces, a tab or a line break, not with other words between."""
        assert matches("wirausaha muda", "Program Wirausaha  Muda Pemula")
        assert matches("wirausaha muda", "wirausaha\tmuda")
        assert matches("wirausaha   muda", "wirausaha\nmuda")
        assert not matches("wirausaha muda", "wirausaha yang muda")
        assert not matches("wirausaha muda", "wirausahawan muda")

    def test_punctuation_in_a_rule_is_literal(self):
        """A rule's own punctuation is matched as written, not as a regex: `U-23`, `C++`, `#PON`, `(KONI)`."""
        assert matches("U-23", "Timnas U-23 menang")
        assert not matches("U-23", "Timnas U-230") and not matches("U-23", "U 23")
        assert matches("C++", "Belajar C++ gratis")
        assert matches("#PON", "Meriahnya #PON 2024")
        assert matches("(KONI)", "Komite Olahraga (KONI) Pusat") and not matches("(KONI)", "KONI Pusat")
        assert not matches("a.b", "axb")

    def test_unicode_forms_are_compared_alike(self):
        """A rule typed with a composed "é" matches a text that stores it decomposed, and the other way round."""
        composed = unicodedata.normalize("NFC", "café")
        decomposed = unicodedata.normalize("NFD", "café")
        assert composed != decomposed
        assert matches(composed, f"Ngopi di {decomposed} Senayan")
        assert matches(decomposed, f"Ngopi di {composed} Senayan")
        assert not matches("cafe", decomposed)  # "e" + a combining accent is "é", not "e" and a boundary


class TestRegularExpressions:
    def test_a_regex_is_searched_as_written_without_added_boundaries(self):
        """`re:` rules find what a word rule will not: a word inside another, a family of forms."""
        assert matches(r"re:kepemuda\w*", "Deputi Pengembangan Kepemudaan")
        assert matches("re:pemuda", "kepemudaan")
        assert matches(r"re:\bpemud[ai]\b", "pemudi") and not matches(r"re:\bpemud[ai]\b", "kepemudaan")

    def test_a_regex_ignores_case(self):
        """A regex is case-insensitive like every rule, with Unicode case folding."""
        assert matches("re:LELANG", "pengumuman lelang")
        assert matches("re:ÉLITE", "atlet élite")

    def test_a_regex_with_alternatives_and_anchors(self):
        """Alternation and anchors work on each field separately: `^` is the start of the title."""
        assert matches("re:^(pengumuman|lelang)", "Pengumuman: lelang ulang")
        assert not matches("re:^lelang", "Pengumuman: lelang ulang")


class TestWhereItMatches:
    def test_title_summary_and_each_category_are_matched(self):
        """A rule may match the title, the summary or any category, and says which."""
        rule = compile_rule("pengadaan")
        assert rule.where(story_fields(story(title="Pengadaan barang"))) == "the title"
        assert rule.where(story_fields(story(title="x", summary="Info pengadaan."))) == "the summary"
        assert rule.where(story_fields(story(title="x", categories=("Berita", "Pengadaan")))) == "category 'Pengadaan'"
        assert rule.where(story_fields(story(title="x", summary="y", categories=("Olahraga",)))) is None

    def test_a_phrase_never_spans_two_fields(self):
        """The end of the title and the start of the summary are not one phrase."""
        assert compile_rule("pemuda hebat").where(story_fields(story(title="Pemuda", summary="hebat"))) is None
        assert compile_rule("sepak bola").where(story_fields(story(categories=("sepak", "bola")))) is None

    def test_empty_fields_are_not_matched(self):
        """A story without summary or categories is matched on its title alone."""
        assert story_fields(story(title="Judul")) == [("the title", "Judul")]


class TestFilters:
    def test_no_rules_let_everything_through(self):
        """Empty filters are falsy and refuse nothing."""
        assert not Filters()
        assert Filters().rejection(story("apa saja")) is None
        assert rejection(story("apa saja"), None, Filters()) is None

    def test_exclude_names_the_rule_and_the_field(self):
        """An exclude rule that matches takes the story out, and the reason says which rule, where, and whose."""
        reason = filters(exclude=["pengadaan", "lelang"]).rejection(story("Lelang ulang gedung"))
        assert reason == f"{FILTERED} source antara: exclude 'lelang' matched the title"

    def test_include_needs_one_match(self):
        """With include rules, a story passes when any one matches, and is refused when none does."""
        f = filters(include=["wirausaha muda", "re:kewirausaha\\w*"], owner="target x")
        assert f.rejection(story("Pelatihan kewirausahaan pemuda")) is None
        assert f.rejection(story("x", summary="Program wirausaha muda")) is None
        assert f.rejection(story("Menpora tinjau GBK")) == (
            f"{FILTERED} target x: no include rule matched ('wirausaha muda', 're:kewirausaha\\\\w*')")

    def test_a_long_include_list_is_cut_in_the_reason(self):
        """The reason names the first three include rules and counts the rest, to stay one line."""
        reason = filters(include=["a", "b", "c", "d", "e"]).rejection(story("zzz"))
        assert reason.endswith("('a', 'b', 'c' and 2 more)")

    def test_exclude_wins_over_include(self):
        """A story matching both an include and an exclude rule is excluded, naming the exclude rule."""
        f = filters(include=["pemuda"], exclude=["pengadaan"])
        assert "exclude 'pengadaan'" in f.rejection(story("Pengadaan seragam pemuda"))

    def test_a_targets_filters_apply_on_top_of_its_sources(self):
        """The source's rules are judged first, then the target's: either can refuse; both must let it through."""
        source = filters(exclude=["pengadaan"], owner="source deputi2")
        target = filters(include=["pemuda"], owner="target x")
        assert rejection(story("Pengadaan untuk pemuda"), source, target).startswith(f"{FILTERED} source deputi2")
        assert rejection(story("Menpora tinjau GBK"), source, target).startswith(f"{FILTERED} target x")
        assert rejection(story("Kirab pemuda"), source, target) is None
        assert rejection(story("Kirab pemuda"), None, target) is None  # a removed source: the target's alone


class TestBadRules:
    @pytest.mark.parametrize(("text", "message"), [
        ("re:(pemuda", "'re:(pemuda' is not a valid regular expression: missing ), unterminated subpattern"),
        ("re:", "'re:': no regular expression after 're:'"),
        ("re:.*", "'re:.*' matches an empty text, so it matches every story"),
        ("re:x?", "matches an empty text"),
        ("", "an empty rule matches nothing; remove it"),
        ("   ", "an empty rule matches nothing"),
        ("RE:pemuda", "'RE:pemuda': did you mean 're:pemuda'? (case matters)"),
        ("Re:pemuda", "did you mean 're:pemuda'? (case matters)"),
        ("regex:pemuda", "'regex:pemuda': did you mean 're:pemuda'? (a regular expression starts with 're:')"),
        ("regexp: pemuda", "did you mean 're:pemuda'?"),
        ("re : pemuda", "did you mean 're:pemuda'?"),
    ])
    def test_each_is_refused_saying_why(self, text, message):
        """A rule that cannot work is a ValueError whose message the config puts after the key path."""
        with pytest.raises(ValueError, match=None) as info:
            compile_rule(text)
        assert message in str(info.value)

    def test_rules_compare_by_their_text(self):
        """Two rules with the same text are equal (frozen config objects compare on reload)."""
        assert compile_rule("pemuda") == compile_rule("pemuda") and compile_rule("pemuda") != compile_rule("Pemuda")


@pytest.mark.parametrize("rule", ["re:(a+)+$", r"re:(\w*)*x", r"re:(x|y+)*z", r"re:(?:\d+,)+\.", r"re:((ab)+c)*"])
def test_a_repeat_inside_a_repeat_is_refused_at_load(rule):
    """Nested repetition can take exponential time on a hostile feed's text (Python's re has no
    timeout): refused with what to write instead."""
    with pytest.raises(ValueError, match="repeats a repetition"):
        compile_rule(rule)


@pytest.mark.parametrize("rule", [r"re:kepemuda\w*", "re:(olah)?raga", r"re:(ab){2,3}c+", r"re:\bpemuda(-pemudi)?"])
def test_single_repeats_are_fine(rule):
    compile_rule(rule)

