"""Hashtags: valid, CamelCase, each once."""

from __future__ import annotations

import pytest

from bridge.hashtags import MAX_CATEGORY_HASHTAGS, hashtags_for, to_hashtag


@pytest.mark.parametrize(("text", "tag"), [
    ("Kemenpora", "#Kemenpora"),
    ("sepak bola", "#SepakBola"),
    ("  Sepak Bola  ", "#SepakBola"),
    ("#Kemenpora", "#Kemenpora"),
    ("pemuda & olahraga", "#PemudaOlahraga"),
    ("PON XXI", "#PONXXI"),
    ("U-19", "#U19"),
    ("Asian Games 2026", "#AsianGames2026"),
    ("sepak_bola", "#SepakBola"),
    ("日本 代表", "#日本代表"),
    ("2024", None),
    ("!!!", None),
    ("", None),
])
def test_to_hashtag(text, tag):
    """Spaces and punctuation go, each word starts upper-case, and a tag needs a letter."""
    assert to_hashtag(text) == tag


def test_configured_first_then_categories_each_once():
    """Configured tags come first, then categories, without case-insensitive repeats."""
    assert hashtags_for(["Kemenpora"], ["kemenpora", "Sepak Bola"], True) == ["#Kemenpora", "#SepakBola"]


def test_categories_only_when_asked_and_capped():
    """Categories are used only with category_hashtags, and only the first few."""
    categories = [f"Kategori {n}" for n in range(10)]
    assert hashtags_for(["A"], categories, False) == ["#A"]
    assert len(hashtags_for([], categories, True)) == MAX_CATEGORY_HASHTAGS
