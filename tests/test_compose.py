"""bridge.compose: templates, empty-field cleanup, and shortening to a network's length rule."""

from __future__ import annotations

import random
import re
import time

import pytest

from bridge.compose import PLACEHOLDERS, LengthRule, _is_boundary, _largest_fitting, compose, template_fields
from bridge.errors import PostRejected
from bridge.model import Item
from bridge.publish.x import X_LENGTH_RULE, x_weighted_length

LINK = "https://www.antaranews.com/berita/4123456/menpora-resmi-membuka-pon-xxi-aceh-sumut-2024"
TITLE = "Menpora resmi membuka PON XXI Aceh-Sumut 2024 di Stadion Harapan Bangsa"
SUMMARY = (
    "Menteri Pemuda dan Olahraga Dito Ariotedjo secara resmi membuka Pekan Olahraga Nasional XXI "
    "Aceh-Sumatera Utara 2024 di Stadion Harapan Bangsa, Banda Aceh, Senin malam. Sebanyak 12.919 "
    "atlet dari 38 provinsi akan bertanding dalam 65 cabang olahraga hingga 20 September mendatang."
)
TEMPLATE = "{title}\n\n{summary}\n\n{url}"


def item(title: str = TITLE, summary: str = SUMMARY, link: str | None = LINK, **kwargs) -> Item:
    return Item(key="antara:4123456", title=title, link=link, summary=summary, **kwargs)


def x_compose(template: str, story: Item, source: str = "Antara", hashtags: str = "") -> str:
    return compose(template, story, source=source, rule=X_LENGTH_RULE, hashtags=hashtags).text


class TestTemplateFields:
    def test_names(self):
        """It returns the placeholder names a template uses, once each."""
        assert template_fields("{title} {url} {title} {hashtags}") == {"title", "url", "hashtags"}

    def test_escaped_braces_are_literal(self):
        """Doubled braces are literal text, not placeholders."""
        assert template_fields("{{title}} {url}") == {"url"}

    def test_unknown_names_are_returned(self):
        """Unknown names are returned for the caller to report against PLACEHOLDERS."""
        assert template_fields("{title} {author}") - PLACEHOLDERS == {"author"}

    @pytest.mark.parametrize("template", ["{title", "title}", "{title}}", "{ti{tle}", "{title!}"])
    def test_unbalanced_braces(self, template):
        """A malformed template raises ValueError that says how to write braces."""
        with pytest.raises(ValueError, match="malformed.*literal brace"):
            template_fields(template)

    @pytest.mark.parametrize(
        ("template", "message"),
        [
            ("{} {url}", "positional placeholder {}"),
            ("{0}", "positional placeholder {0}"),
            ("{title.upper}", "attribute or index access"),
            ("{title[0]}", "attribute or index access"),
            ("{title:>10}", "format spec"),
            ("{title:{url}}", "format spec"),
            ("{title!r}", "conversion"),
            ("{ title }", "not a placeholder name"),
        ],
    )
    def test_rejected_placeholders(self, template, message):
        """Anything beyond a plain {name} raises ValueError naming the offending placeholder."""
        with pytest.raises(ValueError, match="template .*: .*" + re.escape(message)):
            template_fields(template)


class TestFill:
    def test_fits_unchanged(self):
        """A post that fits is the template filled, with the item's parts on the Post."""
        story = item(summary="Singkat.", image_url="https://img.antaranews.com/1.jpg")
        post = compose("{title} ({source}) {summary} {url} {hashtags}", story, source="Antara",
                       rule=X_LENGTH_RULE, hashtags="#PON2024")
        assert post.text == f"{TITLE} (Antara) Singkat. {LINK} #PON2024"
        assert (post.link, post.title, post.summary, post.image_url) == (
            LINK, TITLE, "Singkat.", "https://img.antaranews.com/1.jpg")

    def test_url_identity_is_never_posted(self):
        """Without a published link, {url} stays empty: the item's url is an identity without a scheme, not a link."""
        post = compose("{title} {url}", item(link=None, url="antaranews.com/b/1"), source="", rule=X_LENGTH_RULE)
        assert (post.text, post.link) == (TITLE, None)

    def test_no_link_at_all(self):
        """Without link or url, {url} is empty and the Post has no link."""
        post = compose("{title} {url}", item(link=None), source="", rule=X_LENGTH_RULE)
        assert (post.text, post.link) == (TITLE, None)

    def test_whitespace_collapsed(self):
        """Newlines, tabs and non-breaking spaces in title and summary become single spaces."""
        story = item(title="  Menpora\n buka\tPON ", summary="Banda\u00a0Aceh,\n\nSenin.")
        assert x_compose("{title}: {summary}", story) == "Menpora buka PON: Banda Aceh, Senin."

    def test_unknown_placeholder(self):
        """A template with an unknown placeholder raises ValueError naming it."""
        with pytest.raises(ValueError, match=r"unknown placeholder\(s\) \{author\}"):
            x_compose("{title} {author}", item())

    def test_malformed_template(self):
        """compose rejects a malformed template like template_fields does."""
        with pytest.raises(ValueError, match="malformed"):
            x_compose("{title", item())

    def test_empty_post_rejected(self):
        """A template that comes out empty raises PostRejected."""
        with pytest.raises(PostRejected, match="nothing to post"):
            x_compose("{summary} {hashtags}", item(summary=""))


class TestEmptyFields:
    @pytest.mark.parametrize(
        ("template", "expected"),
        [
            ("{title}\n\n{summary}\n\n{url}", "T\n\nhttps://a.id/1"),
            ("{title} — {summary} {url}", "T https://a.id/1"),
            ("{title} | {summary} | {url}", "T | https://a.id/1"),
            ("{title}: {summary}\n{url}", "T\nhttps://a.id/1"),
            ("{title} ({source}) {url}", "T https://a.id/1"),
            ("[{source}] {title} {url}", "T https://a.id/1"),
            ("“{summary}” {title} {url}", "T https://a.id/1"),
            ("{source}: {title} {url}", "T https://a.id/1"),
            ("{title} {url} {hashtags}", "T https://a.id/1"),
            ("{title} {url} — {summary}", "T https://a.id/1"),
            ("{title}\n{summary}{hashtags}\n{url}", "T\nhttps://a.id/1"),
            ("{source} | {hashtags} {title} {url}", "T https://a.id/1"),
            ("{title} — {summary} {hashtags}\n\n{url}", "T\n\nhttps://a.id/1"),
            ("{title} Baca  juga: {summary}   {url}", "T Baca juga https://a.id/1"),
            ("{title}  \n\n{summary}\n\n\n\n{url}", "T\n\nhttps://a.id/1"),
        ],
    )
    def test_separators_cleaned(self, template, expected):
        """An empty field leaves neither doubled spaces nor a dangling separator or bracket."""
        assert x_compose(template, item(title="T", summary="", link="https://a.id/1"), source="") == expected

    def test_full_fields_keep_template_literally(self):
        """When no field is empty, the template's literal text is kept exactly, even odd spacing."""
        assert x_compose("{title}  —  {source}", item(title="T"), source="S") == "T  —  S"


class TestShortening:
    def test_summary_cut_at_word(self):
        """Too long: the summary is cut at a word with an ellipsis; title and URL stay whole."""
        text = x_compose(TEMPLATE, item(summary=SUMMARY * 3))
        title, summary, url = text.split("\n\n")
        assert (title, url) == (TITLE, LINK)
        assert summary.endswith("…") and (SUMMARY * 3).startswith(summary[:-1])
        assert (SUMMARY * 3)[len(summary) - 1] == " "  # the cut is at a word boundary
        assert 270 < x_weighted_length(text) <= 280

    def test_trailing_punctuation_dropped_before_ellipsis(self):
        """A cut after "word," ends "word…" rather than "word,…"."""
        rule = LengthRule(14, len)
        assert compose("{summary}", item(summary="satu dua, tiga empat lima"), source="", rule=rule).text == "satu dua…"

    def test_custom_ellipsis(self):
        """The rule's ellipsis is used for cuts."""
        rule = LengthRule(12, len, ellipsis="...")
        assert compose("{summary}", item(summary="satu dua tiga empat"), source="", rule=rule).text == "satu dua..."

    def test_summary_dropped_when_no_word_fits(self):
        """When not even one summary word fits, the summary is dropped entirely."""
        title = "judul " * 42
        text = x_compose(TEMPLATE, item(title=title.strip(), summary="Selengkapnya di tautan berikut."))
        assert text == f"{title.strip()}\n\n{LINK}"

    def test_title_cut_after_summary_dropped(self):
        """When the title alone is too long, the summary is dropped and the title is cut at a word."""
        title = " ".join(f"kata{i}" for i in range(100))
        text = x_compose(TEMPLATE, item(title=title))
        head, url = text.split("\n\n")
        assert url == LINK and head.endswith("…") and title.startswith(head[:-1] + " ")
        assert x_weighted_length(text) <= 280

    def test_template_without_summary(self):
        """A template without {summary} goes straight to cutting the title."""
        text = x_compose("{title} {url}", item(title="x " * 300))
        assert text.endswith(f"… {LINK}") and x_weighted_length(text) <= 280

    def test_template_without_title(self):
        """A template without {title} cuts only the summary; a title-less bare post that overflows is rejected."""
        assert x_compose("{summary} {url}", item(summary="y " * 300)).endswith(f"… {LINK}")
        with pytest.raises(PostRejected):
            compose("{source} {summary}", item(summary="y " * 300), source="z" * 30, rule=LengthRule(20, len))

    def test_huge_title(self):
        """A title far longer than any post is cut without measuring it whole."""
        text = x_compose(TEMPLATE, item(title="panjang " * 5000))
        assert text.startswith("panjang panjang") and text.endswith(LINK) and x_weighted_length(text) <= 280

    def test_bare_link_when_no_title_cut_fits(self):
        """When not even a cut title fits beside the link, the post is the link alone."""
        rule = LengthRule(25, len)
        post = compose("{title} {url}", item(title="Menpora Dito", link="https://a.id/1234567"), source="", rule=rule)
        assert post.text == "https://a.id/1234567"

    def test_url_counted_as_23(self):
        """A 200-character URL costs 23, so the rest of the post gets the room."""
        link = "https://www.antaranews.com/berita/" + "a" * 166
        text = x_compose("{summary} {url}", item(link=link, summary="kata " * 200))
        assert text.endswith(" " + link)
        assert x_weighted_length(text) > 270  # by len() it is far over 280

    def test_absurd_link_rejected(self):
        """A link that cannot fit even alone raises PostRejected saying what to check."""
        with pytest.raises(PostRejected, match="does not fit even without its title and summary.*link"):
            x_compose(TEMPLATE, item(link="tautan-bukan-url-" * 30))

    def test_long_summary_is_fast(self):
        """A 100,000-word summary is cut with a handful of measurements."""
        calls = []

        def measure(text: str) -> int:
            calls.append(len(text))
            return x_weighted_length(text)

        started = time.perf_counter()
        compose(TEMPLATE, item(summary="berita " * 100_000), source="", rule=LengthRule(280, measure))
        assert len(calls) <= 30 and max(calls) < 5000
        assert time.perf_counter() - started < 1.0


class TestSearch:
    def test_interpolation_lands_quickly(self):
        """With a cost linear in characters, the search needs only a few measurements."""
        sizes = list(range(1, 10_001))
        calls = []
        index, text, units = _largest_fitting(sizes, lambda i: "x" * sizes[i], lambda t: calls.append(t) or len(t) + 30, 280, 30)
        assert (index, len(text), units) == (249, 250, 280) and len(calls) <= 3

    def test_falls_back_to_bisection(self):
        """With a cost far from linear, the search still finds the answer in logarithmic steps."""
        sizes = list(range(1, 1001))
        calls = []

        def measure(text: str) -> int:
            calls.append(text)
            return 0 if len(text) <= 700 else 10**9  # a cliff: interpolation creeps, bisection does not

        index, text, _ = _largest_fitting(sizes, lambda i: "x" * sizes[i], measure, 280, 0)
        assert (index, len(text)) == (699, 700) and len(calls) <= 6 + 11

    def test_nothing_fits(self):
        """When even the smallest candidate is too long, the search says so."""
        assert _largest_fitting([5, 10], lambda i: "x" * 99, len, 10, 3) == (-1, None, 3)


class TestCharacterCuts:
    def test_cjk_counted_twice(self):
        """CJK text without spaces is cut by characters, each counted 2, filling the room."""
        summary = "東京電力福島第一原子力発電所の処理水の海洋放出について政府は説明した" * 10
        text = x_compose("{summary} {url}", item(summary=summary))
        cut = text[: -len(LINK) - 2]
        assert summary.startswith(cut) and text.endswith("… " + LINK)
        assert 276 <= x_weighted_length(text) <= 280

    def test_short_cjk_word_cut(self):
        """A short CJK word may be cut too, since CJK does not separate words with spaces."""
        rule = LengthRule(8, x_weighted_length)  # 3 CJK characters and the ellipsis, 2 each
        assert compose("{summary}", item(summary="日本語の文章"), source="", rule=rule).text == "日本語…"

    def test_short_latin_word_not_cut(self):
        """A short Latin word is never cut into ("Ja…"): the summary is dropped instead."""
        rule = LengthRule(8, len)
        assert compose("{title} {summary}", item(title="Judul", summary="Jakarta"), source="", rule=rule).text == "Judul"

    def test_long_word_cut(self):
        """A word longer than the room is cut by characters rather than dropped."""
        word = "Donaudampfschifffahrtsgesellschaftskapitän" * 10
        text = x_compose("{title}: {summary} {url}", item(title="Kapal", summary=f"Ini {word}"))
        assert text.startswith("Kapal: Ini Donaudampf") and 278 <= x_weighted_length(text) <= 280

    @pytest.mark.parametrize(
        "unit",
        ["👨‍👩‍👧", "👍🏽", "🇮🇩", "e\u0301", "\u1100\u1161\u11a8", "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f", "❤️"],
    )
    def test_graphemes_not_split(self, unit):
        """Emoji sequences, flags, combining marks and jamo are never split by a cut."""
        text = x_compose("{summary} {url}", item(summary=unit * 300))
        cut = text[: -len(LINK) - 2]
        assert cut and len(cut) % len(unit) == 0 and cut == unit * (len(cut) // len(unit))
        assert x_weighted_length(text) <= 280

    def test_boundaries(self):
        """The boundary check refuses cuts inside surrogate pairs, ZWJ sequences and flag pairs."""
        assert _is_boundary("ab", 1)
        assert not _is_boundary("\ud83d\ude00", 1)
        assert not _is_boundary("a\u200db", 2)
        assert not _is_boundary("🇮🇩🇯🇵", 1)
        assert _is_boundary("🇮🇩🇯🇵", 2)
        assert not _is_boundary("🇮🇩🇯🇵", 3)


class TestNeverTooLong:
    POOLS = [
        "Menpora Dito membuka PON XXI di Banda Aceh , Senin ( 9/9 ) malam .".split(),
        ["東京電力福島第一原子力発電所", "処理水", "中国队夺冠", "한국어문장입니다"],
        ["😀", "👨‍👩‍👧", "🇮🇩🇯🇵", "👍🏽", "❤️", "e\u0301te\u0301"],
        ["antaranews.com", "https://detik.com/x", "#PON2024", "@kemenpora", "a" * 60, "ก" * 50],
    ]
    TEMPLATES = [TEMPLATE, "{title} — {summary} {url} {hashtags}", "[{source}] {title}: {summary}\n{url}",
                 "{summary} {url}", "{title} {url}", "🔴 {title}\n{summary}\n\nSelengkapnya: {url} {hashtags}"]

    def words(self, rng: random.Random, count: int) -> str:
        return " ".join(rng.choice(rng.choice(self.POOLS)) for _ in range(count))

    def test_random_inputs(self):
        """For 250 seeded random items, no composed post exceeds 280 by X's count and the URL is intact."""
        rng = random.Random(20240909)
        for _ in range(250):
            link = rng.choice([LINK, "https://a.id/" + "x" * rng.randrange(1, 500), None])
            story = item(title=self.words(rng, rng.randrange(0, 80)), summary=self.words(rng, rng.randrange(0, 400)),
                         link=link)
            template = rng.choice(self.TEMPLATES)
            try:
                post = compose(template, story, source=self.words(rng, 2), rule=X_LENGTH_RULE,
                               hashtags=rng.choice(["", "#Olahraga", "#PON2024 #Aceh"]))
            except PostRejected as error:
                assert "nothing to post" in str(error), (template, story)  # only an empty post may fail
                continue
            assert x_weighted_length(post.text) <= 280, (template, story)
            assert post.text == post.text.strip()
            if link and "{url}" in template:
                assert link in post.text.split()
